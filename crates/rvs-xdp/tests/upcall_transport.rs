#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Root-only tests of the upcall transports the benchmark compares
//! (`bench/xdp-forwarding.sh`, cases `upcall_*`): an AF_XDP socket
//! (`rvs_sys::XskSocket`) fed by `xdp_upcall_xsk` (bpf/rvs_bench.c) receives
//! every frame sent into a veth, changes it and sends it back; frames go in
//! with `FrameSender::send_many` (rvsd's batched re-send). More frames pass
//! than the socket has buffers, so buffers must come back through the
//! COMPLETION and FILL rings.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use socket2::{Domain, Protocol, Socket, Type};

#[path = "../../rvs-sys/tests/support/ns.rs"]
mod support;
use support::{is_root, Ns};

/// IEEE 802 local experimental EtherType: nothing else in the namespace uses it.
const ETHERTYPE: u16 = 0x88b5;
/// Set by the socket's side on the frames it sends back.
const MARK: u8 = 0xee;
/// Frames sent: more than the socket's 4096 buffers.
const FRAMES: u32 = 6000;

fn frame(seq: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.push(0); // the mark byte
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0x5a);
    f
}

#[test]
fn af_xdp_socket_receives_redirected_frames_and_sends_them_back() {
    if !is_root("af_xdp_socket_receives_redirected_frames_and_sends_them_back") {
        return;
    }
    let ns = Ns::new("rvsxsk");
    ns.quiet_veth_pair("xa", "xb");
    let name = ns.name.clone();
    std::thread::spawn(move || {
        rvs_sys::netns::enter(&name).expect("enter namespace");
        let xa = rvs_sys::interface("xa").expect("xa").index;
        let xb = rvs_sys::interface("xb").expect("xb").index;

        let mut ebpf = Ebpf::load(rvs_xdp::BENCH_OBJECT).expect("bench object");
        // Frames the veth hands to xb arrive on its queue 0 (one queue).
        let mut xsk = rvs_sys::XskSocket::open(xb, 0, 4096).expect("AF_XDP socket");
        {
            let map = ebpf.map_mut("bench_xsks").expect("bench_xsks");
            let mut xsks: XskMap<_> = XskMap::try_from(map).unwrap();
            xsks.set(0, std::os::fd::AsRawFd::as_raw_fd(&xsk), 0)
                .unwrap();
        }
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_upcall_xsk")
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        prog.attach("xb", XdpMode::Driver).unwrap();

        // Everything of our EtherType seen on xa (not bound: xb's are
        // consumed by XDP before any socket could see them).
        let rx = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETHERTYPE.to_be()))),
        )
        .unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        rx.set_recv_buffer_size(8 << 20).unwrap();
        let tx = rvs_sys::FrameSender::open(xa).unwrap();

        let mut back: HashSet<u32> = HashSet::new();
        let mut buf = [0u8; 2048];
        let mut take = |back: &mut HashSet<u32>| {
            while let Ok(n) = (&rx).read(&mut buf) {
                let f = &buf[..n];
                if f.len() >= 19 && f[14] == MARK {
                    assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 0xa], "destination swapped");
                    assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0xb], "source swapped");
                    back.insert(u32::from_be_bytes([f[15], f[16], f[17], f[18]]));
                }
            }
        };
        let started = Instant::now();
        for round in 0..FRAMES / 100 {
            let batch: Vec<Vec<u8>> = (0..100).map(|i| frame(round * 100 + i)).collect();
            assert_eq!(tx.send_many(&batch).unwrap(), 100);
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut seen = 0;
            while seen < 100 && Instant::now() < deadline {
                seen += xsk
                    .forward(64, |f| {
                        let (dst, src) = (
                            [f[0], f[1], f[2], f[3], f[4], f[5]],
                            [f[6], f[7], f[8], f[9], f[10], f[11]],
                        );
                        f[..6].copy_from_slice(&src);
                        f[6..12].copy_from_slice(&dst);
                        f[14] = MARK;
                        true
                    })
                    .unwrap();
            }
            assert_eq!(
                seen, 100,
                "round {round}: the socket received {seen} of 100"
            );
            take(&mut back);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while back.len() < FRAMES as usize && Instant::now() < deadline {
            take(&mut back);
        }
        let c = xsk.counters();
        assert_eq!(c.received, u64::from(FRAMES));
        assert_eq!(c.sent, u64::from(FRAMES));
        assert_eq!(
            back.len(),
            FRAMES as usize,
            "frames back on xa in {:?}",
            started.elapsed()
        );
    })
    .join()
    .expect("namespace thread");
}
