//! The connection table: every tracked connection and persistence template, looked
//! up by its client-side tuple (and, for connections whose replies cross the
//! director, by its server-side tuple), with expiry in time order.
//!
//! Storage is a slab of [`Conn`] (stable [`ConnId`]s); the two indexes are hash
//! tables of ids that hash the tuple stored in the slab, so an entry costs a few
//! bytes beyond the connection itself. Expiry uses a timer wheel of
//! [`WHEEL_SLOTS`] slots of [`WHEEL_TICK_MS`] each; a connection sits in the slot
//! of the tick it was linked at, which is never later than its expiry: refreshing
//! a connection to a later expiry does not move it (it is moved when its slot comes
//! round); an earlier expiry relinks it, and so does any refresh of an entry left
//! behind the wheel's cursor (a due template kept because it still controls
//! connections). Invariants: every live id is in
//! exactly one wheel slot; `linked_tick <= tick(expires)`; a connection is in the
//! in-index unless it is an invalidated template; it is in the out-index iff
//! `flags.out_indexed`.

pub mod sctp;
pub mod tcp;

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use hashbrown::HashTable;
use slab::Slab;

use crate::dest::DestId;
use crate::time::{Span, Time};

/// Which of the kernel's state tables a packet is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableDir {
    Input,
    Output,
    InputOnly,
}

/// Stable handle of a tracked connection, valid until it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

const NIL: u32 = u32::MAX;

/// IPPROTO_IP, the protocol of fwmark persistence templates.
pub const PROTO_IP: u8 = 0;

/// The client-side tuple: what an inbound packet is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub proto: u8,
    pub template: bool,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
}

/// The server-side tuple of a reply: (proto, daddr, dport, caddr, cport).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutKey {
    pub proto: u8,
    pub daddr: IpAddr,
    pub dport: u16,
    pub caddr: IpAddr,
    pub cport: u16,
}

/// Connection flags (a subset of IP_VS_CONN_F_*, plus bookkeeping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnFlags {
    /// IP_VS_CONN_F_TEMPLATE: a persistence template.
    pub template: bool,
    /// IP_VS_CONN_F_INACTIVE: counted in InActConn (else ActiveConn).
    pub inactive: bool,
    /// IP_VS_CONN_F_NOOUTPUT: no reply seen yet on a non-NAT connection.
    pub no_output: bool,
    /// IP_VS_CONN_F_ONE_PACKET.
    pub one_packet: bool,
    /// The template was invalidated (`ip_vs_check_template`) and only waits to
    /// expire; it shows with ports 65535 and is not looked up.
    pub invalidated: bool,
    /// Whether the connection is in the out-index.
    pub out_indexed: bool,
}

/// A tracked connection or persistence template (`struct ip_vs_conn`).
#[derive(Clone, Debug)]
pub struct Conn {
    pub key: ConnKey,
    pub daddr: IpAddr,
    pub dport: u16,
    pub dest: DestId,
    pub flags: ConnFlags,
    /// Protocol state index (TCP/SCTP state, 0 for UDP and templates' NONE).
    pub state: u8,
    /// Timeout applied on each refresh, in ms.
    pub timeout_ms: u32,
    pub expires: Time,
    /// Controlling template, if any.
    control: u32,
    /// Number of connections this template controls.
    pub n_control: u32,
    /// Inbound packets seen (for the sync threshold rule).
    pub in_pkts: u32,
    /// The state when the connection was last announced (`old_state`).
    pub(crate) old_state: u8,
    /// Expiry announced last, in ms, with the retry count in its low two bits
    /// (`sync_endtime`).
    pub(crate) sync_end_ms: u64,
    wheel_prev: u32,
    wheel_next: u32,
    linked_tick: u64,
}

impl Conn {
    pub fn control(&self) -> Option<ConnId> {
        (self.control != NIL).then_some(ConnId(self.control))
    }

