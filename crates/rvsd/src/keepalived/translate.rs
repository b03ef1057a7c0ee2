//! From a parsed keepalived.conf to what rvsd runs: the table's services and real
//! servers (rvs-api specs) and, per `virtual_server`, the health plan (checkers,
//! quorum, sorry server, notify scripts).
//!
//! Invariants: one `virtual_server` block is one [`VsPlan`], named by its key
//! (`TCP 10.0.0.1:80`, `FWM 6666`, `group NAME`) so that a reload finds it again;
//! a `group` expands to one IPVS service per member address (ranges included) and
//! fwmark, all sharing the block's real servers, as keepalived's ipvswrapper.c does.
//! Translation never panics on a model the parser produced; what rvs cannot run is
//! an error naming the block. The `fwmark_classifier` rules become the table's
//! classifier rules (`TableState::marks`) as canonical specs, in file order.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rvs_api::{
    ForwardSpec, MarkRuleSpec, PersistenceSpec, SchedFlagsSpec, ServerSpec, ServiceRef,
    ServiceSpec, TimeoutsSpec, TunnelCsumSpec, TunnelSpec, TunnelType,
};
use rvs_config::model::{
    Checker, CheckerKind, KeepalivedConfig, Method, Protocol, RealServer, Script, TunnelCsum,
    TunnelKind, VirtualServer, VsAddress, VsGroupMember,
};
use rvs_core::Span;
use rvs_health::machine::{CheckTiming, RetryStyle};
use rvs_health::probe::{
    split_misc_path, DnsProbe, DnsType, FileProbe, HttpProbe, HttpProtocol, MiscProbe, Probe,
    SmtpProbe, Target, UdpProbe, UdpReply, UrlSpec,
};

/// Largest number of IPVS services one `virtual_server group` may expand to
/// (address ranges are at most 256 addresses each, but groups can list many).
const MAX_GROUP_SERVICES: usize = 65_536;

/// Everything rvsd runs from one keepalived.conf.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `global_defs { lvs_timeouts ... }`, when given.
    pub timeouts: Option<TimeoutsSpec>,
    pub services: Vec<VsPlan>,
    /// The `vrrp_instance` blocks (empty when there are none).
    pub vrrp: super::vrrp_plan::VrrpPlan,
    /// The rvs `fwmark_classifier` rules, canonical, in file order (the
    /// parser refused overlapping ones).
    pub marks: Vec<MarkRuleSpec>,
}

/// One `virtual_server` block.
#[derive(Clone, Debug)]
pub struct VsPlan {
    /// Stable name across reloads: `TCP 10.0.0.1:80`, `FWM 6666`, `group NAME`.
    pub name: String,
    /// The IPVS services it becomes (several for a group).
    pub services: Vec<ServiceSpec>,
    pub servers: Vec<RsPlan>,
    /// The sorry server, as a real server spec (weight 1, keepalived's choice).
    pub sorry: Option<SorryPlan>,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub alpha: bool,
    pub omega: bool,
    pub inhibit_on_failure: bool,
}

#[derive(Clone, Debug)]
pub struct SorryPlan {
    pub spec: ServerSpec,
    /// `sorry_server_inhibit`: kept in the table at weight 0 while not in use.
    pub inhibit: bool,
}

/// One `real_server` block.
#[derive(Clone, Debug)]
pub struct RsPlan {
    /// The server as configured (its configured weight).
    pub spec: ServerSpec,
    pub checkers: Vec<CheckerPlan>,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub inhibit_on_failure: bool,
    pub alpha: bool,
}

impl RsPlan {
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.spec.address, self.spec.port)
    }
}

/// One checker block of a real server.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckerPlan {
    /// `HTTP_GET`, `TCP_CHECK`... for logs and the API.
    pub kind: &'static str,
    pub probe: Probe,
    pub target: Target,
    pub timing: CheckTiming,
    pub alpha: bool,
    /// Checkers rvs parses but cannot run (BFD_CHECK): they count as passing, and
    /// the reason is logged once.
    pub unsupported: Option<String>,
}

/// Something in the file that rvs cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct TranslateError {
    pub location: String,
    pub message: String,
}

fn span_of(span: &rvs_config::model::Span) -> String {
    format!("{}:{}:{}", span.file.display(), span.line, span.column)
}

