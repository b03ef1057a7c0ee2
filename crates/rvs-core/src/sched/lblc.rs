//! lblc: locality-based least connection (net/netfilter/ipvs/ip_vs_lblc.c), and the
//! machinery lblcr shares with it: the destination-address table with its garbage
//! collection ([`LocalityTable`]) and the service-wide view ([`ServiceView`]) that
//! answers the two service-wide questions both ask (the wlc pick, and whether some
//! destination is under half load).
//!
//! What lblc owns: a table mapping a packet's destination address to the server
//! last used for it. A lookup refreshes the entry's `lastuse`. The cached server is
//! kept while it is available, has weight > 0 and is not "overloaded" in lblc's
//! sense: `activeconns > weight` while some destination of the service has
//! `activeconns * 2 < weight`. Otherwise (or with no entry) the service-wide wlc
//! pick is used and cached, replacing the old entry unless it already names that
//! server. The kernel's fallback loop takes the first destination that is neither
//! OVERLOADed nor weight 0, then skips only OVERLOADed ones; a weight-0 destination
//! can never pass the strict test `loh * 0 > doh * lw`, so the loop is exactly wlc's
//! order and the shared [`LoadTree`] (proved equal to that walk) answers it.
//!
//! Table and collection, as the kernel: 1024 buckets (`CONFIG_IP_VS_LBLC_TAB_BITS`
//! = 10), bucket = `hash_32(addr, 10)` = the top 10 bits of `addr * 0x61C88647`, an
//! IPv6 address first folded by XOR of its four 32-bit words. A check runs 60 s
//! after the table starts and 60 s after each check. A counter starts at 1; a
//! check that finds it a multiple of 30 is a full check: it drops every entry
//! unused for `expiration` (the `lblc_expiration` sysctl, default 24 h) and resets
//! the counter to 1. Otherwise a check that finds the kernel's entry count at most
//! 16 * 1024 only adds 1 to the counter, and one that finds it above collects
//! partially, leaving the counter alone: from the bucket after a rover it drops
//! entries unused for 6 minutes, whole buckets at a time, until it has dropped
//! `(count - 16384) * 4 / 3` (at most 8192) or gone round, and the rover moves to
//! the last bucket visited. So with a small table the 30th check is a full one.
//!
//! Kernel quirk kept on purpose: replacing an entry unlinks the old one without
//! decrementing the table's entry count and then counts the new one, so the count
//! the collection compares with 16 * 1024 drifts above the real number of entries
//! by one per replacement. [`LocalityTable`] keeps both numbers.
//!
//! Time: the core has no clock, so the table starts at the first time it sees
//! (the first `tick` or `schedule`), and a check runs on the first `tick` at or
//! after the due time, as a late kernel timer would fire once.
//!
//! Removed destinations: a kernel entry holds a reference to its server and a
//! deleted server stays in the trash, unavailable, so the entry lives on until a
//! lookup replaces it or the collection drops it. Here a removed destination's
//! [`DestId`] may be reused for another server, so `DestChange::Removed(_, id)`
//! clears the server of every entry naming `id`, leaving the entry (its address,
//! `lastuse`, and its place in the count) as the kernel's would be; the next
//! lookup finds no usable server and replaces it. (A server re-added while still in
//! the kernel's trash would make its old entries valid again; rvs starts afresh.)
//!
//! As in the kernel, a cache hit does not test the server's OVERLOAD flag (its
//! upper connection threshold): a cached server keeps its addresses past `-x`.
//! The real IPVS does this (tests/golden/lblc.golden records it); it is the one
//! exception to "never an overloaded pick", see [`SchedulerKind::may_pick_overloaded`].
//!
//! Invariants: `schedule` returns only an in-range position of a destination with
//! weight > 0 that is not OVERLOADed unless it came from the cache; every position
//! it reads from its own state is checked against the current list first.

use std::fmt;
use std::net::IpAddr;

use hashbrown::HashMap;

use super::load_tree::{LoadOrder, LoadTree};
use super::wlc::WeightedLeastConnectionOrder;
use super::{DestChange, DestSet, SchedInput, Scheduler, SchedulerKind};
use crate::dest::{Dest, DestId};
use crate::time::{Span, Time};

