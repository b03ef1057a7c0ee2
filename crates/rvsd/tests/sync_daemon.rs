//! The connection sync daemons end to end over real multicast (root only; CI
//! is root): three network namespaces on one bridge, a master director and
//! backups, each a `Control` behind its own `Shared` with its own
//! `SyncDaemons`. Connections are made on the master by feeding its core
//! packets; the backups must end up with the same table (client, virtual
//! address, real server, state), a backup of another syncid with nothing, and
//! a backup started after the traffic stopped must get everything by the rvs
//! whole-table request. Last, two rvsd running a keepalived.conf with
//! `lvs_sync_daemon` must switch their daemons with the VRRP instance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::netns::{in_netns, is_root, wait_until, Lan};
use rvs_core::{
    DestConfig, Forward, Packet, Persistence, Protocol, SchedulerKind, ServiceConfig, ServiceKey,
    TcpFlags,
};
use rvsd::control::Control;
use rvsd::http::{lock, Shared};
use rvsd::sync::{DaemonConfig, Role, SyncDaemons, SyncError};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const REALS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 1, 0, 11),
    Ipv4Addr::new(10, 1, 0, 12),
    Ipv4Addr::new(10, 1, 0, 13),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A director with a persistent NAT service on port 80 and a round-robin DR
/// service on port 443, three real servers each.
fn director() -> Shared {
    let mut control = Control::new(None).unwrap();
    let d = control.director_mut();
    for (port, forward, persistent) in [(80, Forward::Masq, true), (443, Forward::Route, false)] {
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(VIP),
            port,
        };
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        if persistent {
            cfg.persistence = Some(Persistence {
                timeout: 300,
                netmask: 0xffff_ffff,
            });
        }
        d.add_service(cfg).unwrap();
        for r in REALS {
            let dc = DestConfig {
                forward,
                ..DestConfig::new(IpAddr::V4(r), port)
            };
            d.add_dest(&key, dc).unwrap();
        }
    }
    Arc::new(Mutex::new(control))
}

/// Opens `clients` connections to each service on the master: SYN then three
/// ACKs (the third inbound packet is the one the default sync_threshold
/// announces).
fn traffic(shared: &Shared, clients: u8) {
    let mut control = lock(shared);
    let now = control.now();
    let d = control.director_mut();
    for c in 1..=clients {
        let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, c));
        for port in [80, 443] {
            let cport = 40_000 + u16::from(c);
            for flags in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK, TcpFlags::ACK] {
                d.handle_in(
                    &Packet::tcp(client, cport, IpAddr::V4(VIP), port, flags),
                    now,
                );
            }
        }
    }
}

type Row = (String, IpAddr, u16, IpAddr, u16, IpAddr, u16, String, bool);

/// `ipvsadm -Lnc` without the expiry column, sorted.
fn table(shared: &Shared) -> Vec<Row> {
    let mut rows: Vec<Row> = lock(shared)
        .conn_views()
        .into_iter()
        .map(|v| {
            (
                v.protocol,
                v.client,
                v.client_port,
                v.virtual_address,
                v.virtual_port,
                v.server,
                v.server_port,
                v.state,
                v.template,
            )
        })
        .collect();
    rows.sort();
    rows
}

fn cfg(role: Role, syncid: u8) -> DaemonConfig {
    DaemonConfig {
        role,
        mcast_ifn: "eth0".to_string(),
        syncid,
        maxlen: None,
        group: None,
        port: None,
        ttl: None,
    }
}

/// Starts a daemon with its sockets in namespace `ns`.
fn start_in(
    rt: &tokio::runtime::Runtime,
    ns: &str,
    daemons: &SyncDaemons,
    cfg: DaemonConfig,
) -> Result<(), SyncError> {
    let (handle, daemons) = (rt.handle().clone(), daemons.clone());
    in_netns(ns, move || handle.block_on(daemons.start(cfg)))
}

