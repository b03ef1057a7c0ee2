#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The reference engine against docs/packet-plane.md: frames are built here with
//! correct checksums, and every rewritten or encapsulated output is re-parsed with
//! etherparse, whose from-scratch checksums must equal the engine's incremental ones.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use proptest::prelude::*;
use rvs_xdp::abi::{self, addr_bytes, Config, Flow, FlowKey, Real, Stat, Vip, VipKey};
use rvs_xdp::engine::{
    apply, classify, entries_for, flow_hash, mark_entries, parse, process, update_checksum, Output,
    Tables, Verdict,
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
const IN_IF: u32 = 2;
const OUT_IF: u32 = 3;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

// ---------------------------------------------------------------- frame builder

#[derive(Clone, Copy, Debug)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 by the family; `rest` is the second 4-byte word.
    Icmp {
        kind: u8,
        code: u8,
        rest: [u8; 4],
    },
}

#[derive(Clone, Debug)]
struct Pkt {
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    saddr: IpAddr,
    daddr: IpAddr,
    tos: u8,
    df: bool,
    ttl: u8,
    l4: L4,
    payload: Vec<u8>,
}

fn ones_sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| (u32::from(c[0]) << 8) | u32::from(*c.get(1).unwrap_or(&0)))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(saddr: IpAddr, daddr: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (saddr, daddr) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            p.extend_from_slice(&addr_bytes(saddr));
            p.extend_from_slice(&addr_bytes(daddr));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

impl Pkt {
    fn new(saddr: IpAddr, daddr: IpAddr, l4: L4) -> Self {
        Pkt {
            eth_src: CLIENT_MAC,
            eth_dst: LB_MAC,
            saddr,
            daddr,
            tos: 0x28,
            df: true,
            ttl: 61,
            l4,
            payload: b"hello, rvs".to_vec(),
        }
    }
    fn tcp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, flags: u8) -> Self {
        Pkt::new(
            saddr,
            daddr,
            L4::Tcp {
                sport,
                dport,
                flags,
            },
        )
    }
    fn udp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16) -> Self {
        Pkt::new(saddr, daddr, L4::Udp { sport, dport })
    }
    fn is_v4(&self) -> bool {
        self.saddr.is_ipv4()
    }
    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } if self.is_v4() => 1,
            L4::Icmp { .. } => 58,
        }
    }

    /// The L4 segment with its checksum.
    fn segment(&self) -> Vec<u8> {
        let mut s = Vec::new();
        let check_at = match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                s.extend_from_slice(&sport.to_be_bytes());
                s.extend_from_slice(&dport.to_be_bytes());
                s.extend_from_slice(&0x0102_0304u32.to_be_bytes());
                s.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
                s.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
                16
            }
            L4::Udp { sport, dport } => {
                s.extend_from_slice(&sport.to_be_bytes());
                s.extend_from_slice(&dport.to_be_bytes());
                s.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                s.extend_from_slice(&[0, 0]);
                6
            }
            L4::Icmp { kind, code, rest } => {
                s.extend_from_slice(&[kind, code, 0, 0]);
                s.extend_from_slice(&rest);
                2
            }
        };
        s.extend_from_slice(&self.payload);
        let with_pseudo = !(self.is_v4() && matches!(self.l4, L4::Icmp { .. }));
        let mut sum = ones_sum(&s);
        if with_pseudo {
            sum += ones_sum(&pseudo(self.saddr, self.daddr, self.proto(), s.len()));
        }
        let mut c = fold(sum);
        if c == 0 && matches!(self.l4, L4::Udp { .. }) {
            c = 0xFFFF;
        }
        s[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
        s
    }

    /// The IP packet.
    fn ip(&self) -> Vec<u8> {
        let seg = self.segment();
        let mut ip = Vec::new();
        if self.is_v4() {
            let flags: u16 = if self.df { 0x4000 } else { 0 };
            ip.extend_from_slice(&[0x45, self.tos]);
            ip.extend_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            ip.extend_from_slice(&flags.to_be_bytes());
            ip.extend_from_slice(&[self.ttl, self.proto(), 0, 0]);
            ip.extend_from_slice(&addr_bytes(self.saddr)[..4]);
            ip.extend_from_slice(&addr_bytes(self.daddr)[..4]);
            let c = fold(ones_sum(&ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            let w0: u32 = (6 << 28) | (u32::from(self.tos) << 20) | 0x12345;
            ip.extend_from_slice(&w0.to_be_bytes());
            ip.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[self.proto(), self.ttl]);
            ip.extend_from_slice(&addr_bytes(self.saddr));
            ip.extend_from_slice(&addr_bytes(self.daddr));
        }
        ip.extend_from_slice(&seg);
        ip
    }

    fn frame(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        f.extend_from_slice(if self.is_v4() {
            &[0x08, 0x00]
        } else {
            &[0x86, 0xdd]
        });
        f.extend_from_slice(&self.ip());
        f
    }
}

/// Re-parses an Ethernet frame with etherparse and checks the IPv4 header and
/// L4 checksums against etherparse's own from-scratch computation. Returns the
/// headers for further checks.
fn assert_checksums(frame: &[u8]) -> PacketHeaders<'_> {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the frame");
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), t) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match t {
                Some(TransportHeader::Tcp(tcp)) => {
                    assert_eq!(
                        tcp.checksum,
                        tcp.calc_checksum_ipv4(ip, payload).unwrap(),
                        "TCP"
                    )
                }
                Some(TransportHeader::Udp(udp)) if udp.checksum != 0 => {
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv4(ip, payload).unwrap(),
                        "UDP"
                    )
                }
                Some(TransportHeader::Icmpv4(icmp)) => {
                    assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(payload), "ICMP")
                }
                _ => {}
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), t) => match t {
            Some(TransportHeader::Tcp(tcp)) => {
                assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv6(ip, payload).unwrap(),
                    "TCP6"
                )
            }
            Some(TransportHeader::Udp(udp)) if udp.checksum != 0 => {
                assert_eq!(
                    udp.checksum,
                    udp.calc_checksum_ipv6(ip, payload).unwrap(),
                    "UDP6"
                )
            }
            Some(TransportHeader::Icmpv6(icmp)) => assert_eq!(
                icmp.checksum,
                icmp.icmp_type
                    .calc_checksum(ip.source, ip.destination, payload)
                    .unwrap(),
                "ICMPv6"
            ),
            _ => {}
        },
        other => panic!("not an IP frame: {other:?}"),
    }
    h
}

#[test]
fn builder_frames_are_valid() {
    for p in [
        Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN),
        Pkt::udp(v6("2001:db8::1"), 5353, v6("2001:db8:1::10"), 53),
        Pkt::new(
            v6("2001:db8::1"),
            v6("2001:db8:1::10"),
            L4::Icmp {
                kind: 128,
                code: 0,
                rest: [0, 1, 0, 2],
            },
        ),
    ] {
        assert_checksums(&p.frame());
    }
}

// ---------------------------------------------------------------- tables

fn real(addr: IpAddr, method: u8) -> Real {
    Real {
        addr: addr_bytes(addr),
        family: abi::family_of(addr),
        method,
        tun_type: abi::TUN_IPIP,
        flags: abi::REAL_F_USABLE,
        port_be: 8080u16.to_be(),
        gue_port_be: 6080u16.to_be(),
        ifindex: OUT_IF,
        dmac: HOP_MAC,
        smac: OUT_MAC,
    }
}

fn config() -> Config {
    Config {
        upcall_rate: 0,
        upcall_burst: 0,
        tun_saddr4: [192, 0, 2, 0],
        tun_saddr6: addr_bytes(v6("2001:db8:ffff::1")),
        tun_spread_bits: 8,
        gue_sport_base: 49152,
        gue_sport_span: 16384,
    }
}

/// Tables with one real at index 7 and a flow from `p` to it.
fn with_flow(p: &Pkt, r: Real) -> (Tables, FlowKey) {
    let mut t = Tables {
        config: config(),
        ..Tables::default()
    };
    t.reals.insert(7, r);
    let parsed = parse(&p.frame()).unwrap();
    let entries = entries_for(&parsed, 7, &r, parsed.daddr, parsed.dport, IN_IF, 1);
    for (k, e) in entries {
        t.flows.insert(k, e);
    }
    (t, parsed.flow_key())
}

fn stat(t: &Tables, s: Stat) -> u64 {
    t.stats[s as usize]
}

/// Asserts RX and exactly the given counters, each once.
fn assert_counted(t: &Tables, want: &[Stat]) {
    for s in Stat::ALL {
        let expect = u64::from(s == Stat::Rx || want.contains(&s));
        assert_eq!(stat(t, s), expect, "counter {}", s.name());
    }
}

fn run(t: &mut Tables, p: &Pkt) -> Output {
    process(t, &p.frame(), IN_IF, 1_000)
}

// ---------------------------------------------------------------- DR, NAT, FullNAT

#[test]
fn dr_rewrites_only_macs_and_chooses_tx_or_redirect() {
    let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK);
    let (mut t, _) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_DR));
    let out = run(&mut t, &p);
    assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
    let mut want = p.frame();
    want[..6].copy_from_slice(&HOP_MAC);
    want[6..12].copy_from_slice(&OUT_MAC);
    assert_eq!(out.frame, want);
    assert_counted(&t, &[Stat::FwdDr, Stat::Notify]); // first ACK: F_NOTIFY_ACK

    // The real behind the ingress interface: XDP_TX.
    let mut r = real(v4("10.2.0.5"), abi::METHOD_DR);
    r.ifindex = IN_IF;
    let (mut t, _) = with_flow(&p, r);
    assert_eq!(run(&mut t, &p).verdict, Verdict::Tx);
    assert_eq!(Verdict::Tx.xdp_action(), 3);
    assert_eq!(Verdict::Redirect(9).xdp_action(), 4);
    assert_eq!(Verdict::Upcall.xdp_action(), 1);
}

