//! VRRP blocks (keepalived/vrrp/vrrp_parser.c): vrrp_instance, vrrp_sync_group and
//! vrrp_script are modelled; the other VRRP roots (static_ipaddress, static_routes,
//! linkbeat_interfaces, track_file...) are only checked for known keywords.
//! Interfaces are checked against the running host (/sys/class/net) as keepalived does,
//! so a VRRP verdict depends on the machine, like keepalived's.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::{
    Script, TrackInterface, TrackScript, VrrpAddress, VrrpAuth, VrrpInstance, VrrpScript,
    VrrpState, VrrpSyncGroup,
};
use crate::parser::{Ctx, Kw, Node};

/// vrrp_instance keywords rvs keeps only in `other` (value blocks listed separately).
const INSTANCE_OTHER: &[&str] = &[
    "use_vmac",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "old_unicast_checksum",
    "native_ipv6",
    "vrf",
    "dont_track_primary",
    "mcast_dst_ip",
    "track_src_ip",
    "unicast_ttl",
    "promote_secondaries",
    "linkbeat_use_polling",
    "no_accept",
    "skip_check_adv_addr",
    "strict_mode",
    "preempt",
    "debug",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "smtp_alert",
    "notify_priority_changes",
    "lvs_sync_daemon_interface",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "down_timer_adverts",
    "garp_extra_if",
    "vmac_garp_intvl",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "kernel_rx_buf_size",
];
const INSTANCE_VALUE_BLOCKS: &[&str] = &[
    "track_file",
    "track_process",
    "track_bfd",
    "virtual_routes",
    "virtual_rules",
];

pub const SYNC_GROUP_OTHER: &[&str] = &[
    "smtp_alert",
    "global_tracking",
    "sync_group_tracking_weight",
    "notify_priority_changes",
    "notify_stop",
];

/// Roots rvs does not model, with their keyword tables.
pub const OTHER_ROOTS: &[(&str, Kw)] = &[
    ("track_group", Kw::Block(&[("group", Kw::Values)])),
    ("static_ipaddress", Kw::Values),
    ("static_routes", Kw::Values),
    ("static_rules", Kw::Values),
    (
        "garp_group",
        Kw::Block(&[
            ("garp_interval", Kw::Leaf),
            ("gna_interval", Kw::Leaf),
            ("interface", Kw::Leaf),
            ("interfaces", Kw::Values),
        ]),
    ),
    ("linkbeat_interfaces", Kw::Values),
    (
        "vrrp_track_process",
        Kw::Block(&[
            ("process", Kw::Leaf),
            ("param_match", Kw::Leaf),
            ("weight", Kw::Leaf),
            ("quorum", Kw::Leaf),
            ("quorum_max", Kw::Leaf),
            ("delay", Kw::Leaf),
            ("terminate_delay", Kw::Leaf),
            ("fork_delay", Kw::Leaf),
            ("full_command", Kw::Leaf),
        ]),
    ),
    ("interface_up_down_delays", Kw::Values),
    ("track_file", Kw::Block(TRACK_FILE)),
    ("vrrp_track_file", Kw::Block(TRACK_FILE)),
    (
        "bfd_instance",
        Kw::Block(&[
            ("source_ip", Kw::Leaf),
            ("neighbor_ip", Kw::Leaf),
            ("neighbour_ip", Kw::Leaf),
            ("min_rx", Kw::Leaf),
            ("min_tx", Kw::Leaf),
            ("idle_tx", Kw::Leaf),
            ("multiplier", Kw::Leaf),
            ("passive", Kw::Leaf),
            ("ttl", Kw::Leaf),
            ("hoplimit", Kw::Leaf),
            ("max_hops", Kw::Leaf),
            ("weight", Kw::Leaf),
            ("vrrp", Kw::Leaf),
            ("checker", Kw::Leaf),
        ]),
    ),
    (
        "SSL",
        Kw::Block(&[
            ("password", Kw::Leaf),
            ("ca", Kw::Leaf),
            ("certificate", Kw::Leaf),
            ("key", Kw::Leaf),
        ]),
    ),
    ("linkbeat_use_polling", Kw::Leaf),
    ("net_namespace", Kw::Leaf),
    ("net_namespace_ipvs", Kw::Leaf),
    ("namespace_with_ipsets", Kw::Leaf),
    ("use_pid_dir", Kw::Leaf),
    ("instance", Kw::Leaf),
    ("child_wait_time", Kw::Leaf),
];
const TRACK_FILE: &[(&str, Kw)] = &[
    ("file", Kw::Leaf),
    ("weight", Kw::Leaf),
    ("init_file", Kw::Leaf),
];

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

