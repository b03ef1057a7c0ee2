//! Health-checker blocks inside `real_server` (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
//! DNS_CHECK, SMTP_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK, BFD_CHECK). Keyword sets and
//! messages follow `keepalived/check/check_*.c`; timing defaults and inheritance follow
//! `check_api.c` and `check_data.c`. Timing is kept raw (`RawTiming`) here and resolved by
//! `lvs.rs` once the real server and virtual server values are known.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::{
    CheckerKind, DnsCheck, FileCheck, HttpCheck, MiscCheck, SmtpCheck, UdpCheck, UrlCheck,
};
use crate::parser::{Ctx, Node};

/// Names every checker block keyword accepted inside a real_server.
pub const CHECKER_KEYWORDS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "DNS_CHECK",
    "SMTP_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

/// Timing values as written (None = inherit).
#[derive(Clone, Debug, Default)]
pub struct RawTiming {
    pub connect_timeout: Option<Duration>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Duration>,
    pub delay_loop: Option<Duration>,
    pub warmup: Option<Duration>,
}

/// A parsed checker before inheritance.
#[derive(Clone, Debug)]
pub struct RawChecker {
    pub node_span: crate::model::Span,
    pub kind: CheckerKind,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    pub fwmark: Option<u32>,
    pub timing: RawTiming,
    pub alpha: Option<bool>,
    pub log_all_failures: bool,
    /// Retry count when none is set anywhere (check_api.c: 1; DNS 3; MISC 0).
    pub default_retry: u32,
    /// Delay before retry when none is set (1s; HTTP/SSL 3s; DNS: None = delay_loop).
    pub default_delay_before_retry: Option<Duration>,
}

/// Names of `track_file`/`vrrp_track_file` and `bfd_instance` blocks, which FILE_CHECK
/// and BFD_CHECK refer to.
#[derive(Default)]
pub struct KnownNames {
    pub track_files: Vec<String>,
    pub bfd_instances: Vec<String>,
}

