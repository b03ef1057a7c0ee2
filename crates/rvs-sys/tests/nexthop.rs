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

use rvs_sys::{netns, next_hop, NextHop, SysError};

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
