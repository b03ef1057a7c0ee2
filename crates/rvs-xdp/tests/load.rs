#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Loads `bpf/rvs_xdp.c` through aya (the kernel's verifier must accept it) and
//! runs it with BPF_PROG_TEST_RUN on hand-built frames: ARP passes, a SYN to an
//! upcall service is queued on the ring buffer, a DR flow rewrites Ethernet,
//! an sh service creates NAT entries and rewrites with valid checksums, GUE
//! encapsulation and ICMP echo. Needs root (it skips loudly otherwise).

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{Array, HashMap, PerCpuArray, RingBuf};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use rvs_xdp::abi::{
    Config, Event, Flow, FlowKey, Real, Stat, Vip, VipKey, EV_NEW, EV_UPCALL, FLOW_F_DNAT,
    FLOW_F_NOTIFY_ACK, FLOW_F_OUT, FLOW_F_SNAT, METHOD_DR, METHOD_NAT, METHOD_TUN, NO_REAL,
    REAL_F_USABLE, SCHED_SH, SCHED_UPCALL, TUN_GUE,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// BPF_PROG_TEST_RUN without a context runs on the netns's loopback device.
const LO_IFINDEX: u32 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

fn is_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: {test} needs root");
    false
}

fn load() -> Ebpf {
    let mut bpf = EbpfLoader::new()
        .map_max_entries("rvs_flows", 4096)
        .map_max_entries("rvs_hash", 4096)
        .load(rvs_xdp::XDP_OBJECT)
        .expect("load the object");
    let prog: &mut Xdp = bpf
        .program_mut("rvs_xdp")
        .expect("program rvs_xdp")
        .try_into()
        .expect("an XDP program");
    prog.load().expect("the verifier accepts rvs_xdp");
    bpf
}

fn run(bpf: &mut Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let prog: &mut Xdp = bpf.program_mut("rvs_xdp").unwrap().try_into().unwrap();
    let mut out = vec![0u8; 4096];
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("test run");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

fn stat(bpf: &Ebpf, s: Stat) -> u64 {
    let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(bpf.map("rvs_stats").unwrap()).unwrap();
    stats.get(&(s as u32), 0).unwrap().iter().sum()
}

fn events(bpf: &mut Ebpf) -> Vec<Event> {
    let mut ring = RingBuf::try_from(bpf.map_mut("rvs_events").unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(Event::parse(&item).expect("a well-formed record"));
    }
    out
}

fn set_vip(bpf: &mut Ebpf, key: &VipKey, vip: &Vip) {
    let mut vips: HashMap<_, [u8; VipKey::SIZE], [u8; Vip::SIZE]> =
        HashMap::try_from(bpf.map_mut("rvs_vips").unwrap()).unwrap();
    vips.insert(key.to_bytes(), vip.to_bytes(), 0).unwrap();
}

fn set_real(bpf: &mut Ebpf, index: u32, real: &Real) {
    let mut reals: Array<_, [u8; Real::SIZE]> =
        Array::try_from(bpf.map_mut("rvs_reals").unwrap()).unwrap();
    reals.set(index, real.to_bytes(), 0).unwrap();
}

fn set_flow(bpf: &mut Ebpf, key: &FlowKey, flow: &Flow) {
    let mut flows: HashMap<_, [u8; FlowKey::SIZE], [u8; Flow::SIZE]> =
        HashMap::try_from(bpf.map_mut("rvs_flows").unwrap()).unwrap();
    flows.insert(key.to_bytes(), flow.to_bytes(), 0).unwrap();
}

fn get_flow(bpf: &Ebpf, key: &FlowKey) -> Option<Flow> {
    let flows: HashMap<_, [u8; FlowKey::SIZE], [u8; Flow::SIZE]> =
        HashMap::try_from(bpf.map("rvs_flows").unwrap()).unwrap();
    flows
        .get(&key.to_bytes(), 0)
        .ok()
        .map(|b| Flow::from_bytes(&b))
}

fn v4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Ones' complement sum of big-endian 16-bit words (odd tail padded with 0).
fn ones_sum(mut sum: u32, bytes: &[u8]) -> u32 {
    for c in bytes.chunks(2) {
        let hi = u32::from(c[0]) << 8;
        let lo = c.get(1).copied().map(u32::from).unwrap_or(0);
        sum += hi | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum
}

fn ip4_header_ok(ip: &[u8]) -> bool {
    ones_sum(0, &ip[..20]) == 0xFFFF
}

/// TCP/UDP checksum over an IPv4 pseudo header and the L4 bytes is correct.
fn l4_v4_ok(ip: &[u8]) -> bool {
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[20..tot];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
    ones_sum(ones_sum(0, &pseudo), l4) == 0xFFFF
}

/// An Ethernet + IPv4 + TCP frame with valid checksums (and `pad` bytes of
/// Ethernet padding after the IP packet).
fn tcp4(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = u16::try_from(20 + 20 + payload.len()).unwrap();
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 63, TCP, 0, 0];
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = !ones_sum(0, &ip) & 0xFFFF;
    ip[10..12].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&(if flags & ACK != 0 { 5000u32 } else { 0 }).to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, TCP]);
    pseudo.extend_from_slice(&u16::try_from(tcp.len()).unwrap().to_be_bytes());
    let c = !ones_sum(ones_sum(0, &pseudo), &tcp) & 0xFFFF;
    tcp[16..18].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const VIP: [u8; 4] = [10, 0, 0, 100];
