//! Behaviour tests of the director: each follows one IPVS rule end to end.

use super::*;
use crate::model::{Persistence, TunnelConfig};
use crate::sched::SchedulerKind;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn vip() -> IpAddr {
    ip("10.0.0.1")
}

fn tcp_svc(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: vip(),
        port,
    }
}

fn udp_svc(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: vip(),
        port,
    }
}

fn dest(addr: &str, port: u16, weight: u32, fwd: Forward) -> DestConfig {
    DestConfig {
        weight,
        forward: fwd,
        ..DestConfig::new(ip(addr), port)
    }
}

fn setup(sched: SchedulerKind, dests: &[(&str, u32)], fwd: Forward) -> (Director, ServiceKey) {
    let mut d = Director::default();
    let key = tcp_svc(80);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = sched;
    d.add_service(cfg).unwrap();
    for (a, w) in dests {
        d.add_dest(&key, dest(a, 80, *w, fwd)).unwrap();
    }
    (d, key)
}

fn syn(d: &mut Director, client: &str, cport: u16, now: Time) -> InVerdict {
    d.handle_in(
        &Packet::tcp(ip(client), cport, vip(), 80, TcpFlags::SYN),
        now,
    )
}

fn fwd_addr(v: InVerdict) -> Option<IpAddr> {
    match v {
        InVerdict::Forward(f) => Some(f.daddr),
        _ => None,
    }
}

fn counts(d: &Director, addr: &str) -> (u32, u32, u32) {
    d.dests
        .iter()
        .find(|(_, x)| x.config.addr == ip(addr) && x.available)
        .map(|(_, x)| (x.active_conns, x.inactive_conns, x.persist_conns))
        .unwrap_or((99, 99, 99))
}

/// A full NAT exchange: SYN, SYN-ACK, ACK, then the client closes.
fn nat_conn(d: &mut Director, client: &str, cport: u16, now: Time, close: bool) -> Option<IpAddr> {
    let to = fwd_addr(syn(d, client, cport, now))?;
    let c = ip(client);
    d.handle_out(&Packet::tcp(to, 80, c, cport, TcpFlags::SYN_ACK), now);
    d.handle_in(&Packet::tcp(c, cport, vip(), 80, TcpFlags::ACK), now);
    if close {
        d.handle_in(&Packet::tcp(c, cport, vip(), 80, TcpFlags::FIN_ACK), now);
        d.handle_out(&Packet::tcp(to, 80, c, cport, TcpFlags::FIN_ACK), now);
        d.handle_in(&Packet::tcp(c, cport, vip(), 80, TcpFlags::ACK), now);
    }
    Some(to)
}

#[test]
fn dests_are_kept_newest_first_and_rr_starts_at_the_newest() {
    let (mut d, _) = setup(
        SchedulerKind::Rr,
        &[("192.168.0.2", 1), ("192.168.0.3", 1), ("192.168.0.4", 1)],
        Forward::Route,
    );
    let picks: Vec<_> = (0..4)
        .map(|i| fwd_addr(syn(&mut d, "203.0.113.9", 1000 + i, Time::ZERO)))
        .collect();
    assert_eq!(
        picks,
        vec![
            Some(ip("192.168.0.4")),
            Some(ip("192.168.0.3")),
            Some(ip("192.168.0.2")),
            Some(ip("192.168.0.4"))
        ]
    );
}

#[test]
fn active_and_inactive_follow_the_tcp_states() {
    let (mut d, _) = setup(SchedulerKind::Wlc, &[("192.168.0.2", 1)], Forward::Masq);
    let t = Time::ZERO;
    syn(&mut d, "203.0.113.9", 1000, t);
    // SYN_RECV counts as active in current kernels.
    assert_eq!(counts(&d, "192.168.0.2"), (1, 0, 0));
    nat_conn(&mut d, "203.0.113.9", 1001, t, true);
    assert_eq!(counts(&d, "192.168.0.2"), (1, 1, 0));
    let states: Vec<_> = d.conns().map(|(_, c)| d.state_name(c)).collect();
    assert!(states.contains(&"TIME_WAIT") && states.contains(&"SYN_RECV"));
    // SYN_RECV expires after 60 s, TIME_WAIT after 120 s.
    let mut gone = Vec::new();
    d.handle_timeout(Time::from_secs(60), |_, c| gone.push(c.key.cport));
    assert_eq!(gone, vec![1000]);
    assert_eq!(counts(&d, "192.168.0.2"), (0, 1, 0));
    d.handle_timeout(Time::from_secs(120), |_, c| gone.push(c.key.cport));
    assert_eq!(gone, vec![1000, 1001]);
    assert_eq!(counts(&d, "192.168.0.2"), (0, 0, 0));
}

