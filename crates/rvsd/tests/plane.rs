//! End-to-end tests of the socket data plane: rvsd on loopback with real clients
//! and real servers (threads of this test), driven with rvsadm as an operator
//! would. Every test checks what a client or real server sees and what
//! `rvsadm -Lnc`/`-Ln` shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Daemon;
use rvs_api::{DataPlaneView, StatusView};
use rvs_core::{
    DestConfig, Director, DirectorConfig, Forward, InVerdict, Packet, Protocol, SchedulerKind,
    ServiceConfig, ServiceKey, TcpFlags, Time,
};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP real server on `addr`: `handle` runs on a thread per connection.
fn serve_each(addr: &str, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let local = l.local_addr().unwrap();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let h = handle.clone();
            thread::spawn(move || h(s));
        }
    });
    local
}

/// A real server: greets each connection with `id\n`, then echoes until the
/// client's FIN, finishes writing, and closes (a half-close aware echo).
struct Backend {
    addr: SocketAddr,
}

impl Backend {
    fn start(id: &str) -> Backend {
        let id = id.to_string();
        let addr = serve_each("127.0.0.1:0", move |mut s| {
            let _ = s.write_all(format!("{id}\n").as_bytes());
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        });
        Backend { addr }
    }

    fn rs(&self) -> String {
        self.addr.to_string()
    }
}

/// A UDP real server answering `id:` + the datagram.
fn udp_backend(id: &str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let id = id.to_string();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut out = format!("{id}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from);
        }
    });
    addr
}

/// A client connection from `src` (port chosen by the kernel) to `vip`; returns
/// the stream and the real server's greeting.
fn dial(src: Ipv4Addr, vip: SocketAddr) -> (TcpStream, String) {
    let (s, greeting) = try_dial(src, vip);
    let greeting = greeting.unwrap_or_else(|e| panic!("reading the greeting: {e}"));
    (s, greeting)
}

/// Like `dial`, but the greeting may fail (a reset).
fn try_dial(src: Ipv4Addr, vip: SocketAddr) -> (TcpStream, std::io::Result<String>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())
        .unwrap();
    sock.connect(&vip.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let greeting = try_read_line(&s);
    (s, greeting)
}

fn read_line(s: &TcpStream) -> String {
    try_read_line(s).unwrap_or_else(|e| panic!("reading a line: {e}"))
}

