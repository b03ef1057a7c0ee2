//! VRRP between two directors on a LAN of network namespaces (tests/common/netns.rs):
//! failover when the master's box dies, takeover on a graceful stop (priority 0),
//! preemption and `nopreempt`, VRRPv2 password mismatch, fast VRRPv3 adverts.
//!
//! Each scenario is one function over a (master, backup) pair of director kinds; the
//! keepalived/keepalived pairing checks the harness against the real thing, the pairings
//! with rvsd wait for its VRRP driver. The client sees the master through the service on
//! VIP:80 (a banner naming the node) and through its neighbour entry for the VIP (the
//! MAC the gratuitous ARPs pointed it at). Every measured takeover prints a `TAKEOVER`
//! line (bench/vrrp-failover.sh tabulates them); the only timing assertion is that it
//! happened within 3 * advert_int + 2 s. Root only: skips loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::netns::{
    addrs, assert_keepalived_accepts, client_banner, have_program, holds, ip, is_root,
    measure_takeover_since, neigh_mac, wait_until, Advert, AdvertWatch, Director, Kind, Lan, Node,
    VrrpConf, VrrpState, SERVICE_PORT,
};
use Kind::{Keepalived, Rvsd};

const VRID: u8 = 51;
const MASTER_PRIORITY: u8 = 150;
const BACKUP_PRIORITY: u8 = 100;
/// Generous bound for a director to become master from its start.
const ELECTION: Duration = Duration::from_secs(10);

/// Nodes a (10.NET.0.1), b (10.NET.0.2), client c (10.NET.0.9); VIP 10.NET.0.100/24;
/// the client records every VRRP advert.
struct Topo {
    a: Node,
    b: Node,
    c: Node,
    vip: Ipv4Addr,
    adverts: AdvertWatch,
    /// Owns the namespaces; dropped after the nodes' handles (fields drop in order).
    _lan: Lan,
}

impl Topo {
    fn service(&self) -> SocketAddr {
        SocketAddr::from((self.vip, SERVICE_PORT))
    }

    fn conf(&self, state: VrrpState, priority: u8) -> VrrpConf {
        VrrpConf::new(state, VRID, priority, self.vip)
    }

    /// The adverts of our VRID that `node` sent so far.
    fn adverts_from(&self, node: &Node) -> Vec<Advert> {
        let src = node.addr();
        self.adverts
            .adverts()
            .into_iter()
            .filter(|ad| ad.src == src && ad.vrid == VRID)
            .collect()
    }

    /// Waits for `node`'s next advert of our VRID (so that what follows starts at a
    /// known phase of its advert timer) and checks its version and priority.
    fn next_advert(&self, node: &Node, conf: &VrrpConf) -> Advert {
        let src = node.addr();
        let timeout = conf.advert_int * 2 + Duration::from_secs(1);
        let advert = self
            .adverts
            .next(timeout, |ad| ad.src == src && ad.vrid == VRID)
            .unwrap_or_else(|| panic!("no advert from {} within {timeout:?}", node.name()));
        assert_eq!(
            (advert.version, advert.priority),
            (conf.version, conf.priority),
            "{}'s advert has the wrong version or priority",
            node.name()
        );
        advert
    }

    /// Waits until `d`'s node holds the VIP, the client reads `d`'s banner on VIP:80 and
    /// the client's neighbour entry for the VIP is `d`'s MAC.
    fn expect_master(&self, d: &Director, timeout: Duration) {
        let node = d.node();
        assert!(
            wait_until(timeout, || holds(node, self.vip)),
            "{} ({}) did not take VIP {} within {timeout:?}; its addresses: {:?}",
            d.name(),
            d.kind(),
            self.vip,
            addrs(node)
        );
        let service = self.service();
        let mut last = None;
        assert!(
            wait_until(Duration::from_secs(5), || {
                last = client_banner(&self.c, service, Duration::from_millis(200));
                last.as_deref() == Some(d.name())
            }),
            "client did not reach {} on {service}: last banner {last:?}",
            d.name()
        );
        let mut mac = None;
        assert!(
            wait_until(Duration::from_secs(2), || {
                mac = neigh_mac(&self.c, IpAddr::V4(self.vip));
                mac.as_deref() == Some(node.mac())
            }),
            "client's neighbour entry for {} is {mac:?}, not {}'s MAC {}",
            self.vip,
            d.name(),
            node.mac()
        );
    }
}