#[test]
fn nat_in_and_reply_are_rewritten_with_valid_checksums() {
    for (client, vip, rip) in [
        (v4("10.0.0.1"), v4("10.1.0.10"), v4("10.2.0.5")),
        (v6("2001:db8::1"), v6("2001:db8:1::10"), v6("2001:db8:2::5")),
    ] {
        for tcp in [true, false] {
            let pkt = |s, sp, d, dp| {
                if tcp {
                    Pkt::tcp(s, sp, d, dp, ACK | PSH)
                } else {
                    Pkt::udp(s, sp, d, dp)
                }
            };
            let p = pkt(client, 40000, vip, 80);
            let (mut t, key) = with_flow(&p, real(rip, abi::METHOD_NAT));
            let out = run(&mut t, &p);
            assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
            let h = assert_checksums(&out.frame);
            let mut want = p.clone();
            want.daddr = rip;
            want.eth_dst = HOP_MAC;
            want.eth_src = OUT_MAC;
            if let L4::Tcp { dport, .. } | L4::Udp { dport, .. } = &mut want.l4 {
                *dport = 8080;
            }
            assert_eq!(out.frame, want.frame(), "in: {h:?}");
            assert_eq!(stat(&t, Stat::FwdNat), 1);
            let e = t.flows[&key];
            if tcp {
                assert_eq!(e.flags, abi::FLOW_F_DNAT, "NOTIFY_ACK cleared by the ACK");
                assert_eq!(
                    (e.packets, e.bytes),
                    (0, 0),
                    "a notified packet is not counted"
                );
            } else {
                assert_eq!(
                    (e.packets, e.bytes),
                    (1, u64::from(parse(&p.frame()).unwrap().ip_len))
                );
            }

            // The reply from the real goes back to the client from the VIP.
            let mut r = pkt(rip, 8080, client, 40000);
            r.eth_src = OUT_MAC;
            r.eth_dst = [0x02, 0, 0, 0, 0, 0x09];
            let out = process(&mut t, &r.frame(), OUT_IF, 2_000);
            assert_eq!(out.verdict, Verdict::Redirect(IN_IF));
            assert_checksums(&out.frame);
            let mut want = r.clone();
            want.saddr = vip;
            want.eth_dst = CLIENT_MAC;
            want.eth_src = LB_MAC;
            if let L4::Tcp { sport, .. } | L4::Udp { sport, .. } = &mut want.l4 {
                *sport = 80;
            }
            assert_eq!(out.frame, want.frame());
            assert_eq!(stat(&t, Stat::FwdReply), 1);
        }
    }
}

#[test]
fn udp_v4_without_checksum_keeps_zero() {
    let p = Pkt::udp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 53);
    let mut f = p.frame();
    f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let (mut t, _) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_NAT));
    let out = process(&mut t, &f, IN_IF, 5);
    assert_eq!(&out.frame[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
    assert_eq!(&out.frame[14 + 16..14 + 20], &[10, 2, 0, 5]);
    assert_checksums(&out.frame);
}

#[test]
fn fullnat_rewrites_both_ends_both_ways() {
    let (client, vip, local, rip) = (
        v4("10.0.0.1"),
        v4("10.1.0.10"),
        v4("10.3.0.1"),
        v4("10.2.0.5"),
    );
    let p = Pkt::tcp(client, 40000, vip, 80, ACK);
    let r = real(rip, abi::METHOD_FNAT);
    let (mut t, key) = with_flow(&p, r);
    // Userspace adds the local address and the reply entry.
    let e = t.flows.get_mut(&key).unwrap();
    assert_eq!(e.flags, abi::FLOW_F_NOTIFY_ACK | abi::FLOW_F_DNAT);
    e.flags |= abi::FLOW_F_SNAT;
    e.new_saddr = addr_bytes(local);
    e.new_sport_be = 50001u16.to_be();
    assert_eq!(t.flows.len(), 1, "no XDP reply entry for FullNAT");
    t.flows.insert(
        FlowKey::new(rip, 8080, local, 50001, 6),
        Flow {
            new_saddr: addr_bytes(vip),
            new_sport_be: 80u16.to_be(),
            new_daddr: addr_bytes(client),
            new_dport_be: 40000u16.to_be(),
            real: abi::NO_REAL,
            ifindex: IN_IF,
            dmac: CLIENT_MAC,
            smac: LB_MAC,
            method: abi::METHOD_FNAT,
            flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
            ..Flow::default()
        },
    );
    let out = run(&mut t, &p);
    assert_checksums(&out.frame);
    let mut want = Pkt::tcp(local, 50001, rip, 8080, ACK);
    want.eth_dst = HOP_MAC;
    want.eth_src = OUT_MAC;
    assert_eq!(out.frame, want.frame());
    assert_eq!(stat(&t, Stat::FwdFnat), 1);

    let mut back = Pkt::tcp(rip, 8080, local, 50001, ACK);
    back.eth_src = HOP_MAC;
    let out = process(&mut t, &back.frame(), OUT_IF, 9);
    assert_eq!(out.verdict, Verdict::Redirect(IN_IF));
    assert_checksums(&out.frame);
    let mut want = Pkt::tcp(vip, 80, client, 40000, ACK);
    want.eth_dst = CLIENT_MAC;
    want.eth_src = LB_MAC;
    assert_eq!(out.frame, want.frame());
}

// ---------------------------------------------------------------- tunnels

fn be16(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

/// Checks the outer IPv4 header and returns (inner offset, outer header).
fn check_outer_v4(out: &[u8], inner: &[u8], proto: u8, udp: usize) -> [u8; 20] {
    assert_eq!(be16(out, 12), 0x0800);
    let hdr: [u8; 20] = out[14..34].try_into().unwrap();
    assert_eq!(hdr[0], 0x45);
    assert_eq!(be16(&hdr, 2) as usize, 20 + udp + inner.len());
    assert_eq!(be16(&hdr, 4), 0, "id 0");
    assert_eq!(hdr[8], 64, "ttl 64");
    assert_eq!(hdr[9], proto);
    assert_eq!(&hdr[16..20], &[10, 2, 0, 5]);
    assert_eq!(fold(ones_sum(&hdr)), 0, "outer IPv4 checksum");
    assert_eq!(
        &out[14 + 20 + udp..],
        inner,
        "the inner IP packet follows unchanged"
    );
    hdr
}

fn tun_real(addr: IpAddr, gue: bool) -> Real {
    let mut r = real(addr, abi::METHOD_TUN);
    if gue {
        r.tun_type = abi::TUN_GUE;
    }
    r
}

#[test]
fn ipip_v4_in_v4_and_v6_in_v4() {
    for (p, proto, df) in [
        (
            Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK),
            4u8,
            true,
        ),
        (
            Pkt {
                df: false,
                ..Pkt::udp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 53)
            },
            4,
            false,
        ),
        (
            Pkt::tcp(v6("2001:db8::1"), 40000, v6("2001:db8:1::10"), 80, ACK),
            41,
            true,
        ),
    ] {
        let (mut t, key) = with_flow(&p, tun_real(v4("10.2.0.5"), false));
        // Ethernet padding after the IP packet is dropped.
        let mut f = p.frame();
        f.extend_from_slice(&[0xEE; 6]);
        let out = process(&mut t, &f, IN_IF, 7);
        assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
        assert_eq!(&out.frame[..12], &[HOP_MAC, OUT_MAC].concat());
        let inner = p.ip();
        let hdr = check_outer_v4(&out.frame, &inner, proto, 0);
        assert_eq!(hdr[1], 0x28, "tos from the inner packet");
        assert_eq!(be16(&hdr, 6), if df { 0x4000 } else { 0 }, "DF rule");
        let h = flow_hash(&key);
        assert_eq!(&hdr[12..15], &[192, 0, 2], "high bits of tun_saddr4");
        assert_eq!(hdr[15], (h & 0xFF) as u8, "spread bits from the flow hash");
        assert_eq!(stat(&t, Stat::FwdTun), 1);
    }
}

#[test]
fn ipip_v4_in_v6_and_v6_in_v6() {
    for (p, proto) in [
        (
            Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK),
            4u8,
        ),
        (
            Pkt::udp(v6("2001:db8::1"), 40000, v6("2001:db8:1::10"), 53),
            41,
        ),
    ] {
        let rip = v6("2001:db8:2::5");
        let (mut t, key) = with_flow(&p, tun_real(rip, false));
        let out = run(&mut t, &p);
        let f = &out.frame;
        assert_eq!(be16(f, 12), 0x86DD);
        let w0 = u32::from_be_bytes(f[14..18].try_into().unwrap());
        assert_eq!(w0 >> 28, 6);
        assert_eq!(
            (w0 >> 20) & 0xFF,
            0x28,
            "traffic class from the inner tos/tc"
        );
        assert_eq!(w0 & 0xF_FFFF, flow_hash(&key) & 0xF_FFFF, "flow label");
        let inner = p.ip();
        assert_eq!(be16(f, 18) as usize, inner.len());
        assert_eq!(f[20], proto);
        assert_eq!(f[21], 64);
        assert_eq!(&f[22..38], &addr_bytes(v6("2001:db8:ffff::1")));
        assert_eq!(&f[38..54], &addr_bytes(rip));
        assert_eq!(&f[54..], &inner[..]);
    }
}

