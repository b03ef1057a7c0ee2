//! Connection sync daemons (IPVS's master and backup sync threads,
//! net/netfilter/ipvs/ip_vs_sync.c), driven by `rvsadm --start-daemon` /
//! `--stop-daemon` and keepalived's `lvs_sync_daemon`.
//!
//! The master daemon turns the core's announcements on
//! (`Director::set_sync_master`), takes the queued records every
//! [`FLUSH_EVERY`] and multicasts them as version 1 messages of at most
//! `maxlen` bytes to the group (default 224.0.0.81:8848, TTL 1, loop off, bound
//! to the interface's address as `make_send_sock` does). The backup daemon joins
//! the group on the interface, decodes version 1 and 0 messages, drops those of
//! another syncid when its own is not 0 (`ip_vs_process_message`), and installs
//! each record with `Director::import_synced`, telling the packet plane through
//! `Control::note_imported`.
//!
//! rvs extension, whole-table resync: the kernel re-announces a flow only on its
//! next packets, so a director that (re)starts as backup never learns of idle
//! flows (keepalived issues #1138, #1966). A starting rvs backup multicasts a
//! *request*: a version 1 header with no entries and the spare field set to
//! [`RESYNC_SPARE`] ("RV"), once at start and once more a second later. An rvs
//! master listens on the group too and answers a request of its syncid (any, if
//! its own is 0) with `Director::sync_export`, at most once a second. Kernel
//! directors ignore the request (see [`resync_request`]).
//!
//! Differences from the kernel: the master flushes every 100 ms, not 2 s;
//! one sender and one receiver per daemon (no `sync_ports` threads); only
//! version 1 is sent, without sequence or persistence-engine options (the core
//! keeps neither); FullNat records (an rvs method IPVS does not have) are not
//! sent; the maxlen default reads the MTU from /sys/class/net (1500 if
//! unreadable); an IPv6 send socket is not bound to an address.
//!
//! Invariants: at most one daemon per role; while any daemon runs the core's
//! hash pickup is on (`Director::set_hash_pickup`), and off when none runs; the
//! master's announcements are on exactly while the master daemon runs; the
//! `Control` lock is taken once per flush or per datagram, never across an
//! await; stopping a daemon ends its task, which closes its sockets.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rvs_core::{ConnKey, Forward, Span, SyncParams, SyncedConn, TunnelConfig};
use rvs_wire::ipvs_sync::{
    self as wire, ConnAddrs, ForwardMethod, SyncConn, SyncMessage, SyncRole, CONN_F_DROUTE,
    CONN_F_INACTIVE, CONN_F_LOCALNODE, CONN_F_MASQ, CONN_F_NOOUTPUT, CONN_F_TEMPLATE,
    CONN_F_TUNNEL,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::{lock, Shared};

/// How often the master sends what the core queued. The kernel flushes a
/// partly filled buffer after 2 s (`IPVS_SYNC_FLUSH_TIME`); 100 ms loses less
/// of the last moments before a failover and costs a few small datagrams.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The spare field of an rvs whole-table request ("RV").
pub const RESYNC_SPARE: u16 = 0x5256;

/// A master answers at most one request per this long.
const RESYNC_MIN_GAP: Duration = Duration::from_secs(1);

/// A backup repeats its request this long after start (the first may go out
/// before the master's socket joined, or be lost).
const RESYNC_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long `stop` waits for a daemon's task before aborting it.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A whole-table answer pauses this long after each burst of messages so a
/// backup's receive buffer keeps up.
const ANSWER_BURST: usize = 32;
const ANSWER_PAUSE: Duration = Duration::from_millis(2);

/// Which daemon: the master announces, the backup installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Backup,
}

/// What `--start-daemon` (or `lvs_sync_daemon`) asks for. `None` fields take
/// the kernel's defaults (maxlen from the interface MTU, group 224.0.0.81 (the
/// kernel has no IPv6 default: an IPv6 group is given), port 8848, ttl 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub role: Role,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub maxlen: Option<u16>,
    pub group: Option<IpAddr>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// EEXIST: that role's daemon runs already.
    #[error("the {0:?} sync daemon is already running")]
    Running(Role),
    /// ESRCH: no daemon of that role runs.
    #[error("no {0:?} sync daemon is running")]
    NotRunning(Role),
    /// ENODEV and friends: the interface or socket could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A running daemon as `ipvsadm -L --daemon` shows it: every default
