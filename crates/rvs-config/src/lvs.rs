//! `virtual_server_group` and `virtual_server` blocks (keepalived/check/check_parser.c
//! for keywords and messages, check_data.c for addresses, defaults and the end-of-parse
//! validation that applies defaults and inheritance).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::checkers::{parse_checker, KnownNames, RawChecker, CHECKER_KEYWORDS};
use crate::model::{
    CheckTiming, Checker, Family, Method, Protocol, RealServer, Script, SorryServer, TunnelCsum,
    TunnelKind, VirtualServer, VsAddress, VsGroup, VsGroupMember,
};
use crate::parser::{Ctx, Node};

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];
/// IPVS_WEIGHT_LIMIT (ip_vs.h: INT32_MAX).
const WEIGHT_LIMIT: u64 = i32::MAX as u64;
/// IPVS_SVC_PERSISTENT_TIMEOUT (seconds), used for a bare `persistence_timeout`.
const DEFAULT_PERSISTENCE: u32 = 360;
/// LVS_MAX_TIMEOUT (seconds).
const MAX_PERSISTENCE: u64 = 86400 * 31;

pub fn parse_vs_group(ctx: &mut Ctx, node: &Node) -> Option<VsGroup> {
    let name = ctx.arg(node, 0)?.to_string();
    let mut members = Vec::new();
    for line in ctx.block(node).to_vec() {
        let mut words: Vec<&str> = vec![line.name()];
        words.extend(line.args.iter().map(|t| t.text.as_str()));
        if words[0] == "fwmark" {
            let Some(mark) = words
                .get(1)
                .and_then(|m| crate::parser::parse_unsigned(m))
                .and_then(|m| u32::try_from(m).ok())
            else {
                ctx.error(
                    &line,
                    format!(
                        "({name}): fwmark '{}' must be in [0, {}] - ignoring",
                        words.get(1).unwrap_or(&""),
                        u32::MAX
                    ),
                );
                continue;
            };
            let family = match words.get(2) {
                None => None,
                Some(&"inet") => Some(Family::Inet),
                Some(&"inet6") => Some(Family::Inet6),
                Some(other) => {
                    ctx.error(
                        &line,
                        format!("({name}): fwmark '{mark}' family {other} unknown - ignoring"),
                    );
                    continue;
                }
            };
            members.push(VsGroupMember::Fwmark { mark, family });
            continue;
        }
        let port = match words.get(1) {
            None => Some(0),
            Some(p) => p.parse::<u16>().ok(),
        };
        match (parse_range(words[0]), port) {
            (Some((first, last)), Some(port)) => {
                members.push(VsGroupMember::Addr { first, last, port })
            }
            _ => ctx.error(
                &line,
                format!(
                    "Invalid virtual server group IP address {} - skipping",
                    words.join(" ")
                ),
            ),
        }
    }
    if members.is_empty() {
        ctx.error(
            node,
            format!("virtual server group {name} has no entries - removing"),
        );
        return None;
    }
    Some(VsGroup {
        name,
        members,
        span: node.span(),
    })
}

/// `a.b.c.d`, `a.b.c.d-e` (last octet / hextet range).
fn parse_range(text: &str) -> Option<(IpAddr, IpAddr)> {
    let (addr, end) = match text.rsplit_once('-') {
        Some((a, e)) => (a, Some(e)),
        None => (text, None),
    };
    let first: IpAddr = addr.parse().ok()?;
    let Some(end) = end else {
        return Some((first, first));
    };
    let last = match first {
        IpAddr::V4(v4) => {
            let end: u8 = end.parse().ok()?;
            let mut o = v4.octets();
            if end <= o[3] {
                return None;
            }
            o[3] = end;
            IpAddr::from(o)
        }
        IpAddr::V6(v6) => {
            let end = u16::from_str_radix(end, 16).ok()?;
            let mut s = v6.segments();
            if end <= s[7] {
                return None;
            }
            s[7] = end;
            IpAddr::from(s)
        }
    };
    Some((first, last))
}

/// A real server while parsing (None = inherit from the virtual server).
struct RawRs {
    node: Node,
    address: SocketAddr,
    weight: Option<u32>,
    method: Option<Method>,
    uthreshold: u32,
    lthreshold: u32,
    inhibit: Option<bool>,
    notify_up: Option<Script>,
    notify_down: Option<Script>,
    alpha: Option<bool>,
    retry: Option<u32>,
    connect_timeout: Option<Duration>,
    delay_loop: Option<Duration>,
    warmup: Option<Duration>,
    delay_before_retry: Option<Duration>,
    checkers: Vec<RawChecker>,
}

