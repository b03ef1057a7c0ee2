//! The XDP packet plane's driver: keeps the BPF maps equal to the core's table,
//! answers upcalls with the core's decision, and feeds the core what the fast
//! path saw, so that `rvsadm -Lnc`, `-Ln --stats` and `--rate` show packet-plane
//! flows like any other.
//!
//! - **Table sync** (every [`SYNC_EVERY`]): virtual services become `rvs_vips`
//!   entries, their destinations `rvs_reals` slots (next-hop MACs resolved through
//!   the kernel's routes and neighbours), and sh/dh/mh services copy the core's
//!   bucket table ([`Director::hash_table`]) into `rvs_hash`, so that XDP can
//!   decide their new flows bit for bit as the core would.
//! - **Next-hop refresh** (with the table sync, every [`NEXT_HOP_REFRESH`]): a
//!   new real server's next hop is resolved at once (waiting up to a second
//!   for ARP/ND); every next hop in use is re-resolved periodically without
//!   waiting ([`rvs_sys::refresh_next_hops`]: the kernel is asked to verify
//!   entries that XDP-forwarded traffic would leave STALE forever), so a
//!   changed MAC, interface or route rewrites the real's `rvs_reals` entry and
//!   established flows, which look their real up per packet, follow at once.
//!   A hop that cannot be resolved keeps its last MAC.
//! - **Classifier sync** (with the table): the core's firewall-mark rules
//!   ([`Director::mark_rules`]) become `rvs_marks` entries (one per port, port 0
//!   for a rule of every port); firewall-mark services are `rvs_vips` entries
//!   under [`abi::VipKey::fwmark`]. Rules beyond the map's
//!   [`abi::MAX_MARK_ENTRIES`] are left out whole, logged and listed in
//!   `GET /v1/xdp` (`mark_rules_not_loaded`).
//! - **Upcalls**: a packet the program sent up is parsed by the reference engine,
//!   given the classifier's mark ([`Director::classify`], so that the core finds
//!   the firewall-mark service and makes its templates), decided by
//!   `Director::handle_in`, its flow entries installed, and the packet rewritten
//!   by the same engine and sent out of its egress interface.
//! - **Notifications**: TCP control packets of known flows move the core's state
//!   (`handle_segment`); flows that XDP created (sh/dh/mh) are confirmed with
//!   `handle_in`, which creates the core's connection.
//! - **Traffic sync** (every [`TRAFFIC_EVERY`]): fast-path packet and byte
//!   counts and last-seen times go to `handle_traffic`; entries whose connection
//!   the core expired are deleted from the flow map.
//! - **Imported connections** (with each table sync): connections a backup
//!   sync daemon installed in the core (`Control::take_imported`) get their
//!   flow entries at once, as the first client packet's upcall would have made
//!   them, so that after a failover XDP forwards them, NAT replies included,
//!   before any client packet. NAT needs the client-facing interface and MACs,
//!   resolved by a route and neighbour lookup towards the client (cached). A
//!   connection whose real server or next hop is not known yet waits a few
//!   rounds, then is left to the upcall of its first packet. FullNAT ones are
//!   skipped (the sync protocol carries no local address/port).
//!
//! Invariant: every registered flow names a live core connection with the same
//! key, or is removed at the next traffic sync. A flow key belongs to the last
//! connection registered with it: forgetting an older one leaves it.

// hashbrown with foldhash: the flow registries are hashed on every event.
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags};
use rvs_core::{
    ConnId, ConnKey, Counters, DestId, Director, Family, Forward, InVerdict, MarkRule, Packet,
    Protocol, SchedulerKind, ServiceKey, TcpFlags, Time, TunnelKind,
};
use rvs_sys::FrameSender;
use rvs_sys::{missing_capabilities, Capability};
use rvs_xdp::abi::{self, FlowKey};
use rvs_xdp::engine::{self, Parsed, Verdict};
use rvs_xdp::loader::{AttachMode, Loaded};
use tokio::sync::watch;

use crate::http::{lock, Shared};

/// How often the maps are brought in line with the table.
pub const SYNC_EVERY: Duration = Duration::from_millis(250);
/// How often fast-path counters are folded into the core.
pub const TRAFFIC_EVERY: Duration = Duration::from_secs(1);
/// ICMP "port unreachable" answers per nanosecond (1000 a second) and burst.
const UNREACHABLE_PER_NS: f64 = 1000.0 / 1e9;
const UNREACHABLE_BURST: f64 = 50.0;
/// The longest a flow waits between two folds of its counters (well under the
/// shortest default timeout that traffic must push back, TCP SYN_RECV's 60 s).
pub const TRAFFIC_PASS: Duration = Duration::from_secs(10);
/// Flows folded per tick at least, however few there are.
const MIN_SYNC_PER_TICK: usize = 20_000;
/// Events handled per lock of the control plane.
const EVENT_BATCH: usize = 256;
/// Rounds (table syncs) an imported connection waits for its real server's
/// slot or its client's next hop before it is left to the upcall path.
const IMPORT_ROUNDS: u8 = 40;
/// Imported connections waiting at most (the oldest are dropped).
const IMPORT_QUEUE_MAX: usize = 1 << 20;
/// Client next hops kept for imported NAT connections (cleared when full).
const CLIENT_HOPS_MAX: usize = 65_536;
/// Time spent resolving client next hops per round at most.
const CLIENT_RESOLVE_BUDGET: Duration = Duration::from_millis(200);
/// How often the real servers' next hops are re-resolved. The kernel itself
/// takes longer to notice a changed neighbour (an entry is REACHABLE for
/// 15-45 s, `base_reachable_time` 30 s, then a used STALE entry waits
/// `delay_first_probe_time`, 5 s, before its probes), so polling faster would
/// rarely see a new answer; each round costs one route lookup per real
/// server and one neighbour-table dump, on the upcall thread.
pub const NEXT_HOP_REFRESH: Duration = Duration::from_secs(5);
/// The next refresh after one that asked the kernel to resolve an entry with
/// no usable MAC (FAILED, gone): the answer takes milliseconds, so it is read
/// a second later. A dead server costs at most one such extra round per
/// FAILED cycle of the kernel (its probes take 3 s).
const NEXT_HOP_RECHECK: Duration = Duration::from_secs(1);