fn script(node: &Node) -> Option<Script> {
    (!node.args.is_empty()).then(|| Script {
        command: node.arg(0).unwrap_or_default().to_string(),
        user: node.arg(1).map(str::to_string),
    })
}

/// `ADDR[/LEN] [dev IF] [label L] ...` (other options accepted).
fn parse_vip(ctx: &mut Ctx, line: &Node) -> Option<VrrpAddress> {
    let (addr, prefix) = match line.name().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (line.name(), None),
    };
    let Ok(address) = addr.parse::<IpAddr>() else {
        ctx.error(line, format!("Invalid address {} - skipping", line.name()));
        return None;
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix.map(|p| p.parse::<u8>()) {
        None => None,
        Some(Ok(p)) if p <= max => Some(p),
        Some(_) => {
            ctx.error(line, format!("Invalid address prefix {}", line.name()));
            return None;
        }
    };
    let mut vip = VrrpAddress {
        address,
        prefix_len,
        dev: None,
        label: None,
    };
    let mut i = 0;
    while let Some(word) = line.arg(i) {
        match word {
            "dev" => vip.dev = line.arg(i + 1).map(str::to_string),
            "label" => vip.label = line.arg(i + 1).map(str::to_string),
            _ => {}
        }
        i += 2;
    }
    Some(vip)
}

fn track_interfaces(ctx: &mut Ctx, node: &Node) -> Vec<TrackInterface> {
    let mut out = Vec::new();
    for line in ctx.block(node).to_vec() {
        let name = line.name().to_string();
        if !interface_exists(&name) {
            ctx.error(&line, format!("unknown interface {name}"));
        }
        let weight = match (line.arg(0), line.arg(1)) {
            (Some("weight"), Some(w)) => w.parse::<i32>().unwrap_or(0),
            _ => 0,
        };
        out.push(TrackInterface {
            name,
            weight,
            reverse: line.args.iter().any(|t| t.text == "reverse"),
        });
    }
    out
}

fn track_scripts(ctx: &mut Ctx, node: &Node, scripts: &[String]) -> Vec<TrackScript> {
    let mut out = Vec::new();
    for line in ctx.block(node).to_vec() {
        let name = line.name().to_string();
        if !scripts.contains(&name) {
            ctx.warn(&line, format!("track script {name} not found, ignoring..."));
            continue;
        }
        let weight = match (line.arg(0), line.arg(1)) {
            (Some("weight"), Some(w)) => w.parse::<i32>().ok(),
            _ => None,
        };
        out.push(TrackScript {
            name,
            weight,
            reverse: line.args.iter().any(|t| t.text == "reverse"),
        });
    }
    out
}

