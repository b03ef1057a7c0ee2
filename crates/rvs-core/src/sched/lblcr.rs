//! PLACEHOLDER, replaced before merge: lblcr is being written on its own branch.

use super::{DestSet, SchedInput, Scheduler, SchedulerKind};

#[derive(Debug)]
pub struct LocalityLeastConnectionReplicated;

impl LocalityLeastConnectionReplicated {
    pub fn new() -> Self {
        LocalityLeastConnectionReplicated
    }
}

impl Scheduler for LocalityLeastConnectionReplicated {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }
    fn schedule(&mut self, _dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        None
    }
}
