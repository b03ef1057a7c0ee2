#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Virtual-time tests of the checker and pool machines against keepalived 2.2.7 rules.

use std::net::SocketAddr;

use rvs_core::time::{Span, Time};
use rvs_health::machine::*;
use rvs_health::Outcome;

fn pass() -> Outcome {
    Outcome::Pass { weight: None }
}
fn fail() -> Outcome {
    Outcome::Fail {
        reason: "refused".into(),
    }
}
fn secs(s: u64) -> Time {
    Time::from_secs(s)
}

fn timing(style: RetryStyle) -> CheckTiming {
    CheckTiming {
        connect_timeout: Span::from_secs(5),
        retry: 3,
        delay_before_retry: Span::from_secs(2),
        delay_loop: Span::from_secs(6),
        warmup: Span::from_secs(0),
        style,
    }
}

/// Drive a checker with instantaneous probes; returns the probe times and changes.
fn run(m: &mut CheckerMachine, outcomes: &[Outcome]) -> Vec<(u64, Option<CheckerChange>)> {
    outcomes
        .iter()
        .map(|o| {
            let at = m.poll_due().unwrap();
            m.start_probe(at);
            (at.as_millis() / 1000, m.handle_outcome(o, at))
        })
        .collect()
}

#[test]
fn tcp_failure_to_down_follows_retry_then_delay_loop() {
    let mut m = CheckerMachine::new(timing(RetryStyle::Connect), false, Time::ZERO, 0);
    // First probe at BOOTSTRAP_DELAY (1 s) with warmup 0; first pass at 1 s.
    let r = run(
        &mut m,
        &[pass(), fail(), fail(), fail(), fail(), fail(), pass()],
    );
    let times: Vec<u64> = r.iter().map(|x| x.0).collect();
    // pass@1 -> 7; fail@7 retry -> 9, 11, 13; 4th failure @13 is final -> down, +6 = 19;
    // down TCP keeps cycling: fail@19 -> retry @21 (pass: up at once).
    assert_eq!(times, vec![1, 7, 9, 11, 13, 19, 21]);
    let changes: Vec<_> = r.iter().map(|x| x.1).collect();
    assert_eq!(
        changes,
        vec![
            None,
            None,
            None,
            None,
            Some(CheckerChange::Down),
            None,
            Some(CheckerChange::Up)
        ]
    );
    assert!(m.is_up());
    assert_eq!(m.poll_due(), Some(secs(27)));
}

#[test]
fn first_failure_is_final_at_start() {
    let mut m = CheckerMachine::new(timing(RetryStyle::Connect), false, Time::ZERO, 0);
    let r = run(&mut m, &[fail()]);
    assert_eq!(r, vec![(1, Some(CheckerChange::Down))]);
    assert_eq!(m.poll_due(), Some(secs(7)));
}

#[test]
fn next_probe_counts_from_the_outcome_except_for_misc() {
    let mut tcp = CheckerMachine::new(timing(RetryStyle::Connect), false, Time::ZERO, 0);
    tcp.start_probe(secs(1));
    tcp.handle_outcome(&pass(), secs(4));
    assert_eq!(tcp.poll_due(), Some(secs(10)));
    let mut misc = CheckerMachine::new(timing(RetryStyle::Script), false, Time::ZERO, 0);
    misc.start_probe(secs(1));
    misc.handle_outcome(&pass(), secs(4));
    assert_eq!(misc.poll_due(), Some(secs(7)));
}

#[test]
fn down_checker_cadence_depends_on_type() {
    // Each: go down at once (first failure), then keep failing.
    let down_times = |style| {
        let mut m = CheckerMachine::new(timing(style), false, Time::ZERO, 0);
        let r = run(&mut m, &[fail(), fail(), fail(), fail(), fail(), fail()]);
        r.iter().map(|x| x.0).collect::<Vec<_>>()
    };
    // TCP: cycles 3 retries (2 s) then delay_loop.
    assert_eq!(down_times(RetryStyle::Connect), vec![1, 7, 9, 11, 13, 19]);
    // DNS/SMTP/MISC: delay_loop only.
    assert_eq!(down_times(RetryStyle::UpOnly), vec![1, 7, 13, 19, 25, 31]);
    assert_eq!(down_times(RetryStyle::Script), vec![1, 7, 13, 19, 25, 31]);
    // UDP/PING: delay_before_retry forever.
    assert_eq!(down_times(RetryStyle::Datagram), vec![1, 7, 9, 11, 13, 15]);
}