/// What `rvsd --data-plane xdp` was asked for.
#[derive(Clone, Debug, Default)]
pub struct XdpOptions {
    /// Interfaces the program is attached to.
    pub interfaces: Vec<String>,
    /// Generic (SKB) mode instead of native XDP.
    pub generic: bool,
    /// FullNAT local addresses.
    pub fnat_pool: Vec<IpAddr>,
    /// Outer source addresses of tunnels (one per family).
    pub tun_source: Vec<IpAddr>,
    /// Low bits of the IPv4 outer source spread by flow hash.
    pub tun_spread_bits: u32,
    /// New-flow upcalls per second per CPU (0: no guard).
    pub upcall_rate: u32,
    pub upcall_burst: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpStartError {
    #[error(
        "the XDP packet plane needs {0} (run as root, or grant it with setcap/AmbientCapabilities)"
    )]
    Capability(String),
    #[error("the XDP packet plane needs at least one --xdp-iface")]
    NoInterface,
    #[error("interface {name}: {source}")]
    Interface {
        name: String,
        source: rvs_sys::SysError,
    },
    #[error(transparent)]
    Xdp(#[from] rvs_xdp::error::XdpError),
    #[error("AF_PACKET sender on {name}: {source}")]
    Sender {
        name: String,
        source: rvs_sys::SysError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Counters of the driver itself (the program's own are in `rvs_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverCounters {
    pub upcalls: u64,
    pub upcalls_forwarded: u64,
    pub upcalls_refused: u64,
    pub upcalls_passed: u64,
    pub new_confirmed: u64,
    /// XDP picked another real server than the core (the entry is corrected).
    pub new_mismatch: u64,
    pub control: u64,
    pub unknown_flow: u64,
    pub send_errors: u64,
    /// A real server's first next-hop resolution failed (once per address;
    /// refreshes retry it), or an upcall chose a real with no resolved hop.
    pub unresolved_reals: u64,
    /// Rounds that re-resolved every real server's next hop in use.
    pub next_hop_refreshes: u64,
    /// Next hops whose interface or MACs changed at a refresh (the real
    /// servers' `rvs_reals` entries are rewritten).
    pub next_hop_changes: u64,
    /// Neighbour entries the kernel was asked to verify (NTF_USE) because
    /// they were STALE, FAILED or gone.
    pub next_hop_reverified: u64,
    /// Times a resolved next hop turned unresolvable at a refresh (counted
    /// once per change; its last known MAC stays in use).
    pub next_hop_failures: u64,
    /// Times the flood guard started dropping new flows after a second
    /// without guard drops (seen at the traffic sync, once a second).
    pub guard_activations: u64,
    /// ICMP "port unreachable" answers to refused new connections.
    pub unreachable_sent: u64,
    /// Refused new connections left unanswered by the ICMP rate limit.
    pub unreachable_limited: u64,
    /// Imported (synced) connections whose flow entries were installed.
    pub imported_installed: u64,
    /// Imported connections waiting for their real server's slot or their
    /// client's next hop (a gauge).
    pub imported_pending: u64,
    /// Imported connections given up on (left to the upcall of their first
    /// packet) after [`IMPORT_ROUNDS`] rounds, a full queue or a map error.
    pub imported_dropped: u64,
    /// Imported FullNAT connections, not installed (no local address/port in
    /// the sync protocol).
    pub imported_fullnat_skipped: u64,
}

/// What `GET /v1/xdp` shows: the program's counters (summed over CPUs) and the driver's.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct XdpView {
    pub interfaces: Vec<String>,
    pub program: std::collections::BTreeMap<String, u64>,
    pub driver: DriverCounters,
    pub flows: usize,
    /// Entries in the classifier map `rvs_marks`.
    pub mark_entries: usize,
    /// Classifier rules that did not fit `rvs_marks` (not applied by the
    /// packet plane), as `rvsadm` writes them.
    pub mark_rules_not_loaded: Vec<String>,
    /// The flood guard dropped new flows during the last traffic sync period.
    pub guard_active: bool,
}

/// One flow the plane installed, bound to its core connection.
#[derive(Clone, Debug)]
struct FlowRec {
    key: ConnKey,
    in_key: FlowKey,
    out_key: Option<FlowKey>,
    /// Fast-path counters already folded into the core: (in pkts, in bytes, out pkts, out bytes).
    folded: [u64; 4],
}

/// The next hop towards a client, as a client's packet shows it: the
/// interface it came in on, the MAC it came from (the client's, or its
/// router's) and the MAC it was sent to (the interface's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClientHop {
    ifindex: u32,
    mac: [u8; 6],
    own_mac: [u8; 6],
}

impl From<&rvs_sys::NextHop> for ClientHop {
    fn from(nh: &rvs_sys::NextHop) -> Self {
        ClientHop {
            ifindex: nh.ifindex,
            mac: nh.dmac,
            own_mac: nh.smac,
        }
    }
}

/// An imported connection waiting for its entries: what they need of the
/// core, copied under the lock.
#[derive(Clone, Copy, Debug)]
struct ImportedConn {
    id: ConnId,
    key: ConnKey,
    dest: DestId,
    dport: u16,
    nat: bool,
    /// The connection's last activity (its expiry less its timeout), as
    /// CLOCK_MONOTONIC ns: the entries' `last_seen_ns`, so that the traffic
    /// sync does not take the install for traffic.
    last_seen_ns: u64,
    rounds: u8,
}

/// The flow entries of a DR, TUN or NAT decision for `parsed` (the first
/// packet): NAT goes to the core's port `dport` (a fwmark service's real may
/// have port 0, and persistence keeps the packet's port).
fn flow_entries(
    parsed: &Parsed,
    index: u32,
    real: &abi::Real,
    dport: u16,
    ingress: u32,
    now_ns: u64,
) -> Vec<(FlowKey, abi::Flow)> {
    let to_port = abi::Real {
        port_be: dport.to_be(),
        ..*real
    };
    engine::entries_for(
        parsed,
        index,
        &to_port,
        parsed.daddr,
        parsed.dport,
        ingress,
        now_ns,
    )
}

/// What the parser would make of the first client packet of connection
/// `key` arriving through `hop` (no hop: DR and TUN, whose entries need no MAC).
fn first_packet_of(key: &ConnKey, hop: Option<&ClientHop>) -> Parsed {
    Parsed {
        family: abi::family_of(key.caddr),
        proto: key.proto,
        saddr: key.caddr,
        daddr: key.vaddr,
        sport: key.cport,
        dport: key.vport,
        tcp_flags: 0,
        ip_len: 0,
        eth_src: hop.map_or([0; 6], |h| h.mac),
        eth_dst: hop.map_or([0; 6], |h| h.own_mac),
    }
}

/// The flow entries of an imported connection: those an upcall of its first
/// client packet through `hop` would install.
fn imported_entries(
    key: &ConnKey,
    index: u32,
    real: &abi::Real,
    dport: u16,
    hop: Option<&ClientHop>,
    last_seen_ns: u64,
) -> Vec<(FlowKey, abi::Flow)> {
    let parsed = first_packet_of(key, hop);
    let ingress = hop.map_or(0, |h| h.ifindex);
    flow_entries(&parsed, index, real, dport, ingress, last_seen_ns)
}

/// A real server's next hop as the plane knows it.
#[derive(Clone, Debug)]
struct RealHop {
    /// The last hop resolved; kept while the neighbour cannot be resolved.
    hop: Option<rvs_sys::NextHop>,
    /// The last resolution failed (logged once per change, not every round).
    failing: bool,
}

/// What of a next hop goes into frames (and `rvs_reals`).
fn frame_fields(h: &rvs_sys::NextHop) -> (u32, [u8; 6], [u8; 6]) {
    (h.ifindex, h.dmac, h.smac)
}

/// A MAC address as `ip link` writes it.
fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What one table sync wants in the maps.
#[derive(Default)]
struct Wanted {
    vips: HashMap<abi::VipKey, abi::Vip>,
    vip_addrs: HashSet<abi::VipKey>,
    reals: HashMap<u32, abi::Real>,
    hash: Vec<(u32, Vec<u32>)>,
}

pub struct XdpPlane {
    loaded: Loaded,
    config: abi::Config,
    senders: HashMap<u32, FrameSender>,
    /// Destination -> `rvs_reals` index.
    real_index: HashMap<DestId, u32>,
    free_reals: Vec<u32>,
    next_real: u32,
    written: Wanted,
    written_reals: HashMap<u32, abi::Real>,
    /// Next hops of the real servers in the table, by address.
    next_hops: HashMap<IpAddr, RealHop>,
    /// When the next hops are re-resolved next.
    next_refresh: std::time::Instant,
    /// Next hops towards clients of imported NAT connections.
    client_hops: HashMap<IpAddr, ClientHop>,
    /// Imported connections waiting for their entries, with their rounds.
    imports: std::collections::VecDeque<(ConnId, u8)>,
    flows: HashMap<ConnId, FlowRec>,
    /// Flows still to fold in the current round-robin pass.
    sync_queue: std::collections::VecDeque<ConnId>,
    by_flow: HashMap<FlowKey, (ConnId, bool)>,
    fnat_next_port: HashMap<IpAddr, u16>,
    fnat_in_use: HashSet<FlowKey>,
    fnat_pool: Vec<IpAddr>,
    counters: DriverCounters,
    /// Rules left out of `rvs_marks` at the last sync.
    marks_not_loaded: Vec<String>,
    /// What `rvs_marks` holds.
    written_marks: HashMap<abi::MarkKey, u32>,
    /// The guard's drop counter at the last view refresh, and whether it had
    /// moved since the refresh before.
    guard_drops_seen: u64,
    guard_active: bool,
    /// The ICMP answers' token bucket: tokens, and when it was last filled.
    unreachable_tokens: f64,
    unreachable_at_ns: u64,
    /// The rules `written_marks` was last fully synced from (`None`: a write
    /// failed, or never synced); unchanged rules cost no work.
    synced_rules: Option<Vec<MarkRule>>,
    events: Vec<abi::Event>,
    /// Frames decided in the current batch, sent once the control lock is released.
    outbox: Vec<(u32, Vec<u8>)>,
    /// Set while a batch of events is handled: flow writes are queued in
    /// `pending_flows` and written by `flush_flows`.
    batching: bool,
    pending_flows: Vec<(FlowKey, abi::Flow)>,
    /// Reused buffer of one egress's frames for `send_frames`.
    send_batch: Vec<Vec<u8>>,
    view: std::sync::Arc<std::sync::Mutex<XdpView>>,
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            u64::try_from(t.tv_sec())
                .unwrap_or(0)
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
        })
        .unwrap_or(0)
}