#[test]
fn dr_uses_the_input_only_table() {
    let (mut d, _) = setup(SchedulerKind::Wlc, &[("192.168.0.2", 1)], Forward::Route);
    let c = ip("203.0.113.9");
    let t = Time::ZERO;
    syn(&mut d, "203.0.113.9", 1000, t);
    d.handle_in(&Packet::tcp(c, 1000, vip(), 80, TcpFlags::ACK), t);
    d.handle_in(&Packet::tcp(c, 1000, vip(), 80, TcpFlags::FIN_ACK), t);
    let (_, conn) = d.conns().next().unwrap();
    assert_eq!(d.state_name(conn), "FIN_WAIT");
    assert!(conn.flags.no_output);
    assert_eq!(conn.expires, Time::from_secs(120));
}

#[test]
fn wlc_weighs_active_256_times_inactive() {
    let (mut d, _) = setup(
        SchedulerKind::Wlc,
        &[("192.168.0.2", 1), ("192.168.0.3", 1)],
        Forward::Masq,
    );
    let t = Time::ZERO;
    // One held connection on .3 (the head, picked first on a tie).
    assert_eq!(
        nat_conn(&mut d, "203.0.113.1", 1, t, false),
        Some(ip("192.168.0.3"))
    );
    // Up to 255 closed connections on .2 weigh less than one active on .3.
    for i in 0..256 {
        assert_eq!(
            nat_conn(&mut d, "203.0.113.2", 100 + i, t, true),
            Some(ip("192.168.0.2"))
        );
    }
    // Now 256 == 256: the tie goes to the head, .3.
    assert_eq!(
        nat_conn(&mut d, "203.0.113.3", 1, t, true),
        Some(ip("192.168.0.3"))
    );
}

#[test]
fn quiesced_server_keeps_its_connections_and_gets_no_new_ones() {
    let (mut d, key) = setup(
        SchedulerKind::Rr,
        &[("192.168.0.2", 1), ("192.168.0.3", 1)],
        Forward::Masq,
    );
    let t = Time::ZERO;
    assert_eq!(
        nat_conn(&mut d, "203.0.113.1", 1, t, false),
        Some(ip("192.168.0.3"))
    );
    d.edit_dest(&key, dest("192.168.0.3", 80, 0, Forward::Masq))
        .unwrap();
    let c = ip("203.0.113.1");
    match d.handle_in(&Packet::tcp(c, 1, vip(), 80, TcpFlags::ACK), t) {
        InVerdict::Forward(f) => assert_eq!(f.daddr, ip("192.168.0.3")),
        v => panic!("existing connection not forwarded: {v:?}"),
    }
    for i in 0..5 {
        assert_eq!(
            nat_conn(&mut d, "203.0.113.5", 10 + i, t, true),
            Some(ip("192.168.0.2"))
        );
    }
}

#[test]
fn upper_threshold_sets_overload_and_lower_rule_clears_it() {
    let mut d = Director::default();
    let key = tcp_svc(80);
    d.add_service(ServiceConfig::new(key)).unwrap();
    let mut a = dest("192.168.0.2", 80, 1, Forward::Masq);
    a.u_threshold = 4;
    d.add_dest(&key, a).unwrap();
    let t = Time::ZERO;
    for i in 0..4 {
        assert!(fwd_addr(syn(&mut d, "203.0.113.1", 10 + i, t)).is_some());
    }
    let over = |d: &Director| d.dests.iter().any(|(_, x)| x.overloaded);
    assert!(over(&d));
    assert!(matches!(
        syn(&mut d, "203.0.113.1", 99, t),
        InVerdict::Refuse(_)
    ));
    // No lower threshold: cleared when total*4 < upper*3, i.e. at 2 connections.
    let mut n = 0;
    d.handle_timeout(Time::from_secs(60), |_, _| n += 1);
    assert_eq!(n, 4);
    assert!(!over(&d));
}

