//! sh: source hashing (net/netfilter/ipvs/ip_vs_sh.c). This module owns the
//! bucket table of one service and the lookup into it; the table is public and
//! pure ([`build_table`], [`lookup`]) so that the XDP data plane can copy it into a
//! BPF map and agree with this scheduler bit for bit.
//!
//! **Table.** `2^bits` buckets (`CONFIG_IP_VS_SH_TAB_BITS`, 4..=20, 8 by default),
//! each holding a destination's list position or nothing. Walking the list from
//! the head (the destination added last) and wrapping round it, each destination
//! fills `max(weight, 1)` consecutive buckets: a destination of weight 0 still gets
//! one bucket per round (it is refused at lookup). If the weights add up to more
//! than the table, the destinations nearest the tail get no bucket. An empty list
//! leaves every bucket empty. The current `weight` is used (not `last_weight`), and
//! the kernel rebuilds the table on add, delete and edit, as [`Scheduler::dests_changed`]
//! does here. Overload is not part of the table; it is checked at lookup.
//!
//! **Lookup.** The key is `fold(saddr) + port` (wrapping), `port` being the source
//! port of TCP, UDP and SCTP packets when `sh-port` (flag-2) is set and 0 otherwise;
//! the first bucket is `h = hash_32(key, bits)`. A bucket whose destination has
//! weight 0 or is overloaded gives `None`. With `sh-fallback` (flag-1) the kernel
//! then probes the buckets `(2h + i) mod size` for `i = 0, 1, .., size - 1` (its
//! probe offset is added to `h` twice) and takes the first usable destination, so
//! the fallback finds a destination exactly when some bucket holds a usable one.
//!
//! **What survives a change.** sh is not a consistent hash. The table is a prefix of
//! the periodic sequence of per-destination blocks, so a change to the destination
//! at list position `p` (its weight, or its removal) keeps the first
//! `sum(max(weight_i, 1) for i < p)` buckets and in general re-deals all later ones;
//! adding a destination (always at the head) re-deals the whole table. A weight
//! change that keeps `max(weight, 1)` (0 <-> 1, e.g. quiescing a weight-1 server)
//! leaves the table unchanged, and overload changes never touch it: then only the
//! keys whose bucket holds the changed server are affected (they get `None`, or
//! with fallback another server).
//!
//! **Kernel versions.** The hash_32 keying and the port and fallback flags date
//! from Linux 3.11 and current mainline is unchanged, so Debian's 6.1 behaves as
//! implemented here; only older kernels used `(addr * 2654435761) & mask`. ICMP
//! errors (inverse lookups) are oriented by the caller.

use std::net::IpAddr;

use super::hash::{fold_addr, hash_32, l4_source_port};
use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};

/// `CONFIG_IP_VS_SH_TAB_BITS` default.
pub const DEFAULT_TAB_BITS: u32 = 8;
/// Kconfig range of `CONFIG_IP_VS_SH_TAB_BITS`.
pub const MIN_TAB_BITS: u32 = 4;
pub const MAX_TAB_BITS: u32 = 20;

/// The table size exponent actually used: `bits` clamped to the Kconfig range
/// (`SchedParams::validate` rejects values outside it).
pub fn table_bits(bits: u32) -> u32 {
    bits.clamp(MIN_TAB_BITS, MAX_TAB_BITS)
}

/// The kernel's bucket table for `dests`: `2^table_bits(bits)` entries, each a
/// list position (0 = head) or `None` when the list is empty.
pub fn build_table(dests: DestSet<'_>, bits: u32) -> Vec<Option<u32>> {
    let size = 1usize << table_bits(bits);
    let n = dests.len();
    if n == 0 {
        return vec![None; size];
    }
    let mut table = Vec::with_capacity(size);
    let mut pos = 0usize;
    let mut filled_for_pos = 0u32;
    while table.len() < size {
        table.push(u32::try_from(pos).ok());
        filled_for_pos += 1;
        // A weight of 0 behaves as 1: the count is already 1 >= 0.
        if filled_for_pos >= dests.get(pos).weight() {
            filled_for_pos = 0;
            pos = (pos + 1) % n;
        }
    }
    table
}