#[test]
fn warmup_draw_is_within_range() {
    let mut t = timing(RetryStyle::Connect);
    t.warmup = Span::from_secs(60);
    let now = secs(100);
    let lo = CheckerMachine::new(t, false, now, 0).poll_due().unwrap();
    let hi = CheckerMachine::new(t, false, now, u64::MAX)
        .poll_due()
        .unwrap();
    let mid = CheckerMachine::new(t, false, now, u64::MAX / 2)
        .poll_due()
        .unwrap();
    assert_eq!(lo, secs(101));
    assert_eq!(hi, secs(161));
    assert_eq!(mid.as_millis(), 131_000 - 1);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = CheckerMachine::new(t, false, now, x).poll_due().unwrap();
        assert!(at >= secs(101) && at <= secs(161), "{at}");
    }
}

#[test]
fn alpha_starts_down_and_comes_up_on_first_pass() {
    let mut m = CheckerMachine::new(timing(RetryStyle::Connect), true, Time::ZERO, 0);
    assert!(!m.is_up());
    let r = run(&mut m, &[pass()]);
    assert_eq!(r, vec![(1, Some(CheckerChange::Up))]);
    let mut m = CheckerMachine::new(timing(RetryStyle::Connect), true, Time::ZERO, 0);
    let r = run(&mut m, &[fail()]);
    assert_eq!(r, vec![(1, Some(CheckerChange::FirstVerdictNotify))]);
    assert!(!m.is_up());
}

#[test]
fn http_needs_failed_url_then_full_pass_to_recover() {
    let style = RetryStyle::Http {
        url_count: 2,
        fast_recovery: false,
    };
    let mut t = timing(style);
    t.retry = 1;
    let mut m = CheckerMachine::new(t, false, Time::ZERO, 0);
    // url0 pass @1 (next url after delay_loop), url1 pass @7 -> full pass, up confirmed.
    // @13 url0 fails (retry 1 -> +2), @15 fails again -> down, failed url probed every 6.
    let r = run(
        &mut m,
        &[
            pass(),
            pass(),
            fail(),
            fail(),
            fail(),
            pass(),
            pass(),
            pass(),
        ],
    );
    let urls_and_times: Vec<u64> = r.iter().map(|x| x.0).collect();
    assert_eq!(urls_and_times, vec![1, 7, 13, 15, 21, 27, 33, 39]);
    assert_eq!(r[3].1, Some(CheckerChange::Down));
    // @27 failed url passes: reset, no state change; @33 url0, @39 url1 -> up.
    assert_eq!(r[5].1, None);
    assert_eq!(r[6].1, None);
    assert_eq!(r[7].1, Some(CheckerChange::Up));
}

#[test]
fn http_fast_recovery_probes_at_once_after_failed_url_passes() {
    let style = RetryStyle::Http {
        url_count: 1,
        fast_recovery: true,
    };
    let mut t = timing(style);
    t.retry = 0;
    let mut m = CheckerMachine::new(t, false, Time::ZERO, 0);
    let r = run(&mut m, &[pass(), fail(), pass(), pass()]);
    // down @7; failed url passes @13 -> at once @13 -> up.
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![1, 7, 13, 13]
    );
    assert_eq!(r[3].1, Some(CheckerChange::Up));
}

// ---- pool ----

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 80))
}

fn rs(n: u8, weight: u32, checkers: usize) -> RealServerConfig {
    RealServerConfig {
        address: addr(n),
        weight,
        inhibit_on_failure: false,
        checkers: (0..checkers)
            .map(|i| CheckerConfig {
                timing: CheckTiming {
                    retry: 0,
                    ..timing(RetryStyle::Connect)
                },
                alpha: false,
                identity: i as u64,
            })
            .collect(),
    }
}

