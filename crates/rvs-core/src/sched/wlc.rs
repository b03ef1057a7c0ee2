//! wlc: weighted least connections, the default (net/netfilter/ipvs/ip_vs_wlc.c).
//! Minimises overhead/weight with overhead = active*256 + inactive, compared without
//! division (`loh * dw > doh * lw`); the first in list order wins a tie.

use super::load_tree::weighted_less;
use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;
/// The order of this scheduler; see the module note.
pub struct WeightedLeastConnectionOrder;

impl LoadOrder for WeightedLeastConnectionOrder {
    const KIND: SchedulerKind = SchedulerKind::Wlc;

    fn better(a: &Dest, b: &Dest) -> bool {
        weighted_less(a.conn_overhead(), a.weight(), b.conn_overhead(), b.weight())
    }
}

pub type WeightedLeastConnection = LeastLoaded<WeightedLeastConnectionOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<WeightedLeastConnectionOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        // 256/1 vs 300/2: the second is less loaded per weight.
        let fx = fixture(&[(1, 1, 0, false), (2, 1, 44, false)]);
        assert_eq!(WeightedLeastConnectionOrder::linear(fx.set()), Some(1));
        // 256/1 == 512/2: tie keeps the head.
        let tie = fixture(&[(1, 1, 0, false), (2, 2, 0, false)]);
        assert_eq!(WeightedLeastConnectionOrder::linear(tie.set()), Some(0));
        let none = fixture(&[(0, 0, 0, false), (3, 0, 0, true)]);
        assert_eq!(WeightedLeastConnectionOrder::linear(none.set()), None);
    }
}
