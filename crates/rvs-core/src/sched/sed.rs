//! sed: shortest expected delay (net/netfilter/ipvs/ip_vs_sed.c). Minimises
//! (active + 1) / weight, compared without division; inactive connections do not
//! count; the first in list order wins a tie.

use super::load_tree::weighted_less;
use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;
/// The order of this scheduler; see the module note.
pub struct ShortestExpectedDelayOrder;

impl LoadOrder for ShortestExpectedDelayOrder {
    const KIND: SchedulerKind = SchedulerKind::Sed;

    fn better(a: &Dest, b: &Dest) -> bool {
        weighted_less(
            u64::from(a.active_conns) + 1,
            a.weight(),
            u64::from(b.active_conns) + 1,
            b.weight(),
        )
    }
}

pub type ShortestExpectedDelay = LeastLoaded<ShortestExpectedDelayOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<ShortestExpectedDelayOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        // (0+1)/1 vs (2+1)/4: the second.
        let fx = fixture(&[(1, 0, 50, false), (4, 2, 0, false)]);
        assert_eq!(ShortestExpectedDelayOrder::linear(fx.set()), Some(1));
        // 1/1 vs 2/2: tie keeps the head.
        let tie = fixture(&[(1, 0, 0, false), (2, 1, 0, false)]);
        assert_eq!(ShortestExpectedDelayOrder::linear(tie.set()), Some(0));
    }
}
