//! What the plane serves: the listening sockets derived from the core's virtual
//! services, and the per-real-server options the core does not model (PROXY
//! protocol). A snapshot, rebuilt by the daemon after every table change and
//! published to the workers.
//!
//! Invariants: a TCP or UDP service with a port listens on VIP:port; a
//! firewall-mark service listens on each address:port its classifier rules give
//! it (and wins over an address service on the same socket, as the kernel looks
//! fwmark services up first, `ip_vs_service_find`); everything else is listed in
//! `unserved` with the reason, never dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use hashbrown::HashMap;
use rvs_core::{Director, MarkRule, Protocol, ServiceKey};

/// The transport of a listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }

    fn of(proto: Protocol) -> Option<Self> {
        match proto {
            Protocol::Tcp => Some(Transport::Tcp),
            Protocol::Udp => Some(Transport::Udp),
            Protocol::Sctp => None,
        }
    }
}

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl ListenerKey {
    /// Where a connection of this listener goes: the real server's port, or
    /// this listener's when the real server has none (a fwmark service's
    /// server without a port takes the packet's).
    pub(crate) fn target(&self, daddr: std::net::IpAddr, dport: u16) -> SocketAddr {
        let port = if dport == 0 { self.addr.port() } else { dport };
        SocketAddr::new(daddr, port)
    }
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport.name(), self.addr)
    }
}

/// The PROXY protocol header a real server gets before the client's bytes
/// (an rvs extension, off unless asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// A virtual service the plane cannot serve, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unserved {
    pub service: ServiceKey,
    pub reason: String,
}

/// The plane's view of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaneTable {
    /// Each socket and the service its traffic belongs to.
    pub listeners: BTreeMap<ListenerKey, ServiceKey>,
    pub unserved: Vec<Unserved>,
    /// PROXY protocol per (service, real server address:port).
    pub proxy: HashMap<(ServiceKey, SocketAddr), ProxyProtocol>,
}

impl PlaneTable {
    /// The table for the services of `d`; a firewall-mark service listens on
    /// the sockets its classifier rules (`Director::mark_rules`) expand to;
    /// `proxy` lists the real servers that get a PROXY header.
    pub fn build(d: &Director, proxy: HashMap<(ServiceKey, SocketAddr), ProxyProtocol>) -> Self {
        let mut t = PlaneTable {
            proxy,
            ..PlaneTable::default()
        };
        let mut fwmark = Vec::new();
        for svc in d.services() {
            let key = svc.config.key;
            match key {
                ServiceKey::Addr { proto, addr, port } => {
                    let Some(transport) = Transport::of(proto) else {
                        t.unserved.push(Unserved {
                            service: key,
                            reason: "SCTP is not served by the socket data plane".into(),
                        });
                        continue;
                    };
                    if port == 0 {
                        t.unserved.push(Unserved {
                            service: key,
                            reason: PORT_ZERO.into(),
                        });
                        continue;
                    }
                    let lk = ListenerKey {
                        transport,
                        addr: SocketAddr::new(addr, port),
                    };
                    t.listeners.insert(lk, key);
                }
                ServiceKey::Fwmark { mark, family } => {
                    let mut any = false;
                    for rule in d.mark_rules().of_mark(mark, family) {
                        any = true;
                        match mark_sockets(rule) {
                            Ok(sockets) => fwmark.extend(sockets.into_iter().map(|lk| (lk, key))),
                            Err(reason) => t.unserved.push(Unserved {
                                service: key,
                                reason: format!("mark rule `{rule}`: {reason}"),
                            }),
                        }
                    }
                    if !any {
                        t.unserved.push(Unserved {
                            service: key,
                            reason: format!(
                                "no classifier rule gives firewall mark {mark}: nothing to listen on"
                            ),
                        });
                    }
                }
            }
        }
        t.listeners.extend(fwmark);
        t
    }
}

/// The most sockets one classifier rule may expand to in this plane.
pub const MAX_RULE_SOCKETS: u128 = 4096;

/// The sockets that carry a classifier rule's traffic: every address of its
/// prefix on every port of its ranges; or why this plane cannot listen on
/// them.
fn mark_sockets(rule: &MarkRule) -> Result<Vec<ListenerKey>, String> {
    let Some(transport) = Transport::of(rule.proto()) else {
        return Err("SCTP is not served by the socket data plane".into());
    };
    if rule.all_ports() {
        return Err(
            "a rule for every port cannot be served by the socket data plane: \
                    give it ports"
                .into(),
        );
    }
    let count = rule
        .dest()
        .size()
        .saturating_mul(u128::from(rule.port_count()));
    if count > MAX_RULE_SOCKETS {
        return Err(format!(
            "it spans {count} address:port pairs, more than the {MAX_RULE_SOCKETS} sockets \
             the socket data plane opens for one rule"
        ));
    }
    let mut out = Vec::new();
    for addr in rule.dest().addresses() {
        out.extend(rule.each_port().map(|port| ListenerKey {
            transport,
            addr: SocketAddr::new(addr, port),
        }));
    }
    Ok(out)
}