fn method_of(f: &Forward) -> Option<u8> {
    match f {
        Forward::Route => Some(abi::METHOD_DR),
        Forward::Tunnel(t) if t.kind != TunnelKind::Gre => Some(abi::METHOD_TUN),
        Forward::Masq => Some(abi::METHOD_NAT),
        Forward::FullNat => Some(abi::METHOD_FNAT),
        _ => None,
    }
}

/// What a service looks like to the plane, copied out under the lock.
struct ServiceSnap {
    /// `rvs_vips` key: the address form, or the firewall-mark form.
    key: abi::VipKey,
    /// Addresses that answer echo for it: the VIP; for a fwmark service the
    /// single-host prefixes of its mark's rules in its family.
    echo: Vec<IpAddr>,
    svc: u32,
    xdp_sched: Option<(u8, rvs_core::HashTable)>,
    dests: Vec<DestSnap>,
}

struct DestSnap {
    id: DestId,
    addr: IpAddr,
    port: u16,
    forward: Forward,
    usable: bool,
}

/// What the table sync needs of the core, copied out under the lock.
struct Snapshot {
    services: Vec<ServiceSnap>,
    /// The classifier's rules, in the order they were added.
    marks: Vec<MarkRule>,
}

fn family_code(f: Family) -> u8 {
    match f {
        Family::V4 => abi::FAMILY_V4,
        Family::V6 => abi::FAMILY_V6,
    }
}

fn snapshot(d: &Director) -> Snapshot {
    let mut out = Vec::new();
    for svc in d.services() {
        let (key, echo) = match svc.config.key {
            ServiceKey::Addr { proto, addr, port } => {
                if !matches!(proto, Protocol::Tcp | Protocol::Udp) {
                    continue;
                }
                (abi::VipKey::new(addr, port, proto.number()), vec![addr])
            }
            ServiceKey::Fwmark { mark, family } => {
                // Echo: only rules of one address; a wider prefix may hold
                // addresses that are not this director's.
                let hosts = d
                    .mark_rules()
                    .of_mark(mark, family)
                    .map(MarkRule::dest)
                    .filter(|p| p.size() == 1)
                    .map(|p| p.addr())
                    .collect();
                (abi::VipKey::fwmark(mark, family_code(family)), hosts)
            }
        };
        let dests: Vec<DestSnap> = d
            .dests_of(svc)
            .map(|x| DestSnap {
                id: x.id,
                addr: x.config.addr,
                port: x.config.port,
                forward: x.config.forward,
                usable: x.available && x.weight() > 0 && !x.overloaded,
            })
            .collect();
        let methods: HashSet<Option<u8>> = dests.iter().map(|x| method_of(&x.forward)).collect();
        let simple = svc.config.persistence.is_none()
            && !svc.config.one_packet
            && methods.len() == 1
            && !methods.contains(&Some(abi::METHOD_FNAT))
            && !methods.contains(&None)
            && d.dests_of(svc)
                .all(|x| x.config.u_threshold == 0 && x.config.l_threshold == 0);
        let xdp_sched = if simple {
            let kind = match svc.config.scheduler {
                SchedulerKind::Sh => Some(abi::SCHED_SH),
                SchedulerKind::Dh => Some(abi::SCHED_DH),
                SchedulerKind::Mh => Some(abi::SCHED_MH),
                _ => None,
            };
            kind.and_then(|k| d.hash_table(svc.id).map(|t| (k, t)))
        } else {
            None
        };
        out.push(ServiceSnap {
            key,
            echo,
            svc: svc.id.0,
            xdp_sched,
            dests,
        });
    }
    Snapshot {
        services: out,
        marks: d.mark_rules().iter().cloned().collect(),
    }
}

/// The `rvs_marks` entries of the rules, in order, as long as they fit
/// [`abi::MAX_MARK_ENTRIES`]; a rule that does not fit is left out whole and
/// returned (later, smaller rules may still fit).
fn mark_entries(rules: &[MarkRule]) -> (HashMap<abi::MarkKey, u32>, Vec<String>) {
    let mut entries = HashMap::new();
    let mut left_out = Vec::new();
    let budget = abi::MAX_MARK_ENTRIES as usize;
    for rule in rules {
        let keys = engine::mark_entries(rule);
        if entries.len() + keys.len() > budget {
            left_out.push(rule.to_string());
            continue;
        }
        entries.extend(keys.into_iter().map(|k| (k, rule.mark())));
    }
    (entries, left_out)
}

/// The capabilities the plane needs: CAP_NET_ADMIN (attach XDP), CAP_NET_RAW
/// (send upcalled packets on), and CAP_BPF or CAP_SYS_ADMIN (load the program).
/// The error names what is missing.
pub fn check_capabilities() -> Result<(), XdpStartError> {
    let mut missing: Vec<&str> = missing_capabilities(&[Capability::NetAdmin, Capability::NetRaw])
        .iter()
        .map(|c| c.name())
        .collect();
    if missing_capabilities(&[Capability::Bpf, Capability::SysAdmin]).len() == 2 {
        missing.push("CAP_BPF");
    }
    match missing.len() {
        0 => Ok(()),
        1 => Err(XdpStartError::Capability(missing.join(""))),
        n => Err(XdpStartError::Capability(format!(
            "{} and {}",
            missing[..n - 1].join(", "),
            missing[n - 1]
        ))),
    }
}

impl XdpPlane {
    /// Loads and attaches the program; says which capability is missing first.
    pub fn open(opts: &XdpOptions) -> Result<XdpPlane, XdpStartError> {
        check_capabilities()?;
        if opts.interfaces.is_empty() {
            return Err(XdpStartError::NoInterface);
        }
        let mut loaded = Loaded::load(rvs_xdp::XDP_OBJECT)?;
        let mut senders = HashMap::new();
        for name in &opts.interfaces {
            let iface = rvs_sys::interface(name).map_err(|source| XdpStartError::Interface {
                name: name.clone(),
                source,
            })?;
            let mode = if opts.generic {
                AttachMode::Generic
            } else {
                AttachMode::Native
            };
            loaded.attach(name, mode)?;
            loaded.add_tx_port(iface.index)?;
            let sender =
                FrameSender::open(iface.index).map_err(|source| XdpStartError::Sender {
                    name: name.clone(),
                    source,
                })?;
            senders.insert(iface.index, sender);
        }
        let mut config = abi::Config {
            upcall_rate: opts.upcall_rate,
            upcall_burst: opts.upcall_burst.max(1),
            tun_spread_bits: opts.tun_spread_bits.min(16),
            gue_sport_base: 49152,
            gue_sport_span: 16384,
            ..abi::Config::default()
        };
        for a in &opts.tun_source {
            match a {
                IpAddr::V4(v4) => config.tun_saddr4 = v4.octets(),
                IpAddr::V6(v6) => config.tun_saddr6 = v6.octets(),
            }
        }
        loaded.set_config(&config)?;
        Ok(XdpPlane {
            loaded,
            config,
            senders,
            real_index: HashMap::new(),
            free_reals: Vec::new(),
            next_real: 0,
            written: Wanted::default(),
            written_reals: HashMap::new(),
            next_hops: HashMap::new(),
            next_refresh: std::time::Instant::now() + NEXT_HOP_REFRESH,
            client_hops: HashMap::new(),
            imports: std::collections::VecDeque::new(),
            flows: HashMap::new(),
            sync_queue: std::collections::VecDeque::new(),
            by_flow: HashMap::new(),
            fnat_next_port: HashMap::new(),
            fnat_in_use: HashSet::new(),
            fnat_pool: opts.fnat_pool.clone(),
            counters: DriverCounters::default(),
            marks_not_loaded: Vec::new(),
            written_marks: HashMap::new(),
            guard_drops_seen: 0,
            guard_active: false,
            unreachable_tokens: UNREACHABLE_BURST,
            unreachable_at_ns: 0,
            synced_rules: None,
            events: Vec::with_capacity(EVENT_BATCH),
            outbox: Vec::with_capacity(EVENT_BATCH),
            send_batch: Vec::with_capacity(EVENT_BATCH),
            batching: false,
            pending_flows: Vec::with_capacity(2 * EVENT_BATCH),
            view: std::sync::Arc::new(std::sync::Mutex::new(XdpView {
                interfaces: opts.interfaces.clone(),
                ..XdpView::default()
            })),
        })
    }

