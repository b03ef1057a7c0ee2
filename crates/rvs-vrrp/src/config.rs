//! What one VRRP instance and one sync group are configured to do, already resolved
//! by the driver (source address chosen, intervals rounded as keepalived rounds them).
//!
//! Invariants checked by [`InstanceConfig::validate`]: VRID 1..=255, priority
//! 1..=255, an advertisement interval the version can carry (v2 whole seconds
//! 1..=255, v3 centiseconds 1..=4095), every virtual address of one family, and
//! the source address of that family too.

use std::net::IpAddr;

use rvs_core::time::Span;
use rvs_wire::vrrp::VrrpVersion;

/// RFC 3768 5.3.4 / RFC 5798 5.2.4: the address owner's priority.
pub const PRIORITY_OWNER: u8 = 255;
/// The priority a resigning master advertises (RFC 3768 5.3.4).
pub const PRIORITY_STOP: u8 = 0;

/// One tracked object (a `track_interface`, a `vrrp_script` through `track_script`,
/// or the instance's own interface) as the instance sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// What the operator calls it (shown in the status).
    pub name: String,
    /// 0: a failure puts the instance in FAULT. Otherwise keepalived's rule
    /// (keepalived/vrrp/vrrp_track.c): a positive weight is added while the object
    /// is up, a negative one while it is down.
    pub weight: i32,
    /// `reverse`: the weight's sign is flipped, and a weight-0 tracker faults when
    /// the object is up.
    pub reverse: bool,
    /// The state before the first report: `None` for a script that has not run
    /// (a weight-0 one holds the instance out of BACKUP until it has), `Some(false)`
    /// for `init_fail`, `Some(up)` for an interface.
    pub initial: Option<bool>,
}

/// Gratuitous ARP / unsolicited NA timing on becoming master (keepalived's
/// `garp_master_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GarpConfig {
    /// Second burst this long after the transition; zero: none. Default 5 s.
    pub master_delay: Span,
    /// Messages per address in each burst. Default 5.
    pub master_repeat: u32,
    /// While master, a burst every `refresh`. Default none.
    pub refresh: Option<Span>,
    /// Messages per address in a refresh burst. Default 1.
    pub refresh_repeat: u32,
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            master_delay: Span::from_secs(5),
            master_repeat: 5,
            refresh: None,
            refresh_repeat: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    pub name: String,
    pub vrid: u8,
    pub version: VrrpVersion,
    /// Configured (base) priority, 1..=255.
    pub priority: u8,
    /// Rounded as keepalived does: whole seconds for v2, centiseconds for v3.
    pub advert_int: Span,
    /// `state MASTER`.
    pub want_master: bool,
    pub nopreempt: bool,
    pub preempt_delay: Span,
    /// VRRPv2 simple text password (`auth_type PASS`), padded with zeros to 8 bytes.
    pub auth_pass: Option<[u8; 8]>,
    /// The advertised virtual addresses (`virtual_ipaddress`).
    pub vips: Vec<IpAddr>,
    /// Adverts go to unicast peers: no TTL check, and multicast adverts are refused.
    pub unicast: bool,
    /// This router's source address: its adverts come from it, and it breaks
    /// equal-priority ties (the higher address wins, RFC 5798 6.4.3).
    pub local_addr: IpAddr,
    pub garp: GarpConfig,
    /// keepalived's `lower_prio_no_advert`: a master does not answer a
    /// lower-priority advert with one of its own.
    pub lower_prio_no_advert: bool,
    pub trackers: Vec<TrackerConfig>,
    /// Adverts a backup misses before it takes over (keepalived's
    /// `down_timer_adverts`, RFC value 3).
    pub down_timer_adverts: u32,
}

/// A `vrrp_sync_group`: its members change state together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    /// Indexes into the instance list.
    pub members: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: virtual_router_id must be 1..255")]
    Vrid(String),
    #[error("{0}: priority must be 1..255")]
    Priority(String),
    #[error("{name}: advert_int {ms} ms cannot be carried by VRRPv{version}")]
    AdvertInt { name: String, ms: u64, version: u8 },
    #[error("{0}: virtual addresses and the source address must all be IPv4 or all IPv6")]
    Family(String),
    #[error("{0}: VRRPv2 is IPv4 only")]
    V2Ipv6(String),
    #[error("{0}: authentication is VRRPv2 only")]
    V3Auth(String),
    #[error("sync group {group}: no instance #{member}")]
    GroupMember { group: String, member: usize },
    #[error("instance {instance} is in two sync groups")]
    TwoGroups { instance: String },
}

impl InstanceConfig {
    /// A config with keepalived's defaults around the given identity.
    pub fn new(name: &str, vrid: u8, local_addr: IpAddr, vips: Vec<IpAddr>) -> Self {
        InstanceConfig {
            name: name.to_string(),
            vrid,
            version: if local_addr.is_ipv6() {
                VrrpVersion::V3
            } else {
                VrrpVersion::V2
            },
            priority: 100,
            advert_int: Span::from_secs(1),
            want_master: false,
            nopreempt: false,
            preempt_delay: Span::from_millis(0),
            auth_pass: None,
            vips,
            unicast: false,
            local_addr,
            garp: GarpConfig::default(),
            lower_prio_no_advert: false,
            trackers: Vec::new(),
            down_timer_adverts: 3,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.local_addr.is_ipv6()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = || self.name.clone();
        if self.vrid == 0 {
            return Err(ConfigError::Vrid(name()));
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority(name()));
        }
        let ms = self.advert_int.as_millis();
        let (ok, version) = match self.version {
            VrrpVersion::V2 => (ms.is_multiple_of(1000) && (1000..=255_000).contains(&ms), 2),
            VrrpVersion::V3 => (ms.is_multiple_of(10) && (10..=40_950).contains(&ms), 3),
        };
        if !ok {
            return Err(ConfigError::AdvertInt {
                name: name(),
                ms,
                version,
            });
        }
        let v6 = self.is_v6();
        if self.vips.iter().any(|a| a.is_ipv6() != v6) {
            return Err(ConfigError::Family(name()));
        }
        if v6 && self.version == VrrpVersion::V2 {
            return Err(ConfigError::V2Ipv6(name()));
        }
        if self.auth_pass.is_some() && self.version == VrrpVersion::V3 {
            return Err(ConfigError::V3Auth(name()));
        }
        Ok(())
    }
}

/// keepalived's rounding of `advert_int` (keepalived/vrrp/vrrp.c, instance
/// completion): v2 to the nearest whole second (at least 1 s, at most 255 s), v3
/// to the nearest centisecond (at least 10 ms, at most 40.95 s).
pub fn round_advert_int(version: VrrpVersion, requested: std::time::Duration) -> Span {
    let us = requested.as_micros();
    let (unit, max_units) = match version {
        VrrpVersion::V2 => (1_000_000u128, 255u128),
        VrrpVersion::V3 => (10_000u128, 4095u128),
    };
    let units = ((us + unit / 2) / unit).clamp(1, max_units);
    let ms = units * unit / 1000;
    Span::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}