/// `CONFIG_IP_VS_LBLC_TAB_BITS` (and lblcr's), default 10.
pub const TAB_BITS: u32 = 10;
/// Buckets in the table.
pub const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// Above this many (counted) entries the periodic check collects (`max_size`).
pub const MAX_ENTRIES: usize = TAB_SIZE * 16;
/// Period of the collection check (`CHECK_EXPIRE_INTERVAL`).
pub const CHECK_EXPIRE_INTERVAL: Span = Span::from_secs(60);
/// Idle time after which a partial check may drop an entry (`ENTRY_TIMEOUT`).
pub const ENTRY_TIMEOUT: Span = Span::from_secs(6 * 60);
/// Default `lblc_expiration` (`DEFAULT_EXPIRATION`).
pub const DEFAULT_EXPIRATION: Span = Span::from_secs(24 * 60 * 60);
/// Every this many checks without a partial collection, a full check runs
/// (`COUNT_FOR_FULL_EXPIRATION`).
pub const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// `GOLDEN_RATIO_32` of include/linux/hash.h.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The bucket of `addr`: `hash_32(ntohl(fold(addr)), TAB_BITS)`.
pub fn bucket_of(addr: IpAddr) -> usize {
    let folded = match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    };
    (folded.wrapping_mul(GOLDEN_RATIO_32) >> (32 - TAB_BITS)) as usize
}

/// An entry of a [`LocalityTable`].
pub(crate) trait CacheEntry {
    fn addr(&self) -> IpAddr;
    fn last_use(&self) -> Time;
}

/// The kernel's bucketed table with its periodic collection (shared by lblc and
/// lblcr). Invariants: at most one entry per address, each in `bucket_of(addr)`;
/// `len` is the number of entries; `counted` is the kernel's `entries` counter
/// (at least `len`; see the module note); `rover < TAB_SIZE`.
pub(crate) struct LocalityTable<E> {
    buckets: Vec<Vec<E>>,
    len: usize,
    counted: usize,
    rover: usize,
    counter: u32,
    next_check: Option<Time>,
}

impl<E: CacheEntry> LocalityTable<E> {
    pub(crate) fn new() -> Self {
        LocalityTable {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            len: 0,
            counted: 0,
            rover: 0,
            counter: 1,
            next_check: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn counted(&self) -> usize {
        self.counted
    }

    pub(crate) fn get(&self, addr: IpAddr) -> Option<&E> {
        self.buckets
            .get(bucket_of(addr))?
            .iter()
            .find(|e| e.addr() == addr)
    }

    pub(crate) fn get_mut(&mut self, addr: IpAddr) -> Option<&mut E> {
        self.buckets
            .get_mut(bucket_of(addr))?
            .iter_mut()
            .find(|e| e.addr() == addr)
    }

    /// Adds an entry for an address that has none, counting it.
    pub(crate) fn insert(&mut self, entry: E) {
        if let Some(bucket) = self.buckets.get_mut(bucket_of(entry.addr())) {
            bucket.push(entry);
            self.len += 1;
            self.counted += 1;
        }
    }

    /// Takes out the entry for `addr` without uncounting it (lblc's replacement).
    pub(crate) fn unlink(&mut self, addr: IpAddr) -> Option<E> {
        let bucket = self.buckets.get_mut(bucket_of(addr))?;
        let i = bucket.iter().position(|e| e.addr() == addr)?;
        self.len -= 1;
        Some(bucket.swap_remove(i))
    }

    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut E> + '_ {
        self.buckets.iter_mut().flatten()
    }

    /// Starts the check timer at the first time seen (the kernel's `init_service`).
    pub(crate) fn start(&mut self, now: Time) {
        if self.next_check.is_none() {
            self.next_check = Some(now + CHECK_EXPIRE_INTERVAL);
        }
    }

    /// Runs the periodic check if it is due at `now` and re-arms it.
    pub(crate) fn tick(&mut self, now: Time, expiration: Span) {
        match self.next_check {
            None => self.start(now),
            Some(due) if now >= due => {
                self.check_expire(now, expiration);
                self.next_check = Some(now + CHECK_EXPIRE_INTERVAL);
            }
            Some(_) => {}
        }
    }

    /// One run of the kernel's periodic timer handler.
    fn check_expire(&mut self, now: Time, expiration: Span) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            self.full_check(now, expiration);
            self.counter = 1;
            return;
        }
        if self.counted <= MAX_ENTRIES {
            self.counter += 1;
            return;
        }
        let excess = (self.counted - MAX_ENTRIES) * 4 / 3;
        let mut goal = excess.min(MAX_ENTRIES / 2);
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            let dropped = self.expire_bucket(j, |e| now < e.last_use() + ENTRY_TIMEOUT);
            goal = goal.saturating_sub(dropped);
            if goal == 0 {
                break;
            }
        }
        self.rover = j;
    }

    /// Drops every entry unused for `expiration`, all buckets from the rover on.
    fn full_check(&mut self, now: Time, expiration: Span) {
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            self.expire_bucket(j, |e| now < e.last_use() + expiration);
        }
        self.rover = j;
    }

    /// Keeps the entries of bucket `j` that `keep` accepts; returns how many went.
    fn expire_bucket(&mut self, j: usize, keep: impl Fn(&E) -> bool) -> usize {
        let Some(bucket) = self.buckets.get_mut(j) else {
            return 0;
        };
        let before = bucket.len();
        bucket.retain(|e| keep(e));
        let dropped = before - bucket.len();
        self.len -= dropped;
        self.counted = self.counted.saturating_sub(dropped);
        dropped
    }
}

