//! `rvsd --demo` end to end on loopback: the demo table is added to an empty
//! table, HTTP requests to the TCP VIP are spread over the demo real servers, a
//! datagram to the UDP VIP comes back from a demo echo server, and rvsadm lists
//! the demo service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{free_port, Daemon};

/// A base port whose demo ports (base..base+2 TCP, base+10..base+11 UDP) are free
/// now and differ from `avoid`.
fn free_demo_base(avoid: &[u16]) -> u16 {
    let seed = u64::from(std::process::id()) ^ u64::from(free_port());
    for attempt in 0..200u64 {
        let base = 20_000 + u16::try_from((seed + attempt * 97) % 40_000).unwrap();
        let tcp = [base, base + 1, base + 2];
        let udp = [base + 10, base + 11];
        if tcp.iter().chain(&udp).any(|p| avoid.contains(p)) {
            continue;
        }
        let tcp_free = tcp
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
        let udp_free = udp
            .iter()
            .all(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok());
        if tcp_free && udp_free {
            return base;
        }
    }
    panic!("no free demo base port");
}

/// A UDP port free on loopback now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `GET /` over a plain TcpStream; returns the whole answer.
fn get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nUser-Agent: rvs-test\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw)
}

/// `get`, retried while the plane's listener is not up yet.
fn first_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match get(addr) {
            Ok(raw) if !raw.is_empty() => return raw,
            other if Instant::now() >= deadline => panic!("no answer from {addr}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn the_demo_balances_http_and_echoes_udp() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let vip_port = free_port();
    let udp_port = free_udp_port();
    let base = free_demo_base(&[vip_port, udp_port]);
    let d = Daemon::start(
        dir.path(),
        &[
            "--data-plane",
            "socket",
            "--plane-threads",
            "2",
            "--demo",
            "--demo-base-port",
            &base.to_string(),
            "--demo-vip-port",
            &vip_port.to_string(),
            "--demo-udp-port",
            &udp_port.to_string(),
        ],
    );
    let vip = format!("127.0.0.1:{vip_port}");

    let mut answers = vec![first_get(&vip)];
    for _ in 1..6 {
        answers.push(get(&vip).unwrap());
    }
    let mut seen = std::collections::BTreeSet::new();
    for raw in &answers {
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        let body = raw.split_once("\r\n\r\n").unwrap().1;
        let server = body
            .strip_prefix("hello from demo real server ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("not a demo server's answer: {body}"));
        assert!(
            body.contains("your address as this server sees it: 127.0.0.1:"),
            "{body}"
        );
        seen.insert(server.to_string());
    }
    assert!(
        seen.len() >= 2,
        "6 requests reached only the demo servers {seen:?}"
    );

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut echo = None;
    for _ in 0..6 {
        client
            .send_to(b"hi from the test", ("127.0.0.1", udp_port))
            .unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            echo = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    let echo = echo.expect("no UDP echo through the demo VIP");
    assert!(
        echo.starts_with("demo udp server ") && echo.ends_with(": hi from the test"),
        "{echo}"
    );

    let o = d.rvsadm(&["-Ln"]);
    assert!(o.status.success(), "rvsadm -Ln: {o:?}");
    let listing = String::from_utf8_lossy(&o.stdout);
    let tcp_service = format!("TCP  127.0.0.1:{vip_port} wlc");
    let udp_service = format!("UDP  127.0.0.1:{udp_port} rr");
    assert!(listing.contains(&tcp_service), "{listing}");
    assert!(listing.contains(&udp_service), "{listing}");
    let tcp_servers: Vec<&str> = listing
        .lines()
        .skip_while(|l| !l.starts_with(&tcp_service))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("->"))
        .collect();
    assert_eq!(tcp_servers.len(), 3, "{listing}");
    for port in base..base + 3 {
        assert!(
            tcp_servers
                .iter()
                .any(|l| l.contains(&format!("127.0.0.1:{port} ")) && l.contains("Masq")),
            "{listing}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_demo_leaves_a_table_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let vip_port = free_port();
    let udp_port = free_udp_port();
    let base = free_demo_base(&[vip_port, udp_port]);
    let other = free_port();
    {
        let d = Daemon::start(dir.path(), &[]);
        let o = d.rvsadm(&["-A", "-t", &format!("127.0.0.1:{other}"), "-s", "rr"]);
        assert!(o.status.success(), "{o:?}");
    }
    let d = Daemon::start(
        dir.path(),
        &[
            "--data-plane",
            "socket",
            "--plane-threads",
            "1",
            "--demo",
            "--demo-base-port",
            &base.to_string(),
            "--demo-vip-port",
            &vip_port.to_string(),
            "--demo-udp-port",
            &udp_port.to_string(),
        ],
    );
    assert_eq!(d.sn(), format!("-A -t 127.0.0.1:{other} -s rr\n"));
}
