//! Connection synchronisation in the core: the master's announcement rule
//! (ip_vs_sync.c `ip_vs_sync_conn_needed`), the backup's import
//! (`ip_vs_proc_conn`) and a master-to-backup hand-over of a whole table.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::{
    Counters, DestConfig, Director, Forward, ImportError, InVerdict, Packet, Persistence, Protocol,
    SchedulerKind, ServiceConfig, ServiceKey, Span, SyncParams, SyncedConn, TcpFlags, TcpState,
    Time,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

const VIP: &str = "10.0.0.1";
const REALS: [&str; 3] = ["192.168.1.1", "192.168.1.2", "192.168.1.3"];

fn svc() -> ServiceKey {
    ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: ip(VIP),
        port: 80,
    }
}

fn director(sched: SchedulerKind, fwd: Forward, persistent: bool) -> Director {
    let mut d = Director::default();
    let mut cfg = ServiceConfig::new(svc());
    cfg.scheduler = sched;
    if persistent {
        cfg.persistence = Some(Persistence {
            timeout: 360,
            netmask: 0xffff_ffff,
        });
    }
    let mut ok = d.add_service(cfg).is_ok();
    for r in REALS {
        let dc = DestConfig {
            forward: fwd,
            ..DestConfig::new(ip(r), 80)
        };
        ok &= d.add_dest(&svc(), dc).is_ok();
    }
    assert!(ok, "the test's table is valid");
    d
}

fn pkt(client: u8, cport: u16, flags: TcpFlags) -> Packet {
    Packet::tcp(
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, client)),
        cport,
        ip(VIP),
        80,
        flags,
    )
}

fn ack() -> TcpFlags {
    TcpFlags {
        ack: true,
        ..TcpFlags::default()
    }
}

fn fin() -> TcpFlags {
    TcpFlags {
        fin: true,
        ack: true,
        ..TcpFlags::default()
    }
}

fn t(s: u64) -> Time {
    Time::from_millis(s * 1000)
}

fn drained(d: &mut Director) -> Vec<SyncedConn> {
    let mut v = Vec::new();
    d.drain_sync(&mut v);
    v
}

/// Each real server of `svc` with its connection counters.
fn dest_counts(d: &Director, svc: &rvs_core::Service) -> Vec<(IpAddr, u32, u32, u32)> {
    d.dests_of(svc)
        .map(|x| {
            (
                x.config.addr,
                x.active_conns,
                x.inactive_conns,
                x.persist_conns,
            )
        })
        .collect()
}

fn forwarded_to(v: InVerdict) -> Option<IpAddr> {
    match v {
        InVerdict::Forward(f) => Some(f.daddr),
        _ => None,
    }
}

#[test]
fn master_announces_at_the_threshold_then_every_period_and_state_changes_at_once() {
    let mut d = director(SchedulerKind::Wlc, Forward::Route, false);
    d.set_sync_master(Some(SyncParams::default()));
    let now = t(1);
    d.handle_in(&pkt(1, 1000, TcpFlags::SYN), now);
    d.handle_in(&pkt(1, 1000, ack()), now);
    // Two packets: SYN_RECV is not announced, ESTABLISHED waits for packet 3.
    assert!(drained(&mut d).is_empty());
    d.handle_in(&pkt(1, 1000, ack()), now);
    let sent = drained(&mut d);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].state, TcpState::Established.index());
    assert!(!sent[0].inactive);
    assert!(sent[0].no_output, "DR connections see no replies");
    assert_eq!(sent[0].timeout, Span::from_secs(900));
    // Packets 4..52 are quiet, 53 = 3 + 50 announces again.
    for _ in 4..53 {
        d.handle_in(&pkt(1, 1000, ack()), now);
    }
    assert!(drained(&mut d).is_empty());
    d.handle_in(&pkt(1, 1000, ack()), now);
    assert_eq!(drained(&mut d).len(), 1);
    // A FIN moves the state: announced at once, whatever the count.
    d.handle_in(&pkt(1, 1000, fin()), now);
    let sent = drained(&mut d);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, TcpState::FinWait.index());
    // Without a master nothing is queued.
    d.set_sync_master(None);
    d.handle_in(&pkt(2, 1000, TcpFlags::SYN), now);
    for _ in 0..5 {
        d.handle_in(&pkt(2, 1000, ack()), now);
    }
    assert!(drained(&mut d).is_empty());
}