pub fn parse_vrrp_script(ctx: &mut Ctx, node: &Node) -> Option<VrrpScript> {
    let name = ctx.arg(node, 0)?.to_string();
    let mut script = VrrpScript {
        span: node.span(),
        name,
        script: String::new(),
        interval: Duration::from_secs(1),
        timeout: None,
        weight: 0,
        rise: 1,
        fall: 1,
        user: None,
        init_fail: false,
    };
    for child in ctx.block(node).to_vec() {
        ctx.leaf(&child);
        match child.name() {
            "script" => script.script = child.rest(),
            "interval" => script.interval = ctx.timer(&child, 0, 1, 0).unwrap_or(script.interval),
            "timeout" => script.timeout = ctx.timer(&child, 0, 1, 0).or(script.timeout),
            "weight" => {
                script.weight = ctx
                    .int(&child, 0, -253, 253)
                    .and_then(|v| i32::try_from(v).ok())
                    .unwrap_or(script.weight)
            }
            "rise" => {
                script.rise = ctx
                    .unsigned(&child, 0, 1, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(script.rise)
            }
            "fall" => {
                script.fall = ctx
                    .unsigned(&child, 0, 1, u64::from(u32::MAX))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(script.fall)
            }
            "user" => script.user = ctx.arg(&child, 0).map(str::to_string),
            "init_fail" => script.init_fail = true,
            _ => ctx.unknown(&child),
        }
    }
    if script.script.is_empty() {
        ctx.error(
            node,
            format!("No script specified for vrrp_script {}", script.name),
        );
        return None;
    }
    Some(script)
}

pub fn parse_instance(ctx: &mut Ctx, node: &Node, scripts: &[String]) -> Option<VrrpInstance> {
    let name = ctx.arg(node, 0)?.to_string();
    let mut vi = VrrpInstance {
        span: node.span(),
        name,
        state: None,
        interface: None,
        virtual_router_id: 0,
        priority: 100,
        advert_int: Duration::from_secs(1),
        version: None,
        nopreempt: false,
        preempt_delay: Duration::ZERO,
        authentication: None,
        virtual_ipaddress: Vec::new(),
        virtual_ipaddress_excluded: Vec::new(),
        unicast_src_ip: None,
        unicast_peers: Vec::new(),
        mcast_src_ip: None,
        track_interfaces: Vec::new(),
        track_scripts: Vec::new(),
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        garp_master_delay: Duration::from_secs(5),
        garp_master_repeat: 5,
        garp_master_refresh: None,
        accept: None,
        other: Vec::new(),
    };
    for child in ctx.block(node).to_vec() {
        let name = child.name();
        let value_block = matches!(
            name,
            "virtual_ipaddress"
                | "virtual_ipaddress_excluded"
                | "unicast_peer"
                | "track_interface"
                | "track_script"
                | "authentication"
        ) || INSTANCE_VALUE_BLOCKS.contains(&name);
        if !value_block {
            ctx.leaf(&child);
        }
        match name {
            "state" => match ctx.arg(&child, 0) {
                Some("MASTER") => vi.state = Some(VrrpState::Master),
                Some("BACKUP") => vi.state = Some(VrrpState::Backup),
                Some(other) => ctx.error(
                    &child,
                    format!(
                        "({}) unknown state '{other}', defaulting to BACKUP",
                        vi.name
                    ),
                ),
                None => {}
            },
            "interface" => {
                if let Some(ifname) = ctx.arg(&child, 0) {
                    if ifname == "lo" {
                        ctx.error(
                            &child,
                            format!(
                                "({}) cannot use a loopback interface (lo) for vrrp - ignoring",
                                vi.name
                            ),
                        );
                    } else if !interface_exists(ifname) {
                        ctx.error(
                            &child,
                            format!("({}) WARNING - interface {ifname} doesn't exist", vi.name),
                        );
                    }
                    vi.interface = Some(ifname.to_string());
                }
            }
            "virtual_router_id" => {
                if let Some(v) = ctx.unsigned(&child, 0, 1, 255) {
                    vi.virtual_router_id = u8::try_from(v).unwrap_or(0);
                }
            }
            "priority" => {
                if let Some(v) = ctx.unsigned(&child, 0, 1, 255) {
                    vi.priority = u8::try_from(v).unwrap_or(100);
                }
            }
            "advert_int" => {
                vi.advert_int = ctx
                    .timer(&child, 0, 10_000, 255_000_000)
                    .unwrap_or(vi.advert_int)
            }
            "version" => {
                if let Some(v) = ctx.unsigned(&child, 0, 2, 3) {
                    vi.version = u8::try_from(v).ok();
                }
            }
            "nopreempt" => vi.nopreempt = true,
            "preempt_delay" => {
                vi.preempt_delay = ctx
                    .timer(&child, 0, 0, 1_000_000_000)
                    .unwrap_or(vi.preempt_delay)
            }
            "authentication" => {
                let mut kind = String::new();
                let mut pass = String::new();
                for line in ctx.block(&child).to_vec() {
                    match line.name() {
                        "auth_type" => match line.arg(0) {
                            Some(k @ ("PASS" | "AH")) => kind = k.to_string(),
                            other => ctx.error(
                                &line,
                                format!("Invalid auth_type {}", other.unwrap_or_default()),
                            ),
                        },
                        "auth_pass" => pass = line.rest(),
                        _ => ctx.unknown(&line),
                    }
                }
                vi.authentication = Some(VrrpAuth { kind, pass });
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for line in ctx.block(&child).to_vec() {
                    if let Some(vip) = parse_vip(ctx, &line) {
                        if name == "virtual_ipaddress" {
                            vi.virtual_ipaddress.push(vip);
                        } else {
                            vi.virtual_ipaddress_excluded.push(vip);
                        }
                    }
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                if let Some(text) = ctx.arg(&child, 0) {
                    match text.parse::<IpAddr>() {
                        Ok(ip) if name == "unicast_src_ip" => vi.unicast_src_ip = Some(ip),
                        Ok(ip) => vi.mcast_src_ip = Some(ip),
                        Err(_) => ctx.error(&child, format!("({}) invalid {name} {text}", vi.name)),
                    }
                }
            }
            "unicast_peer" => {
                for line in ctx.block(&child).to_vec() {
                    match line.name().parse::<IpAddr>() {
                        Ok(ip) => vi.unicast_peers.push(ip),
                        Err(_) => ctx.error(
                            &line,
                            format!(
                                "({}) unicast peer address {} invalid - ignoring",
                                vi.name,
                                line.name()
                            ),
                        ),
                    }
                }
            }
            "track_interface" => vi.track_interfaces = track_interfaces(ctx, &child),
            "track_script" => vi.track_scripts = track_scripts(ctx, &child, scripts),
            "notify_master" => vi.notify_master = script(&child),
            "notify_backup" => vi.notify_backup = script(&child),
            "notify_fault" => vi.notify_fault = script(&child),
            "notify_stop" => vi.notify_stop = script(&child),
            "notify" => vi.notify = script(&child),
            "garp_master_delay" => {
                if let Some(v) = ctx.unsigned(&child, 0, 0, 86400) {
                    vi.garp_master_delay = Duration::from_secs(v);
                }
            }
            "garp_master_repeat" => {
                if let Some(v) = ctx.unsigned(&child, 0, 1, u64::from(u32::MAX)) {
                    vi.garp_master_repeat = u32::try_from(v).unwrap_or(5);
                }
            }
            "garp_master_refresh" => {
                if let Some(v) = ctx.unsigned(&child, 0, 0, u64::from(u32::MAX)) {
                    vi.garp_master_refresh = (v > 0).then(|| Duration::from_secs(v));
                }
            }
            "accept" => vi.accept = Some(true),
            "no_accept" => vi.accept = Some(false),
            n if INSTANCE_OTHER.contains(&n) => vi.other.push((
                n.to_string(),
                child.args.iter().map(|t| t.text.clone()).collect(),
            )),
            n if INSTANCE_VALUE_BLOCKS.contains(&n) => {
                let _ = ctx.block(&child);
                vi.other.push((n.to_string(), Vec::new()));
            }
            _ => ctx.unknown(&child),
        }
    }
    if vi.virtual_router_id == 0 {
        ctx.error(
            node,
            format!("({}) the virtual router id must be set", vi.name),
        );
        return None;
    }
    if vi.interface.is_none() {
        // keepalived falls back to its default interface (eth0), which must exist.
        if !interface_exists("eth0") {
            ctx.error(node, format!("({}) Unknown interface!", vi.name));
        }
    }
    Some(vi)
}

pub fn parse_sync_group(
    ctx: &mut Ctx,
    node: &Node,
    scripts: &[String],
    instances: &[String],
) -> Option<VrrpSyncGroup> {
    let name = ctx.arg(node, 0)?.to_string();
    let mut sg = VrrpSyncGroup {
        span: node.span(),
        name,
        group: Vec::new(),
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify: None,
        track_scripts: Vec::new(),
        track_interfaces: Vec::new(),
    };
    for child in ctx.block(node).to_vec() {
        match child.name() {
            "group" => {
                for line in ctx.block(&child).to_vec() {
                    for word in std::iter::once(line.name())
                        .chain(line.args.iter().map(|t| t.text.as_str()))
                    {
                        if !instances.iter().any(|i| i == word) {
                            ctx.error(&line, format!("Virtual router {word} specified in sync group {} doesn't exist - ignoring", sg.name));
                        }
                        sg.group.push(word.to_string());
                    }
                }
            }
            "track_interface" => sg.track_interfaces = track_interfaces(ctx, &child),
            "track_script" => sg.track_scripts = track_scripts(ctx, &child, scripts),
            "track_file" | "track_process" | "track_bfd" => {
                let _ = ctx.block(&child);
            }
            "notify_master" => sg.notify_master = script(&child),
            "notify_backup" => sg.notify_backup = script(&child),
            "notify_fault" => sg.notify_fault = script(&child),
            "notify" => sg.notify = script(&child),
            n if SYNC_GROUP_OTHER.contains(&n) => ctx.leaf(&child),
            _ => ctx.unknown(&child),
        }
    }
    if sg.group.len() < 2 {
        ctx.warn(
            node,
            format!(
                "Sync group {} has only {} virtual router(s) - this probably isn't what you want",
                sg.name,
                sg.group.len()
            ),
        );
    }
    Some(sg)
}