impl<E> fmt::Debug for LocalityTable<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalityTable")
            .field("len", &self.len)
            .field("counted", &self.counted)
            .field("counter", &self.counter)
            .field("next_check", &self.next_check)
            .finish()
    }
}

/// What lblc and lblcr need to know about the whole service, kept current from
/// `dests_changed`/`load_changed`: where each id sits in the list, how many
/// destinations are under half load (`activeconns * 2 < weight`), and the wlc
/// pick. Every answer is checked against the list it is given, so a missed
/// notification can cost accuracy but never an out-of-range or unusable pick.
pub(crate) struct ServiceView {
    positions: HashMap<DestId, usize>,
    half_loaded: Vec<bool>,
    half_loaded_count: usize,
    wlc: LoadTree,
}

fn under_half_load(d: &Dest) -> bool {
    u64::from(d.active_conns) * 2 < u64::from(d.weight())
}

impl ServiceView {
    pub(crate) fn new(dests: DestSet<'_>) -> Self {
        let mut view = ServiceView {
            positions: HashMap::new(),
            half_loaded: Vec::new(),
            half_loaded_count: 0,
            wlc: LoadTree::new::<WeightedLeastConnectionOrder>(dests),
        };
        view.rebuild_except_tree(dests);
        view
    }

    fn rebuild_except_tree(&mut self, dests: DestSet<'_>) {
        self.positions.clear();
        self.half_loaded.clear();
        for (pos, d) in dests.iter().enumerate() {
            self.positions.insert(d.id, pos);
            self.half_loaded.push(under_half_load(d));
        }
        self.half_loaded_count = self.half_loaded.iter().filter(|&&h| h).count();
    }

    /// The list changed.
    pub(crate) fn rebuild(&mut self, dests: DestSet<'_>) {
        self.rebuild_except_tree(dests);
        self.wlc.rebuild::<WeightedLeastConnectionOrder>(dests);
    }

    /// The load or flags of the destination at `pos` changed.
    pub(crate) fn update(&mut self, dests: DestSet<'_>, pos: usize) {
        if pos >= dests.len() || self.half_loaded.len() != dests.len() {
            self.rebuild(dests);
            return;
        }
        let now_half = under_half_load(dests.get(pos));
        if let Some(h) = self.half_loaded.get_mut(pos) {
            if *h != now_half {
                *h = now_half;
                if now_half {
                    self.half_loaded_count += 1;
                } else {
                    self.half_loaded_count -= 1;
                }
            }
        }
        self.wlc.update::<WeightedLeastConnectionOrder>(dests, pos);
    }

    /// The list position of `id`, if it is in the list.
    pub(crate) fn position(&self, dests: DestSet<'_>, id: DestId) -> Option<usize> {
        match self.positions.get(&id) {
            Some(&pos) if pos < dests.len() && dests.get(pos).id == id => Some(pos),
            _ => dests.iter().position(|d| d.id == id),
        }
    }

    /// The kernel's `is_overloaded`: more active connections than weight while
    /// some destination of the service is under half load.
    pub(crate) fn is_overloaded(&self, d: &Dest) -> bool {
        d.active_conns > d.weight() && self.half_loaded_count > 0
    }