/// Translates a parsed configuration.
pub fn plan(cfg: &KeepalivedConfig) -> Result<Plan, TranslateError> {
    let timeouts = cfg.global.lvs_timeouts.as_ref().map(|t| TimeoutsSpec {
        tcp: u64::from(t.tcp.unwrap_or(0)),
        tcpfin: u64::from(t.tcpfin.unwrap_or(0)),
        udp: u64::from(t.udp.unwrap_or(0)),
    });
    let mut services = Vec::with_capacity(cfg.virtual_servers.len());
    for vs in &cfg.virtual_servers {
        services.push(vs_plan(cfg, vs)?);
    }
    // Two blocks giving the same IPVS service would fight over it.
    let mut seen = hashbrown::HashMap::new();
    for vs in &services {
        for s in &vs.services {
            if let Some(other) = seen.insert(service_label(&s.service), vs.name.clone()) {
                return Err(TranslateError {
                    location: vs.name.clone(),
                    message: format!(
                        "its service {} is also defined by virtual_server {other}",
                        service_label(&s.service)
                    ),
                });
            }
        }
    }
    let vrrp = super::vrrp_plan::plan(cfg)?;
    let marks = cfg
        .mark_rules
        .iter()
        .map(|r| MarkRuleSpec::of(&r.rule))
        .collect();
    Ok(Plan {
        timeouts,
        services,
        vrrp,
        marks,
    })
}

/// `TCP 10.0.0.1:80`, `FWM 6666`: the way `ipvsadm -L` names a service.
pub fn service_label(r: &ServiceRef) -> String {
    match r {
        ServiceRef::Tcp { address, port } => format!("TCP {}", SocketAddr::new(*address, *port)),
        ServiceRef::Udp { address, port } => format!("UDP {}", SocketAddr::new(*address, *port)),
        ServiceRef::Sctp { address, port } => {
            format!("SCTP {}", SocketAddr::new(*address, *port))
        }
        ServiceRef::Fwmark { mark, ipv6 } => {
            format!("FWM {mark}{}", if *ipv6 { " IPv6" } else { "" })
        }
    }
}

fn service_ref(protocol: Protocol, address: IpAddr, port: u16) -> ServiceRef {
    match protocol {
        Protocol::Tcp => ServiceRef::Tcp { address, port },
        Protocol::Udp => ServiceRef::Udp { address, port },
        Protocol::Sctp => ServiceRef::Sctp { address, port },
    }
}