/// resolved (maxlen from the interface MTU, as the kernel computes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningDaemon {
    pub role: Role,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub maxlen: u16,
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
}

/// What the daemons did since rvsd started (for `/metrics` and the API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Master: messages and connection records sent.
    pub messages_sent: u64,
    pub conns_sent: u64,
    /// Master: records the core queued but the sender lost (queue full).
    pub conns_dropped: u64,
    /// Master: records not sent because their forwarding method has no IPVS
    /// equivalent (FullNat): a kernel backup could not apply them.
    pub conns_skipped: u64,
    /// Backup: messages and records received (after the syncid filter).
    pub messages_received: u64,
    pub conns_received: u64,
    /// Backup: records installed or updated in the table.
    pub conns_imported: u64,
    /// Backup: records refused by the core (no such service or real server,
    /// bad state, stale).
    pub import_errors: u64,
    /// Backup: messages of another syncid, and messages that did not decode.
    pub wrong_syncid: u64,
    pub malformed: u64,
    /// rvs extension: whole-table requests sent (backup) and answered (master).
    pub resync_requests_sent: u64,
    pub resync_requests_answered: u64,
}

/// A cloneable handle on the running daemons.
#[derive(Clone)]
pub struct SyncDaemons {
    shared: Shared,
    inner: Arc<Mutex<Inner>>,
    stats: Arc<Mutex<SyncStats>>,
}

#[derive(Default)]
struct Inner {
    master: Option<Running>,
    backup: Option<Running>,
    /// Records the core dropped under masters that have stopped since.
    dropped_before: u64,
}

struct Running {
    info: RunningDaemon,
    quit: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Everything a daemon's task needs, settled before it is spawned.
struct Resolved {
    info: RunningDaemon,
    ifindex: u32,
    /// The interface's first address of the group's family (IPv4: the send
    /// socket's bound address and multicast interface).
    local: Option<IpAddr>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SyncDaemons {
    pub fn new(shared: crate::http::Shared) -> Self {
        SyncDaemons {
            shared,
            inner: Arc::new(Mutex::new(Inner::default())),
            stats: Arc::new(Mutex::new(SyncStats::default())),
        }
    }

    /// Starts the daemon of `cfg.role` (spawned on the current tokio runtime).
    /// The sockets are opened before this returns, in the caller's network
    /// namespace.
    pub async fn start(&self, cfg: DaemonConfig) -> Result<(), SyncError> {
        let role = cfg.role;
        {
            let mut inner = guard(&self.inner);
            // The kernel looks the interface up before it looks at the running
            // daemons: a missing interface is an error even when that role runs
            // already (tests/golden/daemon-sync.golden).
            let resolved = resolve(&cfg)?;
            if slot(&mut inner, role).is_some() {
                return Err(SyncError::Running(role));
            }
            let sockets = open_sockets(&resolved)?;
            let (quit_tx, quit_rx) = watch::channel(false);
            if role == Role::Master {
                // Announcements start before the task so no packet is missed.
                lock(&self.shared)
                    .director_mut()
                    .set_sync_master(Some(SyncParams::default()));
            }
            let ctx = TaskCtx {
                shared: self.shared.clone(),
                stats: self.stats.clone(),
                info: resolved.info.clone(),
                sockets,
                quit: quit_rx,
            };
            let task = match role {
                Role::Master => tokio::spawn(run_master(ctx)),
                Role::Backup => tokio::spawn(run_backup(ctx)),
            };
            tracing::info!(
                role = ?role,
                interface = %resolved.info.mcast_ifn,
                syncid = resolved.info.syncid,
                maxlen = resolved.info.maxlen,
                group = %resolved.info.group,
                port = resolved.info.port,
                "sync daemon started"
            );
            *slot(&mut inner, role) = Some(Running {
                info: resolved.info,
                quit: quit_tx,
                task,
            });
        }
        self.update_pickup();
        Ok(())
    }

    /// Stops the daemon of `role`.
    pub async fn stop(&self, role: Role) -> Result<(), SyncError> {
        let running = slot(&mut guard(&self.inner), role)
            .take()
            .ok_or(SyncError::NotRunning(role))?;
        let _ = running.quit.send(true);
        let mut task = running.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            task.abort();
        }
        if role == Role::Master {
            let dropped = {
                let mut control = lock(&self.shared);
                let d = control.director_mut();
                let dropped = d.sync_counters().dropped;
                d.set_sync_master(None);
                dropped
            };
            guard(&self.inner).dropped_before += dropped;
        }
        self.update_pickup();
        tracing::info!(role = ?role, "sync daemon stopped");
        Ok(())
    }

