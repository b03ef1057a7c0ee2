//! Scheduler decision cost at 10, 100, 1,000 and 10,000 real servers, for every
//! scheduler in `SchedulerKind::ALL`.
//!
//! Three groups:
//!
//! * `sched_decide/<kind>/<n>`: one `Scheduler::schedule` call on a service of `n`
//!   destinations with varied weights (1..=100) and varied loads (active
//!   0..2*weight, inactive 0..4000), loads frozen. Clients cycle through 4,096 random
//!   (address, port) pairs so hashing schedulers see varied keys.
//! * `sched_lifecycle/<kind>/<n>`: one decision plus the four load-change
//!   notifications the director makes over one TCP connection's life (bind as
//!   inactive, ESTABLISHED -> active, FIN -> inactive, expiry -> unbind), the
//!   last two applied to the connection picked 1,024 decisions earlier so the
//!   population stays steady. This is the honest per-connection cost for the
//!   indexed (lc/wlc/sed/nq/fo/ovf) schedulers.
//! * `director_udp_one_packet/<kind>/<n>`: the full `Director::handle_in` path for a
//!   UDP datagram to a one-packet fwmark service: service lookup, decision,
//!   connection insert, bind (+notification), counters, state, immediate expiry
//!   (remove, unbind, +notification). Loads come from 16 TCP connections per server
//!   opened beforehand (round robin, half of them then ESTABLISHED at random).
//!
//! Plus `sched_decide_quiesced/<kind>/10000`: like `sched_decide` with 90 % of the
//! servers at weight 0, to show which schedulers scan over unavailable servers.
//!
//! The fixture builds the service through the director's public API and clones its
//! destinations into a `Slab<Dest>` at the same keys, so no crate-private
//! constructor is needed.

// A benchmark harness, not library code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rvs_core::sched::{DestSet, RandomSource, SchedInput, Scheduler, XorShiftRandom};
use rvs_core::{
    Dest, DestConfig, DestId, Director, Family, InVerdict, Packet, Protocol, SchedParams,
    SchedulerKind, ServiceConfig, ServiceKey, TcpFlags, Time,
};
use slab::Slab;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const CLIENTS: usize = 4096;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn dest_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xac10_0000u32 + i as u32 + 1))
}

fn clients(seed: u64) -> Vec<(IpAddr, u16)> {
    let mut rng = XorShiftRandom::new(seed);
    (0..CLIENTS)
        .map(|_| {
            let a = Ipv4Addr::from(rng.next_u32());
            let p = 1024 + (rng.next_u32() % 60_000) as u16;
            (IpAddr::V4(a), p)
        })
        .collect()
}

struct Fixture {
    slab: Slab<Dest>,
    order: Vec<DestId>,
}

impl Fixture {
    fn set(&self) -> DestSet<'_> {
        DestSet::new(&self.order, &self.slab)
    }

    fn dest_mut(&mut self, pos: usize) -> &mut Dest {
        &mut self.slab[self.order[pos].0 as usize]
    }
}

/// `n` destinations with weights 1..=100 (or 0 for a `quiesced` fraction in
/// per mille) and random loads, built through the director and cloned out.
fn fixture(n: usize, quiesced_per_mille: u32) -> Fixture {
    let mut rng = XorShiftRandom::new(0x5eed ^ n as u64);
    let mut d = Director::default();
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    };
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    d.add_service(cfg).unwrap();
    for i in 0..n {
        let mut dc = DestConfig::new(dest_addr(i), 8080);
        dc.weight = if rng.next_u32() % 1000 < quiesced_per_mille {
            0
        } else {
            1 + rng.next_u32() % 100
        };
        d.add_dest(&key, dc).unwrap();
    }
    let svc = d.service_by_key(&key).unwrap();
    let order = svc.dest_ids().to_vec();
    let slab: Slab<Dest> = order
        .iter()
        .map(|id| (id.0 as usize, d.dest(*id).unwrap().clone()))
        .collect();
    let mut fx = Fixture { slab, order };
    for pos in 0..n {
        let d = fx.dest_mut(pos);
        // Active 0..2*weight: about half the servers are under their weight,
        // which is what ovf looks for; inactive 0..4000.
        d.active_conns = rng.next_u32() % (2 * d.weight().max(1));
        d.inactive_conns = rng.next_u32() % 4000;
    }
    fx
}

fn input<'a>(c: (IpAddr, u16), rng: &'a mut XorShiftRandom) -> SchedInput<'a> {
    SchedInput {
        proto: 6,
        saddr: c.0,
        sport: c.1,
        daddr: IpAddr::V4(VIP),
        dport: 80,
        flags: Default::default(),
        now: Time::ZERO,
        rng,
    }
}

fn build(kind: SchedulerKind, fx: &Fixture) -> Box<dyn Scheduler> {
    kind.build(fx.set(), &SchedParams::default())
}

