//! A tournament tree that keeps the kernel's pick of the "least loaded" family
//! (lc, wlc, sed, nq, fo, ovf) current in O(log n) per load change, so a decision
//! is O(1) instead of the kernel's O(n) list walk. Keeping the tree current costs
//! more than the walk for small services, so [`LeastLoaded`] walks the list up to
//! [`LINEAR_MAX`] destinations and uses the tree above.
//!
//! Each kernel scheduler of this family walks the list in order and replaces its
//! candidate only when the next eligible destination is *strictly* better. With a
//! strict weak order that yields the minimum, earliest in list order among equals.
//! The tree's combine step is the same strict comparison with the left (earlier)
//! side kept on ties, and combining is associative for a strict weak order, so the
//! root is exactly the kernel's pick. Each module keeps its linear kernel walk as a
//! reference and property tests compare the two.
//!
//! Invariant: `nodes[1]` is the pick for the current loads, provided the owner
//! calls `update` after any change to one destination's load or flags and
//! `rebuild` after any change to the list. An update climbs only while the
//! winners it meets change or are the updated destination itself.

use std::fmt;
use std::marker::PhantomData;

use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};
use crate::dest::Dest;

const NONE: u32 = u32::MAX;

/// The order a least-loaded scheduler minimises.
pub trait LoadOrder: Send + 'static {
    const KIND: SchedulerKind;

    /// Whether the scheduler considers `d` at all.
    fn eligible(d: &Dest) -> bool {
        d.schedulable()
    }

    /// Whether `a` is strictly better than `b` (the kernel's replacement test).
    fn better(a: &Dest, b: &Dest) -> bool;

    /// The kernel's linear walk, used as the reference in tests.
    fn linear(dests: DestSet<'_>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (pos, d) in dests.iter().enumerate() {
            if !Self::eligible(d) {
                continue;
            }
            match best {
                None => best = Some(pos),
                Some(b) if Self::better(d, dests.get(b)) => best = Some(pos),
                Some(_) => {}
            }
        }
        best
    }
}

/// `loh * dw > doh * lw`: `d` (overhead `doh`, weight `dw`) is strictly less loaded
/// per weight than `l`. Products are 128-bit so they never overflow.
pub fn weighted_less(doh: u64, dw: u32, loh: u64, lw: u32) -> bool {
    u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
}

pub struct LoadTree {
    /// Number of leaves (a power of two, at least 1).
    size: usize,
    /// 1-based heap layout; each node holds the winning list position or NONE.
    nodes: Vec<u32>,
}

impl LoadTree {
    pub fn new<O: LoadOrder>(dests: DestSet<'_>) -> Self {
        let mut t = LoadTree {
            size: 1,
            nodes: vec![NONE; 2],
        };
        t.rebuild::<O>(dests);
        t
    }

    fn pick<O: LoadOrder>(dests: DestSet<'_>, l: u32, r: u32) -> u32 {
        if l == NONE {
            return r;
        }
        if r == NONE {
            return l;
        }
        if O::better(dests.get(r as usize), dests.get(l as usize)) {
            r
        } else {
            l
        }
    }

    pub fn rebuild<O: LoadOrder>(&mut self, dests: DestSet<'_>) {
        let n = dests.len();
        self.size = n.next_power_of_two().max(1);
        self.nodes.clear();
        self.nodes.resize(2 * self.size, NONE);
        for (pos, d) in dests.iter().enumerate() {
            if O::eligible(d) {
                self.nodes[self.size + pos] = pos as u32;
            }
        }
        for i in (1..self.size).rev() {
            self.nodes[i] = Self::pick::<O>(dests, self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    pub fn update<O: LoadOrder>(&mut self, dests: DestSet<'_>, pos: usize) {
        if pos >= dests.len() || pos >= self.size {
            // The list changed without a rebuild; recover rather than misindex.
            self.rebuild::<O>(dests);
            return;
        }
        let mut i = self.size + pos;
        self.nodes[i] = if O::eligible(dests.get(pos)) {
            pos as u32
        } else {
            NONE
        };
        while i > 1 {
            i /= 2;
            let old = self.nodes[i];
            let won = Self::pick::<O>(dests, self.nodes[2 * i], self.nodes[2 * i + 1]);
            self.nodes[i] = won;
            // Only `pos` changed: a node whose winner is the same destination as
            // before, and not `pos`, compares exactly as before all the way up.
            if won == old && won != pos as u32 {
                break;
            }
        }
    }

    pub fn best(&self) -> Option<usize> {
        let b = self.nodes.get(1).copied().unwrap_or(NONE);
        (b != NONE).then_some(b as usize)
    }
}

/// Up to this many destinations the kernel's walk is cheaper than keeping a
/// tree current on every load change (measured: BENCHMARKS.md, sched_lifecycle).
pub const LINEAR_MAX: usize = 64;

/// A least-loaded scheduler: the kernel's walk for small services, a
/// [`LoadTree`] above [`LINEAR_MAX`] destinations. Both pick the same.
pub struct LeastLoaded<O: LoadOrder> {
    /// `Some` while the service has more than [`LINEAR_MAX`] destinations.
    tree: Option<LoadTree>,
    _order: PhantomData<O>,
}

impl<O: LoadOrder> LeastLoaded<O> {
    pub fn new(dests: DestSet<'_>) -> Self {
        let mut s = LeastLoaded {
            tree: None,
            _order: PhantomData,
        };
        s.resize(dests);
        s
    }

    fn resize(&mut self, dests: DestSet<'_>) {
        if dests.len() <= LINEAR_MAX {
            self.tree = None;
        } else {
            match self.tree.as_mut() {
                Some(t) => t.rebuild::<O>(dests),
                None => self.tree = Some(LoadTree::new::<O>(dests)),
            }
        }
    }
}

impl<O: LoadOrder> fmt::Debug for LeastLoaded<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = self.tree.as_ref().and_then(LoadTree::best);
        write!(
            f,
            "{}(tree={}, best={best:?})",
            O::KIND,
            self.tree.is_some()
        )
    }
}

impl<O: LoadOrder> Scheduler for LeastLoaded<O> {
    fn kind(&self) -> SchedulerKind {
        O::KIND
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, _change: DestChange) {
        self.resize(dests);
    }

