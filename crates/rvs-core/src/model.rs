//! The configuration model: virtual services, real servers (destinations) and their
//! flags, with the validation the kernel and ipvsadm apply before a rule is accepted.
//!
//! Invariants: a [`ServiceConfig`] or [`DestConfig`] that passed `validate` is one the
//! kernel would have accepted (net/netfilter/ipvs/ip_vs_ctl.c `ip_vs_add_service`,
//! `ip_vs_add_dest`, and ipvsadm.c's own argument checks). Nothing here holds runtime
//! state; counters live in [`crate::dest::Dest`] and [`crate::service::Service`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ConfigError;
use crate::sched::SchedulerKind;

/// Default persistence timeout: `IPVS_SVC_PERSISTENT_TIMEOUT` = 6*60 s (libipvs.h).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;
/// Largest persistence timeout ipvsadm accepts (31 days).
pub const MAX_PERSISTENCE_TIMEOUT: u32 = 2_678_400;
/// Largest real-server weight (ipvsadm `-w` range).
/// The kernel takes any non-negative `int` weight (ip_vs_ctl.c refuses only
/// `weight < 0`), and Debian's ipvsadm 1.31 passes up to INT_MAX (rvsadm goldens:
/// `-w 65536` is accepted, `-w 2147483648` is not).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

/// Transport protocol of a virtual service (IPPROTO numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number (IPPROTO_TCP/UDP/SCTP).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// From an IP protocol number; `None` for protocols IPVS does not balance.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name ipvsadm prints in listings (`TCP`, `UDP`, `SCTP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Address family of a service or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// How a virtual service is addressed: (protocol, VIP, port) or a firewall mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    Addr {
        proto: Protocol,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        family: Family,
    },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// The service's port (0 for fwmark services, as the kernel stores it).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }

    pub fn fwmark(&self) -> Option<u32> {
        match self {
            ServiceKey::Fwmark { mark, .. } => Some(*mark),
            ServiceKey::Addr { .. } => None,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr, port } => {
                write!(f, "{proto} {}", SockAddrDisplay(*addr, *port))
            }
            ServiceKey::Fwmark { mark, family } => match family {
                Family::V4 => write!(f, "FWM {mark}"),
                Family::V6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

/// `addr:port`, with IPv6 in brackets as ipvsadm prints it.
#[derive(Clone, Copy, Debug)]
pub struct SockAddrDisplay(pub IpAddr, pub u16);

impl fmt::Display for SockAddrDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Tunnel encapsulation of a `-i` destination (`--tun-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    #[default]
    Ipip,
    Gue,
    Gre,
}

/// Tunnel checksum mode (`--tun-nocsum` default, `--tun-csum`, `--tun-remcsum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TunnelConfig {
    pub kind: TunnelKind,
    /// Destination UDP port of the GUE encapsulation (GUE only, required there).
    pub port: u16,
    pub csum: TunnelCsum,
}

/// Forwarding method of a destination (LVS method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT, `-m`, shown as `Masq`.
    Masq,
    /// Direct routing, `-g` (ipvsadm's default), shown as `Route`.
    Route,
    /// IP tunnelling, `-i`, shown as `Tunnel`.
    Tunnel(TunnelConfig),
    /// The real server is this host, shown as `Local`.
    Local,
    /// Source and destination NAT (not in mainline IPVS; rvs extension), shown as `FullNat`.
    FullNat,
}

impl Forward {
    /// The word ipvsadm prints in the Forward column.
    pub fn name(&self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Route => "Route",
            Forward::Tunnel(_) => "Tunnel",
            Forward::Local => "Local",
            Forward::FullNat => "FullNat",
        }
    }

    /// Whether the director sees the real server's replies. For every method except
    /// NAT the kernel sets IP_VS_CONN_F_NOOUTPUT and uses the INPUT-ONLY TCP table
    /// (ip_vs_ctl.c `__ip_vs_update_dest`). FullNAT sees both directions.
    pub fn sees_replies(&self) -> bool {
        matches!(self, Forward::Masq | Forward::FullNat)
    }
}

/// Service flags as the kernel numbers them (include/uapi/linux/ip_vs.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags {
    /// IP_VS_SVC_F_SCHED1: `flag-1`, `sh-fallback`, `mh-fallback`.
    pub flag1: bool,
    /// IP_VS_SVC_F_SCHED2: `flag-2`, `sh-port`, `mh-port`.
    pub flag2: bool,
    /// IP_VS_SVC_F_SCHED3: `flag-3`.
    pub flag3: bool,
}

