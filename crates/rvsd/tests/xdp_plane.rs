//! The XDP packet plane end to end in network namespaces (root only; CI is root).
//!
//! Topology, one [`Lan`] per test: a client with many source addresses
//! (10.0.0.100-131/24), the director (10.0.0.1/24 and 10.1.0.1/24 on eth0, the
//! VIP 10.0.0.10/32, FullNAT's local address 10.1.0.2/24) running
//! `rvsd --data-plane xdp`, and three real servers (10.1.0.11-13/24) each serving
//! TCP ports 80 and 443 (`GET n` answers its name, the peer it saw, then n
//! pattern bytes; `HOLD` keeps the connection open) and UDP port 5353 (echo
//! prefixed with its name). Each LVS method sets the real servers up as an operator would:
//!
//! - DR: VIP on lo, arp_ignore=1/arp_announce=2 (`rvs-realserver dr up`), an
//!   on-link route to the clients' subnet, so replies go straight to the client.
//! - TUN: the same plus `rvs-realserver tun up` (the BPF decapsulator: this
//!   kernel has no ipip module).
//! - NAT: default route via the director.
//! - FullNAT: nothing; the real server answers the director's local address.
//!
//! Every test checks real TCP (sequential connections from many sources, parallel
//! 1 MB downloads compared byte for byte), UDP, where the replies went (the
//! director's receive counter), what the real server saw as the peer, and that
//! `rvsadm -Lnc` lists the flows with the core's states.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::netns::{
    in_netns, ip, is_root, realserver_bin, run_checked, spawn_in_netns, tx_checksum_offload_off,
    wait_until, Lan, Node, Proc,
};

const VIP: &str = "10.0.0.10";
const VIP6: &str = "fd00::10";
const CLIENT_SOURCES: u8 = 32;
const REAL_NAMES: [&str; 3] = ["rs1", "rs2", "rs3"];
/// The TCP ports every real server serves (http and https of the fwmark recipe).
const TCP_PORTS: [u16; 2] = [80, 443];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Dr,
    Tun,
    Nat,
    FullNat,
}

impl Method {
    fn rvsadm_flag(self) -> &'static str {
        match self {
            Method::Dr => "-g",
            Method::Tun => "-i",
            Method::Nat => "-m",
            Method::FullNat => "--fullnat",
        }
    }
    /// Whether the real server's replies come back through the director.
    fn replies_via_director(self) -> bool {
        matches!(self, Method::Nat | Method::FullNat)
    }
}

fn ns_sh(node: &Node, cmd: &str) -> String {
    run_checked("ip", &["netns", "exec", node.ns(), "sh", "-c", cmd])
}

/// The pattern byte at offset `i` of a download (not periodic in 256 so a
/// shifted or repeated chunk shows).
fn pattern(i: usize) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