#[test]
fn gue_ports_lengths_df_and_spread() {
    for p in [
        Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK),
        Pkt::tcp(v6("2001:db8::1"), 40001, v6("2001:db8:1::10"), 80, ACK),
        Pkt {
            df: false,
            ..Pkt::udp(v4("10.0.0.9"), 999, v4("10.1.0.10"), 53)
        },
    ] {
        for spread in [0u32, 4, 16] {
            let (mut t, key) = with_flow(&p, tun_real(v4("10.2.0.5"), true));
            t.config.tun_spread_bits = spread;
            let out = run(&mut t, &p);
            let inner = p.ip();
            let hdr = check_outer_v4(&out.frame, &inner, 17, 8);
            let inner_df = !p.is_v4() || p.df;
            assert_eq!(be16(&hdr, 6), if inner_df { 0x4000 } else { 0 });
            let h = flow_hash(&key);
            let mask = (1u32 << spread) - 1;
            let src = u32::from_be_bytes(hdr[12..16].try_into().unwrap());
            assert_eq!(src & !mask, 0xC000_0200 & !mask);
            assert_eq!(src & mask, h & mask);
            let udp = &out.frame[34..42];
            assert_eq!(be16(udp, 0), 49152 + (h % 16384) as u16);
            assert_eq!(be16(udp, 2), 6080);
            assert_eq!(be16(udp, 4) as usize, 8 + inner.len());
            assert_eq!(be16(udp, 6), 0, "GUE checksum 0");
        }
    }
    // A span of 0 is 1, and the source port wraps in 16 bits.
    let p = Pkt::udp(v4("10.0.0.9"), 999, v4("10.1.0.10"), 53);
    let (mut t, _) = with_flow(&p, tun_real(v4("10.2.0.5"), true));
    t.config.gue_sport_span = 0;
    t.config.gue_sport_base = 65535;
    let out = run(&mut t, &p);
    assert_eq!(be16(&out.frame, 34), 65535);
}

#[test]
fn encapsulation_over_1514_bytes_is_too_big() {
    let mut p = Pkt::udp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 53);
    // 14 + 20 + 8 + payload = 1514: a full frame, no room for 20 more bytes.
    p.payload = vec![7; 1514 - 42];
    let (mut t, _) = with_flow(&p, tun_real(v4("10.2.0.5"), false));
    let out = run(&mut t, &p);
    assert_eq!(out.verdict, Verdict::Drop);
    assert_eq!(out.frame, p.frame());
    assert_counted(&t, &[Stat::DropTooBig]);
    // 20 bytes less fits exactly.
    p.payload.truncate(1514 - 42 - 20);
    let (mut t, _) = with_flow(&p, tun_real(v4("10.2.0.5"), false));
    assert_eq!(run(&mut t, &p).frame.len(), 1514);
}

// ---------------------------------------------------------------- ICMP

#[test]
fn echo_requests_to_a_vip_address_are_answered() {
    for (client, vip, kind, reply) in [
        (v4("10.0.0.1"), v4("10.1.0.10"), 8u8, 0u8),
        (v6("2001:db8::1"), v6("2001:db8:1::10"), 128, 129),
    ] {
        let rest = [0x12, 0x34, 0, 1];
        let p = Pkt::new(
            client,
            vip,
            L4::Icmp {
                kind,
                code: 0,
                rest,
            },
        );
        let mut t = Tables::default();
        let out = run(&mut t, &p);
        assert_eq!(out.verdict, Verdict::Pass, "not a VIP address");
        assert_counted(&t, &[Stat::PassIcmp]);

        t.vip_addrs.insert(VipKey::new(vip, 0, 0));
        t.stats = Default::default();
        let out = run(&mut t, &p);
        assert_eq!(out.verdict, Verdict::Tx);
        assert_counted(&t, &[Stat::IcmpEcho]);
        assert_checksums(&out.frame);
        let mut want = Pkt::new(
            vip,
            client,
            L4::Icmp {
                kind: reply,
                code: 0,
                rest,
            },
        );
        want.eth_src = LB_MAC;
        want.eth_dst = CLIENT_MAC;
        want.ttl = 64;
        assert_eq!(out.frame, want.frame());
    }
}

/// An ICMP error from a router on the way to the client, quoting a packet of the
/// flow `real -> client` as sent by the VIP.
fn icmp_error(quoted: &Pkt, kind: u8, code: u8) -> Pkt {
    let mut p = Pkt::new(
        if quoted.is_v4() {
            v4("192.0.2.99")
        } else {
            v6("2001:db8:99::1")
        },
        quoted.saddr,
        L4::Icmp {
            kind,
            code,
            rest: [0, 0, 0x05, 0xdc],
        },
    );
    p.payload = quoted.ip();
    p
}

#[test]
fn frag_needed_is_forwarded_to_the_flows_dr_real() {
    let (client, vip) = (v4("10.0.0.1"), v4("10.1.0.10"));
    let p = Pkt::tcp(client, 40000, vip, 80, ACK);
    let (mut t, _) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_DR));
    let quoted = Pkt::tcp(vip, 80, client, 40000, ACK);
    let err = icmp_error(&quoted, 3, 4);
    let out = run(&mut t, &err);
    assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
    let mut want = err.frame();
    want[..6].copy_from_slice(&HOP_MAC);
    want[6..12].copy_from_slice(&OUT_MAC);
    assert_eq!(out.frame, want);
    assert_counted(&t, &[Stat::IcmpErrorFwd]);

    // Another flow's quote, an ICMP type the program ignores, and a cut quote pass.
    for e in [
        icmp_error(&Pkt::tcp(vip, 80, client, 40001, ACK), 3, 4),
        icmp_error(&quoted, 5, 0),
        {
            let mut e = icmp_error(&quoted, 3, 4);
            e.payload.truncate(22);
            e
        },
    ] {
        let mut t2 = t.clone();
        t2.stats = Default::default();
        assert_eq!(run(&mut t2, &e).verdict, Verdict::Pass);
        assert_counted(&t2, &[Stat::PassIcmp]);
    }
}

#[test]
fn icmpv6_too_big_is_encapsulated_with_the_flows_hash() {
    let (client, vip) = (v6("2001:db8::1"), v6("2001:db8:1::10"));
    let p = Pkt::udp(client, 40000, vip, 53);
    let (mut t, key) = with_flow(&p, tun_real(v4("10.2.0.5"), false));
    let err = icmp_error(&Pkt::udp(vip, 53, client, 40000), 2, 0);
    let out = run(&mut t, &err);
    let hdr = check_outer_v4(&out.frame, &err.ip(), 41, 0);
    assert_eq!(u32::from(hdr[15]), flow_hash(&key) & 0xFF);
    assert_counted(&t, &[Stat::IcmpErrorFwd]);
}

// ------------------------------------------------- ICMP errors of NAT and FullNAT

/// Asserts, computing each from scratch, that every checksum of an ICMP error
/// frame verifies: the outer IPv4 header, ICMP (over the message) or ICMPv6
/// (with its pseudo header), and the quoted IPv4 header.
fn assert_icmp_error_checksums(f: &[u8]) {
    if be16(f, 12) == 0x0800 {
        assert_eq!(fold(ones_sum(&f[14..34])), 0, "outer IPv4 header checksum");
        let end = 14 + usize::from(be16(f, 16));
        let icmp = &f[34..end];
        assert_eq!(fold(ones_sum(icmp)), 0, "ICMP checksum");
        let quote = &icmp[8..];
        assert_eq!(quote[0], 0x45);
        assert_eq!(
            fold(ones_sum(&quote[..20])),
            0,
            "quoted IPv4 header checksum"
        );
    } else {
        assert_eq!(be16(f, 12), 0x86DD);
        let len = usize::from(be16(f, 18));
        let icmp = &f[54..54 + len];
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap()));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()));
        let sum = ones_sum(&pseudo(src, dst, 58, len)) + ones_sum(icmp);
        assert_eq!(fold(sum), 0, "ICMPv6 checksum (pseudo header included)");
    }
}

/// The IP packet of `new` carrying the L4 checksum of `orig`: a rewritten quote
/// (the program leaves the quoted L4 checksum as it was).
fn quote_with_checksum_of(new: &Pkt, orig: &Pkt) -> Vec<u8> {
    let mut ip = new.ip();
    let hlen = if new.is_v4() { 20 } else { 40 };
    let at = hlen
        + if matches!(new.l4, L4::Tcp { .. }) {
            16
        } else {
            6
        };
    ip[at..at + 2].copy_from_slice(&orig.ip()[at..at + 2]);
    ip
}

/// An ICMP error `from -> to` quoting `quoted`: destination unreachable code
/// `code` (IPv4) or ICMPv6 type `kind6` code `code6`.
fn error_about(from: IpAddr, to: IpAddr, quoted: &Pkt, code: u8, kind6: u8, code6: u8) -> Pkt {
    let (kind, code) = if from.is_ipv4() {
        (3, code)
    } else {
        (kind6, code6)
    };
    let mut p = Pkt::new(
        from,
        to,
        L4::Icmp {
            kind,
            code,
            rest: [0, 0, 0x05, 0x14],
        },
    );
    p.payload = quoted.ip();
    p
}

/// The expected output, built from scratch: `err` with new outer addresses and
/// quote, and the Ethernet header (destination, source) of the way out.
fn rewritten_error(
    err: &Pkt,
    saddr: IpAddr,
    daddr: IpAddr,
    quote: Vec<u8>,
    eth: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let mut want = err.clone();
    want.saddr = saddr;
    want.daddr = daddr;
    want.payload = quote;
    want.eth_dst = eth.0;
    want.eth_src = eth.1;
    want.frame()
}

fn with_ports(p: &Pkt, sport: Option<u16>, dport: Option<u16>) -> Pkt {
    let mut p = p.clone();
    if let L4::Tcp {
        sport: s, dport: d, ..
    }
    | L4::Udp { sport: s, dport: d } = &mut p.l4
    {
        *s = sport.unwrap_or(*s);
        *d = dport.unwrap_or(*d);
    }
    p
}

/// A TCP (ACK) or UDP packet.
fn tcp_or_udp(tcp: bool, s: IpAddr, sp: u16, d: IpAddr, dp: u16) -> Pkt {
    if tcp {
        Pkt::tcp(s, sp, d, dp, ACK)
    } else {
        Pkt::udp(s, sp, d, dp)
    }
}