fn try_read_line(mut s: &TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// One echo round trip; `Err` with the error kind if the connection is gone.
fn ping(mut s: &TcpStream) -> Result<(), ErrorKind> {
    s.write_all(b"ping").map_err(|e| e.kind())?;
    let mut b = [0u8; 4];
    s.read_exact(&mut b).map_err(|e| e.kind())?;
    assert_eq!(&b, b"ping");
    Ok(())
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn plane_daemon(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let mut args = vec!["--data-plane", "socket", "--plane-threads", "2"];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

/// A TCP rr service on a free loopback port with `rs` as its one (-m) real
/// server, listening when this returns.
fn service_to(d: &Daemon, rs: SocketAddr) -> SocketAddr {
    let v = vip(common::free_port());
    ok(d, &["-A", "-t", &v.to_string(), "-s", "rr"]);
    ok(
        d,
        &["-a", "-t", &v.to_string(), "-r", &rs.to_string(), "-m"],
    );
    wait_listening(d, "TCP", v);
    v
}

fn ok(d: &Daemon, args: &[&str]) {
    let o = d.rvsadm(args);
    assert!(o.status.success(), "rvsadm {args:?}: {o:?}");
}

fn out(d: &Daemon, args: &[&str]) -> String {
    let o = d.rvsadm(args);
    assert!(o.status.success(), "rvsadm {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

fn plane_status(d: &Daemon) -> DataPlaneView {
    let c = rvsd::client::Client::new(d.socket.clone());
    let s: StatusView = c.get("/v1/status").unwrap().unwrap();
    s.data_plane.expect("the socket plane runs")
}

/// Waits (up to 10 s) for the listener of `vip` to be up.
fn wait_listening(d: &Daemon, proto: &str, vip: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let st = plane_status(d);
        if st
            .listeners
            .iter()
            .any(|l| l.protocol == proto && l.port == vip.port() && l.listening)
        {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("{proto} {vip} never listened: {:?}", plane_status(d));
}

/// Polls `f` for up to `secs` seconds.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Every scheduler through the plane picks what the core alone picks for the
/// same clients (same source addresses and ports, connections held open so the
/// counts that lc/wlc/sed/nq/ovf/fo/twos read are the same).
#[test]
fn every_scheduler_through_the_plane_matches_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let weights = [3u32, 1, 2];
    let mut model = Director::new(DirectorConfig::default());
    let schedulers = [
        "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "fo", "ovf", "mh",
        "twos",
    ];
    let mut held = Vec::new();
    let mut refused = 0u32;
    let mut now = Time::from_millis(1);
    for (si, sched) in schedulers.iter().enumerate() {
        let port = common::free_port();
        let v = vip(port);
        ok(&d, &["-A", "-t", &v.to_string(), "-s", sched]);
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: v.ip(),
            port,
        };
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::parse(sched).unwrap();
        model.add_service(cfg).unwrap();
        for (b, w) in backends.iter().zip(weights) {
            ok(
                &d,
                &[
                    "-a",
                    "-t",
                    &v.to_string(),
                    "-r",
                    &b.rs(),
                    "-m",
                    "-w",
                    &w.to_string(),
                ],
            );
            let dc = DestConfig {
                weight: w,
                forward: Forward::Masq,
                ..DestConfig::new(b.addr.ip(), b.addr.port())
            };
            model.add_dest(&key, dc).unwrap();
        }
        wait_listening(&d, "TCP", v);
        eprintln!("scheduler {sched}");
        for i in 0..12u8 {
            let src = Ipv4Addr::new(127, 0, 1 + (si as u8), 10 + i % 5);
            let (s, greeting) = try_dial(src, v);
            let local = s.local_addr().unwrap();
            let p = Packet::tcp(local.ip(), local.port(), v.ip(), port, TcpFlags::SYN);
            let InVerdict::Forward(f) = model.handle_in(&p, now) else {
                // ovf has no server below its weight: the core refuses, the
                // plane resets.
                let e = greeting.expect_err("the model refused, the plane did not");
                assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{sched}");
                refused += 1;
                continue;
            };
            let greeting = greeting.unwrap_or_else(|e| panic!("{sched}: {e}"));
            let id = f.conn.unwrap();
            let ck = model.conn(id).unwrap().key;
            model.handle_segment(id, &ck, true, TcpFlags::SYN_ACK, 0, now);
            model.handle_segment(id, &ck, false, TcpFlags::ACK, 0, now);
            let want = backends
                .iter()
                .position(|b| b.addr.ip() == f.daddr && b.addr.port() == f.dport)
                .unwrap();
            assert_eq!(
                greeting,
                format!("b{want}"),
                "{sched}: connection {i} from {local}"
            );
            now = Time::from_millis(now.as_millis() + 1);
            held.push(s);
        }
    }
    // The listing counts what the plane holds: 12 active per service.
    let listing = out(&d, &["-Ln"]);
    assert_eq!(listing.matches("Masq").count(), 3 * schedulers.len());
    let active: u32 = listing
        .lines()
        .filter(|l| l.contains("Masq"))
        .map(|l| l.split_whitespace().nth(4).unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(active + refused, 12 * schedulers.len() as u32, "{listing}");
    assert!(refused < 12, "only ovf runs out of servers");
}

/// FIN one way keeps the other way flowing; the entry ends in TIME_WAIT as the
/// kernel's would, and the counters add up.
#[test]
fn half_close_and_large_transfers_are_intact() {
    for splice in ["auto", "never", "always"] {
        let dir = tempfile::tempdir().unwrap();
        let d = plane_daemon(dir.path(), &["--splice", splice]);
        let v = service_to(&d, Backend::start("big").addr);

        let (s, greeting) = dial(Ipv4Addr::LOCALHOST, v);
        assert_eq!(greeting, "big");
        const SIZE: usize = 48 << 20;
        let pattern = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let mut chunk = vec![0u8; 256 * 1024];
            let mut sent = 0;
            while sent < SIZE {
                let n = chunk.len().min(SIZE - sent);
                for (j, c) in chunk[..n].iter_mut().enumerate() {
                    *c = pattern(sent + j);
                }
                w.write_all(&chunk[..n]).unwrap();
                sent += n;
            }
            // Half-close: the echo must keep flowing back after this FIN.
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut r = &s;
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (j, &c) in buf[..n].iter().enumerate() {
                assert_eq!(c, pattern(got + j), "{splice}: byte {} differs", got + j);
            }
            got += n;
        }
        writer.join().unwrap();
        assert_eq!(got, SIZE, "{splice}: the whole stream came back");
        drop(s);
        assert!(
            eventually(10, || out(&d, &["-Lnc"]).contains("TIME_WAIT")),
            "{splice}: {}",
            out(&d, &["-Lnc"])
        );
        // Bytes reach the counters within a tick or two.
        assert!(eventually(10, || {
            let stats = out(&d, &["-Ln", "--stats", "--exact"]);
            let line = stats
                .lines()
                .find(|l| l.starts_with("TCP"))
                .unwrap()
                .to_string();
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(2)
                .map(|x| x.parse().unwrap())
                .collect();
            // Conns, InPkts, OutPkts, InBytes, OutBytes: the echo doubles the
            // greeting's 4 bytes on the way out.
            f[0] == 1 && f[3] == SIZE as u64 && f[4] == SIZE as u64 + 4
        }));
    }
}

/// No real server: the client is reset. A real server that refuses: the client
/// is reset, the failure is counted, and the entry shows CLOSE as the kernel's
/// would after the server's RST.
#[test]
fn refusals_reset_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let v = vip(common::free_port());
    ok(&d, &["-A", "-t", &v.to_string(), "-s", "wlc"]);
    wait_listening(&d, "TCP", v);
    let expect_reset = |v: SocketAddr| {
        let mut s = TcpStream::connect(v).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut b = [0u8; 1];
        let r = s.read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{r:?}"
        );
    };
    expect_reset(v);
    assert_eq!(plane_status(&d).refused, 1);

    let closed = common::free_port();
    ok(
        &d,
        &[
            "-a",
            "-t",
            &v.to_string(),
            "-r",
            &format!("127.0.0.1:{closed}"),
            "-m",
        ],
    );
    expect_reset(v);
    let st = plane_status(&d);
    assert_eq!(st.connect_failed, 1);
    assert_eq!(st.connect_failed_by_server[0].port, closed);
    assert!(
        out(&d, &["-Lnc"]).contains("CLOSE "),
        "{}",
        out(&d, &["-Lnc"])
    );
}

/// -p keeps a client on one real server whatever its source port; -M groups
/// the clients of one netmask.
#[test]
fn persistence_and_netmask_groups() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let bs: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("p{i}"))).collect();
    let v = vip(common::free_port());
    let m = vip(common::free_port());
    ok(&d, &["-A", "-t", &v.to_string(), "-s", "rr", "-p", "60"]);
    ok(
        &d,
        &[
            "-A",
            "-t",
            &m.to_string(),
            "-s",
            "rr",
            "-p",
            "60",
            "-M",
            "255.255.255.0",
        ],
    );
    for b in &bs {
        ok(&d, &["-a", "-t", &v.to_string(), "-r", &b.rs(), "-m"]);
        ok(&d, &["-a", "-t", &m.to_string(), "-r", &b.rs(), "-m"]);
    }
    wait_listening(&d, "TCP", v);
    wait_listening(&d, "TCP", m);
    let mut seen = std::collections::BTreeSet::new();
    for c in 20..23u8 {
        let src = Ipv4Addr::new(127, 0, 9, c);
        let first = dial(src, v).1;
        for _ in 0..4 {
            assert_eq!(dial(src, v).1, first, "client {src} moved");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "rr spreads the clients: {seen:?}");
    // -M 255.255.255.0: 127.0.10.x share one server, 127.0.11.x another.
    let a = dial(Ipv4Addr::new(127, 0, 10, 1), m).1;
    assert_eq!(dial(Ipv4Addr::new(127, 0, 10, 200), m).1, a);
    let b = dial(Ipv4Addr::new(127, 0, 11, 1), m).1;
    assert_ne!(a, b);
    assert_eq!(dial(Ipv4Addr::new(127, 0, 11, 7), m).1, b);
    let conns = out(&d, &["-Lnc"]);
    // Templates: one per client address for -p, one per /24 for -M.
    assert!(conns.contains("127.0.9.20:0"), "{conns}");
    assert!(conns.contains("127.0.10.0:0"), "{conns}");
}