    /// The running daemons, master first.
    pub fn running(&self) -> Vec<RunningDaemon> {
        let inner = guard(&self.inner);
        [&inner.master, &inner.backup]
            .into_iter()
            .flatten()
            .map(|r| r.info.clone())
            .collect()
    }

    pub fn stats(&self) -> SyncStats {
        let mut stats = *guard(&self.stats);
        let before = guard(&self.inner).dropped_before;
        let now = lock(&self.shared).director().sync_counters().dropped;
        stats.conns_dropped = before + now;
        stats
    }

    /// Hash pickup is on while any daemon runs.
    fn update_pickup(&self) {
        let any = {
            let inner = guard(&self.inner);
            inner.master.is_some() || inner.backup.is_some()
        };
        lock(&self.shared).director_mut().set_hash_pickup(any);
    }
}

fn slot(inner: &mut Inner, role: Role) -> &mut Option<Running> {
    match role {
        Role::Master => &mut inner.master,
        Role::Backup => &mut inner.backup,
    }
}

fn setup<'a>(interface: &'a str, what: &'a str) -> impl FnOnce(std::io::Error) -> SyncError + 'a {
    move |e| SyncError::Setup(format!("sync daemon on {interface}: {what}: {e}"))
}

/// Settles every default as `start_sync_thread` does.
fn resolve(cfg: &DaemonConfig) -> Result<Resolved, SyncError> {
    let iface = rvs_sys::interface(&cfg.mcast_ifn)
        .map_err(|e| SyncError::Setup(format!("sync daemon interface {}: {e}", cfg.mcast_ifn)))?;
    let group = cfg.group.unwrap_or(IpAddr::V4(wire::SYNC_MCAST_GROUP_V4));
    if !group.is_multicast() {
        return Err(SyncError::Setup(format!(
            "sync daemon group {group} is not a multicast address"
        )));
    }
    let mtu = interface_mtu(&cfg.mcast_ifn).unwrap_or(1500);
    let role = match cfg.role {
        Role::Master => SyncRole::Master,
        Role::Backup => SyncRole::Backup,
    };
    let maxlen = wire::sync_maxlen(role, group.is_ipv6(), cfg.maxlen.unwrap_or(0), mtu);
    let local = rvs_sys::interface_addrs(&cfg.mcast_ifn, group.is_ipv6())
        .ok()
        .and_then(|a| a.first().map(|(addr, _)| *addr));
    if group.is_ipv4() && local.is_none() {
        // bind_mcastif_addr: the send socket needs the interface's address.
        return Err(SyncError::Setup(format!(
            "sync daemon interface {}: no IPv4 address",
            cfg.mcast_ifn
        )));
    }
    Ok(Resolved {
        info: RunningDaemon {
            role: cfg.role,
            mcast_ifn: cfg.mcast_ifn.clone(),
            syncid: cfg.syncid,
            maxlen,
            group,
            port: cfg.port.unwrap_or(wire::SYNC_PORT),
            ttl: cfg.ttl.unwrap_or(wire::SYNC_MCAST_TTL),
        },
        ifindex: iface.index,
        local,
    })
}

/// The interface's MTU from sysfs (`None` if unreadable: 1500 is then used).
fn interface_mtu(ifname: &str) -> Option<u32> {
    if ifname.contains('/') || ifname.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The two sockets every daemon has: one sending to the group (the master's
/// announcements, the backup's requests) and one receiving from it (the
/// backup's messages, the master's requests).
struct Sockets {
    send: UdpSocket,
    recv: UdpSocket,
    group: SocketAddr,
}

/// `make_send_sock` and `make_receive_sock`.
fn open_sockets(r: &Resolved) -> Result<Sockets, SyncError> {
    let ifn = r.info.mcast_ifn.as_str();
    let group = SocketAddr::new(r.info.group, r.info.port);
    let domain = Domain::for_address(group);
    let send =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(setup(ifn, "send socket"))?;
    match (r.info.group, r.local) {
        (IpAddr::V4(_), Some(IpAddr::V4(local))) => {
            send.set_multicast_if_v4(&local)
                .map_err(setup(ifn, "IP_MULTICAST_IF"))?;
            send.set_multicast_ttl_v4(u32::from(r.info.ttl))
                .map_err(setup(ifn, "IP_MULTICAST_TTL"))?;
            send.set_multicast_loop_v4(false)
                .map_err(setup(ifn, "IP_MULTICAST_LOOP"))?;
            send.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(local), 0)))
                .map_err(setup(ifn, "bind to the interface address"))?;
        }
        (IpAddr::V4(_), _) => {
            return Err(SyncError::Setup(format!(
                "sync daemon interface {ifn}: no IPv4 address"
            )))
        }
        (IpAddr::V6(_), _) => {
            send.set_multicast_if_v6(r.ifindex)
                .map_err(setup(ifn, "IPV6_MULTICAST_IF"))?;
            send.set_multicast_hops_v6(u32::from(r.info.ttl))
                .map_err(setup(ifn, "IPV6_MULTICAST_HOPS"))?;
            send.set_multicast_loop_v6(false)
                .map_err(setup(ifn, "IPV6_MULTICAST_LOOP"))?;
        }
    }
    if r.info.role == Role::Master {
        // make_send_sock connects to the group: a group the interface cannot
        // reach (ff02::81 on lo, which has no multicast) fails here with
        // ENETUNREACH, as `ipvsadm --start-daemon master` reports.
        send.connect(&SockAddr::from(group))
            .map_err(setup(ifn, "connect to the group"))?;
    }
    send.set_nonblocking(true)
        .map_err(setup(ifn, "non-blocking"))?;