fn pool_config(servers: Vec<RealServerConfig>) -> PoolConfig {
    PoolConfig {
        real_servers: servers,
        sorry_server: None,
        quorum: 1,
        hysteresis: 0,
        omega: false,
    }
}

fn zero() -> impl FnMut() -> u64 {
    || 0
}

fn id(server: usize, checker: usize) -> CheckerId {
    CheckerId { server, checker }
}

fn table(pool: &ServicePool) -> Vec<(SocketAddr, u32, bool)> {
    pool.effective()
        .iter()
        .map(|e| (e.address, e.weight, e.sorry))
        .collect()
}

#[test]
fn server_is_up_only_while_all_checkers_are_up() {
    let (mut pool, ev) = ServicePool::new(&pool_config(vec![rs(1, 5, 2)]), Time::ZERO, &mut zero());
    assert_eq!(ev, vec![HealthEvent::QuorumUp]);
    assert_eq!(table(&pool), vec![(addr(1), 5, false)]);
    let ev = pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(1)), HealthEvent::QuorumDown]
    );
    assert!(table(&pool).is_empty());
    let ev = pool.handle_outcome(id(0, 1), &fail(), secs(1)).unwrap();
    assert!(ev.is_empty());
    // One checker recovers: still down.
    let ev = pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    assert!(ev.is_empty());
    assert_eq!(pool.is_server_up(addr(1)), Some(false));
    let ev = pool.handle_outcome(id(0, 1), &pass(), secs(7)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerUp(addr(1)), HealthEvent::QuorumUp]
    );
    assert_eq!(table(&pool), vec![(addr(1), 5, false)]);
}

#[test]
fn inhibit_on_failure_keeps_weight_zero_instead_of_removing() {
    let mut a = rs(1, 5, 1);
    a.inhibit_on_failure = true;
    let (mut pool, _) =
        ServicePool::new(&pool_config(vec![a, rs(2, 3, 1)]), Time::ZERO, &mut zero());
    pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    pool.handle_outcome(id(1, 0), &fail(), secs(1)).unwrap();
    assert_eq!(table(&pool), vec![(addr(1), 0, false)]);
    pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    assert_eq!(table(&pool), vec![(addr(1), 5, false)]);
}

#[test]
fn alpha_inhibit_server_starts_in_table_with_weight_zero() {
    let mut a = rs(1, 5, 1);
    a.inhibit_on_failure = true;
    a.checkers[0].alpha = true;
    let (mut pool, ev) = ServicePool::new(&pool_config(vec![a]), Time::ZERO, &mut zero());
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(table(&pool), vec![(addr(1), 0, false)]);
    assert!(!pool.quorum_up());
    // alpha first failure: notify_down again, no change.
    let ev = pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    assert_eq!(ev, vec![HealthEvent::ServerDown(addr(1))]);
    let ev = pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerUp(addr(1)), HealthEvent::QuorumUp]
    );
    assert_eq!(table(&pool), vec![(addr(1), 5, false)]);
}

#[test]
fn misc_dynamic_weight_changes_weight_while_up() {
    let mut a = rs(1, 5, 1);
    a.checkers[0].timing.style = RetryStyle::Script;
    let (mut pool, _) = ServicePool::new(&pool_config(vec![a]), Time::ZERO, &mut zero());
    let ev = pool
        .handle_outcome(id(0, 0), &Outcome::Pass { weight: Some(40) }, secs(1))
        .unwrap();
    assert_eq!(ev, vec![HealthEvent::WeightChanged(addr(1), 40)]);
    assert_eq!(table(&pool), vec![(addr(1), 40, false)]);
    // exit 0 with misc_dynamic: back to the configured weight.
    pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    assert_eq!(table(&pool), vec![(addr(1), 5, false)]);
    pool.handle_outcome(id(0, 0), &Outcome::Pass { weight: Some(9) }, secs(13))
        .unwrap();
    // Final failure drops the dynamic weight silently; the server leaves the table.
    let ev = pool.handle_outcome(id(0, 0), &fail(), secs(19)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(1)), HealthEvent::QuorumDown]
    );
    assert_eq!(pool.server_weight(addr(1)), Some(5));
}

