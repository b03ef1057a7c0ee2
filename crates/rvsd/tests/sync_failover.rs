//! Issue 9 acceptance: established connections survive a director failover and the
//! failback, thanks to connection sync (keepalived's `lvs_sync_daemon`, the IPVS sync
//! protocol on 224.0.0.81:8848). Root only (network namespaces, XDP); skips loudly
//! otherwise.
//!
//! Topology, one [`Lan`] (a bridge without multicast snooping) per test:
//!
//! - client 10.0.0.100/24;
//! - directors a (10.0.0.1/24, 10.1.0.2/24) and b (10.0.0.2/24, 10.1.0.3/24), each
//!   running `rvsd -f keepalived.conf --data-plane xdp --xdp-iface eth0` with the same
//!   `vrrp_instance VI_1` (a priority 150, b 100, both `state BACKUP`, advert_int 1)
//!   holding the VIP 10.0.0.10/32 (NAT: also the real servers' gateway 10.1.0.1/24),
//!   the same `virtual_server` (wlc, three real servers, no checker) and
//!   `global_defs { lvs_sync_daemon eth0 VI_1 id 9 }`;
//! - real servers rs1..rs3 (10.1.0.11-13/24) answering every request line with their
//!   name. DR: VIP on lo with arp_ignore/arp_announce (`rvs-realserver dr up`) and an
//!   on-link route to the client; NAT: default route via the gateway VIP.
//!
//! The client holds [`CONNECTIONS`] long-lived TCP connections to VIP:80, each sending a
//! request every [`REQUEST_EVERY`] (spread over the interval) and recording which real
//! server answered. "Killing" a director is powering it off: its eth0 goes down (nothing
//! more leaves or reaches it; the VIP it still has configured answers no one) and its
//! rvsd gets SIGKILL. "Restoring" it is the reboot: the leftover VIPs are removed, the
//! link goes up and rvsd starts again; it comes up BACKUP, asks the master for the whole
//! connection table, and preempts after its master down interval. For each phase
//! (failover to b, failback to a) at least 99.9% of the connections established before
//! it must keep answering, without error, from the same real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::{
    assert_keepalived_accepts, ip, is_root, realserver_bin, run_checked, spawn_in_netns,
    tx_checksum_offload_off, wait_until, Lan, Node, Proc,
};
use nix::poll::{poll, PollFd, PollFlags};

const VIP: &str = "10.0.0.10";
/// The real servers' gateway in NAT mode: a second VIP of the same instance.
const GATEWAY_VIP: &str = "10.1.0.1";
const PORT: u16 = 80;
const REAL_NAMES: [&str; 3] = ["rs1", "rs2", "rs3"];
/// 1000 connections: 99.9% of them tolerates exactly one failure.
const CONNECTIONS: usize = 1000;
/// Survivors needed out of `n` established connections: ceil(0.999 * n).
fn required(n: usize) -> usize {
    (n * 999).div_ceil(1000)
}
const REQUEST_EVERY: Duration = Duration::from_millis(200);
/// A reply later than this counts as an error (rides out a takeover and TCP's
/// retransmission backoff).
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Generous bound for a VRRP election or takeover (master down interval 3.4-3.6 s).
const ELECTION: Duration = Duration::from_secs(12);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Dr,
    Nat,
}

// ---------------------------------------------------------------- real servers

