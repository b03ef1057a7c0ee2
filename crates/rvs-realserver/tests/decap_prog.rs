#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The XDP decapsulation program (`crates/rvs-xdp/bpf/rvs_decap.c`, as the
//! prebuilt object the binary embeds) run with BPF_PROG_TEST_RUN: tunnelled
//! frames for a VIP come out as Ethernet + the inner packet; everything else
//! comes out unchanged. Root only (loading BPF), except the rebuild check.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use aya::maps::{HashMap, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use common::*;

const OBJECT: &[u8] = aya::include_bytes_aligned!("../../rvs-xdp/bpf/prebuilt/rvs_decap.o");
const XDP_PASS: u32 = 2;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 10);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const DIRECTOR4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DIRECTOR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const GUE_PORT: u16 = 6080;

fn key4(a: Ipv4Addr) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&a.octets());
    key
}

fn loaded() -> Ebpf {
    let mut ebpf = Ebpf::load(OBJECT).unwrap();
    for (map, keys) in [
        ("decap_vips", [key4(VIP4), VIP6.octets()]),
        ("decap_local", [key4(LOCAL4), LOCAL6.octets()]),
    ] {
        let mut set: HashMap<_, [u8; 16], u8> =
            HashMap::try_from(ebpf.map_mut(map).unwrap()).unwrap();
        for key in keys {
            set.insert(key, 1, 0).unwrap();
        }
    }
    let mut ports: HashMap<_, [u8; 2], u8> =
        HashMap::try_from(ebpf.map_mut("decap_ports").unwrap()).unwrap();
    ports.insert(GUE_PORT.to_be_bytes(), 1, 0).unwrap();
    let program: &mut Xdp = ebpf.program_mut("rvs_decap").unwrap().try_into().unwrap();
    program.load().unwrap();
    ebpf
}

/// Runs the program on `frame`: (verdict, output frame).
fn run(ebpf: &mut Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let program: &mut Xdp = ebpf.program_mut("rvs_decap").unwrap().try_into().unwrap();
    let mut out = vec![0u8; 4096];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn counters(ebpf: &Ebpf) -> [u64; 2] {
    let stats: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("decap_stats").unwrap()).unwrap();
    [0u32, 1].map(|i| stats.get(&i, 0).unwrap().iter().sum())
}

fn inner4(dst: Ipv4Addr) -> Vec<u8> {
    ipv4(CLIENT4, dst, 17, &udp(40000, 80, b"hello over ipip"))
}

fn inner6(dst: Ipv6Addr) -> Vec<u8> {
    ipv6(CLIENT6, dst, 17, &udp(40000, 80, b"hello over ip6"))
}

#[test]
fn tunnelled_frames_for_a_vip_become_ethernet_and_the_inner_packet() {
    if !is_root("tunnelled_frames_for_a_vip_become_ethernet_and_the_inner_packet") {
        return;
    }
    let mut ebpf = loaded();
    let gue = |inner: &[u8]| udp(51234, GUE_PORT, inner);
    let frame = |ethertype: u16, packet: &[u8]| ethernet(DST_MAC, SRC_MAC, ethertype, packet);
    // (name, frame in, frame expected out)
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "IPIP v4 in v4",
            frame(ETH_IPV4, &ipv4(DIRECTOR4, LOCAL4, 4, &inner4(VIP4))),
            frame(ETH_IPV4, &inner4(VIP4)),
        ),
        (
            "v6 in v6 (41)",
            frame(ETH_IPV6, &ipv6(DIRECTOR6, LOCAL6, 41, &inner6(VIP6))),
            frame(ETH_IPV6, &inner6(VIP6)),
        ),
        (
            "v6 in v4 (41)",
            frame(ETH_IPV4, &ipv4(DIRECTOR4, LOCAL4, 41, &inner6(VIP6))),
            frame(ETH_IPV6, &inner6(VIP6)),
        ),
        (
            "v4 in v6 (4)",
            frame(ETH_IPV6, &ipv6(DIRECTOR6, LOCAL6, 4, &inner4(VIP4))),
            frame(ETH_IPV4, &inner4(VIP4)),
        ),
        (
            "GUE v4 in v4",
            frame(ETH_IPV4, &ipv4(DIRECTOR4, LOCAL4, 17, &gue(&inner4(VIP4)))),
            frame(ETH_IPV4, &inner4(VIP4)),
        ),
        (
            "GUE v6 in v6",
            frame(ETH_IPV6, &ipv6(DIRECTOR6, LOCAL6, 17, &gue(&inner6(VIP6)))),
            frame(ETH_IPV6, &inner6(VIP6)),
        ),
    ];
    for (name, input, expected) in &cases {
        let (verdict, out) = run(&mut ebpf, input);
        assert_eq!(verdict, XDP_PASS, "{name}");
        assert_eq!(&out, expected, "{name}: output frame");
    }
    assert_eq!(counters(&ebpf), [cases.len() as u64, 0]);
}

