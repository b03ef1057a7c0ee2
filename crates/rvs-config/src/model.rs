//! The typed configuration model. Every value is the effective one: keepalived 2.2.7's
//! defaults are applied and checker timing is inherited checker <- real_server <-
//! virtual_server as `keepalived/check/check_data.c` (validate_check_config) does.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where a block or keyword was written.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct KeepalivedConfig {
    pub global: GlobalDefs,
    pub vs_groups: Vec<VsGroup>,
    pub virtual_servers: Vec<VirtualServer>,
    pub vrrp_instances: Vec<VrrpInstance>,
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    pub vrrp_scripts: Vec<VrrpScript>,
    /// The rules of the rvs-only `fwmark_classifier` blocks, in file order
    /// (canonical, no two overlapping).
    pub mark_rules: Vec<ClassifierRule>,
}

/// One `rule` line of an rvs `fwmark_classifier` block.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierRule {
    pub rule: rvs_core::MarkRule,
    /// Where the `rule` keyword was written.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    pub lvs_timeouts: Option<LvsTimeouts>,
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    pub lvs_flush: bool,
    pub script_user: Option<String>,
    pub enable_script_security: bool,
    /// Every other global_defs keyword, with its arguments, in file order.
    pub other: Vec<(String, Vec<String>)>,
}

/// `lvs_timeouts`: seconds; `None` when not given (the kernel's value is kept).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LvsTimeouts {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LvsSyncDaemon {
    pub interface: String,
    pub instance: String,
    pub syncid: Option<u8>,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VsGroup {
    pub name: String,
    pub members: Vec<VsGroupMember>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VsGroupMember {
    /// `a.b.c.d-e port` ranges; `last == first` for a single address.
    Addr {
        first: IpAddr,
        last: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        family: Option<Family>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum VsAddress {
    /// Port 0 when omitted.
    Addr(SocketAddr),
    Fwmark {
        mark: u32,
        family: Option<Family>,
    },
    Group(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKind {
    Ipip,
    Gue { port: u16 },
    Gre,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelCsum {
    NoCsum,
    Csum,
    RemCsum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Nat,
    Dr,
    Tun {
        kind: TunnelKind,
        csum: Option<TunnelCsum>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The command as written, arguments included.
    pub command: String,
    pub user: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SorryServer {
    pub address: SocketAddr,
    pub method: Option<Method>,
    pub inhibit: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    pub span: Span,
    pub address: VsAddress,
    /// keepalived 2.2.7 defaults an address service without `protocol` to UDP (with a
    /// report); for fwmark services the protocol is ignored and this stays `Tcp`.
    pub protocol: Protocol,
    /// Default `wlc`.
    pub scheduler: String,
    pub sched_flags: [bool; 3],
    pub sh_port: bool,
    pub sh_fallback: bool,
    pub mh_port: bool,
    pub mh_fallback: bool,
    pub ops: bool,
    /// Default NAT.
    pub method: Method,
    /// `persistence_timeout` alone means 360s (IPVS_SVC_PERSISTENT_TIMEOUT); a zero port
    /// without persistence also sets 360s.
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<IpAddr>,
    pub persistence_engine: Option<String>,
    pub ha_suspend: bool,
    pub virtualhost: Option<String>,
    pub alpha: bool,
    pub omega: bool,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub sorry_server: Option<SorryServer>,
    pub inhibit_on_failure: bool,
    pub delay_loop: Duration,
    pub warmup: Option<Duration>,
    pub real_servers: Vec<RealServer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    pub span: Span,
    pub address: SocketAddr,
    /// Default: the virtual server's `weight` (itself default 1).
    pub weight: u32,
    pub method: Method,
    pub uthreshold: u32,
    pub lthreshold: u32,
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub alpha: bool,
    pub checkers: Vec<Checker>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckTiming {
    /// Default 5s.
    pub connect_timeout: Duration,
    /// Default 1; DNS_CHECK 3; MISC_CHECK 0 (check_api.c, check_dns.c, check_misc.c).
    pub retry: u32,
    /// Default 1s; HTTP_GET/SSL_GET 3s; DNS_CHECK the delay_loop.
    pub delay_before_retry: Duration,
    /// Default 60s.
    pub delay_loop: Duration,
    /// keepalived 2.2.7 uses the delay_loop when no warmup is set anywhere
    /// (check_data.c), so this is never zero unless `warmup 0` was written.
    pub warmup: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checker {
    pub span: Span,
    pub kind: CheckerKind,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    pub fwmark: Option<u32>,
    pub timing: CheckTiming,
    pub alpha: bool,
    pub log_all_failures: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CheckerKind {
    Tcp,
    Http(HttpCheck),
    Ssl(HttpCheck),
    Misc(MiscCheck),
    Dns(DnsCheck),
    Smtp(SmtpCheck),
    Udp(UdpCheck),
    Ping,
    File(FileCheck),
    Bfd { name: String },
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct HttpCheck {
    pub urls: Vec<UrlCheck>,
    pub http_protocol: Option<String>,
    pub virtualhost: Option<String>,
    pub enable_sni: bool,
    pub sni_name: Option<String>,
    pub fast_recovery: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UrlCheck {
    pub path: String,
    pub digest: Option<[u8; 16]>,
    /// Inclusive ranges; `[(200, 299)]` when no status_code is given.
    pub status_codes: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    pub regex_no_match: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MiscCheck {
    pub path: String,
    pub timeout: Option<Duration>,
    pub dynamic: bool,
    pub user: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsCheck {
    /// Default SOA.
    pub query_type: String,
    /// Default ".".
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmtpCheck {
    pub helo_name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UdpCheck {
    pub payload: Option<Vec<u8>>,
    pub require_reply: Option<Vec<u8>>,
    pub min_reply_length: u32,
    pub max_reply_length: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileCheck {
    pub track_file: String,
    pub weight: i32,
    pub reverse: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpAuth {
    pub kind: String,
    pub pass: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpAddress {
    pub address: IpAddr,
    pub prefix_len: Option<u8>,
    pub dev: Option<String>,
    pub label: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrackInterface {
    pub name: String,
    pub weight: i32,
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrackScript {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    pub span: Span,
    pub name: String,
    pub state: Option<VrrpState>,
    pub interface: Option<String>,
    pub virtual_router_id: u8,
    /// Default 100.
    pub priority: u8,
    /// Default 1s.
    pub advert_int: Duration,
    pub version: Option<u8>,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    pub authentication: Option<VrrpAuth>,
    pub virtual_ipaddress: Vec<VrrpAddress>,
    pub virtual_ipaddress_excluded: Vec<VrrpAddress>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peers: Vec<IpAddr>,
    pub mcast_src_ip: Option<IpAddr>,
    pub track_interfaces: Vec<TrackInterface>,
    pub track_scripts: Vec<TrackScript>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    /// Default 5s.
    pub garp_master_delay: Duration,
    /// Default 5.
    pub garp_master_repeat: u32,
    pub garp_master_refresh: Option<Duration>,
    pub accept: Option<bool>,
    pub other: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpSyncGroup {
    pub span: Span,
    pub name: String,
    pub group: Vec<String>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify: Option<Script>,
    pub track_scripts: Vec<TrackScript>,
    pub track_interfaces: Vec<TrackInterface>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    pub span: Span,
    pub name: String,
    pub script: String,
    /// Default 1s.
    pub interval: Duration,
    pub timeout: Option<Duration>,
    /// Default 0.
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
    pub user: Option<String>,
    pub init_fail: bool,
}
