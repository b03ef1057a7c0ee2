//! `rvs-loadgen`: command line of the load generator. `backend` runs a real server;
//! `cps`, `bulk` and `idle` are the clients, each printing one JSON result line on
//! stdout and a human summary on stderr.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rvs_loadgen::backend::{self, BackendConfig, BackendId, Mode};
use rvs_loadgen::bulk::{self, BulkConfig};
use rvs_loadgen::cps::{self, CpsConfig};
use rvs_loadgen::idle::{self, IdleConfig};
use rvs_loadgen::runner::{self, RuntimeKind};

#[derive(Parser, Debug)]
#[command(
    name = "rvs-loadgen",
    version,
    about = "Load generator and demo real servers for TCP proxy benchmarks"
)]
struct Cli {
    /// OS threads running the work (1: a single current_thread runtime)
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// With more than one thread: one current_thread runtime per thread, each with
    /// its own share of the connections, or one multi-thread runtime
    #[arg(long, global = true, value_enum, default_value_t = RuntimeKind::PerThread)]
    runtime: RuntimeKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run real servers (until killed): one per --listen address, all in this process
    Backend {
        /// Address to serve; repeat (or separate with commas) for several backends
        #[arg(long, value_delimiter = ',', required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long, value_enum)]
        mode: Mode,
        /// reqresp: the id (1-8 bytes of text) that starts every answer; one for all
        /// backends, or one per --listen address, in the same order
        #[arg(long, value_delimiter = ',', default_value = "backend")]
        id: Vec<BackendId>,
        /// reqresp: request size read before answering
        #[arg(long, default_value_t = 64)]
        request_bytes: usize,
        /// reqresp: answer size (at least 8: the id)
        #[arg(long, default_value_t = 256)]
        response_bytes: usize,
        /// bulk: bytes of the deterministic stream sent on each connection
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
    },
    /// Short request/response connections as fast as possible, C in flight
    Cps {
        /// One address, or several separated by commas (used in turn)
        #[arg(long, value_delimiter = ',', required = true)]
        target: Vec<SocketAddr>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Measured seconds (after the warm-up)
        #[arg(long, value_parser = parse_secs, default_value = "10")]
        duration: Duration,
        /// Seconds of connections not counted, before the measurement
        #[arg(long, value_parser = parse_secs, default_value = "0")]
        warmup: Duration,
        #[arg(long, default_value_t = 64)]
        request_bytes: usize,
        #[arg(long, default_value_t = 256)]
        response_bytes: usize,
        /// Limit for one connection, seconds
        #[arg(long, value_parser = parse_secs, default_value = "5")]
        timeout: Duration,
    },
    /// K parallel streams from bulk backends, checksummed; Gbit/s
    Bulk {
        #[arg(long, value_delimiter = ',', required = true)]
        target: Vec<SocketAddr>,
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Bytes each stream must deliver (the backends' --bytes)
        #[arg(long)]
        bytes: u64,
        /// Limit for one stream, seconds
        #[arg(long, value_parser = parse_secs, default_value = "120")]
        timeout: Duration,
    },
    /// Open N connections, print {"ready":N}, hold them, close them
    Idle {
        #[arg(long, value_delimiter = ',', required = true)]
        target: Vec<SocketAddr>,
        #[arg(long)]
        conns: usize,
        /// Seconds to hold the connections once all are open
        #[arg(long, value_parser = parse_secs)]
        hold: Duration,
        /// Connections opened concurrently per batch of the ramp
        #[arg(long, default_value_t = 250)]
        batch: usize,
        /// Limit for one connect, seconds
        #[arg(long, value_parser = parse_secs, default_value = "10")]
        connect_timeout: Duration,
    },
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.threads == 0 {
        bail!("--threads must be at least 1");
    }
    // Every mode may hold thousands of sockets.
    match idle::raise_nofile_limit() {
        Ok(limit) if limit < 4096 => {
            eprintln!("rvs-loadgen: warning: RLIMIT_NOFILE is only {limit}")
        }
        Ok(_) => {}
        Err(e) => eprintln!("rvs-loadgen: warning: cannot raise RLIMIT_NOFILE: {e}"),
    }
    match cli.command {
        Command::Backend {
            listen,
            mode,
            id,
            request_bytes,
            response_bytes,
            bytes,
        } => {
            if id.len() != 1 && id.len() != listen.len() {
                bail!(
                    "{} --id values for {} --listen addresses: give one for all or one each",
                    id.len(),
                    listen.len()
                );
            }
            let configs: Vec<(SocketAddr, BackendConfig)> = listen
                .iter()
                .enumerate()
                .map(|(i, addr)| {
                    let config = BackendConfig {
                        mode,
                        id: id[if id.len() == 1 { 0 } else { i }],
                        request_bytes,
                        response_bytes,
                        bytes,
                    };
                    (*addr, config)
                })
                .collect();
            for (_, config) in &configs {
                config.validate().map_err(anyhow::Error::msg)?;
            }
            let rt = runner::runtime(cli.threads)?;
            rt.block_on(async move {
                let mut servers = tokio::task::JoinSet::new();
                for (addr, config) in configs {
                    let listener =
                        backend::bind(addr).with_context(|| format!("listen on {addr}"))?;
                    eprintln!(
                        "rvs-loadgen backend {} ({mode:?}) listening on {addr}",
                        config.id
                    );
                    servers.spawn(async move {
                        backend::serve(listener, config)
                            .await
                            .with_context(|| format!("serve {addr}"))
                    });
                }
                // Servers run until the process is killed; the first to fail ends it.
                while let Some(done) = servers.join_next().await {
                    done??;
                }
                Ok(())
            })
        }
        Command::Cps {
            target,
            concurrency,
            duration,
            warmup,
            request_bytes,
            response_bytes,
            timeout,
        } => {
            if concurrency == 0 {
                bail!("--concurrency must be at least 1");
            }
            if response_bytes < backend::ID_LEN {
                bail!(
                    "--response-bytes must be at least {}: the answer starts with the backend id",
                    backend::ID_LEN
                );
            }
            let config = CpsConfig {
                targets: target,
                concurrency,
                duration,
                warmup,
                request_bytes,
                response_bytes,
                timeout,
            };
            let mut result = cps::run(config.clone(), cli.threads, cli.runtime)?;
            let json = result.to_json(&config);
            eprintln!(
                "cps: {:.0} conn/s over {:.1} s, {} errors, latency p50 {:.0} p90 {:.0} p99 {:.0} max {:.0} us, {} backends answered",
                result.per_second(),
                result.elapsed.as_secs_f64(),
                result.errors(),
                field(&json, "p50_us"),
                field(&json, "p90_us"),
                field(&json, "p99_us"),
                field(&json, "max_us"),
                result.by_backend.len()
            );
            println!("{json}");
            Ok(())
        }
        Command::Bulk {
            target,
            streams,
            bytes,
            timeout,
        } => {
            if streams == 0 {
                bail!("--streams must be at least 1");
            }
            let config = BulkConfig {
                targets: target,
                streams,
                bytes,
                timeout,
            };
            let result = bulk::run(config.clone(), cli.threads, cli.runtime)?;
            eprintln!(
                "bulk: {:.2} Gbit/s, {} of {} streams ok ({} errors, {} wrong length, {} bad checksum)",
                result.gbit_per_s(),
                result.ok_streams,
                streams,
                result.errors,
                result.length_mismatches,
                result.checksum_failures
            );
            println!("{}", result.to_json(&config));
            Ok(())
        }
        Command::Idle {
            target,
            conns,
            hold,
            batch,
            connect_timeout,
        } => {
            let config = IdleConfig {
                targets: target,
                conns,
                batch,
                hold,
                connect_timeout,
            };
            // One thread: the ramp is bounded by the server, not by the client.
            let rt = runner::current_thread()?;
            let result = rt.block_on(idle::run(&config, |opened| {
                println!("{{\"ready\":{opened}}}");
            }));
            eprintln!(
                "idle: {} of {} opened in {:.2} s ({} failed), {} closed by the peer during the hold",
                result.opened,
                conns,
                result.ramp.as_secs_f64(),
                result.failed,
                result.closed_by_peer
            );
            println!("{}", result.to_json(&config));
            Ok(())
        }
    }
}

/// A numeric field of a flat JSON line, for the human summary.
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .and_then(|i| {
            let rest = &json[i + pat.len()..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .unwrap_or(f64::NAN)
}