    /// The wlc pick over the whole service (the kernel's `__ip_vs_lblc_schedule`
    /// and `__ip_vs_lblcr_schedule`).
    pub(crate) fn least_loaded(&self, dests: DestSet<'_>) -> Option<usize> {
        match self.wlc.best() {
            Some(pos) if pos < dests.len() && dests.get(pos).schedulable() => Some(pos),
            _ => WeightedLeastConnectionOrder::linear(dests),
        }
    }
}

impl fmt::Debug for ServiceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceView")
            .field("dests", &self.half_loaded.len())
            .field("half_loaded", &self.half_loaded_count)
            .field("wlc", &self.wlc.best())
            .finish()
    }
}

/// One lblc entry: a destination address and the server cached for it (`None`
/// once that server was removed from the service).
#[derive(Clone, Debug)]
struct Entry {
    addr: IpAddr,
    dest: Option<DestId>,
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

#[derive(Debug)]
pub struct LocalityLeastConnection {
    table: LocalityTable<Entry>,
    view: ServiceView,
    expiration: Span,
}

impl LocalityLeastConnection {
    /// An empty table for a service whose destinations are `dests`; `expiration`
    /// is `lblc_expiration` ([`DEFAULT_EXPIRATION`] by default).
    pub fn new(dests: DestSet<'_>, expiration: Span) -> Self {
        LocalityLeastConnection {
            table: LocalityTable::new(),
            view: ServiceView::new(dests),
            expiration,
        }
    }

    pub fn expiration(&self) -> Span {
        self.expiration
    }

    /// Changes `lblc_expiration`; the next full check uses it.
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

    /// The server cached for destination address `addr`, if any.
    pub fn cached(&self, addr: IpAddr) -> Option<DestId> {
        self.table.get(addr).and_then(|e| e.dest)
    }

    /// The cached server's position if the kernel would use it: available,
    /// weight > 0, not overloaded in lblc's sense (its OVERLOAD flag is not read).
    fn usable(&self, dests: DestSet<'_>, id: DestId) -> Option<usize> {
        let pos = self.view.position(dests, id)?;
        let d = dests.get(pos);
        let ok = d.available && d.weight() > 0 && !self.view.is_overloaded(d);
        ok.then_some(pos)
    }
}

impl Scheduler for LocalityLeastConnection {
    fn set_expiration(&mut self, expiration: Span) {
        LocalityLeastConnection::set_expiration(self, expiration);
    }

    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }

