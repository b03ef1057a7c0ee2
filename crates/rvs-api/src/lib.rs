//! The JSON types of rvsd's admin API (`/v1/...`), shared by the daemon, `rvsadm`
//! and the tests, and their conversions to and from the core's model.
//!
//! Invariants: every type here is plain data that round-trips through JSON; a
//! request is turned into core types only through [`ServiceSpec::to_core`] and
//! [`ServerSpec::to_core`], which refuse out-of-range values with a message that names
//! the field. `docs/openapi.yaml` documents the same shapes.

#![forbid(unsafe_code)]

mod convert;
mod error;
mod sync;
mod vrrp;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use convert::{key_of, ref_of, server_spec_of, service_spec_of};
pub use error::{ApiError, ErrorKind};
pub use sync::{
    DaemonSpec, DaemonState, DaemonView, DaemonsView, SyncStatsView, MAX_IFNAME_LEN,
    MAX_SYNC_MAXLEN,
};
pub use vrrp::{VrrpCountersView, VrrpGroupView, VrrpInstanceView, VrrpTrackerView, VrrpView};

/// API version prefix of every path.
pub const PREFIX: &str = "/v1";

/// A virtual service: `{"protocol":"tcp","address":"10.0.0.1","port":80}` or
/// `{"protocol":"fwmark","mark":6666,"ipv6":false}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServiceRef {
    Tcp {
        address: IpAddr,
        port: u16,
    },
    Udp {
        address: IpAddr,
        port: u16,
    },
    Sctp {
        address: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        #[serde(default)]
        ipv6: bool,
    },
}

/// Scheduler flags as the kernel numbers them: flag1 = `flag-1`/`sh-fallback`/
/// `mh-fallback`, flag2 = `flag-2`/`sh-port`/`mh-port`, flag3 = `flag-3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedFlagsSpec {
    #[serde(default)]
    pub flag1: bool,
    #[serde(default)]
    pub flag2: bool,
    #[serde(default)]
    pub flag3: bool,
}

/// Persistence (`-p timeout -M netmask`): `netmask` is a dotted IPv4 mask for IPv4
/// services, `prefix_len` the granularity of IPv6 services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceSpec {
    pub timeout: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u32>,
}

/// A virtual service's configuration (`ipvsadm -A/-E`). Omitted fields take
/// ipvsadm's defaults (wlc, no persistence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub service: ServiceRef,
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    #[serde(default)]
    pub sched_flags: SchedFlagsSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceSpec>,
    #[serde(default)]
    pub one_packet: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe: Option<String>,
}

fn default_scheduler() -> String {
    "wlc".to_string()
}

/// Forwarding method of a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardSpec {
    /// `-m`, NAT.
    Masq,
    /// `-g`, direct routing (ipvsadm's default).
    Route,
    /// `-i`, tunnelling; see [`TunnelSpec`].
    Tunnel,
    /// The real server is this host.
    Local,
    /// Source and destination NAT (rvs extension).
    Fullnat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelCsumSpec {
    #[default]
    Nocsum,
    Csum,
    Remcsum,
}

/// Tunnel options of a `-i` real server (`--tun-type/--tun-port/--tun-*csum`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    #[serde(default, rename = "type")]
    pub kind: TunnelType,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub csum: TunnelCsumSpec,
}

/// A real server's configuration (`ipvsadm -a/-e`). Omitted fields take ipvsadm's
/// defaults (route, weight 1, no thresholds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub address: IpAddr,
    #[serde(default)]
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_forward")]
    pub forward: ForwardSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSpec>,
    #[serde(default)]
    pub u_threshold: u32,
    #[serde(default)]
    pub l_threshold: u32,
    /// rvs extension, socket plane only: send the real server a PROXY protocol
    /// header with the client's address first. Absent in an `edit_server`:
    /// unchanged; `"none"` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolSpec>,
}

/// PROXY protocol version for a real server (an rvs extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolSpec {
    None,
    V1,
    V2,
}

