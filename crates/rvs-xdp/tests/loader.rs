#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Root-only tests of the loader against `tests/fixtures/loader_fixture.o`, a
//! stand-in object with the maps of docs/packet-plane.md and a trivial
//! `rvs_xdp` program (it counts RX, swaps the Ethernet addresses, queues an
//! upcall record of the frame's first 64 bytes, and returns
//! `rvs_config[0].upcall_burst`, or XDP_DROP when that is 0).
//! Namespaces get unique names and are deleted by a Drop guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::thread;

use rvs_xdp::abi::{self, Config, Event, Flow, FlowKey, MarkKey, Real, Stat, Vip, VipKey};
use rvs_xdp::{AttachMode, Loaded, XdpError};

const FIXTURE: &[u8] = include_bytes!("fixtures/loader_fixture.o");
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

#[path = "../../rvs-sys/tests/support/ns.rs"]
mod support;
use support::{is_root, Ns};

/// A 60-byte frame: dst 02:..:01, src 02:..:02, ethertype 0x0800, then a
/// recognisable payload.
fn frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend((0u8..46).map(|i| i.wrapping_mul(7)));
    f
}

fn swapped(f: &[u8]) -> Vec<u8> {
    let mut out = f.to_vec();
    out[..6].copy_from_slice(&f[6..12]);
    out[6..12].copy_from_slice(&f[..6]);
    out
}

fn readable(loaded: &Loaded) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let fd = loaded.events_fd();
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::ZERO).expect("poll ring buffer");
    n == 1
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

#[test]
fn garbage_is_refused_as_an_object() {
    let err = Loaded::load(b"not an ELF file").expect_err("garbage loads");
    assert!(matches!(err, XdpError::Object(_)), "{err:?}");
    assert!(err.to_string().contains("loading the XDP object"), "{err}");
}