/// Quiescing a server sends new clients elsewhere and keeps its live
/// connections; deleting it keeps them too (unless expire_nodest_conn); an edit
/// of the service never cuts anything.
#[test]
fn quiesce_delete_and_edit_keep_live_connections() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let a = Backend::start("a");
    let b = Backend::start("b");
    let v = vip(common::free_port());
    let vs = v.to_string();
    ok(&d, &["-A", "-t", &vs, "-s", "rr"]);
    ok(&d, &["-a", "-t", &vs, "-r", &a.rs(), "-m"]);
    ok(&d, &["-a", "-t", &vs, "-r", &b.rs(), "-m"]);
    wait_listening(&d, "TCP", v);
    let (c1, g1) = dial(Ipv4Addr::LOCALHOST, v);
    let (c2, g2) = dial(Ipv4Addr::LOCALHOST, v);
    let (on_b, _) = if g1 == "b" { (c1, c2) } else { (c2, c1) };
    assert_ne!(g1, g2);

    ok(&d, &["-e", "-t", &vs, "-r", &b.rs(), "-m", "-w", "0"]);
    for _ in 0..4 {
        assert_eq!(
            dial(Ipv4Addr::LOCALHOST, v).1,
            "a",
            "quiesced b got a client"
        );
    }
    ping(&on_b).expect("a quiesced server's connection lives on");

    ok(&d, &["-E", "-t", &vs, "-s", "wlc"]);
    ping(&on_b).expect("a service edit cuts nothing");

    ok(&d, &["-d", "-t", &vs, "-r", &b.rs()]);
    ping(&on_b).expect("a deleted server's connection finishes on its own");
    thread::sleep(Duration::from_millis(1500));
    ping(&on_b).expect("still there after a tick");

    // With expire_nodest_conn, deleting the server cuts its connections.
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = plane_daemon(dir2.path(), &["--expire-nodest-conn"]);
    let v2 = vip(common::free_port());
    let v2s = v2.to_string();
    ok(&d2, &["-A", "-t", &v2s, "-s", "rr"]);
    ok(&d2, &["-a", "-t", &v2s, "-r", &b.rs(), "-m"]);
    wait_listening(&d2, "TCP", v2);
    let (c, g) = dial(Ipv4Addr::LOCALHOST, v2);
    assert_eq!(g, "b");
    ok(&d2, &["-d", "-t", &v2s, "-r", &b.rs()]);
    assert!(
        eventually(10, || ping(&c).is_err()),
        "expire_nodest_conn cuts the flow"
    );
}

