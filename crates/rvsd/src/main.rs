//! `rvsd`: the rvs director daemon. Runs in the foreground, logs to stderr, serves
//! the admin API, keeps the table in a crash-safe state file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rvsd::{paths, server};

#[derive(Parser, Debug)]
#[command(name = "rvsd", version, about = "rvs director daemon")]
struct Args {
    /// Admin API Unix socket [default: /run/rvs/rvsd.sock as root, else under $XDG_RUNTIME_DIR or /tmp/rvs-UID]
    #[arg(long, env = "RVS_SOCKET")]
    socket: Option<PathBuf>,
    /// State file holding the table across restarts [default: /var/lib/rvs/state.json as root]
    #[arg(long, env = "RVS_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// Keep the table in memory only (no state file)
    #[arg(long, conflicts_with = "state_file")]
    no_state: bool,
    /// Also serve the admin API on this TCP address; every request then needs the bearer token
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// File whose first line is the bearer token for --listen
    #[arg(long, env = "RVS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax)
    #[arg(long, env = "RVS_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .with_context(|| format!("bad --log filter {:?}", args.log))?,
        )
        .init();
    let token = match &args.token_file {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))?;
            let t = text.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(!t.is_empty(), "token file {} is empty", p.display());
            Some(t)
        }
    };
    let opts = server::Options {
        socket: args.socket.unwrap_or_else(paths::default_socket),
        state_file: if args.no_state {
            None
        } else {
            Some(args.state_file.unwrap_or_else(paths::default_state_file))
        },
        listen: args.listen,
        token,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(server::run(opts, stop_rx))?;
    Ok(())
}