#[test]
fn frames_not_for_this_tunnel_pass_unchanged() {
    if !is_root("frames_not_for_this_tunnel_pass_unchanged") {
        return;
    }
    let mut ebpf = loaded();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "inner destination not a VIP",
            ethernet(
                DST_MAC,
                SRC_MAC,
                ETH_IPV4,
                &ipv4(DIRECTOR4, LOCAL4, 4, &inner4(OTHER4)),
            ),
        ),
        (
            "outer destination not local",
            ethernet(
                DST_MAC,
                SRC_MAC,
                ETH_IPV4,
                &ipv4(DIRECTOR4, OTHER4, 4, &inner4(VIP4)),
            ),
        ),
        (
            "GUE to a port not listed",
            ethernet(
                DST_MAC,
                SRC_MAC,
                ETH_IPV4,
                &ipv4(DIRECTOR4, LOCAL4, 17, &udp(51234, 6081, &inner4(VIP4))),
            ),
        ),
        (
            "protocol 4 carrying IPv6",
            ethernet(
                DST_MAC,
                SRC_MAC,
                ETH_IPV4,
                &ipv4(DIRECTOR4, LOCAL4, 4, &inner6(VIP6)),
            ),
        ),
        (
            "plain UDP to the VIP",
            ethernet(DST_MAC, SRC_MAC, ETH_IPV4, &inner4(VIP4)),
        ),
        (
            "truncated inner header",
            ethernet(
                DST_MAC,
                SRC_MAC,
                ETH_IPV4,
                &ipv4(DIRECTOR4, LOCAL4, 4, &inner4(VIP4)[..12]),
            ),
        ),
        ("ARP", ethernet(DST_MAC, SRC_MAC, 0x0806, &[0u8; 28])),
    ];
    for (name, frame) in &cases {
        let (verdict, out) = run(&mut ebpf, frame);
        assert_eq!(verdict, XDP_PASS, "{name}");
        assert_eq!(&out, frame, "{name}: frame changed");
    }
    assert_eq!(counters(&ebpf), [0, cases.len() as u64]);
}

/// The committed object is what `build-decap.sh` makes of the source today.
#[test]
fn prebuilt_object_matches_the_source() {
    let bpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rvs-xdp/bpf");
    let bpf_dir = bpf_dir.canonicalize().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("rvs_decap.o");
    let status = Command::new("clang-14")
        .current_dir(&bpf_dir)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={}=.", bpf_dir.display()))
        .args(["-c", "rvs_decap.c", "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(status) => assert!(status.success(), "clang-14 failed on rvs_decap.c"),
        Err(_) => {
            eprintln!("SKIP: prebuilt_object_matches_the_source needs clang-14");
            return;
        }
    }
    let built = std::fs::read(&out).unwrap();
    let prebuilt = std::fs::read(bpf_dir.join("prebuilt/rvs_decap.o")).unwrap();
    assert!(
        built == prebuilt,
        "prebuilt/rvs_decap.o is stale: run crates/rvs-xdp/bpf/build-decap.sh"
    );
}
