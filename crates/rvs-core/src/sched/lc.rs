//! lc: least connections (net/netfilter/ipvs/ip_vs_lc.c). The pick is the
//! destination with the smallest overhead active*256 + inactive among those not
//! overloaded and with weight > 0; the first in list order wins a tie.

use super::load_tree::{LeastLoaded, LoadOrder};
use super::SchedulerKind;
use crate::dest::Dest;

/// The order of this scheduler; see the module note.
pub struct LeastConnectionOrder;

impl LoadOrder for LeastConnectionOrder {
    const KIND: SchedulerKind = SchedulerKind::Lc;

    fn better(a: &Dest, b: &Dest) -> bool {
        a.conn_overhead() < b.conn_overhead()
    }
}

pub type LeastConnection = LeastLoaded<LeastConnectionOrder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load_tree::proptests;
    use crate::sched::testutil::fixture;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_equals_kernel_walk(spec in proptests::spec(), changes in proptests::changes()) {
            proptests::check::<LeastConnectionOrder>(spec, changes)?;
        }
    }

    #[test]
    fn examples() {
        // (weight, active, inactive, overloaded), head first.
        let fx = fixture(&[
            (1, 1, 0, false),
            (5, 0, 255, false),
            (0, 0, 0, false),
            (1, 0, 300, true),
        ]);
        assert_eq!(LeastConnectionOrder::linear(fx.set()), Some(1));
        let tie = fixture(&[(1, 0, 3, false), (9, 0, 3, false)]);
        assert_eq!(LeastConnectionOrder::linear(tie.set()), Some(0));
    }
}