/// The core's state timeouts are the idle timeouts: an idle established flow is
/// reset when its entry expires, a busy one lives on.
#[test]
fn idle_flows_expire_with_the_core_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    ok(&d, &["--set", "2", "0", "0"]);
    let v = service_to(&d, Backend::start("t").addr);
    let (idle, _) = dial(Ipv4Addr::LOCALHOST, v);
    let (busy, _) = dial(Ipv4Addr::LOCALHOST, v);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4500) {
        ping(&busy).expect("a busy flow outlives the timeout");
        thread::sleep(Duration::from_millis(400));
    }
    assert!(ping(&idle).is_err(), "the idle flow was cut");
    assert!(plane_status(&d).expired_open >= 1);
}

/// UDP: a session per client port with replies from the right server; -o
/// schedules each datagram.
#[test]
fn udp_sessions_and_one_packet_scheduling() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let u0 = udp_backend("u0");
    let u1 = udp_backend("u1");
    let v = vip(common::free_port());
    let o = vip(common::free_port());
    ok(&d, &["-A", "-u", &v.to_string(), "-s", "rr"]);
    ok(&d, &["-A", "-u", &o.to_string(), "-s", "rr", "-o"]);
    for u in [u0, u1] {
        ok(
            &d,
            &["-a", "-u", &v.to_string(), "-r", &u.to_string(), "-m"],
        );
        ok(
            &d,
            &["-a", "-u", &o.to_string(), "-r", &u.to_string(), "-m"],
        );
    }
    wait_listening(&d, "UDP", v);
    wait_listening(&d, "UDP", o);
    let ask = |s: &UdpSocket, to: SocketAddr, q: &str| -> String {
        s.send_to(q.as_bytes(), to).unwrap();
        let mut b = [0u8; 256];
        let (n, from) = s.recv_from(&mut b).unwrap();
        assert_eq!(from, to, "the reply comes from the VIP");
        String::from_utf8(b[..n].to_vec()).unwrap()
    };
    let mut per_server = [0; 2];
    for i in 0..20 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let first = ask(&c, v, &format!("q{i}"));
        assert!(first.ends_with(&format!(":q{i}")), "{first}");
        let server = &first[..2];
        per_server[usize::from(server == "u1")] += 1;
        for j in 0..3 {
            let again = ask(&c, v, &format!("r{j}"));
            assert_eq!(&again[..2], server, "the session keeps its server");
        }
    }
    assert_eq!(per_server, [10, 10]);
    let conns = out(&d, &["-Lnc"]);
    assert_eq!(
        conns.lines().filter(|l| l.starts_with("UDP")).count(),
        20,
        "{conns}"
    );

    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let servers: Vec<String> = (0..4)
        .map(|i| ask(&c, o, &format!("o{i}"))[..2].to_string())
        .collect();
    assert!(
        servers[0] != servers[1] && servers[0] == servers[2] && servers[1] == servers[3],
        "-o schedules every datagram: {servers:?}"
    );
    let stats = out(&d, &["-Ln", "--stats"]);
    assert!(stats.contains(&format!("UDP  {o}")), "{stats}");

    // Deleting the service while its sessions live, then adding it again: the
    // old sessions give the VIP socket up, so no datagram lands on a socket
    // nobody reads (SO_REUSEPORT would spread clients over both).
    ok(&d, &["-D", "-u", &v.to_string()]);
    ok(&d, &["-A", "-u", &v.to_string(), "-s", "rr"]);
    ok(
        &d,
        &["-a", "-u", &v.to_string(), "-r", &u0.to_string(), "-m"],
    );
    wait_listening(&d, "UDP", v);
    for i in 0..16 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        assert!(ask(&c, v, &format!("n{i}")).starts_with("u0:"));
    }
}