fn quorum_pool(quorum: u32, hysteresis: u32, sorry_inhibit: Option<bool>) -> ServicePool {
    let mut cfg = pool_config(vec![rs(1, 1, 1), rs(2, 1, 1), rs(3, 1, 1), rs(4, 1, 1)]);
    cfg.quorum = quorum;
    cfg.hysteresis = hysteresis;
    cfg.sorry_server = sorry_inhibit.map(|inhibit| SorryServerConfig {
        address: addr(99),
        inhibit,
    });
    ServicePool::new(&cfg, Time::ZERO, &mut zero()).0
}

#[test]
fn quorum_lost_below_quorum_minus_hysteresis_and_regained_at_plus() {
    // quorum 3, hysteresis 1: lost below 2, gained at 4.
    let mut pool = quorum_pool(3, 1, Some(false));
    assert!(pool.quorum_up());
    assert!(
        pool.handle_outcome(id(0, 0), &fail(), secs(1))
            .unwrap()
            .len()
            == 1
    ); // sum 3
    let ev = pool.handle_outcome(id(1, 0), &fail(), secs(1)).unwrap(); // sum 2 == q-h
    assert_eq!(ev, vec![HealthEvent::ServerDown(addr(2))]);
    assert!(pool.quorum_up());
    let ev = pool.handle_outcome(id(2, 0), &fail(), secs(1)).unwrap(); // sum 1 < 2
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(3)), HealthEvent::QuorumDown]
    );
    // Sorry server in, the remaining live server out.
    assert_eq!(table(&pool), vec![(addr(99), 1, true)]);
    // Back to 3 (= quorum, < quorum + hysteresis): still down, table unchanged.
    pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    let ev = pool.handle_outcome(id(1, 0), &pass(), secs(7)).unwrap();
    assert_eq!(ev, vec![HealthEvent::ServerUp(addr(2))]);
    assert_eq!(table(&pool), vec![(addr(99), 1, true)]);
    let ev = pool.handle_outcome(id(2, 0), &pass(), secs(7)).unwrap(); // sum 4
    assert_eq!(
        ev,
        vec![HealthEvent::ServerUp(addr(3)), HealthEvent::QuorumUp]
    );
    assert_eq!(
        table(&pool),
        vec![
            (addr(1), 1, false),
            (addr(2), 1, false),
            (addr(3), 1, false),
            (addr(4), 1, false)
        ]
    );
}

#[test]
fn no_live_weight_loses_quorum_even_when_threshold_is_zero() {
    // quorum 1, hysteresis 0 ... clamp: hysteresis must be < quorum.
    let mut cfg = pool_config(vec![rs(1, 1, 1)]);
    cfg.quorum = 1;
    cfg.hysteresis = 5;
    let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut zero());
    assert_eq!(pool.quorum_settings(), (1, 0));
    let ev = pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(1)), HealthEvent::QuorumDown]
    );
}

#[test]
fn quorum_loss_without_sorry_server_keeps_live_servers() {
    let mut pool = quorum_pool(3, 0, None);
    pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    let ev = pool.handle_outcome(id(1, 0), &fail(), secs(1)).unwrap();
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(2)), HealthEvent::QuorumDown]
    );
    assert_eq!(table(&pool), vec![(addr(3), 1, false), (addr(4), 1, false)]);
}

#[test]
fn sorry_server_inhibit_stays_with_weight_zero() {
    let mut pool = quorum_pool(4, 0, Some(true));
    assert_eq!(table(&pool).last(), Some(&(addr(99), 0, true)));
    pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    // Quorum lost: the live servers leave, the sorry server gets its weight.
    assert_eq!(table(&pool), vec![(addr(99), 1, true)]);
    pool.handle_outcome(id(0, 0), &pass(), secs(7)).unwrap();
    assert_eq!(table(&pool).len(), 5);
    assert_eq!(table(&pool).last(), Some(&(addr(99), 0, true)));
}