const REAL: [u8; 4] = [192, 168, 1, 10];

#[test]
fn arp_is_passed_and_counted() {
    if !is_root("arp_is_passed_and_counted") {
        return;
    }
    let mut bpf = load();
    let mut arp = Vec::new();
    arp.extend_from_slice(&[0xFF; 6]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&VIP);
    let (verdict, out) = run(&mut bpf, &arp);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, arp);
    assert_eq!(stat(&bpf, Stat::Rx), 1);
    assert_eq!(stat(&bpf, Stat::PassNotIp), 1);
    assert_eq!(stat(&bpf, Stat::PassNotVip), 0);
}

#[test]
fn syn_to_an_upcall_service_is_queued_and_dropped() {
    if !is_root("syn_to_an_upcall_service_is_queued_and_dropped") {
        return;
    }
    let mut bpf = load();
    let key = VipKey::new(IpAddr::V4(v4(VIP)), 80, TCP);
    let vip = Vip {
        svc: 7,
        sched: SCHED_UPCALL,
        ..Default::default()
    };
    set_vip(&mut bpf, &key, &vip);
    let syn = tcp4(v4(CLIENT), 40000, v4(VIP), 80, SYN, &[]);
    let (verdict, _) = run(&mut bpf, &syn);
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(stat(&bpf, Stat::Upcall), 1);
    let evs = events(&mut bpf);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EV_UPCALL);
    assert_eq!(evs[0].real, NO_REAL);
    assert_eq!(evs[0].frame_len as usize, syn.len());
    assert_eq!(evs[0].frame, syn);

    // Another port of the same address is no service.
    let other = tcp4(v4(CLIENT), 40000, v4(VIP), 81, SYN, &[]);
    assert_eq!(run(&mut bpf, &other).0, XDP_PASS);
    assert_eq!(stat(&bpf, Stat::PassNotVip), 1);
    assert!(events(&mut bpf).is_empty());
}