fn vs_plan(cfg: &KeepalivedConfig, vs: &VirtualServer) -> Result<VsPlan, TranslateError> {
    let err = |message: String| TranslateError {
        location: span_of(&vs.span),
        message,
    };
    // A fwmark service's family: as written, else that of its real servers.
    let ipv6_servers = vs.real_servers.first().is_some_and(|r| r.address.is_ipv6());
    let fwmark_ipv6 = |family: &Option<rvs_config::model::Family>| match family {
        Some(f) => *f == rvs_config::model::Family::Inet6,
        None => ipv6_servers,
    };
    let (name, refs) = match &vs.address {
        VsAddress::Addr(sa) => {
            let r = service_ref(vs.protocol, sa.ip(), sa.port());
            (service_label(&r), vec![r])
        }
        VsAddress::Fwmark { mark, family } => {
            let r = ServiceRef::Fwmark {
                mark: *mark,
                ipv6: fwmark_ipv6(family),
            };
            (service_label(&r), vec![r])
        }
        VsAddress::Group(group) => {
            let g = cfg
                .vs_groups
                .iter()
                .find(|g| &g.name == group)
                .ok_or_else(|| err(format!("virtual_server_group {group} is not defined")))?;
            let mut refs = Vec::new();
            for m in &g.members {
                match m {
                    VsGroupMember::Addr { first, last, port } => {
                        for a in address_range(*first, *last).ok_or_else(|| {
                            err(format!("group {group}: bad range {first}-{last}"))
                        })? {
                            refs.push(service_ref(vs.protocol, a, *port));
                            if refs.len() > MAX_GROUP_SERVICES {
                                return Err(err(format!(
                                    "group {group} expands to more than {MAX_GROUP_SERVICES} services"
                                )));
                            }
                        }
                    }
                    VsGroupMember::Fwmark { mark, family } => refs.push(ServiceRef::Fwmark {
                        mark: *mark,
                        ipv6: fwmark_ipv6(family),
                    }),
                }
            }
            (format!("group {group}"), refs)
        }
    };
    let mut flags = SchedFlagsSpec {
        flag1: vs.sched_flags[0],
        flag2: vs.sched_flags[1],
        flag3: vs.sched_flags[2],
    };
    // sh-fallback/mh-fallback are flag-1, sh-port/mh-port flag-2 (ip_vs.h).
    flags.flag1 |= vs.sh_fallback || vs.mh_fallback;
    flags.flag2 |= vs.sh_port || vs.mh_port;
    let services = refs
        .into_iter()
        .map(|service| {
            let persistence = vs.persistence_timeout.map(|timeout| {
                let (netmask, prefix_len) = granularity(&service, vs);
                PersistenceSpec {
                    timeout,
                    netmask,
                    prefix_len,
                }
            });
            ServiceSpec {
                service,
                scheduler: vs.scheduler.clone(),
                sched_flags: flags,
                persistence,
                one_packet: vs.ops,
                pe: vs.persistence_engine.clone(),
            }
        })
        .collect();
    let servers = vs
        .real_servers
        .iter()
        .map(|rs| rs_plan(vs, rs))
        .collect::<Result<Vec<_>, _>>()?;
    let sorry = vs.sorry_server.as_ref().map(|s| SorryPlan {
        spec: ServerSpec {
            address: s.address.ip(),
            port: s.address.port(),
            weight: 1,
            forward: forward_of(s.method.as_ref().unwrap_or(&vs.method)),
            tunnel: tunnel_of(s.method.as_ref().unwrap_or(&vs.method)),
            u_threshold: 0,
            l_threshold: 0,
            proxy_protocol: None,
        },
        inhibit: s.inhibit,
    });
    Ok(VsPlan {
        name,
        services,
        servers,
        sorry,
        quorum: vs.quorum,
        hysteresis: vs.hysteresis,
        quorum_up: vs.quorum_up.clone(),
        quorum_down: vs.quorum_down.clone(),
        alpha: vs.alpha,
        omega: vs.omega,
        inhibit_on_failure: vs.inhibit_on_failure,
    })
}

/// `-M`: a dotted mask for IPv4 services, a prefix length for IPv6 ones.
fn granularity(
    service: &ServiceRef,
    vs: &VirtualServer,
) -> (Option<std::net::Ipv4Addr>, Option<u32>) {
    let ipv6 = match service {
        ServiceRef::Tcp { address, .. }
        | ServiceRef::Udp { address, .. }
        | ServiceRef::Sctp { address, .. } => address.is_ipv6(),
        ServiceRef::Fwmark { ipv6, .. } => *ipv6,
    };
    match (vs.persistence_granularity, ipv6) {
        (Some(IpAddr::V6(mask)), true) => (None, Some(u128::from(mask).leading_ones())),
        (Some(IpAddr::V4(mask)), false) => (Some(mask), None),
        _ => (None, None),
    }
}

/// The addresses `first..=last` (keepalived ranges vary the last byte of IPv4
/// or the last 16 bits of IPv6).
fn address_range(first: IpAddr, last: IpAddr) -> Option<Vec<IpAddr>> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            (a <= b && b - a <= 0xffff).then(|| {
                (a..=b)
                    .map(|x| IpAddr::V4(std::net::Ipv4Addr::from(x)))
                    .collect()
            })
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (u128::from(a), u128::from(b));
            (a <= b && b - a <= 0xffff).then(|| {
                (a..=b)
                    .map(|x| IpAddr::V6(std::net::Ipv6Addr::from(x)))
                    .collect()
            })
        }
        _ => None,
    }
}

fn forward_of(m: &Method) -> ForwardSpec {
    match m {
        Method::Nat => ForwardSpec::Masq,
        Method::Dr => ForwardSpec::Route,
        Method::Tun { .. } => ForwardSpec::Tunnel,
    }
}

fn tunnel_of(m: &Method) -> Option<TunnelSpec> {
    match m {
        Method::Tun { kind, csum } => {
            let (kind, port) = match kind {
                TunnelKind::Ipip => (TunnelType::Ipip, 0),
                TunnelKind::Gue { port } => (TunnelType::Gue, *port),
                TunnelKind::Gre => (TunnelType::Gre, 0),
            };
            Some(TunnelSpec {
                kind,
                port,
                csum: match csum {
                    None | Some(TunnelCsum::NoCsum) => TunnelCsumSpec::Nocsum,
                    Some(TunnelCsum::Csum) => TunnelCsumSpec::Csum,
                    Some(TunnelCsum::RemCsum) => TunnelCsumSpec::Remcsum,
                },
            })
        }
        _ => None,
    }
}