#[test]
fn persistence_sticks_and_masks_the_client() {
    let mut d = Director::default();
    let key = tcp_svc(443);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.persistence = Some(Persistence {
        timeout: 300,
        netmask: 0xffff_ff00,
    });
    d.add_service(cfg).unwrap();
    for a in ["192.168.0.2", "192.168.0.3"] {
        d.add_dest(&key, dest(a, 443, 1, Forward::Route)).unwrap();
    }
    let t = Time::ZERO;
    let first = d.handle_in(
        &Packet::tcp(ip("203.0.113.7"), 1, vip(), 443, TcpFlags::SYN),
        t,
    );
    let same_net = d.handle_in(
        &Packet::tcp(ip("203.0.113.200"), 2, vip(), 443, TcpFlags::SYN),
        t,
    );
    let other_net = d.handle_in(
        &Packet::tcp(ip("198.51.100.1"), 3, vip(), 443, TcpFlags::SYN),
        t,
    );
    assert_eq!(fwd_addr(first), fwd_addr(same_net));
    assert_ne!(fwd_addr(first), fwd_addr(other_net));
    let templates: Vec<_> = d.conns().filter(|(_, c)| c.flags.template).collect();
    assert_eq!(templates.len(), 2);
    let (_, tpl) = templates
        .iter()
        .find(|(_, c)| c.key.caddr == ip("203.0.113.0"))
        .copied()
        .unwrap();
    assert_eq!((tpl.key.cport, tpl.key.vport, tpl.dport), (0, 443, 443));
    assert_eq!(tpl.n_control, 2);
    assert_eq!(d.state_name(tpl), "NONE");
    assert_eq!(tpl.expires, Time::from_secs(300));
}

#[test]
fn template_outlives_its_timeout_while_it_controls_connections() {
    let mut d = Director::default();
    let key = tcp_svc(80);
    let mut cfg = ServiceConfig::new(key);
    cfg.persistence = Some(Persistence {
        timeout: 30,
        netmask: u32::MAX,
    });
    d.add_service(cfg).unwrap();
    d.add_dest(&key, dest("192.168.0.2", 80, 1, Forward::Masq))
        .unwrap();
    // An established connection (900 s) outlives the 30 s template.
    nat_conn(&mut d, "203.0.113.1", 5, Time::ZERO, false);
    let tpl = |d: &Director| {
        d.conns()
            .find(|(_, c)| c.flags.template)
            .map(|(_, c)| (d.state_name(c), c.expires))
    };
    // ESTABLISHED under the template made it ASSURED.
    assert_eq!(tpl(&d), Some(("ASSURED", Time::from_secs(30))));
    d.handle_timeout(Time::from_secs(30), |_, _| {});
    // Kept: it controls a connection; now re-armed for 60 s at a time.
    assert_eq!(tpl(&d), Some(("ASSURED", Time::from_secs(90))));
    assert_eq!(counts(&d, "192.168.0.2"), (1, 0, 1));
}

