//! How a subcommand's work is spread over OS threads: either one tokio
//! `current_thread` runtime per thread, each running its own shard of the work
//! (`per-thread`, no work stealing, no cross-thread wake-ups), or one multi-thread
//! runtime running every shard as a task (`multi`). With one thread both are a
//! single `current_thread` runtime.

use std::future::Future;
use std::io;

/// Which tokio runtime layout runs the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// One current_thread runtime per thread, each with its own shard.
    PerThread,
    /// One multi-thread runtime whose workers share all shards.
    Multi,
}

/// A single-threaded runtime, for work that is not sharded (servers, the idle
/// holder) or for tests.
pub fn current_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A runtime of `threads` workers: `current_thread` when `threads` is 1.
pub fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        return current_thread();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// Runs `make(shard)` for every shard in `0..threads` as laid out by `kind` and
/// returns the shards' results in shard order.
pub fn run_shards<R, F, Fut>(threads: usize, kind: RuntimeKind, make: F) -> io::Result<Vec<R>>
where
    R: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let threads = threads.max(1);
    if threads == 1 {
        return Ok(vec![current_thread()?.block_on(make(0))]);
    }
    match kind {
        RuntimeKind::Multi => {
            let rt = runtime(threads)?;
            rt.block_on(async move {
                let handles: Vec<_> = (0..threads).map(|i| tokio::spawn(make(i))).collect();
                let mut out = Vec::with_capacity(threads);
                for h in handles {
                    out.push(h.await.map_err(io::Error::other)?);
                }
                Ok(out)
            })
        }
        RuntimeKind::PerThread => {
            let make = std::sync::Arc::new(make);
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let make = make.clone();
                    std::thread::Builder::new()
                        .name(format!("loadgen-{i}"))
                        .spawn(move || current_thread().map(|rt| rt.block_on(make(i))))
                })
                .collect::<io::Result<_>>()?;
            let mut out = Vec::with_capacity(threads);
            for h in handles {
                let r = h
                    .join()
                    .map_err(|_| io::Error::other("a load-generator thread panicked"))??;
                out.push(r);
            }
            Ok(out)
        }
    }
}

/// The share of `total` that shard `index` of `shards` takes (the first
/// `total % shards` shards take one more).
pub fn share(total: usize, shards: usize, index: usize) -> usize {
    let shards = shards.max(1);
    total / shards + usize::from(index < total % shards)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 5, 64, 1001] {
            for shards in 1..6 {
                let s: usize = (0..shards).map(|i| share(total, shards, i)).sum();
                assert_eq!(s, total);
            }
        }
    }
}