fn default_weight() -> u32 {
    1
}

fn default_forward() -> ForwardSpec {
    ForwardSpec::Route
}

/// Connection timeouts in seconds (`--set tcp tcpfin udp`; 0 keeps a value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    pub tcp: u64,
    pub tcpfin: u64,
    pub udp: u64,
}

/// One change to the table. A request carries a list of them, applied all or nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    AddService {
        spec: ServiceSpec,
    },
    EditService {
        spec: ServiceSpec,
    },
    DeleteService {
        service: ServiceRef,
    },
    /// `-C`: delete every service.
    Clear {},
    AddServer {
        service: ServiceRef,
        server: ServerSpec,
    },
    EditServer {
        service: ServiceRef,
        server: ServerSpec,
    },
    DeleteServer {
        service: ServiceRef,
        address: IpAddr,
        #[serde(default)]
        port: u16,
    },
    /// `-Z`: zero the counters of one service, or of all when `service` is absent.
    Zero {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<ServiceRef>,
    },
    SetTimeouts {
        timeouts: TimeoutsSpec,
    },
    /// rvs extension: add a firewall-mark classifier rule (refused when it
    /// overlaps one in force).
    AddMarkRule {
        rule: MarkRuleSpec,
    },
    /// rvs extension: delete the classifier rule equal to `rule`.
    DeleteMarkRule {
        rule: MarkRuleSpec,
    },
    /// rvs extension: delete every classifier rule (`-C` keeps them, as
    /// `ipvsadm -C` keeps iptables' MARK rules).
    ClearMarkRules {},
}

/// A firewall-mark classifier rule (an rvs extension in place of iptables'
/// MARK target): traffic of `protocol` to `destination` on one of `ports`
/// carries `mark`. `{"mark":6666,"protocol":"tcp","destination":"192.0.2.10/32",
/// "ports":"80,443"}`; `destination` is an address or a prefix, `ports` a
/// list of ports and ranges (`8000-8010`), `all` or absent for every port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRuleSpec {
    pub mark: u32,
    pub protocol: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

impl MarkRuleSpec {
    /// The core's rule, or why it is not one.
    pub fn to_core(&self) -> Result<rvs_core::MarkRule, ApiError> {
        let ports = self.ports.as_deref().unwrap_or("all");
        let mark = self.mark.to_string();
        let words = [
            mark.as_str(),
            self.protocol.as_str(),
            self.destination.as_str(),
            ports,
        ];
        rvs_core::mark::parse_rule_words(&words)
            .map_err(|e| ApiError::invalid(format!("mark rule: {e}")))
    }

    /// The canonical spec of a core rule (what listings show).
    pub fn of(rule: &rvs_core::MarkRule) -> Self {
        MarkRuleSpec {
            mark: rule.mark(),
            protocol: rule.proto().name().to_ascii_lowercase(),
            destination: rule.dest().to_string(),
            ports: (!rule.all_ports()).then(|| rule.ports_text()),
        }
    }
}

/// Body of `POST /v1/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBatch {
    pub commands: Vec<Command>,
    /// Check the batch and answer the table it would give, changing nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Answer of `POST /v1/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub applied: usize,
    /// With `dry_run`: the table as it would be after the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableView>,
}

/// Cumulative counters (`--stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Estimated per-second rates (`--rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatesView {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// A real server as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    #[serde(flatten)]
    pub spec: ServerSpec,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persistent_conns: u32,
    pub stats: StatsView,
    pub rates: RatesView,
}

/// A virtual service as listed; `servers` in the core's list order (newest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub stats: StatsView,
    pub rates: RatesView,
    pub servers: Vec<ServerView>,
}