#[test]
fn fwmark_services_share_one_template_across_ports() {
    let mut d = Director::default();
    let key = ServiceKey::Fwmark {
        mark: 6666,
        family: Family::V4,
    };
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.persistence = Some(Persistence::default_for(Family::V4));
    d.add_service(cfg).unwrap();
    for a in ["192.168.0.2", "192.168.0.3", "192.168.0.4"] {
        d.add_dest(&key, dest(a, 0, 1, Forward::Route)).unwrap();
    }
    let t = Time::ZERO;
    let mut http = Packet::tcp(ip("203.0.113.7"), 1, vip(), 80, TcpFlags::SYN);
    http.fwmark = 6666;
    let mut https = Packet::tcp(ip("203.0.113.7"), 2, vip(), 443, TcpFlags::SYN);
    https.fwmark = 6666;
    let a = d.handle_in(&http, t);
    let b = d.handle_in(&https, t);
    assert_eq!(fwd_addr(a), fwd_addr(b));
    // Dest port 0 keeps the packet's port.
    assert!(matches!(b, InVerdict::Forward(f) if f.dport == 443));
    let tpl: Vec<_> = d.conns().filter(|(_, c)| c.flags.template).collect();
    assert_eq!(tpl.len(), 1);
    let (_, t0) = tpl[0];
    assert_eq!(t0.key.proto, PROTO_IP);
    assert_eq!(t0.key.vaddr, IpAddr::V4(Ipv4Addr::from(6666u32)));
    assert_eq!((t0.key.vport, t0.dport), (0, 0));
    // Without the mark the packet is not for any service.
    let unmarked = Packet::tcp(ip("203.0.113.7"), 3, vip(), 80, TcpFlags::SYN);
    assert_eq!(d.handle_in(&unmarked, t), InVerdict::Pass);
}

#[test]
fn quiesced_template_is_invalidated_only_with_the_sysctl() {
    for expire_quiescent in [false, true] {
        let mut d = Director::default();
        d.set_sysctl(Sysctl {
            expire_quiescent_template: expire_quiescent,
            ..*d.sysctl()
        });
        let key = tcp_svc(80);
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        cfg.persistence = Some(Persistence::default_for(Family::V4));
        d.add_service(cfg).unwrap();
        d.add_dest(&key, dest("192.168.0.2", 80, 1, Forward::Route))
            .unwrap();
        d.add_dest(&key, dest("192.168.0.3", 80, 1, Forward::Route))
            .unwrap();
        let t = Time::ZERO;
        let first = fwd_addr(syn(&mut d, "203.0.113.7", 1, t)).unwrap();
        d.edit_dest(&key, dest(&first.to_string(), 80, 0, Forward::Route))
            .unwrap();
        let second = fwd_addr(syn(&mut d, "203.0.113.7", 2, t)).unwrap();
        assert_eq!(first == second, !expire_quiescent);
        if expire_quiescent {
            let invalid = d.conns().filter(|(_, c)| c.flags.invalidated).count();
            assert_eq!(invalid, 1);
        }
    }
}

#[test]
fn removed_dest_drops_or_reschedules_by_expire_nodest_conn() {
    for nodest in [false, true] {
        let (mut d, key) = setup(
            SchedulerKind::Rr,
            &[("192.168.0.2", 1), ("192.168.0.3", 1)],
            Forward::Masq,
        );
        d.set_sysctl(Sysctl {
            expire_nodest_conn: nodest,
            ..*d.sysctl()
        });
        let t = Time::ZERO;
        let to = nat_conn(&mut d, "203.0.113.1", 7, t, false).unwrap();
        d.delete_dest(&key, to, 80, t).unwrap();
        let mut flushed = 0;
        d.handle_timeout(t, |_, _| flushed += 1);
        let next = d.handle_in(
            &Packet::tcp(ip("203.0.113.1"), 7, vip(), 80, TcpFlags::ACK),
            t,
        );
        if nodest {
            // Flushed right after the delete, as 6.1 does (nodest.golden);
            // a bare ACK cannot open a new connection.
            assert_eq!(flushed, 1);
            assert_eq!(next, InVerdict::Pass);
            assert_eq!(d.conn_count(), 0);
        } else {
            assert_eq!(flushed, 0);
            assert_eq!(next, InVerdict::Drop);
            assert_eq!(d.conn_count(), 1);
        }
    }
}

#[test]
fn syn_on_a_time_wait_entry_is_rescheduled() {
    let (mut d, _) = setup(
        SchedulerKind::Rr,
        &[("192.168.0.2", 1), ("192.168.0.3", 1)],
        Forward::Masq,
    );
    let t = Time::ZERO;
    let a = nat_conn(&mut d, "203.0.113.1", 7, t, true);
    let b = fwd_addr(syn(&mut d, "203.0.113.1", 7, Time::from_secs(1)));
    assert_ne!(a, b);
    assert_eq!(d.conn_count(), 1);
}

