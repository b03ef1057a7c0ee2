//! The `cps` client: short request/response connections as fast as possible with a
//! fixed number in flight (closed loop), against `reqresp` backends directly or
//! through a proxy. Measures connections per second, errors, per-backend answer
//! counts and latency from connect start to the last response byte.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::{BackendId, ID_LEN};
use crate::report::{JsonLine, Latency};
use crate::runner::{self, RuntimeKind};

#[derive(Clone, Debug)]
pub struct CpsConfig {
    /// Connections go to these addresses in turn.
    pub targets: Vec<SocketAddr>,
    pub concurrency: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Connections started before this much time has passed are not counted.
    pub warmup: Duration,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// Limit for one whole connection.
    pub timeout: Duration,
}

/// Why a connection did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    Connect,
    Io,
    /// EOF before the full response (or more bytes than expected).
    WrongLength,
    Timeout,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Io => "io",
            Failure::WrongLength => "wrong_length",
            Failure::Timeout => "timeout",
        }
    }
}

/// The outcome of a run (or of one shard of it).
#[derive(Clone, Debug, Default)]
pub struct CpsResult {
    pub connections: u64,
    pub failures: BTreeMap<Failure, u64>,
    /// Answers per backend id.
    pub by_backend: BTreeMap<BackendId, u64>,
    /// Latency of every counted connection, ns.
    pub latencies_ns: Vec<u64>,
    /// From the end of the warm-up to the last counted connection's end.
    pub elapsed: Duration,
}

impl CpsResult {
    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.connections as f64 / secs
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: CpsResult) {
        self.connections += other.connections;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in other.by_backend {
            *self.by_backend.entry(k).or_default() += v;
        }
        self.latencies_ns.extend(other.latencies_ns);
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// The JSON line printed on stdout; sorts the latency samples.
    pub fn to_json(&mut self, config: &CpsConfig) -> String {
        let latency = Latency::from_ns(&mut self.latencies_ns);
        let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
        let ids: Vec<(String, u64)> = self
            .by_backend
            .iter()
            .map(|(id, n)| (id.to_string(), *n))
            .collect();
        JsonLine::new()
            .str("mode", "cps")
            .str("target", &targets.join(","))
            .int("concurrency", config.concurrency as u64)
            .num("seconds", self.elapsed.as_secs_f64(), 3)
            .int("connections", self.connections)
            .num("cps", self.per_second(), 1)
            .int("errors", self.errors())
            .counts(
                "failures",
                self.failures.iter().map(|(f, n)| (f.name(), *n)),
            )
            .latency(&latency)
            .counts("backends", ids.iter().map(|(id, n)| (id.as_str(), *n)))
            .finish()
    }
}

/// Runs the whole measurement on `threads` threads.
pub fn run(config: CpsConfig, threads: usize, kind: RuntimeKind) -> std::io::Result<CpsResult> {
    let config = Arc::new(config);
    let threads = threads.clamp(1, config.concurrency.max(1));
    let next_target = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let shards = runner::run_shards(threads, kind, move |i| {
        let config = config.clone();
        let next_target = next_target.clone();
        async move {
            let conc = runner::share(config.concurrency, threads, i);
            run_shard(config, conc, start, next_target).await
        }
    })?;
    let mut total = CpsResult::default();
    for s in shards {
        total.merge(s);
    }
    Ok(total)
}

/// One shard: `concurrency` loops on the current runtime. `start` is shared by all
/// shards so they measure the same window.
pub async fn run_shard(
    config: Arc<CpsConfig>,
    concurrency: usize,
    start: Instant,
    next_target: Arc<AtomicUsize>,
) -> CpsResult {
    let measure_from = start + config.warmup;
    let deadline = measure_from + config.duration;
    let request: Arc<[u8]> = vec![b'q'; config.request_bytes].into();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let config = config.clone();
        let request = request.clone();
        let next_target = next_target.clone();
        tasks.spawn(async move {
            let mut out = CpsResult::default();
            let mut buf = vec![0u8; config.response_bytes.clamp(ID_LEN, 64 * 1024)];
            let mut last_end = measure_from;
            while Instant::now() < deadline {
                let n = next_target.fetch_add(1, Ordering::Relaxed);
                let target = config.targets[n % config.targets.len()];
                let t0 = Instant::now();
                let outcome = tokio::time::timeout(
                    config.timeout,
                    one_connection(target, &request, config.response_bytes, &mut buf),
                )
                .await
                .unwrap_or(Err(Failure::Timeout));
                let end = Instant::now();
                let counted = t0 >= measure_from;
                match outcome {
                    Ok((id, last_byte)) => {
                        if counted {
                            out.connections += 1;
                            *out.by_backend.entry(id).or_default() += 1;
                            out.latencies_ns.push(
                                u64::try_from((last_byte - t0).as_nanos()).unwrap_or(u64::MAX),
                            );
                        }
                    }
                    Err(f) => {
                        if counted {
                            *out.failures.entry(f).or_default() += 1;
                        }
                        // Do not spin on a refused port.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                if counted {
                    last_end = end;
                }
            }
            out.elapsed = last_end.saturating_duration_since(measure_from);
            out
        });
    }
    let mut total = CpsResult::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(r) = r {
            total.merge(r);
        }
    }
    total
}

/// Connect, send the request, read the answer to EOF. Returns the backend id and
/// when the last response byte arrived.
async fn one_connection(
    target: SocketAddr,
    request: &[u8],
    response_bytes: usize,
    buf: &mut [u8],
) -> Result<(BackendId, Instant), Failure> {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|_| Failure::Connect)?;
    stream.set_nodelay(true).map_err(|_| Failure::Io)?;
    stream.write_all(request).await.map_err(|_| Failure::Io)?;
    let mut id = [0u8; ID_LEN];
    let mut got = 0usize;
    let mut last_byte = Instant::now();
    loop {
        let n = stream.read(buf).await.map_err(|_| Failure::Io)?;
        if n == 0 {
            break;
        }
        if got < ID_LEN {
            let take = (ID_LEN - got).min(n);
            id[got..got + take].copy_from_slice(&buf[..take]);
        }
        got += n;
        if got >= response_bytes {
            last_byte = Instant::now();
        }
    }
    if got != response_bytes {
        return Err(Failure::WrongLength);
    }
    Ok((BackendId(id), last_byte))
}
