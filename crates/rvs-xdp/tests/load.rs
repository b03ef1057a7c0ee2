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
    REAL_F_USABLE, SCHED_DH, SCHED_F_PORT, SCHED_MH, SCHED_SH, SCHED_UPCALL, TUN_GUE,
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

/// TCP/UDP checksum of an IPv4 packet is correct.
fn l4_v4_ok(ip: &[u8]) -> bool {
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let src = IpAddr::V4(v4(ip[12..16].try_into().unwrap()));
    let dst = IpAddr::V4(v4(ip[16..20].try_into().unwrap()));
    l4_sum(src, dst, ip[9], &ip[20..tot]) == 0xFFFF
}

/// TCP/UDP checksum of an IPv6 packet (no extension headers) is correct.
fn l4_v6_ok(ip: &[u8]) -> bool {
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let src = IpAddr::V6(<[u8; 16]>::try_from(&ip[8..24]).unwrap().into());
    let dst = IpAddr::V6(<[u8; 16]>::try_from(&ip[24..40]).unwrap().into());
    l4_sum(src, dst, ip[6], &ip[40..40 + plen]) == 0xFFFF
}

/// L4 checksum over the IPv4 or IPv6 pseudo header: 0xFFFF when correct.
fn l4_sum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u32 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&addr_octets(src));
    pseudo.extend_from_slice(&addr_octets(dst));
    pseudo.extend_from_slice(&u32::try_from(l4.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    ones_sum(ones_sum(0, &pseudo), l4)
}

fn addr_octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An IPv4 or IPv6 packet (no Ethernet) with valid checksums.
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let tot = u16::try_from(20 + l4.len()).unwrap();
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&tot.to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 63, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = !ones_sum(0, &ip) & 0xFFFF;
            ip[10..12].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ip.extend_from_slice(&[0x6A, 0xB1, 0x23, 0x45]);
            ip.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
            ip.extend_from_slice(&[proto, 63]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    ip.extend_from_slice(l4);
    ip
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ethertype_of(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        0x0800
    } else {
        0x86DD
    }
}

/// A TCP (flags given) or UDP segment with a valid checksum.
fn l4_segment(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    let ck_at = if proto == TCP {
        l4.extend_from_slice(&1000u32.to_be_bytes());
        l4.extend_from_slice(&(if flags & ACK != 0 { 5000u32 } else { 0 }).to_be_bytes());
        l4.extend_from_slice(&[0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
        16
    } else {
        l4.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        6
    };
    l4.extend_from_slice(payload);
    let c = !l4_sum(src, dst, proto, &l4) & 0xFFFF;
    l4[ck_at..ck_at + 2].copy_from_slice(&u16::try_from(c).unwrap().to_be_bytes());
    l4
}

/// An Ethernet frame of a TCP or UDP packet with valid checksums.
fn frame(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4 = l4_segment(src, sport, dst, dport, proto, flags, payload);
    eth(ethertype_of(src), &ip_packet(src, dst, proto, &l4))
}

fn tcp4(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    frame(
        IpAddr::V4(src),
        sport,
        IpAddr::V4(dst),
        dport,
        TCP,
        flags,
        payload,
    )
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

fn dr_real(index: u32) -> Real {
    let [hi, lo] = u16::try_from(index).unwrap().to_be_bytes();
    Real {
        addr: rvs_xdp::abi::addr_bytes(IpAddr::V4(v4([192, 168, hi, lo]))),
        family: 4,
        method: METHOD_DR,
        flags: REAL_F_USABLE,
        ifindex: LO_IFINDEX,
        dmac: [0x02, 0xEE, 0, 0, hi, lo],
        smac: LB_MAC,
        ..Default::default()
    }
}

/// The slot a frame was sent to, read back from the destination MAC of the
/// DR real that rvs_hash holds there (slot i holds real i).
fn slot_of(out: &[u8]) -> u32 {
    assert_eq!(&out[0..4], &[0x02, 0xEE, 0, 0]);
    u32::from(u16::from_be_bytes([out[4], out[5]]))
}

#[test]
fn sh_dh_mh_slots_match_rvs_core() {
    use rvs_core::sched::hash::{fold_addr, hash_32, hsiphash_u32};
    use rvs_core::sched::{mh, sh};
    use std::net::Ipv6Addr;
    if !is_root("sh_dh_mh_slots_match_rvs_core") {
        return;
    }
    let mut bpf = load();
    for i in 0..256 {
        set_real(&mut bpf, i, &dr_real(i));
    }
    {
        let mut hash: Array<_, u32> = Array::try_from(bpf.map_mut("rvs_hash").unwrap()).unwrap();
        // Three tables: sh (256 at 0), dh (256 at 256), mh (251 at 512).
        for i in 0..256 {
            hash.set(i, i, 0).unwrap();
            hash.set(256 + i, i, 0).unwrap();
        }
        for i in 0..251 {
            hash.set(512 + i, i, 0).unwrap();
        }
    }
    let vip4 = IpAddr::V4(v4(VIP));
    let vip6: IpAddr = "2001:db8::100".parse().unwrap();
    for vip_addr in [vip4, vip6] {
        let services = [
            (1000, SCHED_SH, 0, 0, 256, 8),
            (1001, SCHED_SH, SCHED_F_PORT, 0, 256, 8),
            (1002, SCHED_DH, 0, 256, 256, 8),
            (1003, SCHED_MH, 0, 512, 251, 0),
            (1004, SCHED_MH, SCHED_F_PORT, 512, 251, 0),
        ];
        for (port, sched, flags, off, size, bits) in services {
            let vip = Vip {
                sched,
                sched_flags: flags,
                method: METHOD_DR,
                table_off: off,
                table_size: size,
                table_bits: bits,
                ..Default::default()
            };
            set_vip(&mut bpf, &VipKey::new(vip_addr, port, UDP), &vip);
        }
        for n in 0u32..24 {
            let client = if vip_addr.is_ipv4() {
                IpAddr::V4(Ipv4Addr::from(
                    0x0A00_0001u32.wrapping_add(n.wrapping_mul(0x0101_0F07)),
                ))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    0x2001_0db8_0000_0000_0000_0000_0000_0001u128
                        + u128::from(n) * 0x1_0000_0F07_0000_0001,
                ))
            };
            let sport = u16::try_from(1024 + n * 2477).unwrap();
            for (port, sched, flags, _, size, bits) in services {
                let with_port = if flags == SCHED_F_PORT { sport } else { 0 };
                let want = match sched {
                    SCHED_SH => hash_32(sh::hash_key(client, with_port), bits),
                    SCHED_DH => hash_32(fold_addr(vip_addr), bits),
                    _ => hsiphash_u32(mh::hash_key(client, with_port, 0), &mh::HASH1_KEY) % size,
                };
                let f = frame(client, sport, vip_addr, port, UDP, 0, b"q");
                let (verdict, out) = run(&mut bpf, &f);
                assert_eq!(verdict, XDP_TX, "{client} -> {vip_addr}:{port}");
                assert_eq!(slot_of(&out), want, "{client}:{sport} -> {vip_addr}:{port}");
            }
        }
    }
    assert_eq!(stat(&bpf, Stat::XdpSched), 2 * 24 * 5);
    assert_eq!(stat(&bpf, Stat::FwdDr), 2 * 24 * 5);
}

#[test]
fn udp_nat_over_ipv6_keeps_checksums_valid() {
    if !is_root("udp_nat_over_ipv6_keeps_checksums_valid") {
        return;
    }
    let mut bpf = load();
    let client: IpAddr = "2001:db8:1::5".parse().unwrap();
    let vip: IpAddr = "2001:db8::100".parse().unwrap();
    let real_addr: IpAddr = "fd00::7:10".parse().unwrap();
    let real = Real {
        addr: rvs_xdp::abi::addr_bytes(real_addr),
        family: 6,
        method: METHOD_NAT,
        flags: REAL_F_USABLE,
        port_be: 5353u16.to_be(),
        ifindex: LO_IFINDEX,
        dmac: REAL_MAC,
        smac: LB_MAC,
        ..Default::default()
    };
    set_real(&mut bpf, 9, &real);
    let fkey = FlowKey::new(client, 40001, vip, 53, UDP);
    set_flow(
        &mut bpf,
        &fkey,
        &Flow {
            real: 9,
            method: METHOD_NAT,
            flags: FLOW_F_DNAT,
            new_daddr: real.addr,
            new_dport_be: real.port_be,
            ..Default::default()
        },
    );
    let rkey = FlowKey::new(real_addr, 5353, client, 40001, UDP);
    set_flow(
        &mut bpf,
        &rkey,
        &Flow {
            real: NO_REAL,
            method: METHOD_NAT,
            flags: FLOW_F_OUT | FLOW_F_SNAT,
            new_saddr: rvs_xdp::abi::addr_bytes(vip),
            new_sport_be: 53u16.to_be(),
            ifindex: LO_IFINDEX,
            dmac: CLIENT_MAC,
            smac: LB_MAC,
            ..Default::default()
        },
    );
    for payload in [&b"query"[..], b"", b"an odd-length payload"] {
        let f = frame(client, 40001, vip, 53, UDP, 0, payload);
        let (verdict, out) = run(&mut bpf, &f);
        assert_eq!(verdict, XDP_TX);
        let ip = &out[14..];
        assert_eq!(&ip[24..40], &addr_octets(real_addr)[..]);
        assert_eq!(&ip[42..44], &5353u16.to_be_bytes());
        assert_eq!(ip[7], 63, "hop limit unchanged");
        assert!(l4_v6_ok(ip));

        let r = frame(real_addr, 5353, client, 40001, UDP, 0, payload);
        let (verdict, out) = run(&mut bpf, &r);
        assert_eq!(verdict, XDP_TX);
        let ip = &out[14..];
        assert_eq!(&ip[8..24], &addr_octets(vip)[..]);
        assert_eq!(&ip[40..42], &53u16.to_be_bytes());
        assert!(l4_v6_ok(ip));
    }
    assert_eq!(stat(&bpf, Stat::FwdNat), 3);
    assert_eq!(stat(&bpf, Stat::FwdReply), 3);
    assert_eq!(get_flow(&bpf, &fkey).unwrap().packets, 3);
}

#[test]
fn ipv4_udp_without_checksum_keeps_zero_through_nat() {
    if !is_root("ipv4_udp_without_checksum_keeps_zero_through_nat") {
        return;
    }
    let mut bpf = load();
    let mut real = dr_real(2);
    real.method = METHOD_NAT;
    set_real(&mut bpf, 2, &real);
    let fkey = FlowKey::new(IpAddr::V4(v4(CLIENT)), 999, IpAddr::V4(v4(VIP)), 53, UDP);
    set_flow(
        &mut bpf,
        &fkey,
        &Flow {
            real: 2,
            method: METHOD_NAT,
            flags: FLOW_F_DNAT,
            new_daddr: real.addr,
            new_dport_be: 5300u16.to_be(),
            ..Default::default()
        },
    );
    let mut f = frame(
        IpAddr::V4(v4(CLIENT)),
        999,
        IpAddr::V4(v4(VIP)),
        53,
        UDP,
        0,
        b"abc",
    );
    f[40..42].copy_from_slice(&[0, 0]);
    let (verdict, out) = run(&mut bpf, &f);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(&out[40..42], &[0, 0]);
    assert_eq!(&out[36..38], &5300u16.to_be_bytes());
    assert!(ip4_header_ok(&out[14..34]));
}

#[test]
fn ipip_over_ipv6_carries_an_ipv4_flow() {
    if !is_root("ipip_over_ipv6_carries_an_ipv4_flow") {
        return;
    }
    let mut bpf = load();
    let saddr6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let cfg = Config {
        tun_saddr6: saddr6.octets(),
        ..Default::default()
    };
    {
        let mut config: Array<_, [u8; Config::SIZE]> =
            Array::try_from(bpf.map_mut("rvs_config").unwrap()).unwrap();
        config.set(0, cfg.to_bytes(), 0).unwrap();
    }
    let real_addr: IpAddr = "fd00::99".parse().unwrap();
    let real = Real {
        addr: rvs_xdp::abi::addr_bytes(real_addr),
        family: 6,
        method: METHOD_TUN,
        flags: REAL_F_USABLE,
        ifindex: LO_IFINDEX,
        dmac: REAL_MAC,
        smac: LB_MAC,
        ..Default::default()
    };
    set_real(&mut bpf, 4, &real);
    let fkey = FlowKey::new(IpAddr::V4(v4(CLIENT)), 40000, IpAddr::V4(v4(VIP)), 80, TCP);
    set_flow(
        &mut bpf,
        &fkey,
        &Flow {
            real: 4,
            method: METHOD_TUN,
            ..Default::default()
        },
    );
    let mut pkt = tcp4(v4(CLIENT), 40000, v4(VIP), 80, ACK, b"data");
    pkt[15] = 0xB8; // tos
    let inner = pkt[14..].to_vec();
    let (verdict, out) = run(&mut bpf, &pkt);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), 14 + 40 + inner.len());
    assert_eq!(&out[12..14], &[0x86, 0xDD]);
    let ip = &out[14..54];
    assert_eq!(ip[0], 0x6B, "version 6, traffic class 0xB8");
    assert_eq!(ip[1] >> 4, 0x8);
    assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), inner.len());
    assert_eq!(ip[6], 4, "IPv4 in IPv6");
    assert_eq!(ip[7], 64);
    assert_eq!(&ip[8..24], &saddr6.octets());
    assert_eq!(&ip[24..40], &addr_octets(real_addr)[..]);
    assert_eq!(&out[54..], &inner[..]);
    // The flow label is the flow hash of the key (docs/packet-plane.md).
    let mut h: u32 = 0x811C_9DC5;
    let mut words = Vec::new();
    for a in [fkey.saddr, fkey.daddr] {
        for w in a.chunks(4) {
            words.push(u32::from_be_bytes(w.try_into().unwrap()));
        }
    }
    words.push((40000 << 16) | 80);
    words.push(u32::from(TCP));
    for w in words {
        h = (h ^ w).wrapping_mul(0x0100_0193);
        h ^= h >> 16;
    }
    let label = (u32::from(ip[1] & 0x0F) << 16) | (u32::from(ip[2]) << 8) | u32::from(ip[3]);
    assert_eq!(label, h & 0xFFFFF);
}

