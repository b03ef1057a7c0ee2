//! PLACEHOLDER, replaced before merge: sh is being written on its own branch.

use super::{DestSet, SchedInput, Scheduler, SchedulerKind};

pub const DEFAULT_TAB_BITS: u32 = 8;

#[derive(Debug)]
pub struct SourceHashing;

impl SourceHashing {
    pub fn new(_dests: DestSet<'_>, _bits: u32) -> Self {
        SourceHashing
    }
}

impl Scheduler for SourceHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sh
    }
    fn schedule(&mut self, _dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        None
    }
}
