//! Differential test: the XDP program (run by the kernel with BPF_PROG_TEST_RUN)
//! and the Rust reference engine get the same tables and the same frames, and
//! must give the same verdicts, the same output bytes, the same counters and the
//! same flow entries. Frames: one crafted case per path of docs/packet-plane.md,
//! then thousands of mutations of them (flags, ports, lengths, header bytes,
//! truncation) and random byte strings. Root only (loading BPF); CI is root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use rvs_xdp::abi::{self, FlowKey, Real, Stat, Vip, VipKey};
use rvs_xdp::engine::{self, Tables, Verdict};
use rvs_xdp::loader::Loaded;

#[path = "../../rvs-sys/tests/support/ns.rs"]
mod support;
use support::{is_root, Ns};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// The tables both sides get: one VIP per path, reals of both families, flows.
fn tables(ingress: u32, other: u32) -> Tables {
    let mut t = Tables {
        config: abi::Config {
            upcall_rate: 0,
            upcall_burst: 1,
            tun_saddr4: [10, 1, 0, 1],
            tun_saddr6: ip("fd00:1::1")
                .to_string()
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            tun_spread_bits: 4,
            gue_sport_base: 49152,
            gue_sport_span: 16384,
        },
        ..Tables::default()
    };
    let real = |addr: &str, method: u8, tun_type: u8, ifindex: u32, port: u16, usable: bool| {
        let a = ip(addr);
        Real {
            addr: abi::addr_bytes(a),
            family: abi::family_of(a),
            method,
            tun_type,
            flags: if usable { abi::REAL_F_USABLE } else { 0 },
            port_be: port.to_be(),
            gue_port_be: 6080u16.to_be(),
            ifindex,
            dmac: [0x02, 0, 0, 0, 1, method],
            smac: DIRECTOR_MAC,
        }
    };
    t.reals
        .insert(0, real("10.1.0.11", abi::METHOD_DR, 0, ingress, 80, true));
    t.reals
        .insert(1, real("10.1.0.12", abi::METHOD_DR, 0, other, 80, false));
    t.reals.insert(
        2,
        real(
            "10.1.0.13",
            abi::METHOD_TUN,
            abi::TUN_IPIP,
            ingress,
            80,
            true,
        ),
    );
    t.reals.insert(
        3,
        real("10.1.0.14", abi::METHOD_TUN, abi::TUN_GUE, other, 80, true),
    );
    t.reals.insert(
        4,
        real(
            "fd00:1::14",
            abi::METHOD_TUN,
            abi::TUN_IPIP,
            ingress,
            80,
            true,
        ),
    );
    t.reals.insert(
        5,
        real("10.1.0.15", abi::METHOD_NAT, 0, ingress, 8080, true),
    );
    t.reals.insert(
        6,
        real("fd00:1::15", abi::METHOD_NAT, 0, ingress, 8080, true),
    );
    t.reals
        .insert(7, real("10.1.0.16", abi::METHOD_FNAT, 0, ingress, 80, true));
    t.reals
        .insert(8, real("fd00:1::11", abi::METHOD_DR, 0, ingress, 80, true));
    // A NAT real of a firewall-mark service, port 0: the packet's port is kept.
    t.reals
        .insert(9, real("fd00:1::16", abi::METHOD_NAT, 0, ingress, 0, true));
    t.reals.insert(
        10,
        real("fd00:1::17", abi::METHOD_FNAT, 0, other, 5353, true),
    );
    let vip = |t: &mut Tables, addr: &str, port: u16, proto: u8, v: Vip| {
        t.vips.insert(VipKey::new(ip(addr), port, proto), v);
        t.vip_addrs.insert(VipKey::new(ip(addr), 0, 0));
    };
    // Upcall (wlc-like), sh over DR reals 0/1, mh over NAT real 5, dh over TUN 2/3.
    vip(
        &mut t,
        "10.0.0.10",
        80,
        6,
        Vip {
            svc: 1,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "10.0.0.10",
        53,
        17,
        Vip {
            svc: 2,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "10.0.0.11",
        80,
        6,
        Vip {
            svc: 3,
            sched: abi::SCHED_SH,
            method: abi::METHOD_DR,
            table_off: 0,
            table_size: 16,
            table_bits: 4,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "10.0.0.12",
        80,
        6,
        Vip {
            svc: 4,
            sched: abi::SCHED_MH,
            sched_flags: abi::SCHED_F_PORT,
            method: abi::METHOD_NAT,
            table_off: 16,
            table_size: 251,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "10.0.0.13",
        53,
        17,
        Vip {
            svc: 5,
            sched: abi::SCHED_DH,
            method: abi::METHOD_TUN,
            table_off: 300,
            table_size: 256,
            table_bits: 8,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "fd00::10",
        80,
        6,
        Vip {
            svc: 6,
            sched: abi::SCHED_SH,
            sched_flags: abi::SCHED_F_PORT,
            method: abi::METHOD_DR,
            table_off: 600,
            table_size: 16,
            table_bits: 4,
        },
    );
    // Firewall-mark services and the classifier (rules as rvsd writes them).
    let rule = |t: &mut Tables, text: &str| {
        let r: rvs_core::MarkRule = text.parse().unwrap();
        for k in engine::mark_entries(&r) {
            t.marks.insert(k, r.mark());
        }
    };
    // 6666: a service that wins over the sh address service 10.0.0.20:80.
    rule(&mut t, "6666 tcp 10.0.0.20 80,443");
    t.vips.insert(
        VipKey::fwmark(6666, abi::FAMILY_V4),
        Vip {
            svc: 10,
            ..Vip::default()
        },
    );
    vip(
        &mut t,
        "10.0.0.20",
        80,
        6,
        Vip {
            svc: 11,
            sched: abi::SCHED_SH,
            method: abi::METHOD_DR,
            table_off: 0,
            table_size: 16,
            table_bits: 4,
            ..Vip::default()
        },
    );
    // 7: no fwmark service; 10.0.0.10:8080 has an address service, 8081-8082 none.
    rule(&mut t, "7 tcp 10.0.0.10 8080-8082");
    vip(
        &mut t,
        "10.0.0.10",
        8080,
        6,
        Vip {
            svc: 12,
            ..Vip::default()
        },
    );
    // 8: every UDP port of 10.0.1.0/28, sh over DR reals 0/1 (decided in XDP).
    rule(&mut t, "8 udp 10.0.1.0/28");
    t.vips.insert(
        VipKey::fwmark(8, abi::FAMILY_V4),
        Vip {
            svc: 13,
            sched: abi::SCHED_SH,
            method: abi::METHOD_DR,
            table_off: 1000,
            table_size: 16,
            table_bits: 4,
            ..Vip::default()
        },
    );
    // 9: IPv6 port 443 of fd00::20/127, mh over the port-0 NAT real 9.
    rule(&mut t, "9 tcp fd00::20/127 443");
    t.vips.insert(
        VipKey::fwmark(9, abi::FAMILY_V6),
        Vip {
            svc: 14,
            sched: abi::SCHED_MH,
            method: abi::METHOD_NAT,
            table_off: 1100,
            table_size: 13,
            ..Vip::default()
        },
    );
    // 10: an IPv6 rule whose mark has only an IPv4 service (families differ).
    rule(&mut t, "10 tcp fd00::30 80");
    t.vips.insert(
        VipKey::fwmark(10, abi::FAMILY_V4),
        Vip {
            svc: 15,
            ..Vip::default()
        },
    );
    for s in 0..16u32 {
        t.hash.insert(1000 + s, s % 2);
    }
    for s in 0..13u32 {
        t.hash.insert(1100 + s, 9);
    }
    for s in 0..16u32 {
        t.hash.insert(s, s % 2);
        t.hash
            .insert(600 + s, if s % 3 == 0 { abi::NO_REAL } else { 8 });
    }
    for s in 0..251u32 {
        t.hash.insert(16 + s, 5);
    }
    for s in 0..256u32 {
        t.hash.insert(300 + s, 2 + s % 2);
    }
    // Established flows: one per method and family, and NAT/FullNAT replies.
    let client = ip("10.0.0.100");
    let c6 = ip("fd00::100");
    let flow = |real: u32, method: u8, flags: u8| abi::Flow {
        real,
        method,
        flags,
        ..abi::Flow::default()
    };
    let mut add = |k: FlowKey, f: abi::Flow| {
        t.flows.insert(k, f);
    };
    add(
        FlowKey::new(client, 40000, ip("10.0.0.10"), 80, 6),
        flow(0, abi::METHOD_DR, abi::FLOW_F_NOTIFY_ACK),
    );
    add(
        FlowKey::new(client, 40001, ip("10.0.0.10"), 80, 6),
        flow(1, abi::METHOD_DR, 0),
    );
    add(
        FlowKey::new(client, 40002, ip("10.0.0.10"), 80, 6),
        flow(2, abi::METHOD_TUN, 0),
    );
    add(
        FlowKey::new(client, 40003, ip("10.0.0.10"), 80, 6),
        flow(3, abi::METHOD_TUN, 0),
    );
    add(
        FlowKey::new(client, 40004, ip("10.0.0.10"), 80, 6),
        flow(4, abi::METHOD_TUN, 0),
    );
    add(
        FlowKey::new(c6, 40005, ip("fd00::10"), 80, 6),
        flow(8, abi::METHOD_DR, 0),
    );
    add(
        FlowKey::new(client, 5353, ip("10.0.0.10"), 53, 17),
        flow(3, abi::METHOD_TUN, 0),
    );
    let mut nat = flow(5, abi::METHOD_NAT, abi::FLOW_F_DNAT);
    nat.new_daddr = abi::addr_bytes(ip("10.1.0.15"));
    nat.new_dport_be = 8080u16.to_be();
    add(FlowKey::new(client, 40010, ip("10.0.0.10"), 80, 6), nat);
    let mut nat_udp = nat;
    nat_udp.flags = abi::FLOW_F_DNAT;
    add(
        FlowKey::new(client, 40010, ip("10.0.0.10"), 53, 17),
        nat_udp,
    );
    let mut reply = flow(
        abi::NO_REAL,
        abi::METHOD_NAT,
        abi::FLOW_F_OUT | abi::FLOW_F_SNAT,
    );
    reply.new_saddr = abi::addr_bytes(ip("10.0.0.10"));
    reply.new_sport_be = 80u16.to_be();
    reply.ifindex = ingress;
    reply.dmac = CLIENT_MAC;
    reply.smac = DIRECTOR_MAC;
    add(FlowKey::new(ip("10.1.0.15"), 8080, client, 40010, 6), reply);
    let mut nat6 = flow(6, abi::METHOD_NAT, abi::FLOW_F_DNAT);
    nat6.new_daddr = abi::addr_bytes(ip("fd00:1::15"));
    nat6.new_dport_be = 8080u16.to_be();
    add(FlowKey::new(c6, 40011, ip("fd00::10"), 80, 6), nat6);
    let mut fnat = flow(7, abi::METHOD_FNAT, abi::FLOW_F_DNAT | abi::FLOW_F_SNAT);
    fnat.new_daddr = abi::addr_bytes(ip("10.1.0.16"));
    fnat.new_dport_be = 80u16.to_be();
    fnat.new_saddr = abi::addr_bytes(ip("10.1.0.2"));
    fnat.new_sport_be = 1025u16.to_be();
    add(FlowKey::new(client, 40020, ip("10.0.0.10"), 80, 6), fnat);
    let mut fback = flow(
        abi::NO_REAL,
        abi::METHOD_FNAT,
        abi::FLOW_F_OUT | abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
    );
    fback.new_saddr = abi::addr_bytes(ip("10.0.0.10"));
    fback.new_sport_be = 80u16.to_be();
    fback.new_daddr = abi::addr_bytes(client);
    fback.new_dport_be = 40020u16.to_be();
    fback.ifindex = other;
    fback.dmac = CLIENT_MAC;
    fback.smac = DIRECTOR_MAC;
    add(
        FlowKey::new(ip("10.1.0.16"), 80, ip("10.1.0.2"), 1025, 6),
        fback,
    );
    // Reply entries of the UDP NAT flow and the IPv6 NAT flow.
    let mut reply_udp = reply;
    reply_udp.new_sport_be = 53u16.to_be();
    add(
        FlowKey::new(ip("10.1.0.15"), 8080, client, 40010, 17),
        reply_udp,
    );
    let mut reply6 = reply;
    reply6.new_saddr = abi::addr_bytes(ip("fd00::10"));
    reply6.ifindex = other;
    add(FlowKey::new(ip("fd00:1::15"), 8080, c6, 40011, 6), reply6);
    // IPv6 FullNAT over UDP, both entries.
    let mut fnat6 = flow(10, abi::METHOD_FNAT, abi::FLOW_F_DNAT | abi::FLOW_F_SNAT);
    fnat6.new_daddr = abi::addr_bytes(ip("fd00:1::17"));
    fnat6.new_dport_be = 5353u16.to_be();
    fnat6.new_saddr = abi::addr_bytes(ip("fd01::2"));
    fnat6.new_sport_be = 1026u16.to_be();
    add(FlowKey::new(c6, 40021, ip("fd00::10"), 53, 17), fnat6);
    let mut fback6 = fback;
    fback6.new_saddr = abi::addr_bytes(ip("fd00::10"));
    fback6.new_sport_be = 53u16.to_be();
    fback6.new_daddr = abi::addr_bytes(c6);
    fback6.new_dport_be = 40021u16.to_be();
    fback6.ifindex = ingress;
    add(
        FlowKey::new(ip("fd00:1::17"), 5353, ip("fd01::2"), 1026, 17),
        fback6,
    );
    // A NAT flow whose real slot was never written.
    let mut lost = nat;
    lost.real = 99;
    add(FlowKey::new(client, 40030, ip("10.0.0.10"), 80, 6), lost);
    t
}

/// Ethernet + IP + L4 with valid checksums (etherparse).
fn frame(src: &str, dst: &str, l4: L4, payload: &[u8]) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
    let b = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut out = Vec::new();
    match l4 {
        L4::Tcp(sp, dp, flags) => {
            let mut t = b.tcp(sp, dp, 1000, 64000);
            if flags & 0x02 != 0 {
                t = t.syn();
            }
            if flags & 0x10 != 0 {
                t = t.ack(1);
            }
            if flags & 0x01 != 0 {
                t = t.fin();
            }
            if flags & 0x04 != 0 {
                t = t.rst();
            }
            t.write(&mut out, payload).unwrap();
        }
        L4::Udp(sp, dp) => b.udp(sp, dp).write(&mut out, payload).unwrap(),
        L4::Icmp4(ty, code) => b
            .icmpv4_raw(ty, code, [0, 1, 0, 1])
            .write(&mut out, payload)
            .unwrap(),
        L4::Icmp6(ty, code) => b
            .icmpv6_raw(ty, code, [0, 1, 0, 1])
            .write(&mut out, payload)
            .unwrap(),
    }
    out
}

#[derive(Clone, Copy)]
enum L4 {
    Tcp(u16, u16, u8),
    Udp(u16, u16),
    Icmp4(u8, u8),
    Icmp6(u8, u8),
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn crafted() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let c = "10.0.0.100";
    let c6 = "fd00::100";
    let body = [0x5au8; 100];
    for sport in 40000..=40004 {
        v.push(frame(c, "10.0.0.10", L4::Tcp(sport, 80, ACK), &body));
    }
    v.push(frame(c, "10.0.0.10", L4::Tcp(40000, 80, ACK), &body)); // second ACK: no notify
    v.push(frame(c, "10.0.0.10", L4::Tcp(40000, 80, FIN | ACK), &[]));
    v.push(frame(c, "10.0.0.10", L4::Tcp(40001, 80, RST), &[]));
    v.push(frame(c, "10.0.0.10", L4::Tcp(40000, 80, SYN), &[])); // SYN on a flow: upcall
    v.push(frame(c, "10.0.0.10", L4::Tcp(41000, 80, SYN), &[])); // new: upcall
    v.push(frame(c, "10.0.0.10", L4::Tcp(41001, 80, ACK), &[])); // no flow: upcall
    v.push(frame(c, "10.0.0.10", L4::Udp(5353, 53), b"query"));
    v.push(frame(c, "10.0.0.10", L4::Udp(5354, 53), b"new query"));
    v.push(frame(c6, "fd00::10", L4::Tcp(40005, 80, ACK), &body));
    v.push(frame(c, "10.0.0.10", L4::Tcp(40010, 80, ACK), &body));
    v.push(frame(c, "10.0.0.10", L4::Udp(40010, 53), b"nat udp"));
    v.push(frame("10.1.0.15", c, L4::Tcp(8080, 40010, ACK), &body));
    v.push(frame("10.1.0.15", c, L4::Tcp(8080, 40010, SYN | ACK), &[]));
    v.push(frame(c6, "fd00::10", L4::Tcp(40011, 80, ACK), &body));
    v.push(frame(c, "10.0.0.10", L4::Tcp(40020, 80, ACK), &body));
    v.push(frame(
        "10.1.0.16",
        "10.1.0.2",
        L4::Tcp(80, 1025, ACK),
        &body,
    ));
    for s in 0..40u16 {
        v.push(frame(
            &format!("10.0.{}.{}", s / 7, s),
            "10.0.0.11",
            L4::Tcp(1000 + s, 80, SYN),
            &[],
        ));
        v.push(frame(
            &format!("10.0.{}.{}", s / 7, s),
            "10.0.0.12",
            L4::Tcp(2000 + s, 80, SYN),
            &[],
        ));
        v.push(frame(c, "10.0.0.13", L4::Udp(3000 + s, 53), b"dh"));
        v.push(frame(
            &format!("fd00::{s:x}"),
            "fd00::10",
            L4::Tcp(4000 + s, 80, SYN),
            &[],
        ));
    }
    // Firewall marks: the fwmark service wins over 10.0.0.20:80's sh (upcall).
    for port in [80, 443, 444] {
        v.push(frame(c, "10.0.0.20", L4::Tcp(5000, port, SYN), &[]));
    }
    // Mark 7 has no service: 8080 falls back to its address service, the rest
    // of the range (and the edges outside it) is not a VIP.
    for port in [8079, 8080, 8081, 8082, 8083] {
        v.push(frame(c, "10.0.0.10", L4::Tcp(5001, port, SYN), &[]));
    }
    // Every port of 10.0.1.0/28, decided in XDP; 10.0.1.16 is outside.
    for s in 0..12u16 {
        v.push(frame(
            &format!("10.0.3.{s}"),
            &format!("10.0.1.{}", s + 4),
            L4::Udp(5100 + s, 1 + s * 997),
            b"mark 8",
        ));
    }
    v.push(frame(c, "10.0.1.16", L4::Udp(5200, 53), b"outside"));
    v.push(frame(c, "10.0.1.15", L4::Tcp(5201, 53, SYN), &[])); // tcp: no rule
                                                                // IPv6: fd00::20 and ::21 (the /127), NAT to the port-0 real keeps 443.
    for (s, d) in [(0u16, "fd00::20"), (1, "fd00::21"), (2, "fd00::22")] {
        v.push(frame(
            &format!("fd00::2:{s:x}"),
            d,
            L4::Tcp(5300 + s, 443, SYN),
            &[],
        ));
    }
    v.push(frame(c6, "fd00::20", L4::Tcp(5303, 80, SYN), &[]));
    v.push(frame(
        "fd00::2:0",
        "fd00::20",
        L4::Tcp(5300, 443, ACK),
        &body,
    )); // now a flow
    v.push(frame(c6, "fd00::30", L4::Tcp(5304, 80, SYN), &[])); // no v6 service of 10
    v.push(frame(c, "10.0.0.20", L4::Icmp4(8, 0), b"ping"));
    v.push(frame(c, "10.0.0.11", L4::Tcp(1000, 80, SYN), &[])); // the flow now exists
    v.push(frame(c, "10.0.0.11", L4::Tcp(1000, 80, ACK), &[]));
    // ICMP: echo to a VIP (v4/v6), echo elsewhere, an error quoting a DR flow.
    v.push(frame(c, "10.0.0.10", L4::Icmp4(8, 0), b"ping"));
    v.push(frame(c6, "fd00::10", L4::Icmp6(128, 0), b"ping6"));
    v.push(frame(c, "10.9.9.9", L4::Icmp4(8, 0), b"ping"));
    let quoted = frame("10.0.0.10", c, L4::Tcp(80, 40000, ACK), &[1, 2, 3, 4]);
    v.push(frame(
        "192.0.2.1",
        "10.0.0.10",
        L4::Icmp4(3, 4),
        &quoted[14..14 + 28],
    ));
    let quoted_tun = frame("10.0.0.10", c, L4::Tcp(80, 40002, ACK), &[]);
    v.push(frame(
        "192.0.2.1",
        "10.0.0.10",
        L4::Icmp4(3, 4),
        &quoted_tun[14..14 + 28],
    ));
    let quoted6 = frame("fd00::10", c6, L4::Tcp(80, 40005, ACK), &[]);
    v.push(frame(
        "fd00:2::1",
        "fd00::10",
        L4::Icmp6(2, 0),
        &quoted6[14..14 + 48],
    ));
    let quoted_nat = frame("10.0.0.10", c, L4::Tcp(80, 40010, ACK), &[]);
    v.push(frame(
        "192.0.2.1",
        "10.0.0.10",
        L4::Icmp4(3, 4),
        &quoted_nat[14..14 + 28],
    ));
    v.extend(nat_icmp_errors());
    // Fragments, options, VLAN, ARP, truncation, a big frame for the tunnel.
    let mut frag = frame(c, "10.0.0.10", L4::Tcp(40000, 80, ACK), &body);
    frag[14 + 6] |= 0x20; // MF
    v.push(frag);
    let mut vlan = frame(c, "10.0.0.10", L4::Tcp(40000, 80, ACK), &body);
    vlan[12] = 0x81;
    vlan[13] = 0x00;
    v.push(vlan);
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    v.push(arp);
    let full = frame(c, "10.0.0.10", L4::Tcp(40002, 80, ACK), &[7u8; 1460]);
    v.push(full.clone());
    for cut in [13, 14, 20, 33, 34, 40, 53] {
        v.push(full[..cut].to_vec());
    }
    v
}

/// ICMP errors about NAT and FullNAT flows (docs/packet-plane.md "ICMP"), in
/// and out, IPv4 and IPv6, TCP and UDP quotes, and the quotes that stay
/// PASS_ICMP (too short, IPv4 options) or find a missing real.
fn nat_icmp_errors() -> Vec<Vec<u8>> {
    let c = "10.0.0.100";
    let c6 = "fd00::100";
    // The IP header and the first 8 L4 bytes of a packet (what routers quote),
    // or the whole IP packet.
    let quote = |src: &str, dst: &str, l4: L4, whole: bool| {
        let f = frame(src, dst, l4, b"quoted payload");
        let head = if ip(src).is_ipv4() { 28 } else { 48 };
        if whole {
            f[14..].to_vec()
        } else {
            f[14..14 + head].to_vec()
        }
    };
    let mut v = Vec::new();
    // NAT in: routers on the client's side, about replies VIP -> client.
    for whole in [false, true] {
        let q = quote("10.0.0.10", c, L4::Tcp(80, 40010, ACK), whole);
        v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q));
        v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(11, 0), &q));
        let q = quote("10.0.0.10", c, L4::Udp(53, 40010), whole);
        v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q));
        let q = quote("fd00::10", c6, L4::Tcp(80, 40011, ACK), whole);
        v.push(frame("fd00:2::1", "fd00::10", L4::Icmp6(2, 0), &q));
        v.push(frame("fd00:2::1", "fd00::10", L4::Icmp6(3, 0), &q));
    }
    // NAT out: the real server's own errors (and a router's), about
    // client -> real packets.
    let q = quote(c, "10.1.0.15", L4::Udp(40010, 8080), true);
    v.push(frame("10.1.0.15", c, L4::Icmp4(3, 3), &q));
    v.push(frame("10.1.0.254", c, L4::Icmp4(3, 3), &q));
    let q = quote(c, "10.1.0.15", L4::Tcp(40010, 8080, ACK), false);
    v.push(frame("10.1.0.15", c, L4::Icmp4(3, 1), &q));
    let q = quote(c6, "fd00:1::15", L4::Tcp(40011, 8080, SYN), false);
    v.push(frame("fd00:1::15", c6, L4::Icmp6(1, 4), &q));
    // FullNAT in and out, IPv4 TCP and IPv6 UDP.
    let q = quote("10.0.0.10", c, L4::Tcp(80, 40020, ACK), false);
    v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q));
    let q = quote("10.1.0.2", "10.1.0.16", L4::Tcp(1025, 80, ACK), true);
    v.push(frame("10.1.0.16", "10.1.0.2", L4::Icmp4(3, 1), &q));
    let q = quote("fd00::10", c6, L4::Udp(53, 40021), true);
    v.push(frame("fd00:2::1", "fd00::10", L4::Icmp6(2, 0), &q));
    let q = quote("fd01::2", "fd00:1::17", L4::Udp(1026, 5353), false);
    v.push(frame("fd00:1::17", "fd01::2", L4::Icmp6(1, 4), &q));
    // Quotes that stop: 3 port bytes, IPv4 options, a missing real.
    let q = quote("10.0.0.10", c, L4::Tcp(80, 40010, ACK), false);
    v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q[..23]));
    v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q[..24]));
    let mut opt = q.clone();
    opt[0] = 0x46;
    opt.splice(20..20, [1, 1, 1, 1]);
    v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &opt));
    let q6 = quote("fd00::10", c6, L4::Tcp(80, 40011, ACK), false);
    v.push(frame("fd00:2::1", "fd00::10", L4::Icmp6(2, 0), &q6[..43]));
    let q = quote("10.0.0.10", c, L4::Tcp(80, 40030, ACK), false);
    v.push(frame("192.0.2.1", "10.0.0.10", L4::Icmp4(3, 4), &q));
    v
}