/// `GET /v1/table`: everything `ipvsadm -L` and `-S` print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    /// IPVS version rvs reports (`1.2.1`, as the kernel does).
    pub version: String,
    /// Connection hash table size shown in the header (`size=4096`).
    pub conn_tab_size: u32,
    pub timeouts: TimeoutsSpec,
    /// Services in the order they were added.
    pub services: Vec<ServiceView>,
    /// rvs extension: the firewall-mark classifier's rules, in the order they
    /// were added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<MarkRuleSpec>,
}

/// One entry of `GET /v1/connections`, the fields of `/proc/net/ip_vs_conn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for a fwmark template.
    pub protocol: String,
    pub client: IpAddr,
    pub client_port: u16,
    pub virtual_address: IpAddr,
    pub virtual_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub state: String,
    /// Whole seconds until expiry (truncated, as the kernel prints them).
    pub expires: u64,
    pub template: bool,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub services: usize,
    pub servers: usize,
    pub connections: usize,
    pub state_file: Option<String>,
    /// The socket data plane, when rvsd runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane: Option<DataPlaneView>,
}

/// The socket data plane's state: its sockets, what it cannot serve, its own
/// counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneView {
    pub kind: String,
    pub listeners: Vec<ListenerView>,
    /// Virtual services the plane cannot serve, with the reason.
    pub unserved: Vec<UnservedView>,
    /// Proxied flows open now.
    pub live_flows: usize,
    pub accepted: u64,
    pub refused: u64,
    pub connect_failed: u64,
    pub connect_failed_by_server: Vec<ServerFailuresView>,
    pub expired_open: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerView {
    /// "TCP" or "UDP".
    pub protocol: String,
    pub address: IpAddr,
    pub port: u16,
    pub listening: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnservedView {
    pub service: ServiceRef,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFailuresView {
    pub address: IpAddr,
    pub port: u16,
    pub failures: u64,
}

/// One entry of `GET /v1/events`: something an operator wants to see happen
/// (`kind`: server_up, server_down, vrrp, reload, reload_failed, weight, flood_guard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// Increases by one per event; ask for `?since=SEQ` to get only newer ones.
    pub seq: u64,
    /// Milliseconds since rvsd started.
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
}

/// A health-checked real server (`rvsd -f keepalived.conf`), `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// The `virtual_server` block: `TCP 10.0.0.1:80`, `FWM 6666`, `group NAME`.
    pub virtual_server: String,
    /// The services that block puts in the table (several for a group).
    pub services: Vec<ServiceRef>,
    pub address: IpAddr,
    pub port: u16,
    /// Whether the checkers hold the server up.
    pub up: bool,
    /// The weight a checker (MISC_CHECK with weight) set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The last probe's result (`None` before the first one finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckResultView>,
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResultView {
    /// `HTTP_GET`, `TCP_CHECK`, ...
    pub checker: String,
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds since rvsd started.
    pub at_ms: u64,
}

/// Configuration reloads since rvsd started, and how the last one ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadsView {
    pub succeeded: u64,
    pub failed: u64,
    /// Whether the last reload succeeded (`None` before any).
    pub last_ok: Option<bool>,
    /// Milliseconds since rvsd started, of the last reload.
    pub last_at_ms: Option<u64>,
}

/// One message of `GET /v1/stream` (the dashboard's live feed): the whole
/// running state as the other read routes show it, and the events newer than
/// the last one the reader saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    /// Milliseconds since rvsd started (the clock of `EventView::at_ms`).
    pub at_ms: u64,
    /// Whether `POST`s on the listener this stream came from need
    /// `Authorization: Bearer` (true on `--listen`, false on the Unix socket).
    pub writes_need_token: bool,
    pub status: StatusView,
    pub table: TableView,
    /// `GET /v1/health` (empty without `rvsd -f keepalived.conf`).
    pub health: Vec<HealthView>,
    /// `GET /v1/vrrp`; absent when no VRRP instance runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<VrrpView>,
    pub reloads: ReloadsView,
    /// The events after the reader's last seen sequence number, oldest first.
    pub events: Vec<EventView>,
}

/// The body of every error answer: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}
