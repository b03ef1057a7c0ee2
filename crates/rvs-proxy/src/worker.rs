//! The plane's workers and their listening sockets.
//!
//! `PerCore` runs one single-threaded tokio runtime per worker thread, each
//! with its own SO_REUSEPORT socket per listener (the kernel spreads new
//! connections over them, and a connection stays on the thread that accepted
//! it); `Shared` runs one multi-threaded runtime whose single set of listeners
//! feeds a work-stealing pool. Both take the same code path per connection.
//!
//! Invariants: every socket binds with IP_FREEBIND/IPV6_FREEBIND, so a VIP this
//! host does not (yet) own still gets its listener; a bind that fails is
//! recorded in [`PlaneState::listeners`] with the reason and retried every few
//! seconds, the rule stays; a table change closes only the listeners that left
//! it and never touches established connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hashbrown::HashMap;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::relay::SpliceMode;
use crate::state::ListenerStatus;
use crate::table::{ListenerKey, PlaneTable, Transport};
use crate::{tcp, udp, Clock, Core};

/// How the plane uses threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeKind {
    /// One single-threaded runtime per worker, SO_REUSEPORT listeners each.
    #[default]
    PerCore,
    /// One multi-threaded runtime with `threads` workers.
    Shared,
}

/// The plane's settings.
#[derive(Clone, Copy, Debug)]
pub struct PlaneConfig {
    pub threads: usize,
    pub runtime: RuntimeKind,
    pub splice: SpliceMode,
    /// Accept queue length of each TCP listener (the kernel caps it at
    /// net.core.somaxconn).
    pub backlog: i32,
    /// When a real server refuses or cannot be reached, schedule the client
    /// again this many times (an rvs extension; 0, the kernel's behaviour,
    /// resets the client at once).
    pub connect_retries: u8,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            runtime: RuntimeKind::PerCore,
            splice: SpliceMode::Auto,
            backlog: 4096,
            connect_retries: 0,
        }
    }
}

/// What every connection task of the plane shares.
pub(crate) struct Ctx<C> {
    pub(crate) core: Arc<C>,
    pub(crate) clock: Clock,
    pub(crate) splice: SpliceMode,
    pub(crate) connect_retries: u8,
    pub(crate) table: watch::Receiver<Arc<PlaneTable>>,
}

/// A running plane. Dropping it without `stop` leaves its threads running
/// until the process ends.
pub struct Plane {
    table_tx: watch::Sender<Arc<PlaneTable>>,
    stop_tx: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("cannot start the socket plane's runtime: {0}")]
    Runtime(io::Error),
}

