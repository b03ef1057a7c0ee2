//! dh: destination hashing (net/netfilter/ipvs/ip_vs_dh.c). This module owns the
//! bucket table of one service and the lookup into it; [`build_table`] and
//! [`lookup`] are pure and public so that the XDP data plane can copy the table
//! into a BPF map and agree with this scheduler bit for bit.
//!
//! **Table.** 256 buckets (`IP_VS_DH_TAB_BITS` = 8, not configurable). Unlike sh,
//! dh ignores weights when dealing buckets: bucket `b` holds list position
//! `b mod n` (position 0 = the head = the destination added last), and an empty list
//! leaves every bucket empty. The kernel rebuilds the table on add and delete only
//! (dh has no `upd_dest` callback); since the table does not depend on weights,
//! rebuilding on every [`DestChange`] as done here gives the same table.
//!
//! **Lookup.** The bucket is `hash_32(fold(daddr), 8)`, with IPv6 addresses folded
//! to the XOR of their four 32-bit words. The destination there is refused (`None`,
//! there is no fallback in dh) if it is no longer available, has weight 0 or is
//! overloaded. Flags are ignored.
//!
//! **What survives a change.** dh is not a consistent hash: adding or deleting a
//! destination changes `n` and so re-deals almost every bucket. Weight changes
//! (including quiescing to 0) and overload changes leave the table as it is, so only
//! the keys whose bucket holds that destination are affected.
//!
//! **Kernel versions.** 5.10/5.15-era and current mainline sources agree, so 6.1
//! does too (`hash_32` keying; 4.4-era kernels used `(addr * 2654435761) & 255`).

use std::net::IpAddr;

use super::hash::{fold_addr, hash_32};
use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};

/// `IP_VS_DH_TAB_BITS`.
pub const TAB_BITS: u32 = 8;
/// `IP_VS_DH_TAB_SIZE`.
pub const TAB_SIZE: usize = 1 << TAB_BITS;

/// The kernel's bucket table for `dests`: bucket `b` holds list position `b % n`,
/// or `None` when the list is empty.
pub fn build_table(dests: DestSet<'_>) -> Vec<Option<u32>> {
    let n = dests.len();
    if n == 0 {
        return vec![None; TAB_SIZE];
    }
    (0..TAB_SIZE).map(|b| u32::try_from(b % n).ok()).collect()
}

/// The bucket of a destination address.
pub fn bucket(daddr: IpAddr) -> usize {
    hash_32(fold_addr(daddr), TAB_BITS) as usize
}

/// Looks `daddr` up in `table` (as built by [`build_table`]). `usable` says
/// whether the destination at a list position may be picked (available, weight > 0,
/// not overloaded). Returns the list position picked.
pub fn lookup(table: &[Option<u32>], daddr: IpAddr, usable: impl Fn(u32) -> bool) -> Option<u32> {
    let pos = (*table.get(bucket(daddr))?)?;
    usable(pos).then_some(pos)
}

/// The dh scheduler of one service.
#[derive(Debug)]
pub struct DestinationHashing {
    table: Vec<Option<u32>>,
}

impl DestinationHashing {
    pub fn new(dests: DestSet<'_>) -> Self {
        DestinationHashing {
            table: build_table(dests),
        }
    }

    /// The current bucket table (list positions).
    pub fn table(&self) -> &[Option<u32>] {
        &self.table
    }
}

fn usable_at(dests: DestSet<'_>, pos: u32) -> bool {
    let pos = pos as usize;
    if pos >= dests.len() {
        return false;
    }
    let d = dests.get(pos);
    d.available && d.schedulable()
}