    pub fn out_key(&self) -> OutKey {
        OutKey {
            proto: self.key.proto,
            daddr: self.daddr,
            dport: self.dport,
            caddr: self.key.caddr,
            cport: self.key.cport,
        }
    }

    pub fn timeout(&self) -> Span {
        Span::from_millis(u64::from(self.timeout_ms))
    }

    /// Sets the timeout applied on the next refresh (saturating at ~49 days).
    pub(crate) fn set_timeout(&mut self, timeout: Span) {
        self.timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    }
}

/// What a caller supplies to create a connection.
#[derive(Clone, Copy, Debug)]
pub struct NewConn {
    pub key: ConnKey,
    pub daddr: IpAddr,
    pub dport: u16,
    pub dest: DestId,
    pub flags: ConnFlags,
    pub state: u8,
    pub timeout: Span,
    pub control: Option<ConnId>,
}

/// Milliseconds per wheel tick.
pub const WHEEL_TICK_MS: u64 = 256;
/// Number of wheel slots (horizon = slots * tick ~ 17.5 minutes).
pub const WHEEL_SLOTS: usize = 4096;

/// Smallest number of entries the slab grows by (see `ConnTable::reserve_for_insert`).
const MIN_GROWTH: usize = 1024;

fn tick_of(t: Time) -> u64 {
    t.as_millis() / WHEEL_TICK_MS
}

fn slot_of(tick: u64) -> usize {
    (tick % WHEEL_SLOTS as u64) as usize
}

pub struct ConnTable {
    conns: Slab<Conn>,
    by_in: HashTable<u32>,
    by_out: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    wheel: Vec<u32>,
    /// The next tick whose slot has not been fully processed.
    wheel_cursor: u64,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.conns.len())
            .finish()
    }
}

impl ConnTable {
    /// A table whose hashes are keyed by `seed` (pick it at random in production so
    /// that clients cannot aim at one hash chain).
    pub fn new(seed: u64) -> Self {
        ConnTable {
            conns: Slab::new(),
            by_in: HashTable::new(),
            by_out: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            wheel: vec![NIL; WHEEL_SLOTS],
            wheel_cursor: 0,
        }
    }

    pub fn with_capacity(seed: u64, n: usize) -> Self {
        let mut t = Self::new(seed);
        t.conns.reserve(n);
        t.by_in.reserve(n, |_| 0);
        t
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn hash_of<K: Hash>(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.0 as usize)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.0 as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter().map(|(i, c)| (ConnId(i as u32), c))
    }

    pub fn lookup_in(&self, key: &ConnKey) -> Option<ConnId> {
        let h = self.hash_of(key);
        let conns = &self.conns;
        self.by_in
            .find(h, |&id| conns[id as usize].key == *key)
            .map(|&id| ConnId(id))
    }

    pub fn lookup_out(&self, key: &OutKey) -> Option<ConnId> {
        let h = self.hash_of(key);
        let conns = &self.conns;
        self.by_out
            .find(h, |&id| conns[id as usize].out_key() == *key)
            .map(|&id| ConnId(id))
    }

    /// Grows the slab by an eighth when it is full instead of letting it double, so
    /// that its spare capacity stays under 12.5 % (plus [`MIN_GROWTH`] entries).
    /// A doubled slab holding 10M connections reserves 16.8M entries of 112 bytes:
    /// 196 heap bytes per connection with the index, against 129 with this rule
    /// (BENCHMARKS.md). Growth stays geometric, so insertion stays amortised O(1);
    /// glibc reallocates blocks this large by remapping pages, not copying them.
    fn reserve_for_insert(&mut self) {
        if self.conns.len() == self.conns.capacity() {
            self.conns
                .reserve_exact((self.conns.len() / 8).max(MIN_GROWTH));
        }
    }