/// A VIP this host does not own still gets its listener (IP_FREEBIND); a bind
/// that fails is reported and the rule stays; port 0 is refused with a reason.
#[test]
fn listeners_freebind_bind_failures_and_port_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let port = common::free_port();
    let foreign = SocketAddr::from(([192, 0, 2, 77], port));
    ok(&d, &["-A", "-t", &foreign.to_string(), "-s", "rr"]);
    wait_listening(&d, "TCP", foreign);

    // A port held by a socket without SO_REUSEPORT cannot be bound.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = taken.local_addr().unwrap();
    ok(&d, &["-A", "-t", &t.to_string(), "-s", "rr"]);
    assert!(eventually(10, || {
        plane_status(&d)
            .listeners
            .iter()
            .any(|l| l.port == t.port() && !l.listening && l.error.is_some())
    }));
    assert!(out(&d, &["-Ln"]).contains(&t.to_string()), "the rule stays");
    // Freed, the port is taken up on the next retry.
    drop(taken);
    assert!(eventually(10, || plane_status(&d)
        .listeners
        .iter()
        .any(|l| l.port == t.port() && l.listening)));

    let o = d.rvsadm(&["-A", "-t", "127.0.0.1:0", "-p"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("port 0"), "{err}");
    assert!(!out(&d, &["-Ln"]).contains("127.0.0.1:0"));
}

