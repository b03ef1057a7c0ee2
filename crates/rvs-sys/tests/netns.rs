#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Root-only tests in throwaway network namespaces: two namespaces joined by a
//! veth pair (`rva` in the first, `rvb` in the second, 10.200.0.1/24 and
//! 10.200.0.2/24). Each side runs in its own thread that entered its namespace
//! with `netns::enter` and built its own current-thread tokio runtime. Every
//! wait has a timeout; namespaces are deleted by a Drop guard.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rvs_sys::{
    interface, interface_addrs, link_up, netns, Addresses, FrameSender, Received, VrrpSocket,
};

#[path = "support/ns.rs"]
mod support;
use support::{ip, is_root, Ns};

const WAIT: Duration = Duration::from_secs(5);
const V4_A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const V4_A_SECONDARY: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 11);
const V4_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
const LL_A: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa1);
/// A VRRPv3-looking advertisement with a recognisable tail.
const PAYLOAD: &[u8] = &[0x31, 7, 100, 1, 0, 100, 0, 0, 10, 200, 0, 100, 0xde, 0xad];

/// Runs `f` in a new thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &Ns, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let name = ns.name.clone();
    thread::spawn(move || {
        netns::enter(&name).expect("enter namespace");
        f()
    })
}

/// Drives `future` on a fresh current-thread runtime, failing after WAIT.
fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(async { tokio::time::timeout(WAIT, future).await })
        .expect("timed out")
}

/// Polls `check` until it holds or WAIT passes.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Two namespaces joined by veth `rva` (ns1) / `rvb` (ns2), both up with carrier.
struct Pair {
    ns1: Ns,
    ns2: Ns,
}

impl Pair {
    fn new(ipv6_dad: bool) -> Pair {
        let pair = Pair {
            ns1: Ns::new("rvssys"),
            ns2: Ns::new("rvssys"),
        };
        if !ipv6_dad {
            for ns in [&pair.ns1, &pair.ns2] {
                in_ns(ns, || {
                    for scope in ["all", "default"] {
                        let knob = format!("/proc/sys/net/ipv6/conf/{scope}/accept_dad");
                        std::fs::write(knob, "0").expect("disable DAD");
                    }
                })
                .join()
                .expect("sysctl thread");
            }
        }
        pair.ns1.ip(&[
            "link",
            "add",
            "name",
            "rva",
            "type",
            "veth",
            "peer",
            "name",
            "rvb",
            "netns",
            &pair.ns2.name,
        ]);
        pair.ns1.ip(&["addr", "add", "10.200.0.1/24", "dev", "rva"]);
        pair.ns2.ip(&["addr", "add", "10.200.0.2/24", "dev", "rvb"]);
        for (ns, dev) in [(&pair.ns1, "rva"), (&pair.ns2, "rvb")] {
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        for (ns, dev) in [(&pair.ns1, "rva"), (&pair.ns2, "rvb")] {
            wait_until("operstate UP", || ns.link_json(dev)["operstate"] == "UP");
        }
        pair
    }
}

/// The IPv4 datagram's payload after its header (IHL words).
fn ipv4_payload(datagram: &[u8]) -> &[u8] {
    rvs_wire::ipv4::parse_ipv4(datagram).unwrap().1
}

/// ns1 sends PAYLOAD from `src` to the multicast group `group` while ns2 listens:
/// what ns2 received (its report and bytes), and whether the sender did NOT get
/// its own packet back within 300 ms.
fn multicast_round(pair: &Pair, v6: bool, src: IpAddr, group: IpAddr) -> (Received, Vec<u8>, bool) {
    let (ready, is_ready) = mpsc::channel();
    let receiver = in_ns(&pair.ns2, move || {
        block_on(async move {
            let b = interface("rvb").unwrap();
            let socket = VrrpSocket::open("rvb", b.index, v6, true).unwrap();
            ready.send(()).unwrap();
            let mut buf = [0u8; 1500];
            let got = socket.recv(&mut buf).await.unwrap();
            (got, buf[..got.len].to_vec())
        })
    });
    is_ready.recv_timeout(WAIT).unwrap();
    let sender = in_ns(&pair.ns1, move || {
        block_on(async move {
            let a = interface("rva").unwrap();
            let socket = VrrpSocket::open("rva", a.index, v6, true).unwrap();
            socket.send(src, group, PAYLOAD).await.unwrap();
            let mut buf = [0u8; 1500];
            let echo = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf));
            echo.await.is_err()
        })
    });
    let (got, bytes) = receiver.join().unwrap();
    (got, bytes, sender.join().unwrap())
}

#[test]
fn vrrp_v4_multicast_reaches_the_peer_but_not_the_sender() {
    if !is_root("vrrp_v4_multicast_reaches_the_peer_but_not_the_sender") {
        return;
    }
    let pair = Pair::new(false);
    let (got, datagram, no_echo) = multicast_round(&pair, false, V4_A.into(), GROUP_V4.into());
    assert_eq!(got.src, IpAddr::V4(V4_A));
    assert_eq!(got.dst, IpAddr::V4(GROUP_V4));
    assert_eq!(got.hop_limit, Some(255));
    assert_eq!(datagram[9], 112, "IP protocol field");
    assert_eq!(ipv4_payload(&datagram), PAYLOAD);
    assert!(
        no_echo,
        "the sender received its own multicast (loop must be off)"
    );
}

