//! rr: round robin (net/netfilter/ipvs/ip_vs_rr.c). From the destination used last,
//! take the next one in list order that is not overloaded and has weight > 0,
//! wrapping once round the list; the cursor starts at the list head, so the first
//! pick is the destination added last. When the cursor's destination is removed the
//! cursor moves to the one before it, as the kernel's `del_dest` does.

use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// List position of the destination used last; `None` = the list head.
    cursor: Option<usize>,
}

impl RoundRobin {
    pub fn new() -> Self {
        RoundRobin { cursor: None }
    }
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn dests_changed(&mut self, _dests: DestSet<'_>, change: DestChange) {
        let Some(c) = self.cursor else { return };
        self.cursor = match change {
            DestChange::Added(p) if p <= c => Some(c + 1),
            DestChange::Removed(p, _) if p == c => c.checked_sub(1),
            DestChange::Removed(p, _) if p < c => Some(c - 1),
            _ => Some(c),
        };
    }

    fn schedule(&mut self, dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        let n = dests.len();
        // After the cursor to the end, then (only if the cursor is not the head)
        // from the start up to and including the cursor.
        let (start, wrap_end) = match self.cursor {
            None => (0, None),
            Some(c) => (c + 1, Some(c.min(n.saturating_sub(1)))),
        };
        let first = start..n;
        let second = match wrap_end {
            Some(end) => 0..end + 1,
            None => 0..0,
        };
        let hit = first.chain(second).find(|&p| dests.get(p).schedulable());
        if let Some(p) = hit {
            self.cursor = Some(p);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{fixture, input};
    use crate::sched::XorShiftRandom;

    fn run(
        s: &mut RoundRobin,
        fx: &crate::sched::testutil::Fixture,
        n: usize,
    ) -> Vec<Option<usize>> {
        let mut rng = XorShiftRandom::new(1);
        (0..n)
            .map(|_| s.schedule(fx.set(), &mut input(&mut rng)))
            .collect()
    }

    #[test]
    fn cycles_in_list_order_skipping_unavailable() {
        let fx = fixture(&[
            (1, 0, 0, false),
            (0, 0, 0, false),
            (1, 0, 0, true),
            (7, 0, 0, false),
        ]);
        let mut s = RoundRobin::new();
        assert_eq!(
            run(&mut s, &fx, 5),
            vec![Some(0), Some(3), Some(0), Some(3), Some(0)]
        );
    }

    #[test]
    fn nothing_available() {
        let fx = fixture(&[(0, 0, 0, false), (1, 0, 0, true)]);
        let mut s = RoundRobin::new();
        assert_eq!(run(&mut s, &fx, 2), vec![None, None]);
    }

    #[test]
    fn removing_the_cursor_continues_with_its_successor() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = RoundRobin::new();
        assert_eq!(run(&mut s, &fx, 2), vec![Some(0), Some(1)]);
        // Remove position 1 (the cursor): next pick is the old position 2, now 1.
        let gone = fx.order.remove(1);
        s.dests_changed(fx.set(), DestChange::Removed(1, gone));
        assert_eq!(run(&mut s, &fx, 2), vec![Some(1), Some(0)]);
    }
}