#[test]
fn starting_below_quorum_puts_the_sorry_server_in() {
    let mut cfg = pool_config(vec![rs(1, 1, 1), rs(2, 1, 1)]);
    for s in &mut cfg.real_servers {
        s.checkers[0].alpha = true;
    }
    cfg.sorry_server = Some(SorryServerConfig {
        address: addr(99),
        inhibit: false,
    });
    let (pool, ev) = ServicePool::new(&cfg, Time::ZERO, &mut zero());
    assert_eq!(ev, vec![HealthEvent::QuorumDown]);
    assert_eq!(table(&pool), vec![(addr(99), 1, true)]);
}

#[test]
fn reconfigure_keeps_state_of_unchanged_servers() {
    let cfg = pool_config(vec![rs(1, 1, 1), rs(2, 1, 1)]);
    let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut zero());
    pool.handle_outcome(id(0, 0), &fail(), secs(1)).unwrap();
    assert_eq!(pool.is_server_up(addr(1)), Some(false));
    // New config: server 2 removed, server 3 added (plain) and server 4 added (alpha).
    let mut alpha = rs(4, 1, 1);
    alpha.checkers[0].alpha = true;
    let new_cfg = pool_config(vec![rs(3, 1, 1), rs(1, 1, 1), alpha]);
    let ev = pool.reconfigure(&new_cfg, secs(10), &mut zero());
    // keepalived judges the old virtual server (no live weight left: quorum_down) but
    // the new one inherits the old quorum flag, and server 3 keeps it up.
    assert_eq!(
        ev,
        vec![HealthEvent::ServerDown(addr(2)), HealthEvent::QuorumDown]
    );
    assert!(pool.quorum_up());
    assert_eq!(pool.is_server_up(addr(1)), Some(false));
    assert_eq!(pool.is_server_up(addr(3)), Some(true));
    assert_eq!(pool.is_server_up(addr(4)), Some(false));
    assert_eq!(table(&pool), vec![(addr(3), 1, false)]);
    // Kept server 1 (now index 1) recovers with one pass; the checker is registered
    // again at now + 1 s.
    assert_eq!(pool.checker(id(1, 0)).unwrap().poll_due(), Some(secs(11)));
    let ev = pool.handle_outcome(id(1, 0), &pass(), secs(11)).unwrap();
    assert_eq!(ev, vec![HealthEvent::ServerUp(addr(1))]);
}

#[test]
fn poll_due_returns_earliest_and_skips_probing_checkers() {
    let cfg = pool_config(vec![rs(1, 1, 1), rs(2, 1, 1)]);
    let mut draws = [u64::MAX, 0].into_iter();
    let mut cfg2 = cfg.clone();
    for s in &mut cfg2.real_servers {
        s.checkers[0].timing.warmup = Span::from_secs(10);
    }
    let (mut pool, _) = ServicePool::new(&cfg2, Time::ZERO, &mut || draws.next().unwrap());
    assert_eq!(pool.poll_due(), Some((id(1, 0), secs(1))));
    pool.start_probe(id(1, 0), secs(1)).unwrap();
    assert_eq!(pool.poll_due(), Some((id(0, 0), secs(11))));
    pool.handle_outcome(id(1, 0), &pass(), secs(2)).unwrap();
    assert_eq!(pool.poll_due(), Some((id(1, 0), secs(8))));
}

#[test]
fn omega_controls_notifications_at_shutdown() {
    let mut cfg = pool_config(vec![rs(1, 1, 1)]);
    let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut zero());
    assert!(pool.clear(true).is_empty());
    assert!(table(&pool).is_empty());
    cfg.omega = true;
    let (mut pool, _) = ServicePool::new(&cfg, Time::ZERO, &mut zero());
    assert_eq!(
        pool.clear(true),
        vec![HealthEvent::ServerDown(addr(1)), HealthEvent::QuorumDown]
    );
}
