//! PLACEHOLDER, replaced before merge: lblc is being written on its own branch.

use super::{DestSet, SchedInput, Scheduler, SchedulerKind};

#[derive(Debug)]
pub struct LocalityLeastConnection;

impl LocalityLeastConnection {
    pub fn new() -> Self {
        LocalityLeastConnection
    }
}

impl Scheduler for LocalityLeastConnection {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }
    fn schedule(&mut self, _dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        None
    }
}
