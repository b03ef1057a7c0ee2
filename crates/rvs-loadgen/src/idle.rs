//! The `idle` client: opens many connections in batches, announces when they are
//! all open, holds them without sending anything, then reports how many the other
//! side closed meanwhile and closes them all. Also raises RLIMIT_NOFILE, which the
//! other clients need at high concurrency too.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::report::JsonLine;

#[derive(Clone, Debug)]
pub struct IdleConfig {
    /// Connections go to these addresses in turn.
    pub targets: Vec<SocketAddr>,
    pub conns: usize,
    /// Connections opened concurrently in one batch of the ramp.
    pub batch: usize,
    pub hold: Duration,
    /// Limit for one connect.
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct IdleResult {
    pub opened: u64,
    pub failed: u64,
    pub ramp: Duration,
    /// Connections found closed by the peer at the end of the hold.
    pub closed_by_peer: u64,
}

impl IdleResult {
    pub fn to_json(&self, config: &IdleConfig) -> String {
        let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
        JsonLine::new()
            .str("mode", "idle")
            .str("target", &targets.join(","))
            .int("conns", config.conns as u64)
            .int("opened", self.opened)
            .int("failed", self.failed)
            .num("ramp_s", self.ramp.as_secs_f64(), 3)
            .num("hold_s", config.hold.as_secs_f64(), 3)
            .int("closed_by_peer", self.closed_by_peer)
            .finish()
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Opens the connections, calls `ready(opened)`, holds, closes.
pub async fn run(config: &IdleConfig, ready: impl FnOnce(u64)) -> IdleResult {
    let mut out = IdleResult::default();
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(config.conns);
    let batch = config.batch.max(1);
    let mut next = 0usize;
    while next < config.conns {
        let n = batch.min(config.conns - next);
        let mut tasks = tokio::task::JoinSet::new();
        for k in next..next + n {
            let target = config.targets[k % config.targets.len()];
            let limit = config.connect_timeout;
            tasks.spawn(async move {
                tokio::time::timeout(limit, TcpStream::connect(target))
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.ok().flatten() {
                Some(stream) => conns.push(stream),
                None => out.failed += 1,
            }
        }
        next += n;
    }
    out.ramp = started.elapsed();
    out.opened = conns.len() as u64;
    ready(out.opened);
    tokio::time::sleep(config.hold).await;
    let mut probe = [0u8; 64];
    for c in &conns {
        // Ok(0) is the peer's FIN; data or an error also means the peer did not
        // just hold the connection. WouldBlock: still open and silent.
        match c.try_read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => out.closed_by_peer += 1,
        }
    }
    drop(conns);
    out
}
