//! lblcr: locality-based least connection with replication
//! (net/netfilter/ipvs/ip_vs_lblcr.c).
//!
//! What lblcr owns: a table mapping a packet's destination address to a *set* of
//! servers, each set with the time it last changed (`lastmod`); the table, its
//! buckets, hash and garbage collection are lblc's ([`LocalityTable`], same
//! constants, `lblcr_expiration` default 24 h), except that the entry count is
//! exact here (the kernel's lblcr never replaces an entry).
//!
//! A lookup refreshes the entry's `lastuse`, then:
//! - picks the set's weighted least-connection member: walking the set newest
//!   member first, the first that is not OVERLOADed, has weight > 0 and is
//!   available; then any later member that is not OVERLOADed, is available and is
//!   strictly lighter (`loh * dw > doh * lw`, which a weight-0 member never is);
//! - if the set has more than one member and `now > lastmod + expiration`, removes
//!   its weighted most-loaded member (first member with weight > 0, replaced by a
//!   later one with weight > 0 and `moh * dw < doh * mw`; OVERLOAD and
//!   availability are not looked at), which sets `lastmod`. This happens after the
//!   pick, so the member just picked may be the one removed and is still returned;
//! - returns the pick unless there is none or it is overloaded in lblc's sense
//!   (`activeconns > weight` while some destination of the service is under half
//!   load); then it takes the service-wide wlc pick and adds it to the set if
//!   absent (as the newest member, setting `lastmod`).
//!
//! With no entry, the wlc pick starts a new entry whose set is that server.
//!
//! Removed destinations: the kernel's set members hold references, and a deleted
//! server stays in its sets, unavailable (never picked, still counted in the set's
//! size, and still a candidate for the shrink rule). Here a removed destination's
//! [`DestId`] may be reused, so `DestChange::Removed(_, id)` removes `id` from
//! every set, leaving `lastmod` alone. A set may become empty; its next lookup
//! then falls back to wlc and adds the result, as the kernel does when no member
//! is usable. Differences from the kernel follow only when a removed server would
//! have counted towards `|set| > 1` or been chosen for removal.
//!
//! Invariants: every set holds distinct ids, newest first; `schedule` returns only
//! an in-range position of a destination with weight > 0 and not OVERLOADed (the
//! set pick requires both, the fallback is wlc's).

use std::net::IpAddr;

use super::lblc::{CacheEntry, LocalityTable, ServiceView};
use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};
use crate::dest::DestId;
use crate::time::{Span, Time};

/// Default `lblcr_expiration` (`DEFAULT_EXPIRATION`).
pub const DEFAULT_EXPIRATION: Span = Span::from_secs(24 * 60 * 60);

/// One lblcr entry: a destination address and its server set.
#[derive(Clone, Debug)]
struct Entry {
    addr: IpAddr,
    /// Members, newest first (the kernel adds at the head of its list).
    set: Vec<DestId>,
    lastmod: Time,
    lastuse: Time,
}

impl CacheEntry for Entry {
    fn addr(&self) -> IpAddr {
        self.addr
    }
    fn last_use(&self) -> Time {
        self.lastuse
    }
}

