//! twos: power of two choices (net/netfilter/ipvs/ip_vs_twos.c, Kconfig
//! IP_VS_TWOS; mainline since 6.3, so not in Debian 6.1: these rules and their
//! tests come from the source alone).
//!
//! Stateless. Over the destinations that are not OVERLOADed and have weight > 0
//! ("eligible"), in list order:
//! - `total = Σ weight + 1`; then two draws, first `r1`, then `r2`, each
//!   `get_random_u32_below(total)`: the kernel's multiply-shift
//!   `(total * rand) >> 32`, where a `rand` whose low product half is below
//!   `2^32 mod total` is rejected and redrawn (see [`random_below`]); so each
//!   `r` is uniform in `0..=Σ weight`;
//! - one walk subtracting each eligible weight from both; choice 1 is the first
//!   destination at which `r1 <= 0`, choice 2 likewise for `r2` (the first
//!   eligible destination thus owns `weight + 1` values, the others `weight`);
//! - choice 2 is returned if `w2 * oh1 > w1 * oh2` with `oh` the kernel's
//!   overhead `active * 256 + inactive`, else choice 1 (so choice 1 wins ties).
//!
//! Because `r <= Σ weight`, both walks always end on an eligible destination; the
//! kernel's fallbacks for a draw that picks nothing (choice 1 preset to the last
//! eligible destination, choice 2 ignored when unset) are unreachable, and kept
//! here only as the same fallbacks. With nothing eligible no number is drawn.
//!
//! Deliberate deviation: the kernel computes `w2 * oh1` and `w1 * oh2` in 32-bit
//! `int`, which wraps once weight × overhead passes 2^31 (for example weight 10000
//! with 840 active connections). rvs compares the exact products, as the kernel
//! intends and as every other IPVS scheduler does with 64-bit products. Sums of
//! weights are exact too (the kernel's `int` sum cannot overflow with ipvsadm's
//! weights of at most 65535 unless a service has over 32768 destinations); a `total`
//! above `u32::MAX` is clamped to it.
//!
//! Beyond the kernel: the two walks are O(n); here the eligible weights live in a
//! prefix-sum tree kept current by `load_changed`/`dests_changed`, and each draw
//! is resolved in O(log n) to the same destination the walk reaches (tested
//! against [`schedule_linear`], the kernel's walk).
//!
//! Invariant: `schedule` returns only an in-range position of an eligible
//! destination.

use super::{DestSet, RandomSource, SchedInput, Scheduler, SchedulerKind};
use crate::dest::Dest;

/// The kernel's `get_random_u32_below(ceil)` for a non-constant `ceil`
/// (drivers/char/random.c `__get_random_u32_below`): Lemire's multiply-shift
/// with rejection, uniform in `0..ceil`. `ceil == 0` returns the raw draw.
pub fn random_below(rng: &mut dyn RandomSource, ceil: u32) -> u32 {
    let rand = rng.next_u32();
    if ceil == 0 {
        return rand;
    }
    let mut mult = u64::from(ceil) * u64::from(rand);
    if (mult as u32) < ceil {
        let bound = ceil.wrapping_neg() % ceil;
        while (mult as u32) < bound {
            mult = u64::from(ceil) * u64::from(rng.next_u32());
        }
    }
    (mult >> 32) as u32
}

fn eligible(d: &Dest) -> bool {
    !d.overloaded && d.weight() > 0
}

/// Prefix sums of the eligible weights by list position (a Fenwick tree), so
/// that the total and "the first destination whose running sum reaches r" cost
/// O(log n) instead of the kernel's walk of the list.
#[derive(Debug, Default)]
struct WeightSums {
    /// 1-based Fenwick array over positions.
    tree: Vec<u64>,
    /// The weight each position contributes now (0 if not eligible).
    contrib: Vec<u64>,
}