#[test]
fn bulk_counts_from_a_fast_path_fire_the_same_rule() {
    let mut d = director(SchedulerKind::Wlc, Forward::Route, false);
    d.set_sync_master(Some(SyncParams::default()));
    let now = t(1);
    let id = match d.handle_in(&pkt(1, 1000, TcpFlags::SYN), now) {
        InVerdict::Forward(f) => f.conn.expect("conn"),
        v => panic!("{v:?}"),
    };
    let key = d.conn(id).expect("conn").key;
    assert!(d.handle_segment(id, &key, false, ack(), 40, now));
    assert!(drained(&mut d).is_empty());
    let fold = |n: u64| Counters {
        in_pkts: n,
        ..Counters::default()
    };
    // 2 -> 40 crosses 3: one announcement; 40 -> 52 crosses nothing; 52 -> 60 crosses 53.
    assert!(d.handle_traffic(id, &key, fold(38), now));
    assert_eq!(drained(&mut d).len(), 1);
    assert!(d.handle_traffic(id, &key, fold(12), now));
    assert!(drained(&mut d).is_empty());
    assert!(d.handle_traffic(id, &key, fold(8), now));
    assert_eq!(drained(&mut d).len(), 1);
}

#[test]
fn persistent_services_announce_the_template_with_its_connections() {
    let mut d = director(SchedulerKind::Rr, Forward::Route, true);
    d.set_sync_master(Some(SyncParams::default()));
    let now = t(1);
    d.handle_in(&pkt(1, 1000, TcpFlags::SYN), now);
    let sent = drained(&mut d);
    // The template rides on every inbound packet of its connections.
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].key.template);
    assert_eq!(sent[0].key.cport, 0);
    assert_eq!(sent[0].timeout, Span::from_secs(360));
    // sync_persist_mode: the connections themselves stay quiet.
    d.set_sync_master(Some(SyncParams {
        persist_mode: true,
        ..SyncParams::default()
    }));
    for _ in 0..5 {
        d.handle_in(&pkt(1, 1000, ack()), now);
    }
    let sent = drained(&mut d);
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|s| s.key.template), "{sent:?}");
}

/// The master's whole table, handed to a backup with the same services,
/// forwards every flow to the same real server there, mid-flow, with the
/// same counters, and the backup's invariants hold.
#[test]
fn a_backup_forwards_imported_flows_to_the_same_real_servers() {
    for persistent in [false, true] {
        let mut master = director(SchedulerKind::Wlc, Forward::Masq, persistent);
        let mut backup = director(SchedulerKind::Wlc, Forward::Masq, persistent);
        let now = t(10);
        let mut chosen = Vec::new();
        for c in 0..30u8 {
            let to =
                forwarded_to(master.handle_in(&pkt(c, 2000 + u16::from(c), TcpFlags::SYN), now));
            master.handle_in(&pkt(c, 2000 + u16::from(c), ack()), now);
            chosen.push(to.expect("scheduled"));
        }
        let mut all = Vec::new();
        master.sync_export(&mut all);
        let want = if persistent { 60 } else { 30 };
        assert_eq!(all.len(), want);
        if persistent {
            assert!(all[..30].iter().all(|s| s.key.template), "templates first");
        }
        for s in &all {
            backup.import_synced(s, now).expect("import");
        }
        backup.check_invariants().expect("invariants");
        assert_eq!(backup.conn_count(), master.conn_count());
        for (m, b) in master.services().zip(backup.services()) {
            assert_eq!(dest_counts(&master, m), dest_counts(&backup, b));
        }
        // Mid-flow packets (no SYN) find their entry on the backup.
        for c in 0..30u8 {
            let to = forwarded_to(backup.handle_in(&pkt(c, 2000 + u16::from(c), ack()), now));
            assert_eq!(to, Some(chosen[usize::from(c)]), "client {c}");
        }
        // A flow the master never had is not created by an ACK.
        assert_eq!(backup.handle_in(&pkt(99, 9, ack()), now), InVerdict::Pass);
        // Announced entries expire by their announced timeout.
        let mut expired = 0;
        backup.handle_timeout(now + Span::from_secs(901), |_, c| {
            if !c.flags.template {
                expired += 1;
            }
        });
        assert_eq!(expired, 30);
    }
}

/// A DR master's one established connection as its export gives it, and a
/// backup with the same table that has not imported it yet.
fn one_announced_connection(now: Time) -> (SyncedConn, Director) {
    let mut master = director(SchedulerKind::Wlc, Forward::Route, false);
    master.handle_in(&pkt(1, 1000, TcpFlags::SYN), now);
    master.handle_in(&pkt(1, 1000, ack()), now);
    let mut all = Vec::new();
    master.sync_export(&mut all);
    assert_eq!(all.len(), 1, "{all:?}");
    (all[0], director(SchedulerKind::Wlc, Forward::Route, false))
}