fn bench_decide(c: &mut Criterion) {
    let cl = clients(1);
    let mut g = c.benchmark_group("sched_decide");
    for &n in &SIZES {
        let fx = fixture(n, 0);
        for kind in SchedulerKind::ALL {
            let mut s = build(kind, &fx);
            let mut rng = XorShiftRandom::new(42);
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    i = (i + 1) % CLIENTS;
                    let mut inp = input(cl[i], &mut rng);
                    black_box(s.schedule(fx.set(), &mut inp))
                })
            });
        }
    }
    g.finish();
}

fn bench_quiesced(c: &mut Criterion) {
    let cl = clients(2);
    let mut g = c.benchmark_group("sched_decide_quiesced");
    let n = 10_000;
    let fx = fixture(n, 900);
    for kind in SchedulerKind::ALL {
        let mut s = build(kind, &fx);
        let mut rng = XorShiftRandom::new(42);
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
            b.iter(|| {
                i = (i + 1) % CLIENTS;
                let mut inp = input(cl[i], &mut rng);
                black_box(s.schedule(fx.set(), &mut inp))
            })
        });
    }
    g.finish();
}

/// In-flight connections whose FIN and expiry are applied later.
const RING: usize = 1024;

fn bench_lifecycle(c: &mut Criterion) {
    let cl = clients(3);
    let mut g = c.benchmark_group("sched_lifecycle");
    for &n in &SIZES {
        for kind in SchedulerKind::ALL {
            let mut fx = fixture(n, 0);
            let mut s = build(kind, &fx);
            let mut rng = XorShiftRandom::new(42);
            let mut ring: VecDeque<usize> = VecDeque::with_capacity(RING + 1);
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    i = (i + 1) % CLIENTS;
                    let mut inp = input(cl[i], &mut rng);
                    if let Some(p) = s.schedule(fx.set(), &mut inp) {
                        // bind: counted inactive.
                        fx.dest_mut(p).inactive_conns += 1;
                        s.load_changed(fx.set(), p);
                        // ESTABLISHED: inactive -> active.
                        let d = fx.dest_mut(p);
                        d.inactive_conns -= 1;
                        d.active_conns += 1;
                        s.load_changed(fx.set(), p);
                        ring.push_back(p);
                    }
                    if ring.len() > RING {
                        if let Some(q) = ring.pop_front() {
                            // FIN: active -> inactive.
                            let d = fx.dest_mut(q);
                            d.active_conns -= 1;
                            d.inactive_conns += 1;
                            s.load_changed(fx.set(), q);
                            // expiry: unbind.
                            fx.dest_mut(q).inactive_conns -= 1;
                            s.load_changed(fx.set(), q);
                        }
                    }
                })
            });
        }
    }
    g.finish();
}

const FWMARK: u32 = 7;

/// A one-packet fwmark service of `n` destinations with varied weights, loaded with
/// 16 TCP connections per destination (half ESTABLISHED), then switched to `kind`.
fn director_fixture(kind: SchedulerKind, n: usize) -> Director {
    let mut rng = XorShiftRandom::new(0xd1 ^ n as u64);
    let mut d = Director::default();
    let key = ServiceKey::Fwmark {
        mark: FWMARK,
        family: Family::V4,
    };
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.one_packet = true;
    d.add_service(cfg.clone()).unwrap();
    for i in 0..n {
        let mut dc = DestConfig::new(dest_addr(i), 8080);
        dc.weight = 1 + rng.next_u32() % 100;
        d.add_dest(&key, dc).unwrap();
    }
    for j in 0..16 * n {
        let caddr = IpAddr::V4(Ipv4Addr::from(0x6400_0000u32 + (j / 50_000) as u32));
        let cport = 1024 + (j % 50_000) as u16;
        let mut p = Packet::tcp(caddr, cport, IpAddr::V4(VIP), 80, TcpFlags::SYN);
        p.fwmark = FWMARK;
        let v = d.handle_in(&p, Time::ZERO);
        assert!(matches!(v, InVerdict::Forward(_)), "{v:?}");
        if rng.next_u32().is_multiple_of(2) {
            p.tcp = TcpFlags::ACK;
            d.handle_in(&p, Time::ZERO);
        }
    }
    cfg.scheduler = kind;
    d.edit_service(cfg).unwrap();
    d.check_invariants().unwrap();
    d
}

fn bench_director(c: &mut Criterion) {
    let cl = clients(4);
    let mut g = c.benchmark_group("director_udp_one_packet");
    for &n in &SIZES {
        for kind in SchedulerKind::ALL {
            let mut d = director_fixture(kind, n);
            let conns = d.conn_count();
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    i = (i + 1) % CLIENTS;
                    let (a, port) = cl[i];
                    let mut p = Packet::udp(a, port, IpAddr::V4(VIP), 53);
                    p.fwmark = FWMARK;
                    black_box(d.handle_in(&p, Time::ZERO))
                })
            });
            // One-packet entries go at once: the table is unchanged.
            assert_eq!(d.conn_count(), conns);
            d.check_invariants().unwrap();
        }
    }
    g.finish();
}

fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench_decide, bench_quiesced, bench_lifecycle, bench_director
}
criterion_main!(benches);
