//! Runtime state of a destination (real server): its configuration plus the
//! counters the kernel keeps in `struct ip_vs_dest` (include/net/ip_vs.h).
//!
//! Invariants: `active_conns + inactive_conns` equals the number of live non-template
//! connections bound to this destination, `persist_conns` the number of live
//! templates; `overloaded` follows the threshold rules of ip_vs_conn.c
//! (`ip_vs_bind_dest`/`ip_vs_unbind_dest`) and ip_vs_ctl.c (`__ip_vs_update_dest`).

use crate::model::DestConfig;
use crate::service::ServiceId;
use crate::stats::Stats;

/// Stable handle of a destination, valid while any rule or connection refers to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub u32);

impl DestId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug)]
pub struct Dest {
    pub id: DestId,
    pub config: DestConfig,
    /// The latest non-zero weight (`last_weight`, used by mh to keep a quiesced
    /// server's slots).
    pub last_weight: u32,
    /// IP_VS_DEST_F_AVAILABLE: cleared when the destination is deleted while
    /// connections still refer to it (the kernel's "trash").
    pub available: bool,
    /// IP_VS_DEST_F_OVERLOAD.
    pub overloaded: bool,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persist_conns: u32,
    pub stats: Stats,
    pub(crate) service: ServiceId,
    /// Position in the service's list while `available`.
    pub(crate) list_pos: u32,
}

impl Dest {
    pub(crate) fn new(id: DestId, config: DestConfig, service: ServiceId) -> Self {
        Dest {
            id,
            config,
            last_weight: config.weight,
            available: true,
            overloaded: false,
            active_conns: 0,
            inactive_conns: 0,
            persist_conns: 0,
            stats: Stats::default(),
            service,
            list_pos: 0,
        }
    }

    pub fn weight(&self) -> u32 {
        self.config.weight
    }

    pub fn service(&self) -> ServiceId {
        self.service
    }

    /// Connections and templates still bound to this destination (its refcount).
    pub fn bound(&self) -> u64 {
        self.total_conns() + u64::from(self.persist_conns)
    }

    /// `ip_vs_dest_totalconns`: active + inactive (templates excluded).
    pub fn total_conns(&self) -> u64 {
        u64::from(self.active_conns) + u64::from(self.inactive_conns)
    }

    /// `ip_vs_dest_conn_overhead`: active*256 + inactive.
    pub fn conn_overhead(&self) -> u64 {
        (u64::from(self.active_conns) << 8) + u64::from(self.inactive_conns)
    }

    /// Whether a scheduler may pick this destination: not overloaded, weight > 0.
    pub fn schedulable(&self) -> bool {
        !self.overloaded && self.config.weight > 0
    }

    /// Overload after binding a connection (ip_vs_conn.c `ip_vs_bind_dest`).
    pub(crate) fn update_overload_on_bind(&mut self) {
        let u = u64::from(self.config.u_threshold);
        if u != 0 && self.total_conns() >= u {
            self.overloaded = true;
        }
    }

    /// Overload after unbinding a connection (ip_vs_conn.c `ip_vs_unbind_dest`).
    pub(crate) fn update_overload_on_unbind(&mut self) {
        let l = u64::from(self.config.l_threshold);
        let u = u64::from(self.config.u_threshold);
        let total = self.total_conns();
        if l != 0 {
            if total < l {
                self.overloaded = false;
            }
        } else if u != 0 {
            if total * 4 < u * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }

    /// Overload after an edit (ip_vs_ctl.c `__ip_vs_update_dest`).
    pub(crate) fn update_overload_on_edit(&mut self) {
        let u = u64::from(self.config.u_threshold);
        if u == 0 || u > self.total_conns() {
            self.overloaded = false;
        }
    }
}