    fn real_slot(&mut self, id: DestId) -> u32 {
        if let Some(&i) = self.real_index.get(&id) {
            return i;
        }
        let i = self.free_reals.pop().unwrap_or_else(|| {
            let i = self.next_real;
            self.next_real += 1;
            i
        });
        self.real_index.insert(id, i);
        i
    }

    /// Brings the maps in line with the core's table.
    pub async fn sync_table(&mut self, shared: &Shared) {
        let Snapshot {
            services: snap,
            marks,
        } = snapshot(lock(shared).director());
        // Resolve next hops outside the lock (a new one may wait for ARP/ND).
        let in_use: HashSet<IpAddr> = snap
            .iter()
            .flat_map(|s| s.dests.iter().map(|d| d.addr))
            .collect();
        self.next_hops.retain(|addr, _| in_use.contains(addr));
        for s in &snap {
            for d in &s.dests {
                if let hashbrown::hash_map::Entry::Vacant(slot) = self.next_hops.entry(d.addr) {
                    let resolved = rvs_sys::next_hop(d.addr).await;
                    if let Err(e) = &resolved {
                        self.counters.unresolved_reals += 1;
                        tracing::warn!(real = %d.addr, error = %e, "cannot resolve the real server's next hop (retried at each refresh)");
                        // The kernel goes on resolving it: look again soon.
                        self.next_refresh = self
                            .next_refresh
                            .min(std::time::Instant::now() + NEXT_HOP_RECHECK);
                    }
                    slot.insert(RealHop {
                        failing: resolved.is_err(),
                        hop: resolved.ok(),
                    });
                }
            }
        }
        if std::time::Instant::now() >= self.next_refresh {
            self.refresh_next_hops().await;
        }
        self.sync_marks(marks);
        let mut want = Wanted::default();
        let mut live: HashSet<DestId> = HashSet::new();
        let mut table_off = 0u32;
        for s in &snap {
            let key = s.key;
            let mut vip = abi::Vip {
                svc: s.svc,
                sched: abi::SCHED_UPCALL,
                ..abi::Vip::default()
            };
            for d in &s.dests {
                live.insert(d.id);
                let Some(method) = method_of(&d.forward) else {
                    continue;
                };
                let index = self.real_slot(d.id);
                let Some(nh) = self.next_hops.get(&d.addr).and_then(|h| h.hop.as_ref()) else {
                    continue;
                };
                let (tun_type, gue_port) = match d.forward {
                    Forward::Tunnel(t) if t.kind == TunnelKind::Gue => (abi::TUN_GUE, t.port),
                    _ => (abi::TUN_IPIP, 0),
                };
                want.reals.insert(
                    index,
                    abi::Real {
                        addr: abi::addr_bytes(d.addr),
                        family: abi::family_of(d.addr),
                        method,
                        tun_type,
                        flags: if d.usable { abi::REAL_F_USABLE } else { 0 },
                        port_be: d.port.to_be(),
                        gue_port_be: gue_port.to_be(),
                        ifindex: nh.ifindex,
                        dmac: nh.dmac,
                        smac: nh.smac,
                    },
                );
            }
            if let Some((kind, table)) = &s.xdp_sched {
                if table_off + table.size <= abi::HASH_SLOTS {
                    let slots: Vec<u32> = table
                        .slots
                        .iter()
                        .map(|slot| {
                            slot.and_then(|id| self.real_index.get(&id).copied())
                                .unwrap_or(abi::NO_REAL)
                        })
                        .collect();
                    vip.sched = *kind;
                    vip.sched_flags = if table.port { abi::SCHED_F_PORT } else { 0 };
                    vip.method = s
                        .dests
                        .first()
                        .and_then(|d| method_of(&d.forward))
                        .unwrap_or(0);
                    vip.table_off = table_off;
                    vip.table_size = table.size;
                    vip.table_bits = table.bits;
                    want.hash.push((table_off, slots));
                    table_off += table.size;
                }
            }
            want.vips.insert(key, vip);
            for a in &s.echo {
                want.vip_addrs.insert(abi::VipKey::new(*a, 0, 0));
            }
        }
        // Destinations gone from the table free their slots.
        let gone: Vec<DestId> = self
            .real_index
            .keys()
            .filter(|id| !live.contains(*id))
            .copied()
            .collect();
        for id in gone {
            if let Some(i) = self.real_index.remove(&id) {
                self.free_reals.push(i);
                want.reals.remove(&i);
            }
        }
        self.write(want);
    }