/// Case 1 of the contract (the kernel's ip_vs_in_icmp with NAT): a router on
/// the client's side says "fragmentation needed" / "packet too big" about a
/// reply VIP:80 -> client:40000; it goes to the real server with the real's
/// address as its destination and as the quote's source, and the real's port
/// as the quote's source port. The outer source stays.
#[test]
fn nat_inbound_error_goes_to_the_real_with_its_address_in_the_quote() {
    for (client, vip, rip, router) in [
        (
            v4("10.0.0.1"),
            v4("10.1.0.10"),
            v4("10.2.0.5"),
            v4("192.0.2.99"),
        ),
        (
            v6("2001:db8::1"),
            v6("2001:db8:1::10"),
            v6("2001:db8:2::5"),
            v6("2001:db8:99::1"),
        ),
    ] {
        for tcp in [true, false] {
            let flow = tcp_or_udp(tcp, client, 40000, vip, 80);
            let (mut t, _) = with_flow(&flow, real(rip, abi::METHOD_NAT));
            let quoted = tcp_or_udp(tcp, vip, 80, client, 40000);
            let err = error_about(router, vip, &quoted, 4, 2, 0);
            let out = run(&mut t, &err);
            let case = format!("v4={} tcp={tcp}", client.is_ipv4());
            assert_eq!(out.verdict, Verdict::Redirect(OUT_IF), "{case}");
            assert_counted(&t, &[Stat::IcmpErrorFwd]);
            assert_icmp_error_checksums(&out.frame);
            let mut new_quote = with_ports(&quoted, Some(8080), None);
            new_quote.saddr = rip;
            let want = rewritten_error(
                &err,
                router,
                rip,
                quote_with_checksum_of(&new_quote, &quoted),
                (HOP_MAC, OUT_MAC),
            );
            assert_eq!(out.frame, want, "{case}");
        }
    }
}

/// Case 2 (ip_vs_out_icmp with NAT): the real server's own "port unreachable"
/// (or a router's error between director and real) about client:40000 ->
/// real:8080 goes back to the client from the VIP, quoting client:40000 ->
/// VIP:80, out of the reply entry's interface.
#[test]
fn nat_outbound_error_goes_to_the_client_from_the_vip() {
    for (client, vip, rip, router) in [
        (
            v4("10.0.0.1"),
            v4("10.1.0.10"),
            v4("10.2.0.5"),
            v4("10.2.0.254"),
        ),
        (
            v6("2001:db8::1"),
            v6("2001:db8:1::10"),
            v6("2001:db8:2::5"),
            v6("2001:db8:2::fe"),
        ),
    ] {
        for tcp in [true, false] {
            for from in [rip, router] {
                let flow = tcp_or_udp(tcp, client, 40000, vip, 80);
                let (mut t, _) = with_flow(&flow, real(rip, abi::METHOD_NAT));
                let quoted = tcp_or_udp(tcp, client, 40000, rip, 8080);
                let mut err = error_about(from, client, &quoted, 3, 1, 4);
                err.eth_src = HOP_MAC;
                err.eth_dst = OUT_MAC;
                let out = process(&mut t, &err.frame(), OUT_IF, 5);
                let case = format!("v4={} tcp={tcp} from={from}", client.is_ipv4());
                assert_eq!(out.verdict, Verdict::Redirect(IN_IF), "{case}");
                assert_counted(&t, &[Stat::IcmpErrorFwd]);
                assert_icmp_error_checksums(&out.frame);
                let mut new_quote = with_ports(&quoted, None, Some(80));
                new_quote.daddr = vip;
                let want = rewritten_error(
                    &err,
                    vip,
                    client,
                    quote_with_checksum_of(&new_quote, &quoted),
                    (CLIENT_MAC, LB_MAC),
                );
                assert_eq!(out.frame, want, "{case}");
            }
        }
    }
}

/// Case 3 (FullNAT, an rvs extension): the in entry and the reply entry
/// change both ends of the outer header and of the quote.
#[test]
fn fullnat_errors_are_rewritten_both_ways() {
    for (client, vip, local, rip, router) in [
        (
            v4("10.0.0.1"),
            v4("10.1.0.10"),
            v4("10.3.0.1"),
            v4("10.2.0.5"),
            v4("192.0.2.99"),
        ),
        (
            v6("2001:db8::1"),
            v6("2001:db8:1::10"),
            v6("2001:db8:3::1"),
            v6("2001:db8:2::5"),
            v6("2001:db8:99::1"),
        ),
    ] {
        for tcp in [true, false] {
            let flow = tcp_or_udp(tcp, client, 40000, vip, 80);
            let (mut t, key) = with_flow(&flow, real(rip, abi::METHOD_FNAT));
            let e = t.flows.get_mut(&key).unwrap();
            e.flags |= abi::FLOW_F_SNAT;
            e.new_saddr = addr_bytes(local);
            e.new_sport_be = 50001u16.to_be();
            t.flows.insert(
                FlowKey::new(rip, 8080, local, 50001, flow.proto()),
                Flow {
                    new_saddr: addr_bytes(vip),
                    new_sport_be: 80u16.to_be(),
                    new_daddr: addr_bytes(client),
                    new_dport_be: 40000u16.to_be(),
                    real: abi::NO_REAL,
                    ifindex: IN_IF,
                    dmac: CLIENT_MAC,
                    smac: LB_MAC,
                    method: abi::METHOD_FNAT,
                    flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
                    ..Flow::default()
                },
            );
            let case = format!("v4={} tcp={tcp}", client.is_ipv4());

            // In: about a reply VIP:80 -> client:40000, from the client's side.
            let quoted = tcp_or_udp(tcp, vip, 80, client, 40000);
            let err = error_about(router, vip, &quoted, 4, 2, 0);
            let mut t_in = t.clone();
            let out = run(&mut t_in, &err);
            assert_eq!(out.verdict, Verdict::Redirect(OUT_IF), "{case}");
            assert_counted(&t_in, &[Stat::IcmpErrorFwd]);
            assert_icmp_error_checksums(&out.frame);
            let new_quote = tcp_or_udp(tcp, rip, 8080, local, 50001);
            let want = rewritten_error(
                &err,
                local,
                rip,
                quote_with_checksum_of(&new_quote, &quoted),
                (HOP_MAC, OUT_MAC),
            );
            assert_eq!(out.frame, want, "in {case}");

            // Out: the real server's error about local:50001 -> real:8080.
            let quoted = tcp_or_udp(tcp, local, 50001, rip, 8080);
            let mut err = error_about(rip, local, &quoted, 3, 1, 4);
            err.eth_src = HOP_MAC;
            let mut t_out = t.clone();
            let out = process(&mut t_out, &err.frame(), OUT_IF, 5);
            assert_eq!(out.verdict, Verdict::Redirect(IN_IF), "{case}");
            assert_counted(&t_out, &[Stat::IcmpErrorFwd]);
            assert_icmp_error_checksums(&out.frame);
            let new_quote = tcp_or_udp(tcp, client, 40000, vip, 80);
            let want = rewritten_error(
                &err,
                vip,
                client,
                quote_with_checksum_of(&new_quote, &quoted),
                (CLIENT_MAC, LB_MAC),
            );
            assert_eq!(out.frame, want, "out {case}");
        }
    }
}

/// What stays as it was: a quote too short for its ports, or with IPv4
/// options, passes; an entry whose real is gone drops the frame unchanged; a
/// wrong ICMP checksum stays exactly as wrong (updates are incremental).
#[test]
fn nat_errors_with_short_quotes_options_or_no_real() {
    let (client, vip, rip) = (v4("10.0.0.1"), v4("10.1.0.10"), v4("10.2.0.5"));
    let flow = Pkt::udp(client, 40000, vip, 53);
    let (t, _) = with_flow(&flow, real(rip, abi::METHOD_NAT));
    let quoted = Pkt::udp(vip, 53, client, 40000);
    let err = error_about(v4("192.0.2.99"), vip, &quoted, 4, 2, 0);

    let mut short = err.clone();
    short.payload.truncate(23);
    let mut t1 = t.clone();
    assert_eq!(run(&mut t1, &short).verdict, Verdict::Pass);
    assert_counted(&t1, &[Stat::PassIcmp]);
    short.payload = quoted.ip();
    short.payload.truncate(24);
    let mut t1 = t.clone();
    let out = run(&mut t1, &short);
    assert_eq!(
        out.verdict,
        Verdict::Redirect(OUT_IF),
        "the ports are enough"
    );
    assert_icmp_error_checksums(&out.frame);
    assert_eq!(&out.frame[42 + 12..42 + 16], &[10, 2, 0, 5]);
    assert_eq!(be16(&out.frame, 42 + 20), 8080);

    let mut options = err.clone();
    let mut q = quoted.ip();
    q[0] = 0x46;
    q.splice(20..20, [1, 1, 1, 1]);
    options.payload = q;
    let mut t1 = t.clone();
    assert_eq!(run(&mut t1, &options).verdict, Verdict::Pass);
    assert_counted(&t1, &[Stat::PassIcmp]);

    let mut gone = t.clone();
    gone.reals.clear();
    let out = run(&mut gone, &err);
    assert_eq!(out.verdict, Verdict::Drop);
    assert_eq!(out.frame, err.frame());
    assert_counted(&gone, &[Stat::DropMalformed]);

    // An ICMP checksum off by one stays off by one; nothing else differs.
    let mut f = err.frame();
    let at = 14 + 20 + 2;
    let bad = be16(&f, at).wrapping_add(1);
    f[at..at + 2].copy_from_slice(&bad.to_be_bytes());
    let out = process(&mut t.clone(), &f, IN_IF, 1);
    let good = run(&mut t.clone(), &err).frame;
    assert_eq!(fold(ones_sum(&good[34..])), 0);
    assert_eq!(
        be16(&out.frame, at),
        be16(&good, at).wrapping_add(1),
        "still off by one"
    );
    assert_eq!(out.frame[..at], good[..at]);
    assert_eq!(out.frame[at + 2..], good[at + 2..]);
}

// ---------------------------------------------------------------- parsing

