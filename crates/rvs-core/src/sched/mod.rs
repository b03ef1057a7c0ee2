//! The IPVS schedulers, one module per algorithm as the kernel has one file per
//! algorithm (net/netfilter/ipvs/ip_vs_<name>.c), and the interface they share.
//!
//! A scheduler sees the service's destinations in the kernel's list order
//! ([`DestSet`], position 0 = the head = the destination added last) and returns the
//! position of its pick. It is told about every change the kernel tells its
//! schedulers about (`add_dest`, `del_dest`, `upd_dest` -> [`DestChange`]) and, so
//! that indexed schedulers can stay sub-linear, about every change to a destination's
//! connection counts or overload flag (`load_changed`). Invariant: `schedule` never
//! returns a destination that is overloaded or has weight 0.

use std::fmt;
use std::net::IpAddr;

use slab::Slab;

use crate::dest::{Dest, DestId};
use crate::error::ConfigError;
use crate::model::SchedFlags;
use crate::time::{Span, Time};

pub mod dh;
pub mod fo;
pub mod hash;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod load_tree;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

/// The schedulers rvs implements, by their ipvsadm names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Mh,
    Twos,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Twos => "twos",
        }
    }

    /// Parses an ipvsadm scheduler name.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| ConfigError::UnknownScheduler(name.to_string()))
    }

    /// Whether the kernel's algorithm may return a destination whose OVERLOAD flag
    /// (upper connection threshold) is set. Only lblc: on a cache hit it checks its
    /// own load rule, not the flag (ip_vs_lblc.c `ip_vs_lblc_schedule`; confirmed
    /// on the real IPVS, tests/golden/lblc.golden). No scheduler returns weight 0.
    pub fn may_pick_overloaded(self) -> bool {
        self == SchedulerKind::Lblc
    }

    /// Creates the scheduler for a service whose destinations are `dests`
    /// (the kernel's `init_service`).
    pub fn build(self, dests: DestSet<'_>, params: &SchedParams) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::Rr => Box::new(rr::RoundRobin::new()),
            SchedulerKind::Wrr => Box::new(wrr::WeightedRoundRobin::new(dests)),
            SchedulerKind::Lc => Box::new(lc::LeastConnection::new(dests)),
            SchedulerKind::Wlc => Box::new(wlc::WeightedLeastConnection::new(dests)),
            SchedulerKind::Sed => Box::new(sed::ShortestExpectedDelay::new(dests)),
            SchedulerKind::Nq => Box::new(nq::NeverQueue::new(dests)),
            SchedulerKind::Fo => Box::new(fo::WeightedFailover::new(dests)),
            SchedulerKind::Ovf => Box::new(ovf::WeightedOverflow::new(dests)),
            SchedulerKind::Lblc => Box::new(lblc::LocalityLeastConnection::new(
                dests,
                lblc::DEFAULT_EXPIRATION,
            )),
            SchedulerKind::Lblcr => Box::new(lblcr::LocalityLeastConnectionReplicated::new(
                dests,
                lblcr::DEFAULT_EXPIRATION,
            )),
            SchedulerKind::Dh => Box::new(dh::DestinationHashing::new(dests)),
            SchedulerKind::Sh => Box::new(sh::SourceHashing::new(dests, params.sh_tab_bits)),
            SchedulerKind::Mh => Box::new(mh::MaglevHashing::new(dests, params.mh_tab_size)),
            SchedulerKind::Twos => Box::new(twos::TwoChoices::new(dests)),
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Build-time knobs the kernel sets with Kconfig options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// `CONFIG_IP_VS_SH_TAB_BITS`, 4..=20, default 8 (256 buckets).
    pub sh_tab_bits: u32,
    /// `CONFIG_IP_VS_MH_TAB_INDEX` as the prime table size, default 4093.
    pub mh_tab_size: u32,
}