#[test]
fn master_announcements_reach_backups_of_its_syncid() {
    if !is_root() {
        eprintln!("SKIP: master_announcements_reach_backups_of_its_syncid needs root");
        return;
    }
    let lan = Lan::new();
    let m = lan.add_node("master", "10.9.0.1/24");
    let b = lan.add_node("backup", "10.9.0.2/24");
    let w = lan.add_node("other", "10.9.0.3/24");
    let rt = runtime();
    let (master, backup, other) = (director(), director(), director());
    let (dm, db, dw) = (
        SyncDaemons::new(master.clone()),
        SyncDaemons::new(backup.clone()),
        SyncDaemons::new(other.clone()),
    );

    start_in(&rt, m.ns(), &dm, cfg(Role::Master, 7)).unwrap();
    start_in(&rt, b.ns(), &db, cfg(Role::Backup, 7)).unwrap();
    start_in(&rt, w.ns(), &dw, cfg(Role::Backup, 9)).unwrap();
    // ipvsadm: EEXIST for a second daemon of a role, ESRCH to stop none.
    assert!(matches!(
        start_in(&rt, b.ns(), &db, cfg(Role::Backup, 7)),
        Err(SyncError::Running(Role::Backup))
    ));
    assert!(matches!(
        rt.block_on(db.stop(Role::Master)),
        Err(SyncError::NotRunning(Role::Master))
    ));
    assert!(matches!(
        start_in(&rt, m.ns(), &dm, DaemonConfig {
            mcast_ifn: "nosuch0".to_string(),
            ..cfg(Role::Backup, 7)
        }),
        Err(SyncError::Setup(e)) if e.contains("nosuch0")
    ));
    let running = dm.running();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].role, Role::Master);
    assert_eq!(running[0].group, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81)));
    assert_eq!((running[0].port, running[0].ttl), (8848, 1));
    assert_eq!(running[0].maxlen, 1472, "the master's default: 1500 - 28");
    assert!(lock(&master).director().sync_master().is_some());
    assert!(lock(&master).director().hash_pickup());
    assert!(lock(&backup).director().hash_pickup());

    // Past the backups' second request, so what follows is the live path.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(db.stats().resync_requests_sent, 2);
    assert!(table(&backup).is_empty());

    traffic(&master, 20);
    let want = table(&master);
    assert_eq!(
        want.len(),
        20 * 2 + 20,
        "20 connections per service, 20 templates"
    );
    assert!(
        wait_until(Duration::from_secs(3), || table(&backup) == want),
        "backup table\n{:#?}\nmaster table\n{want:#?}",
        table(&backup)
    );
    assert!(want.iter().any(|r| r.7 == "ESTABLISHED"));
    // Templates are announced again with each packet of their connections
    // (ip_vs_sync_conn), so there are more records than entries; every one
    // sent is installed or updated, and each is reported to the packet plane.
    assert!(
        wait_until(Duration::from_secs(2), || db.stats().conns_imported
            == dm.stats().conns_sent),
        "master {:?}\nbackup {:?}",
        dm.stats(),
        db.stats()
    );
    let (sm, st) = (dm.stats(), db.stats());
    assert!(sm.conns_sent > want.len() as u64, "{sm:?}");
    assert_eq!(st.import_errors, 0);
    assert_eq!(st.conns_received, st.conns_imported);
    assert_eq!(st.messages_received, sm.messages_sent);
    assert_eq!(
        lock(&backup).take_imported().len() as u64,
        st.conns_imported
    );

    // The other syncid heard the same messages and installed none.
    std::thread::sleep(Duration::from_millis(300));
    assert!(table(&other).is_empty());
    let so = dw.stats();
    assert!(so.wrong_syncid >= 1, "{so:?}");
    assert_eq!(so.conns_imported, 0);

    rt.block_on(dm.stop(Role::Master)).unwrap();
    assert!(dm.running().is_empty());
    assert!(lock(&master).director().sync_master().is_none());
    assert!(!lock(&master).director().hash_pickup());
    rt.block_on(db.stop(Role::Backup)).unwrap();
    rt.block_on(dw.stop(Role::Backup)).unwrap();
    assert!(!lock(&backup).director().hash_pickup());
}