impl SchedFlags {
    pub const SCHED1: u32 = 0x0008;
    pub const SCHED2: u32 = 0x0010;
    pub const SCHED3: u32 = 0x0020;

    pub fn bits(self) -> u32 {
        (if self.flag1 { Self::SCHED1 } else { 0 })
            | (if self.flag2 { Self::SCHED2 } else { 0 })
            | (if self.flag3 { Self::SCHED3 } else { 0 })
    }

    pub fn is_empty(self) -> bool {
        self.bits() == 0
    }
}

/// Persistence settings (`-p timeout -M netmask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Template timeout in seconds (1..=2678400).
    pub timeout: u32,
    /// IPv4: the netmask as a host-order u32 (`-M 255.255.255.0` = 0xffffff00).
    /// IPv6: the prefix length (1..=128).
    pub netmask: u32,
}

impl Persistence {
    /// Persistence with the default timeout and the full-host mask of `family`.
    pub fn default_for(family: Family) -> Self {
        Persistence {
            timeout: DEFAULT_PERSISTENCE_TIMEOUT,
            netmask: match family {
                Family::V4 => u32::MAX,
                Family::V6 => 128,
            },
        }
    }

    /// The client network: `addr` masked with the persistence granularity
    /// (ip_vs_core.c `ip_vs_sched_persist`: `snet = saddr & netmask`).
    pub fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & self.netmask)),
            IpAddr::V6(a) => {
                let bits = self.netmask.min(128);
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

/// A virtual service as configured (`ipvsadm -A/-E`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    pub key: ServiceKey,
    pub scheduler: SchedulerKind,
    pub sched_flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// `-o`: schedule each datagram alone (UDP and fwmark services).
    pub one_packet: bool,
    /// `--pe NAME`: persistence engine (the kernel ships only `sip`).
    pub pe_name: Option<String>,
}

impl ServiceConfig {
    /// A service with ipvsadm's defaults: wlc, no persistence, no flags.
    pub fn new(key: ServiceKey) -> Self {
        ServiceConfig {
            key,
            scheduler: SchedulerKind::Wlc,
            sched_flags: SchedFlags::default(),
            persistence: None,
            one_packet: false,
            pe_name: None,
        }
    }

    /// The checks the kernel and ipvsadm make before they add or edit a service.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let ServiceKey::Addr { port: 0, .. } = self.key {
            if self.persistence.is_none() {
                return Err(ConfigError::ZeroPortNotPersistent);
            }
        }
        if let Some(p) = &self.persistence {
            if p.timeout == 0 || p.timeout > MAX_PERSISTENCE_TIMEOUT {
                return Err(ConfigError::PersistenceTimeout(p.timeout));
            }
            if self.key.family() == Family::V6 && !(1..=128).contains(&p.netmask) {
                return Err(ConfigError::Ipv6Prefix(p.netmask));
            }
        }
        if self.one_packet {
            if let ServiceKey::Addr { proto, .. } = self.key {
                if proto != Protocol::Udp {
                    return Err(ConfigError::OnePacketNotUdp);
                }
            }
        }
        // Scheduler flags are raw bits here, as in the kernel: only ipvsadm's
        // sh-/mh- spellings are bound to a scheduler, and that is the CLI's check.
        if let Some(pe) = &self.pe_name {
            if pe != "sip" {
                return Err(ConfigError::UnknownPersistenceEngine(pe.clone()));
            }
        }
        Ok(())
    }
}

/// A destination (real server) as configured (`ipvsadm -a/-e`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    /// 0..=MAX_WEIGHT; 0 means quiesced (no new connections).
    pub weight: u32,
    pub forward: Forward,
    /// `-x`: upper connection threshold, 0 = none.
    pub u_threshold: u32,
    /// `-y`: lower connection threshold, 0 = none.
    pub l_threshold: u32,
}

