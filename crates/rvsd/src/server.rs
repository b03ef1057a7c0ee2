//! Runs the daemon: binds the admin listeners (a Unix socket always, a TCP address
//! with a bearer token when asked), drives the core's timers, reloads on SIGHUP and
//! stops cleanly on SIGTERM/SIGINT, telling systemd (sd_notify) as it goes. With
//! `--demo` it also runs the demo real servers and table (`demo.rs`).
//!
//! Invariants: the Unix socket is created mode 0600 (root-only when rvsd runs as
//! root) and removed on a clean stop; a socket file left by a dead rvsd is
//! replaced, one held by a live rvsd makes this one refuse to start; a TCP listener
//! is never opened without a token.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use rvs_core::{Director, Time};
use rvs_proxy::{Clock, Plane, PlaneConfig, PlaneState, PlaneTable};

use crate::control::{Control, ControlError};
use crate::demo::{self, DemoConfig, DemoError, DemoServers};
use crate::http::{self, lock, Shared};
use crate::keepalived::Keepalived;
use crate::state::StateFile;
use crate::vrrp::Driver;

/// How rvsd runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    /// `None`: keep the table in memory only.
    pub state_file: Option<PathBuf>,
    /// `-f keepalived.conf`: the file owns the table and health-checks it.
    pub keepalived: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub token: Option<String>,
    /// `--open-reads`: GET/HEAD on the TCP listener need no token.
    pub open_reads: bool,
    /// The socket data plane's settings; `None` runs no data plane.
    pub plane: Option<PlaneConfig>,
    /// The XDP packet plane's settings (`--data-plane xdp`).
    pub xdp: Option<crate::xdp::XdpOptions>,
    /// The kernel's `expire_nodest_conn` sysctl: connections of a removed real
    /// server are cut at once instead of running to their end.
    pub expire_nodest_conn: bool,
    /// `--demo`: run the demo real servers, add the demo table to an empty
    /// table, and print how to try it.
    pub demo: Option<DemoConfig>,
}

/// The plane's access to the core: the daemon's lock.
struct PlaneCore(Shared);