#[test]
fn a_late_backup_gets_the_whole_table_on_request() {
    if !is_root() {
        eprintln!("SKIP: a_late_backup_gets_the_whole_table_on_request needs root");
        return;
    }
    let lan = Lan::new();
    let m = lan.add_node("master", "10.9.0.1/24");
    let b = lan.add_node("backup", "10.9.0.2/24");
    let rt = runtime();
    let (master, backup) = (director(), director());
    let (dm, db) = (
        SyncDaemons::new(master.clone()),
        SyncDaemons::new(backup.clone()),
    );
    start_in(&rt, m.ns(), &dm, cfg(Role::Master, 3)).unwrap();
    traffic(&master, 30);
    // The live announcements go out to nobody.
    std::thread::sleep(Duration::from_millis(300));
    let want = table(&master);
    assert_eq!(want.len(), 90);

    start_in(&rt, b.ns(), &db, cfg(Role::Backup, 3)).unwrap();
    assert!(
        wait_until(Duration::from_millis(2500), || table(&backup) == want),
        "backup table\n{:#?}\nmaster table\n{want:#?}",
        table(&backup)
    );
    assert!(dm.stats().resync_requests_answered >= 1);
    assert_eq!(db.stats().import_errors, 0);
    rt.block_on(db.stop(Role::Backup)).unwrap();
    rt.block_on(dm.stop(Role::Master)).unwrap();
}

/// Waits for `needle` in a director's log.
fn log_shows(d: &common::netns::Director, needle: &[&str], timeout: Duration) -> bool {
    wait_until(timeout, || {
        d.log()
            .lines()
            .any(|l| needle.iter().all(|n| l.contains(n)))
    })
}

#[test]
fn keepalived_lvs_sync_daemon_follows_the_vrrp_instance() {
    use common::netns::{Director, Kind, VrrpConf, VrrpState};
    if !is_root() {
        eprintln!("SKIP: keepalived_lvs_sync_daemon_follows_the_vrrp_instance needs root");
        return;
    }
    let lan = Lan::new();
    let a = lan.add_node("a", "10.9.0.1/24");
    let b = lan.add_node("b", "10.9.0.2/24");
    let watcher = lan.add_node("watch", "10.9.0.3/24");
    // A listener on the sync group hears the backups' whole-table requests.
    let listener = in_netns(watcher.ns(), || {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 81), &Ipv4Addr::new(10, 9, 0, 3))
            .unwrap();
        s.bind(&SockAddr::from(std::net::SocketAddr::from((
            Ipv4Addr::new(224, 0, 0, 81),
            8848,
        ))))
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::net::UdpSocket::from(s)
    });
    let requests = Arc::new(Mutex::new(Vec::<(Ipv4Addr, Vec<u8>)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (requests, stop) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, std::net::SocketAddr::V4(from))) = listener.recv_from(&mut buf) {
                    requests
                        .lock()
                        .unwrap()
                        .push((*from.ip(), buf[..n].to_vec()));
                }
            }
        })
    };

    let vip = Ipv4Addr::new(10, 9, 0, 100);
    let conf = |state, prio, name: &str| {
        VrrpConf::new(state, 51, prio, vip).render(name).replacen(
            "global_defs {\n",
            "global_defs {\n    lvs_sync_daemon eth0 VI_1\n",
            1,
        )
    };
    let mut da = Director::start_text(Kind::Rvsd, &a, &conf(VrrpState::Master, 150, "a"), vip, "a");
    let db = Director::start_text(Kind::Rvsd, &b, &conf(VrrpState::Backup, 100, "b"), vip, "b");

    let started = ["sync daemon started"];
    assert!(
        log_shows(
            &da,
            &[started[0], "role=Master", "syncid=51"],
            Duration::from_secs(10)
        ),
        "a: {}",
        da.log()
    );
    assert!(
        log_shows(
            &db,
            &[started[0], "role=Backup", "syncid=51"],
            Duration::from_secs(10)
        ),
        "b: {}",
        db.log()
    );
    // Both began as backups and asked for the table (syncid = the VRID).
    assert!(wait_until(Duration::from_secs(3), || {
        let r = requests.lock().unwrap();
        [Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2)]
            .iter()
            .all(|ip| {
                r.iter()
                    .any(|(from, bytes)| from == ip && *bytes == rvsd::sync::resync_request(51))
            })
    }));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!db.log().contains("role=Master"), "b: {}", db.log());

    // A goes away: B takes over and switches to the master daemon.
    da.terminate();
    assert!(
        log_shows(&db, &[started[0], "role=Master"], Duration::from_secs(10)),
        "b: {}",
        db.log()
    );
    assert!(
        log_shows(
            &da,
            &["sync daemon stopped", "role=Master"],
            Duration::from_secs(5)
        ),
        "a: {}",
        da.log()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
}