    /// Inserts a connection expiring at `now + timeout`. Does not check for an
    /// existing entry with the same key (the caller looked it up first).
    pub fn insert(&mut self, n: NewConn, now: Time, index_out: bool) -> ConnId {
        self.reserve_for_insert();
        let expires = now + n.timeout;
        let mut conn = Conn {
            key: n.key,
            daddr: n.daddr,
            dport: n.dport,
            dest: n.dest,
            flags: ConnFlags {
                out_indexed: index_out,
                ..n.flags
            },
            state: n.state,
            timeout_ms: 0,
            expires,
            control: n.control.map_or(NIL, |c| c.0),
            n_control: 0,
            in_pkts: 0,
            old_state: 0,
            sync_end_ms: now.as_millis() & !3,
            wheel_prev: NIL,
            wheel_next: NIL,
            linked_tick: 0,
        };
        conn.set_timeout(n.timeout);
        let id = self.conns.insert(conn) as u32;
        let h = self.hash_of(&n.key);
        let hasher = self.hasher;
        let conns = &self.conns;
        self.by_in
            .insert_unique(h, id, |&i| hasher.hash_one(conns[i as usize].key));
        if index_out {
            let ok = self.conns[id as usize].out_key();
            let h = self.hash_of(&ok);
            let conns = &self.conns;
            self.by_out
                .insert_unique(h, id, |&i| hasher.hash_one(conns[i as usize].out_key()));
        }
        if let Some(c) = n.control {
            if let Some(t) = self.conns.get_mut(c.0 as usize) {
                t.n_control += 1;
            }
        }
        self.link(id, tick_of(expires).max(self.wheel_cursor));
        ConnId(id)
    }

    fn unindex_in(&mut self, id: u32) {
        let key = self.conns[id as usize].key;
        let h = self.hash_of(&key);
        if let Ok(e) = self.by_in.find_entry(h, |&i| i == id) {
            e.remove();
        }
    }

    /// Sets a new timeout and refreshes the expiry to `now + timeout`
    /// (`ip_vs_conn_put` re-arming the timer).
    pub fn refresh(&mut self, id: ConnId, timeout: Span, now: Time) {
        let Some(c) = self.conns.get_mut(id.0 as usize) else {
            return;
        };
        c.set_timeout(timeout);
        self.rearm(id, now);
    }

    /// Refreshes the expiry to `now + timeout` with the stored timeout.
    pub fn rearm(&mut self, id: ConnId, now: Time) {
        let Some(c) = self.conns.get_mut(id.0 as usize) else {
            return;
        };
        let expires = now + c.timeout();
        c.expires = expires;
        let t = tick_of(expires).max(self.wheel_cursor);
        // Relink when the new expiry is earlier than the slot, or when the entry
        // sits behind the cursor (it was due and is being kept: an expiring
        // template that still controls connections), else it would wait a
        // whole revolution of the wheel.
        if t < c.linked_tick || c.linked_tick < self.wheel_cursor {
            self.unlink(id.0);
            self.link(id.0, t);
        }
    }

    /// Removes a template from lookups and shows it with ports 65535, as
    /// `ip_vs_check_template` does; it stays until it expires.
    pub fn invalidate_template(&mut self, id: ConnId) {
        let Some(c) = self.conns.get(id.0 as usize) else {
            return;
        };
        if c.flags.invalidated {
            return;
        }
        self.unindex_in(id.0);
        if let Some(c) = self.conns.get_mut(id.0 as usize) {
            c.flags.invalidated = true;
            c.key.vport = 0xffff;
            c.key.cport = 0;
            c.dport = 0xffff;
        }
    }