impl rvs_proxy::Core for PlaneCore {
    fn with<R>(&self, f: impl FnOnce(&mut Director, &mut PlaneState, Time) -> R) -> R {
        let mut control = lock(&self.0);
        let now = control.now();
        let (d, p) = control.plane_parts();
        f(d, p, now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: another rvsd is already serving this socket")]
    AlreadyRunning(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing to listen on TCP {0} without a token (give --token-file)")]
    NoToken(SocketAddr),
    #[error("signal handling: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Plane(#[from] rvs_proxy::PlaneError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Vrrp(#[from] crate::vrrp::VrrpStartError),
    #[error(transparent)]
    Xdp(#[from] Box<crate::xdp::XdpStartError>),
    #[error("{path}: {source}")]
    Keepalived {
        path: PathBuf,
        source: crate::keepalived::LoadError,
    },
    #[error("{path}: the table it describes cannot be applied: {error}")]
    KeepalivedApply {
        path: PathBuf,
        error: rvs_api::ApiError,
    },
}

fn socket_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Socket {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the Unix socket, replacing a stale file but never a live daemon's.
fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(socket_err(path))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(socket_err(path))?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err(path))?;
    Ok(listener)
}

/// Tells systemd about a state change when run with `Type=notify`.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Runs until SIGTERM or SIGINT (or `stop` turning true).
pub async fn run(opts: Options, mut stop: watch::Receiver<bool>) -> Result<(), ServerError> {
    // A packet plane without its privileges stops rvsd before anything changes.
    if opts.xdp.is_some() {
        crate::xdp::check_capabilities().map_err(Box::new)?;
    }
    // The demo servers first: a taken port stops rvsd before anything changes.
    let demo_servers = match &opts.demo {
        Some(cfg) => Some(DemoServers::start(cfg).await?),
        None => None,
    };
    let file = opts.state_file.as_ref().map(StateFile::new);
    let mut control = Control::new(file)?;
    if opts.expire_nodest_conn {
        let mut sysctl = *control.director().sysctl();
        sysctl.expire_nodest_conn = true;
        control.director_mut().set_sysctl(sysctl);
    }
    let restored = control.configured().services.len();
    let epoch = control.epoch();
    let shared: Shared = Arc::new(Mutex::new(control));
    // The one set of connection sync daemons: the API, /metrics and
    // keepalived's lvs_sync_daemon (through the VRRP driver) share it.
    let sync_daemons = crate::sync::SyncDaemons::new(shared.clone());
    lock(&shared).attach_sync(sync_daemons.clone());
    let plane = match opts.plane {
        None => None,
        Some(cfg) => Some(start_plane(cfg, &shared, epoch)?),
    };

    let mut vrrp_plan = crate::keepalived::vrrp_plan::VrrpPlan::default();
    let health_wake = match &opts.keepalived {
        None => None,
        Some(path) => {
            let now = lock(&shared).now();
            let (ka, warnings) =
                Keepalived::start(path, now).map_err(|source| ServerError::Keepalived {
                    path: path.clone(),
                    source,
                })?;
            for w in &warnings {
                tracing::warn!("{w}");
            }
            let wake = ka.wake();
            vrrp_plan = ka.plan().vrrp.clone();
            lock(&shared)
                .attach_keepalived(ka)
                .map_err(|error| ServerError::KeepalivedApply {
                    path: path.clone(),
                    error,
                })?;
            Some(wake)
        }
    };

    // TCP first: if it fails, no socket file is left behind.
    let tcp = match opts.listen {
        None => None,
        Some(addr) => {
            let token = opts.token.clone().ok_or(ServerError::NoToken(addr))?;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Tcp { addr, source })?;
            Some((l, token, addr))
        }
    };
    let unix = bind_unix(&opts.socket)?;
    // After the socket, so that a second rvsd on the same socket changes nothing.
    let demo_outcome = match &opts.demo {
        Some(cfg) => match demo::install_table(cfg, &shared) {
            Ok(outcome) => Some((cfg, outcome)),
            Err(e) => {
                let _ = std::fs::remove_file(&opts.socket);
                return Err(e.into());
            }
        },
        None => None,
    };

    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;

    let (quit_tx, quit_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    {
        let mut q = quit_rx.clone();
        let app = http::router(shared.clone(), sync_daemons.clone())
            .layer(axum::Extension(crate::dashboard::Quit(quit_rx.clone())));
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(unix, app)
                .with_graceful_shutdown(async move {
                    let _ = q.wait_for(|v| *v).await;
                })
                .await;
        }));
    }
    if let Some((listener, token, addr)) = tcp {
        let mut q = quit_rx.clone();
        let app =
            http::router_with_token(shared.clone(), sync_daemons.clone(), token, opts.open_reads)
                .layer(axum::Extension(crate::dashboard::Quit(quit_rx.clone())));
        if opts.open_reads {
            tracing::info!(%addr, "admin API on TCP (reads open, changes need the bearer token)");
        } else {
            tracing::info!(%addr, "admin API on TCP (bearer token required)");
        }
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = q.wait_for(|v| *v).await;
                })
                .await;
        }));
    }
    {
        let mut q = quit_rx.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => lock(&shared).tick(),
                    _ = q.wait_for(|v| *v) => break,
                }
            }
        }));
    }

    if !vrrp_plan.is_empty() {
        let mut driver = match Driver::open(&vrrp_plan, epoch) {
            Ok(d) => d,
            Err(e) => {
                let _ = quit_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                let _ = std::fs::remove_file(&opts.socket);
                return Err(e.into());
            }
        };
        if let Some(plan) = &vrrp_plan.sync_daemon {
            driver.attach_sync_daemons(plan, sync_daemons.clone());
        }
        lock(&shared).attach_vrrp(driver.status());
        tracing::info!(instances = vrrp_plan.instances.len(), "VRRP running");
        tasks.push(tokio::spawn(driver.run(quit_rx.clone())));
    }

    if let Some(xo) = &opts.xdp {
        match crate::xdp::XdpPlane::open(xo) {
            Ok(mut plane) => {
                plane.sync_table(&shared).await;
                lock(&shared).attach_xdp(plane.view());
                tracing::info!(interfaces = ?xo.interfaces, "XDP packet plane attached");
                let (shared, quit) = (shared.clone(), quit_rx.clone());
                tasks.push(tokio::task::spawn_blocking(move || {
                    plane.run_blocking(shared, quit)
                }));
            }
            Err(e) => {
                let _ = quit_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                let _ = std::fs::remove_file(&opts.socket);
                return Err(Box::new(e).into());
            }
        }
    }

    if let Some(wake) = health_wake {
        let q = quit_rx.clone();
        tasks.push(tokio::spawn(crate::keepalived::health::run(
            shared.clone(),
            wake,
            q,
        )));
    }

    let services = lock(&shared).configured().services.len();
    tracing::info!(socket = %opts.socket.display(), restored, services, "rvsd ready");
    sd_notify("READY=1");
    if let Some((cfg, outcome)) = demo_outcome {
        let problems = demo::listener_problems(cfg, &shared).await;
        let rvsadm = demo::rvsadm_path();
        match demo::announcement(cfg, &outcome, &problems, &opts.socket, &rvsadm) {
            Ok(text) => {
                // Not print!: a closed stdout must not stop the daemon.
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            Err(e) => tracing::error!(error = %e, "demo"),
        }
    }
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = stop.wait_for(|v| *v) => break,
            _ = hup.recv() => {
                sd_notify("RELOADING=1");
                match lock(&shared).reload() {
                    Ok(r) => tracing::info!(changes = r.changes, "SIGHUP: reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload refused, running table kept"),
                }
                sd_notify("READY=1");
            }
        }
    }
    sd_notify("STOPPING=1");
    let _ = quit_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(demo_servers);
    if let Some(plane) = plane {
        let _ = tokio::task::spawn_blocking(move || plane.stop()).await;
    }
    let _ = std::fs::remove_file(&opts.socket);
    tracing::info!("rvsd stopped");
    Ok(())
}

/// Starts the socket plane on the running table.
fn start_plane(
    cfg: PlaneConfig,
    shared: &Shared,
    epoch: std::time::Instant,
) -> Result<Plane, ServerError> {
    match rvs_proxy::raise_fd_limit() {
        Ok(n) => tracing::info!(open_files = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let plane = Plane::start(
        cfg,
        Arc::new(PlaneCore(shared.clone())),
        Clock::new(epoch),
        PlaneTable::default(),
    )?;
    if let Err(e) = lock(shared).attach_plane(plane.publisher()) {
        plane.stop();
        return Err(e.into());
    }
    tracing::info!(threads = cfg.threads, runtime = ?cfg.runtime, "socket data plane running");
    Ok(plane)
}