#[test]
fn maps_round_trip() {
    if !is_root("maps_round_trip") {
        return;
    }
    let mut loaded = Loaded::load(FIXTURE).expect("load fixture");

    let config = Config {
        upcall_rate: 1000,
        upcall_burst: 0,
        tun_saddr4: [10, 0, 0, 1],
        tun_saddr6: [0x20; 16],
        tun_spread_bits: 8,
        gue_sport_base: 49152,
        gue_sport_span: 1024,
    };
    loaded.set_config(&config).unwrap();
    assert_eq!(loaded.config().unwrap(), config);

    let vip_key = VipKey::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 80, 6);
    let vip = Vip {
        svc: 7,
        sched: abi::SCHED_MH,
        sched_flags: abi::SCHED_F_PORT,
        method: abi::METHOD_DR,
        table_off: 100,
        table_size: 251,
        table_bits: 0,
    };
    assert_eq!(loaded.get_vip(&vip_key).unwrap(), None);
    loaded.put_vip(&vip_key, &vip).unwrap();
    assert_eq!(loaded.get_vip(&vip_key).unwrap(), Some(vip));
    loaded.del_vip(&vip_key).unwrap();
    assert_eq!(loaded.get_vip(&vip_key).unwrap(), None);
    loaded
        .del_vip(&vip_key)
        .expect("deleting a missing vip is fine");

    let addr_key = VipKey::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        0,
        0,
    );
    assert!(!loaded.has_vip_addr(&addr_key).unwrap());
    loaded.put_vip_addr(&addr_key).unwrap();
    assert!(loaded.has_vip_addr(&addr_key).unwrap());
    loaded.del_vip_addr(&addr_key).unwrap();
    assert!(!loaded.has_vip_addr(&addr_key).unwrap());

    // The classifier trie: longest prefix wins, exact keys delete.
    let net = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
    let wide = MarkKey::rule(6, net, 8, 443);
    let narrow = MarkKey::rule(6, IpAddr::V4(Ipv4Addr::new(10, 9, 0, 0)), 16, 443);
    loaded.put_mark(&wide, 7).unwrap();
    loaded.put_mark(&narrow, 6666).unwrap();
    let at = |a: [u8; 4], port| MarkKey::lookup(6, IpAddr::V4(Ipv4Addr::from(a)), port);
    assert_eq!(
        loaded.lookup_mark(&at([10, 9, 1, 1], 443)).unwrap(),
        Some(6666)
    );
    assert_eq!(
        loaded.lookup_mark(&at([10, 8, 1, 1], 443)).unwrap(),
        Some(7)
    );
    assert_eq!(loaded.lookup_mark(&at([10, 9, 1, 1], 80)).unwrap(), None);
    let mut all = loaded.marks().unwrap();
    all.sort_by_key(|(k, _)| k.prefixlen);
    assert_eq!(all, [(wide, 7), (narrow, 6666)]);
    loaded.del_mark(&narrow).unwrap();
    loaded.del_mark(&narrow).unwrap(); // missing: not an error
    assert_eq!(
        loaded.lookup_mark(&at([10, 9, 1, 1], 443)).unwrap(),
        Some(7)
    );

    let real = Real {
        addr: abi::addr_bytes(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5))),
        family: abi::FAMILY_V4,
        method: abi::METHOD_TUN,
        tun_type: abi::TUN_GUE,
        flags: abi::REAL_F_USABLE,
        port_be: 8080u16.to_be(),
        gue_port_be: 6080u16.to_be(),
        ifindex: 3,
        dmac: [2, 1, 2, 3, 4, 5],
        smac: [2, 9, 8, 7, 6, 5],
    };
    loaded.put_real(abi::MAX_REALS - 1, &real).unwrap();
    assert_eq!(loaded.get_real(abi::MAX_REALS - 1).unwrap(), real);
    assert_eq!(loaded.get_real(0).unwrap(), Real::default());
    let err = loaded.put_real(abi::MAX_REALS, &real).unwrap_err();
    assert!(err.to_string().contains("rvs_reals"), "{err}");

    let slots: Vec<u32> = (0..300).map(|i| i % 7).collect();
    loaded.put_hash_slots(1000, &slots).unwrap();
    assert_eq!(loaded.hash_slots(1000, 300).unwrap(), slots);
    assert_eq!(loaded.hash_slots(999, 1).unwrap(), vec![0]);
    let err = loaded
        .put_hash_slots(abi::HASH_SLOTS - 1, &[1, 2])
        .unwrap_err();
    assert!(
        matches!(
            err,
            XdpError::OutOfRange {
                map: "rvs_hash",
                ..
            }
        ),
        "{err:?}"
    );

    let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let vip_addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let key_in = FlowKey::new(client, 40000, vip_addr, 80, 6);
    let key_out = FlowKey::new(vip_addr, 80, client, 40000, 6);
    let flow_in = Flow {
        new_daddr: abi::addr_bytes(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5))),
        new_dport_be: 8080u16.to_be(),
        real: 4095,
        method: abi::METHOD_NAT,
        flags: abi::FLOW_F_DNAT | abi::FLOW_F_NOTIFY_ACK,
        last_seen_ns: 123_456_789,
        packets: 3,
        bytes: 180,
        ..Flow::default()
    };
    let flow_out = Flow {
        new_saddr: abi::addr_bytes(vip_addr),
        new_sport_be: 80u16.to_be(),
        real: abi::NO_REAL,
        ifindex: 2,
        dmac: [2, 0, 0, 0, 0, 0xaa],
        smac: [2, 0, 0, 0, 0, 0xbb],
        method: abi::METHOD_NAT,
        flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT,
        ..Flow::default()
    };
    assert_eq!(loaded.get_flow(&key_in).unwrap(), None);
    loaded.put_flow(&key_in, &flow_in).unwrap();
    loaded.put_flow(&key_out, &flow_out).unwrap();
    assert_eq!(loaded.get_flow(&key_in).unwrap(), Some(flow_in));
    let mut all = loaded.flows().unwrap();
    all.sort_by_key(|(k, _)| k.saddr);
    let mut expected = vec![(key_in, flow_in), (key_out, flow_out)];
    expected.sort_by_key(|(k, _)| k.saddr);
    assert_eq!(all, expected);
    loaded.del_flow(&key_in).unwrap();
    assert_eq!(loaded.get_flow(&key_in).unwrap(), None);
    loaded
        .del_flow(&key_in)
        .expect("deleting a missing flow is fine");
    assert_eq!(loaded.flows().unwrap(), vec![(key_out, flow_out)]);

    // A batch writes every entry in order (a later one for the same key wins).
    let batch: Vec<(FlowKey, Flow)> = (0..300u16)
        .map(|i| {
            let k = FlowKey::new(client, 1000 + i, vip_addr, 80, 6);
            let f = Flow {
                real: u32::from(i),
                packets: u64::from(i) * 7,
                ..flow_in
            };
            (k, f)
        })
        .chain(std::iter::once((key_out, flow_in)))
        .collect();
    loaded.put_flows(&batch).unwrap();
    for (k, f) in &batch {
        assert_eq!(loaded.get_flow(k).unwrap(), Some(*f));
    }
    assert_eq!(loaded.flows().unwrap().len(), 301);
    loaded.put_flows(&[]).unwrap();
    for (k, _) in &batch {
        loaded.del_flow(k).unwrap();
    }

    // ifindex 1 is the loopback of every namespace.
    loaded.add_tx_port(1).unwrap();
    assert_eq!(loaded.tx_ports().unwrap(), vec![1]);
    let err = loaded.add_tx_port(0x7fff_fff0).unwrap_err();
    assert!(err.to_string().contains("rvs_tx"), "{err}");
    loaded.del_tx_port(1).unwrap();
    assert_eq!(loaded.tx_ports().unwrap(), Vec::<u32>::new());

    assert_eq!(loaded.stats().unwrap(), [0; Stat::COUNT]);
}