impl DestConfig {
    /// A destination with ipvsadm's defaults: DR, weight 1, no thresholds.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        DestConfig {
            addr,
            port,
            weight: 1,
            forward: Forward::Route,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    /// The checks of ip_vs_ctl.c `ip_vs_add_dest`/`ip_vs_edit_dest` and ipvsadm's
    /// argument parser, for a destination of a service with key `svc`.
    pub fn validate(&self, svc: &ServiceKey) -> Result<(), ConfigError> {
        if self.weight > MAX_WEIGHT {
            return Err(ConfigError::Weight(u64::from(self.weight)));
        }
        // ip_vs_ctl.c ip_vs_add_dest/ip_vs_edit_dest: -ERANGE whenever the lower
        // threshold is above the upper one, even when the upper one is 0 (unset);
        // the real kernel refuses `-y 10` alone (rvsadm goldens, thresholds.golden).
        if self.l_threshold > self.u_threshold {
            return Err(ConfigError::Thresholds {
                lower: self.l_threshold,
                upper: self.u_threshold,
            });
        }
        if Family::of(&self.addr) != svc.family() && !matches!(self.forward, Forward::Tunnel(_)) {
            return Err(ConfigError::MixedFamily);
        }
        if let Forward::Tunnel(t) = self.forward {
            match t.kind {
                TunnelKind::Gue if t.port == 0 => return Err(ConfigError::TunnelPortMissing),
                TunnelKind::Ipip if t.csum != TunnelCsum::NoCsum => {
                    return Err(ConfigError::TunnelCsum("ipip"))
                }
                TunnelKind::Gre if t.csum == TunnelCsum::RemCsum => {
                    return Err(ConfigError::TunnelCsum("gre"))
                }
                TunnelKind::Ipip | TunnelKind::Gre if t.port != 0 => {
                    return Err(ConfigError::TunnelPortNotGue)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port,
        }
    }

    #[test]
    fn port_zero_needs_persistence() {
        let mut s = ServiceConfig::new(tcp(0));
        assert_eq!(s.validate(), Err(ConfigError::ZeroPortNotPersistent));
        s.persistence = Some(Persistence::default_for(Family::V4));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn one_packet_only_for_udp_and_fwmark() {
        let mut s = ServiceConfig::new(tcp(80));
        s.one_packet = true;
        assert_eq!(s.validate(), Err(ConfigError::OnePacketNotUdp));
        s.key = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V4,
        };
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn weight_and_threshold_ranges() {
        let mut d = DestConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80);
        d.weight = 1 << 31;
        assert_eq!(d.validate(&tcp(80)), Err(ConfigError::Weight(1 << 31)));
        d.weight = 65_536;
        assert_eq!(d.validate(&tcp(80)), Ok(()));
        d.weight = 65_535;
        d.u_threshold = 10;
        d.l_threshold = 11;
        assert!(matches!(
            d.validate(&tcp(80)),
            Err(ConfigError::Thresholds { .. })
        ));
        d.u_threshold = 0;
        d.l_threshold = 1;
        assert!(matches!(
            d.validate(&tcp(80)),
            Err(ConfigError::Thresholds { .. })
        ));
        d.l_threshold = 0;
        assert_eq!(d.validate(&tcp(80)), Ok(()));
    }

    #[test]
    fn gue_needs_a_port_and_v6_dest_needs_tunnel() {
        let mut d = DestConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80);
        d.forward = Forward::Tunnel(TunnelConfig {
            kind: TunnelKind::Gue,
            port: 0,
            csum: TunnelCsum::NoCsum,
        });
        assert_eq!(d.validate(&tcp(80)), Err(ConfigError::TunnelPortMissing));
        let mut d6 = DestConfig::new("2001:db8::1".parse().unwrap(), 80);
        assert_eq!(d6.validate(&tcp(80)), Err(ConfigError::MixedFamily));
        d6.forward = Forward::Tunnel(TunnelConfig::default());
        assert_eq!(d6.validate(&tcp(80)), Ok(()));
    }

    #[test]
    fn v6_mask_is_a_prefix() {
        let p = Persistence {
            timeout: 1,
            netmask: 64,
        };
        assert_eq!(
            p.mask("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        let p4 = Persistence {
            timeout: 1,
            netmask: 0xffff_ff00,
        };
        assert_eq!(
            p4.mask("10.1.2.3".parse().unwrap()),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
    }
}