impl Entry {
    /// `ip_vs_dest_set_insert` with its duplicate check.
    fn insert(&mut self, id: DestId, now: Time) {
        if !self.set.contains(&id) {
            self.set.insert(0, id);
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_erase`.
    fn erase(&mut self, id: DestId, now: Time) {
        if let Some(i) = self.set.iter().position(|&m| m == id) {
            self.set.remove(i);
            self.lastmod = now;
        }
    }
}

/// `loh * dw > doh * lw` in 128 bits: `(doh, dw)` is strictly lighter per weight.
fn lighter(doh: u64, dw: u32, loh: u64, lw: u32) -> bool {
    u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
}

/// `ip_vs_dest_set_min`: the set's weighted least-connection member's position.
fn set_min(set: &[DestId], dests: DestSet<'_>, view: &ServiceView) -> Option<usize> {
    let mut least: Option<usize> = None;
    for &id in set {
        // A member not in the list is the kernel's unavailable (trashed) server.
        let Some(pos) = view.position(dests, id) else {
            continue;
        };
        let d = dests.get(pos);
        if d.overloaded || !d.available {
            continue;
        }
        match least {
            None if d.weight() > 0 => least = Some(pos),
            None => {}
            Some(l) => {
                let l = dests.get(l);
                if lighter(d.conn_overhead(), d.weight(), l.conn_overhead(), l.weight()) {
                    least = Some(pos);
                }
            }
        }
    }
    least
}

/// `ip_vs_dest_set_max`: the set's weighted most-loaded member with weight > 0.
fn set_max(set: &[DestId], dests: DestSet<'_>, view: &ServiceView) -> Option<DestId> {
    let mut most: Option<usize> = None;
    for &id in set {
        let Some(pos) = view.position(dests, id) else {
            continue;
        };
        let d = dests.get(pos);
        if d.weight() == 0 {
            continue;
        }
        match most {
            None => most = Some(pos),
            Some(m) => {
                let m = dests.get(m);
                // moh * dw < doh * mw: d is strictly heavier per weight.
                if lighter(m.conn_overhead(), m.weight(), d.conn_overhead(), d.weight()) {
                    most = Some(pos);
                }
            }
        }
    }
    most.map(|p| dests.get(p).id)
}

#[derive(Debug)]
pub struct LocalityLeastConnectionReplicated {
    table: LocalityTable<Entry>,
    view: ServiceView,
    expiration: Span,
}

impl LocalityLeastConnectionReplicated {
    /// An empty table for a service whose destinations are `dests`; `expiration`
    /// is `lblcr_expiration` ([`DEFAULT_EXPIRATION`] by default), used both for the
    /// set shrink rule and for the full collection check.
    pub fn new(dests: DestSet<'_>, expiration: Span) -> Self {
        LocalityLeastConnectionReplicated {
            table: LocalityTable::new(),
            view: ServiceView::new(dests),
            expiration,
        }
    }

    pub fn expiration(&self) -> Span {
        self.expiration
    }

    /// Changes `lblcr_expiration`; it applies from the next lookup or check.
    pub fn set_expiration(&mut self, expiration: Span) {
        self.expiration = expiration;
    }

    /// Number of entries in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The server set of destination address `addr`, newest member first.
    pub fn server_set(&self, addr: IpAddr) -> Option<&[DestId]> {
        self.table.get(addr).map(|e| e.set.as_slice())
    }
}

impl Scheduler for LocalityLeastConnectionReplicated {
    fn set_expiration(&mut self, expiration: Span) {
        LocalityLeastConnectionReplicated::set_expiration(self, expiration);
    }

    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, change: DestChange) {
        if let DestChange::Removed(_, id) = change {
            for e in self.table.entries_mut() {
                e.set.retain(|&m| m != id);
            }
        }
        self.view.rebuild(dests);
    }

    fn load_changed(&mut self, dests: DestSet<'_>, pos: usize) {
        self.view.update(dests, pos);
    }

    fn schedule(&mut self, dests: DestSet<'_>, input: &mut SchedInput<'_>) -> Option<usize> {
        let now = input.now;
        let addr = input.daddr;
        self.table.start(now);
        let view = &self.view;
        if let Some(e) = self.table.get_mut(addr) {
            e.lastuse = now;
            let pick = set_min(&e.set, dests, view);
            if e.set.len() > 1 && now > e.lastmod + self.expiration {
                if let Some(m) = set_max(&e.set, dests, view) {
                    e.erase(m, now);
                }
            }
            if let Some(pos) = pick {
                if !view.is_overloaded(dests.get(pos)) {
                    return Some(pos);
                }
            }
            let pos = view.least_loaded(dests)?;
            e.insert(dests.get(pos).id, now);
            return Some(pos);
        }
        let pos = view.least_loaded(dests)?;
        self.table.insert(Entry {
            addr,
            set: vec![dests.get(pos).id],
            lastmod: now,
            lastuse: now,
        });
        Some(pos)
    }

    fn tick(&mut self, now: Time) {
        self.table.tick(now, self.expiration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::Dest;
    use crate::sched::lblc::tests::{apply, ops, Op};
    use crate::sched::lblc::{ENTRY_TIMEOUT, MAX_ENTRIES};
    use crate::sched::testutil::{fixture, input, Fixture};
    use crate::sched::XorShiftRandom;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    type Lblcr = LocalityLeastConnectionReplicated;

    fn sched_at(s: &mut Lblcr, fx: &Fixture, daddr: IpAddr, now: Time) -> Option<usize> {
        let mut rng = XorShiftRandom::new(1);
        let mut inp = input(&mut rng);
        inp.daddr = daddr;
        inp.now = now;
        s.schedule(fx.set(), &mut inp)
    }

    fn set_load(fx: &mut Fixture, s: &mut dyn Scheduler, pos: usize, active: u32, inactive: u32) {
        let d = fx.dest_mut(pos);
        d.active_conns = active;
        d.inactive_conns = inactive;
        s.load_changed(fx.set(), pos);
    }

    fn ids(fx: &Fixture, positions: &[usize]) -> Vec<DestId> {
        positions.iter().map(|&p| fx.order[p]).collect()
    }

    #[test]
    fn new_entry_then_cache_hit_within_the_set() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(1);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[0]).as_slice()));
        // The head is busier but not overloaded (1 active, weight 1): kept.
        set_load(&mut fx, &mut s, 0, 1, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(0));
        assert_eq!(s.server_set(a).map(<[DestId]>::len), Some(1));
    }

    #[test]
    fn set_grows_when_its_pick_is_overloaded_and_then_uses_wlc_within() {
        let mut fx = fixture(&[(1, 0, 0, false), (2, 0, 0, false), (4, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(2);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        // Head 2 active > 1 and the third is under half load: wlc over the service.
        // Overheads 512/1, 256/2, 0/4: the third. It joins the set at its head.
        set_load(&mut fx, &mut s, 0, 2, 0);
        set_load(&mut fx, &mut s, 1, 1, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(10)), Some(2));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[2, 0]).as_slice()));
        assert_eq!(s.table.get(a).map(|e| e.lastmod), Some(Time::from_secs(10)));
        // Within the set {third, head}: third 768/4, head 1/1 -> the head, though
        // over the service the second (0/2) is lighter than both.
        set_load(&mut fx, &mut s, 2, 3, 0);
        set_load(&mut fx, &mut s, 0, 0, 1);
        set_load(&mut fx, &mut s, 1, 0, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(11)), Some(0));
        // Ties inside the set go to the newest member: third 0/4 vs head 0/1.
        set_load(&mut fx, &mut s, 2, 0, 0);
        set_load(&mut fx, &mut s, 0, 0, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(12)), Some(2));
        assert_eq!(s.server_set(a).map(<[DestId]>::len), Some(2));
    }

    #[test]
    fn set_members_quiesced_or_overloaded_are_skipped_and_wlc_adds() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(3);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        fx.dest_mut(0).config.weight = 0;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        // No usable member: wlc (the second) joins.
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(1));
        fx.dest_mut(1).overloaded = true;
        s.load_changed(fx.set(), 1);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(2)), Some(2));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[2, 1, 0]).as_slice()));
    }

    #[test]
    fn set_shrinks_by_its_most_loaded_member_after_the_expiration() {
        let exp = Span::from_secs(100);
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), exp);
        let a = ip(4);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        set_load(&mut fx, &mut s, 0, 3, 0);
        // Head 3 > 1, second 0*2 < 1: grow at t=10 s.
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(10)), Some(1));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[1, 0]).as_slice()));
        set_load(&mut fx, &mut s, 1, 1, 0);
        // lastmod 10 s: at 110 s it is not yet after lastmod + 100 s.
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(110)), Some(1));
        assert_eq!(s.server_set(a).map(<[DestId]>::len), Some(2));
        // 1 ms later: the most loaded (head, 768 vs 256) leaves; lastmod moves.
        let t = Time::from_millis(110_001);
        assert_eq!(sched_at(&mut s, &fx, a, t), Some(1));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[1]).as_slice()));
        assert_eq!(s.table.get(a).map(|e| e.lastmod), Some(t));
    }

    #[test]
    fn shrink_may_remove_the_member_just_picked() {
        // Set {second (weight 0), head}: the pick is the head (the only one with
        // weight > 0), and so is the most loaded with weight > 0.
        let exp = Span::from_secs(100);
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), exp);
        let a = ip(5);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        set_load(&mut fx, &mut s, 0, 2, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(1));
        set_load(&mut fx, &mut s, 0, 1, 0);
        fx.dest_mut(1).config.weight = 0;
        s.dests_changed(fx.set(), DestChange::Updated(1));
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(200)), Some(0));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[1]).as_slice()));
        // Next time the set has no usable member: wlc adds the head back.
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(201)), Some(0));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[0, 1]).as_slice()));
    }

    #[test]
    fn removed_member_leaves_every_set() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(6);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        let gone = fx.order.remove(0);
        fx.slab.remove(gone.index());
        s.dests_changed(fx.set(), DestChange::Removed(0, gone));
        assert_eq!(s.server_set(a), Some(&[][..]));
        assert_eq!(s.table.get(a).map(|e| e.lastmod), Some(Time::ZERO));
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(0));
        assert_eq!(s.server_set(a), Some(ids(&fx, &[0]).as_slice()));
    }

    #[test]
    fn collection_is_lblc_s_with_an_exact_count() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = Lblcr::new(fx.set(), DEFAULT_EXPIRATION);
        s.tick(Time::ZERO);
        let n = MAX_ENTRIES as u32 + 3;
        for i in 0..n {
            assert_eq!(
                sched_at(&mut s, &fx, ip(0x0a00_0000 + i), Time::ZERO),
                Some(0)
            );
        }
        // Touching every entry again changes nothing in the count.
        for i in 0..n {
            assert_eq!(
                sched_at(&mut s, &fx, ip(0x0a00_0000 + i), Time::ZERO),
                Some(0)
            );
        }
        assert_eq!((s.len(), s.table.counted()), (n as usize, n as usize));
        let checks = ENTRY_TIMEOUT.as_millis() / 60_000; // 6
        for k in 1..checks {
            s.tick(Time::from_secs(60 * k));
        }
        assert_eq!(s.len(), n as usize);
        s.tick(Time::from_secs(60 * checks));
        // goal 3*4/3 = 4: at least 4 gone, whole buckets only.
        assert!(s.len() <= n as usize - 4 && s.len() > n as usize - 100);
        assert_eq!(s.len(), s.table.counted());
    }

    /// The kernel's lblcr written plainly (linear loops, a map), without the
    /// collection.
    struct Reference {
        sets: std::collections::HashMap<IpAddr, (Vec<DestId>, Time)>,
        expiration: Span,
    }

    impl Reference {
        fn find(dests: DestSet<'_>, id: DestId) -> Option<(usize, &Dest)> {
            dests.iter().enumerate().find(|(_, d)| d.id == id)
        }

        fn wlc(dests: DestSet<'_>) -> Option<usize> {
            let mut least: Option<usize> = None;
            for (pos, d) in dests.iter().enumerate() {
                if d.overloaded {
                    continue;
                }
                match least {
                    None if d.weight() > 0 => least = Some(pos),
                    None => {}
                    Some(l) => {
                        let l = dests.get(l);
                        let lhs = u128::from(l.conn_overhead()) * u128::from(d.weight());
                        if lhs > u128::from(d.conn_overhead()) * u128::from(l.weight()) {
                            least = Some(pos);
                        }
                    }
                }
            }
            least
        }

        fn schedule(&mut self, dests: DestSet<'_>, addr: IpAddr, now: Time) -> Option<usize> {
            let over = |d: &Dest| {
                d.active_conns > d.weight()
                    && dests
                        .iter()
                        .any(|m| u64::from(m.active_conns) * 2 < u64::from(m.weight()))
            };
            let Some((set, lastmod)) = self.sets.get_mut(&addr) else {
                let pos = Self::wlc(dests)?;
                self.sets.insert(addr, (vec![dests.get(pos).id], now));
                return Some(pos);
            };
            let mut least: Option<usize> = None;
            for &id in set.iter() {
                let Some((pos, d)) = Self::find(dests, id) else {
                    continue;
                };
                if d.overloaded {
                    continue;
                }
                match least {
                    None if d.weight() > 0 => least = Some(pos),
                    None => {}
                    Some(l) => {
                        let l = dests.get(l);
                        let lhs = u128::from(l.conn_overhead()) * u128::from(d.weight());
                        if lhs > u128::from(d.conn_overhead()) * u128::from(l.weight()) {
                            least = Some(pos);
                        }
                    }
                }
            }
            if set.len() > 1 && now > *lastmod + self.expiration {
                let mut most: Option<usize> = None;
                for &id in set.iter() {
                    let Some((pos, d)) = Self::find(dests, id) else {
                        continue;
                    };
                    match most {
                        None if d.weight() > 0 => most = Some(pos),
                        None => {}
                        Some(m) => {
                            let m = dests.get(m);
                            let lhs = u128::from(m.conn_overhead()) * u128::from(d.weight());
                            let rhs = u128::from(d.conn_overhead()) * u128::from(m.weight());
                            if lhs < rhs && d.weight() > 0 {
                                most = Some(pos);
                            }
                        }
                    }
                }
                if let Some(m) = most {
                    let id = dests.get(m).id;
                    set.retain(|&x| x != id);
                    *lastmod = now;
                }
            }
            if let Some(p) = least {
                if !over(dests.get(p)) {
                    return Some(p);
                }
            }
            let pos = Self::wlc(dests)?;
            let id = dests.get(pos).id;
            if !set.contains(&id) {
                set.insert(0, id);
                *lastmod = now;
            }
            Some(pos)
        }
    }

    proptest! {
        #[test]
        fn picks_match_the_kernel_reference_and_are_always_usable(
            spec in prop::collection::vec((0u32..6, 0u32..8, 0u32..8, prop::bool::weighted(0.2)), 0..10),
            ops in ops(),
            exp_s in 0u64..600,
        ) {
            let exp = Span::from_secs(exp_s);
            let mut fx = fixture(&spec);
            let mut s = Lblcr::new(fx.set(), exp);
            let mut r = Reference { sets: Default::default(), expiration: exp };
            let mut now = Time::ZERO;
            for op in &ops {
                if let Op::Schedule(k) = *op {
                    let addr = ip(u32::from(k % 6) << 22);
                    now = now + Span::from_secs(u64::from(k % 3) * 40);
                    let got = sched_at(&mut s, &fx, addr, now);
                    if let Some(p) = got {
                        prop_assert!(p < fx.order.len());
                        prop_assert!(fx.set().get(p).schedulable());
                    }
                    let want = r.schedule(fx.set(), addr, now);
                    prop_assert_eq!(got, want);
                    prop_assert_eq!(
                        s.server_set(addr).map(<[DestId]>::to_vec),
                        r.sets.get(&addr).map(|(v, _)| v.clone())
                    );
                } else {
                    apply(&mut fx, &mut s, op, &mut now);
                    if let Op::Remove(_) = op {
                        for (set, _) in r.sets.values_mut() {
                            set.retain(|id| fx.order.contains(id));
                        }
                    }
                    if let Op::Tick(_) = op {
                        r.sets.retain(|a, _| s.server_set(*a).is_some());
                    }
                }
                prop_assert_eq!(s.len(), s.table.counted());
            }
        }
    }
}