    let recv = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(setup(ifn, "receive socket"))?;
    recv.set_reuse_address(true)
        .map_err(setup(ifn, "SO_REUSEADDR"))?;
    match r.info.group {
        IpAddr::V4(g) => {
            recv.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(r.ifindex))
                .map_err(setup(ifn, "join the group"))?;
        }
        IpAddr::V6(g) => {
            recv.set_only_v6(true).map_err(setup(ifn, "IPV6_V6ONLY"))?;
            recv.join_multicast_v6(&g, r.ifindex)
                .map_err(setup(ifn, "join the group"))?;
        }
    }
    let bind_at = match r.info.group {
        // A link-local IPv6 group is bound with its scope.
        IpAddr::V6(g) => SocketAddr::V6(std::net::SocketAddrV6::new(g, r.info.port, 0, r.ifindex)),
        g => SocketAddr::new(g, r.info.port),
    };
    recv.bind(&SockAddr::from(bind_at))
        .map_err(setup(ifn, "bind to the group"))?;
    recv.set_nonblocking(true)
        .map_err(setup(ifn, "non-blocking"))?;
    let send = UdpSocket::from_std(send.into()).map_err(setup(ifn, "tokio send socket"))?;
    let recv = UdpSocket::from_std(recv.into()).map_err(setup(ifn, "tokio receive socket"))?;
    Ok(Sockets { send, recv, group })
}

struct TaskCtx {
    shared: Shared,
    stats: Arc<Mutex<SyncStats>>,
    info: RunningDaemon,
    sockets: Sockets,
    quit: watch::Receiver<bool>,
}

impl TaskCtx {
    fn count(&self, f: impl FnOnce(&mut SyncStats)) {
        f(&mut guard(&self.stats));
    }