impl Scheduler for DestinationHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Dh
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, _change: DestChange) {
        self.table = build_table(dests);
    }

    fn schedule(&mut self, dests: DestSet<'_>, input: &mut SchedInput<'_>) -> Option<usize> {
        lookup(&self.table, input.daddr, |p| usable_at(dests, p)).map(|p| p as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::hash::testfx::{self, Spec};
    use crate::sched::testutil::{fixture, input};
    use crate::sched::XorShiftRandom;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(0, 0, 0, d))
    }

    #[test]
    fn population_ignores_weights() {
        let fx = fixture(&[(5, 0, 0, false), (0, 0, 0, false), (1, 0, 0, false)]);
        let t = build_table(fx.set());
        assert_eq!(t.len(), 256);
        assert_eq!(&t[..7], &[0, 1, 2, 0, 1, 2, 0].map(Some));
        assert_eq!(t[255], Some(0)); // 255 = 3 * 85
        assert_eq!(build_table(fixture(&[]).set()), vec![None; 256]);
    }

    #[test]
    fn lookup_by_hand() {
        // Three servers: bucket b -> b % 3. hash_32(1, 8) = 97 -> 1,
        // hash_32(2, 8) = 195 -> 0, hash_32(3, 8) = 37 -> 1, hash_32(5, 8) = 232 -> 1.
        let fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)]);
        let t = build_table(fx.set());
        let all = |_| true;
        assert_eq!(lookup(&t, v4(1), all), Some(1));
        assert_eq!(lookup(&t, v4(2), all), Some(0));
        assert_eq!(lookup(&t, v4(3), all), Some(1));
        assert_eq!(lookup(&t, v4(5), all), Some(1));
        // ::1:0:1:2 has the words 0, 0, 0x10000, 0x10002, which fold to 2.
        let a: Ipv6Addr = "::1:0:1:2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(bucket(IpAddr::V6(a)), 195);
        assert_eq!(lookup(&t, IpAddr::V6(a), all), Some(0));
    }

    #[test]
    fn scheduler_refuses_unavailable_weight_zero_and_overloaded() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = DestinationHashing::new(fx.set());
        let mut rng = XorShiftRandom::new(1);
        let mut inp = input(&mut rng);
        inp.daddr = v4(2);
        inp.flags.flag1 = true; // no fallback in dh: flags are ignored
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(0));
        fx.dest_mut(0).overloaded = true;
        assert_eq!(s.schedule(fx.set(), &mut inp), None);
        fx.dest_mut(0).overloaded = false;
        fx.dest_mut(0).config.weight = 0;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        assert_eq!(s.schedule(fx.set(), &mut inp), None);
        fx.dest_mut(0).config.weight = 1;
        fx.dest_mut(0).available = false;
        assert_eq!(s.schedule(fx.set(), &mut inp), None);
        // Same destination address, other source: same pick.
        fx.dest_mut(0).available = true;
        inp.saddr = v4(99);
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(0));
    }

    proptest! {
        /// No pick is refused by the kernel's test; weight and overload changes
        /// leave the table alone, so only keys on the changed server move.
        #[test]
        fn picks_are_usable_and_weight_changes_move_only_that_server(
            w in prop::collection::vec(prop_oneof![Just(0u32), 1u32..10], 1..12),
            overloaded in prop::collection::vec(prop::bool::weighted(0.3), 12),
            victim_seed in any::<usize>(),
            new_w in 0u32..10,
            addrs in prop::collection::vec(any::<u32>(), 128),
        ) {
            let spec: Vec<Spec> = w.iter().enumerate()
                .map(|(i, &x)| Spec { overloaded: overloaded[i], ..Spec::new(i as u16, x) })
                .collect();
            let mut fx = testfx::build(&spec);
            let mut s = DestinationHashing::new(fx.set());
            let mut rng = XorShiftRandom::new(7);
            let mut pick = |s: &mut DestinationHashing, fx: &crate::sched::testutil::Fixture, a: u32| {
                let mut inp = input(&mut rng);
                inp.daddr = IpAddr::V4(Ipv4Addr::from(a));
                s.schedule(fx.set(), &mut inp)
            };
            let before: Vec<_> = addrs.iter().map(|&a| pick(&mut s, &fx, a)).collect();
            for p in before.iter().flatten() {
                prop_assert!(fx.set().get(*p).schedulable());
            }
            let table_before = s.table().to_vec();
            let victim = victim_seed % w.len();
            fx.dest_mut(victim).config.weight = new_w;
            s.dests_changed(fx.set(), DestChange::Updated(victim));
            prop_assert_eq!(s.table(), &table_before[..]);
            for (i, &a) in addrs.iter().enumerate() {
                let now = pick(&mut s, &fx, a);
                if table_before[bucket(IpAddr::V4(Ipv4Addr::from(a)))] != Some(victim as u32) {
                    prop_assert_eq!(now, before[i]);
                }
            }
        }
    }
}
