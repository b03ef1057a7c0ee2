//! The VRRP part of a keepalived.conf as rvsd runs it: `vrrp_instance`,
//! `vrrp_sync_group` and `vrrp_script` blocks resolved into what the driver
//! needs (versions and intervals settled as keepalived settles them, tracker
//! weights decided, scripts looked up), before any socket or interface is touched,
//! so `rvsd -t` can refuse what rvs cannot run.
//!
//! keepalived's rules kept here (keepalived/vrrp/vrrp.c instance completion,
//! vrrp_parser.c): IPv6 instances are VRRPv3; otherwise `global_defs {
//! vrrp_version }` (default 2); `advert_int` is rounded to whole seconds (v2) or
//! centiseconds (v3); the password is its first 8 bytes; a `track_script`
//! weight overrides the script's; a sync group's trackers apply to each member.
//!
//! `global_defs { lvs_sync_daemon IF INSTANCE [id N] [maxlen N] [port N] [ttl N]
//! [group IP] }` becomes [`SyncDaemonPlan`]: the sync daemons follow the named
//! instance (see `crate::vrrp::sync_steps`). As keepalived/vrrp/vrrp.c (instance
//! completion) does, an unknown instance drops the setting with a warning, and
//! the syncid defaults to the instance's virtual_router_id.
//!
//! Invariant: a plan names only scripts that exist and instances of one family.

use std::net::IpAddr;

use rvs_config::model::{
    KeepalivedConfig, Script, VrrpAddress, VrrpInstance, VrrpScript, VrrpState,
};
use rvs_core::time::Span;
use rvs_vrrp::{round_advert_int, GarpConfig};
use rvs_wire::vrrp::VrrpVersion;

use super::translate::TranslateError;

/// One virtual address and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    pub address: IpAddr,
    pub prefix: u8,
    /// `dev IF`: another interface than the instance's.
    pub dev: Option<String>,
    pub label: Option<String>,
}

