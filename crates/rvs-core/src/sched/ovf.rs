//! ovf: weighted overflow (net/netfilter/ipvs/ip_vs_ovf.c). The destination with the
//! highest weight among those not overloaded, with weight > 0 and no more active
//! connections than their weight; the first in list order wins a tie. Only active
//! connections count, so it does not suit UDP.

use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;

/// The order of this scheduler; see the module note.
pub struct WeightedOverflowOrder;

impl LoadOrder for WeightedOverflowOrder {
    const KIND: SchedulerKind = SchedulerKind::Ovf;

    fn eligible(d: &Dest) -> bool {
        d.schedulable() && d.active_conns <= d.weight()
    }

    fn better(a: &Dest, b: &Dest) -> bool {
        a.weight() > b.weight()
    }
}

pub type WeightedOverflow = LeastLoaded<WeightedOverflowOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<WeightedOverflowOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        // The heaviest is full (3 active > weight 2 is not; 5 > 4 is), next heaviest wins.
        let fx = fixture(&[(4, 5, 0, false), (2, 2, 100, false), (3, 0, 0, true)]);
        assert_eq!(WeightedOverflowOrder::linear(fx.set()), Some(1));
    }
}