pub fn parse_checker(ctx: &mut Ctx, node: &Node, known: &KnownNames) -> Option<RawChecker> {
    let children = ctx.block(node).to_vec();
    let mut checker = RawChecker {
        node_span: node.span(),
        kind: CheckerKind::Tcp,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        timing: RawTiming::default(),
        alpha: None,
        log_all_failures: false,
        default_retry: 1,
        default_delay_before_retry: Some(Duration::from_secs(1)),
    };
    let mut valid = true;
    match node.name() {
        "TCP_CHECK" | "PING_CHECK" => {
            checker.kind = if node.name() == "TCP_CHECK" {
                CheckerKind::Tcp
            } else {
                CheckerKind::Ping
            };
            for child in &children {
                if !common(ctx, child, &mut checker, true) {
                    ctx.unknown(child);
                }
            }
        }
        "HTTP_GET" | "SSL_GET" => {
            checker.default_delay_before_retry = Some(Duration::from_secs(3));
            let mut http = HttpCheck::default();
            for child in &children {
                if common(ctx, child, &mut checker, true) {
                    continue;
                }
                match child.name() {
                    "nb_get_retry" => {
                        ctx.warn(child, "nb_get_retry is deprecated - please use 'retry'");
                        if let Some(v) = ctx.unsigned(child, 0, 0, u64::from(u32::MAX)) {
                            checker.timing.retry = u32::try_from(v).ok();
                        }
                    }
                    "virtualhost" => {
                        http.virtualhost = value(ctx, child, "HTTP_GET virtualhost name missing")
                    }
                    "http_protocol" => match child.arg(0) {
                        Some(v @ ("1.0" | "1.1" | "1.0C" | "1.0c")) => {
                            http.http_protocol = Some(v.to_string())
                        }
                        Some(v) => ctx.error(child, format!("Invalid http_protocol version {v}")),
                        None => ctx.error(child, "Missing http_protocol version"),
                    },
                    "enable_sni" => http.enable_sni = ctx.flag(child).unwrap_or(false),
                    "fast_recovery" => http.fast_recovery = ctx.flag(child).unwrap_or(false),
                    "url" => {
                        if let Some(url) = parse_url(ctx, child) {
                            http.urls.push(url);
                        }
                    }
                    _ => ctx.unknown(child),
                }
            }
            if http.urls.is_empty() {
                ctx.error(
                    node,
                    "HTTP/SSL_GET checker has no urls specified - ignoring",
                );
                valid = false;
            }
            checker.kind = if node.name() == "HTTP_GET" {
                CheckerKind::Http(http)
            } else {
                CheckerKind::Ssl(http)
            };
        }
        "MISC_CHECK" => {
            checker.default_retry = 0;
            let mut misc = MiscCheck {
                path: String::new(),
                timeout: None,
                dynamic: false,
                user: None,
            };
            for child in &children {
                if common(ctx, child, &mut checker, false) {
                    continue;
                }
                match child.name() {
                    "misc_path" => misc.path = child.rest(),
                    "misc_timeout" => misc.timeout = ctx.timer(child, 0, 1, 0),
                    "misc_dynamic" => misc.dynamic = ctx.flag(child).unwrap_or(false),
                    "user" => misc.user = ctx.arg(child, 0).map(str::to_string),
                    _ => ctx.unknown(child),
                }
            }
            if misc.path.is_empty() {
                ctx.error(
                    node,
                    "No script path has been specified for MISC_CHECKER - skipping",
                );
                valid = false;
            }
            checker.kind = CheckerKind::Misc(misc);
        }
        "DNS_CHECK" => {
            checker.default_retry = 3;
            checker.default_delay_before_retry = None;
            let mut dns = DnsCheck {
                query_type: "SOA".into(),
                name: ".".into(),
            };
            let mut named = false;
            for child in &children {
                if common(ctx, child, &mut checker, true) {
                    continue;
                }
                match child.name() {
                    "type" => match ctx.arg(child, 0) {
                        Some(t) if DNS_TYPES.contains(&t.to_ascii_uppercase().as_str()) => {
                            dns.query_type = t.to_ascii_uppercase()
                        }
                        Some(t) => {
                            ctx.error(child, format!("Unknown DNS check type {t} - ignoring"))
                        }
                        None => {}
                    },
                    "name" => {
                        if let Some(name) = ctx.arg(child, 0) {
                            if named {
                                ctx.error(child, "DNS_CHECK name already specified - ignoring");
                            } else if name != "."
                                && name.trim_end_matches('.').split('.').any(str::is_empty)
                            {
                                ctx.error(
                                    child,
                                    format!("DNS_CHECK name '{name}' has empty label - ignoring"),
                                );
                            } else {
                                dns.name = name.to_string();
                                named = true;
                            }
                        }
                    }
                    _ => ctx.unknown(child),
                }
            }
            checker.kind = CheckerKind::Dns(dns);
        }
        "SMTP_CHECK" => {
            let mut smtp = SmtpCheck {
                helo_name: "localhost".into(),
            };
            for child in &children {
                if common(ctx, child, &mut checker, true) {
                    continue;
                }
                match child.name() {
                    "helo_name" => {
                        if let Some(v) = value(ctx, child, "SMTP_CHECK helo name missing") {
                            smtp.helo_name = v;
                        }
                    }
                    "host" => {
                        // Extra hosts: accepted and checked, only the first connection is modelled.
                        for host_kw in ctx.block(child).to_vec() {
                            let mut scratch = checker.clone();
                            if !common(ctx, &host_kw, &mut scratch, true) {
                                ctx.unknown(&host_kw);
                            }
                        }
                    }
                    _ => ctx.unknown(child),
                }
            }
            checker.kind = CheckerKind::Smtp(smtp);
        }
        "UDP_CHECK" => {
            let mut udp = UdpCheck {
                payload: None,
                require_reply: None,
                min_reply_length: 0,
                max_reply_length: 0,
            };
            for child in &children {
                if common(ctx, child, &mut checker, true) {
                    continue;
                }
                match child.name() {
                    "payload" => match child.arg(0) {
                        None => ctx.error(child, "UDP_CHECK payload requires a payload"),
                        Some(hex) => match decode_hex(hex) {
                            Some(bytes) => udp.payload = Some(bytes),
                            None => ctx.error(child, "Invalid hex string for UDP_CHECK payload"),
                        },
                    },
                    "require_reply" => match child.arg(0).and_then(decode_hex) {
                        Some(bytes) => udp.require_reply = Some(bytes),
                        None => ctx.error(child, "Invalid hex string for UDP_CHECK reply"),
                    },
                    "min_reply_length" | "max_reply_length" => {
                        if let Some(v) = ctx.unsigned(child, 0, 0, u64::from(u16::MAX)) {
                            let v = u32::try_from(v).unwrap_or(0);
                            if child.name() == "min_reply_length" {
                                udp.min_reply_length = v;
                            } else {
                                udp.max_reply_length = v;
                            }
                        }
                    }
                    _ => ctx.unknown(child),
                }
            }
            if udp.max_reply_length != 0 && udp.min_reply_length > udp.max_reply_length {
                ctx.error(
                    node,
                    "UDP_CHECK min_reply length > max_reply_length - will always fail",
                );
            }
            checker.kind = CheckerKind::Udp(udp);
        }
        "FILE_CHECK" => {
            let mut file = FileCheck {
                track_file: String::new(),
                weight: 1,
                reverse: false,
            };
            for child in &children {
                match child.name() {
                    "track_file" => {
                        if let Some(name) = ctx.arg(child, 0) {
                            if known.track_files.iter().any(|n| n == name) {
                                file.track_file = name.to_string();
                            } else {
                                ctx.error(child, format!("track_file {name} not found"));
                            }
                        }
                    }
                    "weight" => {
                        if let Some(w) = ctx.int(child, 0, -254, 254) {
                            file.weight = i32::try_from(w).unwrap_or(0);
                        }
                        match child.arg(1) {
                            None => {}
                            Some("reverse") => file.reverse = true,
                            Some(other) => ctx.error(
                                child,
                                format!("unknown track file weight option {other} - ignoring"),
                            ),
                        }
                    }
                    _ => ctx.unknown(child),
                }
            }
            if file.track_file.is_empty() {
                ctx.error(node, "FILE_CHECK has no track_file specified - ignoring");
                valid = false;
            }
            checker.kind = CheckerKind::File(file);
        }
        "BFD_CHECK" => {
            let mut name = String::new();
            for child in &children {
                match child.name() {
                    "name" => {
                        if child.args.len() != 1 {
                            ctx.error(child, "BFD_CHECK - No or too many names specified");
                        } else if let Some(n) = child.arg(0) {
                            if known.bfd_instances.iter().any(|b| b == n) {
                                name = n.to_string();
                            } else {
                                ctx.error(child, format!("BFD_CHECK - BFD {n} not configured"));
                            }
                        }
                    }
                    "alpha" => checker.alpha = ctx.flag(child),
                    _ => ctx.unknown(child),
                }
            }
            if name.is_empty() {
                ctx.error(
                    node,
                    "No name has been specified for BFD_CHECKER - skipping",
                );
                valid = false;
            }
            checker.kind = CheckerKind::Bfd { name };
        }
        _ => return None,
    }
    valid.then_some(checker)
}