/// The value sh hashes: the folded address plus the port (0 without `sh-port`).
pub fn hash_key(addr: IpAddr, port: u16) -> u32 {
    u32::from(port).wrapping_add(fold_addr(addr))
}

/// Looks `key` up in `table` (as built by [`build_table`]; its length must be a
/// power of two, else `None`). `usable` says whether the destination at a list
/// position may be picked (weight > 0 and not overloaded). Returns the list
/// position picked.
pub fn lookup(
    table: &[Option<u32>],
    key: u32,
    fallback: bool,
    usable: impl Fn(u32) -> bool,
) -> Option<u32> {
    let size = table.len();
    if !size.is_power_of_two() {
        return None;
    }
    let mask = size - 1;
    let h = hash_32(key, size.trailing_zeros()) as usize;
    let first = table[h & mask]?;
    if usable(first) {
        return Some(first);
    }
    if !fallback {
        return None;
    }
    for i in 0..size {
        let probe_offset = (i + h) % size;
        // An empty bucket means an empty table: the kernel stops there.
        let pos = table[(probe_offset + h) & mask]?;
        if usable(pos) {
            return Some(pos);
        }
    }
    None
}

/// The sh scheduler of one service.
#[derive(Debug)]
pub struct SourceHashing {
    bits: u32,
    table: Vec<Option<u32>>,
}

impl SourceHashing {
    pub fn new(dests: DestSet<'_>, bits: u32) -> Self {
        let bits = table_bits(bits);
        SourceHashing {
            bits,
            table: build_table(dests, bits),
        }
    }

    /// The current bucket table (list positions).
    pub fn table(&self) -> &[Option<u32>] {
        &self.table
    }
}

fn usable_at(dests: DestSet<'_>, pos: u32) -> bool {
    let pos = pos as usize;
    pos < dests.len() && dests.get(pos).schedulable()
}