#[test]
fn one_packet_udp_keeps_no_entry() {
    let mut d = Director::default();
    let key = udp_svc(53);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.one_packet = true;
    d.add_service(cfg).unwrap();
    d.add_dest(&key, dest("192.168.0.2", 53, 1, Forward::Masq))
        .unwrap();
    d.add_dest(&key, dest("192.168.0.3", 53, 1, Forward::Masq))
        .unwrap();
    let p = Packet::udp(ip("203.0.113.1"), 5353, vip(), 53);
    let a = d.handle_in(&p, Time::ZERO);
    let b = d.handle_in(&p, Time::ZERO);
    assert_ne!(fwd_addr(a), fwd_addr(b));
    assert!(matches!(a, InVerdict::Forward(f) if f.conn.is_none()));
    assert_eq!(d.conn_count(), 0);
    assert_eq!(counts(&d, "192.168.0.2"), (0, 0, 0));
    let svc = d.service_by_key(&key).unwrap();
    assert_eq!(svc.stats.counters().conns, 2);
    assert_eq!(svc.stats.counters().in_pkts, 2);
}

#[test]
fn udp_is_always_inactive_with_the_udp_timeout() {
    let mut d = Director::default();
    d.set_timeouts(0, 0, 7).unwrap();
    let key = udp_svc(53);
    d.add_service(ServiceConfig::new(key)).unwrap();
    d.add_dest(&key, dest("192.168.0.2", 53, 1, Forward::Masq))
        .unwrap();
    d.handle_in(&Packet::udp(ip("203.0.113.1"), 5353, vip(), 53), Time::ZERO);
    assert_eq!(counts(&d, "192.168.0.2"), (0, 1, 0));
    let (_, c) = d.conns().next().unwrap();
    assert_eq!((d.state_name(c), c.expires), ("UDP", Time::from_secs(7)));
    assert_eq!(d.timeouts().shown(), (900, 120, 7));
}

#[test]
fn trash_returns_counters_to_a_re_added_dest() {
    let (mut d, key) = setup(SchedulerKind::Rr, &[("192.168.0.2", 1)], Forward::Masq);
    let t = Time::ZERO;
    nat_conn(&mut d, "203.0.113.1", 7, t, true);
    d.delete_dest(&key, ip("192.168.0.2"), 80, t).unwrap();
    d.add_dest(&key, dest("192.168.0.2", 80, 2, Forward::Masq))
        .unwrap();
    let svc = d.service_by_key(&key).unwrap();
    let back = d.dests_of(svc).next().unwrap();
    assert_eq!(back.stats.counters().conns, 1);
    assert_eq!(back.inactive_conns, 1);
    // After it leaves the trash (idle two minutes), a re-add starts from zero.
    d.delete_dest(&key, ip("192.168.0.2"), 80, t).unwrap();
    for s in [120, 180, 300, 360, 420] {
        d.handle_timeout(Time::from_secs(s), |_, _| {});
    }
    d.add_dest(&key, dest("192.168.0.2", 80, 2, Forward::Masq))
        .unwrap();
    let svc = d.service_by_key(&key).unwrap();
    assert_eq!(d.dests_of(svc).next().unwrap().stats.counters().conns, 0);
}