impl Plane {
    /// Starts the workers serving `table`.
    pub fn start<C: Core>(
        cfg: PlaneConfig,
        core: Arc<C>,
        clock: Clock,
        table: PlaneTable,
    ) -> Result<Plane, PlaneError> {
        let (table_tx, table_rx) = watch::channel(Arc::new(table));
        let (stop_tx, stop_rx) = watch::channel(false);
        let threads = cfg.threads.max(1);
        let ctx = Arc::new(Ctx {
            core,
            clock,
            splice: cfg.splice,
            connect_retries: cfg.connect_retries,
            table: table_rx.clone(),
        });
        let mut handles = Vec::new();
        match cfg.runtime {
            RuntimeKind::PerCore => {
                for index in 0..threads {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(PlaneError::Runtime)?;
                    let (ctx, rx, stop) = (ctx.clone(), table_rx.clone(), stop_rx.clone());
                    let h = std::thread::Builder::new()
                        .name(format!("rvs-plane-{index}"))
                        .spawn(move || rt.block_on(worker(ctx, rx, stop, index, cfg.backlog)))
                        .map_err(PlaneError::Runtime)?;
                    handles.push(h);
                }
            }
            RuntimeKind::Shared => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("rvs-plane")
                    .enable_all()
                    .build()
                    .map_err(PlaneError::Runtime)?;
                let h = std::thread::Builder::new()
                    .name("rvs-plane".into())
                    .spawn(move || rt.block_on(worker(ctx, table_rx, stop_rx, 0, cfg.backlog)))
                    .map_err(PlaneError::Runtime)?;
                handles.push(h);
            }
        }
        Ok(Plane {
            table_tx,
            stop_tx,
            threads: handles,
        })
    }

    /// A handle that publishes new tables to this plane.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            tx: self.table_tx.clone(),
        }
    }

    /// Closes the listeners and every connection, and waits for the threads.
    pub fn stop(self) {
        let _ = self.stop_tx.send(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Publishes the table a plane serves.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: watch::Sender<Arc<PlaneTable>>,
}

impl Publisher {
    /// The table the plane serves now.
    pub fn current(&self) -> Arc<PlaneTable> {
        self.tx.borrow().clone()
    }

    /// Serves `table` from now on (nothing happens if it is unchanged).
    pub fn publish(&self, table: PlaneTable) {
        self.tx.send_if_modified(|cur| {
            if **cur == table {
                false
            } else {
                *cur = Arc::new(table);
                true
            }
        });
    }
}

/// How often binds that failed are tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// One worker: keeps its listeners equal to the published table.
async fn worker<C: Core>(
    ctx: Arc<Ctx<C>>,
    mut table: watch::Receiver<Arc<PlaneTable>>,
    mut stop: watch::Receiver<bool>,
    index: usize,
    backlog: i32,
) {
    let mut open: HashMap<ListenerKey, AbortHandle> = HashMap::new();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let current = table.borrow_and_update().clone();
        open.retain(|lk, task| {
            let keep = current.listeners.contains_key(lk);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut failed = false;
        let mut report = Vec::new();
        for lk in current.listeners.keys() {
            if open.contains_key(lk) {
                continue;
            }
            match bind(*lk, backlog) {
                Ok(Bound::Tcp(l)) => {
                    let h = conns.spawn(accept_loop(ctx.clone(), l, *lk));
                    open.insert(*lk, h);
                    report.push((*lk, ListenerStatus::Listening));
                }
                Ok(Bound::Udp(s)) => {
                    let h = conns.spawn(udp::serve(ctx.clone(), Arc::new(s), *lk));
                    open.insert(*lk, h);
                    report.push((*lk, ListenerStatus::Listening));
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(listener = %lk, error = %e, "cannot listen; the rule stays, retrying");
                    report.push((*lk, ListenerStatus::Failed(e.to_string())));
                }
            }
        }
        if index == 0 || report.iter().any(|(_, s)| *s != ListenerStatus::Listening) {
            ctx.core.with(|_, st, _| {
                st.listeners
                    .retain(|lk, _| current.listeners.contains_key(lk));
                for (lk, status) in report {
                    st.listeners.insert(lk, status);
                }
            });
        }
        let retry = async {
            if failed {
                tokio::time::sleep(BIND_RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = table.changed() => if changed.is_err() { break },
            () = retry => {}
            _ = stop.wait_for(|v| *v) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A listening socket for `lk`: SO_REUSEADDR, SO_REUSEPORT, FREEBIND, v6-only
/// for IPv6 (an IPv4 VIP is a separate listener).
fn bind(lk: ListenerKey, backlog: i32) -> io::Result<Bound> {
    let domain = Domain::for_address(lk.addr);
    let (ty, proto) = match lk.transport {
        Transport::Tcp => (Type::STREAM, SockProtocol::TCP),
        Transport::Udp => (Type::DGRAM, SockProtocol::UDP),
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    match lk.addr {
        SocketAddr::V4(_) => s.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        }
    }
    s.set_nonblocking(true)?;
    s.bind(&lk.addr.into())?;
    match lk.transport {
        Transport::Tcp => {
            // Accepted sockets inherit it: no setsockopt per connection.
            s.set_tcp_nodelay(true)?;
            s.listen(backlog)?;
            Ok(Bound::Tcp(TcpListener::from_std(s.into())?))
        }
        Transport::Udp => Ok(Bound::Udp(UdpSocket::from_std(s.into())?)),
    }
}

async fn accept_loop<C: Core>(ctx: Arc<Ctx<C>>, listener: TcpListener, lk: ListenerKey) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let svc = ctx.table.borrow().listeners.get(&lk).copied();
                match svc {
                    Some(svc) => {
                        tokio::spawn(tcp::serve(ctx.clone(), s, peer, lk, svc));
                    }
                    None => tcp::reset(s),
                }
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning, and
                // say so once a second at most.
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|t| now >= t + Duration::from_secs(1)) {
                    tracing::warn!(listener = %lk, error = %e, "accept failed");
                    last_warning = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