const DNS_TYPES: &[&str] = &[
    "A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY",
];

/// The keywords every connecting checker shares (check_api.c,
/// install_checker_common_keywords). Returns false when `node` is not one of them.
fn common(ctx: &mut Ctx, node: &Node, checker: &mut RawChecker, connection: bool) -> bool {
    let name = node.name();
    if connection {
        match name {
            "connect_ip" => {
                if let Some(text) = ctx.arg(node, 0) {
                    match text.parse() {
                        Ok(ip) => checker.connect_ip = Some(ip),
                        Err(_) => ctx.error(
                            node,
                            format!("Invalid connect_ip address {text} - ignoring"),
                        ),
                    }
                }
            }
            "connect_port" => {
                checker.connect_port = port(ctx, node, "Invalid checker connect_port")
            }
            "bindto" => {
                if let Some(text) = ctx.arg(node, 0) {
                    match text.parse() {
                        Ok(ip) => checker.bindto = Some(ip),
                        Err(_) => {
                            ctx.error(node, format!("Invalid bindto address {text} - ignoring"))
                        }
                    }
                }
            }
            "bind_port" => checker.bind_port = port(ctx, node, "Invalid checker bind_port"),
            "bind_if" => {
                if let Some(text) = ctx.arg(node, 0) {
                    if text.len() >= 16 {
                        ctx.error(
                            node,
                            format!("Interface name {text} is too long - ignoring"),
                        );
                    } else {
                        checker.bind_if = Some(text.to_string());
                    }
                }
            }
            "connect_timeout" => {
                if let Some(t) = ctx.timer(node, 0, 1, u64::from(u32::MAX)) {
                    checker.timing.connect_timeout = Some(t);
                }
            }
            "fwmark" => {
                if let Some(v) = ctx.unsigned(node, 0, 0, u64::from(u32::MAX)) {
                    checker.fwmark = u32::try_from(v).ok();
                }
            }
            _ => return common_timing(ctx, node, checker),
        }
        ctx.leaf(node);
        return true;
    }
    common_timing(ctx, node, checker)
}