#[test]
fn an_update_moves_the_state_and_the_counters() {
    let now = t(5);
    let (announced, mut backup) = one_announced_connection(now);
    let id = backup.import_synced(&announced, now).expect("import");
    let dest = backup.conn(id).expect("conn").dest;
    assert_eq!(backup.dest(dest).map(|d| d.active_conns), Some(1));
    let closing = SyncedConn {
        state: TcpState::FinWait.index(),
        inactive: true,
        timeout: Span::from_secs(120),
        ..announced
    };
    assert_eq!(backup.import_synced(&closing, now), Ok(id));
    let d = backup.dest(dest).expect("dest");
    assert_eq!((d.active_conns, d.inactive_conns), (0, 1));
    let c = backup.conn(id).expect("conn");
    assert_eq!(backup.state_name(c), "FIN_WAIT");
    assert_eq!(c.expires, now + Span::from_secs(120));
    backup.check_invariants().expect("invariants");
}

#[test]
fn announcements_that_do_not_fit_change_nothing() {
    let now = t(5);
    let (good, mut backup) = one_announced_connection(now);
    let mut other_vip = good;
    other_vip.key.vaddr = ip("10.9.9.9");
    assert!(matches!(
        backup.import_synced(&other_vip, now),
        Err(ImportError::NoService(_))
    ));
    let mut other_real = good;
    other_real.daddr = ip("192.168.1.77");
    assert!(matches!(
        backup.import_synced(&other_real, now),
        Err(ImportError::NoDest(_))
    ));
    let mut bad_state = good;
    bad_state.state = 11;
    assert!(matches!(
        backup.import_synced(&bad_state, now),
        Err(ImportError::State { .. })
    ));
    let mut bad_proto = good;
    bad_proto.key.proto = 47;
    assert_eq!(
        backup.import_synced(&bad_proto, now),
        Err(ImportError::Protocol(47))
    );
    assert_eq!(backup.conn_count(), 0);

    // An entry on another real: an inactive announcement is stale and ignored,
    // an active one replaces the entry (ip_vs_proc_conn).
    let id = backup.import_synced(&good, now).expect("import");
    let mut moved = good;
    moved.daddr = ip(REALS
        .iter()
        .copied()
        .find(|r| ip(r) != good.daddr)
        .unwrap_or(REALS[0]));
    let stale = SyncedConn {
        inactive: true,
        state: TcpState::Close.index(),
        ..moved
    };
    assert_eq!(
        backup.import_synced(&stale, now),
        Err(ImportError::Replaced)
    );
    assert_eq!(backup.conn(id).map(|c| c.daddr), Some(good.daddr));
    let nid = backup.import_synced(&moved, now).expect("replace");
    assert_eq!(backup.conn(nid).map(|c| c.daddr), Some(moved.daddr));
    assert_eq!(backup.conn_count(), 1);
    backup.check_invariants().expect("invariants");
}

/// rvs extension: with hash pickup, a director that never saw a flow of an
/// mh service sends its mid-flow packets where the other director did.
#[test]
fn hash_schedulers_pick_up_unannounced_flows_on_the_same_real() {
    for sched in [SchedulerKind::Mh, SchedulerKind::Sh] {
        let mut a = director(sched, Forward::Route, false);
        let mut b = director(sched, Forward::Route, false);
        let now = t(1);
        assert_eq!(b.handle_in(&pkt(7, 4000, ack()), now), InVerdict::Pass);
        b.set_hash_pickup(true);
        for c in 0..40u8 {
            let on_a = forwarded_to(a.handle_in(&pkt(c, 4000 + u16::from(c), TcpFlags::SYN), now));
            let on_b = forwarded_to(b.handle_in(&pkt(c, 4000 + u16::from(c), ack()), now));
            assert!(on_a.is_some());
            assert_eq!(on_a, on_b, "{sched} client {c}");
        }
        // A RST never opens one.
        let rst = TcpFlags {
            rst: true,
            ..TcpFlags::default()
        };
        assert_eq!(b.handle_in(&pkt(200, 1, rst), now), InVerdict::Pass);
        b.check_invariants().expect("invariants");
    }
    // Other schedulers would choose anew: no pickup.
    let mut w = director(SchedulerKind::Wlc, Forward::Route, false);
    w.set_hash_pickup(true);
    assert_eq!(w.handle_in(&pkt(7, 4000, ack()), t(1)), InVerdict::Pass);
}