#[test]
fn fragments_options_vlan_and_other_protocols_pass() {
    let p = Pkt::udp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 53);
    let base = p.frame();
    let cases: Vec<(Vec<u8>, Stat)> = vec![
        // MF set
        (
            {
                let mut f = base.clone();
                f[20] |= 0x20;
                f
            },
            Stat::PassFragment,
        ),
        // fragment offset
        (
            {
                let mut f = base.clone();
                f[21] = 1;
                f
            },
            Stat::PassFragment,
        ),
        // ihl 6 (options)
        (
            {
                let mut f = base.clone();
                f[14] = 0x46;
                f
            },
            Stat::PassIpOptions,
        ),
        // VLAN tag
        (
            {
                let mut f = base[..12].to_vec();
                f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
                f.extend_from_slice(&base[12..]);
                f
            },
            Stat::PassNotIp,
        ),
        // ARP
        (
            {
                let mut f = base.clone();
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f
            },
            Stat::PassNotIp,
        ),
        // GRE
        (
            {
                let mut f = base.clone();
                f[23] = 47;
                f
            },
            Stat::PassNotVip,
        ),
        // IPv6 fragment header and hop-by-hop options
        (
            {
                let mut f = Pkt::udp(v6("2001:db8::1"), 1, v6("2001:db8::2"), 2).frame();
                f[20] = 44;
                f
            },
            Stat::PassFragment,
        ),
        (
            {
                let mut f = Pkt::udp(v6("2001:db8::1"), 1, v6("2001:db8::2"), 2).frame();
                f[20] = 0;
                f
            },
            Stat::PassIpOptions,
        ),
        // No VIP
        (base.clone(), Stat::PassNotVip),
    ];
    for (f, want) in cases {
        let mut t = Tables::default();
        let out = process(&mut t, &f, IN_IF, 0);
        assert_eq!(
            out,
            Output {
                verdict: Verdict::Pass,
                frame: f.clone()
            },
            "{want:?}"
        );
        assert_counted(&t, &[want]);
        if want != Stat::PassNotVip {
            assert_eq!(parse(&f), Err(want));
        }
    }
}

#[test]
fn truncated_frames_are_malformed() {
    for p in [
        Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN),
        Pkt::udp(v6("2001:db8::1"), 1, v6("2001:db8::2"), 2),
        Pkt::new(
            v4("10.0.0.1"),
            v4("10.0.0.2"),
            L4::Icmp {
                kind: 8,
                code: 0,
                rest: [0; 4],
            },
        ),
    ] {
        let f = p.frame();
        assert!(parse(&f).is_ok());
        // Every cut short of the full frame leaves the IP length beyond the bytes
        // present (or no full header): malformed, dropped.
        for cut in 0..f.len() {
            let mut t = Tables::default();
            let out = process(&mut t, &f[..cut], IN_IF, 0);
            assert_eq!(out.verdict, Verdict::Drop, "cut at {cut}");
            assert_counted(&t, &[Stat::DropMalformed]);
            assert_eq!(parse(&f[..cut]), Err(Stat::DropMalformed));
        }
    }
    // An IP length that leaves no room for the L4 header (bytes present after it).
    let mut f = Pkt::tcp(v4("10.0.0.1"), 1, v4("10.0.0.2"), 2, SYN).frame();
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(parse(&f), Err(Stat::DropMalformed));
    // TCP data offset below 5 or beyond the segment.
    let mut f = Pkt::tcp(v4("10.0.0.1"), 1, v4("10.0.0.2"), 2, SYN).frame();
    f[14 + 20 + 12] = 0x40;
    assert_eq!(parse(&f), Err(Stat::DropMalformed));
    f[14 + 20 + 12] = 0xF0;
    assert_eq!(parse(&f), Err(Stat::DropMalformed));
    // Wrong version nibbles.
    let mut f = Pkt::udp(v4("10.0.0.1"), 1, v4("10.0.0.2"), 2).frame();
    f[14] = 0x65;
    assert_eq!(parse(&f), Err(Stat::DropMalformed));
}

#[test]
fn parse_reads_the_core_fields() {
    let mut p = Pkt::tcp(
        v6("2001:db8::1"),
        40000,
        v6("2001:db8:1::10"),
        443,
        SYN | ACK,
    );
    p.payload.clear();
    let mut f = p.frame();
    f.extend_from_slice(&[0; 4]); // padding is not part of the IP length
    let parsed = parse(&f).unwrap();
    assert_eq!(parsed.family, abi::FAMILY_V6);
    assert_eq!(parsed.proto, 6);
    assert_eq!((parsed.saddr, parsed.sport), (p.saddr, 40000));
    assert_eq!((parsed.daddr, parsed.dport), (p.daddr, 443));
    assert_eq!(parsed.tcp_flags, SYN | ACK);
    assert_eq!(parsed.ip_len, 60);
    assert_eq!((parsed.eth_src, parsed.eth_dst), (CLIENT_MAC, LB_MAC));
    assert_eq!(
        parsed.flow_key(),
        FlowKey::new(p.saddr, 40000, p.daddr, 443, 6)
    );
}

// ---------------------------------------------------------------- flow events

#[test]
fn syn_on_an_existing_flow_goes_up() {
    let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN);
    let (mut t, key) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_DR));
    let before = t.flows[&key];
    let out = run(&mut t, &p);
    assert_eq!(
        out,
        Output {
            verdict: Verdict::Upcall,
            frame: p.frame()
        }
    );
    assert_counted(&t, &[Stat::Upcall]);
    assert_eq!(t.flows[&key], before, "the entry is left for the core");
    let ev = &t.events[0];
    assert_eq!(
        (ev.kind, ev.real, ev.ifindex),
        (abi::EV_UPCALL, abi::NO_REAL, IN_IF)
    );
    assert_eq!(ev.frame, p.frame());
    assert_eq!(ev.frame_len as usize, p.frame().len());
}

#[test]
fn fin_rst_and_first_ack_notify_and_forward() {
    let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK);
    let (mut t, key) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_DR));
    let ip_len = u64::from(parse(&p.frame()).unwrap().ip_len);

    // First ACK: notified, bit cleared, not counted in the entry.
    let out = run(&mut t, &p);
    assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
    assert_eq!(t.flows[&key].flags & abi::FLOW_F_NOTIFY_ACK, 0);
    assert_eq!((t.flows[&key].packets, t.events.len()), (0, 1));
    // Next ACK: fast path, counted.
    process(&mut t, &p.frame(), IN_IF, 5_000);
    assert_eq!(t.events.len(), 1);
    let e = t.flows[&key];
    assert_eq!((e.packets, e.bytes, e.last_seen_ns), (1, ip_len, 5_000));

    for flags in [FIN | ACK, RST] {
        let q = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, flags);
        let n = t.events.len();
        let out = process(&mut t, &q.frame(), IN_IF, 6_000);
        assert_eq!(out.verdict, Verdict::Redirect(OUT_IF), "forwarded as well");
        let ev = &t.events[n];
        assert_eq!((ev.kind, ev.real), (abi::EV_CONTROL, 7));
        assert_eq!(ev.frame, q.frame()[..abi::NOTIFY_SNAP.min(q.frame().len())]);
        assert_eq!(t.flows[&key].packets, 1);
        assert_eq!(t.flows[&key].last_seen_ns, 6_000);
    }
    assert_eq!(stat(&t, Stat::Notify), 3);
    assert_eq!(stat(&t, Stat::FwdDr), 4);

    // Long frames are cut to NOTIFY_SNAP in the record.
    let mut long = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, FIN);
    long.payload = vec![1; 400];
    run(&mut t, &long);
    let ev = t.events.last().unwrap();
    assert_eq!(ev.frame.len(), abi::NOTIFY_SNAP);
    assert_eq!(ev.frame_len as usize, long.frame().len());
}

#[test]
fn syn_on_a_reply_entry_notifies() {
    let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, ACK);
    let (mut t, _) = with_flow(&p, real(v4("10.2.0.5"), abi::METHOD_NAT));
    let r = Pkt::tcp(v4("10.2.0.5"), 8080, v4("10.0.0.1"), 40000, SYN | ACK);
    let out = process(&mut t, &r.frame(), OUT_IF, 3);
    assert_eq!(out.verdict, Verdict::Redirect(IN_IF));
    assert_counted(&t, &[Stat::FwdReply, Stat::Notify]);
    assert_eq!(t.events[0].real, abi::NO_REAL);
}

#[test]
fn apply_sends_an_upcalled_packet_like_the_program() {
    // Userspace path: parse, install entries_for, apply; must equal process on
    // a non-control packet of the same flow.
    let p = Pkt::udp(v6("2001:db8::1"), 40000, v6("2001:db8:1::10"), 53);
    let r = real(v6("2001:db8:2::5"), abi::METHOD_NAT);
    let parsed = parse(&p.frame()).unwrap();
    let entries = entries_for(&parsed, 7, &r, parsed.daddr, 53, IN_IF, 0);
    assert_eq!(entries.len(), 2);
    let (key, entry) = entries[0];
    let applied = apply(&config(), Some(&r), &key, &entry, &p.frame(), IN_IF).unwrap();
    let (mut t, _) = with_flow(&p, r);
    assert_eq!(applied, run(&mut t, &p));
    // A reply entry needs no real; an in entry without one is malformed.
    let (rkey, rentry) = entries[1];
    assert_eq!(rentry.real, abi::NO_REAL);
    assert_eq!(rkey.saddr, r.addr);
    assert_eq!(
        apply(&config(), None, &key, &entry, &p.frame(), IN_IF),
        Err(Stat::DropMalformed)
    );
}

// ---------------------------------------------------------------- scheduling

/// The destinations of an rvs_core service (list order), in a slab of their own.
fn core_dests(
    kind: rvs_core::SchedulerKind,
    weights: &[u32],
    overloaded: &[usize],
) -> (slab::Slab<rvs_core::Dest>, Vec<rvs_core::DestId>) {
    use rvs_core::director::{Director, DirectorConfig};
    use rvs_core::model::{DestConfig, Protocol, ServiceConfig, ServiceKey};
    let mut d = Director::new(DirectorConfig::default());
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: v4("10.1.0.10"),
        port: 80,
    };
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = kind;
    d.add_service(cfg).unwrap();
    for (i, &w) in weights.iter().enumerate() {
        let mut dc = DestConfig::new(v4(&format!("10.2.0.{}", i + 1)), 8080);
        dc.weight = w;
        d.add_dest(&key, dc).unwrap();
    }
    let svc = d.service_by_key(&key).unwrap();
    let mut slab = slab::Slab::new();
    let mut order = Vec::new();
    for (pos, dest) in d.dests_of(svc).enumerate() {
        let mut dest = dest.clone();
        dest.overloaded = overloaded.contains(&pos);
        order.push(rvs_core::DestId(slab.insert(dest) as u32));
    }
    (slab, order)
}