fn common_timing(ctx: &mut Ctx, node: &Node, checker: &mut RawChecker) -> bool {
    match node.name() {
        "retry" => {
            if let Some(v) = ctx.unsigned(node, 0, 0, u64::from(u32::MAX)) {
                checker.timing.retry = u32::try_from(v).ok();
            }
        }
        "delay_before_retry" => {
            checker.timing.delay_before_retry = ctx
                .timer(node, 0, 0, 0)
                .or(checker.timing.delay_before_retry)
        }
        "warmup" => checker.timing.warmup = ctx.timer(node, 0, 0, 0).or(checker.timing.warmup),
        "delay_loop" => {
            checker.timing.delay_loop = ctx.timer(node, 0, 1, 0).or(checker.timing.delay_loop)
        }
        "alpha" => checker.alpha = ctx.flag(node).or(checker.alpha),
        "log_all_failures" => {
            checker.log_all_failures = ctx.flag(node).unwrap_or(checker.log_all_failures)
        }
        _ => return false,
    }
    ctx.leaf(node);
    true
}

fn port(ctx: &mut Ctx, node: &Node, message: &str) -> Option<u16> {
    let text = ctx.arg(node, 0)?;
    match text.parse::<u16>() {
        Ok(p) => Some(p),
        Err(_) => {
            ctx.error(node, format!("{message} '{text}'"));
            None
        }
    }
}

/// First argument, or an error with `missing` when there is none.
fn value(ctx: &mut Ctx, node: &Node, missing: &str) -> Option<String> {
    ctx.leaf(node);
    match node.arg(0) {
        Some(v) => Some(v.to_string()),
        None => {
            ctx.error(node, missing);
            None
        }
    }
}

fn parse_url(ctx: &mut Ctx, node: &Node) -> Option<UrlCheck> {
    let mut url = UrlCheck {
        path: String::new(),
        digest: None,
        status_codes: Vec::new(),
        virtualhost: None,
        regex: None,
        regex_no_match: false,
    };
    for child in ctx.block(node).to_vec() {
        match child.name() {
            "path" => url.path = ctx.arg(&child, 0).unwrap_or_default().to_string(),
            "digest" => {
                if let Some(text) = ctx.arg(&child, 0) {
                    match decode_hex(text).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                        Some(d) if text.len() == 32 => url.digest = Some(d),
                        _ => ctx.error(
                            &child,
                            format!("digest '{text}' should be 32 hexadecimal characters"),
                        ),
                    }
                }
            }
            "status_code" => {
                for arg in &child.args {
                    match parse_status_range(&arg.text) {
                        Some(range) => url.status_codes.push(range),
                        None => ctx.error(
                            &child,
                            format!("Invalid HTTP_GET status code '{}'", arg.text),
                        ),
                    }
                }
            }
            "virtualhost" => {
                url.virtualhost = value(ctx, &child, "Missing HTTP_GET virtualhost name")
            }
            "regex" => url.regex = ctx.arg(&child, 0).map(str::to_string),
            "regex_no_match" => url.regex_no_match = true,
            "regex_options" | "regex_min_offset" | "regex_max_offset" | "regex_stack" => {
                ctx.leaf(&child)
            }
            _ => ctx.unknown(&child),
        }
    }
    if url.path.is_empty() {
        ctx.error(node, "HTTP/SSL_GET checker url has no path - ignoring");
        return None;
    }
    if url.status_codes.is_empty() {
        url.status_codes.push((200, 299));
    }
    Some(url)
}

/// `N` or `N-M` with 100 <= N <= M <= 599 (check_http.c).
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: u16 = low.parse().ok()?;
    let high: u16 = high.parse().ok()?;
    ((100..=599).contains(&low) && (100..=599).contains(&high) && low <= high)
        .then_some((low, high))
}

/// Hex string (even length) to bytes.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.is_empty() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