/// One real server: a thread in its namespace polling the listener and every
/// connection; each complete request line is answered with `NAME\n`. Stops on drop.
struct RealServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RealServer {
    fn start(node: &Node, name: &str) -> RealServer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let reply = format!("{name}\n").into_bytes();
        let (tx, rx) = mpsc::channel();
        let thread = spawn_in_netns(node.ns(), move || {
            let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind real server");
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let ready: Vec<bool> = {
                    let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                    fds.extend(
                        conns
                            .iter()
                            .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
                    );
                    if poll(&mut fds, 50u16).is_err() {
                        continue;
                    }
                    fds.iter()
                        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                        .collect()
                };
                let mut closed = Vec::new();
                for (i, conn) in conns.iter_mut().enumerate() {
                    if !ready[i + 1] {
                        continue;
                    }
                    match conn.read(&mut buf) {
                        Ok(0) => closed.push(i),
                        Ok(n) => {
                            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                            for _ in 0..lines {
                                if conn.write_all(&reply).is_err() {
                                    closed.push(i);
                                    break;
                                }
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => closed.push(i),
                    }
                }
                closed.dedup();
                for i in closed.into_iter().rev() {
                    conns.swap_remove(i);
                }
                if ready[0] {
                    while let Ok((conn, _)) = listener.accept() {
                        conn.set_nonblocking(true).unwrap();
                        conns.push(conn);
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("real server ready");
        RealServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- the client

/// What the client knows of one connection.
#[derive(Clone, Debug, Default)]
struct ConnStatus {
    /// The real server of the first reply.
    real: Option<String>,
    /// Replies from another real server than the first.
    moved: u32,
    /// Reset, EOF or reply timeout; the connection is not used after it.
    error: Option<String>,
    replies: u64,
    /// When the last reply came.
    last_reply: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    conns: Vec<ConnStatus>,
    /// Longest time any one connection waited between two successful replies, or
    /// has been waiting (since the last reset of the gap records).
    worst_conn_gap: Duration,
    /// Longest time no connection at all got a reply: the VIP was unreachable.
    no_reply_gap: Duration,
}

enum Command {
    Snapshot(mpsc::Sender<Snapshot>),
    ResetGaps,
}

struct Conn {
    stream: TcpStream,
    status: ConnStatus,
    next_send: Instant,
    sent_at: Option<Instant>,
    last_ok: Option<Instant>,
    pending: Vec<u8>,
}

/// The client's connections, driven by one thread in the client's namespace.
struct Client {
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Opens `n` connections to VIP:80 (sequentially, so that wlc sees each one's
    /// predecessors) and starts the request loop. Panics if a connection fails.
    fn start(client: &Node, n: usize) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let (commands, command_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = spawn_in_netns(client.ns(), move || {
            let vip: SocketAddr = SocketAddr::new(VIP.parse().unwrap(), PORT);
            let mut conns = Vec::with_capacity(n);
            let start = Instant::now();
            for i in 0..n {
                let stream = match TcpStream::connect_timeout(&vip, Duration::from_secs(3)) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("connection {i}: {e}")));
                        return;
                    }
                };
                stream.set_nonblocking(true).unwrap();
                let _ = stream.set_nodelay(true);
                let offset = REQUEST_EVERY * u32::try_from(i).unwrap() / u32::try_from(n).unwrap();
                conns.push(Conn {
                    stream,
                    status: ConnStatus::default(),
                    next_send: start + offset,
                    sent_at: None,
                    last_ok: None,
                    pending: Vec::new(),
                });
            }
            let _ = ready_tx.send(Ok(start.elapsed()));
            drive(&mut conns, &command_rx, &stopping);
        });
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(took)) => eprintln!("client: {n} connections opened in {took:?}"),
            Ok(Err(e)) => panic!("client could not connect: {e}"),
            Err(e) => panic!("client: no word from the connecting thread: {e}"),
        }
        Client {
            commands,
            stop,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let (tx, rx) = mpsc::channel();
        self.commands.send(Command::Snapshot(tx)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("snapshot")
    }

    fn reset_gaps(&self) {
        self.commands.send(Command::ResetGaps).unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request loop: send a line when a connection's turn comes, read the replies,
/// keep the statistics, answer commands; until `stop`.
fn drive(conns: &mut [Conn], commands: &mpsc::Receiver<Command>, stop: &AtomicBool) {
    let mut worst_conn_gap = Duration::ZERO;
    let mut last_any_reply: Option<Instant> = None;
    let mut no_reply_gap = Duration::ZERO;
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Snapshot(reply) => {
                    let now = Instant::now();
                    let current = last_any_reply.map_or(Duration::ZERO, |t| now - t);
                    // A connection still waiting counts with its wait so far.
                    let waiting = conns
                        .iter()
                        .filter(|c| c.status.error.is_none())
                        .filter_map(|c| c.last_ok.map(|t| now - t))
                        .max()
                        .unwrap_or_default();
                    let _ = reply.send(Snapshot {
                        at: now,
                        conns: conns.iter().map(|c| c.status.clone()).collect(),
                        worst_conn_gap: worst_conn_gap.max(waiting),
                        no_reply_gap: no_reply_gap.max(current),
                    });
                }
                // The last replies stay: a gap that straddles the reset counts whole.
                Command::ResetGaps => {
                    worst_conn_gap = Duration::ZERO;
                    no_reply_gap = Duration::ZERO;
                }
            }
        }
        let now = Instant::now();
        for c in conns.iter_mut().filter(|c| c.status.error.is_none()) {
            if let Some(sent) = c.sent_at {
                if now - sent > REPLY_TIMEOUT {
                    c.status.error = Some(format!("no reply within {REPLY_TIMEOUT:?}"));
                }
            } else if now >= c.next_send {
                match c.stream.write(b"PING\n") {
                    Ok(5) => c.sent_at = Some(now),
                    Ok(_) => c.status.error = Some("short write".into()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => c.status.error = Some(format!("write: {e}")),
                }
            }
        }
        let readable: Vec<bool> = {
            let mut fds: Vec<PollFd> = conns
                .iter()
                .map(|c| {
                    let flags = if c.status.error.is_none() {
                        PollFlags::POLLIN
                    } else {
                        PollFlags::empty()
                    };
                    PollFd::new(c.stream.as_fd(), flags)
                })
                .collect();
            if poll(&mut fds, 10u16).is_err() {
                continue;
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let now = Instant::now();
        for (c, _) in conns
            .iter_mut()
            .zip(readable)
            .filter(|(c, r)| *r && c.status.error.is_none())
        {
            match c.stream.read(&mut buf) {
                Ok(0) => c.status.error = Some("EOF".into()),
                Ok(n) => c.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => c.status.error = Some(format!("read: {e}")),
            }
            while let Some(nl) = c.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = c.pending.drain(..=nl).collect();
                let name = String::from_utf8_lossy(&line[..nl]).into_owned();
                match &c.status.real {
                    None => c.status.real = Some(name),
                    Some(first) if *first != name => c.status.moved += 1,
                    Some(_) => {}
                }
                c.status.replies += 1;
                c.status.last_reply = Some(now);
                if let Some(prev) = c.last_ok {
                    worst_conn_gap = worst_conn_gap.max(now - prev);
                }
                c.last_ok = Some(now);
                if let Some(prev) = last_any_reply {
                    no_reply_gap = no_reply_gap.max(now - prev);
                }
                last_any_reply = Some(now);
                c.sent_at = None;
                c.next_send = now + REQUEST_EVERY;
            }
        }
    }
}

/// One phase's outcome over the connections flowing (no error, a recent reply) at its
/// start.
#[derive(Debug)]
struct PhaseReport {
    connections: usize,
    survived: usize,
    moved: usize,
    errors: usize,
    /// Neither error nor move, but no recent reply either.
    stalled: usize,
    unreachable: Duration,
    worst_conn_gap: Duration,
    first_errors: Vec<String>,
}

/// A connection that answered within this before a phase's end is flowing (it asks
/// every [`REQUEST_EVERY`]).
const RECENT: Duration = Duration::from_millis(1500);

/// Sorts the connections alive at `before` by what `after` says of them: survived
/// (answering recently, from the same real server), moved, errors, stalled.
fn phase_report(before: &Snapshot, after: &Snapshot) -> PhaseReport {
    let mut r = PhaseReport {
        connections: 0,
        survived: 0,
        moved: 0,
        errors: 0,
        stalled: 0,
        unreachable: after.no_reply_gap,
        worst_conn_gap: after.worst_conn_gap,
        first_errors: Vec::new(),
    };
    for (i, (b, a)) in before.conns.iter().zip(&after.conns).enumerate() {
        let flowing = b
            .last_reply
            .is_some_and(|t| before.at.saturating_duration_since(t) < RECENT);
        if b.error.is_some() || !flowing {
            continue;
        }
        r.connections += 1;
        if let Some(e) = &a.error {
            r.errors += 1;
            if r.first_errors.len() < 5 {
                r.first_errors.push(format!("#{i}: {e}"));
            }
        } else if a.moved > b.moved {
            r.moved += 1;
        } else if a
            .last_reply
            .is_some_and(|t| after.at.saturating_duration_since(t) < RECENT)
        {
            r.survived += 1;
        } else {
            r.stalled += 1;
        }
    }
    r
}

// ---------------------------------------------------------------- directors

/// A director: its node, its keepalived.conf and the rvsd running it (None while the
/// box is off).
struct Director {
    name: &'static str,
    node: Node,
    /// Its own address on the real servers' subnet (CIDR).
    inner_cidr: String,
    conf: PathBuf,
    socket: PathBuf,
    rvsd: Option<Proc>,
}

impl Director {
    fn start(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let args = [
            "-f",
            self.conf.to_str().unwrap(),
            "--socket",
            self.socket.to_str().unwrap(),
            "--data-plane",
            "xdp",
            "--xdp-iface",
            "eth0",
            "--log",
            "info",
        ];
        let mut proc = self.node.spawn(env!("CARGO_BIN_EXE_rvsd"), &args);
        let up = wait_until(Duration::from_secs(10), || {
            self.socket.exists() || !proc.is_running()
        });
        assert!(
            up && proc.is_running(),
            "rvsd on {} did not come up: {}",
            self.name,
            proc.output()
        );
        self.rvsd = Some(proc);
    }

    /// Power off: every frame in or out of eth0 is dropped first (nothing leaves
    /// the box any more), then rvsd dies without a word (SIGKILL: no priority 0
    /// advert, no cleanup). The link stays up, so the bridge keeps sending the
    /// dead box's MAC to its port, as a switch does until the new master's
    /// gratuitous ARP: taking the link down instead would make the bridge flood
    /// those frames to every port, and the backup's XDP plane would forward
    /// them before it even became master, hiding the takeover time.
    fn kill(&mut self) {
        nft_in(
            self.node.ns(),
            "table netdev powered_off {\n\
             chain in { type filter hook ingress device \"eth0\" priority -500; policy drop; }\n\
             chain out { type filter hook egress device \"eth0\" priority -500; policy drop; }\n\
             }\n",
        );
        if let Some(mut proc) = self.rvsd.take() {
            proc.signal(common::netns::Signal::SIGKILL);
            assert!(
                proc.wait_timeout(Duration::from_secs(5)).is_some(),
                "rvsd on {} survived SIGKILL",
                self.name
            );
        }
    }

    /// Power on: the box has only its own addresses again (the VIPs the dead rvsd
    /// left on eth0 are gone), the link comes up and rvsd starts.
    fn restore(&mut self) {
        // Flush all and add its own back: deleting a primary address takes the
        // secondaries of its subnet with it (the gateway VIP under 10.1.0.x/24).
        let ns = self.node.ns();
        nft_in(ns, "delete table netdev powered_off\n");
        ip(&["-n", ns, "-4", "addr", "flush", "dev", "eth0"]);
        for own in [self.node.cidr(), self.inner_cidr.clone()] {
            ip(&["-n", ns, "addr", "add", &own, "dev", "eth0"]);
        }
        self.node.link_up();
        self.start();
    }

    /// VI_1's state from `GET /v1/vrrp` ("MASTER", "BACKUP"...), None if rvsd does
    /// not answer.
    fn vrrp_state(&self) -> Option<String> {
        let view = self.get("/v1/vrrp")?;
        view["instances"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == "VI_1")?["state"]
            .as_str()
            .map(str::to_string)
    }

    /// One GET over the admin socket; the JSON body of a 200 answer.
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        self.rvsd.as_ref()?;
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        if !text.starts_with("HTTP/1.1 200") {
            return None;
        }
        serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
    }

    fn wait_state(&self, want: &str, timeout: Duration, lan: &Lan) {
        let mut last = None;
        let reached = wait_until(timeout, || {
            last = self.vrrp_state();
            last.as_deref() == Some(want)
        });
        assert!(
            reached,
            "director {} did not become {want} within {timeout:?} (last state {last:?})\n{}",
            self.name,
            lan.logs()
        );
    }

    /// `rvsadm -Lnc` of this director (empty if it is off).
    fn connections(&self) -> String {
        if self.rvsd.is_none() {
            return String::new();
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
            .arg("-Lnc")
            .env("RVS_SOCKET", &self.socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn established(&self) -> usize {
        self.connections()
            .lines()
            .filter(|l| l.starts_with("TCP") && l.contains("ESTABLISHED"))
            .count()
    }
}

/// What a run exercises: the forwarding method, and whether the directors share
/// a syncid (sync on) or not (every message refused: only hash pickup can keep
/// the flows, so the scheduler is mh with mh-port instead of wlc).
#[derive(Clone, Copy, Debug)]
struct Scenario {
    method: Method,
    lost_sync: bool,
}

impl Scenario {
    fn sched(&self) -> &'static str {
        if self.lost_sync {
            "mh\n    mh-port"
        } else {
            "wlc"
        }
    }

    /// Director a's syncid and b's.
    fn syncid(&self, router_id: &str) -> u8 {
        if self.lost_sync && router_id == "b" {
            10
        } else {
            9
        }
    }
}

/// The keepalived.conf both directors run (router_id and priority differ, and
/// the syncid when sync is meant to be lost).
fn render_conf(router_id: &str, priority: u8, scenario: Scenario) -> String {
    let method = scenario.method;
    let syncid = scenario.syncid(router_id);
    let sched = scenario.sched();
    let (lb_kind, gateway) = match method {
        Method::Dr => ("DR", String::new()),
        Method::Nat => ("NAT", format!("        {GATEWAY_VIP}/24 dev eth0\n")),
    };
    let mut reals = String::new();
    for i in 1..=REAL_NAMES.len() {
        reals.push_str(&format!(
            "    real_server 10.1.0.1{i} {PORT} {{\n        weight 1\n    }}\n"
        ));
    }
    format!(
        "global_defs {{\n    router_id {router_id}\n    lvs_sync_daemon eth0 VI_1 id {syncid}\n}}\n\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 59\n    \
         priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}/32 dev eth0\n{gateway}    }}\n}}\n\n\
         virtual_server {VIP} {PORT} {{\n    delay_loop 3\n    lb_algo {sched}\n    lb_kind {lb_kind}\n    \
         protocol TCP\n{reals}}}\n"
    )
}

struct Topology {
    // Field order is drop order: client connections, then rvsd, then the servers,
    // then the namespaces.
    client_node: Node,
    a: Director,
    b: Director,
    _servers: Vec<RealServer>,
    _dir: tempfile::TempDir,
    lan: Lan,
}

impl Topology {
    fn build(scenario: Scenario) -> Topology {
        let method = scenario.method;
        let lan = Lan::new();
        let client = lan.add_node("client", "10.0.0.100/24");
        let a_node = lan.add_node("a", "10.0.0.1/24");
        let b_node = lan.add_node("b", "10.0.0.2/24");
        let reals: Vec<Node> = REAL_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| lan.add_node(name, &format!("10.1.0.1{}/24", i + 1)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut directors = Vec::new();
        for (name, node, inner, priority) in [
            ("a", a_node, "10.1.0.2/24", 150u8),
            ("b", b_node, "10.1.0.3/24", 100u8),
        ] {
            ip(&["-n", node.ns(), "addr", "add", inner, "dev", "eth0"]);
            lan.attach_xdp_pass(&node);
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(&conf, render_conf(name, priority, scenario)).unwrap();
            directors.push(Director {
                name,
                node,
                inner_cidr: inner.to_string(),
                conf,
                socket: dir.path().join(format!("{name}.sock")),
                rvsd: None,
            });
        }
        tx_checksum_offload_off(
            [&client, &directors[0].node, &directors[1].node]
                .into_iter()
                .chain(reals.iter()),
        );
        let realserver = realserver_bin();
        let mut servers = Vec::new();
        for (i, rs) in reals.iter().enumerate() {
            match method {
                Method::Dr => {
                    let state = dir.path().join(format!("rs{i}.json"));
                    run_checked(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            rs.ns(),
                            realserver.to_str().unwrap(),
                            "--state",
                            state.to_str().unwrap(),
                            "dr",
                            "up",
                            "--vip",
                            VIP,
                        ],
                    );
                    ip(&["-n", rs.ns(), "route", "add", "10.0.0.0/24", "dev", "eth0"]);
                }
                Method::Nat => {
                    ip(&["-n", rs.ns(), "route", "add", "default", "via", GATEWAY_VIP]);
                }
            }
            servers.push(RealServer::start(rs, REAL_NAMES[i]));
        }
        let b = directors.pop().unwrap();
        let a = directors.pop().unwrap();
        Topology {
            client_node: client,
            a,
            b,
            _servers: servers,
            _dir: dir,
            lan,
        }
    }

    fn logs(&self) -> String {
        format!(
            "---- a -Lnc ----\n{}\n---- b -Lnc ----\n{}\n{}",
            self.a.connections(),
            self.b.connections(),
            self.lan.logs()
        )
    }
}

/// From `since`, a fresh connection to VIP:80 every 50 ms (each with 200 ms to connect
/// and answer) until one is answered by a real server: how long new clients could not
/// reach the VIP. None after `timeout`.
fn new_connection_takeover(client: &Node, since: Instant, timeout: Duration) -> Option<Duration> {
    common::netns::in_netns(client.ns(), move || {
        let vip = SocketAddr::new(VIP.parse().unwrap(), PORT);
        let (tx, rx) = mpsc::channel::<Instant>();
        while since.elapsed() < timeout {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let answered = (|| {
                    let mut s =
                        TcpStream::connect_timeout(&vip, Duration::from_millis(200)).ok()?;
                    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
                    s.write_all(b"PING\n").ok()?;
                    let mut buf = [0u8; 16];
                    let n = s.read(&mut buf).ok()?;
                    buf[..n].starts_with(b"rs").then_some(())
                })();
                if answered.is_some() {
                    let _ = tx.send(Instant::now());
                }
            });
            if let Ok(at) = rx.recv_timeout(Duration::from_millis(50)) {
                return Some(at - since);
            }
        }
        None
    })
}

/// Once the new master answers new connections: waits until every connection flowing
/// at `before` has settled (answering again, moved or failed; TCP's retransmission
/// backoff can hold a connection a few seconds past the takeover) or `MAX_SETTLE`
/// passed, then compares with `before` and prints the phase's line.
fn run_phase(
    label: &str,
    method: Method,
    client: &Client,
    before: &Snapshot,
    master: &Director,
) -> PhaseReport {
    const MAX_SETTLE: Duration = Duration::from_secs(12);
    let started = Instant::now();
    let r = loop {
        std::thread::sleep(Duration::from_millis(500));
        let r = phase_report(before, &client.snapshot());
        if r.stalled == 0 || started.elapsed() >= MAX_SETTLE {
            break r;
        }
    };
    println!(
        "SYNC_FAILOVER method={method:?} phase={label} connections={} survived={} moved={} errors={} stalled={} \
         vip_unreachable_ms={} worst_connection_gap_ms={} required={} settled_after_ms={} new_master={} \
         new_master_established={}",
        r.connections,
        r.survived,
        r.moved,
        r.errors,
        r.stalled,
        r.unreachable.as_millis(),
        r.worst_conn_gap.as_millis(),
        required(r.connections),
        started.elapsed().as_millis(),
        master.name,
        master.established()
    );
    if !r.first_errors.is_empty() {
        println!("  first errors: {:?}", r.first_errors);
    }
    r
}

fn failover_and_failback(scenario: Scenario) {
    let method = scenario.method;
    let mut t = Topology::build(scenario);
    println!("SYNC_FAILOVER scenario={scenario:?} (the lines below are this scenario's)");

    // a alone first (it wins the first election), then b, which hears a and stays
    // backup.
    t.a.start();
    t.a.wait_state("MASTER", ELECTION, &t.lan);
    t.b.start();
    t.b.wait_state("BACKUP", Duration::from_secs(5), &t.lan);
    // The plane syncs the table every 250 ms and resolves the real servers' MACs.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(t.a.vrrp_state().as_deref(), Some("MASTER"));

    let client = Client::start(&t.client_node, CONNECTIONS);
    // Steady traffic: every connection answers, wlc spread them over the three reals,
    // the master holds them and has had time to announce them.
    std::thread::sleep(Duration::from_secs(5));
    let steady = client.snapshot();
    let answering = steady
        .conns
        .iter()
        .filter(|c| c.error.is_none() && c.replies >= 3)
        .count();
    let mut per_real: BTreeMap<String, usize> = BTreeMap::new();
    for c in &steady.conns {
        if let Some(r) = &c.real {
            *per_real.entry(r.clone()).or_default() += 1;
        }
    }
    let moved_steady = steady.conns.iter().filter(|c| c.moved > 0).count();
    let a_established = t.a.established();
    println!(
        "SYNC_FAILOVER method={method:?} phase=steady connections={CONNECTIONS} answering={answering} \
         per_real={per_real:?} moved={moved_steady} a_established={a_established} b_established={}",
        t.b.established()
    );
    assert_eq!(
        answering,
        CONNECTIONS,
        "not every connection answers in steady state\n{}",
        t.logs()
    );
    assert_eq!(moved_steady, 0, "connections moved without a failover");
    assert_eq!(per_real.len(), 3, "the scheduler spreads: {per_real:?}");
    assert!(
        per_real.values().all(|&n| n >= CONNECTIONS / 4),
        "the scheduler balances the connections: {per_real:?}"
    );
    if scenario.lost_sync {
        // Another syncid: b refused every announcement, so only hash pickup
        // can keep the flows.
        assert_eq!(t.b.established(), 0, "b imported nothing\n{}", t.logs());
    }
    assert!(
        a_established >= CONNECTIONS,
        "the master's table holds the connections ({a_established})\n{}",
        t.logs()
    );

    // Failover: a's box dies.
    client.reset_gaps();
    let before = client.snapshot();
    let died = Instant::now();
    t.a.kill();
    t.b.wait_state("MASTER", ELECTION, &t.lan);
    let took = new_connection_takeover(&t.client_node, died, ELECTION);
    println!(
        "SYNC_FAILOVER method={method:?} phase=failover new_connections_answered_after_ms={:?}",
        took.map(|d| d.as_millis())
    );
    assert!(
        took.is_some(),
        "b never answered new connections on the VIP\n{}",
        t.logs()
    );
    let failover = run_phase("failover", method, &client, &before, &t.b);

    // Failback: a comes back, learns the table as backup, preempts.
    client.reset_gaps();
    let before = client.snapshot();
    t.a.restore();
    t.a.wait_state("MASTER", ELECTION, &t.lan);
    t.b.wait_state("BACKUP", Duration::from_secs(5), &t.lan);
    let took = new_connection_takeover(&t.client_node, Instant::now(), ELECTION);
    assert!(
        took.is_some(),
        "a never answered new connections on the VIP after preempting\n{}",
        t.logs()
    );
    let failback = run_phase("failback", method, &client, &before, &t.a);

    let logs = t.logs();
    for (label, r) in [("failover", &failover), ("failback", &failback)] {
        assert!(
            r.connections > 0 && r.survived >= required(r.connections),
            "{method:?} {label}: {} of {} connections survived on their real server \
             ({} moved, {} errors, {} stalled; {:?}); 99.9% needs {}\n{logs}",
            r.survived,
            r.connections,
            r.moved,
            r.errors,
            r.stalled,
            r.first_errors,
            required(r.connections)
        );
    }
    drop(client);
}

#[test]
fn threshold_arithmetic() {
    assert_eq!(required(1000), 999);
    assert_eq!(required(999), 999);
    assert_eq!(required(500), 500);
    assert_eq!(required(2000), 1998);
}

#[test]
fn rendered_confs_pass_keepalived_config_test() {
    if !common::netns::have_program("keepalived") {
        eprintln!("SKIP: rendered_confs_pass_keepalived_config_test needs keepalived installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for method in [Method::Dr, Method::Nat] {
        let text = render_conf(
            "a",
            150,
            Scenario {
                method,
                lost_sync: true,
            },
        );
        assert_keepalived_accepts(&dir.path().join("k.conf"), &text);
    }
}

#[test]
fn dr_failover_and_failback_keep_established_connections() {
    if !is_root() {
        eprintln!("SKIP: dr_failover_and_failback_keep_established_connections needs root");
        return;
    }
    failover_and_failback(Scenario {
        method: Method::Dr,
        lost_sync: false,
    });
}

#[test]
fn nat_failover_and_failback_keep_established_connections() {
    if !is_root() {
        eprintln!("SKIP: nat_failover_and_failback_keep_established_connections needs root");
        return;
    }
    failover_and_failback(Scenario {
        method: Method::Nat,
        lost_sync: false,
    });
}

/// rvs extension: with every sync message lost (the directors' syncids
/// differ), flows of an mh service still keep their real server across
/// failover and failback, because the new master picks them up mid-flow and
/// both directors compute the same table.
#[test]
fn mh_flows_keep_their_real_server_when_every_sync_message_is_lost() {
    if !is_root() {
        eprintln!(
            "SKIP: mh_flows_keep_their_real_server_when_every_sync_message_is_lost needs root"
        );
        return;
    }
    failover_and_failback(Scenario {
        method: Method::Dr,
        lost_sync: true,
    });
}

/// Runs an nft script in namespace `ns`; panics with nft's error if it fails.
fn nft_in(ns: &str, script: &str) {
    use std::process::{Command as Process, Stdio};
    let mut child = Process::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).expect("nft script");
    }
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