    /// Re-resolves the next hop of every real server in the table (see
    /// [`rvs_sys::refresh_next_hops`]); changed ones are written to
    /// `rvs_reals` by the sync that follows. Unresolvable ones keep their
    /// last hop and are logged once, when they fail.
    async fn refresh_next_hops(&mut self) {
        let known: Vec<(IpAddr, Option<rvs_sys::NextHop>)> = self
            .next_hops
            .iter()
            .map(|(addr, h)| (*addr, h.hop.clone()))
            .collect();
        let mut next_in = NEXT_HOP_REFRESH;
        let found = if known.is_empty() {
            Vec::new()
        } else {
            match rvs_sys::refresh_next_hops(&known).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "packet plane: cannot refresh the real servers' next hops");
                    Vec::new()
                }
            }
        };
        if !found.is_empty() {
            self.counters.next_hop_refreshes += 1;
        }
        for r in found {
            let Some(known) = self.next_hops.get_mut(&r.addr) else {
                continue;
            };
            if r.reverified {
                self.counters.next_hop_reverified += 1;
            }
            match (&r.error, &known.hop, &r.hop) {
                (Some(e), kept, _) => {
                    if r.reverified {
                        next_in = NEXT_HOP_RECHECK;
                    }
                    if !known.failing {
                        self.counters.next_hop_failures += 1;
                        tracing::warn!(
                            real = %r.addr,
                            error = %e,
                            kept_mac = %kept.as_ref().map_or_else(|| "none".to_owned(), |h| mac_text(h.dmac)),
                            "packet plane: the real server's next hop no longer resolves; its last MAC stays in use"
                        );
                    }
                }
                (None, Some(old), Some(new)) if frame_fields(old) != frame_fields(new) => {
                    self.counters.next_hop_changes += 1;
                    tracing::info!(
                        real = %r.addr,
                        old_mac = %mac_text(old.dmac),
                        new_mac = %mac_text(new.dmac),
                        old_interface = %old.ifname,
                        new_interface = %new.ifname,
                        "packet plane: the real server's next hop changed"
                    );
                }
                (None, None, Some(new)) => {
                    tracing::info!(real = %r.addr, mac = %mac_text(new.dmac), interface = %new.ifname, "packet plane: the real server's next hop resolved");
                }
                (None, Some(_), _) if known.failing => {
                    tracing::info!(real = %r.addr, "packet plane: the real server's next hop resolves again");
                }
                _ => {}
            }
            known.failing = r.error.is_some();
            known.hop = r.hop;
        }
        self.next_refresh = std::time::Instant::now() + next_in;
    }

    /// Brings `rvs_marks` in line with the classifier's rules, writing only
    /// the differences (deletions first, so that a rule replaced by a neighbour
    /// never leaves two entries over one packet).
    fn sync_marks(&mut self, rules: Vec<MarkRule>) {
        if self.synced_rules.as_ref() == Some(&rules) {
            return;
        }
        let (want, left_out) = mark_entries(&rules);
        if left_out != self.marks_not_loaded {
            for rule in &left_out {
                tracing::error!(
                    %rule,
                    max_entries = abi::MAX_MARK_ENTRIES,
                    "packet plane: firewall-mark rule does not fit the classifier map; not applied in XDP"
                );
            }
            self.marks_not_loaded = left_out;
        }
        let mut failed = None;
        let stale: Vec<abi::MarkKey> = self
            .written_marks
            .keys()
            .filter(|k| !want.contains_key(*k))
            .copied()
            .collect();
        for k in stale {
            match self.loaded.del_mark(&k) {
                Ok(()) => {
                    self.written_marks.remove(&k);
                }
                Err(e) => failed = Some(e),
            }
        }
        for (k, m) in &want {
            if self.written_marks.get(k) != Some(m) {
                match self.loaded.put_mark(k, *m) {
                    Ok(()) => {
                        self.written_marks.insert(*k, *m);
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        match failed {
            None => self.synced_rules = Some(rules),
            Some(e) => {
                // Tried again at the next sync.
                self.synced_rules = None;
                tracing::error!(error = %e, "packet plane classifier map update");
            }
        }
    }

    fn write(&mut self, want: Wanted) {
        let mut failures = Vec::new();
        for (i, r) in &want.reals {
            if self.written_reals.get(i) != Some(r) {
                if let Err(e) = self.loaded.put_real(*i, r) {
                    failures.push(e.to_string());
                } else {
                    self.written_reals.insert(*i, *r);
                }
            }
        }
        let stale: Vec<u32> = self
            .written_reals
            .keys()
            .filter(|i| !want.reals.contains_key(*i))
            .copied()
            .collect();
        for i in stale {
            if self.loaded.put_real(i, &abi::Real::default()).is_ok() {
                self.written_reals.remove(&i);
            }
        }
        for (off, slots) in &want.hash {
            let same = self
                .written
                .hash
                .iter()
                .any(|(o, s)| o == off && s == slots);
            if !same {
                if let Err(e) = self.loaded.put_hash_slots(*off, slots) {
                    failures.push(e.to_string());
                }
            }
        }
        for (k, v) in &want.vips {
            if self.written.vips.get(k) != Some(v) {
                if let Err(e) = self.loaded.put_vip(k, v) {
                    failures.push(e.to_string());
                }
            }
        }
        for k in self.written.vips.keys() {
            if !want.vips.contains_key(k) {
                let _ = self.loaded.del_vip(k);
            }
        }
        for k in &want.vip_addrs {
            if !self.written.vip_addrs.contains(k) {
                if let Err(e) = self.loaded.put_vip_addr(k) {
                    failures.push(e.to_string());
                }
            }
        }
        for k in &self.written.vip_addrs {
            if !want.vip_addrs.contains(k) {
                let _ = self.loaded.del_vip_addr(k);
            }
        }
        for f in failures {
            tracing::error!(error = %f, "packet plane map update");
        }
        self.written = Wanted {
            reals: HashMap::new(),
            ..want
        };
    }

    /// Handles what the program queued; returns how many events it took.
    pub fn handle_events(&mut self, shared: &Shared) -> usize {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let n = self.loaded.drain_events(EVENT_BATCH, &mut events);
        if n > 0 {
            let mut control = lock(shared);
            let now = control.now();
            let now_ns = monotonic_ns();
            let director = control.director_mut();
            // The batch's flow entries are written together, after the lock
            // is released and before any of its packets is sent on.
            self.batching = true;
            for ev in &events {
                self.handle_event(director, ev, now, now_ns);
            }
            self.batching = false;
        }
        self.flush_flows();
        // Decided packets go out after the lock is released, one sendmmsg(2)
        // per egress interface (bench/xdp-forwarding.sh's upcall transports:
        // batching beats one sendto per frame, and AF_XDP in copy mode).
        let mut outbox = std::mem::take(&mut self.outbox);
        while let Some(&(egress, _)) = outbox.first() {
            let mut batch = std::mem::take(&mut self.send_batch);
            batch.clear();
            outbox.retain_mut(|(e, frame)| {
                if *e == egress {
                    batch.push(std::mem::take(frame));
                    false
                } else {
                    true
                }
            });
            self.send_frames(egress, &batch);
            self.send_batch = batch;
        }
        self.outbox = outbox;
        self.events = events;
        n
    }

    /// Writes the flow entries queued while handling a batch of events with
    /// one `BPF_MAP_UPDATE_BATCH`. Entries after a failure are not written:
    /// their flows' next packets come up again and are installed then.
    fn flush_flows(&mut self) {
        if self.pending_flows.is_empty() {
            return;
        }
        if let Err((done, err)) = self.loaded.put_flows(&self.pending_flows) {
            tracing::warn!(error = %err, written = done, of = self.pending_flows.len(), "flow install");
        }
        self.pending_flows.clear();
    }

    /// Sends `frames` out of `egress`, batched; the ones the kernel does not
    /// take (after one retry of the rest) are counted as send errors.
    fn send_frames(&mut self, egress: u32, frames: &[Vec<u8>]) {
        let Some(sender) = self.senders.get(&egress) else {
            self.counters.send_errors += frames.len() as u64;
            return;
        };
        let mut done = 0;
        for _ in 0..2 {
            match sender.send_many(&frames[done..]) {
                Ok(n) => done += n,
                Err(e) => {
                    tracing::debug!(error = %e, "packet plane: re-send");
                    // The first frame failed outright: skip it.
                    done += 1;
                    self.counters.send_errors += 1;
                }
            }
            if done >= frames.len() {
                return;
            }
        }
        self.counters.send_errors += (frames.len() - done) as u64;
    }

    fn handle_event(&mut self, d: &mut Director, ev: &abi::Event, now: Time, now_ns: u64) {
        let Ok(parsed) = engine::parse(&ev.frame) else {
            return;
        };
        let packet = Packet {
            proto: parsed.proto,
            saddr: parsed.saddr,
            sport: parsed.sport,
            daddr: parsed.daddr,
            dport: parsed.dport,
            // The mark the program classified by (the same rules as the core's).
            fwmark: d.classify(parsed.proto, parsed.daddr, parsed.dport),
            tcp: TcpFlags {
                syn: parsed.tcp_flags & 0x02 != 0,
                fin: parsed.tcp_flags & 0x01 != 0,
                ack: parsed.tcp_flags & 0x10 != 0,
                rst: parsed.tcp_flags & 0x04 != 0,
            },
            sctp: Default::default(),
            len: parsed.ip_len,
        };
        match ev.kind {
            abi::EV_UPCALL => {
                self.counters.upcalls += 1;
                match d.handle_in(&packet, now) {
                    InVerdict::Forward(f) => {
                        let Some(entries) = self.install(d, &parsed, &f, ev, now_ns, true) else {
                            return;
                        };
                        self.send_on(&entries, &ev.frame, ev.ifindex);
                        self.counters.upcalls_forwarded += 1;
                    }
                    InVerdict::Refuse(_) => {
                        self.counters.upcalls_refused += 1;
                        self.answer_refused(&ev.frame, ev.ifindex, now_ns);
                    }
                    InVerdict::Drop => self.counters.upcalls_refused += 1,
                    InVerdict::Pass => self.counters.upcalls_passed += 1,
                }
            }
            abi::EV_NEW => {
                self.counters.new_confirmed += 1;
                if let InVerdict::Forward(f) = d.handle_in(&packet, now) {
                    let core_real = self.real_index.get(&f.dest).copied();
                    // XDP wrote the entries; they are rewritten only when the core
                    // chose another real server (its choice wins).
                    let mismatch = core_real != Some(ev.real);
                    if mismatch {
                        self.counters.new_mismatch += 1;
                    }
                    let _ = self.install(d, &parsed, &f, ev, now_ns, mismatch);
                }
            }
            abi::EV_CONTROL => {
                self.counters.control += 1;
                let key = parsed.flow_key();
                let Some(&(id, outbound)) = self.by_flow.get(&key) else {
                    self.counters.unknown_flow += 1;
                    return;
                };
                let Some(rec) = self.flows.get(&id) else {
                    return;
                };
                let ckey = rec.key;
                if !d.handle_segment(id, &ckey, outbound, packet.tcp, parsed.ip_len, now) {
                    self.forget(id);
                }
            }
            _ => {}
        }
    }

    /// Installs the flow entries of a core decision and registers the flow.
    /// Returns the in entry (key, entry, real) for sending the packet on.
    fn install(
        &mut self,
        d: &Director,
        parsed: &Parsed,
        f: &rvs_core::Forwarding,
        ev: &abi::Event,
        now_ns: u64,
        write: bool,
    ) -> Option<(FlowKey, abi::Flow, abi::Real)> {
        let index = *self.real_index.get(&f.dest)?;
        let Some(real) = self.written_reals.get(&index).copied() else {
            self.counters.unresolved_reals += 1;
            return None;
        };
        let entries = if f.forward == Forward::FullNat {
            self.fullnat_entries(parsed, index, &real, f, ev.ifindex, now_ns)?
        } else {
            flow_entries(parsed, index, &real, f.dport, ev.ifindex, now_ns)
        };
        let (in_key, entry, out_key) = self.put_entries(&entries, write)?;
        if let Some(id) = f.conn {
            if let Some(c) = d.conn(id) {
                self.register(id, c.key, in_key, out_key);
            }
        }
        Some((in_key, entry, real))
    }

    /// Writes `entries` to the flow map (when `write`); returns the in entry
    /// and the out entry's key.
    fn put_entries(
        &mut self,
        entries: &[(FlowKey, abi::Flow)],
        write: bool,
    ) -> Option<(FlowKey, abi::Flow, Option<FlowKey>)> {
        let mut in_entry = None;
        let mut out_key = None;
        if write && self.batching {
            self.pending_flows.extend_from_slice(entries);
        }
        for (k, e) in entries {
            if write && !self.batching {
                if let Err(err) = self.loaded.put_flow(k, e) {
                    tracing::warn!(error = %err, "flow install");
                    return None;
                }
            }
            if e.flags & abi::FLOW_F_OUT != 0 {
                out_key = Some(*k);
            } else {
                in_entry = Some((*k, *e));
            }
        }
        let (in_key, entry) = in_entry?;
        Some((in_key, entry, out_key))
    }

    /// Binds the flow entries to core connection `id` of key `key` (an entry
    /// of an older connection under the same id is forgotten first).
    fn register(&mut self, id: ConnId, key: ConnKey, in_key: FlowKey, out_key: Option<FlowKey>) {
        if let Some(old) = self.flows.get(&id) {
            if old.key != key {
                self.forget(id);
            }
        }
        self.by_flow.insert(in_key, (id, false));
        if let Some(k) = out_key {
            self.by_flow.insert(k, (id, true));
        }
        self.flows.insert(
            id,
            FlowRec {
                key,
                in_key,
                out_key,
                folded: [0; 4],
            },
        );
    }

    /// Installs the entries of the connections a backup sync daemon imported
    /// since the last round (see the module note), and retries those still
    /// waiting. The control lock is held only to copy the connections; next
    /// hops are resolved and entries written after it is released (a
    /// connection that expires meanwhile is removed at the traffic sync).
    pub async fn install_imported(&mut self, shared: &Shared) {
        let todo = {
            let mut control = lock(shared);
            let fresh = control.take_imported();
            if fresh.is_empty() && self.imports.is_empty() {
                return;
            }
            let now = control.now();
            let now_ns = monotonic_ns();
            for id in fresh {
                if self.imports.len() >= IMPORT_QUEUE_MAX {
                    self.imports.pop_front();
                    self.counters.imported_dropped += 1;
                }
                self.imports.push_back((id, 0));
            }
            let d = control.director();
            let mut seen = HashSet::new();
            let mut todo = Vec::new();
            for (id, rounds) in self.imports.drain(..) {
                if !seen.insert(id) {
                    continue;
                }
                // Gone already, or a template (no flow entries): nothing to do.
                let Some(c) = d.conn(id) else { continue };
                let tcp_or_udp = [Protocol::Tcp.number(), Protocol::Udp.number()];
                if c.flags.template || !tcp_or_udp.contains(&c.key.proto) {
                    continue;
                }
                let Some(dest) = d.dest(c.dest) else { continue };
                let forward = dest.config.forward;
                if forward == Forward::FullNat {
                    self.counters.imported_fullnat_skipped += 1;
                    continue;
                }
                if method_of(&forward).is_none() {
                    // GRE: not forwarded by the packet plane.
                    continue;
                }
                let refreshed = c
                    .expires
                    .as_millis()
                    .saturating_sub(c.timeout().as_millis());
                let idle_ms = now.as_millis().saturating_sub(refreshed);
                todo.push(ImportedConn {
                    id,
                    key: c.key,
                    dest: c.dest,
                    dport: c.dport,
                    nat: forward == Forward::Masq,
                    last_seen_ns: now_ns.saturating_sub(idle_ms.saturating_mul(1_000_000)),
                    rounds,
                });
            }
            todo
        };
        self.resolve_clients(&todo).await;
        for t in todo {
            if self.flows.get(&t.id).is_some_and(|r| r.key == t.key) {
                continue;
            }
            let real = self
                .real_index
                .get(&t.dest)
                .and_then(|i| self.written_reals.get(i).map(|r| (*i, *r)));
            let hop = self.client_hops.get(&t.key.caddr).copied();
            let (Some((index, real)), true) = (real, !t.nat || hop.is_some()) else {
                if t.rounds + 1 >= IMPORT_ROUNDS {
                    self.counters.imported_dropped += 1;
                } else {
                    self.imports.push_back((t.id, t.rounds + 1));
                }
                continue;
            };
            let hop = hop.filter(|_| t.nat);
            let entries =
                imported_entries(&t.key, index, &real, t.dport, hop.as_ref(), t.last_seen_ns);
            match self.put_entries(&entries, true) {
                Some((in_key, _, out_key)) => {
                    self.register(t.id, t.key, in_key, out_key);
                    self.counters.imported_installed += 1;
                }
                None => self.counters.imported_dropped += 1,
            }
        }
        self.counters.imported_pending = self.imports.len() as u64;
    }

    /// Resolves the next hops towards the clients of imported NAT connections
    /// that the cache lacks, within [`CLIENT_RESOLVE_BUDGET`] (the rest wait
    /// for the next round).
    async fn resolve_clients(&mut self, todo: &[ImportedConn]) {
        let deadline = std::time::Instant::now() + CLIENT_RESOLVE_BUDGET;
        let mut failed = HashSet::new();
        for t in todo.iter().filter(|t| t.nat) {
            let addr = t.key.caddr;
            if self.client_hops.contains_key(&addr) || failed.contains(&addr) {
                continue;
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            match rvs_sys::next_hop(addr).await {
                Ok(nh) => {
                    if self.client_hops.len() >= CLIENT_HOPS_MAX {
                        self.client_hops.clear();
                    }
                    self.client_hops.insert(addr, ClientHop::from(&nh));
                }
                Err(e) => {
                    tracing::debug!(client = %addr, error = %e, "cannot resolve the client's next hop");
                    failed.insert(addr);
                }
            }
        }
    }

    fn fullnat_entries(
        &mut self,
        parsed: &Parsed,
        index: u32,
        real: &abi::Real,
        f: &rvs_core::Forwarding,
        ingress: u32,
        now_ns: u64,
    ) -> Option<Vec<(FlowKey, abi::Flow)>> {
        let local = *self
            .fnat_pool
            .iter()
            .find(|a| a.is_ipv4() == f.daddr.is_ipv4())?;
        let next = self.fnat_next_port.entry(local).or_insert(1024);
        let mut lport = None;
        for _ in 0..(65535 - 1024) {
            let p = *next;
            *next = if *next == 65535 { 1024 } else { *next + 1 };
            let k = FlowKey::new(f.daddr, f.dport, local, p, parsed.proto);
            if !self.fnat_in_use.contains(&k) {
                lport = Some((p, k));
                break;
            }
        }
        let (lport, out_key) = lport?;
        self.fnat_in_use.insert(out_key);
        let tcp = parsed.proto == Protocol::Tcp.number();
        let in_entry = abi::Flow {
            new_saddr: abi::addr_bytes(local),
            new_daddr: real.addr,
            new_sport_be: lport.to_be(),
            new_dport_be: f.dport.to_be(),
            real: index,
            method: abi::METHOD_FNAT,
            flags: abi::FLOW_F_SNAT
                | abi::FLOW_F_DNAT
                | if tcp { abi::FLOW_F_NOTIFY_ACK } else { 0 },
            last_seen_ns: now_ns,
            ..abi::Flow::default()
        };
        let out_entry = abi::Flow {
            new_saddr: abi::addr_bytes(parsed.daddr),
            new_daddr: abi::addr_bytes(parsed.saddr),
            new_sport_be: parsed.dport.to_be(),
            new_dport_be: parsed.sport.to_be(),
            real: abi::NO_REAL,
            ifindex: ingress,
            dmac: parsed.eth_src,
            smac: parsed.eth_dst,
            method: abi::METHOD_FNAT,
            flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT | abi::FLOW_F_DNAT,
            last_seen_ns: now_ns,
            ..abi::Flow::default()
        };
        Some(vec![(parsed.flow_key(), in_entry), (out_key, out_entry)])
    }

    fn send_on(&mut self, entry: &(FlowKey, abi::Flow, abi::Real), frame: &[u8], ingress: u32) {
        let (key, flow, real) = entry;
        let out = match engine::apply(&self.config, Some(real), key, flow, frame, ingress) {
            Ok(o) => o,
            Err(_) => {
                self.counters.send_errors += 1;
                return;
            }
        };
        let egress = match out.verdict {
            Verdict::Tx => ingress,
            Verdict::Redirect(i) => i,
            _ => return,
        };
        self.outbox.push((egress, out.frame));
    }

    /// Answers a refused new connection with ICMP "port unreachable", as the
    /// kernel's `ip_vs_leave` does, within a global rate limit (the kernel's
    /// `icmp_msgs_per_sec` default: 1000 per second, burst 50).
    fn answer_refused(&mut self, frame: &[u8], ingress: u32, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.unreachable_at_ns);
        self.unreachable_at_ns = now_ns;
        self.unreachable_tokens =
            (self.unreachable_tokens + elapsed as f64 * UNREACHABLE_PER_NS).min(UNREACHABLE_BURST);
        if self.unreachable_tokens < 1.0 {
            self.counters.unreachable_limited += 1;
            return;
        }
        if let Some(answer) = rvs_wire::icmp::port_unreachable(frame) {
            self.unreachable_tokens -= 1.0;
            self.counters.unreachable_sent += 1;
            self.outbox.push((ingress, answer));
        }
    }

    /// Removes the flow of connection `id`: its entries, unless a later
    /// connection registered the same key (an imported connection that
    /// replaced an expired one, a flow reinstalled by an upcall).
    fn forget(&mut self, id: ConnId) {
        // Queued writes go first, so that none re-creates an entry deleted here.
        self.flush_flows();
        if let Some(rec) = self.flows.remove(&id) {
            for k in std::iter::once(rec.in_key).chain(rec.out_key) {
                if self.by_flow.get(&k).is_some_and(|(owner, _)| *owner != id) {
                    continue;
                }
                let _ = self.loaded.del_flow(&k);
                self.by_flow.remove(&k);
                self.fnat_in_use.remove(&k);
            }
        }
    }

    /// Folds fast-path counters into the core and drops entries of expired
    /// connections. Each call visits a slice of the flows, round robin, so that a
    /// whole pass takes at most [`TRAFFIC_PASS`] whatever the table's size, and
    /// reads the flow map without holding the control lock (upcalls go on).
    pub fn sync_traffic(&mut self, shared: &Shared) {
        if self.sync_queue.is_empty() {
            self.sync_queue = self.flows.keys().copied().collect();
        }
        let passes = (TRAFFIC_PASS.as_millis() / TRAFFIC_EVERY.as_millis()).max(1) as usize;
        let budget = self.flows.len().div_ceil(passes).max(MIN_SYNC_PER_TICK);
        let take = budget.min(self.sync_queue.len());
        let batch: Vec<ConnId> = self.sync_queue.drain(..take).collect();
        // (id, key, counters seen, last seen ns)
        let mut seen_all = Vec::with_capacity(batch.len());
        for id in batch {
            let Some(rec) = self.flows.get(&id) else {
                continue;
            };
            let mut seen = [0u64; 4];
            let mut last_ns = 0u64;
            if let Some(f) = self.loaded.get_flow(&rec.in_key).ok().flatten() {
                seen[0] = f.packets;
                seen[1] = f.bytes;
                last_ns = last_ns.max(f.last_seen_ns);
            }
            if let Some(f) = rec
                .out_key
                .and_then(|k| self.loaded.get_flow(&k).ok().flatten())
            {
                seen[2] = f.packets;
                seen[3] = f.bytes;
                last_ns = last_ns.max(f.last_seen_ns);
            }
            seen_all.push((id, rec.key, seen, last_ns));
        }
        let mut gone = Vec::new();
        {
            let mut control = lock(shared);
            let now = control.now();
            let now_ns = monotonic_ns();
            let d = control.director_mut();
            for (id, key, seen, last_ns) in seen_all {
                let Some(rec) = self.flows.get_mut(&id) else {
                    continue;
                };
                let delta = Counters {
                    conns: 0,
                    in_pkts: seen[0].saturating_sub(rec.folded[0]),
                    in_bytes: seen[1].saturating_sub(rec.folded[1]),
                    out_pkts: seen[2].saturating_sub(rec.folded[2]),
                    out_bytes: seen[3].saturating_sub(rec.folded[3]),
                };
                rec.folded = seen;
                let idle_ms = now_ns.saturating_sub(last_ns) / 1_000_000;
                let last_active = Time::from_millis(now.as_millis().saturating_sub(idle_ms));
                let alive = d.conn(id).is_some_and(|c| c.key == key);
                if !alive || !d.handle_traffic(id, &key, delta, last_active) {
                    gone.push(id);
                }
            }
        }
        for id in gone {
            self.forget(id);
        }
    }

    /// The program's counters, summed over CPUs, with their names.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        match self.loaded.stats() {
            Ok(s) => abi::Stat::ALL
                .iter()
                .zip(s)
                .map(|(st, v)| (st.name(), v))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn counters(&self) -> DriverCounters {
        self.counters
    }

    /// The view `GET /v1/xdp` reads, refreshed at every traffic sync.
    pub fn view(&self) -> std::sync::Arc<std::sync::Mutex<XdpView>> {
        self.view.clone()
    }

    fn refresh_view(&mut self) {
        let program: std::collections::BTreeMap<String, u64> = self
            .stats()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let guard_drops = program.get("drop_guard").copied().unwrap_or(0);
        let guard_active = guard_drops > self.guard_drops_seen;
        if guard_active && !self.guard_active {
            self.counters.guard_activations += 1;
            tracing::warn!(
                dropped = guard_drops - self.guard_drops_seen,
                "packet plane: the flood guard is dropping new flows"
            );
        }
        self.guard_drops_seen = guard_drops;
        self.guard_active = guard_active;
        let mut v = match self.view.lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        v.program = program;
        v.driver = self.counters;
        v.flows = self.flows.len();
        v.mark_entries = self.written_marks.len();
        v.mark_rules_not_loaded = self.marks_not_loaded.clone();
        v.guard_active = guard_active;
    }

    /// Runs the plane on the calling (blocking) thread until `quit` turns true:
    /// events as they come (poll(2) on the ring buffer), table and traffic syncs
    /// on timers. Next-hop resolution runs on a small runtime of this thread, so
    /// it sees this thread's network namespace.
    pub fn run_blocking(mut self, shared: Shared, quit: watch::Receiver<bool>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "packet plane: runtime");
                return;
            }
        };
        let mut next_table = std::time::Instant::now();
        let mut next_traffic = std::time::Instant::now() + TRAFFIC_EVERY;
        while !*quit.borrow() {
            let now = std::time::Instant::now();
            if now >= next_table {
                rt.block_on(async {
                    self.sync_table(&shared).await;
                    self.install_imported(&shared).await;
                });
                next_table = now + SYNC_EVERY;
            }
            if now >= next_traffic {
                self.sync_traffic(&shared);
                self.refresh_view();
                next_traffic = now + TRAFFIC_EVERY;
            }
            let wait = next_table
                .min(next_traffic)
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(50));
            let wait_ms = u16::try_from(wait.as_millis()).unwrap_or(50);
            let readable = {
                let mut fds = [PollFd::new(self.loaded.events_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, wait_ms) {
                    Ok(n) => n > 0,
                    Err(nix::errno::Errno::EINTR) => false,
                    Err(e) => {
                        tracing::error!(error = %e, "packet plane: poll on the event ring");
                        false
                    }
                }
            };
            if readable {
                while self.handle_events(&shared) == EVENT_BATCH {}
            }
        }
        self.refresh_view();
        // Dropping `self` detaches the program from its interfaces.
        tracing::info!(stats = ?self.stats(), counters = ?self.counters, "packet plane stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Option<MarkRule> {
        text.parse().ok()
    }

    /// An Ethernet frame of a client's first packet (checksums left 0: the
    /// parser does not read them).
    fn client_frame(
        key: &ConnKey,
        client_mac: [u8; 6],
        own_mac: [u8; 6],
        tcp_flags: u8,
    ) -> Vec<u8> {
        let tcp = key.proto == Protocol::Tcp.number();
        let mut l4 = Vec::new();
        l4.extend_from_slice(&key.cport.to_be_bytes());
        l4.extend_from_slice(&key.vport.to_be_bytes());
        if tcp {
            l4.extend_from_slice(&[
                0, 0, 0, 1, 0, 0, 0, 0, 0x50, tcp_flags, 0xff, 0xff, 0, 0, 0, 0,
            ]);
        } else {
            l4.extend_from_slice(&8u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        let mut f = Vec::new();
        f.extend_from_slice(&own_mac);
        f.extend_from_slice(&client_mac);
        match (key.caddr, key.vaddr) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
                f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0, 0x40, 0, 64, key.proto, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                f.extend_from_slice(&[key.proto, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed families"),
        }
        f.extend_from_slice(&l4);
        f
    }

    fn real(addr: &str, method: u8, port: u16) -> abi::Real {
        let addr: IpAddr = addr.parse().unwrap();
        abi::Real {
            addr: abi::addr_bytes(addr),
            family: abi::family_of(addr),
            method,
            flags: abi::REAL_F_USABLE,
            port_be: port.to_be(),
            ifindex: 9,
            dmac: [2, 0, 0, 0, 0, 9],
            smac: [2, 0, 0, 0, 0, 8],
            ..abi::Real::default()
        }
    }

    /// An imported connection gets, byte for byte, the entries the upcall of
    /// its first client packet installs (DR and NAT, IPv4 and IPv6, TCP and
    /// UDP; NAT to the core's port, not the real's).
    #[test]
    fn imported_entries_equal_those_of_the_first_packet() {
        let hop = ClientHop {
            ifindex: 4,
            mac: [2, 0, 0, 0, 0, 0xc1],
            own_mac: [2, 0, 0, 0, 0, 0xd1],
        };
        let cases = [
            ("192.0.2.7", "198.51.100.1", "10.0.1.2", 6, 33000, 80, 8080),
            ("192.0.2.7", "198.51.100.1", "10.0.1.2", 17, 5353, 53, 53),
            (
                "2001:db8::7",
                "2001:db8:1::1",
                "2001:db8:2::2",
                6,
                40000,
                443,
                8443,
            ),
            (
                "2001:db8::7",
                "2001:db8:1::1",
                "2001:db8:2::2",
                17,
                1234,
                53,
                5353,
            ),
        ];
        let now_ns = 123_456_789;
        let mut nat_checked = 0;
        for (caddr, vaddr, raddr, proto, cport, vport, dport) in cases {
            let key = ConnKey {
                proto,
                template: false,
                caddr: caddr.parse().unwrap(),
                cport,
                vaddr: vaddr.parse().unwrap(),
                vport,
            };
            let frame = client_frame(&key, hop.mac, hop.own_mac, 0x02);
            let parsed = engine::parse(&frame).unwrap();
            assert_eq!(
                parsed.flow_key(),
                first_packet_of(&key, Some(&hop)).flow_key()
            );
            for method in [abi::METHOD_DR, abi::METHOD_TUN, abi::METHOD_NAT] {
                // The real's configured port differs from the core's `dport`.
                let r = real(raddr, method, 9999);
                let upcall = flow_entries(&parsed, 3, &r, dport, hop.ifindex, now_ns);
                let nat = method == abi::METHOD_NAT;
                let imported = imported_entries(&key, 3, &r, dport, nat.then_some(&hop), now_ns);
                assert_eq!(imported, upcall, "{caddr} {proto} method {method}");
                assert_eq!(imported.len(), if nat { 2 } else { 1 });
                let (in_key, in_entry) = imported[0];
                assert_eq!(in_key, parsed.flow_key());
                assert_eq!(in_entry.real, 3);
                if nat {
                    assert_eq!(u16::from_be(in_entry.new_dport_be), dport);
                    let (out_key, out) = imported[1];
                    assert_eq!(out_key.saddr, r.addr);
                    assert_eq!(u16::from_be(out_key.sport_be), dport);
                    assert_eq!(out_key.daddr, abi::addr_bytes(key.caddr));
                    assert_eq!(u16::from_be(out_key.dport_be), cport);
                    assert_eq!(out.new_saddr, abi::addr_bytes(key.vaddr));
                    assert_eq!(u16::from_be(out.new_sport_be), vport);
                    assert_eq!((out.ifindex, out.dmac, out.smac), (4, hop.mac, hop.own_mac));
                    nat_checked += 1;
                }
            }
        }
        assert_eq!(nat_checked, 4);
    }

    #[test]
    fn rules_beyond_the_classifier_map_are_left_out_whole() {
        let rules: Vec<MarkRule> = [
            "1 tcp 10.0.0.1 1-65000",
            "2 tcp 10.0.0.2 80,443",
            "3 udp 10.0.0.0/24 1-600",
            "4 tcp 10.0.0.3 all",
        ]
        .iter()
        .filter_map(|t| rule(t))
        .collect();
        assert_eq!(rules.len(), 4);
        let (entries, left_out) = mark_entries(&rules);
        // 65000 + 2 + 1 fit; the 600 ports of rule 3 would pass 65536.
        assert_eq!(left_out, ["3 udp 10.0.0.0/24 1-600"]);
        assert_eq!(entries.len(), 65003);
        assert_eq!(entries.values().filter(|m| **m == 3).count(), 0);
        let every =
            abi::MarkKey::rule(6, "10.0.0.3".parse().unwrap_or(IpAddr::from([0; 4])), 32, 0);
        assert_eq!(entries.get(&every), Some(&4));
    }
}