/// A real server with the PROXY protocol extension learns the client's address.
#[test]
fn proxy_protocol_v1_and_v2_carry_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    // A real server that decodes the header and answers with the source.
    let rs = serve_each("127.0.0.1:0", |mut s| {
        let mut buf = Vec::new();
        let mut b = [0u8; 256];
        let header = loop {
            let n = s.read(&mut b).unwrap_or(0);
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&b[..n]);
            match rvs_wire::proxy_protocol::decode(&buf) {
                Ok(Some((h, _))) => break Some(h),
                Ok(None) => continue,
                Err(_) => break None,
            }
        };
        let src = header
            .and_then(|h| h.addresses)
            .map(|a| format!("{} {:?}", a.src, a.dst))
            .unwrap_or_else(|| "none".into());
        let _ = s.write_all(format!("{src}\n").as_bytes());
    });
    for version in ["v1", "v2"] {
        let v = vip(common::free_port());
        ok(&d, &["-A", "-t", &v.to_string(), "-s", "rr"]);
        let body = format!(
            r#"{{"commands":[{{"op":"add_server","service":{{"protocol":"tcp","address":"127.0.0.1","port":{}}},"server":{{"address":"127.0.0.1","port":{},"forward":"masq","proxy_protocol":"{version}"}}}}]}}"#,
            v.port(),
            rs.port()
        );
        let c = rvsd::client::Client::new(d.socket.clone());
        let r: serde_json::Value = c
            .post(
                "/v1/commands",
                &serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(r["applied"], 1);
        wait_listening(&d, "TCP", v);
        // The PROXY header comes first, so the client speaks first here.
        let (s, line) = {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::from(([127, 0, 0, 33], 0)).into())
                .unwrap();
            sock.connect(&v.into()).unwrap();
            let s: TcpStream = sock.into();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let line = read_line(&s);
            (s, line)
        };
        let local = s.local_addr().unwrap();
        assert!(
            line.starts_with(&format!("{local} ")) && line.contains(&v.to_string()),
            "{version}: {line}"
        );
    }
}

/// An IPv6 VIP with an IPv4 real server (the plane is FullNAT: families may
/// differ only where the core allows; here v6 to v6).
#[test]
fn ipv6_service() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP ipv6_service: no IPv6 loopback on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    let rs = serve_each("[::1]:0", |mut s| {
        let peer = s.peer_addr().unwrap();
        let _ = s.write_all(format!("v6 {peer}\n").as_bytes());
    });
    let port = common::free_port();
    let v: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    ok(&d, &["-A", "-t", &v.to_string(), "-s", "rr"]);
    ok(
        &d,
        &["-a", "-t", &v.to_string(), "-r", &rs.to_string(), "-m"],
    );
    wait_listening(&d, "TCP", v);
    let s = TcpStream::connect(v).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert!(read_line(&s).starts_with("v6 [::1]:"));
    assert!(out(&d, &["-Lnc"]).contains("[::1]"));

    // An IPv6 fwmark service takes its mark's IPv6 rules (the IPv4 rule of the
    // same mark belongs to `-f 6666` without -6, which does not exist).
    let marked = common::free_port();
    let v4_only = common::free_port();
    for (prefix, port) in [("::1/128", marked), ("127.0.0.1", v4_only)] {
        ok(
            &d,
            &["--marks", "add", "6666", "tcp", prefix, &port.to_string()],
        );
    }
    ok(&d, &["-A", "-f", "6666", "-6", "-s", "rr"]);
    ok(&d, &["-a", "-f", "6666", "-6", "-r", &rs.to_string(), "-m"]);
    let m: SocketAddr = format!("[::1]:{marked}").parse().unwrap();
    wait_listening(&d, "TCP", m);
    let s = TcpStream::connect(m).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert!(read_line(&s).starts_with("v6 [::1]:"));
    assert!(out(&d, &["-Ln"]).contains("FWM  6666 IPv6 rr\n"));
    assert!(!plane_status(&d).listeners.iter().any(|l| l.port == v4_only));
}

/// The retry extension: a refused connect schedules the client again, so with
/// one dead and one live real server every client gets through; the failures
/// are still counted. Without it (above) the client is reset.
#[test]
fn connect_retries_reach_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &["--connect-retries", "2"]);
    let live = Backend::start("live");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let v = vip(common::free_port());
    let vs = v.to_string();
    ok(&d, &["-A", "-t", &vs, "-s", "rr"]);
    ok(&d, &["-a", "-t", &vs, "-r", &dead, "-m"]);
    ok(&d, &["-a", "-t", &vs, "-r", &live.rs(), "-m"]);
    wait_listening(&d, "TCP", v);
    for _ in 0..6 {
        assert_eq!(dial(Ipv4Addr::LOCALHOST, v).1, "live");
    }
    let st = plane_status(&d);
    assert_eq!(st.accepted, 6);
    assert!(st.connect_failed >= 3, "{st:?}");
}