impl Default for SchedParams {
    fn default() -> Self {
        SchedParams {
            sh_tab_bits: sh::DEFAULT_TAB_BITS,
            mh_tab_size: mh::DEFAULT_TAB_SIZE,
        }
    }
}

impl SchedParams {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(4..=20).contains(&self.sh_tab_bits) {
            return Err(ConfigError::ShTableBits(self.sh_tab_bits));
        }
        if !mh::PRIMES.contains(&self.mh_tab_size) {
            return Err(ConfigError::MhTableSize(self.mh_tab_size));
        }
        Ok(())
    }
}

/// The destinations of one service, in the kernel's list order.
#[derive(Clone, Copy)]
pub struct DestSet<'a> {
    order: &'a [DestId],
    slab: &'a Slab<Dest>,
}

impl<'a> DestSet<'a> {
    /// `order` must name only destinations present in `slab`.
    pub fn new(order: &'a [DestId], slab: &'a Slab<Dest>) -> Self {
        DestSet { order, slab }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The destination at list position `pos`.
    pub fn get(&self, pos: usize) -> &'a Dest {
        &self.slab[self.order[pos].index()]
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a Dest> + ExactSizeIterator + 'a {
        let slab = self.slab;
        self.order.iter().map(move |id| &slab[id.index()])
    }
}

impl fmt::Debug for DestSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.order.iter()).finish()
    }
}

/// What changed in a service's destination list (the kernel's add_dest, del_dest
/// and upd_dest callbacks). Positions are list positions after the change for
/// `Added`/`Updated`, and before it for `Removed` (whose id may later be reused
/// for another destination, so caches keyed by id must drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestChange {
    Added(usize),
    Removed(usize, DestId),
    Updated(usize),
}

/// A source of random numbers (twos draws from it). Tests inject a fixed sequence.
pub trait RandomSource {
    fn next_u32(&mut self) -> u32;
}

/// A small deterministic generator (xorshift64*), seeded by the caller.
#[derive(Clone, Debug)]
pub struct XorShiftRandom(u64);

impl XorShiftRandom {
    pub fn new(seed: u64) -> Self {
        XorShiftRandom(seed | 1)
    }
}

impl RandomSource for XorShiftRandom {
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
}

/// What a scheduler may look at in the packet that opens a connection.
pub struct SchedInput<'a> {
    /// IP protocol number of the packet.
    pub proto: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// The service's scheduler flags (sh-port, mh-fallback, ...).
    pub flags: SchedFlags,
    pub now: Time,
    pub rng: &'a mut dyn RandomSource,
}

/// One IPVS scheduling algorithm bound to one service.
pub trait Scheduler: fmt::Debug + Send {
    fn kind(&self) -> SchedulerKind;

    /// The destination list changed (kernel `add_dest`/`del_dest`/`upd_dest`).
    fn dests_changed(&mut self, _dests: DestSet<'_>, _change: DestChange) {}

    /// The connection counts or overload flag of the destination at `pos` changed.
    fn load_changed(&mut self, _dests: DestSet<'_>, _pos: usize) {}

    /// Picks a destination for a new connection; `None` if none is available.
    fn schedule(&mut self, dests: DestSet<'_>, input: &mut SchedInput<'_>) -> Option<usize>;

    /// Periodic housekeeping (lblc/lblcr table expiry); called at least every
    /// few seconds by the owner with the current time.
    fn tick(&mut self, _now: Time) {}

    /// The `lblc_expiration` / `lblcr_expiration` sysctl of this scheduler's
    /// kind changed (only lblc and lblcr have one).
    fn set_expiration(&mut self, _expiration: Span) {}
}

/// Test helpers shared by the scheduler modules.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::model::{DestConfig, Forward};
    use crate::service::ServiceId;
    use std::net::Ipv4Addr;

    /// A destination list built in the kernel's order: `specs[0]` is the head.
    pub struct Fixture {
        pub slab: Slab<Dest>,
        pub order: Vec<DestId>,
    }

    /// (weight, active, inactive, overloaded) per destination, head first.
    pub fn fixture(specs: &[(u32, u32, u32, bool)]) -> Fixture {
        let mut slab = Slab::new();
        let mut order = Vec::new();
        for (i, &(w, a, ina, ov)) in specs.iter().enumerate() {
            let entry = slab.vacant_entry();
            let id = DestId(entry.key() as u32);
            let mut cfg =
                DestConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 0, (i + 1) as u8)), 80);
            cfg.weight = w;
            cfg.forward = Forward::Route;
            let mut d = Dest::new(id, cfg, ServiceId(0));
            d.active_conns = a;
            d.inactive_conns = ina;
            d.overloaded = ov;
            entry.insert(d);
            order.push(id);
        }
        Fixture { slab, order }
    }

    impl Fixture {
        pub fn set(&self) -> DestSet<'_> {
            DestSet::new(&self.order, &self.slab)
        }
        pub fn dest_mut(&mut self, pos: usize) -> &mut Dest {
            &mut self.slab[self.order[pos].index()]
        }
    }

    pub fn input(rng: &mut dyn RandomSource) -> SchedInput<'_> {
        SchedInput {
            proto: 6,
            saddr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            sport: 40000,
            daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dport: 80,
            flags: SchedFlags::default(),
            now: Time::ZERO,
            rng,
        }
    }
}