/// TCP and UDP servers of one real server, inside its namespace.
struct RealServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RealServer {
    fn start(node: &Node, name: &str, udp_binds: &[IpAddr]) -> RealServer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (tx, rx) = std::sync::mpsc::channel();
        for port in TCP_PORTS {
            let stop = Arc::clone(&stop);
            let name = name.to_string();
            let tx = tx.clone();
            threads.push(spawn_in_netns(node.ns(), move || {
                // Dual stack: IPv4 clients arrive as mapped addresses.
                let l = TcpListener::bind(format!("[::]:{port}")).expect("bind tcp");
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((conn, peer)) => {
                            let name = name.clone();
                            std::thread::spawn(move || serve_tcp(conn, peer, &name));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        for &udp_bind in udp_binds {
            let stop = Arc::clone(&stop);
            let name = name.to_string();
            let tx = tx.clone();
            threads.push(spawn_in_netns(node.ns(), move || {
                let s = UdpSocket::bind(SocketAddr::new(udp_bind, 5353)).expect("bind udp");
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = s.recv_from(&mut buf) {
                        let mut reply = format!("{name}:").into_bytes();
                        reply.extend_from_slice(&buf[..n]);
                        let _ = s.send_to(&reply, peer);
                    }
                }
            }));
        }
        for _ in 0..TCP_PORTS.len() + udp_binds.len() {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("real server ready");
        }
        RealServer { stop, threads }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_tcp(mut conn: TcpStream, peer: SocketAddr, name: &str) {
    let peer = match peer {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => peer,
        },
        v4 => v4,
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let _ = writeln!(conn, "{name} {peer}");
    if let Some(n) = line.trim().strip_prefix("GET ") {
        let n: usize = n.parse().unwrap_or(0);
        let chunk: Vec<u8> = (0..n).map(pattern).collect();
        let _ = conn.write_all(&chunk);
    } else if line.trim() == "HOLD" {
        // Keep the connection until the client closes it.
        let mut sink = [0u8; 64];
        let _ = reader.read(&mut sink);
    }
}

struct Topology {
    lan: Lan,
    client: Node,
    director: Node,
    reals: Vec<Node>,
    _servers: Vec<RealServer>,
    rvsd: Option<Proc>,
    socket: PathBuf,
    bpffs: PathBuf,
    _dir: tempfile::TempDir,
    method: Method,
    v6: bool,
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut p) = self.rvsd.take() {
            p.signal(common::netns::Signal::SIGTERM);
            let _ = p.wait_timeout(Duration::from_secs(5));
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.bpffs)
            .status();
    }
}

fn rvsadm_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rvsadm")
}

impl Topology {
    fn build(method: Method, sched: &str, v6: bool) -> Topology {
        Topology::build_with(method, sched, &[], v6)
    }

    /// Both families are addressed (IPv6: clients fd00::100.., director
    /// fd00::1 and fd01::1, VIP fd00::10, real servers fd01::11..); the services
    /// are added for the family `v6` selects.
    fn build_with(method: Method, sched: &str, extra: &[&str], v6: bool) -> Topology {
        let mut t = Topology::start(method, extra, v6);
        t.add_services(sched);
        t
    }

    /// The namespaces, real servers and rvsd, without any virtual service.
    fn start(method: Method, extra: &[&str], v6: bool) -> Topology {
        let lan = Lan::new();
        let client = lan.add_node("client", "10.0.0.100/24");
        let director = lan.add_node("director", "10.0.0.1/24");
        let mut reals = Vec::new();
        for (i, name) in REAL_NAMES.iter().enumerate() {
            reals.push(lan.add_node(name, &format!("10.1.0.1{}/24", i + 1)));
        }
        for i in 1..CLIENT_SOURCES {
            ip(&[
                "-n",
                client.ns(),
                "addr",
                "add",
                &format!("10.0.0.{}/24", 100 + u32::from(i)),
                "dev",
                "eth0",
            ]);
        }
        ip(&[
            "-n",
            client.ns(),
            "route",
            "add",
            "10.1.0.0/24",
            "via",
            "10.0.0.1",
        ]);
        ip(&[
            "-n",
            director.ns(),
            "addr",
            "add",
            "10.1.0.1/24",
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            director.ns(),
            "addr",
            "add",
            &format!("{VIP}/32"),
            "dev",
            "eth0",
        ]);
        if method == Method::FullNat {
            ip(&[
                "-n",
                director.ns(),
                "addr",
                "add",
                "10.1.0.2/24",
                "dev",
                "eth0",
            ]);
        }
        for i in 0..CLIENT_SOURCES {
            let a = format!("fd00::{:x}/64", 0x100 + u32::from(i));
            ip(&[
                "-n",
                client.ns(),
                "-6",
                "addr",
                "add",
                &a,
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        ip(&[
            "-n",
            client.ns(),
            "-6",
            "route",
            "add",
            "fd01::/64",
            "via",
            "fd00::1",
        ]);
        for a in ["fd00::1/64", "fd01::1/64", "fd00::10/128"] {
            ip(&[
                "-n",
                director.ns(),
                "-6",
                "addr",
                "add",
                a,
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        if method == Method::FullNat {
            ip(&[
                "-n",
                director.ns(),
                "-6",
                "addr",
                "add",
                "fd01::2/64",
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        for (i, rs) in reals.iter().enumerate() {
            let a = format!("fd01::1{}/64", i + 1);
            ip(&[
                "-n",
                rs.ns(),
                "-6",
                "addr",
                "add",
                &a,
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        tx_checksum_offload_off([&client, &director].into_iter().chain(reals.iter()));
        lan.attach_xdp_pass(&director);
        let dir = tempfile::tempdir().unwrap();
        let realserver = realserver_bin();
        let realserver = realserver.to_str().unwrap();
        // Pins must outlive `ip netns exec` (which remounts /sys): a bpffs of our own.
        let bpffs = dir.path().join("bpffs");
        std::fs::create_dir_all(&bpffs).unwrap();
        run_checked("mount", &["-t", "bpf", "bpf", bpffs.to_str().unwrap()]);

        let vip: IpAddr = VIP.parse().unwrap();
        let mut servers = Vec::new();
        for (i, rs) in reals.iter().enumerate() {
            let state = dir.path().join(format!("rs{i}.json"));
            let state = state.to_str().unwrap();
            match method {
                Method::Dr => {
                    run_checked(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            rs.ns(),
                            realserver,
                            "--state",
                            state,
                            "dr",
                            "up",
                            "--vip",
                            VIP,
                            "--vip",
                            VIP6,
                        ],
                    );
                    ip(&["-n", rs.ns(), "route", "add", "10.0.0.0/24", "dev", "eth0"]);
                    ip(&[
                        "-n",
                        rs.ns(),
                        "-6",
                        "route",
                        "add",
                        "fd00::/64",
                        "dev",
                        "eth0",
                    ]);
                }
                Method::Tun => {
                    let pin_dir = bpffs.join(format!("rs{i}")).to_string_lossy().into_owned();
                    run_checked(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            rs.ns(),
                            realserver,
                            "--state",
                            state,
                            "tun",
                            "up",
                            "--vip",
                            VIP,
                            "--vip",
                            VIP6,
                            "--dev",
                            "eth0",
                            "--pin-dir",
                            &pin_dir,
                        ],
                    );
                    ip(&["-n", rs.ns(), "route", "add", "10.0.0.0/24", "dev", "eth0"]);
                    ip(&[
                        "-n",
                        rs.ns(),
                        "-6",
                        "route",
                        "add",
                        "fd00::/64",
                        "dev",
                        "eth0",
                    ]);
                }
                Method::Nat => {
                    ip(&["-n", rs.ns(), "route", "add", "default", "via", "10.1.0.1"]);
                    ip(&[
                        "-n",
                        rs.ns(),
                        "-6",
                        "route",
                        "add",
                        "default",
                        "via",
                        "fd01::1",
                    ]);
                }
                Method::FullNat => {}
            }
            // DR/TUN answer from the VIP itself; NAT/FullNAT from a dual-stack socket.
            let udp_binds = match method {
                Method::Dr | Method::Tun => vec![vip, VIP6.parse().unwrap()],
                _ => vec![IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)],
            };
            servers.push(RealServer::start(rs, REAL_NAMES[i], &udp_binds));
        }
        let socket = dir.path().join("rvsd.sock");
        let mut args: Vec<String> = [
            "--socket",
            socket.to_str().unwrap(),
            "--no-state",
            "--data-plane",
            "xdp",
            "--xdp-iface",
            "eth0",
            "--tun-source",
            "10.1.0.1",
            "--tun-source",
            "fd01::1",
            "--log",
            "info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if method == Method::FullNat {
            for a in ["--fnat-local", "10.1.0.2", "--fnat-local", "fd01::2"] {
                args.push(a.to_string());
            }
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let rvsd = director.spawn(env!("CARGO_BIN_EXE_rvsd"), &args);
        let t = Topology {
            lan,
            client,
            director,
            reals,
            _servers: servers,
            rvsd: Some(rvsd),
            socket,
            bpffs,
            _dir: dir,
            method,
            v6,
        };
        assert!(
            wait_until(Duration::from_secs(10), || t.socket.exists()),
            "rvsd did not start:\n{}",
            t.lan.logs()
        );
        t
    }

    /// TCP VIP:80 and UDP VIP:5353 over the three real servers.
    fn add_services(&mut self, sched: &str) {
        let (t, method, v6) = (&*self, self.method, self.v6);
        let vip = if v6 {
            format!("[{VIP6}]")
        } else {
            VIP.to_string()
        };
        for proto in ["-t", "-u"] {
            let port = if proto == "-t" { "80" } else { "5353" };
            t.rvsadm(&["-A", proto, &format!("{vip}:{port}"), "-s", sched]);
            for i in 0..3 {
                let real = if v6 {
                    format!("[fd01::1{}]:{port}", i + 1)
                } else {
                    format!("10.1.0.1{}:{port}", i + 1)
                };
                t.rvsadm(&[
                    "-a",
                    proto,
                    &format!("{vip}:{port}"),
                    "-r",
                    &real,
                    method.rvsadm_flag(),
                    "-w",
                    "1",
                ]);
            }
        }
        // The plane syncs the table every 250 ms and resolves the real servers' MACs.
        std::thread::sleep(Duration::from_millis(1500));
        let logs = self.lan.logs();
        if let Some(p) = self.rvsd.as_mut() {
            assert!(p.is_running(), "rvsd exited:\n{logs}");
        }
    }

    fn rvsadm(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(rvsadm_bin())
            .args(args)
            .env("RVS_SOCKET", &self.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rvsadm {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.lan.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What a failed assertion should show: the plane's counters, the
    /// connection table and the namespaces' logs.
    fn logs(&self) -> String {
        format!(
            "/v1/xdp: {}\n-Lnc:\n{}\n{}",
            self.xdp_view(),
            self.rvsadm(&["-Lnc"]),
            self.lan.logs()
        )
    }

    /// Waits until the packet plane answers `GET /v1/xdp`, then a second
    /// more: it syncs the table every 250 ms and resolves the real servers.
    fn wait_for_plane(&self) {
        assert!(
            wait_until(Duration::from_secs(10), || self
                .request("GET", "/v1/xdp", None)
                .0),
            "the packet plane never came up:\n{}",
            self.lan.logs()
        );
        std::thread::sleep(Duration::from_millis(1000));
    }

    /// `GET /v1/xdp` over the admin socket.
    fn xdp_view(&self) -> serde_json::Value {
        self.http("GET", "/v1/xdp", None)
    }

    /// One request over the admin socket; the answer's JSON body (a status
    /// other than 200 fails the test).
    fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let (ok, text) = self.request(method, path, body);
        assert!(ok, "{method} {path} {body:?}: {text}");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// One request over the admin socket: whether the status is 200, and the
    /// whole answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (bool, String) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        (text.starts_with("HTTP/1.1 200"), text)
    }

    fn director_rx_bytes(&self) -> u64 {
        ns_sh(
            &self.director,
            "cat /sys/class/net/eth0/statistics/rx_bytes",
        )
        .trim()
        .parse()
        .unwrap()
    }
}

/// One TCP download from `source`: returns (real server name, peer it saw, body).
fn download(source: IpAddr, n: usize) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut s = connect(source)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(s, "GET {n}")?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let nl = all.iter().position(|&b| b == b'\n').unwrap_or(all.len());
    let head = String::from_utf8_lossy(&all[..nl]).into_owned();
    let (name, peer) = head.split_once(' ').unwrap_or((&head, ""));
    Ok((
        name.to_string(),
        peer.to_string(),
        all.get(nl + 1..).unwrap_or(&[]).to_vec(),
    ))
}

/// One ICMP echo to `to` over a raw socket; true when the matching reply came.
fn echo(to: Ipv4Addr) -> bool {
    let Ok(sock) = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    ) else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let ident = (std::process::id() & 0xffff) as u16;
    let mut msg = vec![8u8, 0, 0, 0];
    msg.extend_from_slice(&ident.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(b"rvs echo");
    let sum = rvs_wire::checksum::internet_checksum(&[&msg]);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let dest: SocketAddr = SocketAddr::new(IpAddr::V4(to), 0);
    for _ in 0..4 {
        if sock.send_to(&msg, &dest.into()).is_err() {
            return false;
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < deadline {
            let mut bytes = [0u8; 1500];
            let Ok(n) = (&sock).read(&mut bytes) else {
                break;
            };
            // IPv4 header (20 bytes here), then type 0 with our identifier.
            if n >= 28
                && bytes[12..16] == to.octets()
                && bytes[20] == 0
                && bytes[24..26] == ident.to_be_bytes()
            {
                return true;
            }
        }
    }
    false
}

/// The client's source address `i` of the family `v6` selects.
fn source_of(i: u8, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            0,
            0x100 + u16::from(i),
        ))
    } else {
        IpAddr::V4(source(i))
    }
}

fn source(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 100 + i)
}

/// The VIP of the family of `source`.
fn vip_for(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => VIP.parse().unwrap(),
        IpAddr::V6(_) => VIP6.parse().unwrap(),
    }
}

/// A TCP connection from `source` to the VIP's port 80.
fn connect(source: IpAddr) -> std::io::Result<TcpStream> {
    connect_to(source, 80)
}

/// One TCP exchange from `source` to the VIP's `port`: the name of the real
/// server that answered.
fn real_of(source: IpAddr, port: u16) -> std::io::Result<String> {
    let mut s = connect_to(source, port)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "GET 0")?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    Ok(all.split(' ').next().unwrap_or("").to_string())
}

/// A TCP connection from `source` to the VIP's `port`.
fn connect_to(source: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let domain = match source {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    let vip = SocketAddr::new(vip_for(source), port);
    sock.connect_timeout(&vip.into(), Duration::from_secs(3))?;
    Ok(sock.into())
}

/// How `-Lnc` prints an address and port: IPv6 in brackets.
fn shown(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:"),
        IpAddr::V6(a) => format!("[{a}]:"),
    }
}

fn check_method(method: Method, sched: &str) {
    check_family(method, sched, false);
}

fn check_family(method: Method, sched: &str, v6: bool) {
    if !is_root() {
        eprintln!("SKIP: xdp_plane {method:?} needs root (network namespaces, XDP)");
        return;
    }
    let t = Topology::build(method, sched, v6);
    assert_eq!((t.method, t.v6), (method, v6));
    let source = |i: u8| source_of(i, v6);
    let vip = vip_for(source(0));
    let logs = || t.logs();

    // Sequential connections from every source address.
    let mut per_real = std::collections::HashMap::<String, usize>::new();
    let rx_before = t.director_rx_bytes();
    for round in 0..2u8 {
        for i in 0..CLIENT_SOURCES {
            let src = source(i);
            let (name, peer, body) = in_netns(t.client.ns(), move || download(src, 1000))
                .unwrap_or_else(|e| panic!("{method:?} round {round} from {src}: {e}\n{}", logs()));
            assert_eq!(body.len(), 1000, "{method:?} from {src}");
            assert!(
                body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
                "{method:?} body"
            );
            let peer_ip: IpAddr = peer
                .parse::<SocketAddr>()
                .map(|a| a.ip())
                .unwrap_or_else(|e| panic!("peer {peer}: {e}"));
            // FullNAT: the real server sees the director's local address.
            let want: IpAddr = match (method, v6) {
                (Method::FullNat, false) => "10.1.0.2".parse().unwrap(),
                (Method::FullNat, true) => "fd01::2".parse().unwrap(),
                _ => src,
            };
            assert_eq!(peer_ip, want, "{method:?} peer");
            *per_real.entry(name).or_default() += 1;
        }
    }
    assert_eq!(
        per_real.len(),
        3,
        "{method:?}: every real server gets connections: {per_real:?}"
    );

    // Parallel large downloads, checked byte for byte.
    const BIG: usize = 1 << 20;
    let handles: Vec<_> = (0..12u8)
        .map(|i| {
            let src = source(i);
            spawn_in_netns(t.client.ns(), move || download(src, BIG))
        })
        .collect();
    let mut downloaded = 0usize;
    for h in handles {
        let (_, _, body) = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{method:?} parallel: {e}\n{}", logs()));
        assert_eq!(body.len(), BIG);
        assert!(
            body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
            "{method:?} big body"
        );
        downloaded += body.len();
    }
    let through_director = t.director_rx_bytes() - rx_before;
    if method.replies_via_director() {
        assert!(
            through_director as usize > downloaded,
            "{method:?}: replies must come back through the director ({through_director} < {downloaded})"
        );
    } else {
        assert!(
            (through_director as usize) < downloaded / 10,
            "{method:?}: replies must bypass the director ({through_director} bytes received for {downloaded} downloaded)"
        );
    }

    // UDP from several sources.
    for i in 0..8u8 {
        let src = source(i);
        let reply = in_netns(t.client.ns(), move || {
            let s = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
            s.connect(SocketAddr::new(vip, 5353)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send(b"ping").unwrap();
            let mut buf = [0u8; 256];
            s.recv(&mut buf).map(|n| buf[..n].to_vec())
        })
        .unwrap_or_else(|e| panic!("{method:?} UDP from {src}: {e}\n{}", logs()));
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("rs") && text.ends_with(":ping"),
            "{method:?} UDP reply {text}"
        );
    }

    // Held connections show as ESTABLISHED in -Lnc, bound to real servers.
    let held: Vec<TcpStream> = (0..3u8)
        .map(|i| {
            let src = source(20 + i);
            in_netns(t.client.ns(), move || {
                let mut s = connect(src).unwrap();
                writeln!(s, "HOLD").unwrap();
                let mut line = String::new();
                BufReader::new(s.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                s
            })
        })
        .collect();
    let lnc = t.rvsadm(&["-Lnc"]);
    for i in 0..3u8 {
        let src = shown(source(20 + i));
        let line = lnc
            .lines()
            .find(|l| l.contains(&src) && l.contains("ESTABLISHED"))
            .unwrap_or_else(|| panic!("{method:?}: no ESTABLISHED entry for {src} in\n{lnc}"));
        assert!(
            line.contains(if v6 { "[fd01::1" } else { "10.1.0.1" }),
            "{method:?}: entry names a real server: {line}"
        );
    }
    let stats = t.rvsadm(&["-Ln", "--stats"]);
    assert!(stats.contains(&format!("{}80", shown(vip))), "{stats}");
    drop(held);
    // After the client closes, the core follows the FIN (notified by XDP).
    let closed = wait_until(Duration::from_secs(3), || {
        let lnc = t.rvsadm(&["-Lnc"]);
        lnc.lines()
            .filter(|l| l.contains(&shown(source(20))))
            .all(|l| !l.contains("ESTABLISHED"))
    });
    assert!(
        closed,
        "{method:?}: closed connection left ESTABLISHED\n{}",
        t.rvsadm(&["-Lnc"])
    );
    // An echo request to the VIP is answered by the program itself.
    if !v6 {
        let echoed = in_netns(t.client.ns(), || echo(VIP.parse().unwrap()));
        assert!(echoed, "{method:?}: no echo reply from the VIP\n{}", logs());
    }

    // The counters say which path carried the traffic.
    std::thread::sleep(Duration::from_millis(1200));
    let view = t.xdp_view();
    let c = |name: &str| view["program"][name].as_u64().unwrap_or(0);
    let fwd = match method {
        Method::Dr => "fwd_dr",
        Method::Tun => "fwd_tun",
        Method::Nat => "fwd_nat",
        Method::FullNat => "fwd_fnat",
    };
    assert!(
        c(fwd) > 1000,
        "{method:?}: {fwd} counts the fast path: {view}"
    );
    assert_eq!(c("fwd_reply") > 0, method.replies_via_director(), "{view}");
    if sched == "mh" {
        assert!(
            c("xdp_sched") >= u64::from(CLIENT_SOURCES),
            "mh decides in XDP: {view}"
        );
        assert_eq!(view["driver"]["new_mismatch"], 0, "{view}");
    } else {
        assert_eq!(c("xdp_sched"), 0, "{view}");
        assert!(
            c("upcall") >= u64::from(CLIENT_SOURCES) * 2,
            "{sched} goes up: {view}"
        );
    }
    assert_eq!(view["driver"]["send_errors"], 0, "{view}");
    assert!(v6 || c("icmp_echo") >= 1, "{view}");
    let _ = &t.reals;
}

#[test]
fn dr_carries_tcp_and_udp_and_replies_bypass_the_director() {
    check_method(Method::Dr, "wlc");
}

#[test]
fn tun_carries_tcp_and_udp_through_the_bpf_decapsulator() {
    check_method(Method::Tun, "rr");
}

#[test]
fn nat_rewrites_both_ways() {
    check_method(Method::Nat, "wlc");
}

#[test]
fn fullnat_rewrites_source_and_destination() {
    check_method(Method::FullNat, "rr");
}

#[test]
fn dr_over_ipv6() {
    check_family(Method::Dr, "wlc", true);
}

#[test]
fn tun_over_ipv6() {
    check_family(Method::Tun, "wlc", true);
}

#[test]
fn fullnat_over_ipv6() {
    check_family(Method::FullNat, "wlc", true);
}

#[test]
fn nat_over_ipv6() {
    check_family(Method::Nat, "rr", true);
}

#[test]
fn mh_decides_new_flows_inside_xdp() {
    check_method(Method::Dr, "mh");
}

/// Without the capabilities, `rvsd --data-plane xdp` names the missing one and
/// exits (it never falls back to another plane silently).
#[test]
fn without_capabilities_rvsd_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("rvsd.sock");
    let rvsd = env!("CARGO_BIN_EXE_rvsd");
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "--no-state",
        "--data-plane",
        "xdp",
        "--xdp-iface",
        "lo",
    ];
    let mut cmd = if is_root() {
        // Drop every capability as an unprivileged user would have none.
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            rvsd,
        ]);
        c
    } else {
        std::process::Command::new(rvsd)
    };
    let out = cmd.args(args).env("RVS_LOG", "error").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rvsd must refuse: {err}");
    assert!(
        err.contains("the XDP packet plane needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF"),
        "{err}"
    );
    assert!(!socket.exists(), "nothing is served");
}

/// A SYN flood (spoofed sources, each a new flow that would go up) while an
/// established flow downloads: the guard drops the excess upcalls, the
/// established download completes intact.
#[test]
fn syn_flood_guard_keeps_established_flows_forwarding() {
    if !is_root() {
        eprintln!("SKIP: syn_flood_guard needs root (network namespaces, XDP)");
        return;
    }
    let t = Topology::build_with(
        Method::Dr,
        "wlc",
        &["--upcall-rate", "200", "--upcall-burst", "50"],
        false,
    );
    const BIG: usize = 8 << 20;
    // The victim connection exists before the flood starts.
    let src = source(1);
    let mut victim = in_netns(t.client.ns(), move || connect(IpAddr::V4(src)).unwrap());
    victim
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let director_mac: Vec<u8> = t
        .director
        .mac()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let client_mac: Vec<u8> = t
        .client
        .mac()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let flood = spawn_in_netns(t.client.ns(), move || {
        let ifindex = rvs_sys::interface("eth0").unwrap().index;
        let sender = rvs_sys::FrameSender::open(ifindex).unwrap();
        let mut sent = 0u64;
        let vip: Ipv4Addr = VIP.parse().unwrap();
        while !stopping.load(Ordering::Relaxed) && sent < 2_000_000 {
            let n = sent as u32;
            let saddr = Ipv4Addr::from(0xc633_0000 | (n & 0xffff)); // 198.51.x.y, spoofed
            let sport = 1024 + (n % 60000) as u16;
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&sport.to_be_bytes());
            tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
            tcp[4..8].copy_from_slice(&n.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            let pseudo = rvs_wire::checksum::ipv4_pseudo_header(saddr, vip, 6, 20);
            let sum = rvs_wire::checksum::internet_checksum(&[&pseudo, &tcp]);
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            let ip = rvs_wire::ipv4::emit_ipv4(saddr, vip, 64, 6, &tcp);
            let mut frame = Vec::with_capacity(14 + ip.len());
            frame.extend_from_slice(&director_mac);
            frame.extend_from_slice(&client_mac);
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&ip);
            if sender.send(&frame).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    writeln!(victim, "GET {BIG}").unwrap();
    let mut all = Vec::new();
    let got = victim.read_to_end(&mut all);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    got.unwrap_or_else(|e| panic!("download during the flood: {e}\n{}", t.lan.logs()));
    let nl = all.iter().position(|&b| b == b'\n').unwrap();
    let body = &all[nl + 1..];
    assert_eq!(body.len(), BIG, "the established download completed");
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "intact"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let view = t.xdp_view();
    let c = |name: &str| view["program"][name].as_u64().unwrap_or(0);
    eprintln!("flood: {sent} SYNs sent; {view}");
    assert!(sent > 1000, "the flood ran: {sent}");
    assert!(c("drop_guard") > 0, "the guard dropped upcalls: {view}");
    assert!(c("upcall") < sent, "not every SYN went up: {view}");
    // DR: only the client's ACKs cross the director.
    assert!(c("fwd_dr") > 50, "{view}");
    // The guard's episode is counted once and shows in the events: engaged
    // during the flood, released within a few seconds after it.
    assert!(
        view["driver"]["guard_activations"].as_u64() >= Some(1),
        "{view}"
    );
    let released = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let events = t.http("GET", "/v1/events", None);
        let kinds: Vec<String> = events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "flood_guard")
            .filter_map(|e| e["message"].as_str().map(String::from))
            .collect();
        kinds.len() >= 2 && kinds[kinds.len() - 1].contains("no longer")
    });
    assert!(
        released,
        "flood guard events: {}",
        t.http("GET", "/v1/events", None)
    );
    assert_eq!(t.xdp_view()["guard_active"], false);
}

/// The classic LVS recipe for http and https sticking to one real server
/// (iptables `MARK --set-mark 6666` on VIP ports 80 and 443, `ipvsadm -A -f 6666
/// -s rr -p`) with rvs's classifier in place of iptables, in DR mode: the rule
/// goes in through `POST /v1/commands`, XDP classifies new flows by it, the core
/// schedules them into the fwmark service and its one template per client
/// covers both ports. There is no address service at all: only the classifier
/// leads XDP to the service (a broken lookup leaves both ports to the
/// director's stack, which has no listener there).
#[test]
fn fwmark_service_keeps_a_clients_http_and_https_on_one_real_server() {
    if !is_root() {
        eprintln!("SKIP: fwmark_service needs root (network namespaces, XDP)");
        return;
    }
    let t = Topology::start(Method::Dr, &[], false);
    let rule = serde_json::json!({"commands": [{"op": "add_mark_rule", "rule":
        {"mark": 6666, "protocol": "tcp", "destination": format!("{VIP}/32"), "ports": "80,443"}}]});
    t.http("POST", "/v1/commands", Some(&rule));
    t.rvsadm(&["-A", "-f", "6666", "-s", "rr", "-p", "300"]);
    for i in 1..=3 {
        t.rvsadm(&["-a", "-f", "6666", "-r", &format!("10.1.0.1{i}"), "-g"]);
    }
    let logs = || t.logs();
    // The classifier map holds the rule's two ports once the plane runs and
    // the table synced (the view refreshes every second).
    let synced = || {
        let (ok, text) = t.request("GET", "/v1/xdp", None);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        ok && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["mark_entries"] == 2)
    };
    assert!(
        wait_until(Duration::from_secs(8), synced),
        "rvs_marks never got the rule\n{}",
        logs()
    );
    std::thread::sleep(Duration::from_millis(300));

    // Persistence: each client's http and https reach the same real server.
    const CLIENTS: u8 = 12;
    let mut reals_seen = std::collections::BTreeSet::new();
    for i in 0..CLIENTS {
        let src = IpAddr::V4(source(i));
        let (http, https) = in_netns(t.client.ns(), move || {
            Ok::<_, std::io::Error>((real_of(src, 80)?, real_of(src, 443)?))
        })
        .unwrap_or_else(|e| panic!("from {src}: {e}\n{}", logs()));
        assert!(http.starts_with("rs"), "{src}: {http}");
        assert_eq!(http, https, "{src}: http and https on one real server");
        // Again, in the other order: the template still holds.
        let again = in_netns(t.client.ns(), move || real_of(src, 443)).unwrap();
        assert_eq!(again, http, "{src}: the template holds");
        reals_seen.insert(http);
    }
    assert_eq!(
        reals_seen.len(),
        3,
        "rr spreads the clients: {reals_seen:?}"
    );

    // -Lnc: one fwmark template per client (protocol IP, the mark as the
    // virtual address 0.0.26.10 and port 0) and the connections on both ports.
    let lnc = t.rvsadm(&["-Lnc"]);
    let templates = lnc
        .lines()
        .filter(|l| l.starts_with("IP") && l.contains("0.0.26.10:0"))
        .count();
    assert_eq!(templates, usize::from(CLIENTS), "fwmark templates:\n{lnc}");
    for port in [80, 443] {
        let conns = lnc
            .lines()
            .filter(|l| l.starts_with("TCP") && l.contains(&format!("{VIP}:{port} ")))
            .count();
        assert!(
            conns >= usize::from(CLIENTS),
            "{port}: {conns} connections\n{lnc}"
        );
    }

    // The VIP is only in a single-host rule of a mark with a service: the
    // program answers its echo requests as it does a VIP's.
    let echoed = in_netns(t.client.ns(), || echo(VIP.parse().unwrap()));
    assert!(echoed, "no echo reply from the VIP\n{}", logs());

    // The path: every new connection went up (a persistent service), none was
    // decided in XDP, and the rest of each connection was forwarded by DR.
    std::thread::sleep(Duration::from_millis(1100));
    let view = t.xdp_view();
    let c = |name: &str| view["program"][name].as_u64().unwrap_or(0);
    assert!(
        c("upcall") >= 3 * u64::from(CLIENTS),
        "new flows go up: {view}"
    );
    assert_eq!(c("xdp_sched"), 0, "{view}");
    assert!(c("fwd_dr") >= 3 * 3 * u64::from(CLIENTS), "{view}");
    assert_eq!(view["driver"]["upcalls_refused"], 0, "{view}");
    assert!(c("icmp_echo") >= 1, "{view}");
    assert_eq!(
        view["mark_rules_not_loaded"],
        serde_json::json!([]),
        "{view}"
    );

    // Without persistence the same client's connections rotate over the reals.
    t.rvsadm(&["-E", "-f", "6666", "-s", "rr"]);
    let src = IpAddr::V4(source(CLIENTS + 1));
    let mut rotation = Vec::new();
    for n in 0..6 {
        let port = TCP_PORTS[n % 2];
        let name = in_netns(t.client.ns(), move || real_of(src, port))
            .unwrap_or_else(|e| panic!("without -p, port {port}: {e}\n{}", logs()));
        rotation.push(name);
    }
    let distinct: std::collections::BTreeSet<&String> = rotation.iter().collect();
    assert_eq!(distinct.len(), 3, "rr without -p rotates: {rotation:?}");
    assert_ne!(rotation[0], rotation[1], "{rotation:?}");
}

/// A new connection the core refuses (the service's only real server is
/// quiesced) is answered with ICMP "port unreachable", as the kernel's
/// `ip_vs_leave` does: the client's connect fails at once with "connection
/// refused" instead of timing out; IPv4 and IPv6.
#[test]
fn refused_new_connections_get_port_unreachable() {
    if !is_root() {
        eprintln!("SKIP: refused_new_connections needs root (network namespaces, XDP)");
        return;
    }
    for v6 in [false, true] {
        let t = Topology::start(Method::Dr, &[], v6);
        let src = source_of(0, v6);
        let vip = SocketAddr::new(vip_for(src), 8443);
        t.rvsadm(&["-A", "-t", &vip.to_string(), "-s", "wlc"]);
        let real = if v6 {
            "[fd01::11]:8443"
        } else {
            "10.1.0.11:8443"
        };
        t.rvsadm(&["-a", "-t", &vip.to_string(), "-r", real, "-g", "-w", "0"]);
        // The plane attaches, then syncs the table every 250 ms.
        t.wait_for_plane();
        let started = std::time::Instant::now();
        let got = in_netns(t.client.ns(), move || connect_to(src, 8443).map(|_| ()));
        let took = started.elapsed();
        let err = got.expect_err("a quiesced service accepted a connection");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "v6={v6}: {err} after {took:?}\n{}",
            t.logs()
        );
        assert!(took < Duration::from_secs(2), "v6={v6}: took {took:?}");
        // The view is refreshed once a second.
        let answered = wait_until(Duration::from_secs(3), || {
            let view = t.xdp_view();
            view["driver"]["unreachable_sent"].as_u64() >= Some(1)
                && view["driver"]["upcalls_refused"].as_u64() >= Some(1)
        });
        assert!(answered, "v6={v6}: {}", t.xdp_view());
    }
}

/// A DR real server replaced by one with the same address and another MAC
/// (a new NIC or VM) is followed without touching the director: the plane
/// re-resolves its next hop (asking the kernel to verify the neighbour entry,
/// which XDP-forwarded traffic never does), rewrites the real's entry, and
/// new connections reach it again. With the old MAC they would time out.
#[test]
fn dr_follows_a_real_servers_new_mac() {
    if !is_root() {
        eprintln!("SKIP: dr_follows_a_real_servers_new_mac needs root (network namespaces, XDP)");
        return;
    }
    let t = Topology::start(Method::Dr, &[], false);
    // The director's neighbour state machine in about a second: REACHABLE for
    // 0.25-0.75 s, DELAY 1 s, three unicast probes 100 ms apart.
    ns_sh(
        &t.director,
        "sysctl -qw net.ipv4.neigh.eth0.base_reachable_time_ms=500 \
         net.ipv4.neigh.eth0.delay_first_probe_time=1 \
         net.ipv4.neigh.eth0.retrans_time_ms=100",
    );
    let vip = format!("{VIP}:80");
    t.rvsadm(&["-A", "-t", &vip, "-s", "rr"]);
    t.rvsadm(&["-a", "-t", &vip, "-r", "10.1.0.11:80", "-g", "-w", "1"]);
    let src = source_of(0, false);
    let reaches_rs1 =
        || in_netns(t.client.ns(), move || real_of(src, 80)).is_ok_and(|n| n == "rs1");
    assert!(
        wait_until(Duration::from_secs(10), reaches_rs1),
        "DR never worked:\n{}",
        t.logs()
    );
    let before = t.xdp_view()["driver"].clone();

    let new_mac = "02:72:76:00:00:f1";
    let rs1 = &t.reals[0];
    ip(&[
        "-n",
        rs1.ns(),
        "link",
        "set",
        "dev",
        "eth0",
        "address",
        new_mac,
    ]);
    let changed = std::time::Instant::now();
    let followed = wait_until(Duration::from_secs(25), reaches_rs1);
    let took = changed.elapsed();
    assert!(
        followed,
        "new connections never reached rs1 after its MAC changed:\n{}",
        t.logs()
    );
    eprintln!("dr_follows_a_real_servers_new_mac: followed the new MAC after {took:?}");
    // The view is refreshed once a second.
    let moved = |name: &str, view: &serde_json::Value| {
        view["driver"][name].as_u64() > before[name].as_u64()
    };
    let counted = wait_until(Duration::from_secs(3), || {
        let view = t.xdp_view();
        [
            "next_hop_refreshes",
            "next_hop_changes",
            "next_hop_reverified",
        ]
        .iter()
        .all(|n| moved(n, &view))
    });
    assert!(counted, "before {before}\nafter {}", t.xdp_view());
    // Every connection since goes to rs1 at its new MAC.
    for _ in 0..5 {
        assert!(reaches_rs1(), "{}", t.logs());
    }
}

/// A raw ICMP (`v6`: ICMPv6) socket, as a `UdpSocket` for its safe
/// `send_to`/`recv_from` (raw IPv4 reads start with the IP header, raw ICMPv6
/// reads with the ICMPv6 header).
fn raw_icmp(v6: bool) -> UdpSocket {
    let (domain, proto) = if v6 {
        (socket2::Domain::IPV6, socket2::Protocol::ICMPV6)
    } else {
        (socket2::Domain::IPV4, socket2::Protocol::ICMPV4)
    };
    let sock = socket2::Socket::new(domain, socket2::Type::RAW, Some(proto)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sock.into()
}

/// Waits (5 s at most) in namespace `ns` for an ICMP message whose type is
/// `kind` and whose quote has destination port `quoted_dport`: the bytes read
/// and the sender. `ready` is signalled once the socket is open.
fn await_icmp(
    ns: &str,
    v6: bool,
    kind: u8,
    quoted_dport: u16,
    ready: std::sync::mpsc::Sender<()>,
) -> JoinHandle<Option<(Vec<u8>, IpAddr)>> {
    spawn_in_netns(ns, move || {
        let sock = raw_icmp(v6);
        ready.send(()).unwrap();
        // The ICMP header's offset, and the quoted ports' offset after it.
        let (icmp, ports) = if v6 { (0, 8 + 40) } else { (20, 8 + 20) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let mut buf = [0u8; 1600];
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let b = &buf[..n];
            let at = icmp + ports + 2;
            if n >= at + 2 && b[icmp] == kind && b[at..at + 2] == quoted_dport.to_be_bytes() {
                return Some((b.to_vec(), from.ip()));
            }
        }
        None
    })
}

fn addr_at(b: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(<[u8; 16]>::try_from(&b[at..at + 16]).unwrap())
    } else {
        IpAddr::from(<[u8; 4]>::try_from(&b[at..at + 4]).unwrap())
    }
}

fn port_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// ICMP errors about NAT flows are rewritten as the kernel's `ip_vs_nat_icmp`
/// does (`ip_vs_out_icmp` / `ip_vs_in_icmp`), IPv4 and IPv6.
///
/// Outbound: a client's connected UDP socket sends to a NAT service whose real
/// server has no listener at its port; the real server's "port unreachable"
/// comes back through the director, which makes it come from the VIP and quote
/// client -> VIP:vport, so the client's next recv fails with "connection
/// refused". (Passed up unchanged, the error would name the real server, which
/// the client's socket ignores: the recv would time out.)
///
/// Inbound: the client side sends the VIP a "fragmentation needed" (IPv6:
/// "packet too big") about a reply VIP:8080 -> client of an established TCP
/// flow; the real server receives it addressed to itself, quoting its own
/// address and port 80, with valid checksums.
#[test]
fn nat_icmp_errors_are_rewritten_both_ways() {
    if !is_root() {
        eprintln!(
            "SKIP: nat_icmp_errors_are_rewritten_both_ways needs root (network namespaces, XDP)"
        );
        return;
    }
    for v6 in [false, true] {
        let t = Topology::start(Method::Nat, &[], v6);
        let (rip, rs) = if v6 {
            ("[fd01::11]", "fd01::11".parse::<IpAddr>().unwrap())
        } else {
            ("10.1.0.11", "10.1.0.11".parse().unwrap())
        };
        let src = source_of(0, v6);
        let vip = vip_for(src);
        let udp_svc = SocketAddr::new(vip, 5354);
        let tcp_svc = SocketAddr::new(vip, 8080);
        t.rvsadm(&["-A", "-u", &udp_svc.to_string(), "-s", "rr"]);
        // Nothing listens at the real server's UDP port 5399.
        t.rvsadm(&[
            "-a",
            "-u",
            &udp_svc.to_string(),
            "-r",
            &format!("{rip}:5399"),
            "-m",
        ]);
        t.rvsadm(&["-A", "-t", &tcp_svc.to_string(), "-s", "rr"]);
        t.rvsadm(&[
            "-a",
            "-t",
            &tcp_svc.to_string(),
            "-r",
            &format!("{rip}:80"),
            "-m",
        ]);
        t.wait_for_plane();

        // Outbound: the real server's port unreachable reaches the socket.
        let started = std::time::Instant::now();
        let got = in_netns(t.client.ns(), move || {
            let s = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
            s.connect(udp_svc).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send(b"anyone there?").unwrap();
            let mut buf = [0u8; 64];
            s.recv(&mut buf).map(|_| ())
        });
        let err = got.expect_err("nothing listens at the real server's port");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "v6={v6}: {err} after {:?}\n{}",
            started.elapsed(),
            t.logs()
        );

        // Inbound: an established flow, and a raw ICMP socket on its real.
        let client = source_of(1, v6);
        let (held, cport) = in_netns(t.client.ns(), move || {
            let mut s = connect_to(client, 8080).unwrap();
            writeln!(s, "HOLD").unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            let port = s.local_addr().unwrap().port();
            (s, port)
        });
        let kind = if v6 { 2 } else { 3 };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let seen = await_icmp(t.reals[0].ns(), v6, kind, cport, ready_tx);
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The quote: the reply's IP header and first 8 TCP bytes.
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&8080u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&cport.to_be_bytes());
        tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        let quote = match (vip, client) {
            (IpAddr::V4(v), IpAddr::V4(c)) => {
                rvs_wire::ipv4::emit_ipv4(v, c, 64, 6, &tcp)[..28].to_vec()
            }
            (IpAddr::V6(v), IpAddr::V6(c)) => {
                let mut h = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
                h.extend_from_slice(&v.octets());
                h.extend_from_slice(&c.octets());
                h.extend_from_slice(&tcp[..8]);
                h
            }
            _ => unreachable!(),
        };
        // Type 3 code 4 / ICMPv6 type 2, MTU 1300 (the kernel fills in
        // ICMPv6's checksum).
        let mut msg = vec![kind, if v6 { 0 } else { 4 }, 0, 0, 0, 0, 0x05, 0x14];
        msg.extend_from_slice(&quote);
        if !v6 {
            let sum = rvs_wire::checksum::internet_checksum(&[&msg]);
            msg[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let sender = source_of(2, v6);
        in_netns(t.client.ns(), move || {
            let s = raw_icmp(v6);
            let s = socket2::Socket::from(s);
            s.bind(&SocketAddr::new(sender, 0).into()).unwrap();
            UdpSocket::from(s)
                .send_to(&msg, SocketAddr::new(vip, 0))
                .unwrap();
        });
        let (got, from) = seen.join().unwrap().unwrap_or_else(|| {
            panic!(
                "v6={v6}: no ICMP error reached the real server\n{}",
                t.logs()
            )
        });
        drop(held);
        assert_eq!(from, sender, "v6={v6}: the outer source is kept");
        let icmp = if v6 { 0 } else { 20 };
        if !v6 {
            assert_eq!(addr_at(&got, 16, false), rs, "outer destination");
            assert_eq!(
                rvs_wire::checksum::internet_checksum(&[&got[..20]]),
                0,
                "outer IPv4 header checksum"
            );
            assert_eq!(
                rvs_wire::checksum::internet_checksum(&[&got[icmp..]]),
                0,
                "ICMP checksum"
            );
            let q = icmp + 8;
            assert_eq!(
                rvs_wire::checksum::internet_checksum(&[&got[q..q + 20]]),
                0,
                "quoted IPv4 header checksum"
            );
        }
        // (The kernel verified ICMPv6's checksum, pseudo header with the
        // rewritten destination included, before the raw socket got it.)
        assert_eq!((got[icmp], got[icmp + 1]), (kind, if v6 { 0 } else { 4 }));
        assert_eq!(port_at(&got, icmp + 6), 1300, "MTU");
        let q = icmp + 8;
        let (qs, qd, qports) = if v6 {
            (q + 8, q + 24, q + 40)
        } else {
            (q + 12, q + 16, q + 20)
        };
        assert_eq!(addr_at(&got, qs, v6), rs, "quoted source: the real server");
        assert_eq!(addr_at(&got, qd, v6), client, "quoted destination");
        assert_eq!(port_at(&got, qports), 80, "quoted source port: the real's");
        assert_eq!(port_at(&got, qports + 2), cport);

        // The program counted both errors.
        std::thread::sleep(Duration::from_millis(1100));
        let view = t.xdp_view();
        assert!(
            view["program"]["icmp_error_fwd"].as_u64() >= Some(2),
            "{view}"
        );
    }
}
