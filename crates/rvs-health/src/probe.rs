//! The probes of keepalived's health checkers (keepalived 2.2.7, keepalived/check/*.c),
//! run on tokio. [`run`] performs one check of one real server and returns one
//! [`Outcome`]; timing (delay_loop, retry, delay_before_retry) belongs to
//! [`crate::machine`], not here.
//!
//! Invariants:
//! - a probe never panics and never reads without bound: every read has a timeout and
//!   every buffer a cap, so hostile peers only make a probe fail;
//! - a probe owns every socket and child process it creates and releases them before
//!   it returns (a MISC_CHECK script that outlives its timeout is killed with its
//!   process group);
//! - wire bytes and pass/fail rules follow the keepalived source file named in each
//!   submodule; where they differ, the submodule says how and why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Outcome;

mod dns;
mod file;
mod http;
mod misc;
mod net;
mod ping;
mod smtp;
mod tcp;
mod udp;

pub use file::{read_file_status, FileStatus};
pub use misc::split_misc_path;

/// Where and how a probe connects (keepalived's `conn_opts_t`,
/// keepalived/core/layer4.c `socket_bind_connect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// connect_ip:connect_port, resolved by the caller (default: the real server).
    pub address: SocketAddr,
    /// bindto + bind_port: the local address bound before connecting.
    pub bind: Option<SocketAddr>,
    /// connect_timeout. keepalived applies it to each step separately (connect, each
    /// write, each read), not to the whole exchange; so do the probes here.
    pub connect_timeout: Duration,
    /// fwmark: SO_MARK on the probe's socket (needs CAP_NET_ADMIN).
    pub fwmark: Option<u32>,
}

/// One checker of a real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// TCP_CHECK (keepalived/check/check_tcp.c).
    Tcp,
    /// HTTP_GET (keepalived/check/check_http.c).
    Http(HttpProbe),
    /// SSL_GET (keepalived/check/check_http.c over keepalived/check/check_ssl.c).
    Ssl(HttpProbe),
    /// MISC_CHECK (keepalived/check/check_misc.c).
    Misc(MiscProbe),
    /// DNS_CHECK (keepalived/check/check_dns.c).
    Dns(DnsProbe),
    /// SMTP_CHECK (keepalived/check/check_smtp.c).
    Smtp(SmtpProbe),
    /// UDP_CHECK (keepalived/check/check_udp.c).
    Udp(UdpProbe),
    /// PING_CHECK (keepalived/check/check_ping.c).
    Ping,
    /// FILE_CHECK (keepalived/check/check_file.c, keepalived/trackers/track_file.c).
    File(FileProbe),
}

/// The `http_protocol` keyword of HTTP_GET/SSL_GET (keepalived/check/check_http.c
/// `http_protocol_handler`). keepalived knows exactly these three; there is no 0.9.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpProtocol {
    /// "1.0" (the default): `GET … HTTP/1.0`, no Connection header.
    #[default]
    V1_0,
    /// "1.0C" or "1.0c": `HTTP/1.0` with `Connection: close`.
    V1_0C,
    /// "1.1": `HTTP/1.1` with `Connection: close`.
    V1_1,
}

impl HttpProtocol {
    /// Parses the keyword's value as keepalived does ("1.0", "1.1", "1.0C", "1.0c").
    pub fn from_keyword(value: &str) -> Option<Self> {
        match value {
            "1.0" => Some(Self::V1_0),
            "1.1" => Some(Self::V1_1),
            "1.0C" | "1.0c" => Some(Self::V1_0C),
            _ => None,
        }
    }
}

/// HTTP_GET / SSL_GET settings.
///
/// Differs from a single `virtualhost` because keepalived looks the host name up in
/// four places, and in a different order for the Host header and for SNI
/// (keepalived/check/check_http.c `http_request_thread`,
/// keepalived/check/check_ssl.c `ssl_connect`). keepalived 2.2.7 has no `sni_name`
/// keyword, so there is no such field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpProbe {
    /// The `url` blocks; every one must pass. No url: the check passes without
    /// connecting (keepalived's `http_connect_thread` with an empty url list).
    pub urls: Vec<UrlSpec>,
    /// The checker's `virtualhost`.
    pub virtualhost: Option<String>,
    /// The real server's `virtualhost` (Host header only; keepalived does not use it
    /// for SNI).
    pub real_server_virtualhost: Option<String>,
    /// The virtual server's `virtualhost`.
    pub virtual_server_virtualhost: Option<String>,
    /// `http_protocol`.
    pub http_protocol: HttpProtocol,
    /// `enable_sni` (SSL_GET only).
    pub enable_sni: bool,
}

/// One `url` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlSpec {
    /// `path`, sent as is in the request line.
    pub path: String,
    /// `digest`: the MD5 of the response body.
    pub digest: Option<[u8; 16]>,
    /// `status_code`: inclusive ranges; empty means 200-299. keepalived only knows
    /// codes 100-599: a response outside that range never passes.
    pub status_codes: Vec<(u16, u16)>,
    /// The url's own `virtualhost`, first choice for Host and SNI.
    pub virtualhost: Option<String>,
}