#[test]
fn vrrp_v4_unicast_uses_the_requested_source() {
    if !is_root("vrrp_v4_unicast_uses_the_requested_source") {
        return;
    }
    let pair = Pair::new(false);
    pair.ns1
        .ip(&["addr", "add", "10.200.0.11/24", "dev", "rva"]);
    let (ready, is_ready) = mpsc::channel();
    let receiver = in_ns(&pair.ns2, move || {
        block_on(async move {
            let b = interface("rvb").unwrap();
            let socket = VrrpSocket::open("rvb", b.index, false, false).unwrap();
            ready.send(()).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1500];
            for _ in 0..2 {
                let got = socket.recv(&mut buf).await.unwrap();
                seen.push((got.src, got.dst, ipv4_payload(&buf[..got.len]).to_vec()));
            }
            seen
        })
    });
    is_ready.recv_timeout(WAIT).unwrap();
    in_ns(&pair.ns1, || {
        block_on(async {
            let a = interface("rva").unwrap();
            let socket = VrrpSocket::open("rva", a.index, false, false).unwrap();
            for src in [V4_A_SECONDARY, V4_A] {
                socket.send(src.into(), V4_B.into(), PAYLOAD).await.unwrap();
            }
        })
    })
    .join()
    .unwrap();
    let seen = receiver.join().unwrap();
    let expected: Vec<_> = [V4_A_SECONDARY, V4_A]
        .iter()
        .map(|src| (IpAddr::V4(*src), IpAddr::V4(V4_B), PAYLOAD.to_vec()))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn vrrp_v6_multicast_from_link_local() {
    if !is_root("vrrp_v6_multicast_from_link_local") {
        return;
    }
    let pair = Pair::new(false);
    pair.ns1
        .ip(&["addr", "add", "fe80::a1/64", "dev", "rva", "nodad"]);
    let (got, payload, no_echo) = multicast_round(&pair, true, LL_A.into(), GROUP_V6.into());
    assert_eq!(got.src, IpAddr::V6(LL_A));
    assert_eq!(got.dst, IpAddr::V6(GROUP_V6));
    assert_eq!(got.hop_limit, Some(255));
    assert_eq!(payload, PAYLOAD, "IPv6 gives the payload only, unchanged");
    assert!(
        no_echo,
        "the sender received its own multicast (loop must be off)"
    );
}

/// A gratuitous ARP request for `ip` from `mac`, padded to the Ethernet minimum.
fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    frame.resize(60, 0);
    frame
}

#[test]
fn frame_sender_frames_reach_the_peer_and_update_its_neighbour() {
    if !is_root("frame_sender_frames_reach_the_peer_and_update_its_neighbour") {
        return;
    }
    let pair = Pair::new(false);
    pair.ns2.ip(&[
        "neigh",
        "add",
        "10.200.0.77",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "rvb",
        "nud",
        "stale",
    ]);
    let frame = gratuitous_arp([2, 0, 0, 0, 0, 2], Ipv4Addr::new(10, 200, 0, 77));
    let (ready, is_ready) = mpsc::channel();
    let expected = frame.clone();
    let catcher = in_ns(&pair.ns2, move || {
        use std::io::Read;
        let eth_p_arp = (libc::ETH_P_ARP as u16).to_be();
        let socket = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(i32::from(eth_p_arp))),
        )
        .unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        ready.send(()).unwrap();
        let mut buf = [0u8; 1600];
        loop {
            let n = (&socket).read(&mut buf).expect("no frame arrived");
            if buf[..n] == expected[..] {
                return true;
            }
        }
    });
    is_ready.recv_timeout(WAIT).unwrap();
    in_ns(&pair.ns1, move || {
        let a = interface("rva").unwrap();
        FrameSender::open(a.index).unwrap().send(&frame).unwrap();
    })
    .join()
    .unwrap();
    assert!(catcher.join().unwrap());
    wait_until("the neighbour entry to take the new MAC", || {
        pair.ns2
            .ip(&["neigh", "show", "10.200.0.77", "dev", "rvb"])
            .contains("02:00:00:00:00:02")
    });
}

