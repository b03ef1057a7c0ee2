//! `global_defs` and the other global root keywords (keepalived/core/global_parser.c).
//! Only the LVS-relevant keywords are modelled; the rest are known (no unknown-keyword
//! report) and kept in `GlobalDefs::other`.

use std::net::IpAddr;

use crate::model::{GlobalDefs, LvsSyncDaemon, LvsTimeouts};
use crate::parser::{Ctx, Node};

/// Every keyword of global_defs in keepalived 2.2.7 (install_keyword calls of
/// global_parser.c).
pub const GLOBAL_KEYWORDS: &[&str] = &[
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "lvs_process_name",
    "bfd_process_name",
    "router_id",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "notification_email",
    "smtp_alert",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "max_auto_priority",
    "min_auto_priority_delay",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "checker_log_all_failures",
    "dynamic_interfaces",
    "no_email_faults",
    "default_interface",
    "disable_local_igmp",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "lvs_sync_daemon",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_down_timer_adverts",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_garp_extra_if",
    "vrrp_vmac_garp_intvl",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_version",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_counters",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_strict",
    "vrrp_priority",
    "vrrp_no_swap",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "notify_fifo",
    "notify_fifo_script",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes",
    "fifo_write_vrrp_states_on_reload",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_cpu_affinity",
    "checker_rlimit_rttime",
    "checker_rlimit_rtime",
    "bfd_priority",
    "bfd_no_swap",
    "bfd_rt_priority",
    "bfd_cpu_affinity",
    "bfd_rlimit_rttime",
    "bfd_rlimit_rtime",
    "snmp_socket",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_checker",
    "enable_dbus",
    "dbus_service_name",
    "script_user",
    "enable_script_security",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "rs_init_notifies",
    "no_checker_emails",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_startup_delay",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "umask",
    "random_seed",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "include_check",
    "config_save_dir",
    "tmp_config_directory",
    "data_use_instance",
];

/// global_defs keywords whose `{` block holds values (notification_email).
const GLOBAL_VALUE_BLOCKS: &[&str] = &["notification_email"];

pub fn parse_global_defs(ctx: &mut Ctx, node: &Node, global: &mut GlobalDefs) {
    for child in ctx.block(node).to_vec() {
        let name = child.name();
        if !GLOBAL_KEYWORDS.contains(&name) {
            ctx.unknown(&child);
            continue;
        }
        if !GLOBAL_VALUE_BLOCKS.contains(&name) {
            ctx.leaf(&child);
        }
        match name {
            "router_id" => global.router_id = ctx.arg(&child, 0).map(str::to_string),
            "lvs_flush" => global.lvs_flush = true,
            "script_user" => global.script_user = ctx.arg(&child, 0).map(str::to_string),
            "enable_script_security" => global.enable_script_security = true,
            "lvs_timeouts" => {
                global.lvs_timeouts =
                    Some(parse_lvs_timeouts(ctx, &child, global.lvs_timeouts.take()))
            }
            "lvs_sync_daemon" => {
                if let Some(daemon) = parse_sync_daemon(ctx, &child) {
                    global.lvs_sync_daemon = Some(daemon);
                }
            }
            _ => global.other.push((
                name.to_string(),
                child.args.iter().map(|t| t.text.clone()).collect(),
            )),
        }
    }
}

/// `lvs_timeouts tcp N tcpfin N udp N` (seconds, 1..LVS_MAX_TIMEOUT).
fn parse_lvs_timeouts(ctx: &mut Ctx, node: &Node, previous: Option<LvsTimeouts>) -> LvsTimeouts {
    let mut timeouts = previous.unwrap_or_default();
    let mut i = 0;
    while let Some(word) = node.arg(i) {
        let slot = match word {
            "tcp" => &mut timeouts.tcp,
            "tcpfin" => &mut timeouts.tcpfin,
            "udp" => &mut timeouts.udp,
            other => {
                ctx.error(
                    node,
                    format!("Unknown option {other} specified for lvs_timeouts"),
                );
                i += 1;
                continue;
            }
        };
        match node.arg(i + 1).and_then(crate::parser::parse_unsigned) {
            Some(v) if v <= 86400 * 31 => *slot = u32::try_from(v).ok(),
            _ => ctx.error(
                node,
                format!(
                    "Invalid lvs_timeout {word} value {}",
                    node.arg(i + 1).unwrap_or("(missing)")
                ),
            ),
        }
        i += 2;
    }
    timeouts
}

/// `lvs_sync_daemon INTERFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`.
fn parse_sync_daemon(ctx: &mut Ctx, node: &Node) -> Option<LvsSyncDaemon> {
    let interface = ctx.arg(node, 0)?.to_string();
    let instance = node.arg(1).unwrap_or_default().to_string();
    let mut daemon = LvsSyncDaemon {
        interface,
        instance,
        syncid: None,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    let mut i = 2;
    while let Some(word) = node.arg(i) {
        let value = node.arg(i + 1);
        let number = value.and_then(crate::parser::parse_unsigned);
        let ok = match word {
            "id" => number
                .and_then(|v| u8::try_from(v).ok())
                .map(|v| daemon.syncid = Some(v))
                .is_some(),
            "maxlen" => number
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| *v >= 1)
                .map(|v| daemon.maxlen = Some(v))
                .is_some(),
            "port" => number
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| *v >= 1)
                .map(|v| daemon.port = Some(v))
                .is_some(),
            "ttl" => number
                .and_then(|v| u8::try_from(v).ok())
                .filter(|v| *v >= 1)
                .map(|v| daemon.ttl = Some(v))
                .is_some(),
            "group" => value
                .and_then(|v| v.parse::<IpAddr>().ok())
                .map(|v| daemon.group = Some(v))
                .is_some(),
            _ => false,
        };
        if !ok {
            ctx.error(
                node,
                format!(
                    "Invalid lvs_sync_daemon option {word} {}",
                    value.unwrap_or_default()
                ),
            );
        }
        i += 2;
    }
    Some(daemon)
}
