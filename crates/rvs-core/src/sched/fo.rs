//! fo: weighted failover (net/netfilter/ipvs/ip_vs_fo.c). The available
//! destination with the highest weight; the first in list order wins a tie.

use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;

/// The order of this scheduler; see the module note.
pub struct WeightedFailoverOrder;

impl LoadOrder for WeightedFailoverOrder {
    const KIND: SchedulerKind = SchedulerKind::Fo;

    fn better(a: &Dest, b: &Dest) -> bool {
        a.weight() > b.weight()
    }
}

pub type WeightedFailover = LeastLoaded<WeightedFailoverOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<WeightedFailoverOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        let fx = fixture(&[
            (3, 0, 0, false),
            (5, 9, 9, false),
            (5, 0, 0, false),
            (9, 0, 0, true),
        ]);
        assert_eq!(WeightedFailoverOrder::linear(fx.set()), Some(1));
    }
}