/// Why a port-0 service cannot be served here.
pub const PORT_ZERO: &str = "port 0 (every port of the address, a persistent-service form) \
     cannot be served by the socket data plane: give the service a port";

/// The header a real server with PROXY protocol `version` gets first.
pub(crate) fn proxy_header(version: ProxyProtocol, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    use rvs_wire::proxy_protocol::{encode, Transport as Wire, Version};
    let v = match version {
        ProxyProtocol::V1 => Version::V1,
        ProxyProtocol::V2 => Version::V2,
    };
    encode(v, Wire::Stream, client, vip)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rvs_core::{DirectorConfig, Family, ServiceConfig};

    fn addr_key(proto: Protocol, a: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto,
            addr: a.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn listeners_follow_the_services() {
        let mut d = Director::new(DirectorConfig::default());
        let tcp = addr_key(Protocol::Tcp, "10.0.0.1", 80);
        let udp = addr_key(Protocol::Udp, "10.0.0.1", 53);
        let sctp = addr_key(Protocol::Sctp, "10.0.0.1", 80);
        let port0 = addr_key(Protocol::Tcp, "10.0.0.2", 0);
        let mark = ServiceKey::Fwmark {
            mark: 6666,
            family: Family::V4,
        };
        let unmarked = ServiceKey::Fwmark {
            mark: 7,
            family: Family::V4,
        };
        for k in [tcp, udp, sctp, mark, unmarked] {
            d.add_service(ServiceConfig::new(k)).unwrap();
        }
        let mut p0 = ServiceConfig::new(port0);
        p0.persistence = Some(rvs_core::Persistence::default_for(Family::V4));
        d.add_service(p0).unwrap();

        let https = ListenerKey {
            transport: Transport::Tcp,
            addr: "10.0.0.1:443".parse().unwrap(),
        };
        let http = ListenerKey {
            transport: Transport::Tcp,
            addr: "10.0.0.1:80".parse().unwrap(),
        };
        let v6 = ListenerKey {
            transport: Transport::Tcp,
            addr: "[2001:db8::1]:443".parse().unwrap(),
        };
        for r in [
            "6666 tcp 10.0.0.1 80,443",
            "6666 tcp 2001:db8::1 443",
            "6666 udp 10.0.0.0/8 53",
            "6666 sctp 10.0.0.1 80",
            "6666 tcp 10.0.0.9 all",
        ] {
            d.add_mark_rule(r.parse().unwrap()).unwrap();
        }
        let t = PlaneTable::build(&d, HashMap::new());
        // The fwmark service takes 10.0.0.1:80 over the address service (the
        // kernel looks fwmark services up first); the IPv6 member belongs to
        // an IPv6 fwmark service, which there is not.
        assert_eq!(t.listeners.get(&http), Some(&mark));
        assert_eq!(t.listeners.get(&https), Some(&mark));
        assert_eq!(t.listeners.get(&v6), None);
        let udp_lk = ListenerKey {
            transport: Transport::Udp,
            addr: "10.0.0.1:53".parse().unwrap(),
        };
        assert_eq!(t.listeners.get(&udp_lk), Some(&udp));
        assert_eq!(t.listeners.len(), 3);
        let unserved: Vec<ServiceKey> = t.unserved.iter().map(|u| u.service).collect();
        assert!(unserved.contains(&sctp));
        assert!(unserved.contains(&port0));
        assert!(unserved.contains(&unmarked));
        // Three of mark 6666's rules cannot be listened on, each said with its
        // reason; the service is still served on its other sockets.
        let mark_reasons: Vec<&str> = t
            .unserved
            .iter()
            .filter(|u| u.service == mark)
            .map(|u| u.reason.as_str())
            .collect();
        assert_eq!(mark_reasons.len(), 3, "{mark_reasons:?}");
        assert!(mark_reasons[0].contains("16777216 address:port pairs"));
        assert!(mark_reasons[1].starts_with("mark rule `6666 sctp 10.0.0.1/32 80`: SCTP"));
        assert!(mark_reasons[2].contains("every port"));
        assert_eq!(unserved.len(), 6);
        assert!(t
            .unserved
            .iter()
            .any(|u| u.service == port0 && u.reason == PORT_ZERO));
    }
}
