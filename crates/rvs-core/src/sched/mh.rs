//! PLACEHOLDER, replaced before merge: mh is being written on its own branch.

use super::{DestSet, SchedInput, Scheduler, SchedulerKind};

pub const DEFAULT_TAB_SIZE: u32 = 4093;
pub const PRIMES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

#[derive(Debug)]
pub struct MaglevHashing;

impl MaglevHashing {
    pub fn new(_dests: DestSet<'_>, _size: u32) -> Self {
        MaglevHashing
    }
}

impl Scheduler for MaglevHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Mh
    }
    fn schedule(&mut self, _dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        None
    }
}