#[test]
fn test_run_reaches_program_stats_and_events() {
    if !is_root("test_run_reaches_program_stats_and_events") {
        return;
    }
    let mut loaded = Loaded::load(FIXTURE).expect("load fixture");
    let input = frame();
    let mut out = [0u8; 256];

    assert!(!readable(&loaded));
    let first = loaded.test_run(&input, &mut out).unwrap();
    assert_eq!(first.action, XDP_DROP);
    assert_eq!(first.frame, swapped(&input));

    // The program returns rvs_config[0].upcall_burst when it is set.
    loaded
        .set_config(&Config {
            upcall_burst: XDP_PASS,
            ..Config::default()
        })
        .unwrap();
    let long: Vec<u8> = (0..100u8).collect();
    let second = loaded.test_run(&long, &mut out).unwrap();
    assert_eq!(second.action, XDP_PASS);
    assert_eq!(second.frame, swapped(&long));

    let err = loaded.test_run(&long, &mut [0u8; 20]).unwrap_err();
    assert!(err.to_string().contains("rvs_xdp"), "{err}");

    let stats = loaded.stats().unwrap();
    assert_eq!(stats[Stat::Rx as usize], 3);
    assert_eq!(stats[1..], [0; Stat::COUNT - 1]);

    assert!(readable(&loaded));
    let mut events = Vec::new();
    assert_eq!(loaded.drain_events(1, &mut events), 1);
    assert_eq!(loaded.drain_events(10, &mut events), 2);
    assert_eq!(loaded.drain_events(10, &mut events), 0);
    assert!(!readable(&loaded));
    assert_eq!(loaded.malformed_events(), 0);
    // The program copies the frame after swapping its Ethernet addresses; the
    // run with the too-small output buffer still ran and queued its record.
    let expected = |f: &[u8]| Event {
        kind: abi::EV_UPCALL,
        ifindex: 1,
        frame_len: f.len() as u32,
        real: abi::NO_REAL,
        frame: swapped(f)[..f.len().min(64)].to_vec(),
    };
    assert_eq!(
        events,
        vec![expected(&input), expected(&long), expected(&long)]
    );
}

#[test]
fn attach_detach_and_live_frames_in_a_namespace() {
    if !is_root("attach_detach_and_live_frames_in_a_namespace") {
        return;
    }
    let ns = Ns::new("rvsxdp");
    ns.quiet_veth_pair("xa", "xb");

    let name = ns.name.clone();
    let (loaded, xa_index) = thread::spawn(move || {
        rvs_sys::netns::enter(&name).expect("enter namespace");
        let mut loaded = Loaded::load(FIXTURE).expect("load fixture");
        loaded.attach("xa", AttachMode::Generic).unwrap();
        loaded.attach("xb", AttachMode::Native).unwrap();
        let err = loaded.attach("nosuchif0", AttachMode::Generic).unwrap_err();
        assert!(err.to_string().contains("nosuchif0"), "{err}");
        let xa = rvs_sys::interface("xa").expect("xa").index;

        let input = frame();
        loaded.test_run_live(&input, 100, 16, xa).unwrap();
        let one = loaded.test_run_on(xa, &input, &mut [0u8; 128]).unwrap();
        assert_eq!(one.action, XDP_DROP);
        (loaded, xa)
    })
    .join()
    .expect("namespace thread");

    // ip's JSON: xdp.mode 1 = driver (native), 2 = generic (skb).
    assert_eq!(
        ns.link_json("xa")["xdp"]["mode"],
        2,
        "{}",
        ns.link_json("xa")
    );
    assert_eq!(
        ns.link_json("xb")["xdp"]["mode"],
        1,
        "{}",
        ns.link_json("xb")
    );

    let mut loaded = loaded;
    assert_eq!(loaded.stats().unwrap()[Stat::Rx as usize], 101);
    let mut events = Vec::new();
    assert_eq!(loaded.drain_events(1000, &mut events), 101);
    assert!(events.iter().all(|e| e.ifindex == xa_index), "{events:?}");

    drop(loaded);
    assert!(
        ns.link_json("xa").get("xdp").is_none(),
        "{}",
        ns.link_json("xa")
    );
    assert!(
        ns.link_json("xb").get("xdp").is_none(),
        "{}",
        ns.link_json("xb")
    );
}
