//! The load generator against its own backends on 127.0.0.1: reqresp answers carry
//! the backend's id and are spread over targets, bulk streams verify (and a relay
//! that flips one byte is caught), echo honours half-close, hold stays silent, idle
//! opens and holds. Each test takes well under a second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_loadgen::backend::{self, BackendConfig, BackendId, Mode};
use rvs_loadgen::bulk::{self, BulkConfig};
use rvs_loadgen::cps::{self, CpsConfig};
use rvs_loadgen::idle::{self, IdleConfig};
use rvs_loadgen::pattern;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(mode: Mode, id: &str) -> BackendConfig {
    BackendConfig {
        mode,
        id: id.parse().unwrap(),
        request_bytes: 10,
        response_bytes: 100,
        bytes: 3 * pattern::PERIOD as u64 / 2 + 5,
    }
}

/// Starts a backend on an ephemeral loopback port of the current runtime.
fn start_backend(config: BackendConfig) -> SocketAddr {
    let listener = backend::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(backend::serve(listener, config));
    addr
}

#[tokio::test]
async fn reqresp_answers_carry_the_backend_id_and_targets_take_turns() {
    let a = start_backend(config(Mode::Reqresp, "alpha"));
    let b = start_backend(config(Mode::Reqresp, "beta-2"));

    // By hand: the answer is exactly 100 bytes and starts with the padded id.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(&[b'x'; 10]).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer.len(), 100);
    assert_eq!(&answer[..8], b"alpha   ");

    let config = Arc::new(CpsConfig {
        targets: vec![a, b],
        concurrency: 4,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        request_bytes: 10,
        response_bytes: 100,
        timeout: Duration::from_secs(2),
    });
    let mut r = cps::run_shard(
        config.clone(),
        4,
        Instant::now(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(r.errors(), 0, "{:?}", r.failures);
    assert!(r.connections > 50, "only {} connections", r.connections);
    let ids: Vec<String> = r.by_backend.keys().map(BackendId::to_string).collect();
    assert_eq!(ids, ["alpha", "beta-2"]);
    let (na, nb) = (
        r.by_backend.values().next().copied().unwrap(),
        r.by_backend.values().nth(1).copied().unwrap(),
    );
    assert!(na.abs_diff(nb) <= 4, "turns are uneven: {na} vs {nb}");
    assert_eq!(r.latencies_ns.len() as u64, r.connections);
    let json = r.to_json(&config);
    assert!(json.contains("\"backends\":{\"alpha\":"), "{json}");
    assert!(json.contains("\"errors\":0,"), "{json}");
}

#[tokio::test]
async fn reqresp_with_the_wrong_answer_size_is_an_error() {
    let a = start_backend(config(Mode::Reqresp, "short"));
    let config = Arc::new(CpsConfig {
        targets: vec![a],
        concurrency: 1,
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        request_bytes: 10,
        // The backend answers 100 bytes: the client expecting 101 must complain.
        response_bytes: 101,
        timeout: Duration::from_secs(2),
    });
    let r = cps::run_shard(config, 1, Instant::now(), Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(r.connections, 0);
    assert!(
        r.failures
            .get(&cps::Failure::WrongLength)
            .copied()
            .unwrap_or(0)
            > 0,
        "{:?}",
        r.failures
    );
}

/// A one-connection relay to `upstream` that XORs byte `flip_at` of the
/// upstream-to-client direction with 0x01.
async fn corrupting_relay(upstream: SocketAddr, flip_at: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(upstream).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut seen = 0usize;
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if (seen..seen + n).contains(&flip_at) {
                buf[flip_at - seen] ^= 0x01;
            }
            seen += n;
            client.write_all(&buf[..n]).await.unwrap();
        }
        client.shutdown().await.unwrap();
    });
    addr
}

#[tokio::test]
async fn bulk_streams_verify_and_a_flipped_byte_is_caught() {
    let cfg = config(Mode::Bulk, "bulk");
    let bytes = cfg.bytes;
    let origin = start_backend(cfg);
    let expected = pattern::stream_checksum(bytes);
    let run = |targets: Vec<SocketAddr>, streams: usize| {
        let config = Arc::new(BulkConfig {
            targets,
            streams,
            bytes,
            timeout: Duration::from_secs(5),
        });
        bulk::run_streams(config, 0, streams, expected, Instant::now())
    };

    let good = run(vec![origin], 3).await;
    assert_eq!(
        (good.ok_streams, good.errors, good.checksum_failures),
        (3, 0, 0)
    );
    assert_eq!(good.total_bytes, 3 * bytes);

    // Past the first block, so the repetition of the stream cannot hide it.
    let relay = corrupting_relay(origin, pattern::PERIOD + 12_345).await;
    let bad = run(vec![relay], 1).await;
    assert_eq!(bad.total_bytes, bytes, "the relay passes every byte");
    assert_eq!((bad.ok_streams, bad.checksum_failures), (0, 1));
}

#[test]
fn bulk_judge_separates_length_and_content() {
    use bulk::{judge, StreamOutcome};
    assert_eq!(judge(Ok((10, 7)), 10, 7), StreamOutcome::Ok);
    assert_eq!(judge(Ok((9, 7)), 10, 7), StreamOutcome::WrongLength);
    assert_eq!(judge(Ok((10, 8)), 10, 7), StreamOutcome::BadChecksum);
    assert_eq!(judge(Err(3), 10, 7), StreamOutcome::Error);
}

#[tokio::test]
async fn echo_returns_everything_after_a_half_close() {
    let addr = start_backend(config(Mode::Echo, "echo"));
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await.unwrap();
        // FIN: the backend must still write the rest back, then close.
        wr.shutdown().await.unwrap();
        wr
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut back))
        .await
        .expect("echo backend did not close after the client's FIN")
        .unwrap();
    let _wr = writer.await.unwrap();
    assert_eq!(back, sent);
}

#[tokio::test]
async fn hold_stays_silent_and_idle_holds_every_connection() {
    let addr = start_backend(config(Mode::Hold, "hold"));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let quiet = tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await;
    assert!(quiet.is_err(), "hold backend sent or closed: {quiet:?}");

    let config = IdleConfig {
        targets: vec![addr],
        conns: 200,
        batch: 64,
        hold: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
    };
    let mut announced = None;
    let r = idle::run(&config, |n| announced = Some(n)).await;
    assert_eq!(announced, Some(200));
    assert_eq!((r.opened, r.failed, r.closed_by_peer), (200, 0, 0));
}

#[tokio::test]
async fn idle_notices_connections_the_peer_closed() {
    // A server that accepts and closes at once: every held connection is dead.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let config = IdleConfig {
        targets: vec![addr],
        conns: 20,
        batch: 20,
        hold: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
    };
    let r = idle::run(&config, |_| {}).await;
    assert_eq!(r.opened, 20);
    assert_eq!(r.closed_by_peer, 20);
}