    fn dests_changed(&mut self, dests: DestSet<'_>, change: DestChange) {
        if let DestChange::Removed(_, id) = change {
            for e in self.table.entries_mut() {
                if e.dest == Some(id) {
                    e.dest = None;
                }
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
        let mut cached = None;
        if let Some(e) = self.table.get_mut(addr) {
            e.lastuse = now;
            cached = Some(e.dest);
        }
        if let Some(Some(id)) = cached {
            if let Some(pos) = self.usable(dests, id) {
                return Some(pos);
            }
        }
        let pos = self.view.least_loaded(dests)?;
        let id = dests.get(pos).id;
        // ip_vs_lblc_new: keep an entry that already names this server, else
        // replace it (see the module note on the count).
        if cached != Some(Some(id)) {
            self.table.unlink(addr);
            self.table.insert(Entry {
                addr,
                dest: Some(id),
                lastuse: now,
            });
        }
        Some(pos)
    }

    fn tick(&mut self, now: Time) {
        self.table.tick(now, self.expiration);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sched::testutil::{fixture, input, Fixture};
    use crate::sched::XorShiftRandom;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn sched_at(
        s: &mut LocalityLeastConnection,
        fx: &Fixture,
        daddr: IpAddr,
        now: Time,
    ) -> Option<usize> {
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

    #[test]
    fn bucket_is_hash_32_of_the_folded_address() {
        // hash_32(0x0a000001, 10) = (0x0a000001 * 0x61c88647) >> 22.
        let v4 = 0x0a00_0001u32.wrapping_mul(0x61c8_8647) >> 22;
        assert_eq!(bucket_of(ip(0x0a00_0001)), v4 as usize);
        assert_eq!(bucket_of(ip(0)), 0);
        // 2001:db8::1 folds to 0x20010db8 ^ 0 ^ 0 ^ 1 = 0x20010db9.
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let want = 0x2001_0db9u32.wrapping_mul(0x61c8_8647) >> 22;
        assert_eq!(bucket_of(IpAddr::V6(v6)), want as usize);
        assert!((0..100_000u32).all(|n| bucket_of(ip(n.wrapping_mul(2_654_435_761))) < TAB_SIZE));
    }

    #[test]
    fn cache_hit_keeps_the_server_while_not_overloaded() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(0x0a00_0001);
        // Empty table: wlc over the service, the head wins the tie.
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        assert_eq!(s.cached(a), Some(fx.order[0]));
        // Head now busier (1 active == weight 1: not overloaded): still cached.
        set_load(&mut fx, &mut s, 0, 1, 5);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(0));
        // Another address gets the wlc pick.
        assert_eq!(
            sched_at(&mut s, &fx, ip(0x0a00_0002), Time::from_secs(1)),
            Some(1)
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.table.counted(), 2);
    }

    #[test]
    fn overloaded_cached_server_is_replaced_when_another_is_under_half_load() {
        let mut fx = fixture(&[(1, 0, 0, false), (4, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(7);
        // 0/1 vs 0/4: tie, the head.
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        // Head: 2 active > weight 1. Second: 1*2 < 4, under half load.
        set_load(&mut fx, &mut s, 0, 2, 0);
        set_load(&mut fx, &mut s, 1, 1, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(1));
        assert_eq!(s.cached(a), Some(fx.order[1]));
        // The kernel counted the replacement without uncounting the old entry.
        assert_eq!((s.len(), s.table.counted()), (1, 2));
        // Now the new server is cached even though wlc would pick the head.
        set_load(&mut fx, &mut s, 0, 0, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(2)), Some(1));
    }

    #[test]
    fn half_load_rule_keeps_an_overloaded_server_when_nobody_is_under_half() {
        let mut fx = fixture(&[(1, 0, 0, false), (4, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(9);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        // Head 3 active > 1, but the other has 2*2 == 4, not < 4: keep the head.
        set_load(&mut fx, &mut s, 0, 3, 0);
        set_load(&mut fx, &mut s, 1, 2, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(0));
        // One connection fewer on the other: 1*2 < 4, the head is overloaded.
        set_load(&mut fx, &mut s, 1, 1, 0);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(2)), Some(1));
    }

    #[test]
    fn rejected_cached_server_picked_again_by_wlc_keeps_its_entry() {
        // Weights 10, 100, 1; all idle: wlc ties, the head.
        let mut fx = fixture(&[(10, 0, 0, false), (100, 0, 0, false), (1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(11);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        // Head: 11 active > 10. The third (0*2 < 1) is under half load, so the
        // head is rejected; but the third is OVERLOADed, and per weight the head
        // is still lightest: 2816*100 = 281600 vs 120*256*10 = 307200.
        set_load(&mut fx, &mut s, 0, 11, 0);
        set_load(&mut fx, &mut s, 1, 120, 0);
        fx.dest_mut(2).overloaded = true;
        s.load_changed(fx.set(), 2);
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(0));
        // ip_vs_lblc_new found the same server: entry kept, nothing counted.
        assert_eq!((s.len(), s.table.counted()), (1, 1));
    }

    #[test]
    fn quiesced_cached_server_is_replaced_threshold_overloaded_is_kept() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let (a, b, c) = (ip(1), ip(2), ip(3));
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        assert_eq!(sched_at(&mut s, &fx, b, Time::ZERO), Some(0));
        fx.dest_mut(0).config.weight = 0;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(1));
        fx.dest_mut(0).config.weight = 1;
        fx.dest_mut(0).overloaded = true;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        // The kernel keeps a cached server past its upper threshold...
        assert_eq!(sched_at(&mut s, &fx, b, Time::ZERO), Some(0));
        // ...but a new address goes to wlc, which skips it.
        assert_eq!(sched_at(&mut s, &fx, c, Time::ZERO), Some(1));
    }

    #[test]
    fn nothing_available_keeps_the_entry_and_returns_none() {
        let mut fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(3);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        fx.dest_mut(0).config.weight = 0;
        s.dests_changed(fx.set(), DestChange::Updated(0));
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(5)), None);
        assert_eq!(s.cached(a), Some(fx.order[0]));
        assert_eq!(s.table.get(a).map(|e| e.lastuse), Some(Time::from_secs(5)));
    }

    #[test]
    fn removed_server_is_forgotten_even_if_its_id_is_reused() {
        let mut fx = fixture(&[(1, 0, 0, false), (1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        let a = ip(5);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        let gone = fx.order.remove(0);
        fx.slab.remove(gone.index());
        s.dests_changed(fx.set(), DestChange::Removed(0, gone));
        // The entry stays, without a server, and still counts.
        assert_eq!((s.len(), s.table.counted(), s.cached(a)), (1, 1, None));
        // A new server takes the freed id, heavily loaded, at the head.
        let mut spare = fixture(&[(1, 50, 0, false)]);
        let new = spare.slab.remove(0);
        let key = fx.slab.insert(new);
        assert_eq!(key, gone.index());
        fx.order.insert(0, gone);
        s.dests_changed(fx.set(), DestChange::Added(0));
        // Not served from the stale entry: wlc picks the idle server.
        assert_eq!(sched_at(&mut s, &fx, a, Time::from_secs(1)), Some(1));
        assert_eq!(s.cached(a), Some(fx.order[1]));
    }

    /// Fills the table with `n` distinct addresses at time `at`.
    fn fill(s: &mut LocalityLeastConnection, fx: &Fixture, n: u32, at: Time) -> Vec<IpAddr> {
        let addrs: Vec<IpAddr> = (0..n).map(|i| ip(0x0a00_0000 + i)).collect();
        for &a in &addrs {
            assert_eq!(sched_at(s, fx, a, at), Some(0));
        }
        addrs
    }

    #[test]
    fn partial_collection_drops_idle_entries_at_the_right_check_only() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        s.tick(Time::ZERO); // the timer starts: checks at 60 s, 120 s, ...
        let extra = 30;
        let addrs = fill(&mut s, &fx, MAX_ENTRIES as u32 + extra, Time::from_secs(1));
        let total = addrs.len();
        // Checks 1..=6 (60..=360 s): entries used at 1 s are idle < 6 min.
        for k in 1..=6 {
            s.tick(Time::from_secs(60 * k));
            assert_eq!(s.len(), total, "check at {} s", 60 * k);
        }
        // Between checks nothing runs.
        s.tick(Time::from_secs(361));
        assert_eq!(s.len(), total);
        // Check 7 (420 s): goal = 30*4/3 = 40, whole buckets from rover 0 + 1 on.
        let mut per_bucket = vec![0usize; TAB_SIZE];
        for &a in &addrs {
            per_bucket[bucket_of(a)] += 1;
        }
        let (mut want, mut j) = (0, 0);
        while want < 40 {
            j = (j + 1) & TAB_MASK;
            want += per_bucket[j];
        }
        s.tick(Time::from_secs(420));
        assert_eq!(s.len(), total - want);
        assert_eq!(s.table.rover, j);
        // Back under the limit: the next check drops nothing, idle or not.
        assert!(s.table.counted() <= MAX_ENTRIES);
        s.tick(Time::from_secs(480));
        assert_eq!(s.len(), total - want);
        // 100 fresh entries push it over again; the 540 s check resumes after the
        // rover and only the old (idle) entries can go.
        for i in 0..100 {
            assert_eq!(
                sched_at(&mut s, &fx, ip(0x0b00_0000 + i), Time::from_secs(481)),
                Some(0)
            );
        }
        let goal = (s.table.counted() - MAX_ENTRIES) * 4 / 3;
        let mut more = 0;
        while more < goal {
            j = (j + 1) & TAB_MASK;
            more += per_bucket[j];
        }
        s.tick(Time::from_secs(540));
        assert_eq!(s.len(), total - want + 100 - more);
        assert_eq!(s.table.rover, j);
    }

    #[test]
    fn goal_is_capped_at_half_the_limit() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        s.tick(Time::ZERO);
        // 16384 + 7000 entries: (7000*4/3 = 9333) capped at 8192.
        let addrs = fill(&mut s, &fx, MAX_ENTRIES as u32 + 7000, Time::ZERO);
        let mut per_bucket = vec![0usize; TAB_SIZE];
        for &a in &addrs {
            per_bucket[bucket_of(a)] += 1;
        }
        let (mut want, mut j) = (0, 0);
        while want < MAX_ENTRIES / 2 {
            j = (j + 1) & TAB_MASK;
            want += per_bucket[j];
        }
        for k in 1..=6 {
            s.tick(Time::from_secs(60 * k));
        }
        // Idle exactly 6 min at the 360 s check: not before 360 s, dropped at it.
        assert_eq!(s.len(), addrs.len() - want);
    }

    #[test]
    fn full_check_every_30th_run_uses_the_expiration() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), Span::from_secs(600));
        let (a, b) = (ip(1), ip(2));
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0)); // starts the timer
        assert_eq!(sched_at(&mut s, &fx, b, Time::ZERO), Some(0));
        assert_eq!(sched_at(&mut s, &fx, b, Time::from_secs(1300)), Some(0));
        for k in 1..=29 {
            s.tick(Time::from_secs(60 * k));
        }
        assert_eq!(s.len(), 2); // a idle 1740 s, but no full check yet
        s.tick(Time::from_secs(1800)); // 30th check: full
        assert_eq!((s.cached(a), s.cached(b)), (None, Some(fx.order[0])));
        for k in 31..=59 {
            s.tick(Time::from_secs(60 * k));
        }
        assert_eq!(s.len(), 1);
        s.tick(Time::from_secs(3600)); // the next full check
        assert!(s.is_empty());
    }

    #[test]
    fn default_expiration_keeps_a_day() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        assert_eq!(s.expiration(), Span::from_secs(86_400));
        let a = ip(1);
        assert_eq!(sched_at(&mut s, &fx, a, Time::ZERO), Some(0));
        // Checks every 60 s; full checks at 30, 60, ... minutes.
        let mut t = 60;
        while t < 86_400 {
            s.tick(Time::from_secs(t));
            t += 60;
        }
        assert_eq!(s.len(), 1);
        s.tick(Time::from_secs(86_400)); // 1440th check, a full one: idle 24 h
        assert!(s.is_empty());
    }

    #[test]
    fn late_tick_runs_one_check_and_rearms_from_then() {
        let fx = fixture(&[(1, 0, 0, false)]);
        let mut s = LocalityLeastConnection::new(fx.set(), DEFAULT_EXPIRATION);
        s.tick(Time::from_secs(10));
        s.tick(Time::from_secs(1000)); // due at 70 s: one check, next at 1060 s
        assert_eq!(s.table.counter, 2);
        s.tick(Time::from_secs(1059));
        assert_eq!(s.table.counter, 2);
        s.tick(Time::from_secs(1060));
        assert_eq!(s.table.counter, 3);
    }

    /// The kernel's lblc written as plainly as possible (linear loops, a map),
    /// without the collection; the scheduler must pick the same at every step.
    #[derive(Default)]
    struct Reference {
        cache: std::collections::HashMap<IpAddr, Option<DestId>>,
    }

    impl Reference {
        fn wlc(dests: DestSet<'_>) -> Option<usize> {
            let mut it = dests.iter().enumerate();
            let mut least = loop {
                let (pos, d) = it.next()?;
                if !d.overloaded && d.weight() > 0 {
                    break pos;
                }
            };
            for (pos, d) in it {
                if d.overloaded {
                    continue;
                }
                let l = dests.get(least);
                let (loh, doh) = (u128::from(l.conn_overhead()), u128::from(d.conn_overhead()));
                if loh * u128::from(d.weight()) > doh * u128::from(l.weight()) {
                    least = pos;
                }
            }
            Some(least)
        }

        fn overloaded(dests: DestSet<'_>, d: &Dest) -> bool {
            d.active_conns > d.weight()
                && dests
                    .iter()
                    .any(|m| u64::from(m.active_conns) * 2 < u64::from(m.weight()))
        }

        fn schedule(&mut self, dests: DestSet<'_>, addr: IpAddr) -> Option<usize> {
            if let Some(Some(id)) = self.cache.get(&addr) {
                if let Some(pos) = dests.iter().position(|d| d.id == *id) {
                    let d = dests.get(pos);
                    if d.weight() > 0 && !Self::overloaded(dests, d) {
                        return Some(pos);
                    }
                }
            }
            let pos = Self::wlc(dests)?;
            self.cache.insert(addr, Some(dests.get(pos).id));
            Some(pos)
        }
    }

    #[derive(Clone, Debug)]
    pub(crate) enum Op {
        Schedule(u8),
        Load(usize, u32, u32, bool),
        Weight(usize, u32),
        Remove(usize),
        Add(u32, u32),
        Tick(u32),
    }

    pub(crate) fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            6 => any::<u8>().prop_map(Op::Schedule),
            4 => (0usize..16, 0u32..8, 0u32..8, prop::bool::weighted(0.2))
                .prop_map(|(p, a, i, o)| Op::Load(p, a, i, o)),
            1 => (0usize..16, prop_oneof![Just(0u32), 1u32..6]).prop_map(|(p, w)| Op::Weight(p, w)),
            1 => (0usize..16).prop_map(Op::Remove),
            1 => (0u32..6, 0u32..8).prop_map(|(w, a)| Op::Add(w, a)),
            1 => (0u32..100_000).prop_map(Op::Tick),
        ];
        prop::collection::vec(op, 1..120)
    }

    /// Applies a non-scheduling op to the fixture and tells `s`. Time only moves
    /// forward, by the op's amount.
    pub(crate) fn apply(fx: &mut Fixture, s: &mut dyn Scheduler, op: &Op, now: &mut Time) {
        match *op {
            Op::Schedule(_) => {}
            Op::Load(p, a, i, o) if !fx.order.is_empty() => {
                let p = p % fx.order.len();
                let d = fx.dest_mut(p);
                d.active_conns = a;
                d.inactive_conns = i;
                d.overloaded = o;
                s.load_changed(fx.set(), p);
            }
            Op::Weight(p, w) if !fx.order.is_empty() => {
                let p = p % fx.order.len();
                fx.dest_mut(p).config.weight = w;
                s.dests_changed(fx.set(), DestChange::Updated(p));
            }
            Op::Remove(p) if !fx.order.is_empty() => {
                let p = p % fx.order.len();
                let id = fx.order.remove(p);
                fx.slab.remove(id.index());
                s.dests_changed(fx.set(), DestChange::Removed(p, id));
            }
            Op::Add(w, a) => {
                // Reuses the lowest freed slab key, like the real owner may.
                let mut one = fixture(&[(w, a, 0, false)]);
                let mut d = one.slab.remove(0);
                let entry = fx.slab.vacant_entry();
                d.id = DestId(entry.key() as u32);
                let id = d.id;
                entry.insert(d);
                fx.order.insert(0, id);
                s.dests_changed(fx.set(), DestChange::Added(0));
            }
            Op::Tick(ms) => {
                *now = *now + Span::from_millis(u64::from(ms) * 50);
                s.tick(*now);
            }
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn picks_match_the_kernel_reference_and_never_a_quiesced_server(
            spec in prop::collection::vec((0u32..6, 0u32..8, 0u32..8, prop::bool::weighted(0.2)), 0..10),
            ops in ops(),
        ) {
            let mut fx = fixture(&spec);
            let mut s = LocalityLeastConnection::new(fx.set(), Span::from_secs(300));
            let mut r = Reference::default();
            let mut now = Time::ZERO;
            for op in &ops {
                if let Op::Schedule(k) = *op {
                    // A few addresses, some in the same bucket, v4 and v6.
                    let addr = match k % 4 {
                        0 => ip(u32::from(k)),
                        1 => IpAddr::V6(Ipv6Addr::from(u128::from(k) << 64)),
                        _ => ip(u32::from(k % 8) << 22),
                    };
                    let got = sched_at(&mut s, &fx, addr, now);
                    if let Some(p) = got {
                        prop_assert!(p < fx.order.len());
                        prop_assert!(fx.set().get(p).weight() > 0);
                    }
                    let want = r.schedule(fx.set(), addr);
                    prop_assert_eq!(got, want);
                } else {
                    apply(&mut fx, &mut s, op, &mut now);
                    if let Op::Remove(_) = op {
                        let live: Vec<DestId> = fx.order.clone();
                        for v in r.cache.values_mut() {
                            if v.is_some_and(|id| !live.contains(&id)) {
                                *v = None;
                            }
                        }
                    }
                    if let Op::Tick(_) = op {
                        r.cache.retain(|a, _| s.table.get(*a).is_some());
                    }
                }
                prop_assert!(s.table.counted() >= s.len());
            }
        }
    }
}