/// The half-closed states, as IPVS shows them for a NAT connection: the
/// client's FIN leaves the entry in CLOSE_WAIT while the real server still
/// sends; the real server's FIN leaves it in FIN_WAIT while the client still
/// sends; both end in TIME_WAIT.
#[test]
fn half_closed_states_follow_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let d = plane_daemon(dir.path(), &[]);
    // Client closes first: the server answers after the client's FIN.
    let late = serve_each("127.0.0.1:0", |mut s| {
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(format!("got {}\n", all.len()).as_bytes());
    });
    // Server closes first: it says hello, shuts its side, then reads on and
    // hands what it read to the test.
    let (got_tx, got_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let got_tx = std::sync::Mutex::new(got_tx);
    let early = serve_each("127.0.0.1:0", move |mut s| {
        let _ = s.write_all(b"hello\n");
        let _ = s.shutdown(Shutdown::Write);
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let _ = got_tx.lock().unwrap().send(all);
    });
    let state_of = |port: u16| {
        let conns = out(&d, &["-Lnc"]);
        conns
            .lines()
            .find(|l| l.contains(&format!(":{port} ")))
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .unwrap_or_default()
    };

    let v1 = service_to(&d, late);
    let mut c = TcpStream::connect(v1).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"12345").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert!(
        eventually(10, || state_of(v1.port()) == "CLOSE_WAIT"),
        "{}",
        out(&d, &["-Lnc"])
    );
    assert_eq!(read_line(&c), "got 5", "the other way still flows");
    assert!(eventually(10, || state_of(v1.port()) == "TIME_WAIT"));

    let v2 = service_to(&d, early);
    let mut c = TcpStream::connect(v2).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_line(&c), "hello");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the real server's FIN reached the client");
    assert!(
        eventually(10, || state_of(v2.port()) == "FIN_WAIT"),
        "{}",
        out(&d, &["-Lnc"])
    );
    c.write_all(b"still here").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = got_rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(got, b"still here", "the client's way still flows");
    assert!(eventually(10, || state_of(v2.port()) == "TIME_WAIT"));
}

/// Real servers for a fwmark service: `127.0.0.2N` (N = 1..=count) each listen
/// on every port of `ports` and greet with `rN:PORT`.
fn fwmark_reals(count: u8, ports: &[u16]) -> Vec<String> {
    let mut addrs = Vec::new();
    for n in 1..=count {
        let addr = format!("127.0.0.{}", 20 + n);
        for &port in ports {
            let greeting = format!("r{n}:{port}\n");
            serve_each(&format!("{addr}:{port}"), move |mut s| {
                let _ = s.write_all(greeting.as_bytes());
            });
        }
        addrs.push(addr);
    }
    addrs
}

/// The real server behind a greeting `rN:PORT`, checking that the connection
/// reached the port the client dialled (a fwmark real without a port takes the
/// packet's).
fn real_of(greeting: &str, dialled: u16) -> String {
    let (real, port) = greeting
        .split_once(':')
        .unwrap_or_else(|| panic!("greeting {greeting:?}"));
    assert_eq!(port, dialled.to_string(), "greeting {greeting:?}");
    real.to_string()
}