fn rs_plan(vs: &VirtualServer, rs: &RealServer) -> Result<RsPlan, TranslateError> {
    let spec = ServerSpec {
        address: rs.address.ip(),
        port: rs.address.port(),
        weight: rs.weight,
        forward: forward_of(&rs.method),
        tunnel: tunnel_of(&rs.method),
        u_threshold: rs.uthreshold,
        l_threshold: rs.lthreshold,
        proxy_protocol: None,
    };
    let checkers = rs
        .checkers
        .iter()
        .map(|c| checker_plan(vs, rs, c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RsPlan {
        spec,
        checkers,
        notify_up: rs.notify_up.clone(),
        notify_down: rs.notify_down.clone(),
        inhibit_on_failure: rs.inhibit_on_failure,
        alpha: rs.alpha,
    })
}

fn checker_plan(
    vs: &VirtualServer,
    rs: &RealServer,
    c: &Checker,
) -> Result<CheckerPlan, TranslateError> {
    let address = SocketAddr::new(
        c.connect_ip.unwrap_or(rs.address.ip()),
        c.connect_port.unwrap_or(rs.address.port()),
    );
    let bind = c
        .bindto
        .map(|ip| SocketAddr::new(ip, c.bind_port.unwrap_or(0)));
    let target = Target {
        address,
        bind,
        connect_timeout: c.timing.connect_timeout,
        fwmark: c.fwmark,
    };
    let err = |message: String| TranslateError {
        location: span_of(&c.span),
        message,
    };
    let http = |h: &rvs_config::model::HttpCheck| -> Result<HttpProbe, TranslateError> {
        Ok(HttpProbe {
            urls: h
                .urls
                .iter()
                .map(|u| UrlSpec {
                    path: u.path.clone(),
                    digest: u.digest,
                    status_codes: u.status_codes.clone(),
                    virtualhost: u.virtualhost.clone(),
                })
                .collect(),
            virtualhost: h.virtualhost.clone(),
            real_server_virtualhost: None,
            virtual_server_virtualhost: vs.virtualhost.clone(),
            http_protocol: match &h.http_protocol {
                None => HttpProtocol::default(),
                Some(p) => HttpProtocol::from_keyword(p)
                    .ok_or_else(|| err(format!("http_protocol {p} is not supported")))?,
            },
            enable_sni: h.enable_sni,
        })
    };
    let mut unsupported = None;
    // How each type retries (rvs-health's RetryStyle, from keepalived's checkers).
    let (kind, probe, style) = match &c.kind {
        CheckerKind::Tcp => ("TCP_CHECK", Probe::Tcp, RetryStyle::Connect),
        CheckerKind::Http(h) | CheckerKind::Ssl(h) => {
            let ssl = matches!(c.kind, CheckerKind::Ssl(_));
            if let Some(u) = h.urls.iter().find(|u| u.regex.is_some()) {
                return Err(err(format!(
                    "url {}: regex matching is not supported by rvs",
                    u.path
                )));
            }
            let probe = http(h)?;
            // The probe fetches every url in one run.
            let style = RetryStyle::Http {
                url_count: 1,
                fast_recovery: h.fast_recovery,
            };
            if ssl {
                ("SSL_GET", Probe::Ssl(probe), style)
            } else {
                ("HTTP_GET", Probe::Http(probe), style)
            }
        }
        CheckerKind::Misc(m) => {
            if m.user.is_some() {
                return Err(err(
                    "MISC_CHECK user: running scripts as another user is not supported by rvs"
                        .into(),
                ));
            }
            (
                "MISC_CHECK",
                Probe::Misc(MiscProbe {
                    argv: split_misc_path(&m.path).map_err(|e| err(format!("misc_path: {e}")))?,
                    // Without misc_timeout keepalived gives the script delay_loop.
                    timeout: m.timeout.unwrap_or(c.timing.delay_loop),
                    dynamic: m.dynamic,
                    user: None,
                }),
                RetryStyle::Script,
            )
        }
        CheckerKind::Dns(d) => (
            "DNS_CHECK",
            Probe::Dns(DnsProbe {
                query_type: DnsType::from_keyword(&d.query_type).ok_or_else(|| {
                    err(format!("DNS_CHECK type {} is not supported", d.query_type))
                })?,
                name: d.name.clone(),
            }),
            RetryStyle::UpOnly,
        ),
        CheckerKind::Smtp(s) => (
            "SMTP_CHECK",
            Probe::Smtp(SmtpProbe {
                helo_name: s.helo_name.clone(),
            }),
            RetryStyle::UpOnly,
        ),
        CheckerKind::Udp(u) => (
            "UDP_CHECK",
            Probe::Udp(UdpProbe {
                payload: u.payload.clone(),
                require_reply: u.require_reply.clone().map(|data| UdpReply {
                    data,
                    mask: Vec::new(),
                }),
                min_reply_length: u.min_reply_length,
                max_reply_length: u.max_reply_length,
            }),
            RetryStyle::Datagram,
        ),
        CheckerKind::Ping => ("PING_CHECK", Probe::Ping, RetryStyle::Datagram),
        CheckerKind::File(f) => (
            "FILE_CHECK",
            Probe::File(FileProbe {
                path: f.track_file.clone().into(),
                weight: f.weight,
                reverse: f.reverse,
            }),
            RetryStyle::Datagram,
        ),
        CheckerKind::Bfd { name } => {
            unsupported = Some(format!(
                "BFD_CHECK {name}: rvs has no BFD; the checker counts as passing"
            ));
            ("BFD_CHECK", Probe::Tcp, RetryStyle::Connect)
        }
    };
    Ok(CheckerPlan {
        kind,
        probe,
        target,
        timing: CheckTiming {
            connect_timeout: span(c.timing.connect_timeout),
            retry: c.timing.retry,
            delay_before_retry: span(c.timing.delay_before_retry),
            delay_loop: span(c.timing.delay_loop),
            warmup: span(c.timing.warmup),
            style,
        },
        alpha: c.alpha,
        unsupported,
    })
}

fn span(d: Duration) -> Span {
    Span::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn plan_of(text: &str) -> Result<Plan, TranslateError> {
        let loaded = rvs_config::parse_str(text, std::path::Path::new("/tmp/k.conf"));
        assert!(loaded.errors().next().is_none(), "{:?}", loaded.diagnostics);
        plan(&loaded.config)
    }

    /// A group becomes one service per member address (ranges expanded) and
    /// fwmark, each with the block's real servers; keepalived's NAT default
    /// becomes `-m`.
    #[test]
    fn groups_expand_and_share_their_real_servers() {
        let p = plan_of(
            "virtual_server_group G {\n  10.0.0.1-3 80\n  fwmark 7\n}\nvirtual_server group G {\n  lb_algo rr\n  protocol TCP\n  persistence_timeout 50\n  real_server 10.1.0.1 80 {\n    weight 3\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(p.services.len(), 1);
        let vs = &p.services[0];
        assert_eq!(vs.name, "group G");
        let labels: Vec<String> = vs
            .services
            .iter()
            .map(|s| service_label(&s.service))
            .collect();
        assert_eq!(
            labels,
            [
                "TCP 10.0.0.1:80",
                "TCP 10.0.0.2:80",
                "TCP 10.0.0.3:80",
                "FWM 7"
            ]
        );
        assert!(vs
            .services
            .iter()
            .all(|s| s.scheduler == "rr" && s.persistence.as_ref().map(|p| p.timeout) == Some(50)));
        assert_eq!(vs.servers.len(), 1);
        assert_eq!(vs.servers[0].spec.weight, 3);
        assert_eq!(vs.servers[0].spec.forward, ForwardSpec::Masq);
    }

    /// Two blocks giving the same IPVS service are refused, naming both.
    #[test]
    fn the_same_service_twice_is_refused() {
        let rs = "  real_server 10.1.0.1 80 {\n    weight 1\n  }\n";
        let e = plan_of(&format!(
            "virtual_server 10.0.0.1 80 {{\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n{rs}}}\nvirtual_server_group G {{\n  10.0.0.1 80\n}}\nvirtual_server group G {{\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n{rs}}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.location, "group G");
        assert!(
            e.message
                .contains("TCP 10.0.0.1:80 is also defined by virtual_server TCP 10.0.0.1:80"),
            "{e}"
        );
    }
}
