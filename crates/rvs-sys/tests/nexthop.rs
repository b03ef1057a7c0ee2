#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Root-only tests of `next_hop` in two throwaway namespaces joined by a veth
//! pair (`nha` in the first with 10.201.0.1/24 and fd01::1/64, `nhb` in the
//! second with 10.201.0.2/24 and fd01::2/64). Lookups run in a thread that
//! entered the first namespace, on its own current-thread runtime; every wait
//! has a timeout and the namespaces are deleted by a Drop guard.

use std::future::Future;
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use rvs_sys::{netns, next_hop, refresh_next_hops, HopRefresh, NextHop, SysError};

#[path = "support/ns.rs"]
mod support;
use support::{is_root, Ns};

const WAIT: Duration = Duration::from_secs(5);

/// The MAC address of `dev` in `ns`.
fn mac(ns: &Ns, dev: &str) -> [u8; 6] {
    let text = ns.link_json(dev)["address"]
        .as_str()
        .expect("address")
        .to_owned();
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    bytes.try_into().expect("6 bytes")
}

/// Runs `future` in a thread inside `ns`, on a current-thread runtime, failing
/// after WAIT.
fn run_in<T: Send + 'static, F: Future<Output = T> + 'static>(
    ns: &Ns,
    make: impl FnOnce() -> F + Send + 'static,
) -> T {
    let name = ns.name.clone();
    thread::spawn(move || {
        netns::enter(&name).expect("enter namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(async { tokio::time::timeout(WAIT, make()).await })
            .expect("timed out")
    })
    .join()
    .expect("namespace thread")
}

struct Pair {
    a: Ns,
    b: Ns,
}

fn pair() -> Pair {
    let a = Ns::new("rvsnh");
    let b = Ns::new("rvsnh");
    a.ip(&["link", "add", "nha", "type", "veth", "peer", "name", "nhb"]);
    a.ip(&["link", "set", "nhb", "netns", &b.name]);
    for (ns, dev, last) in [(&a, "nha", "1"), (&b, "nhb", "2")] {
        ns.ip(&["addr", "add", &format!("10.201.0.{last}/24"), "dev", dev]);
        ns.ip(&[
            "addr",
            "add",
            &format!("fd01::{last}/64"),
            "dev",
            dev,
            "nodad",
        ]);
        ns.ip(&["link", "set", dev, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }
    Pair { a, b }
}

fn lookup(ns: &Ns, addr: &str) -> Result<NextHop, SysError> {
    let addr: IpAddr = addr.parse().expect("address");
    run_in(ns, move || next_hop(addr))
}

#[test]
fn on_link_and_gateway_hops_resolve_to_the_peer_mac() {
    if !is_root("on_link_and_gateway_hops_resolve_to_the_peer_mac") {
        return;
    }
    let p = pair();
    let peer_mac = mac(&p.b, "nhb");
    let own_mac = mac(&p.a, "nha");
    let ifindex = {
        let out = p.a.ip(&["-j", "link", "show", "dev", "nha"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        u32::try_from(list[0]["ifindex"].as_u64().expect("ifindex")).expect("u32")
    };

    for addr in ["10.201.0.2", "fd01::2"] {
        let hop = lookup(&p.a, addr).expect(addr);
        assert_eq!(
            hop,
            NextHop {
                ifindex,
                ifname: "nha".into(),
                gateway: None,
                dmac: peer_mac,
                smac: own_mac,
            },
            "{addr}"
        );
    }

    p.a.ip(&["route", "add", "192.0.2.0/24", "via", "10.201.0.2"]);
    let hop = lookup(&p.a, "192.0.2.77").expect("via gateway");
    assert_eq!(hop.gateway, Some("10.201.0.2".parse().unwrap()));
    assert_eq!(hop.dmac, peer_mac);
    assert_eq!(hop.smac, own_mac);
    assert_eq!(hop.ifname, "nha");
}

#[test]
fn unresolvable_unroutable_and_local_addresses_are_errors() {
    if !is_root("unresolvable_unroutable_and_local_addresses_are_errors") {
        return;
    }
    let p = pair();

    // Nobody answers ARP for .99: resolution gives up after about a second.
    let started = std::time::Instant::now();
    let err = lookup(&p.a, "10.201.0.99").unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&err, SysError::NoNeighbour { ifname, .. } if ifname == "nha"),
        "{err:?}"
    );
    assert!(err.to_string().contains("10.201.0.99"), "{err}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    // No default route in a fresh namespace.
    let err = lookup(&p.a, "203.0.113.1").unwrap_err();
    assert!(matches!(err, SysError::NoRoute { .. }), "{err:?}");

    // The host's own address does not leave it.
    let err = lookup(&p.a, "10.201.0.1").unwrap_err();
    assert!(matches!(err, SysError::NoRoute { .. }), "{err:?}");
    assert!(err.to_string().contains("10.201.0.1"), "{err}");
}

/// `refresh_next_hops` in `ns` for `known`.
fn refresh(ns: &Ns, known: &[(&str, Option<NextHop>)]) -> Vec<HopRefresh> {
    let known: Vec<(IpAddr, Option<NextHop>)> = known
        .iter()
        .map(|(a, h)| (a.parse().expect("address"), h.clone()))
        .collect();
    run_in(ns, move || async move { refresh_next_hops(&known).await }).expect("refresh")
}

/// The state and MAC of `ns`'s neighbour entry for `addr` on `dev`.
fn neigh(ns: &Ns, dev: &str, addr: &str) -> Option<(String, Option<String>)> {
    let out = ns.ip(&["-j", "neigh", "show", "to", addr, "dev", dev]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let entry = list.as_array()?.iter().find(|e| e["dst"] == addr)?;
    let state = entry["state"][0].as_str().unwrap_or("").to_owned();
    Some((state, entry["lladdr"].as_str().map(str::to_owned)))
}

fn wait_for_state(ns: &Ns, addr: &str, want: &str) -> Option<(String, Option<String>)> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = neigh(ns, "nha", addr);
        if now.as_ref().is_some_and(|(state, _)| state == want) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never became {want}: {now:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn hex(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A refresh asks the kernel to verify STALE entries (they go to DELAY, then
/// REACHABLE while the neighbour answers), keeps the last MAC while the entry
/// is FAILED after the neighbour changed its MAC, resolves it anew, and then
/// reports the new MAC; an address nobody answers stays unresolved without
/// any wait.
#[test]
fn refresh_reverifies_stale_entries_and_follows_a_changed_mac() {
    if !is_root("refresh_reverifies_stale_entries_and_follows_a_changed_mac") {
        return;
    }
    let p = pair();
    // The kernel's state machine in about a second: DELAY 1 s, 3 probes 100 ms apart.
    for family in ["ipv4", "ipv6"] {
        for (key, value) in [("delay_first_probe_time", "1"), ("retrans_time_ms", "100")] {
            let out = p.a.exec(
                "sysctl",
                &["-qw", &format!("net.{family}.neigh.nha.{key}={value}")],
            );
            assert!(out.status.success(), "{out:?}");
        }
    }
    let old_mac = mac(&p.b, "nhb");
    let v4 = lookup(&p.a, "10.201.0.2").expect("v4 hop");
    let v6 = lookup(&p.a, "fd01::2").expect("v6 hop");

    // Both STALE: each is reverified, and keeps its MAC meanwhile.
    for addr in ["10.201.0.2", "fd01::2"] {
        p.a.ip(&["neigh", "change", addr, "dev", "nha", "nud", "stale"]);
    }
    let started = std::time::Instant::now();
    let found = refresh(
        &p.a,
        &[
            ("10.201.0.2", Some(v4.clone())),
            ("fd01::2", Some(v6.clone())),
        ],
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    for (r, previous) in found.iter().zip([&v4, &v6]) {
        assert!(r.reverified, "{r:?}");
        assert!(r.error.is_none(), "{r:?}");
        assert_eq!(r.hop.as_ref(), Some(previous));
        let addr = r.addr.to_string();
        let (state, _) = neigh(&p.a, "nha", &addr).expect("entry");
        assert!(
            ["DELAY", "PROBE", "REACHABLE"].contains(&state.as_str()),
            "{addr} is {state} after the refresh"
        );
        wait_for_state(&p.a, &addr, "REACHABLE");
    }
    // REACHABLE entries are left alone.
    let found = refresh(&p.a, &[("10.201.0.2", Some(v4.clone()))]);
    assert!(!found[0].reverified, "{:?}", found[0]);

    // The neighbour's MAC changes: the STALE entry is probed at the old MAC,
    // unanswered, and FAILS; the refresh then keeps the last MAC.
    let new_mac = [2, 0, 0, 0, 0, 0xbb];
    p.b.ip(&["link", "set", "nhb", "address", &hex(new_mac)]);
    p.a.ip(&[
        "neigh",
        "change",
        "10.201.0.2",
        "dev",
        "nha",
        "nud",
        "stale",
    ]);
    let found = refresh(&p.a, &[("10.201.0.2", Some(v4.clone()))]);
    assert!(found[0].reverified);
    assert_eq!(found[0].hop.as_ref().map(|h| h.dmac), Some(old_mac));
    wait_for_state(&p.a, "10.201.0.2", "FAILED");
    let found = refresh(&p.a, &[("10.201.0.2", Some(v4.clone()))]);
    assert!(found[0].reverified);
    assert!(
        matches!(found[0].error, Some(SysError::NeighbourUnusable { .. })),
        "{:?}",
        found[0]
    );
    assert_eq!(found[0].hop.as_ref(), Some(&v4), "the last MAC is kept");
    // That refresh asked for resolution: the new MAC answers.
    let (_, lladdr) = wait_for_state(&p.a, "10.201.0.2", "REACHABLE").expect("entry");
    assert_eq!(lladdr, Some(hex(new_mac)));
    let found = refresh(&p.a, &[("10.201.0.2", Some(v4.clone()))]);
    assert!(found[0].error.is_none(), "{:?}", found[0]);
    assert_eq!(
        found[0].hop,
        Some(NextHop {
            dmac: new_mac,
            ..v4.clone()
        })
    );

    // Nobody answers for .99: no wait, no hop, and the kernel resolves it.
    let started = std::time::Instant::now();
    let found = refresh(&p.a, &[("10.201.0.99", None)]);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(found[0].reverified);
    assert!(found[0].hop.is_none());
    assert!(
        matches!(&found[0].error, Some(SysError::NeighbourUnusable { entry, .. }) if entry == "no entry"),
        "{:?}",
        found[0]
    );
    let (state, _) = neigh(&p.a, "nha", "10.201.0.99").expect("entry created");
    assert!(
        ["INCOMPLETE", "FAILED"].contains(&state.as_str()),
        "{state}"
    );
}