/// MISC_CHECK settings.
///
/// `argv` instead of one command string: keepalived splits `misc_path` at parse time
/// (quotes and escapes, see [`split_misc_path`]) and execs `argv[0]` directly, with no
/// shell. `timeout` is required: keepalived's default for an unset `misc_timeout` is
/// the virtual server's `delay_loop`, which only the caller knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MiscProbe {
    /// The program (a path, or a name looked up in PATH) and its arguments.
    pub argv: Vec<String>,
    /// `misc_timeout`, or the virtual server's `delay_loop` when unset.
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
    /// `user`: uid and gid the script runs as (None: keepalived's own user).
    pub user: Option<(u32, u32)>,
}

/// The `type` keyword of DNS_CHECK (keepalived/check/check_dns.c `DNS_TYPE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    /// The default type.
    #[default]
    Soa,
    Mx,
    Txt,
    Aaaa,
    Rrsig,
    Dnskey,
}

impl DnsType {
    /// The query type number.
    pub fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Ns => 2,
            Self::Cname => 5,
            Self::Soa => 6,
            Self::Mx => 15,
            Self::Txt => 16,
            Self::Aaaa => 28,
            Self::Rrsig => 46,
            Self::Dnskey => 48,
        }
    }

    /// Parses the keyword's value, case-insensitively as keepalived does.
    pub fn from_keyword(value: &str) -> Option<Self> {
        [
            ("A", Self::A),
            ("NS", Self::Ns),
            ("CNAME", Self::Cname),
            ("SOA", Self::Soa),
            ("MX", Self::Mx),
            ("TXT", Self::Txt),
            ("AAAA", Self::Aaaa),
            ("RRSIG", Self::Rrsig),
            ("DNSKEY", Self::Dnskey),
        ]
        .into_iter()
        .find(|(label, _)| label.eq_ignore_ascii_case(value))
        .map(|(_, kind)| kind)
    }
}

/// DNS_CHECK settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsProbe {
    /// `type` (default SOA).
    pub query_type: DnsType,
    /// `name` (default "": the root).
    pub name: String,
}

/// SMTP_CHECK settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpProbe {
    /// `helo_name`.
    pub helo_name: String,
}

impl SmtpProbe {
    /// keepalived's default `helo_name` (keepalived/include/check_smtp.h).
    pub const DEFAULT_HELO_NAME: &'static str = "smtpchecker.keepalived.org";
}

impl Default for SmtpProbe {
    fn default() -> Self {
        Self {
            helo_name: Self::DEFAULT_HELO_NAME.to_owned(),
        }
    }
}

/// What UDP_CHECK's `require_reply` asks for.
///
/// Differs from a plain byte string because keepalived's `require_reply` may have no
/// data (any reply will do) and its hex string may hold wildcard nibbles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpReply {
    /// The expected first bytes of the reply; empty: any reply passes, whatever its
    /// length (keepalived checks the lengths only when reply data is set).
    pub data: Vec<u8>,
    /// Per byte of `data`, the bits that need not match (keepalived's reply mask:
    /// wildcard nibbles). Missing bytes count as 0: all bits must match.
    pub mask: Vec<u8>,
}

/// UDP_CHECK settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpProbe {
    /// `payload`; None sends keepalived's 32-byte filler "keepalived check - …".
    pub payload: Option<Vec<u8>>,
    /// `require_reply`; None: silence passes, only an ICMP error fails.
    pub require_reply: Option<UdpReply>,
    /// `min_reply_length` (default 0).
    pub min_reply_length: u32,
    /// `max_reply_length` (default 255).
    pub max_reply_length: u32,
}

impl Default for UdpProbe {
    fn default() -> Self {
        Self {
            payload: None,
            require_reply: None,
            min_reply_length: 0,
            max_reply_length: u32::from(u8::MAX),
        }
    }
}

/// FILE_CHECK settings: the tracked file and the weight applied to its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProbe {
    /// The `track_file`'s file path.
    pub path: PathBuf,
    /// `weight` (the FILE_CHECK's, else the track_file's; default 1).
    pub weight: i32,
    /// `weight … reverse`.
    pub reverse: bool,
}

/// Runs one check of `probe` against `target`.
pub async fn run(probe: &Probe, target: &Target) -> Outcome {
    let result = match probe {
        Probe::Tcp => tcp::check(target).await,
        Probe::Http(http) => http::check(http, target, false).await,
        Probe::Ssl(http) => http::check(http, target, true).await,
        Probe::Misc(misc) => return misc::check(misc).await,
        Probe::Dns(dns) => dns::check(dns, target).await,
        Probe::Smtp(smtp) => smtp::check(smtp, target).await,
        Probe::Udp(udp) => udp::check(udp, target).await,
        Probe::Ping => ping::check(target).await,
        Probe::File(file) => return file::check(file).await,
    };
    match result {
        Ok(()) => Outcome::Pass { weight: None },
        Err(reason) => Outcome::Fail { reason },
    }
}