#[test]
fn icmpv6_error_about_a_dr_flow_goes_to_its_real() {
    if !is_root("icmpv6_error_about_a_dr_flow_goes_to_its_real") {
        return;
    }
    let mut bpf = load();
    let client: IpAddr = "2001:db8:1::5".parse().unwrap();
    let vip: IpAddr = "2001:db8::100".parse().unwrap();
    let router: IpAddr = "2001:db8:ff::1".parse().unwrap();
    set_real(&mut bpf, 5, &dr_real(5));
    let fkey = FlowKey::new(client, 40000, vip, 443, TCP);
    set_flow(
        &mut bpf,
        &fkey,
        &Flow {
            real: 5,
            method: METHOD_DR,
            ..Default::default()
        },
    );
    // Packet too big from a router, quoting VIP:443 -> client:40000.
    let quoted_l4 = l4_segment(vip, 443, client, 40000, TCP, ACK, b"");
    let quoted = ip_packet(vip, client, TCP, &quoted_l4);
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted);
    let f = eth(0x86DD, &ip_packet(router, vip, 58, &icmp));
    let (verdict, out) = run(&mut bpf, &f);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(stat(&bpf, Stat::IcmpErrorFwd), 1);
    assert_eq!(&out[0..6], &dr_real(5).dmac);
    assert_eq!(&out[12..], &f[12..]);
    // The flow's counters are not touched.
    assert_eq!(get_flow(&bpf, &fkey).unwrap().packets, 0);

    // Quoting a connection rvs does not know: left to the kernel.
    let quoted_l4 = l4_segment(vip, 443, client, 40002, TCP, ACK, b"");
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&ip_packet(vip, client, TCP, &quoted_l4));
    let f = eth(0x86DD, &ip_packet(router, vip, 58, &icmp));
    assert_eq!(run(&mut bpf, &f).0, XDP_PASS);
    assert_eq!(stat(&bpf, Stat::PassIcmp), 1);
}

#[test]
fn bench_baselines_load_and_give_their_verdicts() {
    if !is_root("bench_baselines_load_and_give_their_verdicts") {
        return;
    }
    let mut bpf = Ebpf::load(rvs_xdp::BENCH_OBJECT).expect("load the bench object");
    let f = tcp4(v4(CLIENT), 1, v4(VIP), 2, ACK, b"");
    // Without bench_tx[0] the forwarder falls back to XDP_TX.
    for (name, want) in [("xdp_drop_all", XDP_DROP), ("xdp_redirect_peer", XDP_TX)] {
        let prog: &mut Xdp = bpf.program_mut(name).unwrap().try_into().unwrap();
        prog.load().expect("the verifier accepts it");
        let mut out = vec![0u8; 256];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(&f),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(res.return_value, want, "{name}");
    }
}
