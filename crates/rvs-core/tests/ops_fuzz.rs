//! The `director_ops` fuzz target's operation decoder, run as a bounded,
//! deterministic property test so that every `cargo test` exercises it: random
//! byte strings become sequences of control changes, packets in and out, and time
//! steps, and the director is checked after each operation (see tests/ops/mod.rs).

mod ops;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

fn config() -> Config {
    Config {
        cases: 600,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0005_eed0_f0a5),
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn director_ops(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let ops = ops::decode(&data, 1000);
        if let Err(e) = ops::run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Hand-picked sequences that reach deep paths quickly (a NAT service with
/// persistence, connections in both directions, a big time jump).
#[test]
fn director_ops_seeds() {
    for seed in seeds() {
        let ops = ops::decode(&seed, 1000);
        ops::run(&ops).unwrap();
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        vec![0; 64],
        (0..=255).collect(),
        vec![0xff; 300],
    ]
}

/// How deep random inputs reach (run with --ignored --nocapture to see).
#[test]
#[ignore]
fn director_ops_reach() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let strat = prop::collection::vec(any::<u8>(), 0..4096);
    let mut r = ops::Reach::default();
    for _ in 0..384 {
        let data = strat.new_tree(&mut runner).unwrap().current();
        ops::reach(&ops::decode(&data, 1000), &mut r);
    }
    println!("{r:#?}");
}

/// Replays a fuzzer input file (`OPS_FUZZ_INPUT=path`), printing each operation
/// and the first failure: `cargo test --test ops_fuzz replay -- --ignored --nocapture`.
#[test]
#[ignore]
fn replay() {
    let Ok(path) = std::env::var("OPS_FUZZ_INPUT") else {
        return;
    };
    let data = std::fs::read(path).unwrap();
    let ops = ops::decode(&data, usize::MAX);
    for (i, op) in ops.iter().enumerate() {
        println!("{i}: {op:?}");
    }
    if let Err(e) = ops::run(&ops) {
        println!("FAILED: {e}");
    }
}

/// Found by this fuzzer (see BENCHMARKS.md, "Fuzzing"): a persistence template
/// whose expiry is extended by a minute while it still controls a connection
/// (`ip_vs_conn_expire` -> EXPIRE_LATER) stayed in the timer-wheel slot it was
/// first linked at, behind the wheel's cursor, so it was next examined only when
/// that slot came round again (up to 4096 ticks = ~17.5 min later). Fixed in
/// `ConnTable::rearm`, which now relinks entries that sit behind the cursor.
#[test]
fn extended_template_expires_on_time() {
    use rvs_core::{
        DestConfig, Director, Packet, Persistence, Protocol, ServiceConfig, ServiceKey, TcpFlags,
        Time,
    };
    use std::net::{IpAddr, Ipv4Addr};
    let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: vip,
        port: 80,
    };
    let mut d = Director::default();
    let mut cfg = ServiceConfig::new(key);
    cfg.persistence = Some(Persistence {
        timeout: 1,
        netmask: u32::MAX,
    });
    d.add_service(cfg).unwrap();
    d.add_dest(
        &key,
        DestConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)), 80),
    )
    .unwrap();
    // t=0: SYN -> template (expires 1 s) + connection (SYN_RECV).
    d.handle_in(
        &Packet::tcp(client, 40000, vip, 80, TcpFlags::SYN),
        Time::ZERO,
    );
    assert_eq!(d.conn_count(), 2);
    // t=2 s: the template is due but controls the connection: kept 60 s more.
    d.handle_timeout(Time::from_secs(2), |_, _| {});
    let (_, t) = d.conns().find(|(_, c)| c.flags.template).unwrap();
    assert_eq!(t.expires, Time::from_secs(62));
    // t=61 s: the connection (SYN_RECV, 60 s) expires.
    d.handle_timeout(Time::from_secs(61), |_, _| {});
    assert_eq!(d.conn_count(), 1, "only the template is left");
    // t=63 s: the template (expiring at 62 s, controlling nothing) must be gone.
    d.handle_timeout(Time::from_secs(63), |_, _| {});
    let left: Vec<_> = d.conns().map(|(_, c)| c.expires).collect();
    assert!(
        left.is_empty(),
        "template still tracked, expiring at {left:?}"
    );
}
