//! Conversions between the API's JSON shapes and the core's model. Requests become
//! core types only here, and every refusal names the field that caused it.

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::{
    DestConfig, Family, Forward, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceConfig,
    ServiceKey, TunnelConfig, TunnelCsum, TunnelKind,
};

use crate::{
    ApiError, ForwardSpec, PersistenceSpec, SchedFlagsSpec, ServerSpec, ServiceRef, ServiceSpec,
    TunnelCsumSpec, TunnelSpec, TunnelType,
};

/// The core's key of a service reference.
pub fn key_of(r: &ServiceRef) -> ServiceKey {
    let addr = |proto, address: &IpAddr, port: &u16| ServiceKey::Addr {
        proto,
        addr: *address,
        port: *port,
    };
    match r {
        ServiceRef::Tcp { address, port } => addr(Protocol::Tcp, address, port),
        ServiceRef::Udp { address, port } => addr(Protocol::Udp, address, port),
        ServiceRef::Sctp { address, port } => addr(Protocol::Sctp, address, port),
        ServiceRef::Fwmark { mark, ipv6 } => ServiceKey::Fwmark {
            mark: *mark,
            family: if *ipv6 { Family::V6 } else { Family::V4 },
        },
    }
}

/// The API's reference to a core service key.
pub fn ref_of(key: &ServiceKey) -> ServiceRef {
    match *key {
        ServiceKey::Addr { proto, addr, port } => match proto {
            Protocol::Tcp => ServiceRef::Tcp {
                address: addr,
                port,
            },
            Protocol::Udp => ServiceRef::Udp {
                address: addr,
                port,
            },
            Protocol::Sctp => ServiceRef::Sctp {
                address: addr,
                port,
            },
        },
        ServiceKey::Fwmark { mark, family } => ServiceRef::Fwmark {
            mark,
            ipv6: family == Family::V6,
        },
    }
}

