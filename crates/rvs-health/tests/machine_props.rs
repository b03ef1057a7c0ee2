#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Randomised properties of the pool. proptest is not a dev-dependency of this crate
//! (its Cargo.toml belongs to another change), so the cases come from a seeded
//! xorshift generator: every seed is reproducible and printed on failure.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use rvs_core::time::{Span, Time};
use rvs_health::machine::*;
use rvs_health::Outcome;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(rng: &mut Rng) -> PoolConfig {
    let styles = [
        RetryStyle::Connect,
        RetryStyle::UpOnly,
        RetryStyle::Script,
        RetryStyle::Datagram,
        RetryStyle::Http {
            url_count: 2,
            fast_recovery: true,
        },
    ];
    let servers = (0..1 + rng.below(4))
        .map(|n| RealServerConfig {
            address: SocketAddr::from(([10, 0, 0, n as u8 + 1], 80)),
            weight: rng.below(4) as u32,
            inhibit_on_failure: rng.below(2) == 0,
            checkers: (0..rng.below(3))
                .map(|i| CheckerConfig {
                    timing: CheckTiming {
                        connect_timeout: Span::from_secs(1),
                        retry: rng.below(3) as u32,
                        delay_before_retry: Span::from_secs(1 + rng.below(3)),
                        delay_loop: Span::from_secs(1 + rng.below(6)),
                        warmup: Span::from_secs(rng.below(5)),
                        style: styles[rng.below(styles.len() as u64) as usize],
                    },
                    alpha: rng.below(3) == 0,
                    identity: i,
                })
                .collect(),
        })
        .collect();
    PoolConfig {
        real_servers: servers,
        // The sorry server may share an address with a real server (keepalived allows it).
        sorry_server: (rng.below(2) == 0).then(|| SorryServerConfig {
            address: SocketAddr::from(([10, 0, 0, 1 + rng.below(5) as u8], 80)),
            inhibit: rng.below(2) == 0,
        }),
        quorum: 1 + rng.below(6) as u32,
        hysteresis: rng.below(3) as u32,
        omega: false,
    }
}

fn check_invariants(pool: &ServicePool, cfg: &PoolConfig, seed: u64) {
    let table = pool.effective();
    let unique: BTreeSet<_> = table.iter().map(|e| e.address).collect();
    assert_eq!(
        unique.len(),
        table.len(),
        "seed {seed}: duplicate in {table:?}"
    );
    for (s, rs) in cfg.real_servers.iter().enumerate() {
        let all_up = (0..rs.checkers.len()).all(|c| {
            pool.checker(CheckerId {
                server: s,
                checker: c,
            })
            .unwrap()
            .is_up()
        });
        assert_eq!(
            pool.is_server_up(rs.address),
            Some(all_up),
            "seed {seed}: server {s}"
        );
    }
}

#[test]
fn server_state_is_all_checkers_up_and_table_has_no_duplicates() {
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let cfg = config(&mut rng);
        let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut || rng.next());
        let mut rng = Rng(seed | 1);
        check_invariants(&pool, &cfg, seed);
        for _ in 0..60 {
            let Some((id, at)) = pool.poll_due() else {
                break;
            };
            pool.start_probe(id, at).unwrap();
            let outcome = match rng.below(3) {
                0 => Outcome::Fail { reason: "x".into() },
                1 => Outcome::Pass { weight: None },
                _ => Outcome::Pass {
                    weight: Some(rng.below(5) as u32),
                },
            };
            let done = at + Span::from_millis(rng.below(500));
            pool.handle_outcome(id, &outcome, done).unwrap();
            assert!(pool.poll_due().is_some_and(|(_, t)| t >= at), "seed {seed}");
            check_invariants(&pool, &cfg, seed);
        }
    }
}

#[test]
fn reconfigure_with_same_config_keeps_server_states() {
    for seed in 1..200u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
        let cfg = config(&mut rng);
        let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut || rng.next());
        for _ in 0..30 {
            let Some((id, at)) = pool.poll_due() else {
                break;
            };
            let outcome = if rng.below(2) == 0 {
                Outcome::Fail { reason: "x".into() }
            } else {
                Outcome::Pass { weight: None }
            };
            pool.handle_outcome(id, &outcome, at).unwrap();
        }
        let before: Vec<_> = cfg
            .real_servers
            .iter()
            .map(|rs| pool.is_server_up(rs.address))
            .collect();
        let has_run: Vec<bool> = cfg
            .real_servers
            .iter()
            .enumerate()
            .flat_map(|(s, rs)| {
                (0..rs.checkers.len()).map(move |c| CheckerId {
                    server: s,
                    checker: c,
                })
            })
            .map(|id| pool.checker(id).unwrap().has_run())
            .collect();
        pool.reconfigure(&cfg, Time::from_secs(1000), &mut || rng.next());
        let after: Vec<_> = cfg
            .real_servers
            .iter()
            .map(|rs| pool.is_server_up(rs.address))
            .collect();
        // A server whose checkers have all run keeps its state exactly.
        let mut k = 0;
        for (s, rs) in cfg.real_servers.iter().enumerate() {
            let all_run = has_run[k..k + rs.checkers.len()].iter().all(|&r| r);
            k += rs.checkers.len();
            if all_run {
                assert_eq!(before[s], after[s], "seed {seed}: server {s}");
            }
        }
        check_invariants(&pool, &cfg, seed);
    }
}