    /// Removes a connection from the table; returns it. Its template's control
    /// count is decremented.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.conns.get(id.0 as usize)?;
        let invalidated = c.flags.invalidated;
        let out_indexed = c.flags.out_indexed;
        let out_key = c.out_key();
        if !invalidated {
            self.unindex_in(id.0);
        }
        if out_indexed {
            let h = self.hash_of(&out_key);
            if let Ok(e) = self.by_out.find_entry(h, |&i| i == id.0) {
                e.remove();
            }
        }
        self.unlink(id.0);
        let conn = self.conns.remove(id.0 as usize);
        if conn.control != NIL {
            if let Some(t) = self.conns.get_mut(conn.control as usize) {
                t.n_control = t.n_control.saturating_sub(1);
            }
        }
        Some(conn)
    }

    fn link(&mut self, id: u32, tick: u64) {
        let slot = slot_of(tick);
        let head = self.wheel[slot];
        {
            let c = &mut self.conns[id as usize];
            c.linked_tick = tick;
            c.wheel_prev = NIL;
            c.wheel_next = head;
        }
        if head != NIL {
            self.conns[head as usize].wheel_prev = id;
        }
        self.wheel[slot] = id;
    }

    fn unlink(&mut self, id: u32) {
        let (prev, next, tick) = {
            let c = &self.conns[id as usize];
            (c.wheel_prev, c.wheel_next, c.linked_tick)
        };
        if prev != NIL {
            self.conns[prev as usize].wheel_next = next;
        } else {
            self.wheel[slot_of(tick)] = next;
        }
        if next != NIL {
            self.conns[next as usize].wheel_prev = prev;
        }
    }

    /// Collects the connections whose expiry is at or before `now`, in no
    /// particular order, without removing them; entries met early are moved to
    /// their proper slots. The caller decides what expiry means (templates with
    /// controlled connections are extended, not removed).
    pub fn due(&mut self, now: Time, out: &mut Vec<ConnId>) {
        let now_tick = tick_of(now);
        if now_tick < self.wheel_cursor {
            return;
        }
        let span = (now_tick - self.wheel_cursor).min(WHEEL_SLOTS as u64 - 1);
        let first = now_tick - span;
        for tick in first..=now_tick {
            let slot = slot_of(tick);
            let mut cur = self.wheel[slot];
            while cur != NIL {
                let c = &self.conns[cur as usize];
                let next = c.wheel_next;
                if c.expires <= now {
                    out.push(ConnId(cur));
                } else {
                    let want = tick_of(c.expires);
                    if slot_of(want) != slot {
                        self.unlink(cur);
                        self.link(cur, want);
                    } else {
                        self.conns[cur as usize].linked_tick = want;
                    }
                }
                cur = next;
            }
        }
        // The current tick's slot may hold entries due later in this tick.
        self.wheel_cursor = now_tick;
    }

    /// The earliest time at which `due` can find something, if anything is tracked.
    pub fn next_deadline(&self) -> Option<Time> {
        if self.conns.is_empty() {
            return None;
        }
        Some(Time::from_millis(self.wheel_cursor * WHEEL_TICK_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(cport: u16) -> ConnKey {
        ConnKey {
            proto: 6,
            template: false,
            caddr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            cport,
            vaddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            vport: 80,
        }
    }

    fn new(cport: u16, secs: u64) -> NewConn {
        NewConn {
            key: key(cport),
            daddr: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2)),
            dport: 8080,
            dest: DestId(0),
            flags: ConnFlags::default(),
            state: 0,
            timeout: Span::from_secs(secs),
            control: None,
        }
    }

    fn due_at(t: &mut ConnTable, ms: u64) -> Vec<ConnId> {
        let mut v = Vec::new();
        t.due(Time::from_millis(ms), &mut v);
        v.sort();
        v
    }

    #[test]
    fn lookup_both_directions() {
        let mut t = ConnTable::new(7);
        let a = t.insert(new(1000, 10), Time::ZERO, true);
        let b = t.insert(new(1001, 10), Time::ZERO, false);
        assert_eq!(t.lookup_in(&key(1000)), Some(a));
        assert_eq!(t.lookup_in(&key(1001)), Some(b));
        assert_eq!(t.lookup_in(&key(1002)), None);
        let ok = t.get(a).map(Conn::out_key);
        assert_eq!(ok.and_then(|k| t.lookup_out(&k)), Some(a));
        let okb = t.get(b).map(Conn::out_key);
        assert_eq!(okb.and_then(|k| t.lookup_out(&k)), None);
        t.remove(a);
        assert_eq!(t.lookup_in(&key(1000)), None);
        assert_eq!(ok.and_then(|k| t.lookup_out(&k)), None);
        assert_eq!(t.lookup_in(&key(1001)), Some(b));
    }

    #[test]
    fn slab_spare_capacity_stays_under_an_eighth() {
        let mut t = ConnTable::new(3);
        for i in 0..50_000u16 {
            t.insert(new(i, 10), Time::ZERO, false);
            let len = t.conns.len();
            assert!(t.conns.capacity() <= len + (len / 8).max(MIN_GROWTH));
        }
        // Capacity reserved up front is used before any growth.
        let mut t = ConnTable::with_capacity(3, 5000);
        let cap = t.conns.capacity();
        for i in 0..5000u16 {
            t.insert(new(i, 10), Time::ZERO, false);
        }
        assert_eq!(t.conns.capacity(), cap);
    }

    #[test]
    fn expiry_is_exact_to_the_millisecond() {
        let mut t = ConnTable::new(1);
        let a = t.insert(new(1, 10), Time::ZERO, false);
        assert!(due_at(&mut t, 9_999).is_empty());
        assert_eq!(due_at(&mut t, 10_000), vec![a]);
    }

    #[test]
    fn refresh_later_and_earlier() {
        let mut t = ConnTable::new(1);
        let a = t.insert(new(1, 10), Time::ZERO, false);
        // Refreshed at 5 s with 10 s: due at 15 s, not 10 s.
        t.rearm(a, Time::from_secs(5));
        assert!(due_at(&mut t, 10_000).is_empty());
        assert!(due_at(&mut t, 14_999).is_empty());
        assert_eq!(due_at(&mut t, 15_000), vec![a]);
        // A shorter timeout moves it earlier.
        let b = t.insert(new(2, 900), Time::from_secs(15), false);
        t.refresh(b, Span::from_secs(2), Time::from_secs(16));
        assert_eq!(due_at(&mut t, 18_000), vec![a, b]);
    }

    #[test]
    fn beyond_the_wheel_horizon_and_time_jumps() {
        let mut t = ConnTable::new(1);
        let horizon = WHEEL_SLOTS as u64 * WHEEL_TICK_MS;
        let a = t.insert(new(1, 3 * horizon / 1000), Time::ZERO, false);
        let b = t.insert(new(2, 1), Time::ZERO, false);
        assert_eq!(due_at(&mut t, horizon + 5), vec![b]);
        t.remove(b);
        assert!(due_at(&mut t, 2 * horizon).is_empty());
        assert_eq!(due_at(&mut t, 3 * horizon / 1000 * 1000 + 1), vec![a]);
    }

    #[test]
    fn templates_count_controlled_conns_and_invalidation_hides_them() {
        let mut t = ConnTable::new(1);
        let mut tk = new(0, 360);
        tk.key.template = true;
        tk.flags.template = true;
        let tpl = t.insert(tk, Time::ZERO, false);
        let mut c = new(5, 60);
        c.control = Some(tpl);
        let conn = t.insert(c, Time::ZERO, false);
        assert_eq!(t.get(tpl).map(|c| c.n_control), Some(1));
        t.remove(conn);
        assert_eq!(t.get(tpl).map(|c| c.n_control), Some(0));
        let tpl_key = ConnKey {
            template: true,
            ..key(0)
        };
        assert_eq!(t.lookup_in(&tpl_key), Some(tpl));
        t.invalidate_template(tpl);
        assert_eq!(t.lookup_in(&tpl_key), None);
        assert_eq!(
            t.get(tpl).map(|c| (c.key.vport, c.dport)),
            Some((0xffff, 0xffff))
        );
        assert!(t.remove(tpl).is_some());
        assert!(t.is_empty());
    }
}