#[test]
fn upcall_guard_refuses_beyond_the_burst() {
    if !is_root("upcall_guard_refuses_beyond_the_burst") {
        return;
    }
    let mut bpf = load();
    let cfg = Config {
        upcall_rate: 1,
        upcall_burst: 2,
        ..Default::default()
    };
    let mut config: Array<_, [u8; Config::SIZE]> =
        Array::try_from(bpf.map_mut("rvs_config").unwrap()).unwrap();
    config.set(0, cfg.to_bytes(), 0).unwrap();
    let key = VipKey::new(IpAddr::V4(v4(VIP)), 80, TCP);
    set_vip(&mut bpf, &key, &Vip::default());
    // One token per second, two in the bucket: the third SYN in a row is refused
    // (the test runs well within a second; the runs may land on different CPUs,
    // each with its own bucket, so at least one of four is refused per CPU used).
    let syn = tcp4(v4(CLIENT), 40000, v4(VIP), 80, SYN, &[]);
    for _ in 0..3 {
        assert_eq!(run(&mut bpf, &syn).0, XDP_DROP);
    }
    let cpus = u64::try_from(aya::util::nr_cpus().unwrap()).unwrap();
    let guard = stat(&bpf, Stat::DropGuard);
    let queued = stat(&bpf, Stat::Upcall);
    assert_eq!(guard + queued, 3);
    assert!(queued <= 2 * cpus);
    assert_eq!(events(&mut bpf).len() as u64, queued);
    // With every run on one CPU, exactly the third is refused.
    if cpus == 1 {
        assert_eq!(guard, 1);
    }
}

