//! `rvsd`: the rvs director daemon. Runs in the foreground, logs to stderr, serves
//! the admin API, keeps the table in a crash-safe state file; `--demo` adds demo
//! real servers and a demo table to try it on loopback.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rvsd::{demo, paths, server};

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
    /// Run from a keepalived.conf: its virtual servers become the table, its checkers health-check the real servers, SIGHUP or POST /v1/reload re-reads it. The table is not saved in a state file (the file is the source)
    #[arg(short = 'f', long = "use-file", conflicts_with_all = ["state_file", "demo"])]
    use_file: Option<PathBuf>,
    /// Check the keepalived.conf given by -f (default /etc/keepalived/keepalived.conf) as `keepalived -t` does: print what is wrong to stderr and exit 0 if nothing was reported, 5 otherwise
    #[arg(short = 't', long = "config-test")]
    config_test: bool,
    /// Also serve the admin API on this TCP address; every request then needs the bearer token
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// File whose first line is the bearer token for --listen
    #[arg(long, env = "RVS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// On the --listen address, let GET requests (the dashboard, /metrics, the API's reads) through without the token; changes still need it
    #[arg(long, requires = "listen")]
    open_reads: bool,
    /// Data plane: `socket` serves the virtual services as sockets (no privileges needed), `xdp` forwards packets in the kernel with the LVS methods (DR, TUN, NAT, FullNAT; needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF, and --xdp-iface), `none` only keeps the table
    #[arg(long, value_enum, default_value_t = DataPlane::Socket)]
    data_plane: DataPlane,
    /// XDP plane: interface to attach the program to (repeat for several)
    #[arg(long = "xdp-iface")]
    xdp_iface: Vec<String>,
    /// XDP plane: attach in generic (SKB) mode instead of native
    #[arg(long)]
    xdp_generic: bool,
    /// XDP plane: FullNAT local address (repeat; one per family at least)
    #[arg(long = "fnat-local")]
    fnat_local: Vec<std::net::IpAddr>,
    /// XDP plane: outer source address of IPIP/GUE tunnels (one IPv4 and/or one IPv6)
    #[arg(long = "tun-source")]
    tun_source: Vec<std::net::IpAddr>,
    /// XDP plane: low bits of the IPv4 outer source taken from the flow hash, so that real servers spread tunnelled flows over their queues (0..=16)
    #[arg(long, default_value_t = 0)]
    tun_spread_bits: u32,
    /// XDP plane: new-flow upcalls allowed per second per CPU before the flood guard drops them (0: no guard)
    #[arg(long, default_value_t = 200_000)]
    upcall_rate: u32,
    /// XDP plane: burst of the flood guard's token bucket
    #[arg(long, default_value_t = 10_000)]
    upcall_burst: u32,
    /// Socket plane worker threads [default: one per CPU]
    #[arg(long)]
    plane_threads: Option<usize>,
    /// Socket plane threading: one runtime per worker thread with SO_REUSEPORT listeners, or one shared work-stealing runtime
    #[arg(long, value_enum, default_value_t = PlaneRuntime::PerCore)]
    plane_runtime: PlaneRuntime,
    /// When the socket plane uses splice(2): bulk transfers only, always, never
    #[arg(long, value_enum, default_value_t = Splice::Auto)]
    splice: Splice,
    /// When a real server refuses a connection, schedule the client again up to N times before resetting it (an rvs extension; 0 is the kernel's behaviour)
    #[arg(long, default_value_t = 0)]
    connect_retries: u8,
    /// Cut the connections of a removed real server at once (the kernel's expire_nodest_conn sysctl) instead of letting them finish
    #[arg(long)]
    expire_nodest_conn: bool,
    /// Run demo real servers (HTTP on 127.0.0.1:9081-9083, UDP echo on :9091-9092) inside rvsd, add the demo table if the table is empty, and print how to try it. The table is saved like any other: add --no-state to keep it throwaway
    #[arg(long)]
    demo: bool,
    /// First port of the demo real servers: HTTP on this port and the next two, UDP echo 10 and 11 above it
    #[arg(long, requires = "demo", default_value_t = demo::DemoConfig::default().base_port)]
    demo_base_port: u16,
    /// Port of the demo TCP virtual service on 127.0.0.1
    #[arg(long, requires = "demo", default_value_t = demo::DemoConfig::default().vip_port)]
    demo_vip_port: u16,
    /// Port of the demo UDP virtual service on 127.0.0.1
    #[arg(long, requires = "demo", default_value_t = demo::DemoConfig::default().udp_port)]
    demo_udp_port: u16,
    /// Log filter (tracing EnvFilter syntax)
    #[arg(long, env = "RVS_LOG", default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DataPlane {
    Socket,
    Xdp,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PlaneRuntime {
    PerCore,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Splice {
    Auto,
    Always,
    Never,
}

/// keepalived's exit status for a configuration test that reported something.
const EXIT_CONFIG_TEST: u8 = 5;

/// `rvsd -t`: exit 5 when `keepalived -t` would (anything reported); exit 1 when
/// keepalived would accept the file but rvs cannot run it (said why); else 0.
fn config_test(path: &std::path::Path) -> std::process::ExitCode {
    let loaded = rvs_config::load(path);
    let mut stderr = std::io::stderr().lock();
    for d in &loaded.diagnostics {
        let _ = writeln!(stderr, "{d}");
    }
    if !loaded.is_clean() {
        return std::process::ExitCode::from(EXIT_CONFIG_TEST);
    }
    match rvsd::keepalived::translate::plan(&loaded.config) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr, "{e}: keepalived accepts this, rvs cannot run it");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    if args.config_test {
        let path = args
            .use_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/keepalived/keepalived.conf"));
        return Ok(config_test(&path));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .with_context(|| format!("bad --log filter {:?}", args.log))?,
        )
        .init();
    anyhow::ensure!(
        !args.demo || args.data_plane == DataPlane::Socket,
        "--demo needs the socket data plane (drop --data-plane none)"
    );
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
        keepalived: args.use_file.clone(),
        state_file: if args.no_state || args.use_file.is_some() {
            None
        } else {
            Some(args.state_file.unwrap_or_else(paths::default_state_file))
        },
        listen: args.listen,
        token,
        open_reads: args.open_reads,
        plane: (args.data_plane == DataPlane::Socket).then(|| {
            let d = rvs_proxy::PlaneConfig::default();
            rvs_proxy::PlaneConfig {
                threads: args.plane_threads.unwrap_or(d.threads).max(1),
                runtime: match args.plane_runtime {
                    PlaneRuntime::PerCore => rvs_proxy::RuntimeKind::PerCore,
                    PlaneRuntime::Shared => rvs_proxy::RuntimeKind::Shared,
                },
                splice: match args.splice {
                    Splice::Auto => rvs_proxy::SpliceMode::Auto,
                    Splice::Always => rvs_proxy::SpliceMode::Always,
                    Splice::Never => rvs_proxy::SpliceMode::Never,
                },
                connect_retries: args.connect_retries,
                ..d
            }
        }),
        xdp: (args.data_plane == DataPlane::Xdp).then(|| rvsd::xdp::XdpOptions {
            interfaces: args.xdp_iface.clone(),
            generic: args.xdp_generic,
            fnat_pool: args.fnat_local.clone(),
            tun_source: args.tun_source.clone(),
            tun_spread_bits: args.tun_spread_bits,
            upcall_rate: args.upcall_rate,
            upcall_burst: args.upcall_burst,
        }),
        expire_nodest_conn: args.expire_nodest_conn,
        demo: args.demo.then_some(demo::DemoConfig {
            base_port: args.demo_base_port,
            vip_port: args.demo_vip_port,
            udp_port: args.demo_udp_port,
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(server::run(opts, stop_rx))?;
    Ok(std::process::ExitCode::SUCCESS)
}