    /// Encodes `records` into messages of at most maxlen and sends them;
    /// returns how many messages went out. FullNat records are skipped (not an
    /// IPVS forwarding method: a kernel backup could not apply it).
    async fn send_records(&self, records: &[SyncedConn], pace: bool) -> usize {
        let conns: Vec<SyncConn> = records.iter().filter_map(to_wire).collect();
        let skipped = records.len() - conns.len();
        if skipped > 0 {
            self.count(|s| s.conns_skipped += skipped as u64);
            tracing::debug!(
                skipped,
                "sync: records with no IPVS forwarding method not sent"
            );
        }
        if conns.is_empty() {
            return 0;
        }
        let message = SyncMessage {
            syncid: self.info.syncid,
            conns,
        };
        let messages = match wire::encode_v1(&message, self.info.maxlen) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "sync message cannot be encoded");
                return 0;
            }
        };
        let mut sent = 0;
        for (i, bytes) in messages.iter().enumerate() {
            if pace && i > 0 && i % ANSWER_BURST == 0 {
                tokio::time::sleep(ANSWER_PAUSE).await;
            }
            match self.sockets.send.send_to(bytes, self.sockets.group).await {
                Ok(_) => {
                    sent += 1;
                    let n = bytes.get(4).copied().unwrap_or(0);
                    self.count(|s| {
                        s.messages_sent += 1;
                        s.conns_sent += u64::from(n);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "sync message not sent"),
            }
        }
        sent
    }

    /// Sends a whole-table request.
    async fn send_request(&self) {
        match self
            .sockets
            .send
            .send_to(&resync_request(self.info.syncid), self.sockets.group)
            .await
        {
            Ok(_) => self.count(|s| s.resync_requests_sent += 1),
            Err(e) => tracing::warn!(error = %e, "sync resync request not sent"),
        }
    }
}

/// The master's task: flush the queue every [`FLUSH_EVERY`], answer requests.
async fn run_master(ctx: TaskCtx) {
    let mut quit = ctx.quit.clone();
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 65_536];
    let mut last_answer: Option<tokio::time::Instant> = None;
    let mut records = Vec::new();
    loop {
        tokio::select! {
            _ = quit.changed() => break,
            _ = every.tick() => {
                lock(&ctx.shared).director_mut().drain_sync(&mut records);
                ctx.send_records(&records, false).await;
                records.clear();
            }
            r = ctx.sockets.recv.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(asked) = parse_resync_request(buf.get(..n).unwrap_or(&[])) else {
                    continue;
                };
                if ctx.info.syncid != 0 && asked != ctx.info.syncid {
                    continue;
                }
                let now = tokio::time::Instant::now();
                if last_answer.is_some_and(|t| now.duration_since(t) < RESYNC_MIN_GAP) {
                    continue;
                }
                last_answer = Some(now);
                let mut table = Vec::new();
                lock(&ctx.shared).director().sync_export(&mut table);
                let sent = ctx.send_records(&table, true).await;
                tracing::info!(%from, records = table.len(), messages = sent, "sync: whole table sent on request");
                ctx.count(|s| s.resync_requests_answered += 1);
            }
        }
    }
    // What is queued still goes out, as the kernel's thread flushes on stop.
    lock(&ctx.shared).director_mut().drain_sync(&mut records);
    ctx.send_records(&records, false).await;
}

/// The backup's task: request the table, then install what arrives.
async fn run_backup(ctx: TaskCtx) {
    let mut quit = ctx.quit.clone();
    let mut buf = vec![0u8; usize::from(ctx.info.maxlen).max(65_536)];
    ctx.send_request().await;
    let retry = tokio::time::sleep(RESYNC_RETRY_AFTER);
    tokio::pin!(retry);
    let mut retried = false;
    loop {
        tokio::select! {
            _ = quit.changed() => break,
            _ = &mut retry, if !retried => {
                retried = true;
                ctx.send_request().await;
            }
            r = ctx.sockets.recv.recv_from(&mut buf) => {
                match r {
                    Ok((n, _)) => receive(&ctx, buf.get(..n).unwrap_or(&[])),
                    Err(e) => tracing::debug!(error = %e, "sync receive"),
                }
            }
        }
    }
}