/// Tables whose hash slots at `off` hold `table` (positions p -> real 100 + p).
fn sched_tables(
    set: rvs_core::sched::DestSet<'_>,
    table: &[Option<u32>],
    off: u32,
    method: u8,
) -> Tables {
    let mut t = Tables {
        config: config(),
        ..Tables::default()
    };
    for (slot, pos) in table.iter().enumerate() {
        t.hash
            .insert(off + slot as u32, pos.map_or(abi::NO_REAL, |p| 100 + p));
    }
    for pos in 0..set.len() {
        let d = set.get(pos);
        let mut r = real(d.config.addr, method);
        r.flags = if d.schedulable() {
            abi::REAL_F_USABLE
        } else {
            0
        };
        t.reals.insert(100 + pos as u32, r);
    }
    t
}

/// The real XDP chose for a frame, `None` if it went up.
fn xdp_choice(t: &mut Tables, p: &Pkt) -> Option<u32> {
    let out = run(t, p);
    match out.verdict {
        Verdict::Upcall => None,
        _ => {
            let key = parse(&p.frame()).unwrap().flow_key();
            Some(t.flows[&key].real)
        }
    }
}

#[test]
fn sh_and_mh_choices_equal_the_core_lookup() {
    use rvs_core::sched::{mh, sh};
    use rvs_core::SchedulerKind;
    let weights = [3, 1, 0, 2, 5];
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        for port_flag in [false, true] {
            let (slab, order) = core_dests(kind, &weights, &[3]);
            let set = rvs_core::sched::DestSet::new(&order, &slab);
            let usable = |p: u32| set.get(p as usize).schedulable();
            let (table, vip) = if kind == SchedulerKind::Sh {
                let t = sh::build_table(set, 6);
                let vip = Vip {
                    sched: abi::SCHED_SH,
                    table_off: 500,
                    table_size: 64,
                    table_bits: 6,
                    ..Vip::default()
                };
                (t, vip)
            } else {
                let t = mh::build_table(set, 251).unwrap();
                let vip = Vip {
                    sched: abi::SCHED_MH,
                    table_off: 500,
                    table_size: 251,
                    ..Vip::default()
                };
                (t, vip)
            };
            let vip = Vip {
                sched_flags: if port_flag { abi::SCHED_F_PORT } else { 0 },
                method: abi::METHOD_DR,
                ..vip
            };
            let mut t = sched_tables(set, &table, 500, abi::METHOD_DR);
            t.vips.insert(VipKey::new(v4("10.1.0.10"), 80, 6), vip);
            let (mut hits, mut ups) = (0, 0);
            for i in 0..300u32 {
                let client = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i * 7919));
                let sport = 1024 + (i * 31) as u16;
                let p = Pkt::tcp(client, sport, v4("10.1.0.10"), 80, SYN);
                let port = if port_flag { sport } else { 0 };
                let core = if kind == SchedulerKind::Sh {
                    sh::lookup(&table, sh::hash_key(client, port), false, usable)
                } else {
                    mh::lookup(&table, client, port, false, usable)
                };
                let xdp = xdp_choice(&mut t, &p);
                assert_eq!(
                    xdp,
                    core.map(|p| 100 + p),
                    "{kind:?} client {client} port {port}"
                );
                if xdp.is_some() {
                    hits += 1;
                } else {
                    ups += 1;
                }
            }
            assert!(
                hits > 100 && ups > 0,
                "{kind:?}: {hits} scheduled, {ups} up"
            );
            assert_eq!(stat(&t, Stat::XdpSched), hits);
            assert_eq!(stat(&t, Stat::FwdDr), hits);
            assert_eq!(stat(&t, Stat::Upcall), ups);
            assert!(t.events.iter().filter(|e| e.kind == abi::EV_NEW).count() as u64 == hits);
        }
    }
}

#[test]
fn dh_choice_equals_the_core_lookup() {
    use rvs_core::sched::dh;
    let (slab, order) = core_dests(rvs_core::SchedulerKind::Dh, &[1, 1, 1], &[1]);
    let set = rvs_core::sched::DestSet::new(&order, &slab);
    let table = dh::build_table(set);
    let mut t = sched_tables(set, &table, 0, abi::METHOD_DR);
    let mut seen = std::collections::HashSet::new();
    for i in 0..64u32 {
        let vaddr = IpAddr::V4(Ipv4Addr::from(0x0A01_0000 + i * 13));
        t.vips.insert(
            VipKey::new(vaddr, 80, 17),
            Vip {
                sched: abi::SCHED_DH,
                table_off: 0,
                table_size: 256,
                table_bits: 8,
                ..Vip::default()
            },
        );
        let p = Pkt::udp(v4("10.0.0.1"), 5000, vaddr, 80);
        let core = dh::lookup(&table, vaddr, |p| set.get(p as usize).schedulable());
        let xdp = xdp_choice(&mut t, &p);
        assert_eq!(xdp, core.map(|p| 100 + p), "{vaddr}");
        seen.insert(xdp);
    }
    assert_eq!(
        seen.len(),
        3,
        "positions 0 and 2, and up for the overloaded 1"
    );
}

#[test]
fn xdp_nat_creates_in_and_reply_entries_and_only_syn_or_udp_is_scheduled() {
    let mut t = Tables {
        config: config(),
        ..Tables::default()
    };
    let vip_key = VipKey::new(v4("10.1.0.10"), 80, 6);
    t.vips.insert(
        vip_key,
        Vip {
            sched: abi::SCHED_SH,
            table_bits: 4,
            table_size: 16,
            table_off: 32,
            ..Vip::default()
        },
    );
    // Every slot absent: real index 0, as in a zeroed BPF array.
    t.reals.insert(0, real(v4("10.2.0.5"), abi::METHOD_NAT));
    for flags in [ACK, SYN | ACK, SYN | RST] {
        let mut t2 = t.clone();
        let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, flags);
        assert_eq!(
            run(&mut t2, &p).verdict,
            Verdict::Upcall,
            "flags {flags:#x}"
        );
        assert!(t2.flows.is_empty());
    }
    let mut p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN);
    p.eth_src = HOP_MAC;
    let out = process(&mut t, &p.frame(), IN_IF, 77);
    assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
    assert_checksums(&out.frame);
    assert_counted(&t, &[Stat::XdpSched, Stat::FwdNat]);
    let in_e = t.flows[&parse(&p.frame()).unwrap().flow_key()];
    assert_eq!(in_e.flags, abi::FLOW_F_NOTIFY_ACK | abi::FLOW_F_DNAT);
    assert_eq!((in_e.real, in_e.packets, in_e.last_seen_ns), (0, 0, 77));
    let reply = t.flows[&FlowKey::new(v4("10.2.0.5"), 8080, v4("10.0.0.1"), 40000, 6)];
    assert_eq!(reply.flags, abi::FLOW_F_OUT | abi::FLOW_F_SNAT);
    assert_eq!(reply.new_saddr, addr_bytes(v4("10.1.0.10")));
    assert_eq!(u16::from_be(reply.new_sport_be), 80);
    assert_eq!(
        (reply.ifindex, reply.dmac, reply.smac),
        (IN_IF, HOP_MAC, LB_MAC)
    );
    let ev = &t.events[0];
    assert_eq!((ev.kind, ev.real), (abi::EV_NEW, 0));

    // A real without F_USABLE, or NO_REAL in the slot: upcall.
    let mut t2 = t.clone();
    t2.flows.clear();
    t2.reals.get_mut(&0).unwrap().flags = 0;
    assert_eq!(run(&mut t2, &p).verdict, Verdict::Upcall);
    let mut t3 = t.clone();
    t3.flows.clear();
    for s in 32..48 {
        t3.hash.insert(s, abi::NO_REAL);
    }
    assert_eq!(run(&mut t3, &p).verdict, Verdict::Upcall);
}

// ---------------------------------------------------------------- guard

#[test]
fn guard_refuses_after_the_burst_and_refills_with_time() {
    let mut t = Tables::default();
    t.vips
        .insert(VipKey::new(v4("10.1.0.10"), 80, 6), Vip::default());
    t.config.upcall_rate = 1000; // one token per millisecond
    t.config.upcall_burst = 3;
    let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN);
    let f = p.frame();
    let now = 1_000_000_000u64; // long after last_ns 0: the bucket is full
    let verdicts: Vec<Verdict> = (0..5)
        .map(|_| process(&mut t, &f, IN_IF, now).verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Upcall,
            Verdict::Upcall,
            Verdict::Upcall,
            Verdict::Drop,
            Verdict::Drop
        ]
    );
    assert_eq!((stat(&t, Stat::Upcall), stat(&t, Stat::DropGuard)), (3, 2));
    assert_eq!(t.events.len(), 3);
    // 0.999 ms later: 999 milli-tokens, still refused; 1 ns more makes a token.
    assert_eq!(
        process(&mut t, &f, IN_IF, now + 999_000).verdict,
        Verdict::Drop
    );
    assert_eq!(t.guard.tokens_milli, 999);
    assert_eq!(
        process(&mut t, &f, IN_IF, now + 1_000_000).verdict,
        Verdict::Upcall
    );
    assert_eq!(
        t.guard,
        abi::Guard {
            last_ns: now + 1_000_000,
            tokens_milli: 0
        }
    );
    // Rate 0: no guard at all.
    t.config.upcall_rate = 0;
    for _ in 0..10 {
        assert_eq!(
            process(&mut t, &f, IN_IF, now + 1_000_000).verdict,
            Verdict::Upcall
        );
    }
    // A frame longer than the upcall record is refused.
    let mut big = p.clone();
    big.payload = vec![0; abi::UPCALL_SNAP];
    let out = run(&mut t, &big);
    assert_eq!(out.verdict, Verdict::Drop);
    assert_eq!(stat(&t, Stat::DropTooBig), 1);
}