/// Scripts run on state changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyPlan {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: called with TYPE NAME STATE PRIORITY.
    pub generic: Option<Script>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackPlan {
    /// The instance's own interface (weight 0) or a `track_interface`.
    Interface {
        name: String,
        weight: i32,
        reverse: bool,
    },
    /// A `vrrp_script` by index in `VrrpPlan::scripts`.
    Script {
        index: usize,
        weight: i32,
        reverse: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstancePlan {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: VrrpVersion,
    pub priority: u8,
    pub advert_int: Span,
    pub want_master: bool,
    pub nopreempt: bool,
    pub preempt_delay: Span,
    pub auth_pass: Option<[u8; 8]>,
    pub v6: bool,
    /// Advertised in the adverts.
    pub vips: Vec<AddressPlan>,
    /// Added and removed with them, not advertised (`virtual_ipaddress_excluded`).
    pub excluded: Vec<AddressPlan>,
    /// `unicast_src_ip` / `mcast_src_ip`; otherwise the interface's address.
    pub src: Option<IpAddr>,
    pub unicast_peers: Vec<IpAddr>,
    pub garp: GarpConfig,
    pub trackers: Vec<TrackPlan>,
    pub notify: NotifyPlan,
    /// `lower_prio_no_advert`.
    pub lower_prio_no_advert: bool,
    /// `down_timer_adverts` (default 3).
    pub down_timer_adverts: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupPlan {
    pub name: String,
    pub members: Vec<usize>,
    pub notify: NotifyPlan,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScriptPlan {
    pub name: String,
    pub command: Script,
    pub interval: Span,
    pub timeout: Span,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VrrpPlan {
    pub instances: Vec<InstancePlan>,
    pub groups: Vec<GroupPlan>,
    pub scripts: Vec<ScriptPlan>,
    /// `lvs_sync_daemon`, when its instance exists.
    pub sync_daemon: Option<SyncDaemonPlan>,
}

/// The sync daemons keepalived's VRRP runs: which instance they follow and
/// their settings (`config.role` is decided by that instance's state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDaemonPlan {
    pub instance: usize,
    pub config: crate::sync::DaemonConfig,
}

/// Resolves `lvs_sync_daemon` against the instances (keepalived/vrrp/vrrp.c,
/// the lvs_syncd part of instance completion).
fn sync_daemon_plan(cfg: &KeepalivedConfig) -> Option<SyncDaemonPlan> {
    let d = cfg.global.lvs_sync_daemon.as_ref()?;
    let Some(instance) = cfg
        .vrrp_instances
        .iter()
        .position(|vi| vi.name == d.instance)
    else {
        tracing::warn!(
            "Unable to find vrrp instance {} for lvs_syncd - clearing lvs_syncd config",
            d.instance
        );
        return None;
    };
    let vrid = cfg.vrrp_instances[instance].virtual_router_id;
    Some(SyncDaemonPlan {
        instance,
        config: crate::sync::DaemonConfig {
            role: crate::sync::Role::Backup,
            mcast_ifn: d.interface.clone(),
            syncid: d.syncid.unwrap_or(vrid),
            maxlen: d.maxlen,
            group: d.group,
            port: d.port,
            ttl: d.ttl,
        },
    })
}

impl VrrpPlan {
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

fn refuse(vi: &VrrpInstance, message: impl Into<String>) -> TranslateError {
    TranslateError {
        location: format!(
            "{}:{}:{}: vrrp_instance {}",
            vi.span.file.display(),
            vi.span.line,
            vi.span.column,
            vi.name
        ),
        message: message.into(),
    }
}

/// keepalived.conf `vrrp_instance` keywords rvs parses but cannot honour; a file
/// using them is refused rather than run differently.
const UNSUPPORTED: &[&str] = &[
    "use_vmac",
    "use_ipvlan",
    "vrf",
    "mcast_dst_ip",
    "native_ipv6",
];

fn span_ms(d: std::time::Duration) -> Span {
    Span::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn address_plan(a: &VrrpAddress) -> AddressPlan {
    AddressPlan {
        address: a.address,
        prefix: a
            .prefix_len
            .unwrap_or(if a.address.is_ipv6() { 128 } else { 32 }),
        dev: a.dev.clone(),
        label: a.label.clone(),
    }
}

/// The number after the last `key` of a keyword list (`global_defs` or an
/// instance's `other`); later lines win, as in keepalived.
fn last_u32(other: &[(String, Vec<String>)], key: &str) -> Option<u32> {
    other
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.first())
        .and_then(|v| v.parse().ok())
}

/// Builds the VRRP plan of a parsed file.
pub fn plan(cfg: &KeepalivedConfig) -> Result<VrrpPlan, TranslateError> {
    let scripts: Vec<ScriptPlan> = cfg.vrrp_scripts.iter().map(script_plan).collect();
    let script_index = |name: &str| cfg.vrrp_scripts.iter().position(|s| s.name == name);
    let default_version = match last_u32(&cfg.global.other, "vrrp_version") {
        Some(3) => VrrpVersion::V3,
        _ => VrrpVersion::V2,
    };
    let mut instances = Vec::with_capacity(cfg.vrrp_instances.len());
    for vi in &cfg.vrrp_instances {
        if let Some((k, _)) = vi
            .other
            .iter()
            .find(|(k, _)| UNSUPPORTED.contains(&k.as_str()))
        {
            return Err(refuse(vi, format!("`{k}` is not supported by rvs")));
        }
        let interface = vi
            .interface
            .clone()
            .ok_or_else(|| refuse(vi, "no interface"))?;
        let v6 = match vi.virtual_ipaddress.first() {
            Some(a) => a.address.is_ipv6(),
            None => vi
                .unicast_src_ip
                .or(vi.mcast_src_ip)
                .is_some_and(|a| a.is_ipv6()),
        };
        if vi
            .virtual_ipaddress
            .iter()
            .any(|a| a.address.is_ipv6() != v6)
        {
            return Err(refuse(vi, "virtual_ipaddress mixes IPv4 and IPv6"));
        }
        if vi.unicast_peers.iter().any(|a| a.is_ipv6() != v6) {
            return Err(refuse(vi, "unicast_peer of the other address family"));
        }
        let version = match (v6, vi.version) {
            (true, _) => VrrpVersion::V3,
            (false, Some(3)) => VrrpVersion::V3,
            (false, Some(_)) => VrrpVersion::V2,
            (false, None) => default_version,
        };
        let auth_pass = match &vi.authentication {
            None => None,
            Some(_) if version == VrrpVersion::V3 => None,
            Some(a) if a.kind.eq_ignore_ascii_case("PASS") => {
                let mut pass = [0u8; 8];
                for (d, s) in pass.iter_mut().zip(a.pass.bytes()) {
                    *d = s;
                }
                Some(pass)
            }
            Some(a) => {
                return Err(refuse(
                    vi,
                    format!("auth_type {} is not supported by rvs (PASS is)", a.kind),
                ))
            }
        };
        // A flag keyword, optionally followed by true/false (keepalived's
        // get_value_from_strvec accepts on/off, yes/no, true/false).
        let flag = |k: &str| {
            vi.other
                .iter()
                .rev()
                .find(|(name, _)| name == k)
                .is_some_and(|(_, v)| {
                    !v.first().is_some_and(|x| {
                        matches!(
                            x.to_ascii_lowercase().as_str(),
                            "false" | "off" | "no" | "0"
                        )
                    })
                })
        };
        // `dont_track_primary`: the instance's own interface going down does
        // not fault it.
        let mut trackers = Vec::new();
        if !flag("dont_track_primary") {
            trackers.push(TrackPlan::Interface {
                name: interface.clone(),
                weight: 0,
                reverse: false,
            });
        }
        let group = cfg
            .vrrp_sync_groups
            .iter()
            .find(|g| g.group.iter().any(|m| m == &vi.name));
        let group_interfaces = group.map(|g| g.track_interfaces.as_slice()).unwrap_or(&[]);
        for t in vi.track_interfaces.iter().chain(group_interfaces) {
            trackers.push(TrackPlan::Interface {
                name: t.name.clone(),
                weight: t.weight,
                reverse: t.reverse,
            });
        }
        let group_scripts = group.map(|g| g.track_scripts.as_slice()).unwrap_or(&[]);
        for t in vi.track_scripts.iter().chain(group_scripts) {
            let index = script_index(&t.name).ok_or_else(|| {
                refuse(vi, format!("track_script {}: no such vrrp_script", t.name))
            })?;
            trackers.push(TrackPlan::Script {
                index,
                weight: t.weight.unwrap_or(cfg.vrrp_scripts[index].weight),
                reverse: t.reverse,
            });
        }
        let garp = GarpConfig {
            master_delay: span_ms(vi.garp_master_delay),
            master_repeat: vi.garp_master_repeat,
            refresh: vi
                .garp_master_refresh
                .map(span_ms)
                .filter(|s| s.as_millis() > 0),
            refresh_repeat: 1,
        };
        instances.push(InstancePlan {
            name: vi.name.clone(),
            interface,
            vrid: vi.virtual_router_id,
            version,
            priority: vi.priority,
            advert_int: round_advert_int(version, vi.advert_int),
            want_master: vi.state == Some(VrrpState::Master),
            nopreempt: vi.nopreempt,
            preempt_delay: span_ms(vi.preempt_delay),
            auth_pass,
            v6,
            vips: vi.virtual_ipaddress.iter().map(address_plan).collect(),
            excluded: vi
                .virtual_ipaddress_excluded
                .iter()
                .map(address_plan)
                .collect(),
            src: vi.unicast_src_ip.or(vi.mcast_src_ip),
            unicast_peers: vi.unicast_peers.clone(),
            garp,
            trackers,
            notify: NotifyPlan {
                master: vi.notify_master.clone(),
                backup: vi.notify_backup.clone(),
                fault: vi.notify_fault.clone(),
                stop: vi.notify_stop.clone(),
                generic: vi.notify.clone(),
            },
            lower_prio_no_advert: flag("lower_prio_no_advert"),
            down_timer_adverts: last_u32(&vi.other, "down_timer_adverts")
                .or(last_u32(&cfg.global.other, "vrrp_down_timer_adverts"))
                .unwrap_or(3)
                .clamp(1, 100),
        });
    }
    let mut groups = Vec::new();
    for g in &cfg.vrrp_sync_groups {
        let members = g
            .group
            .iter()
            .filter_map(|m| cfg.vrrp_instances.iter().position(|vi| &vi.name == m))
            .collect();
        groups.push(GroupPlan {
            name: g.name.clone(),
            members,
            notify: NotifyPlan {
                master: g.notify_master.clone(),
                backup: g.notify_backup.clone(),
                fault: g.notify_fault.clone(),
                stop: None,
                generic: g.notify.clone(),
            },
        });
    }
    Ok(VrrpPlan {
        instances,
        groups,
        scripts,
        sync_daemon: sync_daemon_plan(cfg),
    })
}

fn script_plan(s: &VrrpScript) -> ScriptPlan {
    let interval = span_ms(s.interval).max(Span::from_millis(1));
    ScriptPlan {
        name: s.name.clone(),
        command: Script {
            command: s.script.clone(),
            user: s.user.clone(),
        },
        interval,
        // keepalived: a script without `timeout` may run for one interval.
        timeout: s.timeout.map(span_ms).unwrap_or(interval),
        rise: s.rise.max(1),
        fall: s.fall.max(1),
        init_fail: s.init_fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KeepalivedConfig {
        rvs_config::parse_str(text, std::path::Path::new("t.conf")).config
    }

    #[test]
    fn versions_intervals_and_passwords_are_settled_as_keepalived_does() {
        let cfg = parse(
            "vrrp_instance A {
               interface eth0
               virtual_router_id 1
               advert_int 1.6
               authentication {
                 auth_type PASS
                 auth_pass 123456789
               }
               virtual_ipaddress {
                 10.0.0.1/24 dev ifb0 label ifb0:a
               }
             }
             vrrp_instance B {
               interface eth0
               virtual_router_id 2
               version 3
               advert_int 0.123
               virtual_ipaddress {
                 10.0.0.2
               }
             }
             vrrp_instance C {
               interface eth0
               virtual_router_id 3
               advert_int 0.1
               virtual_ipaddress {
                 fe80::10
               }
             }",
        );
        let p = plan(&cfg).unwrap();
        let [a, b, c] = &p.instances[..] else {
            panic!("{p:?}")
        };
        assert_eq!(
            (a.version, a.advert_int),
            (VrrpVersion::V2, Span::from_secs(2))
        );
        assert_eq!(a.auth_pass, Some(*b"12345678"));
        assert_eq!(
            a.vips,
            vec![AddressPlan {
                address: "10.0.0.1".parse().unwrap(),
                prefix: 24,
                dev: Some("ifb0".into()),
                label: Some("ifb0:a".into())
            }]
        );
        assert_eq!(
            (b.version, b.advert_int),
            (VrrpVersion::V3, Span::from_millis(120))
        );
        assert_eq!(b.vips[0].prefix, 32);
        assert!(c.v6);
        assert_eq!(
            (c.version, c.advert_int),
            (VrrpVersion::V3, Span::from_millis(100))
        );
        assert_eq!(c.vips[0].prefix, 128);
    }

    #[test]
    fn trackers_take_the_instance_weight_over_the_scripts_and_group_trackers_apply() {
        let cfg = parse(
            "vrrp_script chk {
               script \"/bin/true\"
               weight -20
               interval 2
             }
             vrrp_sync_group G {
               group {
                 A
               }
               track_interface {
                 ifb1
               }
             }
             vrrp_instance A {
               interface eth0
               virtual_router_id 1
               track_interface {
                 ifb0 weight 10
               }
               track_script {
                 chk weight 5
               }
               virtual_ipaddress {
                 10.0.0.1
               }
             }
             vrrp_instance B {
               interface eth0
               virtual_router_id 2
               track_script {
                 chk
               }
               virtual_ipaddress {
                 10.0.0.2
               }
             }",
        );
        let p = plan(&cfg).unwrap();
        let iface = |name: &str, weight| TrackPlan::Interface {
            name: name.into(),
            weight,
            reverse: false,
        };
        assert_eq!(
            p.instances[0].trackers,
            vec![
                iface("eth0", 0),
                iface("ifb0", 10),
                iface("ifb1", 0),
                TrackPlan::Script {
                    index: 0,
                    weight: 5,
                    reverse: false
                },
            ]
        );
        assert_eq!(
            p.instances[1].trackers[1],
            TrackPlan::Script {
                index: 0,
                weight: -20,
                reverse: false
            }
        );
        assert_eq!(p.groups[0].members, vec![0]);
        assert_eq!(p.scripts[0].interval, Span::from_secs(2));
    }

    #[test]
    fn instance_flags_and_down_timer_adverts() {
        let cfg = parse(
            "global_defs {
               vrrp_down_timer_adverts 5
             }
             vrrp_instance A {
               interface eth0
               virtual_router_id 1
               dont_track_primary
               lower_prio_no_advert
               down_timer_adverts 4
               virtual_ipaddress {
                 10.0.0.1
               }
             }
             vrrp_instance B {
               interface eth0
               virtual_router_id 2
               lower_prio_no_advert false
               virtual_ipaddress {
                 10.0.0.2
               }
             }",
        );
        let p = plan(&cfg).unwrap();
        let (a, b) = (&p.instances[0], &p.instances[1]);
        assert!(
            a.trackers.is_empty(),
            "dont_track_primary: {:?}",
            a.trackers
        );
        assert!(a.lower_prio_no_advert);
        assert_eq!(a.down_timer_adverts, 4);
        assert_eq!(b.trackers.len(), 1, "its own interface");
        assert!(!b.lower_prio_no_advert);
        assert_eq!(b.down_timer_adverts, 5, "global_defs default");
    }

    #[test]
    fn what_rvs_cannot_run_is_refused() {
        let cfg = parse(
            "vrrp_instance A {
               interface eth0
               virtual_router_id 1
               use_vmac
               virtual_ipaddress {
                 10.0.0.1
               }
             }",
        );
        let e = plan(&cfg).unwrap_err();
        assert!(e.message.contains("use_vmac"), "{e}");
        let cfg = parse(
            "vrrp_instance A {
               interface eth0
               virtual_router_id 1
               virtual_ipaddress {
                 10.0.0.1
                 fe80::1
               }
             }",
        );
        assert!(plan(&cfg).unwrap_err().message.contains("mixes"));
    }

    #[test]
    fn lvs_sync_daemon_follows_its_instance() {
        let cfg = parse(
            "global_defs {
               lvs_sync_daemon eth1 B maxlen 1400 port 8850 ttl 3 group 239.1.2.3
             }
             vrrp_instance A {
               interface eth0
               virtual_router_id 1
               virtual_ipaddress {
                 10.0.0.1
               }
             }
             vrrp_instance B {
               interface eth0
               virtual_router_id 42
               virtual_ipaddress {
                 10.0.0.2
               }
             }",
        );
        let p = plan(&cfg).unwrap().sync_daemon.unwrap();
        assert_eq!(p.instance, 1);
        assert_eq!(p.config.mcast_ifn, "eth1");
        assert_eq!(p.config.syncid, 42, "the instance's VRID by default");
        assert_eq!(p.config.maxlen, Some(1400));
        assert_eq!(p.config.port, Some(8850));
        assert_eq!(p.config.ttl, Some(3));
        assert_eq!(p.config.group, Some("239.1.2.3".parse().unwrap()));

        // One instance A (VRID 1) and the given `lvs_sync_daemon` line.
        let with_sync_line = |line: &str| {
            parse(&format!(
                "global_defs {{
                   {line}
                 }}
                 vrrp_instance A {{
                   interface eth0
                   virtual_router_id 1
                   virtual_ipaddress {{
                     10.0.0.1
                   }}
                 }}"
            ))
        };
        let cfg = with_sync_line("lvs_sync_daemon eth1 A id 7");
        let p = plan(&cfg).unwrap().sync_daemon.unwrap();
        assert_eq!((p.instance, p.config.syncid), (0, 7));

        let cfg = with_sync_line("lvs_sync_daemon eth1 NOPE");
        assert!(plan(&cfg).unwrap().sync_daemon.is_none());
    }
}