/// The LAN for one test, or None (after saying why) when it cannot run here.
fn setup(scenario: &str, net: u8, master: Kind, backup: Kind) -> Option<Topo> {
    if !is_root() {
        eprintln!("SKIP: {scenario} ({master}/{backup}) needs root");
        return None;
    }
    if (master == Keepalived || backup == Keepalived) && !have_program("keepalived") {
        eprintln!("SKIP: {scenario} ({master}/{backup}) needs keepalived installed");
        return None;
    }
    let lan = Lan::new();
    let a = lan.add_node("a", &format!("10.{net}.0.1/24"));
    let b = lan.add_node("b", &format!("10.{net}.0.2/24"));
    let c = lan.add_node("c", &format!("10.{net}.0.9/24"));
    let adverts = AdvertWatch::start(&c);
    Some(Topo {
        a,
        b,
        c,
        vip: Ipv4Addr::new(10, net, 0, 100),
        adverts,
        _lan: lan,
    })
}

/// 3 * advert_int + 2 s: "the takeover happened at all", not a performance goal.
fn takeover_bound(advert: Duration) -> Duration {
    advert * 3 + Duration::from_secs(2)
}

/// Measures from `since` (the moment master a died or was told to stop) until the
/// client reads b's banner on VIP:80, and prints the TAKEOVER line. Its extra fields
/// say when, after `since`, the client saw a's priority 0 advert (`prio0_ms`) and b's
/// first advert (`b_advert_ms`, b is master by then), or `none`.
fn measure_and_report(
    t: &Topo,
    since: Instant,
    (scenario, master, backup): (&str, Kind, Kind),
    conf: &VrrpConf,
    mode: &str,
) -> Duration {
    let bound = takeover_bound(conf.advert_int);
    let took = measure_takeover_since(since, &t.c, t.service(), "b", bound);
    let Some(took) = took else {
        panic!("{scenario}: b did not take over within {bound:?} ({mode})");
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let after = |ads: Vec<Advert>, want: &dyn Fn(&Advert) -> bool| {
        ads.iter()
            .find(|ad| ad.at > since && want(ad))
            .map_or("none".to_string(), |ad| format!("{:.1}", ms(ad.at - since)))
    };
    let prio0 = after(t.adverts_from(&t.a), &|ad| ad.priority == 0);
    let b_advert = after(t.adverts_from(&t.b), &|ad| ad.priority > 0);
    println!(
        "TAKEOVER scenario={scenario} master={master} backup={backup} advert_int={} version={} mode={mode} ms={:.1} prio0_ms={prio0} b_advert_ms={b_advert}",
        conf.advert_int.as_millis(),
        conf.version,
        ms(took)
    );
    took
}

/// Master a (150), backup b (100), v2, advert 1 s. a's box dies (link down, SIGKILL)
/// just after an advert: b takes the VIP after its master down interval and its
/// gratuitous ARP moves the client; a comes back and preempts.
fn failover_and_preempt(net: u8, master: Kind, backup: Kind) {
    let scenario = "failover_and_preempt";
    let Some(t) = setup(scenario, net, master, backup) else {
        return;
    };
    let a_conf = t.conf(VrrpState::Master, MASTER_PRIORITY);
    let b_conf = t.conf(VrrpState::Backup, BACKUP_PRIORITY);
    let mut a = Director::start(master, &t.a, &a_conf, "a");
    let b = Director::start(backup, &t.b, &b_conf, "b");
    t.expect_master(&a, ELECTION);
    assert!(!holds(&t.b, t.vip), "backup b holds the VIP too");

    t.next_advert(&t.a, &a_conf);
    let died = Instant::now();
    a.kill();
    assert!(
        t.adverts_from(&t.b).is_empty(),
        "backup b advertised while a was master"
    );
    let ids = (scenario, master, backup);
    measure_and_report(&t, died, ids, &a_conf, "kill");
    t.expect_master(&b, Duration::from_secs(2));
    t.next_advert(&t.b, &b_conf);

    a.restart();
    t.expect_master(&a, ELECTION);
    assert!(
        wait_until(Duration::from_secs(3), || !holds(&t.b, t.vip)),
        "b kept the VIP after a preempted"
    );
}

/// As failover_and_preempt, but a stops gracefully (SIGTERM): it sends a priority 0
/// advert (RFC 3768 section 6.4.3), so b takes over after its skew time instead of the
/// master down interval.
fn graceful_stop(net: u8, master: Kind, backup: Kind) {
    let scenario = "graceful_stop";
    let Some(t) = setup(scenario, net, master, backup) else {
        return;
    };
    let a_conf = t.conf(VrrpState::Master, MASTER_PRIORITY);
    let mut a = Director::start(master, &t.a, &a_conf, "a");
    let b = Director::start(
        backup,
        &t.b,
        &t.conf(VrrpState::Backup, BACKUP_PRIORITY),
        "b",
    );
    t.expect_master(&a, ELECTION);

    t.next_advert(&t.a, &a_conf);
    let told = Instant::now();
    a.terminate();
    let ids = (scenario, master, backup);
    measure_and_report(&t, told, ids, &a_conf, "stop");
    a.stop();
    assert!(
        t.adverts_from(&t.a).iter().any(|ad| ad.priority == 0),
        "a stopped without a priority 0 advert"
    );
    t.expect_master(&b, Duration::from_secs(2));
    assert!(!holds(&t.a, t.vip), "a kept the VIP after stopping");

    a.restart();
    t.expect_master(&a, ELECTION);
    assert!(
        wait_until(Duration::from_secs(3), || !holds(&t.b, t.vip)),
        "b kept the VIP after a preempted"
    );
}

/// Both BACKUP with nopreempt, a 150, b 100. a (started alone) is master; its box dies,
/// b takes over; a comes back and does not take the VIP from the lower-priority b.
fn nopreempt_keeps_backup(net: u8, master: Kind, backup: Kind) {
    let scenario = "nopreempt_keeps_backup";
    let Some(t) = setup(scenario, net, master, backup) else {
        return;
    };
    let nopreempt = |priority| VrrpConf {
        nopreempt: true,
        ..t.conf(VrrpState::Backup, priority)
    };
    let a_conf = nopreempt(MASTER_PRIORITY);
    let mut a = Director::start(master, &t.a, &a_conf, "a");
    t.expect_master(&a, ELECTION);
    let b = Director::start(backup, &t.b, &nopreempt(BACKUP_PRIORITY), "b");
    // b hears a's adverts (one a second) and stays backup.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !holds(&t.b, t.vip),
        "b took the VIP from a higher-priority master"
    );

    t.next_advert(&t.a, &a_conf);
    let died = Instant::now();
    a.kill();
    let ids = (scenario, master, backup);
    measure_and_report(&t, died, ids, &a_conf, "kill");
    t.expect_master(&b, Duration::from_secs(2));

    a.restart();
    // Longer than a's master down interval (3 * 1 s + skew): a must hear b and keep out.
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        assert!(!holds(&t.a, t.vip), "a (nopreempt) took the VIP back");
        let banner = client_banner(&t.c, t.service(), Duration::from_millis(500));
        assert_eq!(
            banner.as_deref(),
            Some("b"),
            "the service moved away from b"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(holds(&t.b, t.vip));
}

/// VRRPv2 `auth_type PASS` with different passwords: each rejects the other's adverts,
/// so both become master.
fn auth_mismatch_rejected(net: u8, master: Kind, backup: Kind) {
    let scenario = "auth_mismatch_rejected";
    let Some(t) = setup(scenario, net, master, backup) else {
        return;
    };
    let with_pass = |state, priority, pass: &str| VrrpConf {
        auth_pass: Some(pass.to_string()),
        ..t.conf(state, priority)
    };
    let a_conf = with_pass(VrrpState::Master, MASTER_PRIORITY, "alpha1");
    let b_conf = with_pass(VrrpState::Backup, BACKUP_PRIORITY, "bravo2");
    let a = Director::start(master, &t.a, &a_conf, "a");
    let b = Director::start(backup, &t.b, &b_conf, "b");
    assert!(
        wait_until(ELECTION, || holds(&t.a, t.vip) && holds(&t.b, t.vip)),
        "not both masters: a holds {}, b holds {}",
        holds(&t.a, t.vip),
        holds(&t.b, t.vip)
    );
    // Each advertised on becoming master (keepalived: a master restarts its advert
    // timer on any packet of its VRID, refused ones included, so of two masters with
    // the same interval only the earlier keeps advertising; keepalived/vrrp/
    // vrrp_scheduler.c), and each refused the other's adverts (keepalived/vrrp/vrrp.c
    // logs every refused password).
    for (node, conf) in [(&t.a, &a_conf), (&t.b, &b_conf)] {
        let advertised = |ad: &Advert| ad.priority == conf.priority && ad.version == 2;
        assert!(
            wait_until(Duration::from_secs(2), || t
                .adverts_from(node)
                .iter()
                .any(advertised)),
            "{} never advertised: {:?}",
            node.name(),
            t.adverts_from(node)
        );
    }
    for d in [&a, &b].into_iter().filter(|d| d.kind() == Keepalived) {
        assert!(
            wait_until(Duration::from_secs(3), || d
                .log()
                .contains("received an invalid passwd")),
            "{} (keepalived) never logged a refused password",
            d.name()
        );
    }
}

/// VRRPv3 with advert_int 0.1 s: a advertises ten times a second; its box dies and b
/// takes over after about 3 * 0.1 s + skew.
fn fast_adverts_v3(net: u8, master: Kind, backup: Kind) {
    let scenario = "fast_adverts_v3";
    let Some(t) = setup(scenario, net, master, backup) else {
        return;
    };
    let v3 = |state, priority| VrrpConf {
        version: 3,
        advert_int: Duration::from_millis(100),
        ..t.conf(state, priority)
    };
    let a_conf = v3(VrrpState::Master, MASTER_PRIORITY);
    let b_conf = v3(VrrpState::Backup, BACKUP_PRIORITY);
    let mut a = Director::start(master, &t.a, &a_conf, "a");
    let b = Director::start(backup, &t.b, &b_conf, "b");
    t.expect_master(&a, ELECTION);
    // Let a advertise a while; b stays backup.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!holds(&t.b, t.vip), "backup b holds the VIP too");
    let sent = t.adverts_from(&t.a);
    let mut gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort();
    let median = gaps.get(gaps.len() / 2).copied();
    assert!(
        median.is_some_and(|m| m >= a_conf.advert_int / 2 && m <= a_conf.advert_int * 2),
        "a's adverts are not about {:?} apart: median gap {median:?} over {} adverts",
        a_conf.advert_int,
        sent.len()
    );

    t.next_advert(&t.a, &a_conf);
    let died = Instant::now();
    a.kill();
    let ids = (scenario, master, backup);
    measure_and_report(&t, died, ids, &a_conf, "kill");
    t.expect_master(&b, Duration::from_secs(2));
    t.next_advert(&t.b, &b_conf);
}

/// The rvsd side of the harness without VRRP: once the VIP is on a's eth0 (added by
/// hand here, by rvsd's VRRP later), rvsd's socket plane serves VIP:80 from a's banner
/// server through the virtual_server block Director adds to the conf.
#[test]
fn rvsd_director_serves_the_vip_once_it_is_up() {
    let Some(t) = setup("rvsd_director_serves_the_vip_once_it_is_up", 60, Rvsd, Rvsd) else {
        return;
    };
    let a = Director::start(Rvsd, &t.a, &t.conf(VrrpState::Backup, BACKUP_PRIORITY), "a");
    let service = t.service();
    assert_eq!(
        client_banner(&t.c, service, Duration::from_millis(200)),
        None,
        "the VIP answered before it was anywhere"
    );
    let vip = format!("{}/24", t.vip);
    ip(&["-n", t.a.ns(), "addr", "replace", &vip, "dev", "eth0"]);
    t.expect_master(&a, Duration::from_secs(2));
}

/// The conf texts the scenarios give the directors are ones keepalived accepts
/// (`keepalived -t`, exit 0): a rendering mistake would otherwise show up as a
/// timeout in a root test.
#[test]
fn rendered_confs_pass_keepalived_config_test() {
    if !have_program("keepalived") {
        eprintln!("SKIP: rendered_confs_pass_keepalived_config_test needs keepalived installed");
        return;
    }
    let vip = Ipv4Addr::new(10, 99, 0, 100);
    let base = VrrpConf::new(VrrpState::Master, VRID, MASTER_PRIORITY, vip);
    let confs = [
        base.clone(),
        VrrpConf {
            state: VrrpState::Backup,
            nopreempt: true,
            ..base.clone()
        },
        VrrpConf {
            state: VrrpState::Backup,
            preempt_delay: Some(Duration::from_millis(1500)),
            ..base.clone()
        },
        VrrpConf {
            auth_pass: Some("alpha1".into()),
            ..base.clone()
        },
        VrrpConf {
            version: 3,
            advert_int: Duration::from_millis(100),
            ..base.clone()
        },
        VrrpConf {
            unicast: Some((
                Ipv4Addr::new(10, 99, 0, 1),
                vec![Ipv4Addr::new(10, 99, 0, 2)],
            )),
            ..base.clone()
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, conf) in confs.iter().enumerate() {
        let text = conf.render("t");
        assert_keepalived_accepts(&dir.path().join(format!("k{i}.conf")), &text);
    }
}

// One test per (scenario, master kind, backup kind). NET (the second octet) is unique
// per test so tests can run in parallel without sharing addresses.

#[test]
fn failover_and_preempt_keepalived_keepalived() {
    failover_and_preempt(11, Keepalived, Keepalived);
}
#[test]
fn failover_and_preempt_rvsd_keepalived() {
    failover_and_preempt(12, Rvsd, Keepalived);
}
#[test]
fn failover_and_preempt_keepalived_rvsd() {
    failover_and_preempt(13, Keepalived, Rvsd);
}
#[test]
fn failover_and_preempt_rvsd_rvsd() {
    failover_and_preempt(14, Rvsd, Rvsd);
}

#[test]
fn graceful_stop_keepalived_keepalived() {
    graceful_stop(21, Keepalived, Keepalived);
}
#[test]
fn graceful_stop_rvsd_keepalived() {
    graceful_stop(22, Rvsd, Keepalived);
}
#[test]
fn graceful_stop_keepalived_rvsd() {
    graceful_stop(23, Keepalived, Rvsd);
}
#[test]
fn graceful_stop_rvsd_rvsd() {
    graceful_stop(24, Rvsd, Rvsd);
}

#[test]
fn nopreempt_keeps_backup_keepalived_keepalived() {
    nopreempt_keeps_backup(31, Keepalived, Keepalived);
}
#[test]
fn nopreempt_keeps_backup_rvsd_keepalived() {
    nopreempt_keeps_backup(32, Rvsd, Keepalived);
}
#[test]
fn nopreempt_keeps_backup_keepalived_rvsd() {
    nopreempt_keeps_backup(33, Keepalived, Rvsd);
}
#[test]
fn nopreempt_keeps_backup_rvsd_rvsd() {
    nopreempt_keeps_backup(34, Rvsd, Rvsd);
}

#[test]
fn auth_mismatch_rejected_keepalived_keepalived() {
    auth_mismatch_rejected(41, Keepalived, Keepalived);
}
#[test]
fn auth_mismatch_rejected_rvsd_keepalived() {
    auth_mismatch_rejected(42, Rvsd, Keepalived);
}
#[test]
fn auth_mismatch_rejected_keepalived_rvsd() {
    auth_mismatch_rejected(43, Keepalived, Rvsd);
}
#[test]
fn auth_mismatch_rejected_rvsd_rvsd() {
    auth_mismatch_rejected(44, Rvsd, Rvsd);
}

#[test]
fn fast_adverts_v3_keepalived_keepalived() {
    fast_adverts_v3(51, Keepalived, Keepalived);
}
#[test]
fn fast_adverts_v3_rvsd_keepalived() {
    fast_adverts_v3(52, Rvsd, Keepalived);
}
#[test]
fn fast_adverts_v3_keepalived_rvsd() {
    fast_adverts_v3(53, Keepalived, Rvsd);
}
#[test]
fn fast_adverts_v3_rvsd_rvsd() {
    fast_adverts_v3(54, Rvsd, Rvsd);
}