#[test]
fn validation_errors_change_nothing() {
    let mut d = Director::default();
    let key = tcp_svc(0);
    assert_eq!(
        d.add_service(ServiceConfig::new(key)),
        Err(CoreError::Config(ConfigError::ZeroPortNotPersistent))
    );
    assert_eq!(d.services().count(), 0);
    let key = tcp_svc(80);
    d.add_service(ServiceConfig::new(key)).unwrap();
    assert!(matches!(
        d.add_service(ServiceConfig::new(key)),
        Err(CoreError::ServiceExists(_))
    ));
    let mut bad = dest("192.168.0.2", 80, 1 << 31, Forward::Masq);
    assert!(d.add_dest(&key, bad).is_err());
    bad.weight = 1;
    bad.forward = Forward::Tunnel(TunnelConfig {
        kind: crate::model::TunnelKind::Gue,
        port: 0,
        csum: crate::model::TunnelCsum::NoCsum,
    });
    assert!(d.add_dest(&key, bad).is_err());
    assert_eq!(d.dests_of(d.service_by_key(&key).unwrap()).count(), 0);
    assert_eq!(
        d.edit_dest(&key, dest("192.168.0.9", 80, 1, Forward::Masq)),
        Err(CoreError::NoDest)
    );
    assert!(d.set_timeouts(u64::MAX, 0, 0).is_err());
    assert_eq!(d.timeouts().shown(), (900, 120, 300));
}

#[test]
fn rates_follow_traffic() {
    let (mut d, key) = setup(SchedulerKind::Rr, &[("192.168.0.2", 1)], Forward::Masq);
    for s in 0..40u64 {
        let now = Time::from_secs(s);
        for i in 0..10u16 {
            let cport = (s as u16) * 10 + i + 1;
            nat_conn(&mut d, "203.0.113.1", cport, now, true);
        }
        d.handle_timeout(now, |_, _| {});
    }
    let r = d.service_by_key(&key).unwrap().stats.rates();
    assert_eq!(r.cps, 10);
    // 4 inbound and 2 outbound packets per connection.
    assert_eq!((r.in_pps, r.out_pps), (40, 20));
}

#[test]
fn sctp_association_counts_active_only_when_established() {
    use crate::conn::sctp::chunk;
    let mut d = Director::default();
    let key = ServiceKey::Addr {
        proto: Protocol::Sctp,
        addr: vip(),
        port: 3868,
    };
    d.add_service(ServiceConfig::new(key)).unwrap();
    d.add_dest(&key, dest("192.168.0.2", 3868, 1, Forward::Masq))
        .unwrap();
    let c = ip("203.0.113.1");
    let rs = ip("192.168.0.2");
    let pkt = |from_client: bool, ch: u8| {
        let (s, sp, dd, dp) = if from_client {
            (c, 5000, vip(), 3868)
        } else {
            (rs, 3868, c, 5000)
        };
        Packet {
            proto: 132,
            saddr: s,
            sport: sp,
            daddr: dd,
            dport: dp,
            fwmark: 0,
            tcp: TcpFlags::default(),
            sctp: SctpInfo {
                first_chunk: ch,
                event: crate::conn::sctp::event_from_chunks(&[ch]),
            },
            len: 100,
        }
    };
    let t = Time::ZERO;
    // DATA cannot open an association; INIT can.
    assert_eq!(d.handle_in(&pkt(true, chunk::DATA), t), InVerdict::Pass);
    assert!(matches!(
        d.handle_in(&pkt(true, chunk::INIT), t),
        InVerdict::Forward(_)
    ));
    assert_eq!(counts(&d, "192.168.0.2"), (0, 1, 0));
    d.handle_out(&pkt(false, chunk::INIT_ACK), t);
    d.handle_in(&pkt(true, chunk::COOKIE_ECHO), t);
    d.handle_out(&pkt(false, chunk::COOKIE_ACK), t);
    let (_, conn) = d.conns().next().unwrap();
    assert_eq!(d.state_name(conn), "ESTABLISHED");
    assert_eq!(counts(&d, "192.168.0.2"), (1, 0, 0));
    d.handle_in(&pkt(true, chunk::SHUTDOWN), t);
    assert_eq!(counts(&d, "192.168.0.2"), (0, 1, 0));
}