    fn load_changed(&mut self, dests: DestSet<'_>, pos: usize) {
        if let Some(t) = self.tree.as_mut() {
            t.update::<O>(dests, pos);
        }
    }

    fn schedule(&mut self, dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        match &self.tree {
            Some(t) => t.best(),
            None => O::linear(dests),
        }
    }
}

/// Property tests shared by the modules of this family: random loads, random
/// single-destination changes, and the tree must equal the linear walk each time.
#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    pub fn spec() -> impl Strategy<Value = Vec<(u32, u32, u32, bool)>> {
        prop::collection::vec(
            (
                prop_oneof![Just(0u32), 1u32..4, 1u32..70_000],
                prop_oneof![Just(0u32), 0u32..5, 0u32..100_000],
                0u32..2000,
                prop::bool::weighted(0.2),
            ),
            1..(2 * LINEAR_MAX + 8),
        )
    }

    pub fn changes() -> impl Strategy<Value = Vec<(usize, u32, u32, bool)>> {
        prop::collection::vec(
            (
                0usize..(2 * LINEAR_MAX + 8),
                0u32..6,
                0u32..6,
                prop::bool::weighted(0.2),
            ),
            0..60,
        )
    }

    pub fn check<O: LoadOrder>(
        spec: Vec<(u32, u32, u32, bool)>,
        changes: Vec<(usize, u32, u32, bool)>,
    ) -> Result<(), TestCaseError> {
        let mut fx = fixture(&spec);
        let mut sched = LeastLoaded::<O>::new(fx.set());
        let mut rng = crate::sched::XorShiftRandom::new(1);
        let got = sched.schedule(fx.set(), &mut crate::sched::testutil::input(&mut rng));
        prop_assert_eq!(got, O::linear(fx.set()));
        for (pos, a, i, ov) in changes {
            let pos = pos % spec.len();
            {
                let d = fx.dest_mut(pos);
                d.active_conns = a;
                d.inactive_conns = i;
                d.overloaded = ov;
            }
            sched.load_changed(fx.set(), pos);
            let got = sched.schedule(fx.set(), &mut crate::sched::testutil::input(&mut rng));
            let want = O::linear(fx.set());
            prop_assert_eq!(got, want);
            if let Some(p) = got {
                prop_assert!(fx.set().get(p).schedulable());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod threshold {
    use super::*;
    use crate::dest::DestId;
    use crate::sched::testutil::fixture;
    use crate::sched::wlc::WeightedLeastConnectionOrder as Wlc;
    use crate::sched::XorShiftRandom;

    #[test]
    fn growing_and_shrinking_across_the_threshold_keeps_the_kernels_pick() {
        let spec: Vec<_> = (0..LINEAR_MAX as u32 + 10)
            .map(|i| (1 + i % 5, i % 7, (i * 37) % 50, i % 11 == 0))
            .collect();
        let mut fx = fixture(&spec[..LINEAR_MAX - 2]);
        let mut s = LeastLoaded::<Wlc>::new(fx.set());
        let full = fixture(&spec);
        let mut rng = XorShiftRandom::new(3);
        let mut check = |s: &mut LeastLoaded<Wlc>, fx: &crate::sched::testutil::Fixture| {
            let got = s.schedule(fx.set(), &mut crate::sched::testutil::input(&mut rng));
            assert_eq!(got, Wlc::linear(fx.set()), "at {} dests", fx.order.len());
        };
        check(&mut s, &fx);
        // Grow past the threshold one destination at a time (tree from 65 on).
        for i in LINEAR_MAX - 2..spec.len() {
            let d = full.slab[full.order[i].index()].clone();
            let id = fx.slab.insert(d);
            fx.order.insert(0, DestId(id as u32));
            s.dests_changed(fx.set(), DestChange::Added(0));
            assert_eq!(s.tree.is_some(), fx.order.len() > LINEAR_MAX);
            check(&mut s, &fx);
            fx.dest_mut(3).active_conns += 1;
            s.load_changed(fx.set(), 3);
            check(&mut s, &fx);
        }
        // And back below it.
        while fx.order.len() > LINEAR_MAX - 2 {
            let id = fx.order.remove(1);
            s.dests_changed(fx.set(), DestChange::Removed(1, id));
            assert_eq!(s.tree.is_some(), fx.order.len() > LINEAR_MAX);
            check(&mut s, &fx);
        }
    }
}