/// The classic LVS recipe without iptables: rvs's classifier marks http and
/// https of one VIP 6666, `-f 6666 -s rr -p` keeps each client's two
/// connections on one real server (one fwmark template per client); without
/// -p they rotate. A mark without a `-f` service leaves its traffic to the
/// address service, and bad or overlapping rules change nothing.
#[test]
fn fwmark_service_keeps_http_and_https_of_a_client_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = plane_daemon(dir.path(), &[]);
    let (http, https, other) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let reals = fwmark_reals(3, &[http, https]);
    let ports = format!("{http},{https}");
    ok(&d, &["--marks", "add", "6666", "tcp", "127.0.0.1", &ports]);
    ok(&d, &["-A", "-f", "6666", "-s", "rr", "-p"]);
    for r in &reals {
        ok(&d, &["-a", "-f", "6666", "-r", r, "-m"]);
    }
    wait_listening(&d, "TCP", vip(http));
    wait_listening(&d, "TCP", vip(https));
    let listing = out(&d, &["-Ln"]);
    assert!(
        listing.contains("FWM  6666 rr persistent 360\n"),
        "{listing}"
    );

    let mut spread = std::collections::BTreeSet::new();
    for c in 1..=12u8 {
        let src = Ipv4Addr::new(127, 0, 12, c);
        let first = real_of(&dial(src, vip(http)).1, http);
        for _ in 0..2 {
            assert_eq!(real_of(&dial(src, vip(https)).1, https), first, "{src}");
            assert_eq!(real_of(&dial(src, vip(http)).1, http), first, "{src}");
        }
        spread.insert(first);
    }
    assert_eq!(spread.len(), 3, "rr spreads the clients: {spread:?}");
    // One template per client, in the kernel's fwmark form: protocol IP, the
    // mark as the virtual address (6666 = 0.0.26.10), ports 0.
    let conns = out(&d, &["-Lnc"]);
    let templates: Vec<&str> = conns
        .lines()
        .filter(|l| l.starts_with("IP ") && l.contains(" 0.0.26.10:0 "))
        .collect();
    assert_eq!(templates.len(), 12, "{conns}");
    assert!(templates.iter().any(|l| l.contains(" 127.0.12.7:0 ")));

    // Without persistence the same client rotates over the reals.
    ok(&d, &["-E", "-f", "6666", "-s", "rr"]);
    let src = Ipv4Addr::new(127, 0, 13, 1);
    let picks: Vec<String> = (0..6)
        .map(|i| {
            let port = if i % 2 == 0 { http } else { https };
            real_of(&dial(src, vip(port)).1, port)
        })
        .collect();
    for w in picks.windows(2) {
        assert_ne!(w[0], w[1], "rr without -p moves on: {picks:?}");
    }
    assert_eq!(
        picks
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );

    // A mark no -f service uses: the address service owns the traffic.
    let plain = Backend::start("plain");
    ok(
        &d,
        &[
            "--marks",
            "add",
            "7",
            "tcp",
            "127.0.0.1",
            &other.to_string(),
        ],
    );
    ok(&d, &["-A", "-t", &vip(other).to_string(), "-s", "rr"]);
    ok(
        &d,
        &["-a", "-t", &vip(other).to_string(), "-r", &plain.rs(), "-m"],
    );
    wait_listening(&d, "TCP", vip(other));
    assert_eq!(dial(Ipv4Addr::new(127, 0, 14, 1), vip(other)).1, "plain");

    // Bad rules are refused with the reason and change nothing.
    let before = out(&d, &["--marks"]);
    // Listed canonical (sorted, adjacent ports merged), in the order added.
    let canonical = |r: String| r.parse::<rvs_core::MarkRule>().unwrap().to_string();
    assert_eq!(
        before,
        format!(
            "{}\n7 tcp 127.0.0.1/32 {other}\n",
            canonical(format!("6666 tcp 127.0.0.1 {https},{http}"))
        )
    );
    for (args, why) in [
        (vec!["1", "tcp", "127.0.0.1", "0"], "port 0"),
        (vec!["1", "tcp", "127.0.0.1", "90-80"], "inverted"),
        (vec!["0", "tcp", "127.0.0.1", "80"], "mark 0"),
        (
            vec!["1", "tcp", "127.0.0.0/8", &ports],
            "overlaps rule `6666 tcp 127.0.0.1/32",
        ),
    ] {
        let mut argv = vec!["--marks", "add"];
        argv.extend(args.iter().copied());
        let o = d.rvsadm(&argv);
        assert!(!o.status.success(), "{argv:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{argv:?}: {err}");
    }
    assert_eq!(out(&d, &["--marks"]), before);

    // The rules are in the crash-safe state: a restart serves them again.
    d.kill9();
    let d = plane_daemon(dir.path(), &[]);
    assert_eq!(out(&d, &["--marks"]), before);
    wait_listening(&d, "TCP", vip(https));
    let r = real_of(&dial(Ipv4Addr::new(127, 0, 15, 1), vip(https)).1, https);
    assert!(r.starts_with('r'), "{r}");
}