impl ServiceSpec {
    /// The core configuration this spec asks for, or why it cannot be one.
    pub fn to_core(&self) -> Result<ServiceConfig, ApiError> {
        let key = key_of(&self.service);
        if let ServiceKey::Fwmark { mark: 0, .. } = key {
            return Err(ApiError::invalid("fwmark must be greater than zero"));
        }
        let scheduler = SchedulerKind::parse(&self.scheduler)?;
        let persistence = match &self.persistence {
            None => None,
            Some(p) => Some(persistence_to_core(p, key.family())?),
        };
        let cfg = ServiceConfig {
            key,
            scheduler,
            sched_flags: SchedFlags {
                flag1: self.sched_flags.flag1,
                flag2: self.sched_flags.flag2,
                flag3: self.sched_flags.flag3,
            },
            persistence,
            one_packet: self.one_packet,
            pe_name: self.pe.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn persistence_to_core(p: &PersistenceSpec, family: Family) -> Result<Persistence, ApiError> {
    let netmask = match family {
        Family::V4 => {
            if p.prefix_len.is_some() {
                return Err(ApiError::invalid(
                    "persistence.prefix_len is for IPv6 services; use netmask",
                ));
            }
            p.netmask.map_or(u32::MAX, u32::from)
        }
        Family::V6 => {
            if p.netmask.is_some() {
                return Err(ApiError::invalid(
                    "persistence.netmask is for IPv4 services; use prefix_len",
                ));
            }
            p.prefix_len.unwrap_or(128)
        }
    };
    Ok(Persistence {
        timeout: p.timeout,
        netmask,
    })
}

impl ServerSpec {
    /// The core configuration of this real server, or why it cannot be one.
    pub fn to_core(&self, service: &ServiceKey) -> Result<DestConfig, ApiError> {
        let forward = match self.forward {
            ForwardSpec::Masq => Forward::Masq,
            ForwardSpec::Route => Forward::Route,
            ForwardSpec::Local => Forward::Local,
            ForwardSpec::Fullnat => Forward::FullNat,
            ForwardSpec::Tunnel => {
                let t = self.tunnel.unwrap_or_default();
                Forward::Tunnel(TunnelConfig {
                    kind: match t.kind {
                        TunnelType::Ipip => TunnelKind::Ipip,
                        TunnelType::Gue => TunnelKind::Gue,
                        TunnelType::Gre => TunnelKind::Gre,
                    },
                    port: t.port,
                    csum: match t.csum {
                        TunnelCsumSpec::Nocsum => TunnelCsum::NoCsum,
                        TunnelCsumSpec::Csum => TunnelCsum::Csum,
                        TunnelCsumSpec::Remcsum => TunnelCsum::RemCsum,
                    },
                })
            }
        };
        if self.tunnel.is_some() && self.forward != ForwardSpec::Tunnel {
            return Err(ApiError::invalid(
                "tunnel options are only for forward \"tunnel\"",
            ));
        }
        if !is_unicast(&self.address) {
            return Err(ApiError::invalid(format!(
                "real server address {} is not a unicast address",
                self.address
            )));
        }
        let cfg = DestConfig {
            addr: self.address,
            port: self.port,
            weight: self.weight,
            forward,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
        };
        cfg.validate(service)?;
        Ok(cfg)
    }
}

/// Whether the kernel would accept `addr` as a real server (ip_vs_ctl.c
/// `ip_vs_new_dest`): IPv4 must be what `inet_addr_type` calls RTN_UNICAST or
/// RTN_LOCAL, so 0.0.0.0 and 255.255.255.255 (RTN_BROADCAST) and 224/4
/// (RTN_MULTICAST) are refused (the real kernel takes 0.0.0.1 and 240.0.0.1); IPv6 must be unicast and not link-local.
fn is_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => {
            let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
            // ::ffff:a.b.c.d is IPV6_ADDR_MAPPED, not unicast (real kernel: EINVAL)
            let mapped = a.to_ipv4_mapped().is_some();
            !(a.is_unspecified() || a.is_multicast() || link_local || mapped)
        }
    }
}

/// The API's view of a core service configuration.
pub fn service_spec_of(cfg: &ServiceConfig) -> ServiceSpec {
    ServiceSpec {
        service: ref_of(&cfg.key),
        scheduler: cfg.scheduler.name().to_string(),
        sched_flags: SchedFlagsSpec {
            flag1: cfg.sched_flags.flag1,
            flag2: cfg.sched_flags.flag2,
            flag3: cfg.sched_flags.flag3,
        },
        persistence: cfg.persistence.map(|p| match cfg.key.family() {
            Family::V4 => PersistenceSpec {
                timeout: p.timeout,
                netmask: Some(Ipv4Addr::from(p.netmask)),
                prefix_len: None,
            },
            Family::V6 => PersistenceSpec {
                timeout: p.timeout,
                netmask: None,
                prefix_len: Some(p.netmask),
            },
        }),
        one_packet: cfg.one_packet,
        pe: cfg.pe_name.clone(),
    }
}

/// The API's view of a core real-server configuration.
pub fn server_spec_of(cfg: &DestConfig) -> ServerSpec {
    let (forward, tunnel) = match cfg.forward {
        Forward::Masq => (ForwardSpec::Masq, None),
        Forward::Route => (ForwardSpec::Route, None),
        Forward::Local => (ForwardSpec::Local, None),
        Forward::FullNat => (ForwardSpec::Fullnat, None),
        Forward::Tunnel(t) => (
            ForwardSpec::Tunnel,
            Some(TunnelSpec {
                kind: match t.kind {
                    TunnelKind::Ipip => TunnelType::Ipip,
                    TunnelKind::Gue => TunnelType::Gue,
                    TunnelKind::Gre => TunnelType::Gre,
                },
                port: t.port,
                csum: match t.csum {
                    TunnelCsum::NoCsum => TunnelCsumSpec::Nocsum,
                    TunnelCsum::Csum => TunnelCsumSpec::Csum,
                    TunnelCsum::RemCsum => TunnelCsumSpec::Remcsum,
                },
            }),
        ),
    };
    ServerSpec {
        address: cfg.addr,
        port: cfg.port,
        weight: cfg.weight,
        forward,
        tunnel,
        u_threshold: cfg.u_threshold,
        l_threshold: cfg.l_threshold,
        proxy_protocol: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    #[test]
    fn service_round_trips_through_json_and_core() {
        let json = r#"{"service":{"protocol":"udp","address":"10.0.0.1","port":53},
            "scheduler":"sh","sched_flags":{"flag2":true},
            "persistence":{"timeout":60,"netmask":"255.255.255.0"}}"#;
        let spec: ServiceSpec = serde_json::from_str(json).unwrap();
        let core = spec.to_core().unwrap();
        assert_eq!(core.scheduler, SchedulerKind::Sh);
        assert_eq!(core.persistence.unwrap().netmask, 0xffff_ff00);
        assert!(core.sched_flags.flag2 && !core.sched_flags.flag1);
        assert_eq!(service_spec_of(&core), spec);
    }

    #[test]
    fn refusals_name_the_problem() {
        let bad_sched = ServiceSpec {
            service: ServiceRef::Tcp {
                address: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            scheduler: "bogus".into(),
            sched_flags: SchedFlagsSpec::default(),
            persistence: None,
            one_packet: false,
            pe: None,
        };
        let e = bad_sched.to_core().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::SchedulerNotFound);
        assert_eq!(e.errno.as_deref(), Some("ENOENT"));

        let key = key_of(&bad_sched.service);
        let multicast: ServerSpec =
            serde_json::from_str(r#"{"address":"224.0.0.1","port":80}"#).unwrap();
        assert_eq!(
            multicast.to_core(&key).unwrap_err().errno.as_deref(),
            Some("EINVAL")
        );
        let thresholds: ServerSpec = serde_json::from_str(
            r#"{"address":"10.0.0.2","port":80,"u_threshold":5,"l_threshold":9}"#,
        )
        .unwrap();
        assert_eq!(
            thresholds.to_core(&key).unwrap_err().errno.as_deref(),
            Some("ERANGE")
        );
    }

    #[test]
    fn commands_are_tagged_by_op_and_reject_unknown_fields() {
        let c: Command = serde_json::from_str(
            r#"{"op":"delete_server","service":{"protocol":"fwmark","mark":7},"address":"::1"}"#,
        )
        .unwrap();
        assert!(matches!(c, Command::DeleteServer { port: 0, .. }));
        assert!(serde_json::from_str::<Command>(r#"{"op":"clear","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"op":"explode"}"#).is_err());
    }
}
