//! Connection-table operations at 1M and 10M tracked connections.
//!
//! The table is filled once per size (like the director fills it: `ConnTable::new`,
//! growing as it goes) with connections whose timeouts are spread uniformly over
//! 1..=900 s, then:
//!
//! * `insert`: inserts fresh keys (timed), then removes them again (untimed), so the
//!   size stays at N. Any growth of the slab or index it triggers is included.
//! * `lookup_hit` / `lookup_miss`: `lookup_in` of a random live key / of a key never
//!   inserted. Random keys: these are cache-missing lookups, as on a real director.
//! * `refresh`: `rearm` of a random live connection at the current time (the
//!   common case: the expiry moves later and the entry stays in its wheel slot).
//! * `expire`: time advances one wheel tick (256 ms) at a time; `due` then `remove`
//!   of each due connection, reported per expired connection. Expired connections
//!   are re-inserted untimed (expiring 900 s later), so the size stays at N.
//!
//! Connections are DR-style (not in the out-index), with IPv4 addresses.

// A benchmark harness, not library code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rvs_core::conn::{ConnFlags, ConnTable, NewConn};
use rvs_core::{ConnId, ConnKey, DestId, Span, Time};

const SIZES: [u64; 2] = [1_000_000, 10_000_000];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const TICK: u64 = 256;

fn key(i: u64) -> ConnKey {
    ConnKey {
        proto: 6,
        template: false,
        caddr: IpAddr::V4(Ipv4Addr::from(
            0x6400_0000u32.wrapping_add((i / 60_000) as u32),
        )),
        cport: 1024 + (i % 60_000) as u16,
        vaddr: IpAddr::V4(VIP),
        vport: 80,
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn conn(k: ConnKey, i: u64, timeout: Span) -> NewConn {
    let d = (i % 1000) as u32;
    NewConn {
        key: k,
        daddr: IpAddr::V4(Ipv4Addr::from(0xac10_0000u32 + d)),
        dport: 8080,
        dest: DestId(d),
        flags: ConnFlags {
            inactive: true,
            no_output: true,
            ..ConnFlags::default()
        },
        state: 0,
        timeout,
        control: None,
    }
}

fn spread_timeout(i: u64) -> Span {
    Span::from_millis(1_000 + mix(i) % 900_000)
}

struct Bed {
    t: ConnTable,
    n: u64,
    now: Time,
    /// Next never-used key number (all of 0..n are live at the start).
    fresh: u64,
    rng: u64,
}

impl Bed {
    fn new(n: u64) -> Self {
        let mut t = ConnTable::new(0x05ee_d1b5);
        for i in 0..n {
            t.insert(conn(key(i), i, spread_timeout(i)), Time::ZERO, false);
        }
        Bed {
            t,
            n,
            now: Time::ZERO,
            fresh: 2 * n,
            rng: 0x1234_5678,
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng = mix(self.rng);
        self.rng
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_table");
    for &n in &SIZES {
        let mut bed = Bed::new(n);
        assert_eq!(bed.t.len() as u64, n);

        g.bench_function(BenchmarkId::new("insert", n), |b| {
            b.iter_custom(|iters| {
                let first = bed.fresh;
                let mut ids = Vec::with_capacity(iters as usize);
                let now = bed.now;
                let start = Instant::now();
                for k in first..first + iters {
                    ids.push(
                        bed.t
                            .insert(conn(key(k), k, Span::from_secs(60)), now, false),
                    );
                }
                let el = start.elapsed();
                bed.fresh += iters;
                for id in ids {
                    bed.t.remove(id);
                }
                el
            })
        });
        assert_eq!(bed.t.len() as u64, n);

        g.bench_function(BenchmarkId::new("lookup_hit", n), |b| {
            b.iter(|| {
                let i = bed.rand() % bed.n;
                let hit = bed.t.lookup_in(&key(i));
                debug_assert!(hit.is_some());
                black_box(hit)
            })
        });

        g.bench_function(BenchmarkId::new("lookup_miss", n), |b| {
            b.iter(|| {
                // Keys 2n..4n are never live while this runs (insert used and
                // removed keys from 2n onwards; none is left).
                let i = 2 * bed.n + bed.rand() % (2 * bed.n);
                black_box(bed.t.lookup_in(&key(i)))
            })
        });

        g.bench_function(BenchmarkId::new("refresh", n), |b| {
            b.iter(|| {
                let i = bed.rand() % bed.n;
                bed.t.rearm(ConnId(i as u32), bed.now);
            })
        });

        let mut due = Vec::new();
        g.bench_function(BenchmarkId::new("expire", n), |b| {
            b.iter_custom(|iters| {
                let mut done = 0u64;
                let mut el = Duration::ZERO;
                while done < iters {
                    bed.now = bed.now + Span::from_millis(TICK);
                    due.clear();
                    let start = Instant::now();
                    bed.t.due(bed.now, &mut due);
                    let mut removed = Vec::with_capacity(due.len());
                    for &id in &due {
                        if let Some(c) = bed.t.remove(id) {
                            removed.push(c);
                        }
                    }
                    el += start.elapsed();
                    done += removed.len() as u64;
                    for (j, c) in removed.into_iter().enumerate() {
                        bed.t
                            .insert(conn(c.key, j as u64, Span::from_secs(900)), bed.now, false);
                    }
                }
                // Per expired connection.
                el.mul_f64(iters as f64 / done as f64)
            })
        });
        assert_eq!(bed.t.len() as u64, n);
        drop(bed);
    }
    g.finish();
}

fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench
}
criterion_main!(benches);