// ---------------------------------------------------------------- primitives

#[test]
fn flow_hash_by_hand() {
    // One step of the contract's hash, written out for a key of zeros: every
    // word is 0, so h = (h * P) ^ ((h * P) >> 16) ten times.
    let mut h: u32 = 0x811C_9DC5;
    for _ in 0..10 {
        h = h.wrapping_mul(0x0100_0193);
        h ^= h >> 16;
    }
    assert_eq!(flow_hash(&FlowKey::default()), h);
    // The ports word is (sport << 16) | dport in host order; the family is not hashed.
    let k = FlowKey::new(v4("1.2.3.4"), 1, v4("5.6.7.8"), 2, 6);
    let mut h: u32 = 0x811C_9DC5;
    for w in [0x0102_0304, 0, 0, 0, 0x0506_0708, 0, 0, 0, 0x0001_0002, 6] {
        h = (h ^ w).wrapping_mul(0x0100_0193);
        h ^= h >> 16;
    }
    assert_eq!(flow_hash(&k), h);
    assert_ne!(
        flow_hash(&k),
        flow_hash(&FlowKey {
            sport_be: 2u16.to_be(),
            ..k
        })
    );
}

proptest! {
    /// The incremental update equals a checksum recomputed from scratch.
    #[test]
    fn update_equals_recompute(
        data in prop::collection::vec(any::<u8>(), 4..64),
        at in any::<prop::sample::Index>(),
        new in prop::collection::vec(any::<u8>(), 4),
    ) {
        let mut data = data;
        if data.len() % 2 == 1 { data.pop(); }
        let off = at.index(data.len() / 2 - 1) * 2;
        let off = off.min(data.len() - 4) & !1;
        let check = fold(ones_sum(&data));
        let old = data[off..off + 4].to_vec();
        data[off..off + 4].copy_from_slice(&new);
        let updated = update_checksum(check, &old, &new);
        let fresh = fold(ones_sum(&data));
        // 0 and 0xFFFF are the same ones' complement number.
        prop_assert!(updated == fresh || (updated | fresh) == 0xFFFF && (updated & fresh) == 0,
            "updated {updated:#x} fresh {fresh:#x}");
    }

    /// NAT rewrites of arbitrary addresses and ports keep every checksum valid.
    #[test]
    fn nat_checksums_always_valid(
        c in any::<u32>(), vip in any::<u32>(), rip in any::<u32>(),
        sport in 1u16.., rport in 1u16.., tcp in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let (c, vip, rip) = (IpAddr::V4(c.into()), IpAddr::V4(vip.into()), IpAddr::V4(rip.into()));
        let mut p = if tcp { Pkt::tcp(c, sport, vip, 80, ACK) } else { Pkt::udp(c, sport, vip, 80) };
        p.payload = payload;
        let mut r = real(rip, abi::METHOD_NAT);
        r.port_be = rport.to_be();
        let (mut t, _) = with_flow(&p, r);
        let out = run(&mut t, &p);
        assert_checksums(&out.frame);
    }

    /// ICMP errors about FullNAT flows (both ends rewritten, in and out) of
    /// arbitrary addresses, ports and quote lengths keep every checksum valid.
    #[test]
    fn nat_icmp_error_checksums_always_valid(
        addrs in any::<[u128; 5]>(), v6 in any::<bool>(),
        ports in any::<[u16; 4]>(), tcp in any::<bool>(), out in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..40),
        cut in any::<prop::sample::Index>(),
    ) {
        let a = |i: usize| if v6 {
            IpAddr::V6(Ipv6Addr::from(addrs[i]))
        } else {
            IpAddr::V4(Ipv4Addr::from(addrs[i] as u32))
        };
        let (client, vip, local, rip, router) = (a(0), a(1), a(2), a(3), a(4));
        let [cport, vport, lport, rport] = ports;
        let proto = if tcp { 6 } else { 17 };
        let in_key = FlowKey::new(client, cport, vip, vport, proto);
        let out_key = FlowKey::new(rip, rport, local, lport, proto);
        prop_assume!(in_key != out_key);
        let mut t = Tables { config: config(), ..Tables::default() };
        t.reals.insert(7, real(rip, abi::METHOD_FNAT));
        t.flows.insert(in_key, Flow {
            new_saddr: addr_bytes(local), new_sport_be: lport.to_be(),
            new_daddr: addr_bytes(rip), new_dport_be: rport.to_be(),
            real: 7, method: abi::METHOD_FNAT,
            flags: abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
            ..Flow::default()
        });
        t.flows.insert(out_key, Flow {
            new_saddr: addr_bytes(vip), new_sport_be: vport.to_be(),
            new_daddr: addr_bytes(client), new_dport_be: cport.to_be(),
            real: abi::NO_REAL, ifindex: IN_IF, dmac: CLIENT_MAC, smac: LB_MAC,
            method: abi::METHOD_FNAT,
            flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
            ..Flow::default()
        });
        let (quoted, to) = if out {
            (tcp_or_udp(tcp, local, lport, rip, rport), local)
        } else {
            (tcp_or_udp(tcp, vip, vport, client, cport), vip)
        };
        let mut quoted = quoted;
        quoted.payload = payload;
        let mut err = error_about(router, to, &quoted, 4, 2, 0);
        let hdr = if v6 { 40 } else { 20 };
        err.payload.truncate(hdr + 4 + cut.index(err.payload.len() - hdr - 3));
        let out = run(&mut t, &err);
        prop_assert!(matches!(out.verdict, Verdict::Redirect(_) | Verdict::Tx), "{:?}", out.verdict);
        prop_assert_eq!(stat(&t, Stat::IcmpErrorFwd), 1);
        assert_icmp_error_checksums(&out.frame);
    }

    /// `process` never panics, whatever the frame and tables, and leaves frames
    /// it does not forward unchanged.
    #[test]
    fn process_never_panics(
        frame in prop::collection::vec(any::<u8>(), 0..200),
        head in 0usize..5,
        rand_real in any::<(u8, u8, u8, u8, u32)>(),
        vip in any::<(u8, u8, u32, u32, u32)>(),
        flow_flags in any::<(u8, u8, u32)>(),
        cfg in any::<(u32, u32, u32, u16, u16)>(),
        now in any::<u64>(),
    ) {
        // Half the time, start from a valid frame with random bytes after it.
        let valid = [
            Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, SYN).frame(),
            Pkt::udp(v6("2001:db8::1"), 1, v6("2001:db8::2"), 80).frame(),
            icmp_error(&Pkt::tcp(v4("10.1.0.10"), 80, v4("10.0.0.1"), 40000, ACK), 3, 4).frame(),
            Pkt::new(v6("2001:db8::1"), v6("2001:db8::2"), L4::Icmp { kind: 128, code: 0, rest: [0; 4] }).frame(),
        ];
        let frame = match valid.get(head) {
            Some(v) => {
                let mut f = v.clone();
                let n = frame.len().min(f.len());
                // Flip a few bytes from the random input.
                for (i, b) in frame.iter().take(n / 8).enumerate() {
                    let at = (usize::from(*b) * 7 + i * 13) % f.len();
                    f[at] ^= frame[(i * 3) % frame.len()];
                }
                f
            }
            None => frame,
        };
        let (family, method, tun_type, flags, index) = rand_real;
        let r = Real {
            family: [0, 4, 6, family][usize::from(family % 4)],
            method: method % 6,
            tun_type: tun_type % 3,
            flags,
            ..real(v4("10.2.0.5"), abi::METHOD_DR)
        };
        let mut t = Tables {
            config: Config {
                upcall_rate: cfg.0 % 3 * 1000,
                upcall_burst: cfg.1 % 5,
                tun_spread_bits: cfg.2 % 40,
                gue_sport_base: cfg.3,
                gue_sport_span: cfg.4,
                ..config()
            },
            ..Tables::default()
        };
        t.reals.insert(index % 4, r);
        t.reals.insert(0, r);
        for (i, s) in [vip.2, vip.3, vip.4].iter().enumerate() {
            t.hash.insert(s % 64, [0, abi::NO_REAL, index % 4][i]);
        }
        for (a, port, proto) in [(v4("10.1.0.10"), 80, 6), (v6("2001:db8::2"), 80, 17)] {
            t.vips.insert(VipKey::new(a, port, proto), Vip {
                sched: vip.0 % 5,
                sched_flags: vip.1,
                table_off: vip.2 % 64,
                table_size: vip.3 % 300,
                table_bits: vip.4 % 40,
                ..Vip::default()
            });
            t.vip_addrs.insert(VipKey::new(a, 0, 0));
        }
        if let Ok(parsed) = parse(&frame) {
            let mut key = parsed.flow_key();
            if flow_flags.0 & 1 == 1 {
                // An ICMP error's flow: the quote turned round.
                key = FlowKey::new(v4("10.0.0.1"), 40000, v4("10.1.0.10"), 80, 6);
            }
            t.flows.insert(key, Flow {
                real: [0, index, abi::NO_REAL][usize::from(flow_flags.1 % 3)],
                method: method % 6,
                flags: flow_flags.0 >> 1,
                new_saddr: [9; 16],
                new_daddr: [8; 16],
                ifindex: flow_flags.2,
                ..Flow::default()
            });
        }
        for _ in 0..2 {
            let before: u64 = t.stats[Stat::Rx as usize];
            let out = process(&mut t, &frame, IN_IF, now);
            prop_assert_eq!(t.stats[Stat::Rx as usize], before + 1);
            if matches!(out.verdict, Verdict::Pass | Verdict::Drop | Verdict::Upcall) {
                prop_assert_eq!(&out.frame, &frame);
            }
            let _ = parse(&frame);
        }
    }
}