/// One datagram on a backup (`ip_vs_process_message`).
fn receive(ctx: &TaskCtx, bytes: &[u8]) {
    if parse_resync_request(bytes).is_some() {
        // Another backup's request: for masters only.
        return;
    }
    let message = match wire::decode(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "sync message dropped");
            ctx.count(|s| s.malformed += 1);
            return;
        }
    };
    if ctx.info.syncid != 0 && message.syncid != ctx.info.syncid {
        ctx.count(|s| s.wrong_syncid += 1);
        return;
    }
    let (mut imported, mut errors) = (0u64, 0u64);
    {
        let mut control = lock(&ctx.shared);
        let now = control.now();
        for conn in &message.conns {
            let Some(rec) = from_wire(conn) else {
                errors += 1;
                continue;
            };
            match control.director_mut().import_synced(&rec, now) {
                Ok(id) => {
                    control.note_imported(id);
                    imported += 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "sync record not installed");
                    errors += 1;
                }
            }
        }
    }
    let received = message.conns.len() as u64;
    ctx.count(|s| {
        s.messages_received += 1;
        s.conns_received += received;
        s.conns_imported += imported;
        s.import_errors += errors;
    });
}

/// The rvs whole-table request: a version 1 header with no entries and
/// [`RESYNC_SPARE`] in the spare field.
///
/// A kernel backup ignores it. `ip_vs_process_message` checks the size field
/// (8, right) and the syncid, then takes the version 1 path only when the
/// version is 1, the reserved byte 0 AND the spare field 0; the spare fails, so
/// the message is handed to the version 0 parser, which reads byte 0 (our
/// reserved byte, 0) as its entry count and processes nothing.
pub fn resync_request(syncid: u8) -> [u8; 8] {
    let [hi, lo] = RESYNC_SPARE.to_be_bytes();
    [0, syncid, 0, 8, 0, wire::SYNC_PROTO_VERSION, hi, lo]
}

/// The syncid of a whole-table request, `None` for anything else.
pub fn parse_resync_request(bytes: &[u8]) -> Option<u8> {
    match *bytes {
        [0, syncid, 0, 8, 0, version, hi, lo]
            if version == wire::SYNC_PROTO_VERSION
                && u16::from_be_bytes([hi, lo]) == RESYNC_SPARE =>
        {
            Some(syncid)
        }
        _ => None,
    }
}

/// A core record as a wire entry; `None` for FullNat (no IPVS method) and for
/// a record whose addresses mix families (none exists).
pub fn to_wire(rec: &SyncedConn) -> Option<SyncConn> {
    let method = match rec.forward {
        Forward::Masq => CONN_F_MASQ,
        Forward::Local => CONN_F_LOCALNODE,
        Forward::Tunnel(_) => CONN_F_TUNNEL,
        Forward::Route => CONN_F_DROUTE,
        Forward::FullNat => return None,
    };
    let addrs = match (rec.key.caddr, rec.key.vaddr, rec.daddr) {
        (IpAddr::V4(caddr), IpAddr::V4(vaddr), IpAddr::V4(daddr)) => ConnAddrs::V4 {
            caddr,
            vaddr,
            daddr,
        },
        (IpAddr::V6(caddr), IpAddr::V6(vaddr), IpAddr::V6(daddr)) => ConnAddrs::V6 {
            caddr,
            vaddr,
            daddr,
        },
        _ => return None,
    };
    let mut conn = SyncConn::new(
        addrs,
        rec.key.proto,
        rec.key.cport,
        rec.key.vport,
        rec.dport,
    );
    let mut flags = method;
    if rec.key.template {
        flags |= CONN_F_TEMPLATE;
    }
    if rec.inactive {
        flags |= CONN_F_INACTIVE;
    }
    if rec.no_output {
        flags |= CONN_F_NOOUTPUT;
    }
    conn.flags = flags;
    conn.state = u16::from(rec.state);
    conn.fwmark = rec.fwmark;
    conn.timeout = u32::try_from(rec.timeout.as_millis() / 1000).unwrap_or(u32::MAX);
    Some(conn)
}

