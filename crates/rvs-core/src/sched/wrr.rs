//! wrr: weighted round robin (net/netfilter/ipvs/ip_vs_wrr.c).
//!
//! State: the current destination `cl` (or the list head), the current weight `cw`,
//! the maximum weight reduced by (gcd - 1) `mw`, and the gcd of positive weights
//! `di`. A pick continues after `cl` for the next destination, not overloaded,
//! whose weight is at least `cw`; each time the walk passes the end of the list,
//! `cw` drops by `di` and wraps to `mw` at or below zero. Any change to the list or
//! a weight resets `cl` to the head and adjusts `cw` as the kernel's
//! `ip_vs_wrr_dest_changed` does. The stopping rules (`last_pass`, `restarted`,
//! `stop`) are the kernel's, so that a service whose servers are all overloaded
//! returns `None` after at most one full round of weights.

use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};

#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Position of the current destination; `None` = the list head.
    cl: Option<usize>,
    cw: i64,
    mw: i64,
    di: i64,
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn gcd_weight(dests: DestSet<'_>) -> i64 {
    let g = dests
        .iter()
        .map(|d| i64::from(d.weight()))
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
    if g > 0 {
        g
    } else {
        1
    }
}

fn max_weight(dests: DestSet<'_>) -> i64 {
    dests
        .iter()
        .map(|d| i64::from(d.weight()))
        .max()
        .unwrap_or(0)
}

impl WeightedRoundRobin {
    pub fn new(dests: DestSet<'_>) -> Self {
        let di = gcd_weight(dests);
        let mw = max_weight(dests) - (di - 1);
        WeightedRoundRobin {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, _change: DestChange) {
        self.cl = None;
        self.di = gcd_weight(dests);
        self.mw = max_weight(dests) - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, dests: DestSet<'_>, _input: &mut SchedInput<'_>) -> Option<usize> {
        if self.mw == 0 {
            return None;
        }
        let n = dests.len();
        let last = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        // The kernel continues from `cl` on the first walk, from the head after.
        let mut from = self.cl.map_or(0, |c| c + 1);
        loop {
            for pos in from..n {
                let d = dests.get(pos);
                if !d.overloaded && i64::from(d.weight()) >= self.cw {
                    self.cl = Some(pos);
                    return Some(pos);
                }
                if stop == Some(pos) {
                    self.cl = Some(pos);
                    return None;
                }
            }
            from = 0;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{fixture, input, Fixture};
    use crate::sched::XorShiftRandom;
    use proptest::prelude::*;

    fn run(s: &mut WeightedRoundRobin, fx: &Fixture, n: usize) -> Vec<Option<usize>> {
        let mut rng = XorShiftRandom::new(1);
        (0..n)
            .map(|_| s.schedule(fx.set(), &mut input(&mut rng)))
            .collect()
    }

    #[test]
    fn weights_4_3_2() {
        // Head first: weights 4, 3, 2. The classic sequence: a a b a b c a b c.
        let fx = fixture(&[(4, 0, 0, false), (3, 0, 0, false), (2, 0, 0, false)]);
        let mut s = WeightedRoundRobin::new(fx.set());
        let got: Vec<usize> = run(&mut s, &fx, 9).into_iter().flatten().collect();
        assert_eq!(got, vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn all_overloaded_gives_none_and_recovers() {
        let mut fx = fixture(&[(2, 0, 0, true), (1, 0, 0, true)]);
        let mut s = WeightedRoundRobin::new(fx.set());
        assert_eq!(run(&mut s, &fx, 3), vec![None, None, None]);
        fx.dest_mut(1).overloaded = false;
        assert_eq!(run(&mut s, &fx, 2), vec![Some(1), Some(1)]);
    }

    #[test]
    fn all_weight_zero_gives_none() {
        let fx = fixture(&[(0, 0, 0, false), (0, 0, 0, false)]);
        let mut s = WeightedRoundRobin::new(fx.set());
        assert_eq!(run(&mut s, &fx, 2), vec![None, None]);
    }

    proptest! {
        /// Over one full cycle (sum of weights / gcd picks) each server gets
        /// exactly its weight's share, and never a weight-0 or overloaded one.
        #[test]
        fn full_cycle_gives_weight_shares(
            weights in prop::collection::vec(prop_oneof![Just(0u32), 1u32..12], 1..12),
            overloaded in prop::collection::vec(prop::bool::weighted(0.2), 12),
        ) {
            let spec: Vec<_> = weights.iter().enumerate()
                .map(|(i, &w)| (w, 0, 0, overloaded[i])).collect();
            let fx = fixture(&spec);
            let mut s = WeightedRoundRobin::new(fx.set());
            let live: Vec<u32> = spec.iter().map(|&(w, _, _, ov)| if ov { 0 } else { w }).collect();
            let g = live.iter().copied().filter(|&w| w > 0).fold(0, |g, w| if g == 0 { w } else { gcd(i64::from(g), i64::from(w)) as u32 });
            let total: u32 = live.iter().sum();
            // Warm up one cycle so the start position does not matter, then count.
            let cycle = total.checked_div(g).map_or(4, |c| c as usize);
            let _ = run(&mut s, &fx, cycle);
            let picks = run(&mut s, &fx, cycle);
            let mut counts = vec![0u32; spec.len()];
            for p in picks {
                match p {
                    Some(p) => {
                        prop_assert!(fx.set().get(p).schedulable());
                        counts[p] += 1;
                    }
                    None => prop_assert_eq!(total, 0),
                }
            }
            if total > 0 {
                // With overloaded servers skipped the cycle is not the kernel's
                // full weight cycle, so require shares only without overload.
                if overloaded.iter().take(spec.len()).all(|o| !o) {
                    for (i, &w) in live.iter().enumerate() {
                        prop_assert_eq!(counts[i], w / g);
                    }
                }
            }
        }
    }
}