impl WeightSums {
    fn rebuild(&mut self, dests: DestSet<'_>) {
        let n = dests.len();
        self.contrib.clear();
        self.contrib.extend(dests.iter().map(|d| {
            if eligible(d) {
                u64::from(d.weight())
            } else {
                0
            }
        }));
        self.tree.clear();
        self.tree.resize(n + 1, 0);
        for i in 1..=n {
            self.tree[i] += self.contrib[i - 1];
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                self.tree[parent] += self.tree[i];
            }
        }
    }

    fn set(&mut self, pos: usize, value: u64) {
        let n = self.contrib.len();
        let Some(old) = self.contrib.get_mut(pos) else {
            return;
        };
        let old_v = std::mem::replace(old, value);
        let mut i = pos + 1;
        while i <= n {
            self.tree[i] = self.tree[i] - old_v + value;
            i += i & i.wrapping_neg();
        }
    }

    fn total(&self) -> u64 {
        let mut i = self.contrib.len();
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// The smallest position whose running sum is at least `target` (>= 1).
    fn first_reaching(&self, target: u64) -> Option<usize> {
        let n = self.contrib.len();
        let mut pos = 0;
        let mut rem = target;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] < rem {
                pos = next;
                rem -= self.tree[next];
            }
            step >>= 1;
        }
        (pos < n).then_some(pos)
    }
}

#[derive(Debug, Default)]
pub struct TwoChoices {
    sums: WeightSums,
}

impl TwoChoices {
    pub fn new(dests: DestSet<'_>) -> Self {
        let mut t = TwoChoices::default();
        t.sums.rebuild(dests);
        t
    }
}

/// The walk of the kernel: subtract each eligible weight from `r` in list order
/// and stop where it reaches 0 or below. It ends at the first eligible position
/// whose running sum reaches `max(r, 1)`.
fn walk_target(r: u32) -> u64 {
    u64::from(r.max(1))
}

impl Scheduler for TwoChoices {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Twos
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, _change: super::DestChange) {
        self.sums.rebuild(dests);
    }

    fn load_changed(&mut self, dests: DestSet<'_>, pos: usize) {
        if pos >= dests.len() || dests.len() != self.sums.contrib.len() {
            self.sums.rebuild(dests);
            return;
        }
        let d = dests.get(pos);
        let want = if eligible(d) {
            u64::from(d.weight())
        } else {
            0
        };
        if self.sums.contrib[pos] != want {
            self.sums.set(pos, want);
        }
    }

    fn schedule(&mut self, dests: DestSet<'_>, input: &mut SchedInput<'_>) -> Option<usize> {
        if dests.len() != self.sums.contrib.len() {
            self.sums.rebuild(dests);
        }
        let total = self.sums.total();
        if total == 0 {
            return None;
        }
        let ceil = u32::try_from(total + 1).unwrap_or(u32::MAX);
        let r1 = random_below(input.rng, ceil);
        let r2 = random_below(input.rng, ceil);
        let p1 = self.sums.first_reaching(walk_target(r1))?;
        let p2 = self.sums.first_reaching(walk_target(r2))?;
        let (d1, d2) = (dests.get(p1), dests.get(p2));
        let lhs = u128::from(d2.weight()) * u128::from(d1.conn_overhead());
        let rhs = u128::from(d1.weight()) * u128::from(d2.conn_overhead());
        Some(if lhs > rhs { p2 } else { p1 })
    }
}