fn socket(ip: &str, port: Option<&str>) -> Option<SocketAddr> {
    let ip: IpAddr = ip.parse().ok()?;
    let port = match port {
        None => 0,
        Some(p) => p.parse::<u16>().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

fn script(node: &Node) -> Option<Script> {
    (!node.args.is_empty()).then(|| Script {
        command: node.arg(0).unwrap_or_default().to_string(),
        user: node.arg(1).map(str::to_string),
    })
}

/// lb_kind / lvs_method arguments (svr_forwarding_handler).
fn parse_method(ctx: &mut Ctx, node: &Node, who: &str) -> Option<Method> {
    let kind = ctx.arg(node, 0)?;
    let method = match kind {
        "NAT" => return Some(Method::Nat),
        "DR" => return Some(Method::Dr),
        "TUN" => Method::Tun {
            kind: TunnelKind::Ipip,
            csum: None,
        },
        other => {
            ctx.error(
                node,
                format!("PARSER : unknown [{other}] routing method for {who} server."),
            );
            return None;
        }
    };
    let _ = method;
    let mut tunnel = "ipip";
    let mut port: u16 = 0;
    let mut csum = None;
    let mut i = 1;
    while let Some(word) = node.arg(i) {
        match word {
            "type" => match node.arg(i + 1) {
                Some(t @ ("ipip" | "gue" | "gre")) => {
                    tunnel = t;
                    i += 1;
                }
                Some(t) => {
                    ctx.error(node, format!("Unknown tunnel type {t} for {who} server."));
                    return None;
                }
                None => {
                    ctx.error(node, format!("Missing tunnel type for {who} server."));
                    return None;
                }
            },
            "port" => match node
                .arg(i + 1)
                .map(|p| (p, crate::parser::parse_unsigned(p)))
            {
                Some((_, Some(p))) if (1..=65535).contains(&p) => {
                    port = u16::try_from(p).unwrap_or(0);
                    i += 1;
                }
                Some((p, _)) => {
                    ctx.error(
                        node,
                        format!("Invalid gue tunnel port {p} for {who} server."),
                    );
                    return None;
                }
                None => {
                    ctx.error(node, format!("Missing port for {who} server gue tunnel."));
                    return None;
                }
            },
            "nocsum" => csum = Some(TunnelCsum::NoCsum),
            "csum" => csum = Some(TunnelCsum::Csum),
            "remcsum" => csum = Some(TunnelCsum::RemCsum),
            other => {
                ctx.error(
                    node,
                    format!("Invalid tunnel option {other} for {who} server."),
                );
                return None;
            }
        }
        i += 1;
    }
    if (tunnel == "gue") != (port != 0) {
        ctx.error(
            node,
            "gue tunnels require port, otherwise cannot have port.",
        );
        return None;
    }
    if tunnel == "ipip" && matches!(csum, Some(TunnelCsum::Csum | TunnelCsum::RemCsum)) {
        ctx.error(node, "ipip tunnels do not support checksum option.");
        return None;
    }
    if tunnel == "gre" && csum == Some(TunnelCsum::RemCsum) {
        ctx.error(node, "gre tunnels do not support remote checksum option.");
        return None;
    }
    let kind = match tunnel {
        "gue" => TunnelKind::Gue { port },
        "gre" => TunnelKind::Gre,
        _ => TunnelKind::Ipip,
    };
    Some(Method::Tun { kind, csum })
}

pub fn parse_virtual_server(
    ctx: &mut Ctx,
    node: &Node,
    groups: &[VsGroup],
    known: &KnownNames,
) -> Option<VirtualServer> {
    let first = ctx.arg(node, 0)?;
    let address = match first {
        "group" => VsAddress::Group(ctx.arg(node, 1)?.to_string()),
        "fwmark" => {
            let text = ctx.arg(node, 1)?;
            match crate::parser::parse_unsigned(text).and_then(|m| u32::try_from(m).ok()) {
                Some(mark) => {
                    let family = match node.arg(2) {
                        Some("inet6") => Some(Family::Inet6),
                        Some("inet") => Some(Family::Inet),
                        _ => None,
                    };
                    VsAddress::Fwmark { mark, family }
                }
                None => {
                    ctx.error(
                        node,
                        format!(
                            "virtual server fwmark '{text}' must be in [0, {}] - ignoring",
                            u32::MAX
                        ),
                    );
                    return None;
                }
            }
        }
        ip => match socket(ip, node.arg(1)) {
            Some(sa) => VsAddress::Addr(sa),
            None => {
                ctx.error(
                    node,
                    format!(
                        "Invalid virtual server IP address {} - skipping",
                        node.rest()
                    ),
                );
                return None;
            }
        },
    };
    let mut vs = VirtualServer {
        span: node.span(),
        address,
        protocol: Protocol::Tcp,
        scheduler: String::new(),
        sched_flags: [false; 3],
        sh_port: false,
        sh_fallback: false,
        mh_port: false,
        mh_fallback: false,
        ops: false,
        method: Method::Nat,
        persistence_timeout: None,
        persistence_granularity: None,
        persistence_engine: None,
        ha_suspend: false,
        virtualhost: None,
        alpha: false,
        omega: false,
        quorum: 1,
        hysteresis: 0,
        quorum_up: None,
        quorum_down: None,
        sorry_server: None,
        inhibit_on_failure: false,
        delay_loop: Duration::from_secs(60),
        warmup: None,
        real_servers: Vec::new(),
    };
    let mut protocol: Option<Protocol> = None;
    let mut method: Option<Method> = None;
    let mut connect_timeout = Duration::from_secs(5);
    let mut retry: Option<u32> = None;
    let mut delay_before_retry: Option<Duration> = None;
    let mut vs_weight: u32 = 1;
    let mut sorry_method: Option<Method> = None;
    let mut raw_servers: Vec<RawRs> = Vec::new();

    for child in ctx.block(node).to_vec() {
        if child.name() != "real_server" {
            ctx.leaf(&child);
        }
        match child.name() {
            "ip_family" => match ctx.arg(&child, 0) {
                Some("inet" | "inet6") | None => {}
                Some(other) => ctx.error(&child, format!("unknown address family {other}")),
            },
            "retry" => {
                retry = ctx
                    .unsigned(&child, 0, 1, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .or(retry)
            }
            "delay_before_retry" => {
                delay_before_retry = ctx.timer(&child, 0, 0, 0).or(delay_before_retry)
            }
            "warmup" => vs.warmup = ctx.timer(&child, 0, 0, 0).or(vs.warmup),
            "connect_timeout" => {
                connect_timeout = ctx
                    .timer(&child, 0, 1, u64::from(u32::MAX))
                    .unwrap_or(connect_timeout)
            }
            "delay_loop" => vs.delay_loop = ctx.timer(&child, 0, 1, 0).unwrap_or(vs.delay_loop),
            "inhibit_on_failure" => {
                vs.inhibit_on_failure = ctx.flag(&child).unwrap_or(vs.inhibit_on_failure)
            }
            "lb_algo" | "lvs_sched" => {
                if let Some(s) = ctx.arg(&child, 0) {
                    if SCHEDULERS.contains(&s) {
                        vs.scheduler = s.to_string();
                    } else {
                        ctx.error(&child, format!("Invalid lvs_scheduler '{s}' - ignoring"));
                    }
                }
            }
            "hashed" => {}
            "ops" => vs.ops = true,
            "flag-1" => vs.sched_flags[0] = true,
            "flag-2" => vs.sched_flags[1] = true,
            "flag-3" => vs.sched_flags[2] = true,
            flag @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => {
                // Only valid once the matching scheduler is already set (check_parser.c).
                match (vs.scheduler.as_str(), flag) {
                    ("sh", "sh-port") => vs.sh_port = true,
                    ("sh", "sh-fallback") => vs.sh_fallback = true,
                    ("mh", "mh-port") => vs.mh_port = true,
                    ("mh", "mh-fallback") => vs.mh_fallback = true,
                    ("sh" | "mh", _) => {}
                    _ => ctx.error(
                        &child,
                        format!("{flag} only applies to sh scheduler - ignoring"),
                    ),
                }
            }
            "lb_kind" | "lvs_method" => method = parse_method(ctx, &child, "virtual").or(method),
            "persistence_engine" => vs.persistence_engine = ctx.arg(&child, 0).map(str::to_string),
            "persistence_timeout" => {
                if child.args.is_empty() {
                    vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
                } else if let Some(v) =
                    crate::parser::parse_unsigned(child.arg(0).unwrap_or_default())
                        .filter(|v| (1..=MAX_PERSISTENCE).contains(v))
                {
                    vs.persistence_timeout = u32::try_from(v).ok();
                } else {
                    ctx.error(&child, "persistence_timeout invalid");
                }
            }
            "persistence_granularity" => {
                if let Some(text) = ctx.arg(&child, 0) {
                    // keepalived does not require a solid IPv4 netmask (its check is compiled out).
                    match text.parse::<std::net::Ipv4Addr>() {
                        Ok(mask) => vs.persistence_granularity = Some(IpAddr::V4(mask)),
                        Err(_) => match crate::parser::parse_unsigned(text)
                            .filter(|v| (1..=128).contains(v))
                        {
                            Some(bits) => {
                                let bits = u32::try_from(bits).unwrap_or(128);
                                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                                vs.persistence_granularity = Some(IpAddr::V6(mask.into()));
                            }
                            None => ctx.error(
                                &child,
                                format!("Invalid persistence_granularity specified - {text}"),
                            ),
                        },
                    }
                }
            }
            "protocol" => match ctx.arg(&child, 0).map(str::to_ascii_uppercase).as_deref() {
                Some("TCP") => protocol = Some(Protocol::Tcp),
                Some("UDP") => protocol = Some(Protocol::Udp),
                Some("SCTP") => protocol = Some(Protocol::Sctp),
                Some(_) => ctx.error(
                    &child,
                    format!("Unknown protocol {} - ignoring", child.rest()),
                ),
                None => {}
            },
            "ha_suspend" => vs.ha_suspend = true,
            "smtp_alert" => {
                let _ = ctx.flag(&child);
            }
            "virtualhost" => match child.arg(0) {
                Some(v) => vs.virtualhost = Some(v.to_string()),
                None => ctx.error(&child, "virtual server virtualhost missing"),
            },
            "alpha" => vs.alpha = true,
            "omega" => vs.omega = true,
            "quorum_up" => vs.quorum_up = script(&child),
            "quorum_down" => vs.quorum_down = script(&child),
            "quorum" => match ctx.unsigned(&child, 0, 1, u64::from(u32::MAX)) {
                Some(v) => vs.quorum = u32::try_from(v).unwrap_or(1),
                None => vs.quorum = 1,
            },
            "hysteresis" => {
                if let Some(v) = ctx.unsigned(&child, 0, 0, u64::from(u32::MAX)) {
                    vs.hysteresis = u32::try_from(v).unwrap_or(0);
                }
            }
            "weight" => match ctx.unsigned(&child, 0, 1, WEIGHT_LIMIT) {
                Some(v) => vs_weight = u32::try_from(v).unwrap_or(1),
                None => ctx.error(
                    &child,
                    format!(
                        "Virtual server weight {} is outside range 1-{WEIGHT_LIMIT}",
                        child.rest()
                    ),
                ),
            },
            "sorry_server" => {
                let Some(ip) = ctx.arg(&child, 0) else {
                    continue;
                };
                match socket(ip, child.arg(1)) {
                    Some(address) => {
                        vs.sorry_server = Some(SorryServer {
                            address,
                            method: None,
                            inhibit: false,
                        })
                    }
                    None => ctx.error(
                        &child,
                        format!("Invalid sorry server IP address {ip} - skipping"),
                    ),
                }
            }
            "sorry_server_inhibit" => match vs.sorry_server.as_mut() {
                Some(s) => s.inhibit = true,
                None => ctx.error(
                    &child,
                    "Ignoring sorry_server inhibit used before or without sorry_server",
                ),
            },
            "sorry_server_lvs_method" => {
                if vs.sorry_server.is_some() {
                    sorry_method = parse_method(ctx, &child, "sorry").or(sorry_method);
                } else {
                    ctx.error(&child, "sorry_server forwarding used without sorry_server");
                }
            }
            "real_server" => {
                if let Some(rs) = parse_real_server(ctx, &child, known) {
                    raw_servers.push(rs);
                }
            }
            "snmp_name" => {}
            _ => ctx.unknown(&child),
        }
    }

    // End-of-configuration validation, in keepalived's order (check_data.c).
    if raw_servers.is_empty() {
        ctx.warn(
            node,
            format!(
                "Virtual server {} has no real servers - ignoring",
                describe(&vs.address)
            ),
        );
        return None;
    }
    let (has_addresses, fwmark_only) = match &vs.address {
        VsAddress::Addr(_) => (true, false),
        VsAddress::Fwmark { .. } => (false, true),
        VsAddress::Group(name) => match groups.iter().find(|g| &g.name == name) {
            Some(g) => {
                let addrs = g
                    .members
                    .iter()
                    .any(|m| matches!(m, VsGroupMember::Addr { .. }));
                (addrs, !addrs)
            }
            None => {
                ctx.error(node, format!("Virtual server group {name} not found"));
                return None;
            }
        },
    };
    if vs.ha_suspend && matches!(vs.address, VsAddress::Fwmark { .. }) {
        ctx.warn(
            node,
            "cannot use ha_suspend with fwmarks - clearing ha_suspend",
        );
        vs.ha_suspend = false;
    }
    if has_addresses {
        if protocol.is_none() {
            ctx.warn(
                node,
                format!(
                    "Virtual server {}: no protocol set - defaulting to UDP",
                    describe(&vs.address)
                ),
            );
            protocol = Some(Protocol::Udp);
        }
        if vs.ops && protocol != Some(Protocol::Udp) {
            ctx.error(node, "one packet scheduling requires UDP - resetting");
            vs.ops = false;
        }
        if let VsAddress::Addr(sa) = &vs.address {
            if sa.port() == 0 && vs.persistence_timeout.is_none() {
                ctx.warn(
                    node,
                    "zero port only valid for persistent services - setting",
                );
                vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
            }
        }
    }
    if let (VsAddress::Group(name), None) = (&vs.address, vs.persistence_timeout) {
        let zero_port = groups
            .iter()
            .filter(|g| &g.name == name)
            .flat_map(|g| &g.members)
            .any(|m| matches!(m, VsGroupMember::Addr { port: 0, .. }));
        if zero_port {
            ctx.warn(
                node,
                "zero port only valid for persistent services - setting",
            );
            vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
        }
    }
    if fwmark_only && protocol.is_some() {
        ctx.warn(
            node,
            "protocol specified for fwmark - protocol will be ignored",
        );
        protocol = None;
    }
    vs.protocol = protocol.unwrap_or(Protocol::Tcp);
    if vs.scheduler.is_empty() {
        ctx.warn(
            node,
            format!(
                "Virtual server {}: no scheduler set, setting default 'wlc'",
                describe(&vs.address)
            ),
        );
        vs.scheduler = "wlc".into();
    }

    let vs_port = match &vs.address {
        VsAddress::Addr(sa) => Some(sa.port()),
        _ => None,
    };
    let vs_family = match &vs.address {
        VsAddress::Addr(sa) => Some(sa.is_ipv4()),
        _ => None,
    };
    let mut defaulted_method = false;
    let mut weight_sum: u64 = 0;
    let mut seen: Vec<SocketAddr> = Vec::new();
    for raw in raw_servers {
        if seen.contains(&raw.address) {
            ctx.error(
                &raw.node,
                format!(
                    "real server {} is duplicated - removing second rs",
                    raw.address
                ),
            );
            continue;
        }
        seen.push(raw.address);
        if let Some(vs_ip) = vs_family {
            if vs_ip != raw.address.is_ipv4() {
                ctx.error(&raw.node, format!("Address family of virtual server and real server {} don't match - skipping real server.", raw.address.ip()));
                continue;
            }
        }
        let method = match raw.method {
            Some(m) => m,
            None => {
                if method.is_none() && !defaulted_method {
                    ctx.warn(
                        node,
                        format!(
                            "Virtual server {}: no forwarding method set, setting default NAT",
                            describe(&vs.address)
                        ),
                    );
                    defaulted_method = true;
                }
                method.unwrap_or(Method::Nat)
            }
        };
        let mut address = raw.address;
        if method == Method::Nat {
            if vs_port.is_some() && address.port() == 0 {
                address.set_port(vs_port.unwrap_or(0));
            }
        } else if let Some(port) = vs_port {
            if address.port() == 0 {
                address.set_port(port);
            } else if address.port() != port {
                ctx.warn(
                    &raw.node,
                    format!(
                        "virtual server and real server {} ports don't match - resetting",
                        raw.address
                    ),
                );
                address.set_port(port);
            }
        } else if matches!(vs.address, VsAddress::Fwmark { .. }) && address.port() != 0 {
            ctx.warn(
                &raw.node,
                format!(
                    "fwmark virtual server, real server {} has port specified - clearing",
                    raw.address
                ),
            );
            address.set_port(0);
        } else if let VsAddress::Group(name) = &vs.address {
            for g in groups.iter().filter(|g| &g.name == name) {
                for m in &g.members {
                    match m {
                        VsGroupMember::Addr { port, .. }
                            if address.port() != 0 && *port != address.port() =>
                        {
                            ctx.warn(&raw.node, format!("virtual server group member and real server {} ports don't match", raw.address));
                        }
                        VsGroupMember::Fwmark { .. } if address.port() != 0 => {
                            ctx.warn(&raw.node, format!("fwmark virtual server, real server {} has port specified - port will be ignored", raw.address));
                        }
                        _ => {}
                    }
                }
            }
        }
        let alpha = raw.alpha.unwrap_or(vs.alpha);
        let inhibit = raw.inhibit.unwrap_or(vs.inhibit_on_failure);
        let weight = raw.weight.unwrap_or(vs_weight);
        weight_sum += u64::from(weight);
        let rs_retry = raw.retry.or(retry);
        let rs_timeout = raw.connect_timeout.unwrap_or(connect_timeout);
        let rs_delay = raw.delay_loop.unwrap_or(vs.delay_loop);
        let rs_warmup = raw.warmup.or(vs.warmup);
        let rs_dbr = raw.delay_before_retry.or(delay_before_retry);
        let checkers = raw
            .checkers
            .into_iter()
            .map(|c| {
                let delay_loop = c.timing.delay_loop.unwrap_or(rs_delay);
                Checker {
                    span: c.node_span,
                    kind: c.kind,
                    connect_ip: c.connect_ip,
                    connect_port: c.connect_port,
                    bindto: c.bindto,
                    bind_port: c.bind_port,
                    bind_if: c.bind_if,
                    fwmark: c.fwmark,
                    timing: CheckTiming {
                        connect_timeout: c.timing.connect_timeout.unwrap_or(rs_timeout),
                        retry: c.timing.retry.or(rs_retry).unwrap_or(c.default_retry),
                        delay_before_retry: c
                            .timing
                            .delay_before_retry
                            .or(rs_dbr)
                            .or(c.default_delay_before_retry)
                            .unwrap_or(delay_loop),
                        delay_loop,
                        warmup: c.timing.warmup.or(rs_warmup).unwrap_or(delay_loop),
                    },
                    alpha: c.alpha.unwrap_or(alpha),
                    log_all_failures: c.log_all_failures,
                }
            })
            .collect();
        if let Some(sorry) = &vs.sorry_server {
            if sorry.address == address && sorry.inhibit != inhibit {
                ctx.warn(
                    &raw.node,
                    "real server matches sorry server, but inhibit setting differs",
                );
            }
        }
        vs.real_servers.push(RealServer {
            span: raw.node.span(),
            address,
            weight,
            method,
            uthreshold: raw.uthreshold,
            lthreshold: raw.lthreshold,
            inhibit_on_failure: inhibit,
            notify_up: raw.notify_up,
            notify_down: raw.notify_down,
            alpha,
            checkers,
        });
    }
    if let Some(sorry) = vs.sorry_server.as_mut() {
        let sorry_effective = match sorry_method {
            Some(m) => m,
            None => {
                if method.is_none() && !defaulted_method {
                    ctx.warn(
                        node,
                        format!(
                            "Virtual server {}: no forwarding method set, setting default NAT",
                            describe(&vs.address)
                        ),
                    );
                }
                method.unwrap_or(Method::Nat)
            }
        };
        sorry.method = sorry_method;
        if sorry_effective != Method::Nat {
            if let Some(port) = vs_port {
                if sorry.address.port() == 0 {
                    sorry.address.set_port(port);
                } else if sorry.address.port() != port {
                    ctx.warn(
                        node,
                        "virtual server and sorry server ports don't match - resetting",
                    );
                    sorry.address.set_port(port);
                }
            } else if sorry.address.port() != 0 && !matches!(vs.address, VsAddress::Group(_)) {
                ctx.warn(
                    node,
                    "fwmark virtual server, sorry server has port specified - clearing",
                );
                sorry.address.set_port(0);
            }
        }
    }
    vs.method = method.unwrap_or(Method::Nat);
    if vs.real_servers.is_empty() {
        ctx.warn(
            node,
            format!(
                "Virtual server {} has no real servers - ignoring",
                describe(&vs.address)
            ),
        );
        return None;
    }
    if u64::from(vs.quorum) > weight_sum {
        ctx.warn(
            node,
            format!(
                "quorum {} exceeds total weight of real servers {weight_sum}, reducing quorum",
                vs.quorum
            ),
        );
        vs.quorum = u32::try_from(weight_sum).unwrap_or(u32::MAX);
    }
    if vs.hysteresis >= vs.quorum {
        ctx.warn(
            node,
            format!("hysteresis {} >= quorum {}", vs.hysteresis, vs.quorum),
        );
        vs.hysteresis = vs.quorum.saturating_sub(1);
    }
    Some(vs)
}

fn describe(address: &VsAddress) -> String {
    match address {
        VsAddress::Addr(sa) => sa.to_string(),
        VsAddress::Fwmark { mark, .. } => format!("FWM {mark}"),
        VsAddress::Group(name) => name.clone(),
    }
}

fn parse_real_server(ctx: &mut Ctx, node: &Node, known: &KnownNames) -> Option<RawRs> {
    let ip = ctx.arg(node, 0)?;
    let Some(address) = socket(ip, node.arg(1)) else {
        ctx.error(
            node,
            format!(
                "Invalid real server ip address/port {} - skipping",
                node.rest()
            ),
        );
        return None;
    };
    let mut rs = RawRs {
        node: node.clone(),
        address,
        weight: None,
        method: None,
        uthreshold: 0,
        lthreshold: 0,
        inhibit: None,
        notify_up: None,
        notify_down: None,
        alpha: None,
        retry: None,
        connect_timeout: None,
        delay_loop: None,
        warmup: None,
        delay_before_retry: None,
        checkers: Vec::new(),
    };
    let children = match &node.block {
        Some(children) => children.clone(),
        None => {
            ctx.error(node, "Missing '{' at beginning of configuration block");
            Vec::new()
        }
    };
    for child in &children {
        if CHECKER_KEYWORDS.contains(&child.name()) {
            if let Some(checker) = parse_checker(ctx, child, known) {
                rs.checkers.push(checker);
            }
            continue;
        }
        ctx.leaf(child);
        match child.name() {
            "weight" => match crate::parser::parse_unsigned(child.arg(0).unwrap_or_default())
                .filter(|w| *w <= WEIGHT_LIMIT)
            {
                Some(w) => rs.weight = u32::try_from(w).ok(),
                None => ctx.error(
                    child,
                    format!(
                        "Real server weight {} is outside range 0-{WEIGHT_LIMIT}",
                        child.rest()
                    ),
                ),
            },
            "lvs_method" => rs.method = parse_method(ctx, child, "real").or(rs.method),
            "uthreshold" => {
                rs.uthreshold = ctx
                    .unsigned(child, 0, 0, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(rs.uthreshold)
            }
            "lthreshold" => {
                rs.lthreshold = ctx
                    .unsigned(child, 0, 0, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(rs.lthreshold)
            }
            "inhibit_on_failure" => rs.inhibit = ctx.flag(child).or(rs.inhibit),
            "notify_up" => rs.notify_up = script(child),
            "notify_down" => rs.notify_down = script(child),
            "alpha" => rs.alpha = ctx.flag(child).or(rs.alpha),
            "retry" => {
                rs.retry = ctx
                    .unsigned(child, 0, 1, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .or(rs.retry)
            }
            "delay_before_retry" => {
                rs.delay_before_retry = ctx.timer(child, 0, 0, 0).or(rs.delay_before_retry)
            }
            "warmup" => rs.warmup = ctx.timer(child, 0, 0, 0).or(rs.warmup),
            "connect_timeout" => {
                rs.connect_timeout = ctx
                    .timer(child, 0, 1, u64::from(u32::MAX))
                    .or(rs.connect_timeout)
            }
            "delay_loop" => rs.delay_loop = ctx.timer(child, 0, 1, 0).or(rs.delay_loop),
            "smtp_alert" => {
                let _ = ctx.flag(child);
            }
            "virtualhost" => {
                if child.args.is_empty() {
                    ctx.error(child, "real server virtualhost missing");
                }
            }
            "snmp_name" => {}
            _ => ctx.unknown(child),
        }
    }
    Some(rs)
}