#[test]
fn invariants_hold_through_a_mixed_workload() {
    let (mut d, key) = setup(
        SchedulerKind::Wlc,
        &[("192.168.0.2", 1), ("192.168.0.3", 3)],
        Forward::Masq,
    );
    let mut cfg = ServiceConfig::new(key);
    cfg.persistence = Some(Persistence::default_for(Family::V4));
    d.edit_service(cfg).unwrap();
    for i in 0..50u16 {
        let t = Time::from_secs(u64::from(i));
        nat_conn(&mut d, "203.0.113.1", 100 + i, t, i % 3 == 0);
        if i == 20 {
            d.edit_dest(&key, dest("192.168.0.3", 80, 0, Forward::Masq))
                .unwrap();
        }
        if i == 30 {
            d.delete_dest(&key, ip("192.168.0.2"), 80, t).unwrap();
        }
        d.handle_timeout(t, |_, _| {});
        d.check_invariants().unwrap();
    }
    d.handle_timeout(Time::from_secs(5000), |_, _| {});
    d.check_invariants().unwrap();
    assert_eq!(d.conn_count(), 0);
}

#[test]
fn port_zero_persistence_uses_the_port_zero_template_for_every_port() {
    let mut d = Director::default();
    let key = tcp_svc(0);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.persistence = Some(Persistence::default_for(Family::V4));
    d.add_service(cfg).unwrap();
    for a in ["192.168.0.2", "192.168.0.3"] {
        d.add_dest(&key, dest(a, 0, 1, Forward::Route)).unwrap();
    }
    let t = Time::ZERO;
    let c = ip("203.0.113.7");
    let picks: Vec<_> = [80u16, 443, 8080]
        .iter()
        .map(|&port| d.handle_in(&Packet::tcp(c, 1000 + port, vip(), port, TcpFlags::SYN), t))
        .collect();
    for (v, port) in picks.iter().zip([80u16, 443, 8080]) {
        // Same server, and the connection keeps the packet's port (dest port 0).
        assert!(
            matches!(v, InVerdict::Forward(f) if f.daddr == ip("192.168.0.3") && f.dport == port)
        );
    }
    let tpl: Vec<_> = d.conns().filter(|(_, c)| c.flags.template).collect();
    assert_eq!(tpl.len(), 1);
    let (_, t0) = tpl[0];
    assert_eq!(
        (t0.key.proto, t0.key.cport, t0.key.vport, t0.dport),
        (6, 0, 0, 0)
    );
    assert_eq!(t0.n_control, 3);
}

mod shares {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// With every connection held open, the weighted least-connection
        /// schedulers give each server exactly k times its weight after k rounds
        /// of the total weight (greedy apportionment by active/weight).
        #[test]
        fn held_connections_follow_the_weights(
            weights in prop::collection::vec(1u32..6, 1..6),
            rounds in 1u32..4,
            sched in prop_oneof![Just(SchedulerKind::Wlc), Just(SchedulerKind::Sed)],
        ) {
            let names: Vec<String> = (0..weights.len()).map(|i| format!("192.168.0.{}", i + 2)).collect();
            let spec: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(weights.iter().copied()).collect();
            let (mut d, _) = setup(sched, &spec, Forward::Masq);
            let total: u32 = weights.iter().sum();
            for i in 0..rounds * total {
                let got = nat_conn(&mut d, "203.0.113.1", 1000 + i as u16, Time::ZERO, false);
                prop_assert!(got.is_some());
            }
            for (name, w) in spec {
                prop_assert_eq!(counts(&d, name).0, rounds * w, "{} weight {}", name, w);
            }
        }
    }
}

