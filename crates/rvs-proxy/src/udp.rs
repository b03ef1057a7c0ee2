//! UDP virtual services: a session per client address and real server, a
//! connected socket to the real server for each, replies sent back to the
//! client from the VIP:port socket.
//!
//! Every client datagram goes through the core (`handle_in`): it schedules a new
//! client, refreshes the entry's UDP timeout and counts; with one-packet
//! scheduling (-o) each datagram is scheduled on its own and no entry is kept.
//! Replies are reported on the entry (`handle_segment`, outbound), as the kernel
//! counts NAT replies.
//!
//! Invariants: a session lives as long as its core entry (the core's expiry
//! ends it) and its listener (a listener that leaves the table ends its
//! sessions, so no reply task keeps the VIP socket bound); a one-packet session
//! has no entry and ends after the UDP timeout without replies; a datagram the
//! core refuses is dropped (a socket cannot send the ICMP port unreachable the
//! kernel would) and counted as refused.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::HashMap;
use rvs_core::{ConnId, ConnKey, InVerdict, Packet, ServiceKey, TcpFlags};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::state::LiveConn;
use crate::table::ListenerKey;
use crate::tcp::canonical;
use crate::worker::Ctx;
use crate::Core;

const MAX_DATAGRAM: usize = 65536;

thread_local! {
    static REPLY_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; MAX_DATAGRAM].into_boxed_slice());
}

struct Session {
    backend: Arc<UdpSocket>,
    live: Arc<LiveConn>,
}

type Sessions = Arc<Mutex<HashMap<(SocketAddr, SocketAddr), Session>>>;

fn lock(s: &Sessions) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, SocketAddr), Session>> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves one UDP listener until the task is aborted.
pub(crate) async fn serve<C: Core>(ctx: Arc<Ctx<C>>, sock: Arc<UdpSocket>, lk: ListenerKey) {
    let sessions: Sessions = Arc::default();
    // Dropped with this task (the listener left the table): every session's
    // reply task sees it and ends, releasing the VIP socket.
    let (_listening, listener_gone) = watch::channel(());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(listener = %lk, error = %e, "recv failed");
                continue;
            }
        };
        let Some(svc) = ctx.table.borrow().listeners.get(&lk).copied() else {
            continue;
        };
        let peer = canonical(peer);
        let mut p = Packet::udp(peer.ip(), peer.port(), lk.addr.ip(), lk.addr.port());
        p.len = u32::try_from(n).unwrap_or(u32::MAX);
        if let ServiceKey::Fwmark { mark, .. } = svc {
            p.fwmark = mark;
        }
        let decided = ctx.core.with(|d, st, now| match d.handle_in(&p, now) {
            InVerdict::Forward(f) => {
                let udp_timeout = Duration::from_secs(d.timeouts().shown().2);
                Some((f, udp_timeout))
            }
            _ => {
                st.counters.refused += 1;
                None
            }
        });
        let Some((f, udp_timeout)) = decided else {
            continue;
        };
        let target = lk.target(f.daddr, f.dport);
        let existing = lock(&sessions)
            .get(&(peer, target))
            .filter(|s| !s.live.is_aborted())
            .map(|s| s.backend.clone());
        let backend = match existing {
            Some(b) => b,
            None => match open(
                &ctx,
                &sock,
                &sessions,
                listener_gone.clone(),
                peer,
                target,
                f.conn,
                p.conn_key(),
                udp_timeout,
            )
            .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(server = %target, error = %e, "UDP session to real server failed");
                    ctx.core.with(|_, st, _| {
                        st.counters.count_connect_failure(target);
                    });
                    continue;
                }
            },
        };
        if let Err(e) = backend.send(&buf[..n]).await {
            tracing::debug!(server = %target, error = %e, "UDP send to real server failed");
        }
    }
}

/// Opens a session: a socket connected to the real server, registered under
/// the core entry (if any), and its reply task.
#[allow(clippy::too_many_arguments)]
async fn open<C: Core>(
    ctx: &Arc<Ctx<C>>,
    listener: &Arc<UdpSocket>,
    sessions: &Sessions,
    listener_gone: watch::Receiver<()>,
    peer: SocketAddr,
    target: SocketAddr,
    conn: Option<ConnId>,
    key: ConnKey,
    udp_timeout: Duration,
) -> io::Result<Arc<UdpSocket>> {
    let any = match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let backend = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    backend.connect(target).await?;
    let backend = Arc::new(backend);
    let live = Arc::new(LiveConn::new(key, ctx.clock.now()));
    ctx.core.with(|_, st, _| {
        st.counters.accepted += 1;
        if let Some(id) = conn {
            st.register(id, live.clone());
        }
    });
    lock(sessions).insert(
        (peer, target),
        Session {
            backend: backend.clone(),
            live: live.clone(),
        },
    );
    let task = replies(
        ctx.clone(),
        listener.clone(),
        backend.clone(),
        sessions.clone(),
        listener_gone,
        peer,
        target,
        live,
        conn.map(|id| (id, key)),
        udp_timeout,
    );
    tokio::spawn(task);
    Ok(backend)
}

/// Relays the real server's datagrams to the client until the session ends.
#[allow(clippy::too_many_arguments)]
async fn replies<C: Core>(
    ctx: Arc<Ctx<C>>,
    listener: Arc<UdpSocket>,
    backend: Arc<UdpSocket>,
    sessions: Sessions,
    mut listener_gone: watch::Receiver<()>,
    peer: SocketAddr,
    target: SocketAddr,
    live: Arc<LiveConn>,
    entry: Option<(ConnId, ConnKey)>,
    udp_timeout: Duration,
) {
    // With an entry the core's expiry ends the session; without one (-o) the
    // session ends after the UDP timeout with no reply.
    let idle = |last: tokio::time::Instant| async move {
        if entry.is_some() {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep_until(last + udp_timeout).await;
        }
    };
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = backend.readable() => {
                if r.is_err() {
                    break;
                }
                let got = REPLY_BUF.with(|cell| {
                    let Ok(mut buf) = cell.try_borrow_mut() else {
                        return None;
                    };
                    match backend.try_recv(&mut buf) {
                        Ok(n) => {
                            // A full socket buffer drops the datagram, as UDP may.
                            let _ = listener.try_send_to(&buf[..n], peer);
                            Some(Ok(n))
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(e) => Some(Err(e)),
                    }
                });
                match got {
                    None => {}
                    Some(Ok(n)) => {
                        last = tokio::time::Instant::now();
                        if let Some((id, key)) = &entry {
                            let bytes = u32::try_from(n).unwrap_or(u32::MAX);
                            ctx.core.with(|d, _, now| {
                                d.handle_segment(*id, key, true, TcpFlags::default(), bytes, now)
                            });
                        }
                    }
                    // ICMP errors from the real server (port unreachable) land
                    // here; the session stays until its entry expires.
                    Some(Err(e)) => tracing::debug!(server = %target, error = %e, "UDP reply failed"),
                }
            }
            () = live.aborted() => break,
            () = idle(last) => break,
            _ = listener_gone.changed() => break,
        }
    }
    {
        let mut map = lock(&sessions);
        if map
            .get(&(peer, target))
            .is_some_and(|s| Arc::ptr_eq(&s.live, &live))
        {
            map.remove(&(peer, target));
        }
    }
    if let Some((id, _)) = entry {
        ctx.core.with(|_, st, _| st.unregister(id, &live));
    }
}
