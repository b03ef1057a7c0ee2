//! The `bulk` client: K parallel connections, each receiving the deterministic
//! stream from a `bulk` backend to EOF; checks every stream's length and checksum
//! and reports the aggregate throughput.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::pattern::{self, Checksum};
use crate::report::JsonLine;
use crate::runner::{self, RuntimeKind};

const READ_BUF: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct BulkConfig {
    /// Streams go to these addresses in turn.
    pub targets: Vec<SocketAddr>,
    pub streams: usize,
    /// Bytes each stream must deliver (the backends' `--bytes`).
    pub bytes: u64,
    /// Limit for one whole stream.
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct BulkResult {
    /// Bytes received over all streams, good or bad.
    pub total_bytes: u64,
    pub ok_streams: u64,
    /// Streams that failed to connect, broke, or timed out.
    pub errors: u64,
    /// Streams that ended with the wrong length.
    pub length_mismatches: u64,
    /// Streams of the right length whose checksum differed.
    pub checksum_failures: u64,
    /// From the start to the end of the last stream.
    pub elapsed: Duration,
}

impl BulkResult {
    pub fn gbit_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total_bytes as f64 * 8.0 / secs / 1e9
        } else {
            0.0
        }
    }

    fn merge(&mut self, o: BulkResult) {
        self.total_bytes += o.total_bytes;
        self.ok_streams += o.ok_streams;
        self.errors += o.errors;
        self.length_mismatches += o.length_mismatches;
        self.checksum_failures += o.checksum_failures;
        self.elapsed = self.elapsed.max(o.elapsed);
    }

    pub fn to_json(&self, config: &BulkConfig) -> String {
        let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
        JsonLine::new()
            .str("mode", "bulk")
            .str("target", &targets.join(","))
            .int("streams", config.streams as u64)
            .int("bytes_per_stream", config.bytes)
            .int("total_bytes", self.total_bytes)
            .num("seconds", self.elapsed.as_secs_f64(), 3)
            .num("gbit_s", self.gbit_per_s(), 3)
            .int("ok_streams", self.ok_streams)
            .int("errors", self.errors)
            .int("length_mismatches", self.length_mismatches)
            .int("checksum_failures", self.checksum_failures)
            .finish()
    }
}

/// How one stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    Ok,
    Error,
    WrongLength,
    BadChecksum,
}

/// Runs all streams on `threads` threads; the expected checksum is computed before
/// the clock starts.
pub fn run(config: BulkConfig, threads: usize, kind: RuntimeKind) -> std::io::Result<BulkResult> {
    let expected = pattern::stream_checksum(config.bytes);
    let config = Arc::new(config);
    let threads = threads.clamp(1, config.streams.max(1));
    let start = Instant::now();
    let shards = runner::run_shards(threads, kind, move |i| {
        let config = config.clone();
        async move {
            let first = (0..i)
                .map(|j| runner::share(config.streams, threads, j))
                .sum::<usize>();
            let count = runner::share(config.streams, threads, i);
            run_streams(config, first, count, expected, start).await
        }
    })?;
    let mut total = BulkResult::default();
    for s in shards {
        total.merge(s);
    }
    Ok(total)
}

/// Streams `first..first+count` on the current runtime.
pub async fn run_streams(
    config: Arc<BulkConfig>,
    first: usize,
    count: usize,
    expected: u64,
    start: Instant,
) -> BulkResult {
    let mut tasks = tokio::task::JoinSet::new();
    for k in first..first + count {
        let config = config.clone();
        tasks.spawn(async move {
            let target = config.targets[k % config.targets.len()];
            let received = tokio::time::timeout(config.timeout, receive(target))
                .await
                .unwrap_or(Err(0));
            let end = Instant::now();
            (judge(received, config.bytes, expected), received, end)
        });
    }
    let mut out = BulkResult::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((outcome, received, end)) = joined else {
            out.errors += 1;
            continue;
        };
        out.total_bytes += match received {
            Ok((n, _)) | Err(n) => n,
        };
        match outcome {
            StreamOutcome::Ok => out.ok_streams += 1,
            StreamOutcome::Error => out.errors += 1,
            StreamOutcome::WrongLength => out.length_mismatches += 1,
            StreamOutcome::BadChecksum => out.checksum_failures += 1,
        }
        out.elapsed = out.elapsed.max(end.saturating_duration_since(start));
    }
    out
}

/// Judges a finished stream: `Ok((length, checksum))`, or `Err(bytes so far)` if it
/// broke.
pub fn judge(received: Result<(u64, u64), u64>, bytes: u64, expected: u64) -> StreamOutcome {
    match received {
        Err(_) => StreamOutcome::Error,
        Ok((n, _)) if n != bytes => StreamOutcome::WrongLength,
        Ok((_, sum)) if sum != expected => StreamOutcome::BadChecksum,
        Ok(_) => StreamOutcome::Ok,
    }
}

/// Reads one stream to EOF: its length and checksum, or the bytes read before an
/// error.
async fn receive(target: SocketAddr) -> Result<(u64, u64), u64> {
    let mut stream = TcpStream::connect(target).await.map_err(|_| 0u64)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut sum = Checksum::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => sum.update(&buf[..n]),
            Err(_) => return Err(sum.len()),
        }
    }
    Ok((sum.len(), sum.finish()))
}