/// A wire entry as a core record; `None` for what `ip_vs_proc_sync_conn`
/// skips itself (an unknown option without the may-ignore bit, persistence
/// data without an engine name) and for states beyond a byte.
pub fn from_wire(conn: &SyncConn) -> Option<SyncedConn> {
    if conn.has_unknown_mandatory_option() || (conn.pe_data.is_some() && conn.pe_name.is_none()) {
        return None;
    }
    let state = u8::try_from(conn.state).ok()?;
    // The backup binds the connection to its own real server's method
    // (ip_vs_bind_dest); the announced one is kept for the record only.
    let forward = match conn.forward_method() {
        Some(ForwardMethod::LocalNode) => Forward::Local,
        Some(ForwardMethod::Tunnel) => Forward::Tunnel(TunnelConfig::default()),
        Some(ForwardMethod::DirectRoute) => Forward::Route,
        _ => Forward::Masq,
    };
    Some(SyncedConn {
        key: ConnKey {
            proto: conn.protocol,
            template: conn.is_template(),
            caddr: conn.addrs.caddr(),
            cport: conn.cport,
            vaddr: conn.addrs.vaddr(),
            vport: conn.vport,
        },
        daddr: conn.addrs.daddr(),
        dport: conn.dport,
        fwmark: conn.fwmark,
        state,
        inactive: conn.is_inactive(),
        no_output: conn.is_no_output(),
        forward,
        timeout: Span::from_secs(u64::from(conn.timeout)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn record(forward: Forward, template: bool) -> SyncedConn {
        SyncedConn {
            key: ConnKey {
                proto: 6,
                template,
                caddr: "203.0.113.7".parse().unwrap(),
                cport: if template { 0 } else { 40_001 },
                vaddr: "10.0.0.10".parse().unwrap(),
                vport: 80,
            },
            daddr: "10.1.0.12".parse().unwrap(),
            dport: 8080,
            fwmark: 0,
            state: if template { 0 } else { 1 },
            inactive: false,
            no_output: forward != Forward::Masq,
            forward,
            timeout: Span::from_secs(900),
        }
    }

    #[test]
    fn records_survive_the_wire() {
        for (forward, bits) in [
            (Forward::Masq, CONN_F_MASQ),
            (Forward::Local, CONN_F_LOCALNODE),
            (Forward::Tunnel(TunnelConfig::default()), CONN_F_TUNNEL),
            (Forward::Route, CONN_F_DROUTE),
        ] {
            for template in [false, true] {
                let rec = record(forward, template);
                let conn = to_wire(&rec).unwrap();
                assert_eq!(conn.flags & wire::CONN_F_FWD_MASK, bits);
                assert_eq!(conn.is_template(), template);
                assert_eq!(conn.timeout, 900);
                let bytes = wire::encode_v1(
                    &SyncMessage {
                        syncid: 4,
                        conns: vec![conn],
                    },
                    1472,
                )
                .unwrap();
                let back = wire::decode(&bytes[0]).unwrap();
                assert_eq!(from_wire(&back.conns[0]), Some(rec));
            }
        }
        assert!(to_wire(&record(Forward::FullNat, false)).is_none());
    }

    #[test]
    fn inactive_and_fwmark_are_carried() {
        let mut rec = record(Forward::Route, false);
        rec.inactive = true;
        rec.fwmark = 42;
        rec.state = 5;
        let conn = to_wire(&rec).unwrap();
        assert!(conn.is_inactive() && conn.is_no_output());
        assert_eq!((conn.fwmark, conn.state), (42, 5));
        assert_eq!(from_wire(&conn), Some(rec));
    }

    #[test]
    fn entries_the_kernel_skips_are_not_imported() {
        let mut conn = to_wire(&record(Forward::Masq, false)).unwrap();
        conn.pe_data = Some(b"call-id".to_vec());
        assert!(from_wire(&conn).is_none());
        let mut conn = to_wire(&record(Forward::Masq, false)).unwrap();
        conn.state = 256;
        assert!(from_wire(&conn).is_none());
    }

    #[test]
    fn the_resync_request_is_nothing_to_a_sync_receiver() {
        let request = resync_request(7);
        assert_eq!(parse_resync_request(&request), Some(7));
        // Our own decoder refuses it as a v1 message with a non-zero spare
        // field; the kernel reads it as a v0 message whose count byte is 0.
        assert_eq!(
            wire::decode(&request),
            Err(wire::SyncError::NonZeroSpare(RESYNC_SPARE))
        );
        assert_eq!(request[0], 0, "the v0 entry count the kernel reads");
        // A real (empty-spare) v1 header is not a request.
        let mut plain = request;
        plain[6] = 0;
        plain[7] = 0;
        assert_eq!(parse_resync_request(&plain), None);
        let mut longer = request.to_vec();
        longer.extend_from_slice(&[0; 4]);
        assert_eq!(parse_resync_request(&longer), None);
    }
}