/// The socket plane's view of a NAT connection: segments by id reach the same
/// states as the packets would, traffic counts land on the real server and a
/// stale key is refused.
#[test]
fn segments_and_traffic_by_id_follow_the_packet_path() {
    let (mut d, _) = setup(SchedulerKind::Rr, &[("192.168.1.1", 1)], Forward::Masq);
    let t0 = Time::from_millis(1_000);
    let InVerdict::Forward(f) = syn(&mut d, "172.16.0.1", 4000, t0) else {
        panic!("not forwarded");
    };
    let id = f.conn.unwrap();
    let key = d.conn(id).unwrap().key;
    assert_eq!(d.state_name(d.conn(id).unwrap()), "SYN_RECV");
    assert!(d.handle_segment(id, &key, true, TcpFlags::SYN_ACK, 0, t0));
    assert!(d.handle_segment(id, &key, false, TcpFlags::ACK, 0, t0));
    assert_eq!(d.state_name(d.conn(id).unwrap()), "ESTABLISHED");
    assert_eq!(counts(&d, "192.168.1.1"), (1, 0, 0));

    let traffic = Counters {
        in_pkts: 3,
        in_bytes: 300,
        out_pkts: 5,
        out_bytes: 5000,
        ..Counters::default()
    };
    let later = t0 + Span::from_secs(100);
    assert!(d.handle_traffic(id, &key, traffic, later));
    assert_eq!(
        d.conn(id).unwrap().expires,
        later + TcpState::Established.default_timeout()
    );
    // An older activity time never pulls the expiry in.
    assert!(d.handle_traffic(id, &key, Counters::default(), t0));
    assert_eq!(
        d.conn(id).unwrap().expires,
        later + TcpState::Established.default_timeout()
    );
    let c = d.total_stats().counters();
    // The SYN of `syn()` is a 60-byte packet; the segments by id carry none.
    assert_eq!((c.in_bytes, c.out_bytes), (60 + 300, 5000));
    // SYN + ACK in, SYN-ACK out, plus the reported packets.
    assert_eq!((c.in_pkts, c.out_pkts), (2 + 3, 1 + 5));

    // The server closes first: FIN out, ACK in, FIN in, ACK out.
    assert!(d.handle_segment(id, &key, true, TcpFlags::FIN_ACK, 0, later));
    assert!(d.handle_segment(id, &key, false, TcpFlags::ACK, 0, later));
    assert!(d.handle_segment(id, &key, false, TcpFlags::FIN_ACK, 0, later));
    assert!(d.handle_segment(id, &key, true, TcpFlags::ACK, 0, later));
    assert_eq!(d.state_name(d.conn(id).unwrap()), "TIME_WAIT");
    assert_eq!(counts(&d, "192.168.1.1"), (0, 1, 0));

    let mut other = key;
    other.cport += 1;
    assert!(!d.handle_segment(id, &other, false, TcpFlags::ACK, 0, later));
    assert!(!d.handle_traffic(id, &other, traffic, later));
    d.handle_timeout(later + Span::from_secs(121), |_, _| {});
    assert!(!d.handle_segment(id, &key, false, TcpFlags::ACK, 0, later));
    d.check_invariants().unwrap();
}

#[test]
fn hash_table_copies_pick_what_the_scheduler_picks() {
    use crate::sched::hash::{fold_addr, hash_32, hsiphash_u32};
    let dests = [("10.1.0.1", 1), ("10.1.0.2", 3), ("10.1.0.3", 2)];
    for kind in [SchedulerKind::Sh, SchedulerKind::Dh, SchedulerKind::Mh] {
        let (mut d, key) = setup(kind, &dests, Forward::Route);
        let sid = d.service_by_key(&key).unwrap().id;
        let table = d.hash_table(sid).unwrap();
        assert_eq!(table.slots.len(), table.size as usize);
        let mut seen = std::collections::HashSet::new();
        for i in 0..300u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + i * 7919));
            let slot = match kind {
                SchedulerKind::Sh => hash_32(fold_addr(client), table.bits),
                SchedulerKind::Dh => hash_32(fold_addr(vip()), table.bits),
                _ => hsiphash_u32(fold_addr(client), &crate::sched::mh::HASH1_KEY) % table.size,
            };
            let copied = table.slots[slot as usize]
                .and_then(|id| d.dest(id))
                .map(|x| x.config.addr);
            let v = d.handle_in(
                &Packet::tcp(client, 1000, vip(), 80, TcpFlags::SYN),
                Time::ZERO,
            );
            assert_eq!(copied, fwd_addr(v), "{kind:?} client {client}");
            seen.extend(copied);
        }
        let spread = if kind == SchedulerKind::Dh { 1 } else { 3 };
        assert_eq!(seen.len(), spread, "{kind:?}");
    }
    let (d, key) = setup(SchedulerKind::Wlc, &dests, Forward::Route);
    assert!(d.hash_table(d.service_by_key(&key).unwrap().id).is_none());
}