#[test]
fn dr_flow_rewrites_ethernet_and_counts() {
    if !is_root("dr_flow_rewrites_ethernet_and_counts") {
        return;
    }
    let mut bpf = load();
    let real = Real {
        addr: rvs_xdp::abi::addr_bytes(IpAddr::V4(v4(REAL))),
        family: 4,
        method: METHOD_DR,
        flags: REAL_F_USABLE,
        ifindex: LO_IFINDEX,
        dmac: REAL_MAC,
        smac: LB_MAC,
        ..Default::default()
    };
    set_real(&mut bpf, 3, &real);
    let fkey = FlowKey::new(IpAddr::V4(v4(CLIENT)), 40000, IpAddr::V4(v4(VIP)), 80, TCP);
    let flow = Flow {
        real: 3,
        method: METHOD_DR,
        ..Default::default()
    };
    set_flow(&mut bpf, &fkey, &flow);
    let pkt = tcp4(v4(CLIENT), 40000, v4(VIP), 80, ACK, b"hello");
    let (verdict, out) = run(&mut bpf, &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(&out[0..6], &REAL_MAC);
    assert_eq!(&out[6..12], &LB_MAC);
    assert_eq!(&out[12..], &pkt[12..]);
    assert_eq!(stat(&bpf, Stat::FwdDr), 1);
    assert_eq!(stat(&bpf, Stat::Notify), 0);
    let after = get_flow(&bpf, &fkey).unwrap();
    assert_eq!(after.packets, 1);
    assert_eq!(after.bytes, 45);
    assert!(after.last_seen_ns > 0);
    assert!(events(&mut bpf).is_empty());
}

#[test]
fn sh_service_creates_nat_entries_and_rewrites_checksums() {
    if !is_root("sh_service_creates_nat_entries_and_rewrites_checksums") {
        return;
    }
    let mut bpf = load();
    let real = Real {
        addr: rvs_xdp::abi::addr_bytes(IpAddr::V4(v4(REAL))),
        family: 4,
        method: METHOD_NAT,
        flags: REAL_F_USABLE,
        port_be: 8080u16.to_be(),
        ifindex: LO_IFINDEX,
        dmac: REAL_MAC,
        smac: LB_MAC,
        ..Default::default()
    };
    set_real(&mut bpf, 0, &real);
    // 16 slots from slot 32, all holding real 0.
    {
        let mut hash: Array<_, u32> = Array::try_from(bpf.map_mut("rvs_hash").unwrap()).unwrap();
        for slot in 32..48 {
            hash.set(slot, 0, 0).unwrap();
        }
    }
    let key = VipKey::new(IpAddr::V4(v4(VIP)), 80, TCP);
    let vip = Vip {
        sched: SCHED_SH,
        method: METHOD_NAT,
        table_off: 32,
        table_size: 16,
        table_bits: 4,
        ..Default::default()
    };
    set_vip(&mut bpf, &key, &vip);
    let syn = tcp4(v4(CLIENT), 40000, v4(VIP), 80, SYN, &[]);
    let (verdict, out) = run(&mut bpf, &syn);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(stat(&bpf, Stat::XdpSched), 1);
    assert_eq!(stat(&bpf, Stat::FwdNat), 1);
    assert_eq!(&out[0..6], &REAL_MAC);
    let ip = &out[14..];
    assert_eq!(&ip[12..16], &CLIENT);
    assert_eq!(&ip[16..20], &REAL);
    assert_eq!(&ip[22..24], &8080u16.to_be_bytes());
    assert!(ip4_header_ok(ip));
    assert!(l4_v4_ok(ip));

    let in_key = FlowKey::new(IpAddr::V4(v4(CLIENT)), 40000, IpAddr::V4(v4(VIP)), 80, TCP);
    let inflow = get_flow(&bpf, &in_key).unwrap();
    assert_eq!(inflow.real, 0);
    assert_eq!(inflow.flags, FLOW_F_NOTIFY_ACK | FLOW_F_DNAT);
    assert_eq!(inflow.new_dport_be, 8080u16.to_be());
    assert_eq!(inflow.packets, 0);
    let out_key = FlowKey::new(
        IpAddr::V4(v4(REAL)),
        8080,
        IpAddr::V4(v4(CLIENT)),
        40000,
        TCP,
    );
    let outflow = get_flow(&bpf, &out_key).unwrap();
    assert_eq!(outflow.flags, FLOW_F_OUT | FLOW_F_SNAT);
    assert_eq!(outflow.real, NO_REAL);
    assert_eq!(&outflow.new_saddr[..4], &VIP);
    assert_eq!(outflow.new_sport_be, 80u16.to_be());
    assert_eq!(outflow.dmac, CLIENT_MAC);
    assert_eq!(outflow.smac, LB_MAC);
    let evs = events(&mut bpf);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EV_NEW);
    assert_eq!(evs[0].real, 0);
    assert_eq!(evs[0].frame, syn);

    // The reply goes back from the VIP with valid checksums.
    let reply = tcp4(v4(REAL), 8080, v4(CLIENT), 40000, SYN | ACK, &[]);
    let (verdict, out) = run(&mut bpf, &reply);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(stat(&bpf, Stat::FwdReply), 1);
    assert_eq!(&out[0..6], &CLIENT_MAC);
    let ip = &out[14..];
    assert_eq!(&ip[12..16], &VIP);
    assert_eq!(&ip[20..22], &80u16.to_be_bytes());
    assert!(ip4_header_ok(ip));
    assert!(l4_v4_ok(ip));
    // A SYN on a reply entry is a control packet.
    assert_eq!(stat(&bpf, Stat::Notify), 1);
}

