//! Network-namespace harness for the VRRP tests (root only; callers check [`is_root`]).
//!
//! A [`Lan`] is a switch namespace holding a bridge; each [`Node`] is a namespace whose
//! `eth0` is a veth plugged into that bridge, with a MAC fixed by the node's index so a
//! test can tell nodes apart in a neighbour table. Test code runs inside a node's
//! namespace on a thread that called setns(2) (it affects that thread and the threads it
//! spawns only): banner servers, clients, takeover timing. A [`Director`] runs keepalived
//! or rvsd on a node from a [`VrrpConf`].
//!
//! Invariants: namespace names are unique (`rvst` + pid + a kind letter + a counter,
//! at most 15 characters) and `Lan`'s Drop kills every process left in them before
//! deleting them; every `ip` command that fails panics with its stderr; every wait has a
//! timeout; the logs of the processes started are printed when a test panics.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

/// True when the tests may create namespaces.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when `program` runs (`program --version`).
pub fn have_program(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs `program args`; panics with its stderr unless it exits 0. Returns stdout.
pub fn run_checked<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", shown.join(" ")));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        shown.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip args` (iproute2), checked.
pub fn ip(args: &[&str]) -> String {
    run_checked("ip", args)
}

/// `rvs-realserver`, built beside the test binaries by `cargo test --workspace`
/// (it belongs to another package, so Cargo gives no CARGO_BIN_EXE_ for it).
pub fn realserver_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("rvs-realserver");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rvs-realserver` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Turns off TX checksum offload on each node's eth0: traffic XDP rewrites must
/// carry real checksums (veth leaves them partial).
pub fn tx_checksum_offload_off<'a>(nodes: impl IntoIterator<Item = &'a Node>) {
    for n in nodes {
        run_checked(
            "ip",
            &[
                "netns",
                "exec",
                n.ns(),
                "ethtool",
                "-K",
                "eth0",
                "tx",
                "off",
            ],
        );
    }
}

/// Writes `text` to `path` and panics unless `keepalived -t -f path` accepts it
/// (exit 0), showing the text and keepalived's complaints.
pub fn assert_keepalived_accepts(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let out = Command::new("keepalived")
        .arg("-t")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keepalived -t refused:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unique_ns_name(kind: char) -> String {
    let n = NEXT_NS.fetch_add(1, Ordering::Relaxed);
    let name = format!("rvst{}{kind}{n}", std::process::id());
    assert!(name.len() <= 15, "namespace name {name} is too long");
    name
}

/// Polls `cond` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawns a thread that enters namespace `ns` (/run/netns/NS) and runs `f` there.
/// Threads `f` spawns are in `ns` too.
pub fn spawn_in_netns<T, F>(ns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || {
        rvs_sys::netns::enter(&ns).unwrap_or_else(|e| panic!("enter netns {ns}: {e}"));
        f()
    })
}

/// Runs `f` inside namespace `ns` and returns its result (a panic in `f` goes on here).
pub fn in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_in_netns(ns, f)
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A switch namespace with bridge `br0`, and the nodes plugged into it.
pub struct Lan {
    switch: String,
    node_namespaces: Mutex<Vec<String>>,
    logs: Arc<tempfile::TempDir>,
}

impl Lan {
    pub fn new() -> Lan {
        let logs = Arc::new(tempfile::tempdir().expect("temp dir for logs"));
        let switch = unique_ns_name('s');
        ip(&["netns", "add", &switch]);
        // From here on Drop removes the namespace even if a command below fails.
        let lan = Lan {
            switch,
            node_namespaces: Mutex::new(Vec::new()),
            logs,
        };
        let sw = lan.switch.as_str();
        ip(&["-n", sw, "link", "set", "lo", "up"]);
        // No STP (ports forward at once) and no multicast snooping (VRRP adverts and
        // IGMP-less receivers must see every group frame).
        ip(&[
            "-n",
            sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", sw, "link", "set", "br0", "up"]);
        lan
    }

    /// Adds a node: namespace, `lo` up, `eth0` on the bridge with `ipv4_cidr`
    /// (e.g. "10.1.0.1/24") and MAC 02:72:76:00:00:INDEX (index from 1 in the order
    /// nodes are added), IPv6 duplicate address detection off so link-local works at once.
    pub fn add_node(&self, name: &str, ipv4_cidr: &str) -> Node {
        let (addr, prefix) = ipv4_cidr
            .split_once('/')
            .and_then(|(a, p)| Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
            .unwrap_or_else(|| panic!("{ipv4_cidr} is not an IPv4 CIDR"));
        let ns = unique_ns_name('n');
        ip(&["netns", "add", &ns]);
        let index = {
            let mut namespaces = self.node_namespaces.lock().expect("lan lock");
            namespaces.push(ns.clone());
            namespaces.len()
        };
        let index = u8::try_from(index).expect("at most 255 nodes on a lan");
        let mac = format!("02:72:76:00:00:{index:02x}");
        let port = format!("p{index}");
        // Interfaces created from now on in this namespace inherit `default`.
        for key in ["default", "all"] {
            run_checked(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv6.conf.{key}.accept_dad=0"),
                ],
            );
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "address",
            &mac,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ]);
        run_checked(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.eth0.accept_dad=0",
            ],
        );
        ip(&["-n", &ns, "addr", "add", ipv4_cidr, "dev", "eth0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        Node {
            name: name.to_string(),
            ns,
            mac,
            addr,
            prefix,
            logs: Arc::clone(&self.logs),
            spawned: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Attaches the XDP_PASS program to `node`'s port on the bridge: XDP_TX out of a
    /// veth is flushed to its peer only when the peer runs an XDP program
    /// (veth_xdp_flush), so a director running XDP needs this on its bridge port.
    pub fn attach_xdp_pass(&self, node: &Node) {
        let pass = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xdp_pass.o");
        ip(&[
            "-n",
            self.switch_ns(),
            "link",
            "set",
            "dev",
            &node.bridge_port(),
            "xdpdrv",
            "obj",
            pass,
            "sec",
            "xdp",
        ]);
    }

    /// The switch namespace (holding `br0` and the nodes' bridge ports).
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }

    /// Every log file of the processes started on this lan, each under a header.
    pub fn logs(&self) -> String {
        logs_in(self.logs.path())
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

fn logs_in(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut text = String::new();
    for file in files {
        let body = std::fs::read_to_string(&file).unwrap_or_default();
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        text.push_str(&format!("===== {name} =====\n{body}\n"));
    }
    text
}

/// Kills every process whose network namespace is `ns` (`ip netns pids`), then
/// deletes the namespace. Never panics (it runs in Drop).
fn remove_namespace(ns: &str) {
    let me = std::process::id();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|&p| u32::try_from(p).ok() != Some(me))
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    match Command::new("ip").args(["netns", "del", ns]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "ip netns del {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("ip netns del {ns}: {e}"),
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- logs of the processes on lan {} ----", self.switch);
            eprintln!("{}", self.logs());
        }
        let namespaces = match self.node_namespaces.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for ns in namespaces.iter().rev() {
            remove_namespace(ns);
        }
        remove_namespace(&self.switch);
    }
}

/// One host on a [`Lan`]: its own namespace with `lo` and `eth0`. Cheap to clone (a
/// handle; the namespace belongs to the `Lan`).
#[derive(Clone, Debug)]
pub struct Node {
    name: String,
    ns: String,
    mac: String,
    addr: Ipv4Addr,
    prefix: u8,
    logs: Arc<tempfile::TempDir>,
    spawned: Arc<AtomicU32>,
}

impl Node {
    /// The name the test gave it ("a", "b", "c").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name (for `ip -n`, `ip netns exec`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// eth0's MAC, lower-case with colons as `ip` prints it.
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// The node's own IPv4 address on eth0.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Runs `program args` in this namespace (`ip netns exec NS program args`), stdout and
    /// stderr to log files that [`Lan::logs`] prints.
    pub fn spawn<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Proc {
        let program = program.as_ref();
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let base = Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned();
        let label = format!("{}-{base}-{n}", self.name);
        let stdout_path = self.logs.path().join(format!("{label}.out"));
        let stderr_path = self.logs.path().join(format!("{label}.err"));
        let stdout = File::create(&stdout_path).expect("create stdout log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        Proc {
            child,
            label,
            stdout: stdout_path,
            stderr: stderr_path,
        }
    }

    /// The name of this node's port on the bridge, in the switch namespace.
    pub fn bridge_port(&self) -> String {
        let index = self
            .mac
            .rsplit(':')
            .next()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        format!("p{index}")
    }

    /// Sets eth0 down (the cable is pulled: the bridge port loses carrier).
    pub fn link_down(&self) {
        ip(&["-n", &self.ns, "link", "set", "eth0", "down"]);
    }

    /// Sets eth0 up.
    pub fn link_up(&self) {
        ip(&["-n", &self.ns, "link", "set", "eth0", "up"]);
    }

    /// True when eth0 is administratively up.
    pub fn link_is_up(&self) -> bool {
        let out = ip(&["-j", "-n", &self.ns, "link", "show", "dev", "eth0"]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j link json");
        json[0]["flags"]
            .as_array()
            .is_some_and(|flags| flags.iter().any(|f| f == "UP"))
    }

    /// Removes every IPv4 address on eth0 but the node's own: what a rebooted box no
    /// longer has (a VIP left behind by a killed daemon).
    pub fn flush_extra_addrs(&self) {
        let own = IpAddr::V4(self.addr);
        for extra in addrs_with_prefix(self)
            .into_iter()
            .filter(|(a, _)| a.is_ipv4() && *a != own)
        {
            let cidr = format!("{}/{}", extra.0, extra.1);
            ip(&["-n", &self.ns, "addr", "del", &cidr, "dev", "eth0"]);
        }
    }

    /// The node's own address as CIDR ("10.1.0.1/24").
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

/// A process started by [`Node::spawn`]; SIGKILLed and reaped on drop.
pub struct Proc {
    child: Child,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends `sig` (SIGTERM, SIGKILL, SIGSTOP, SIGCONT...); a process already gone is
    /// not an error.
    pub fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => panic!("kill -{sig} {}: {e}", self.label),
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => return None,
                Err(e) => panic!("wait {}: {e}", self.label),
            }
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the process wrote so far: stdout then stderr.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{out}{err}")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server inside a namespace that writes `text\n` to every connection and closes
/// it: the stand-in for the service behind a VIP. Stops on drop.
pub struct BannerServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl BannerServer {
    /// Listens on `addr` inside `node`'s namespace (port 0 picks one: see [`Self::addr`]).
    pub fn start(node: &Node, addr: SocketAddr, text: &str) -> BannerServer {
        let stop = Arc::new(AtomicBool::new(false));
        let line = format!("{text}\n").into_bytes();
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        let thread = spawn_in_netns(node.ns(), move || {
            let listener = match TcpListener::bind(addr) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let ready = listener
                .set_nonblocking(true)
                .and_then(|()| listener.local_addr());
            let failed = ready.is_err();
            let _ = tx.send(ready);
            if failed {
                return;
            }
            serve_banner(&listener, &line, &stopping);
        });
        let addr = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(bound)) => bound,
            Ok(Err(e)) => panic!("banner server on {addr} in {}: {e}", node.ns()),
            Err(e) => panic!("banner server on {addr} in {}: {e}", node.ns()),
        };
        BannerServer {
            stop,
            thread: Some(thread),
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Accepts until `stop`, waking at least every 50 ms to look at it.
fn serve_banner(listener: &TcpListener, line: &[u8], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, 50u16) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        loop {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = conn.write_all(line);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

impl Drop for BannerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection from the calling thread's namespace: connect within `timeout`, read
/// one line (within a second), without its newline.
fn banner_here(addr: SocketAddr, timeout: Duration) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.strip_suffix('\n').map(str::to_string)
}

/// Connects from `node`'s namespace to `addr` within `timeout` and returns the first
/// line the server wrote (None when it could not connect or read a line).
pub fn client_banner(node: &Node, addr: SocketAddr, timeout: Duration) -> Option<String> {
    in_netns(node.ns(), move || banner_here(addr, timeout))
}

/// Time from this call until a connection from `client` to `vip_port` reads
/// `want_banner`: a new attempt every 5 ms (each with a 20 ms connect timeout, so
/// attempts overlap while SYNs go unanswered). None if that did not happen within
/// `timeout`.
pub fn measure_takeover(
    client: &Node,
    vip_port: SocketAddr,
    want_banner: &str,
    timeout: Duration,
) -> Option<Duration> {
    measure_takeover_since(Instant::now(), client, vip_port, want_banner, timeout)
}

/// [`measure_takeover`] counting from `start` (e.g. the moment the master's box died)
/// instead of from the call; `timeout` counts from `start` too.
pub fn measure_takeover_since(
    start: Instant,
    client: &Node,
    vip_port: SocketAddr,
    want_banner: &str,
    timeout: Duration,
) -> Option<Duration> {
    let want = want_banner.to_string();
    in_netns(client.ns(), move || {
        let (tx, rx) = mpsc::channel::<Instant>();
        let mut next = Instant::now().max(start);
        loop {
            let now = Instant::now();
            if now >= start + timeout {
                return None;
            }
            if now >= next {
                let tx = tx.clone();
                let want = want.clone();
                std::thread::spawn(move || {
                    if banner_here(vip_port, Duration::from_millis(20)).as_deref()
                        == Some(want.as_str())
                    {
                        let _ = tx.send(Instant::now());
                    }
                });
                next += Duration::from_millis(5);
            }
            let wait = next.saturating_duration_since(Instant::now());
            if let Ok(at) = rx.recv_timeout(wait) {
                return Some(at.duration_since(start));
            }
        }
    })
}

/// The link-layer address `node` has for `ip` (`ip neigh show`), None when there is no
/// entry or it is FAILED or INCOMPLETE.
pub fn neigh_mac(node: &Node, ip_addr: IpAddr) -> Option<String> {
    let target = ip_addr.to_string();
    let out = ip(&[
        "-j", "-n", &node.ns, "neigh", "show", "to", &target, "dev", "eth0",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j neigh json");
    let entry = json.as_array()?.iter().find(|e| e["dst"] == target)?;
    let bad = entry["state"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "FAILED" || s == "INCOMPLETE"));
    if bad {
        return None;
    }
    entry["lladdr"].as_str().map(str::to_string)
}

fn addrs_with_prefix(node: &Node) -> Vec<(IpAddr, u8)> {
    let out = ip(&["-j", "-n", &node.ns, "addr", "show", "dev", "eth0"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j addr json");
    json.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
        .filter_map(|info| {
            let addr = info["local"].as_str()?.parse().ok()?;
            let prefix = u8::try_from(info["prefixlen"].as_u64()?).ok()?;
            Some((addr, prefix))
        })
        .collect()
}

/// The addresses on `node`'s eth0 (IPv4 and IPv6).
pub fn addrs(node: &Node) -> Vec<IpAddr> {
    addrs_with_prefix(node)
        .into_iter()
        .map(|(addr, _)| addr)
        .collect()
}

/// True when `node`'s eth0 has `addr`.
pub fn holds(node: &Node, addr: Ipv4Addr) -> bool {
    addrs(node).contains(&IpAddr::V4(addr))
}

/// One VRRP advertisement seen on the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    /// When the observer read it.
    pub at: Instant,
    pub src: Ipv4Addr,
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
}

/// Decodes an IPv4 datagram carrying VRRP with rvs-wire (every check: lengths,
/// version, type, checksum), so a malformed advert from either implementation shows.
fn parse_advert(packet: &[u8], at: Instant) -> Option<Advert> {
    let (header, payload) = rvs_wire::ipv4::parse_ipv4(packet).ok()?;
    let repr =
        rvs_wire::vrrp::VrrpRepr::parse(payload, IpAddr::V4(header.src), IpAddr::V4(header.dst))
            .ok()?;
    Some(Advert {
        at,
        src: header.src,
        version: match repr.version {
            rvs_wire::vrrp::VrrpVersion::V2 => 2,
            rvs_wire::vrrp::VrrpVersion::V3 => 3,
        },
        vrid: repr.vrid,
        priority: repr.priority,
    })
}

/// Records every VRRP advertisement (IP protocol 112 to 224.0.0.18) that reaches an
/// observer node, from a raw socket in its namespace; stops on drop.
pub struct AdvertWatch {
    seen: Arc<(Mutex<Vec<Advert>>, std::sync::Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const VRRP_PROTOCOL: i32 = 112;
const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

impl AdvertWatch {
    pub fn start(observer: &Node) -> AdvertWatch {
        let seen = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let interface = observer.addr();
        let (seen_by_thread, stopping) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = spawn_in_netns(observer.ns(), move || {
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(VRRP_PROTOCOL)),
            )
            .and_then(|s| {
                s.join_multicast_v4(&VRRP_GROUP, &interface)?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok(s)
            });
            let socket = match socket {
                Ok(socket) => {
                    let _ = tx.send(Ok(()));
                    socket
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                let n = match (&socket).read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                if let Some(advert) = parse_advert(&buf[..n], Instant::now()) {
                    let (list, cond) = &*seen_by_thread;
                    list.lock().expect("advert list").push(advert);
                    cond.notify_all();
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("VRRP raw socket in {}: {e}", observer.ns()),
            Err(e) => panic!("VRRP raw socket in {}: {e}", observer.ns()),
        }
        AdvertWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every advert seen so far, oldest first.
    pub fn adverts(&self) -> Vec<Advert> {
        self.seen.0.lock().expect("advert list").clone()
    }

    /// Waits for the first advert that arrives after this call and satisfies `want`;
    /// None after `timeout`.
    pub fn next(&self, timeout: Duration, want: impl Fn(&Advert) -> bool) -> Option<Advert> {
        let (list, cond) = &*self.seen;
        let deadline = Instant::now() + timeout;
        let mut guard = list.lock().expect("advert list");
        let mut checked = guard.len();
        loop {
            if let Some(advert) = guard[checked..].iter().find(|a| want(a)) {
                return Some(*advert);
            }
            checked = guard.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            guard = cond.wait_timeout(guard, left).expect("advert list").0;
        }
    }
}

impl Drop for AdvertWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// VRRP instance state as keepalived's `state` keyword spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

/// One `vrrp_instance VI_1` on eth0 plus a `global_defs` naming the router.
#[derive(Clone, Debug)]
pub struct VrrpConf {
    pub state: VrrpState,
    pub vrid: u8,
    pub priority: u8,
    /// Whole seconds for version 2; version 3 has centiseconds.
    pub advert_int: Duration,
    /// 2 or 3.
    pub version: u8,
    pub nopreempt: bool,
    pub preempt_delay: Option<Duration>,
    /// VRRPv2 simple password (`auth_type PASS`), at most 8 characters.
    pub auth_pass: Option<String>,
    pub vip: Ipv4Addr,
    pub vip_prefix: u8,
    /// `unicast_src_ip` and `unicast_peer` instead of multicast.
    pub unicast: Option<(Ipv4Addr, Vec<Ipv4Addr>)>,
}

impl VrrpConf {
    /// VRRPv2, advert_int 1 s, preempting, no authentication, multicast, VIP/24.
    pub fn new(state: VrrpState, vrid: u8, priority: u8, vip: Ipv4Addr) -> VrrpConf {
        VrrpConf {
            state,
            vrid,
            priority,
            advert_int: Duration::from_secs(1),
            version: 2,
            nopreempt: false,
            preempt_delay: None,
            auth_pass: None,
            vip,
            vip_prefix: 24,
            unicast: None,
        }
    }

    /// The keepalived.conf text; `router_id` names the node in keepalived's logs.
    pub fn render(&self, router_id: &str) -> String {
        let state = match self.state {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        };
        let mut s = format!(
            "global_defs {{\n    router_id {router_id}\n}}\n\n\
             vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    \
             virtual_router_id {}\n    priority {}\n    advert_int {}\n    version {}\n",
            self.vrid,
            self.priority,
            seconds(self.advert_int),
            self.version
        );
        if self.nopreempt {
            s.push_str("    nopreempt\n");
        }
        if let Some(delay) = self.preempt_delay {
            s.push_str(&format!("    preempt_delay {}\n", seconds(delay)));
        }
        if let Some(pass) = &self.auth_pass {
            s.push_str(&format!(
                "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}\n"
            ));
        }
        if let Some((src, peers)) = &self.unicast {
            s.push_str(&format!("    unicast_src_ip {src}\n    unicast_peer {{\n"));
            for peer in peers {
                s.push_str(&format!("        {peer}\n"));
            }
            s.push_str("    }\n");
        }
        s.push_str(&format!(
            "    virtual_ipaddress {{\n        {}/{} dev eth0\n    }}\n}}\n",
            self.vip, self.vip_prefix
        ));
        s
    }
}

/// A duration in keepalived's decimal seconds ("1", "0.1", "2.5").
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:03}", d.as_secs(), d.subsec_millis())
            .trim_end_matches('0')
            .to_string()
    }
}

/// Which program directs a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Keepalived,
    Rvsd,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Keepalived => "keepalived",
            Kind::Rvsd => "rvsd",
        })
    }
}

/// The port clients use on the VIP.
pub const SERVICE_PORT: u16 = 80;
/// Where an rvsd node's banner server (its real server) listens on loopback.
const RVSD_REAL_PORT: u16 = 8080;

/// keepalived or rvsd running VRRP on a node, and the service behind the VIP there: a
/// banner server replying the director's name (on 0.0.0.0:80 for keepalived, which has
/// no data plane without IPVS; on 127.0.0.1:8080 for rvsd, whose socket plane serves
/// VIP:80 from it through a `virtual_server` block added to the conf).
pub struct Director {
    kind: Kind,
    node: Node,
    name: String,
    dir: tempfile::TempDir,
    conf: PathBuf,
    proc: Option<Proc>,
    /// SIGTERM sent to `proc`, exit not waited for yet.
    terminating: bool,
    _banner: BannerServer,
}

impl Director {
    /// Starts `kind` on `node` with `conf` rendered for router `name`.
    pub fn start(kind: Kind, node: &Node, conf: &VrrpConf, name: &str) -> Director {
        Director::start_text(kind, node, &conf.render(name), conf.vip, name)
    }

    /// Starts `kind` on `node` from a keepalived.conf text whose VRRP instance carries
    /// `vip` (rvsd gets the virtual_server block for it).
    pub fn start_text(
        kind: Kind,
        node: &Node,
        conf_text: &str,
        vip: Ipv4Addr,
        name: &str,
    ) -> Director {
        let dir = tempfile::tempdir().expect("director temp dir");
        let conf = dir.path().join("keepalived.conf");
        let (text, banner_addr) = match kind {
            Kind::Keepalived => (
                conf_text.to_string(),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVICE_PORT)),
            ),
            Kind::Rvsd => (
                format!(
                    "{conf_text}\nvirtual_server {vip} {SERVICE_PORT} {{\n    lb_algo rr\n    \
                     lb_kind NAT\n    protocol TCP\n    real_server 127.0.0.1 {RVSD_REAL_PORT} {{\n        \
                     weight 1\n    }}\n}}\n"
                ),
                SocketAddr::from((Ipv4Addr::LOCALHOST, RVSD_REAL_PORT)),
            ),
        };
        std::fs::write(&conf, text).expect("write conf");
        let banner = BannerServer::start(node, banner_addr, name);
        let mut director = Director {
            kind,
            node: node.clone(),
            name: name.to_string(),
            dir,
            conf,
            proc: None,
            terminating: false,
            _banner: banner,
        };
        director.spawn();
        director
    }

    fn pidfile(&self, which: &str) -> PathBuf {
        self.dir.path().join(format!("{which}.pid"))
    }

    fn spawn(&mut self) {
        let proc = match self.kind {
            Kind::Keepalived => {
                for which in ["keepalived", "vrrp", "checkers", "bfd"] {
                    let _ = std::fs::remove_file(self.pidfile(which));
                }
                // -n foreground, -l log to the console (our log files), -D detail,
                // -P VRRP only, -G no syslog; private pid files so neither a system
                // keepalived nor another test's sees it as "already running".
                let mut args: Vec<PathBuf> = ["-n", "-l", "-D", "-P", "-G", "-f"]
                    .iter()
                    .map(PathBuf::from)
                    .collect();
                args.push(self.conf.clone());
                for (flag, which) in [
                    ("-p", "keepalived"),
                    ("-r", "vrrp"),
                    ("-c", "checkers"),
                    ("-b", "bfd"),
                ] {
                    args.push(flag.into());
                    args.push(self.pidfile(which));
                }
                self.node.spawn("keepalived", &args)
            }
            Kind::Rvsd => {
                let socket = self.dir.path().join("rvsd.sock");
                let _ = std::fs::remove_file(&socket);
                let args: Vec<&OsStr> = vec![
                    "-f".as_ref(),
                    self.conf.as_os_str(),
                    "--socket".as_ref(),
                    socket.as_os_str(),
                    "--log".as_ref(),
                    "info".as_ref(),
                ];
                let mut proc = self.node.spawn(env!("CARGO_BIN_EXE_rvsd"), &args);
                let up = wait_until(Duration::from_secs(10), || {
                    socket.exists() || !proc.is_running()
                });
                assert!(
                    up && proc.is_running(),
                    "rvsd on {} did not come up: {}",
                    self.name,
                    proc.output()
                );
                proc
            }
        };
        self.proc = Some(proc);
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// What the director logged so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }

    /// Starts a graceful stop without waiting for it: SIGTERM (a VRRP master then
    /// sends priority 0 and drops the VIP at once; keepalived takes about a second more
    /// to exit). [`Self::stop`] then waits.
    pub fn terminate(&mut self) {
        if let Some(proc) = &self.proc {
            if !self.terminating {
                proc.signal(Signal::SIGTERM);
                self.terminating = true;
            }
        }
    }

    /// Graceful stop: SIGTERM (unless [`Self::terminate`] sent it) and wait for the exit.
    pub fn stop(&mut self) {
        self.terminate();
        self.terminating = false;
        if let Some(mut proc) = self.proc.take() {
            assert!(
                proc.wait_timeout(Duration::from_secs(10)).is_some(),
                "{} {} ignored SIGTERM for 10 s",
                self.kind,
                self.name
            );
        }
    }

    /// The box dies: the link goes down first (nothing more leaves it: keepalived's VRRP
    /// child would send priority 0 on the SIGTERM it gets when its parent dies), then
    /// every process of the director gets SIGKILL.
    pub fn kill(&mut self) {
        self.node.link_down();
        if self.kind == Kind::Keepalived {
            let child = std::fs::read_to_string(self.pidfile("vrrp"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            if let Some(pid) = child {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.terminating = false;
        if let Some(mut proc) = self.proc.take() {
            proc.signal(Signal::SIGKILL);
            assert!(
                proc.wait_timeout(Duration::from_secs(5)).is_some(),
                "{} survived SIGKILL",
                proc.label()
            );
        }
    }

    /// Starts the director again. After [`Self::kill`] the box comes back as from a
    /// reboot: addresses left on eth0 (the VIP) are removed, then the link goes up.
    pub fn restart(&mut self) {
        self.stop();
        if !self.node.link_is_up() {
            self.node.flush_extra_addrs();
            self.node.link_up();
        }
        self.spawn();
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.signal(Signal::SIGTERM);
            let mut proc = proc;
            if proc.wait_timeout(Duration::from_secs(3)).is_none() {
                proc.signal(Signal::SIGKILL);
            }
        }
    }
}