/// The kernel's two walks over the list, exactly as ip_vs_twos.c does them; the
/// reference the tree-backed scheduler is tested against.
#[cfg(test)]
pub(crate) fn schedule_linear(dests: DestSet<'_>, rng: &mut dyn RandomSource) -> Option<usize> {
    let mut total: u64 = 0;
    let mut last = None;
    for (pos, d) in dests.iter().enumerate() {
        if eligible(d) {
            total += u64::from(d.weight());
            last = Some(pos);
        }
    }
    let last = last?;
    let ceil = u32::try_from(total + 1).unwrap_or(u32::MAX);
    let mut r1 = i64::from(random_below(rng, ceil));
    let mut r2 = i64::from(random_below(rng, ceil));
    let (mut c1, mut c2): (Option<usize>, Option<usize>) = (None, None);
    for (pos, d) in dests.iter().enumerate() {
        if !eligible(d) {
            continue;
        }
        let w = i64::from(d.weight());
        r1 -= w;
        r2 -= w;
        if r1 <= 0 && c1.is_none() {
            c1 = Some(pos);
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some(pos);
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    let (Some(p1), Some(p2)) = (c1, c2) else {
        return Some(c1.unwrap_or(last));
    };
    let (d1, d2) = (dests.get(p1), dests.get(p2));
    let lhs = u128::from(d2.weight()) * u128::from(d1.conn_overhead());
    let rhs = u128::from(d1.weight()) * u128::from(d2.conn_overhead());
    Some(if lhs > rhs { p2 } else { p1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{fixture, input, Fixture};
    use crate::sched::XorShiftRandom;
    use proptest::prelude::*;

    /// Hands out a fixed sequence and counts what was taken.
    struct Seq {
        vals: Vec<u32>,
        used: usize,
    }

    impl Seq {
        fn new(vals: &[u32]) -> Self {
            Seq {
                vals: vals.to_vec(),
                used: 0,
            }
        }
    }

    impl RandomSource for Seq {
        fn next_u32(&mut self) -> u32 {
            let v = self.vals.get(self.used).copied().unwrap_or(0);
            self.used += 1;
            v
        }
    }

    fn run(fx: &Fixture, seq: &mut Seq) -> Option<usize> {
        TwoChoices::new(fx.set()).schedule(fx.set(), &mut input(seq))
    }

    // With total = 11: (11 * 0x6000_0000) >> 32 = 4 (low half 2^29), and
    // (11 * 0xF000_0000) >> 32 = 10 (low half 0x5000_0000).
    const R4_OF_11: u32 = 0x6000_0000;
    const R10_OF_11: u32 = 0xF000_0000;

    #[test]
    fn random_below_is_multiply_shift_with_rejection() {
        let mut s = Seq::new(&[R4_OF_11, R10_OF_11]);
        assert_eq!(random_below(&mut s, 11), 4);
        assert_eq!(random_below(&mut s, 11), 10);
        assert_eq!(s.used, 2);
        // 2^32 mod 11 = 4. 780903145 * 11 = 2 * 2^32 + 3: low half 3 < 4,
        // rejected; 2733161007 * 11 = 7 * 2^32 + 5: low half 5 >= 4, kept: 7.
        let mut s = Seq::new(&[780_903_145, 2_733_161_007]);
        assert_eq!(random_below(&mut s, 11), 7);
        assert_eq!(s.used, 2);
        // Low half 0 < 4 (rand 0) is rejected too; 1 gives low half 11: kept, 0.
        let mut s = Seq::new(&[0, 1]);
        assert_eq!(random_below(&mut s, 11), 0);
        assert_eq!(s.used, 2);
        // A power of two never rejects (bound 0); ceil 1 always gives 0.
        let mut s = Seq::new(&[0, 0]);
        assert_eq!(random_below(&mut s, 8), 0);
        assert_eq!(random_below(&mut s, 1), 0);
        assert_eq!(s.used, 2);
        let mut s = Seq::new(&[u32::MAX]);
        assert_eq!(random_below(&mut s, 0), u32::MAX);
    }

    #[test]
    fn hand_worked_picks() {
        // Weights 2, 3, 5: total 11. r1 = 4: 4-2 = 2, 2-3 = -1 -> position 1.
        // r2 = 10: 8, 5, 0 -> position 2.
        let mut fx = fixture(&[(2, 0, 0, false), (3, 3, 0, false), (5, 4, 0, false)]);
        // oh1 = 768, oh2 = 1024: w2*oh1 = 3840 > w1*oh2 = 3072 -> choice 2.
        let mut s = Seq::new(&[R4_OF_11, R10_OF_11]);
        assert_eq!(run(&fx, &mut s), Some(2));
        assert_eq!(s.used, 2);
        // oh2 = 6*256 = 1536: 3840 > 4608 is false -> choice 1.
        fx.dest_mut(2).active_conns = 6;
        assert_eq!(run(&fx, &mut Seq::new(&[R4_OF_11, R10_OF_11])), Some(1));
        // r = 0 and r = 2 (= w + 0) both land on the head: it owns 3 values.
        // (11 * 0x1000_0000) >> 32 = 0; (11 * 0x3000_0000) >> 32 = 2.
        assert_eq!(
            run(&fx, &mut Seq::new(&[0x1000_0000, 0x3000_0000])),
            Some(0)
        );
    }

    #[test]
    fn draw_order_decides_ties() {
        // 768/3 == 1280/5: a tie keeps choice 1, so the order of the draws shows.
        let fx = fixture(&[(2, 0, 0, false), (3, 3, 0, false), (5, 5, 0, false)]);
        assert_eq!(run(&fx, &mut Seq::new(&[R4_OF_11, R10_OF_11])), Some(1));
        assert_eq!(run(&fx, &mut Seq::new(&[R10_OF_11, R4_OF_11])), Some(2));
        // Both draws on one server: that server.
        assert_eq!(run(&fx, &mut Seq::new(&[R4_OF_11, R4_OF_11])), Some(1));
    }

    #[test]
    fn ineligible_servers_take_no_part() {
        // Eligible: position 2 (weight 3) and 3 (weight 1); total 5.
        // (5 * 0xA000_0000) >> 32 = 3 -> 3-3 = 0: position 2.
        // (5 * 0xD000_0000) >> 32 = 4 -> 1, then 0: position 3.
        let fx = fixture(&[
            (0, 0, 0, false),
            (2, 0, 0, true),
            (3, 1, 0, false),
            (1, 0, 0, false),
        ]);
        // w2*oh1 = 1*256 > w1*oh2 = 3*0 -> choice 2.
        assert_eq!(
            run(&fx, &mut Seq::new(&[0xA000_0000, 0xD000_0000])),
            Some(3)
        );
        assert_eq!(
            run(&fx, &mut Seq::new(&[0xD000_0000, 0xA000_0000])),
            Some(3)
        );
        // Rejection in the first draw: 2^32 mod 5 = 1, rand 0 rejected.
        let mut s = Seq::new(&[0, 0xA000_0000, 0xA000_0000]);
        assert_eq!(run(&fx, &mut s), Some(2));
        assert_eq!(s.used, 3);
    }

    #[test]
    fn nothing_eligible_draws_nothing() {
        let fx = fixture(&[(0, 0, 0, false), (4, 0, 0, true)]);
        let mut s = Seq::new(&[1, 2]);
        assert_eq!(run(&fx, &mut s), None);
        assert_eq!(s.used, 0);
        assert_eq!(run(&fixture(&[]), &mut s), None);
    }

    #[test]
    fn exact_products_where_the_kernel_int_would_wrap() {
        // Head: weight 1, 45000 active (oh 11_520_000); second: weight 65535,
        // 10 active (oh 2560). Total 65537: rand 1 gives r1 = 0 (the head), rand
        // u32::MAX gives r2 = 65536 (65535 after the head, 0 at the second).
        let fx = fixture(&[(1, 45_000, 0, false), (65_535, 10, 0, false)]);
        // Exact: 65535 * 11_520_000 > 1 * 2560 -> the second, far lighter.
        assert_eq!(run(&fx, &mut Seq::new(&[1, u32::MAX])), Some(1));
        // The kernel's int product wraps negative and would keep the head.
        assert_eq!(65_535i32.wrapping_mul(11_520_000), -951_044_096);
    }

    proptest! {
        /// The prefix-sum tree picks what the kernel's walk picks, draw for
        /// draw, while loads, overload flags and weights change.
        #[test]
        fn tree_equals_the_kernels_walk(
            spec in prop::collection::vec(
                (prop_oneof![Just(0u32), 1u32..4, 1u32..70_000], 0u32..50, 0u32..500, prop::bool::weighted(0.3)),
                1..40,
            ),
            changes in prop::collection::vec((0usize..40, 0u32..50, prop::bool::weighted(0.3), 0u32..5), 0..80),
            seed in any::<u64>(),
        ) {
            let mut fx = fixture(&spec);
            let mut s = TwoChoices::new(fx.set());
            let (mut a, mut b) = (XorShiftRandom::new(seed), XorShiftRandom::new(seed));
            for (pos, active, ov, w) in changes {
                let pos = pos % spec.len();
                {
                    let d = fx.dest_mut(pos);
                    d.active_conns = active;
                    d.overloaded = ov;
                }
                if w == 0 {
                    fx.dest_mut(pos).config.weight = (active % 3) * 1000;
                    s.dests_changed(fx.set(), super::super::DestChange::Updated(pos));
                } else {
                    s.load_changed(fx.set(), pos);
                }
                let got = s.schedule(fx.set(), &mut input(&mut a));
                let want = schedule_linear(fx.set(), &mut b);
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn always_an_eligible_in_range_server(
            spec in prop::collection::vec(
                (prop_oneof![Just(0u32), 1u32..5, 1u32..65_536], 0u32..100_000, 0u32..1000, prop::bool::weighted(0.2)),
                0..40,
            ),
            seed in any::<u64>(),
            rounds in 1usize..20,
        ) {
            let fx = fixture(&spec);
            let mut rng = XorShiftRandom::new(seed);
            let any_eligible = fx.set().iter().any(eligible);
            for _ in 0..rounds {
                let got = TwoChoices::new(fx.set()).schedule(fx.set(), &mut input(&mut rng));
                prop_assert_eq!(got.is_some(), any_eligible);
                if let Some(p) = got {
                    prop_assert!(p < fx.order.len());
                    prop_assert!(fx.set().get(p).schedulable());
                }
            }
        }

        #[test]
        fn picks_the_lighter_of_the_two_weighted_draws(
            spec in prop::collection::vec((1u32..10, 0u32..10, 0u32..10), 1..8),
            a in any::<u32>(),
            b in any::<u32>(),
        ) {
            // With nothing rejected (draws chosen away from the rejection zone by
            // the check below), the pick is one of the two weighted slots.
            let fx = fixture(&spec.iter().map(|&(w, x, y)| (w, x, y, false)).collect::<Vec<_>>());
            let total: u32 = spec.iter().map(|s| s.0).sum::<u32>() + 1;
            let bound = total.wrapping_neg() % total;
            let low = |r: u32| (u64::from(total) * u64::from(r)) as u32;
            prop_assume!(low(a) >= bound && low(b) >= bound);
            let slot = |r: u32| {
                let mut x = i64::from(((u64::from(total) * u64::from(r)) >> 32) as u32);
                spec.iter().position(|s| { x -= i64::from(s.0); x <= 0 }).unwrap_or(spec.len() - 1)
            };
            let (p1, p2) = (slot(a), slot(b));
            let got = run(&fx, &mut Seq::new(&[a, b]));
            let d1 = fx.set().get(p1);
            let d2 = fx.set().get(p2);
            let want = if u128::from(d2.weight()) * u128::from(d1.conn_overhead())
                > u128::from(d1.weight()) * u128::from(d2.conn_overhead()) { p2 } else { p1 };
            prop_assert_eq!(got, Some(want));
        }
    }
}