#[test]
fn addresses_add_list_del_are_idempotent() {
    if !is_root("addresses_add_list_del_are_idempotent") {
        return;
    }
    // DAD stays on here, so an IPv6 address without NODAD would be tentative.
    let pair = Pair::new(true);
    let ns1 = pair.ns1.name.clone();
    let show = move || ip(&["-n", &ns1, "addr", "show", "dev", "rva"]);
    in_ns(&pair.ns1, move || {
        block_on(async {
            let a = interface("rva").unwrap().index;
            let addresses = Addresses::new().unwrap();
            let vip: IpAddr = Ipv4Addr::new(10, 200, 0, 50).into();

            addresses.add(a, vip, 24, Some("rva:vip")).await.unwrap();
            addresses.add(a, vip, 24, Some("rva:vip")).await.unwrap();
            assert!(addresses.list(a).await.unwrap().contains(&(vip, 24)));
            let shown = show();
            let line = shown
                .lines()
                .find(|l| l.contains("inet 10.200.0.50/24"))
                .unwrap_or_else(|| panic!("VIP missing from:\n{shown}"));
            assert!(line.contains("rva:vip"), "label missing: {line}");

            addresses.del(a, vip, 24).await.unwrap();
            addresses.del(a, vip, 24).await.unwrap();
            assert!(!addresses.list(a).await.unwrap().contains(&(vip, 24)));
            assert!(!show().contains("10.200.0.50"));

            let vip6: IpAddr = "2001:db8::50".parse().unwrap();
            addresses.add(a, vip6, 64, None).await.unwrap();
            assert!(addresses.list(a).await.unwrap().contains(&(vip6, 64)));
            let shown = show();
            let line = shown
                .lines()
                .find(|l| l.contains("inet6 2001:db8::50/64"))
                .unwrap_or_else(|| panic!("IPv6 VIP missing from:\n{shown}"));
            assert!(!line.contains("tentative"), "{line}");
            assert!(line.contains("nodad"), "{line}");
            assert!(addresses.add(a, vip6, 64, Some("rva:v6")).await.is_err());
            addresses.del(a, vip6, 64).await.unwrap();
            assert!(!show().contains("2001:db8::50"));

            // A real failure is not swallowed by the idempotence rules.
            let err = addresses.add(999_999, vip, 24, None).await.unwrap_err();
            assert!(err.to_string().contains("10.200.0.50/24"), "{err}");
        })
    })
    .join()
    .unwrap();
}

#[test]
fn interface_facts_follow_the_namespace_and_carrier() {
    if !is_root("interface_facts_follow_the_namespace_and_carrier") {
        return;
    }
    let pair = Pair::new(false);
    pair.ns1
        .ip(&["addr", "add", "10.200.0.11/24", "dev", "rva"]);
    pair.ns1
        .ip(&["addr", "add", "2001:db8::1/64", "dev", "rva", "nodad"]);
    pair.ns1
        .ip(&["addr", "add", "fe80::a1/64", "dev", "rva", "nodad"]);
    let json = pair.ns1.link_json("rva");
    let (a, v4, v6) = in_ns(&pair.ns1, || {
        (
            interface("rva").unwrap(),
            interface_addrs("rva", false).unwrap(),
            interface_addrs("rva", true).unwrap(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(u64::from(a.index), json["ifindex"].as_u64().unwrap());
    let mac = a
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(mac, json["address"].as_str().unwrap());
    assert!(a.up);

    assert_eq!(
        v4,
        vec![(IpAddr::V4(V4_A), 24), (IpAddr::V4(V4_A_SECONDARY), 24)]
    );
    let first_global = v6
        .iter()
        .position(|(addr, _)| addr == &"2001:db8::1".parse::<IpAddr>().unwrap())
        .expect("global address listed");
    assert!(v6.contains(&(IpAddr::V6(LL_A), 64)));
    assert!(
        v6[..first_global]
            .iter()
            .all(|(addr, _)| matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local()))
            && first_global > 0,
        "link-local addresses come first: {v6:?}"
    );

    // Admin down on `rva`: it is down at once, `rvb` loses carrier.
    pair.ns1.ip(&["link", "set", "rva", "down"]);
    let a_down = in_ns(&pair.ns1, || {
        (
            link_up("rva").unwrap(),
            interface("rva").unwrap().up,
            link_up("rvsnosuch0").unwrap(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(a_down, (false, false, false));
    let b_down = in_ns(&pair.ns2, || {
        let start = Instant::now();
        while link_up("rvb").unwrap() && start.elapsed() < WAIT {
            thread::sleep(Duration::from_millis(20));
        }
        (link_up("rvb").unwrap(), interface("rvb").unwrap().up)
    })
    .join()
    .unwrap();
    assert_eq!(b_down, (false, false), "rvb is admin up but has no carrier");
    assert!(pair.ns2.link_json("rvb")["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));

    pair.ns1.ip(&["link", "set", "rva", "up"]);
    let b_up = in_ns(&pair.ns2, || {
        let start = Instant::now();
        while !link_up("rvb").unwrap() && start.elapsed() < WAIT {
            thread::sleep(Duration::from_millis(20));
        }
        link_up("rvb").unwrap()
    })
    .join()
    .unwrap();
    assert!(b_up, "carrier came back");
}

#[test]
fn netns_enter_refuses_bad_or_missing_names() {
    for name in ["", ".", "..", "a/b", "rvssys-no-such-namespace"] {
        let err = thread::spawn(move || netns::enter(name))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
    }
}