/// A random ICMP error about the flow of `key`: the quote is a packet of the
/// other direction (random flags and payload, cut anywhere from nothing to the
/// whole packet), the outer packet goes from a random or the flow's address
/// to the flow's, with a random error type (now and then not an error).
fn random_icmp_error(key: &FlowKey, rng: &mut Rng) -> Vec<u8> {
    let addr = |a: &[u8; 16]| abi::addr_from(a, key.family).unwrap().to_string();
    let (qsrc, qdst) = (addr(&key.daddr), addr(&key.saddr));
    let (sport, dport) = (u16::from_be(key.dport_be), u16::from_be(key.sport_be));
    let l4 = if key.proto == 6 {
        L4::Tcp(sport, dport, rng.byte())
    } else {
        L4::Udp(sport, dport)
    };
    let payload: Vec<u8> = (0..rng.below(40)).map(|_| rng.byte()).collect();
    let quoted = frame(&qsrc, &qdst, l4, &payload);
    let v4 = key.family == abi::FAMILY_V4;
    let head = if v4 { 20 } else { 40 };
    let cut = match rng.below(4) {
        0 => head + rng.below(9),
        1 => quoted.len() - 14,
        2 => head + 8,
        _ => rng.below(quoted.len() - 14 + 1),
    };
    let quote = &quoted[14..14 + cut];
    let outer_src = match rng.below(3) {
        0 => qdst.clone(),
        1 if v4 => format!("192.0.2.{}", rng.byte()),
        1 => format!("fd00:2::{:x}", rng.byte()),
        _ => qsrc.clone(),
    };
    // To the flow's destination as the packets of the flow go (the quote's
    // source), or now and then to its source.
    let outer_dst = if rng.below(5) == 0 { &qdst } else { &qsrc };
    if v4 {
        let ty = [3, 3, 3, 11, 8, 5][rng.below(6)];
        frame(&outer_src, outer_dst, L4::Icmp4(ty, rng.byte() % 16), quote)
    } else {
        let ty = [1, 2, 3, 1, 128, 4][rng.below(6)];
        frame(&outer_src, outer_dst, L4::Icmp6(ty, rng.byte() % 8), quote)
    }
}

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A mutation of a crafted frame: header bytes, lengths, flags, truncation.
fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut f = base.to_vec();
    let kind = rng.below(7);
    match kind {
        6 => {
            // A random byte in the first 128: reaches into ICMP errors'
            // quotes (an IPv6 quote's ports end at byte 106).
            let n = f.len().min(128);
            if n > 0 {
                let i = rng.below(n);
                f[i] = rng.byte();
            }
        }
        0 => {
            // A random byte in the first 80 (headers).
            let n = f.len().min(80);
            if n > 0 {
                let i = rng.below(n);
                f[i] = rng.byte();
            }
        }
        1 => {
            let cut = rng.below(f.len() + 1);
            f.truncate(cut);
        }
        2 => {
            // TCP flags byte for IPv4 / IPv6 TCP frames.
            for at in [14 + 20 + 13, 14 + 40 + 13] {
                if let Some(b) = f.get_mut(at) {
                    *b = rng.byte();
                }
            }
        }
        3 => {
            // Source port (client tuple changes: new flows).
            for at in [14 + 20, 14 + 40] {
                if at + 2 <= f.len() {
                    let p = rng.next() as u16;
                    f[at..at + 2].copy_from_slice(&p.to_be_bytes());
                }
            }
        }
        4 => {
            let n = rng.below(64);
            f.extend((0..n).map(|_| rng.byte()));
        }
        _ => {
            // IPv4 total length / IPv6 payload length.
            if f.len() > 20 {
                let v = rng.below(2000) as u16;
                f[16..18].copy_from_slice(&v.to_be_bytes());
                if f.len() > 20 && f[12..14] == [0x86, 0xdd] {
                    f[18..20].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
    f
}

#[test]
fn xdp_program_and_reference_engine_agree() {
    if !is_root("differential test (loads the XDP program)") {
        return;
    }
    let ns = Ns::new("rvsdiff");
    let ns2 = ns.name.clone();
    std::thread::spawn(move || run_in_netns(&ns2))
        .join()
        .unwrap();
}

fn run_in_netns(ns: &str) {
    rvs_sys::netns::enter(ns).unwrap();
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "da", "type", "veth", "peer", "name", "db"],
        &["link", "set", "da", "up"],
        &["link", "set", "db", "up"],
    ] {
        support::ip(args);
    }
    let ingress = rvs_sys::interface("da").unwrap().index;
    let other = rvs_sys::interface("db").unwrap().index;

    let mut model = tables(ingress, other);
    let mut kernel = Loaded::load(rvs_xdp::XDP_OBJECT).unwrap();
    kernel.set_config(&model.config).unwrap();
    kernel.add_tx_port(ingress).unwrap();
    kernel.add_tx_port(other).unwrap();
    for (k, v) in &model.vips {
        kernel.put_vip(k, v).unwrap();
    }
    for k in &model.vip_addrs {
        kernel.put_vip_addr(k).unwrap();
    }
    for (i, r) in &model.reals {
        kernel.put_real(*i, r).unwrap();
    }
    let mut slots: Vec<(u32, u32)> = model.hash.iter().map(|(s, r)| (*s, *r)).collect();
    slots.sort();
    for (s, r) in slots {
        kernel.put_hash_slots(s, &[r]).unwrap();
    }
    for (k, f) in &model.flows {
        kernel.put_flow(k, f).unwrap();
    }
    for (k, m) in &model.marks {
        kernel.put_mark(k, *m).unwrap();
    }
    let mut kmarks = kernel.marks().unwrap();
    kmarks.sort_by_key(|(k, _)| k.to_bytes());
    let mut mmarks: Vec<(abi::MarkKey, u32)> = model.marks.iter().map(|(k, m)| (*k, *m)).collect();
    mmarks.sort_by_key(|(k, _)| k.to_bytes());
    assert_eq!(kmarks, mmarks, "rvs_marks holds what was written");
    // The trie's longest-prefix match equals the engine's.
    for (proto, addr, port) in [
        (6, "10.0.0.20", 443),
        (6, "10.0.0.20", 442),
        (6, "10.0.0.10", 8082),
        (17, "10.0.1.7", 0),
        (17, "10.0.1.7", 9),
        (17, "10.0.1.17", 0),
        (6, "fd00::21", 443),
        (6, "fd00::22", 443),
    ] {
        let k = abi::MarkKey::lookup(proto, ip(addr), port);
        assert_eq!(
            kernel.lookup_mark(&k).unwrap(),
            engine::lookup_mark(&model.marks, &k),
            "{proto} {addr} {port}"
        );
    }

    let mut frames = crafted();
    let mut rng = Rng(0x005e_ed0f_d1ff);
    let bases = frames.clone();
    for i in 0..3000 {
        let base = &bases[i % bases.len()];
        frames.push(mutate(base, &mut rng));
    }
    // Random ICMP errors quoting the tables' flows (every kind of entry).
    let mut keys: Vec<FlowKey> = model.flows.keys().copied().collect();
    keys.sort_by_key(|k| k.to_bytes());
    for _ in 0..1500 {
        let key = keys[rng.below(keys.len())];
        let f = random_icmp_error(&key, &mut rng);
        frames.push(if rng.below(3) == 0 {
            mutate(&f, &mut rng)
        } else {
            f
        });
    }
    for _ in 0..500 {
        let n = rng.below(200);
        frames.push((0..n).map(|_| rng.byte()).collect());
    }
    let mut verdicts = std::collections::BTreeMap::<String, usize>::new();
    let mut out = vec![0u8; 4096];
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    frames.retain(|f| f.len() >= 14);
    // ICMP errors forwarded with their IP bytes rewritten (NAT, FullNAT).
    let mut icmp_rewritten = 0usize;
    for (i, f) in frames.iter().enumerate() {
        let k = kernel.test_run_on(ingress, f, &mut out).unwrap();
        let errors_before = model.stats[Stat::IcmpErrorFwd as usize];
        let m = engine::process(&mut model, f, ingress, 0);
        if model.stats[Stat::IcmpErrorFwd as usize] > errors_before
            && m.frame.len() == f.len()
            && m.frame[14..] != f[14..]
        {
            icmp_rewritten += 1;
        }
        assert_eq!(
            k.action,
            m.verdict.xdp_action(),
            "frame {i} ({} bytes) verdict: kernel {} engine {:?}\n{:02x?}",
            f.len(),
            k.action,
            m.verdict,
            f
        );
        if matches!(m.verdict, Verdict::Tx | Verdict::Redirect(_)) || k.frame.len() == f.len() {
            assert_eq!(
                k.frame, m.frame,
                "frame {i} output bytes ({:?})\n{:02x?}",
                m.verdict, f
            );
        }
        *verdicts
            .entry(
                format!("{:?}", m.verdict)
                    .split('(')
                    .next()
                    .unwrap()
                    .to_string(),
            )
            .or_default() += 1;
    }
    // Counters: the kernel's sums equal the engine's.
    let ks = kernel.stats().unwrap();
    for st in Stat::ALL {
        assert_eq!(
            ks[st as usize],
            model.stats[st as usize],
            "counter {}",
            st.name()
        );
    }
    // Flow entries: same keys and same forwarding fields (times and counts aside).
    let kflows: std::collections::HashMap<FlowKey, abi::Flow> =
        kernel.flows().unwrap().into_iter().collect();
    assert_eq!(kflows.len(), model.flows.len(), "flow count");
    for (k, mf) in &model.flows {
        let kf = kflows
            .get(k)
            .unwrap_or_else(|| panic!("kernel lacks flow {k:?}"));
        let strip = |f: &abi::Flow| abi::Flow {
            last_seen_ns: 0,
            ..*f
        };
        assert_eq!(strip(kf), strip(mf), "flow {k:?}");
    }
    // Upcall and notification records: same kinds, interfaces, reals and bytes.
    let mut kevents = Vec::new();
    while kernel.drain_events(1024, &mut kevents) > 0 {}
    assert_eq!(kevents.len(), model.events.len(), "event count");
    for (i, (k, m)) in kevents.iter().zip(&model.events).enumerate() {
        assert_eq!(
            (k.kind, k.ifindex, k.frame_len, k.real),
            (m.kind, m.ifindex, m.frame_len, m.real),
            "event {i}"
        );
        assert_eq!(k.frame, m.frame, "event {i} bytes");
    }
    eprintln!("differential: {} events agree", kevents.len());
    eprintln!(
        "differential: {} frames, verdicts {verdicts:?}",
        frames.len()
    );
    // The ICMP error paths ran, the NAT/FullNAT rewrites among them.
    let errors_forwarded = model.stats[Stat::IcmpErrorFwd as usize];
    eprintln!(
        "differential: {errors_forwarded} ICMP errors forwarded, {icmp_rewritten} of them rewritten"
    );
    assert!(errors_forwarded > 300, "{errors_forwarded}");
    assert!(icmp_rewritten > 150, "{icmp_rewritten}");
    for path in ["Tx", "Redirect", "Pass", "Drop", "Upcall"] {
        assert!(
            verdicts.get(path).copied().unwrap_or(0) > 0,
            "no frame took {path}: {verdicts:?}"
        );
    }
}