/// Properties every scheduler must have, checked on the schedulers directly (the
/// director also guards, which would hide a scheduler's mistake).
#[cfg(test)]
mod props {
    use super::testutil::fixture;
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_picks_an_overloaded_or_quiesced_server(
            spec in prop::collection::vec(
                (prop_oneof![Just(0u32), 1u32..5, 1u32..1000], 0u32..20, 0u32..50, prop::bool::weighted(0.25)),
                1..24,
            ),
            flows in prop::collection::vec((any::<u32>(), any::<u16>(), 0u8..4, any::<u8>()), 1..60),
            flag1 in any::<bool>(),
            flag2 in any::<bool>(),
        ) {
            for kind in SchedulerKind::ALL {
                let mut fx = fixture(&spec);
                let mut sched = kind.build(fx.set(), &SchedParams::default());
                let mut rng = XorShiftRandom::new(u64::from(spec.len() as u32) + 7);
                for (i, &(saddr, sport, vip, change)) in flows.iter().enumerate() {
                    let now = Time::from_secs(i as u64 * 7);
                    let mut input = SchedInput {
                        proto: 6,
                        saddr: IpAddr::V4(Ipv4Addr::from(saddr)),
                        sport,
                        daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, vip)),
                        dport: 80,
                        flags: SchedFlags { flag1, flag2, flag3: false },
                        now,
                        rng: &mut rng,
                    };
                    if let Some(pos) = sched.schedule(fx.set(), &mut input) {
                        prop_assert!(pos < spec.len(), "{kind}: position {pos} out of range");
                        let d = fx.set().get(pos);
                        let ok = d.schedulable() || (kind.may_pick_overloaded() && d.weight() > 0);
                        prop_assert!(ok, "{kind} picked {pos}: weight {} overloaded {}", d.weight(), d.overloaded);
                        // The pick gains a connection, as the director would record.
                        fx.dest_mut(pos).active_conns += 1;
                        sched.load_changed(fx.set(), pos);
                    }
                    // Now and then flip a server's overload flag or weight.
                    let pos = usize::from(change) % spec.len();
                    if change % 5 == 0 {
                        let d = fx.dest_mut(pos);
                        d.overloaded = !d.overloaded;
                        sched.load_changed(fx.set(), pos);
                    } else if change % 7 == 0 {
                        let d = fx.dest_mut(pos);
                        d.config.weight = if d.config.weight == 0 { 3 } else { 0 };
                        if d.config.weight != 0 {
                            d.last_weight = d.config.weight;
                        }
                        sched.dests_changed(fx.set(), DestChange::Updated(pos));
                    }
                    sched.tick(now);
                }
            }
        }
    }
}