impl Scheduler for SourceHashing {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sh
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, _change: DestChange) {
        self.table = build_table(dests, self.bits);
    }

    fn schedule(&mut self, dests: DestSet<'_>, input: &mut SchedInput<'_>) -> Option<usize> {
        let port = if input.flags.flag2 {
            l4_source_port(input.proto, input.sport)
        } else {
            0
        };
        let key = hash_key(input.saddr, port);
        lookup(&self.table, key, input.flags.flag1, |p| usable_at(dests, p)).map(|p| p as usize)
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

    fn positions(table: &[Option<u32>]) -> Vec<u32> {
        table.iter().map(|e| e.unwrap_or(u32::MAX)).collect()
    }

    #[test]
    fn population_by_weight_with_weight_zero_taking_one_bucket() {
        // Head first: weights 3, 0, 2 in 16 buckets. Blocks 0 0 0 | 1 | 2 2 repeat.
        let fx = fixture(&[(3, 0, 0, false), (0, 0, 0, false), (2, 0, 0, false)]);
        let t = build_table(fx.set(), 4);
        assert_eq!(
            positions(&t),
            vec![0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 2, 2, 0, 0, 0, 1]
        );
    }

    #[test]
    fn heavy_head_starves_the_tail_and_empty_list_is_empty() {
        let fx = fixture(&[(20, 0, 0, false), (1, 0, 0, false)]);
        assert_eq!(positions(&build_table(fx.set(), 4)), vec![0; 16]);
        let empty = fixture(&[]);
        assert_eq!(build_table(empty.set(), 4), vec![None; 16]);
        assert_eq!(build_table(empty.set(), 8).len(), 256);
    }

    #[test]
    fn bits_are_clamped_to_kconfig_range() {
        let fx = fixture(&[(1, 0, 0, false)]);
        assert_eq!(build_table(fx.set(), 0).len(), 16);
        assert_eq!(build_table(fx.set(), 40).len(), 1 << 20);
    }

    #[test]
    fn lookup_by_hand() {
        // Two servers of weight 1 in 256 buckets: bucket b holds position b % 2.
        let fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let t = build_table(fx.set(), 8);
        let all = |_| true;
        // hash_32(1, 8) = 97 -> position 1; hash_32(5, 8) = 232 -> position 0.
        assert_eq!(lookup(&t, hash_key(v4(1), 0), false, all), Some(1));
        assert_eq!(lookup(&t, hash_key(v4(5), 0), false, all), Some(0));
        // With the port: 0.0.0.1 + port 4 = key 5 -> bucket 232.
        assert_eq!(lookup(&t, hash_key(v4(1), 4), false, all), Some(0));
        // IPv6 folds to the XOR of its words: ::5 -> 5, and 1::1:4 -> 0x10000 ^ 0x10004.
        let a: Ipv6Addr = "1::1:4".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(hash_key(IpAddr::V6(a), 1), 5);
        assert_eq!(lookup(&t, hash_key(IpAddr::V6(a), 1), false, all), Some(0));
    }

    #[test]
    fn fallback_probe_order_by_hand() {
        // Weights 3, 0, 2 in 16 buckets (see above); 0.0.0.1 hashes to bucket
        // hash_32(1, 4) = 6, which holds position 0. With position 0 unusable the
        // probe visits (12 + i) mod 16: 12 13 14 -> 0, 15 -> 1 (weight 0),
        // 0 1 2 -> 0, 3 -> 1, 4 -> 2.
        let fx = fixture(&[(3, 0, 0, true), (0, 0, 0, false), (2, 0, 0, false)]);
        let t = build_table(fx.set(), 4);
        let key = hash_key(v4(1), 0);
        let usable = |p: u32| fx.set().get(p as usize).schedulable();
        assert_eq!(lookup(&t, key, false, usable), None);
        assert_eq!(lookup(&t, key, true, usable), Some(2));
        // Nothing usable at all: the probe gives up.
        assert_eq!(lookup(&t, key, true, |_| false), None);
        // An empty table gives None with or without fallback.
        assert_eq!(lookup(&[None; 16], key, true, |_| true), None);
    }

    #[test]
    fn scheduler_uses_saddr_flags_and_protocol() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = SourceHashing::new(fx.set(), 8);
        let mut rng = XorShiftRandom::new(1);
        let mut inp = input(&mut rng);
        inp.saddr = v4(1);
        inp.sport = 4;
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(1));
        inp.flags.flag2 = true; // sh-port: key 1 + 4 = 5 -> position 0
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(0));
        inp.proto = 1; // ICMP has no port
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(1));
        // Overload is checked at lookup, without a rebuild.
        fx.dest_mut(1).overloaded = true;
        assert_eq!(s.schedule(fx.set(), &mut inp), None);
        inp.flags.flag1 = true; // sh-fallback
        assert_eq!(s.schedule(fx.set(), &mut inp), Some(0));
        // A weight change is seen after the rebuild the kernel does on upd_dest.
        fx.dest_mut(1).overloaded = false;
        fx.dest_mut(0).config.weight = 2;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        assert_eq!(&positions(s.table())[..6], &[0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn rebuild_on_remove_and_empty_service() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = SourceHashing::new(fx.set(), 8);
        let gone = fx.order[0];
        let empty = fixture(&[]);
        s.dests_changed(empty.set(), DestChange::Removed(0, gone));
        let mut rng = XorShiftRandom::new(1);
        let mut inp = input(&mut rng);
        inp.flags.flag1 = true;
        assert_eq!(s.schedule(empty.set(), &mut inp), None);
    }

    fn weights() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(prop_oneof![Just(0u32), 1u32..6, 6u32..40], 1..12)
    }

    fn specs(weights: &[u32], overloaded: &[bool]) -> Vec<Spec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Spec {
                overloaded: overloaded[i],
                ..Spec::new(i as u16, w)
            })
            .collect()
    }

    proptest! {
        /// No pick is overloaded or of weight 0, and sh-fallback returns a
        /// destination exactly when some bucket holds a usable one.
        #[test]
        fn picks_are_usable_and_fallback_is_exhaustive(
            w in weights(),
            overloaded in prop::collection::vec(prop::bool::weighted(0.4), 12),
            bits in 4u32..9,
            keys in prop::collection::vec(any::<u32>(), 64),
        ) {
            let fx = testfx::build(&specs(&w, &overloaded));
            let set = fx.set();
            let t = build_table(set, bits);
            let usable = |p: u32| set.get(p as usize).schedulable();
            let any_usable_bucket = t.iter().flatten().any(|&p| usable(p));
            for &k in &keys {
                for fallback in [false, true] {
                    match lookup(&t, k, fallback, usable) {
                        Some(p) => prop_assert!(usable(p)),
                        None => prop_assert!(!fallback || !any_usable_bucket),
                    }
                }
                if fallback_is_noop(&t, k, usable) {
                    prop_assert_eq!(lookup(&t, k, true, usable), lookup(&t, k, false, usable));
                }
            }
        }

        /// Changing the weight of, or removing, the destination at position p keeps
        /// the buckets dealt before p's first block; keeping max(weight, 1) keeps
        /// the whole table.
        #[test]
        fn change_at_p_keeps_the_prefix_before_p(
            w in weights(),
            p_seed in any::<usize>(),
            new_w in prop_oneof![Just(0u32), 1u32..6, 6u32..40],
            remove in any::<bool>(),
            bits in 4u32..9,
        ) {
            let none = vec![false; w.len()];
            let before = build_table(testfx::build(&specs(&w, &none)).set(), bits);
            let p = p_seed % w.len();
            let mut w2 = w.clone();
            if remove { w2.remove(p); } else { w2[p] = new_w; }
            let after_fx = testfx::build(&specs(&w2, &none));
            let after = build_table(after_fx.set(), bits);
            let prefix: usize = w[..p].iter().map(|&x| x.max(1) as usize).sum();
            let prefix = prefix.min(before.len());
            prop_assert_eq!(&before[..prefix], &after[..prefix]);
            if !remove && new_w.max(1) == w[p].max(1) {
                prop_assert_eq!(&before, &after);
            }
        }

        /// Overload toggles never touch the scheduler's table, and only keys whose
        /// bucket holds the overloaded server change their pick (to None without
        /// fallback).
        #[test]
        fn overload_moves_only_that_servers_keys(
            w in prop::collection::vec(1u32..6, 2..10),
            victim_seed in any::<usize>(),
            keys in prop::collection::vec(any::<u32>(), 128),
        ) {
            let none = vec![false; w.len()];
            let mut fx = testfx::build(&specs(&w, &none));
            let s = SourceHashing::new(fx.set(), 8);
            let victim = victim_seed % w.len();
            let before: Vec<_> = keys.iter()
                .map(|&k| lookup(s.table(), k, false, |p| usable_at(fx.set(), p))).collect();
            fx.dest_mut(victim).overloaded = true;
            for (i, &k) in keys.iter().enumerate() {
                let now = lookup(s.table(), k, false, |p| usable_at(fx.set(), p));
                if before[i] == Some(victim as u32) {
                    prop_assert_eq!(now, None);
                } else {
                    prop_assert_eq!(now, before[i]);
                }
            }
        }
    }

    /// Whether the first bucket of `k` is usable (fallback then changes nothing).
    fn fallback_is_noop(t: &[Option<u32>], k: u32, usable: impl Fn(u32) -> bool) -> bool {
        let h = hash_32(k, t.len().trailing_zeros()) as usize;
        t[h].is_some_and(usable)
    }
}
