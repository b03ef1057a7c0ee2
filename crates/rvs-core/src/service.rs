//! Runtime state of a virtual service: its configuration, its destinations in the
//! kernel's list order, its bound scheduler and its counters.
//!
//! Invariant: `order` holds the service's live destinations, newest first (the
//! kernel adds with `list_add_rcu` at the head), and each one's `list_pos` in the
//! director's slab equals its index here.

use std::fmt;

use crate::dest::DestId;
use crate::model::ServiceConfig;
use crate::sched::Scheduler;
use crate::stats::Stats;

/// Stable handle of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u32);

impl ServiceId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

pub struct Service {
    pub id: ServiceId,
    pub config: ServiceConfig,
    pub(crate) order: Vec<DestId>,
    pub(crate) sched: Box<dyn Scheduler>,
    pub stats: Stats,
}

impl Service {
    /// Destination ids in list order (head first), as `ipvsadm -L --nosort` shows.
    pub fn dest_ids(&self) -> &[DestId] {
        &self.order
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("order", &self.order)
            .field("sched", &self.sched)
            .finish()
    }
}
