//! nq: never queue (net/netfilter/ipvs/ip_vs_nq.c). The first destination in list
//! order with no active connection is taken at once; otherwise it behaves as sed,
//! minimising (active + 1) / weight.

use super::load_tree::weighted_less;
use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;
/// The order of this scheduler; see the module note.
pub struct NeverQueueOrder;

impl LoadOrder for NeverQueueOrder {
    const KIND: SchedulerKind = SchedulerKind::Nq;

    fn better(a: &Dest, b: &Dest) -> bool {
        match (a.active_conns == 0, b.active_conns == 0) {
            (true, false) => true,
            (false, true) | (true, true) => false,
            (false, false) => weighted_less(
                u64::from(a.active_conns) + 1,
                a.weight(),
                u64::from(b.active_conns) + 1,
                b.weight(),
            ),
        }
    }
}

pub type NeverQueue = LeastLoaded<NeverQueueOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<NeverQueueOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        // An idle server wins even against a much heavier weight.
        let fx = fixture(&[(100, 1, 0, false), (1, 0, 9, false), (1, 0, 0, false)]);
        assert_eq!(NeverQueueOrder::linear(fx.set()), Some(1));
        // No idle server: sed rule.
        let busy = fixture(&[(1, 1, 0, false), (4, 3, 0, false)]);
        assert_eq!(NeverQueueOrder::linear(busy.set()), Some(1));
    }
}