// ---------------------------------------------------------------- firewall marks

fn mark_rules(rules: &[&str]) -> rvs_core::MarkRules {
    let mut set = rvs_core::MarkRules::default();
    for r in rules {
        set.add(r.parse().unwrap()).unwrap();
    }
    set
}

/// Tables whose classifier holds `rules`, as rvsd writes them.
fn with_marks(set: &rvs_core::MarkRules) -> Tables {
    let mut t = Tables {
        config: config(),
        ..Tables::default()
    };
    for r in set.iter() {
        for k in mark_entries(r) {
            assert!(
                t.marks.insert(k, r.mark()).is_none(),
                "rules never share a key"
            );
        }
    }
    t
}

#[test]
fn mark_entries_are_one_per_port_or_port_zero_for_every_port() {
    let ports = |text: &str| -> Vec<(u32, u16)> {
        let r: rvs_core::MarkRule = text.parse().unwrap();
        mark_entries(&r)
            .iter()
            .map(|k| (k.prefixlen, u16::from_be(k.port_be)))
            .collect()
    };
    assert_eq!(ports("6666 tcp 10.0.0.10 443,80"), [(64, 80), (64, 443)]);
    assert_eq!(
        ports("7 udp 10.0.0.0/24 8000-8002"),
        [(56, 8000), (56, 8001), (56, 8002)]
    );
    assert_eq!(ports("8 tcp 2001:db8::/32 all"), [(64, 0)]);
    assert_eq!(ports("9 sctp ::/0"), [(32, 0)]);
    let r: rvs_core::MarkRule = "8 tcp 2001:db8::/32".parse().unwrap();
    let k = mark_entries(&r)[0];
    assert_eq!((k.proto, k.family), (6, abi::FAMILY_V6));
    assert_eq!(k.addr, addr_bytes(v6("2001:db8::")));
}

/// The program's lookup (trie at the port, then at port 0) gives the core's mark
/// for every packet, whatever the rules' prefixes, ranges and families.
#[test]
fn classify_equals_the_core_classifier() {
    let set = mark_rules(&[
        "6666 tcp 10.1.0.10 80,443",
        "7 udp 10.1.0.0/30 5000-5009,5011",
        "8 tcp 10.1.1.0/24 all",
        "9 tcp 10.0.0.0/16 22",
        "10 udp 2001:db8::/126 all",
        "11 tcp 2001:db8::/64 1-1024",
        "12 udp 0.0.0.0/0 65535",
    ]);
    let t = with_marks(&set);
    let addrs = [
        "10.1.0.10",
        "10.1.0.11",
        "10.1.0.3",
        "10.1.0.4",
        "10.1.1.10",
        "10.0.5.5",
        "10.200.0.1",
        "192.0.2.1",
        "2001:db8::3",
        "2001:db8::4",
        "2001:db8::ffff",
        "2001:db8:1::1",
    ];
    let ports = [
        1, 22, 79, 80, 81, 443, 1024, 1025, 4999, 5000, 5009, 5010, 5011, 5012, 65535,
    ];
    let mut hits = std::collections::BTreeSet::new();
    for a in addrs {
        for port in ports {
            for tcp in [true, false] {
                let daddr = if a.contains(':') { v6(a) } else { v4(a) };
                let saddr = if daddr.is_ipv4() {
                    v4("10.9.0.1")
                } else {
                    v6("2001:db8:9::1")
                };
                let p = if tcp {
                    Pkt::tcp(saddr, 40000, daddr, port, SYN)
                } else {
                    Pkt::udp(saddr, 40000, daddr, port)
                };
                let parsed = parse(&p.frame()).unwrap();
                let want = set.classify(parsed.proto, daddr, port);
                assert_eq!(classify(&t, &parsed), want, "{a} {port} tcp={tcp}");
                hits.insert(want);
            }
        }
    }
    assert_eq!(
        hits.into_iter().collect::<Vec<_>>(),
        [0, 7, 8, 9, 10, 11, 12, 6666],
        "every rule is hit"
    );
}

#[test]
fn a_fwmark_service_owns_its_packets_before_the_address_service() {
    let set = mark_rules(&["6666 tcp 10.1.0.10 80,443"]);
    let mut t = with_marks(&set);
    t.vips.insert(
        VipKey::fwmark(6666, abi::FAMILY_V4),
        Vip {
            svc: 1,
            ..Vip::default()
        },
    );
    // The address service 10.1.0.10:80 is sh over a DR real: XDP would decide.
    t.vips.insert(
        VipKey::new(v4("10.1.0.10"), 80, 6),
        Vip {
            svc: 2,
            sched: abi::SCHED_SH,
            table_bits: 4,
            table_size: 16,
            ..Vip::default()
        },
    );
    t.reals.insert(0, real(v4("10.2.0.5"), abi::METHOD_DR));
    let syn = |port| Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), port, SYN);
    for port in [80, 443] {
        let mut t2 = t.clone();
        assert_eq!(run(&mut t2, &syn(port)).verdict, Verdict::Upcall, "{port}");
        assert_counted(&t2, &[Stat::Upcall]);
        assert!(t2.flows.is_empty());
    }
    let mut t2 = t.clone();
    assert_eq!(run(&mut t2, &syn(444)).verdict, Verdict::Pass);
    assert_counted(&t2, &[Stat::PassNotVip]);
    // Without the fwmark service the mark falls back to the address service.
    t.vips.remove(&VipKey::fwmark(6666, abi::FAMILY_V4));
    let mut t2 = t.clone();
    assert_eq!(run(&mut t2, &syn(80)).verdict, Verdict::Redirect(OUT_IF));
    assert_counted(&t2, &[Stat::XdpSched, Stat::FwdDr]);
    let mut t2 = t.clone();
    assert_eq!(run(&mut t2, &syn(443)).verdict, Verdict::Pass);
    assert_counted(&t2, &[Stat::PassNotVip]);
    // A service of the mark in the other family does not take the packet.
    t.vips.insert(
        VipKey::fwmark(6666, abi::FAMILY_V6),
        Vip {
            svc: 3,
            ..Vip::default()
        },
    );
    let mut t2 = t.clone();
    assert_eq!(run(&mut t2, &syn(443)).verdict, Verdict::Pass);
}

#[test]
fn ranges_every_port_rules_and_ipv6_reach_their_fwmark_services() {
    let set = mark_rules(&["7 udp 10.1.0.0/30 5000-5009", "8 tcp 2001:db8::/126"]);
    let mut t = with_marks(&set);
    for (mark, family) in [(7, abi::FAMILY_V4), (8, abi::FAMILY_V6)] {
        t.vips.insert(VipKey::fwmark(mark, family), Vip::default());
    }
    let udp = |d: &str, port| Pkt::udp(v4("10.0.0.1"), 40000, v4(d), port);
    for (d, port, up) in [
        ("10.1.0.0", 4999, false),
        ("10.1.0.0", 5000, true),
        ("10.1.0.3", 5009, true),
        ("10.1.0.3", 5010, false),
        ("10.1.0.4", 5005, false),
    ] {
        let mut t2 = t.clone();
        let v = run(&mut t2, &udp(d, port)).verdict;
        assert_eq!(v == Verdict::Upcall, up, "{d}:{port} {v:?}");
    }
    let tcp6 = |d: &str, port| Pkt::tcp(v6("2001:db8:9::1"), 40000, v6(d), port, SYN);
    for (d, port, up) in [
        ("2001:db8::", 1, true),
        ("2001:db8::3", 65535, true),
        ("2001:db8::4", 80, false),
    ] {
        let mut t2 = t.clone();
        let v = run(&mut t2, &tcp6(d, port)).verdict;
        assert_eq!(v == Verdict::Upcall, up, "[{d}]:{port} {v:?}");
    }
    // UDP to the IPv6 prefix: the rule is TCP only.
    let mut t2 = t.clone();
    let p = Pkt::udp(v6("2001:db8:9::1"), 40000, v6("2001:db8::1"), 53);
    assert_eq!(run(&mut t2, &p).verdict, Verdict::Pass);
}

/// A hash-scheduled fwmark service decides in XDP; its NAT real has port 0 (as
/// fwmark reals usually have), so the packet keeps its destination port both
/// in the rewrite and in the reply entry's key.
#[test]
fn fwmark_mh_over_a_port_zero_nat_real_keeps_the_packet_port() {
    let set = mark_rules(&["6666 tcp 10.1.0.10 80,443"]);
    let mut t = with_marks(&set);
    t.vips.insert(
        VipKey::fwmark(6666, abi::FAMILY_V4),
        Vip {
            sched: abi::SCHED_MH,
            table_off: 10,
            table_size: 7,
            ..Vip::default()
        },
    );
    for s in 10..17 {
        t.hash.insert(s, 3);
    }
    let mut r = real(v4("10.2.0.5"), abi::METHOD_NAT);
    r.port_be = 0;
    t.reals.insert(3, r);
    for port in [80u16, 443] {
        let mut t2 = t.clone();
        let p = Pkt::tcp(v4("10.0.0.1"), 40000, v4("10.1.0.10"), port, SYN);
        let out = run(&mut t2, &p);
        assert_eq!(out.verdict, Verdict::Redirect(OUT_IF));
        assert_counted(&t2, &[Stat::XdpSched, Stat::FwdNat]);
        let h = assert_checksums(&out.frame);
        match h.transport {
            Some(TransportHeader::Tcp(tcp)) => assert_eq!(tcp.destination_port, port),
            other => panic!("{other:?}"),
        }
        let in_e = t2.flows[&parse(&p.frame()).unwrap().flow_key()];
        assert_eq!(u16::from_be(in_e.new_dport_be), port);
        let reply = t2.flows[&FlowKey::new(v4("10.2.0.5"), port, v4("10.0.0.1"), 40000, 6)];
        assert_eq!(reply.new_saddr, addr_bytes(v4("10.1.0.10")));
        assert_eq!(u16::from_be(reply.new_sport_be), port);
    }
}