#[test]
fn gue_tunnel_encapsulates_over_ipv4() {
    if !is_root("gue_tunnel_encapsulates_over_ipv4") {
        return;
    }
    let mut bpf = load();
    let cfg = Config {
        tun_saddr4: [172, 16, 0, 0],
        tun_spread_bits: 8,
        gue_sport_base: 50000,
        gue_sport_span: 100,
        ..Default::default()
    };
    {
        let mut config: Array<_, [u8; Config::SIZE]> =
            Array::try_from(bpf.map_mut("rvs_config").unwrap()).unwrap();
        config.set(0, cfg.to_bytes(), 0).unwrap();
    }
    let real = Real {
        addr: rvs_xdp::abi::addr_bytes(IpAddr::V4(v4(REAL))),
        family: 4,
        method: METHOD_TUN,
        tun_type: TUN_GUE,
        flags: REAL_F_USABLE,
        gue_port_be: 6080u16.to_be(),
        ifindex: LO_IFINDEX,
        dmac: REAL_MAC,
        smac: LB_MAC,
        ..Default::default()
    };
    set_real(&mut bpf, 1, &real);
    let fkey = FlowKey::new(IpAddr::V4(v4(CLIENT)), 40000, IpAddr::V4(v4(VIP)), 80, TCP);
    set_flow(
        &mut bpf,
        &fkey,
        &Flow {
            real: 1,
            method: METHOD_TUN,
            ..Default::default()
        },
    );
    let mut pkt = tcp4(v4(CLIENT), 40000, v4(VIP), 80, ACK, b"x");
    let inner = pkt[14..].to_vec();
    pkt.extend_from_slice(&[0u8; 9]); // Ethernet padding, dropped by encapsulation
    let (verdict, out) = run(&mut bpf, &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(stat(&bpf, Stat::FwdTun), 1);
    assert_eq!(out.len(), 14 + 20 + 8 + inner.len());
    assert_eq!(&out[0..6], &REAL_MAC);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    let ip = &out[14..34];
    assert!(ip4_header_ok(ip));
    assert_eq!(ip[9], UDP);
    assert_eq!(ip[6], 0x40, "DF copied from the inner header");
    assert_eq!(ip[8], 64);
    assert_eq!(&ip[12..15], &[172, 16, 0]);
    assert_eq!(&ip[16..20], &REAL);
    assert_eq!(
        usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        20 + 8 + inner.len()
    );
    let udp = &out[34..42];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!((50000..50100).contains(&sport));
    assert_eq!(&udp[2..4], &6080u16.to_be_bytes());
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        8 + inner.len()
    );
    assert_eq!(&udp[6..8], &[0, 0]);
    assert_eq!(&out[42..], &inner[..]);
    // The same flow always takes the same outer source and port.
    let (_, again) = run(&mut bpf, &pkt);
    assert_eq!(again, out);
}

#[test]
fn icmp_echo_to_a_vip_is_answered() {
    if !is_root("icmp_echo_to_a_vip_is_answered") {
        return;
    }
    let mut bpf = load();
    {
        let mut addrs: HashMap<_, [u8; VipKey::SIZE], u32> =
            HashMap::try_from(bpf.map_mut("rvs_vip_addrs").unwrap()).unwrap();
        let key = VipKey::new(IpAddr::V4(v4(VIP)), 0, 0);
        addrs.insert(key.to_bytes(), 1, 0).unwrap();
    }
    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 36, 0, 1, 0, 0, 5, 1, 0, 0];
    ip.extend_from_slice(&CLIENT);
    ip.extend_from_slice(&VIP);
    let c = !ones_sum(0, &ip) & 0xFFFF;
    ip[10..12].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8];
    let c = !ones_sum(0, &icmp) & 0xFFFF;
    icmp[2..4].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    let (verdict, out) = run(&mut bpf, &f);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(stat(&bpf, Stat::IcmpEcho), 1);
    assert_eq!(&out[0..6], &CLIENT_MAC);
    assert_eq!(&out[6..12], &LB_MAC);
    let ip = &out[14..34];
    assert!(ip4_header_ok(ip));
    assert_eq!(ip[8], 64);
    assert_eq!(&ip[12..16], &VIP);
    assert_eq!(&ip[16..20], &CLIENT);
    let icmp = &out[34..];
    assert_eq!(icmp[0], 0);
    assert_eq!(ones_sum(0, icmp), 0xFFFF);
    assert_eq!(&icmp[4..], &f[38..]);

    // An echo to any other address is left to the kernel.
    let mut other = f.clone();
    other[33] = 101;
    assert_eq!(run(&mut bpf, &other).0, XDP_PASS);
    assert_eq!(stat(&bpf, Stat::PassIcmp), 1);
}
