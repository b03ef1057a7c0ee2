//! One proxied TCP connection, from the client's accept to the last report.
//!
//! What the core is told, in the order a NAT director would see it on the wire
//! (`ip_vs_proto_tcp.c` state tables): the client's SYN when it is accepted
//! (this schedules), the real server's SYN-ACK and the client's ACK once the
//! connection to the real server is up (or the server's RST when it fails); then,
//! for each direction that ends, the FIN of the side that closed and the other
//! side's ACK; an RST from whichever side reset. For a real server whose replies
//! the kernel would not see (DR, TUN), only the client's segments are reported,
//! so the entry follows the kernel's input-only table. Bytes are counted in both
//! directions.
//!
//! Invariants: a flow ends with its traffic reported and its registry entry
//! gone; a client is reset (never silently held) when no real server is
//! available, when the real server cannot be reached, when either side resets,
//! and when the core expires the entry.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rvs_core::{ConnId, ConnKey, Director, InVerdict, Packet, ServiceKey, TcpFlags, Time};
use socket2::{Domain, Protocol as SockProtocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;

use crate::relay::{pump, Ended};
use crate::state::LiveConn;
use crate::table::{ListenerKey, ProxyProtocol};
use crate::worker::Ctx;
use crate::Core;

/// Resets a socket: closes it with an RST instead of a FIN.
pub(crate) fn reset(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// The address as the core keys it (an IPv4 client on a dual-stack socket
/// arrives v4-mapped).
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Connects to a real server. By hand rather than `TcpSocket::connect`: the
/// readiness event says whether the connect failed, so no getsockopt(SO_ERROR)
/// is spent on the connections that succeed.
async fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(SockProtocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    let ready = stream
        .ready(Interest::WRITABLE.add(Interest::ERROR))
        .await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

/// The core entry a flow reports to, if it has one (one-packet scheduling
/// keeps none).
struct Entry {
    id: ConnId,
    key: ConnKey,
    /// Whether the kernel would see the real server's segments (NAT, FullNAT).
    sees_replies: bool,
}

/// A segment as the core takes it: (outbound, flags).
type Segment = (bool, TcpFlags);

impl Entry {
    /// Reports segments in order, under the caller's lock.
    fn apply(&self, d: &mut Director, segments: &[Segment], now: Time) {
        for &(outbound, flags) in segments {
            if outbound && !self.sees_replies {
                continue;
            }
            d.handle_segment(self.id, &self.key, outbound, flags, 0, now);
        }
    }

    /// Reports segments in order, taking the lock.
    fn report<C: Core>(&self, core: &C, segments: &[Segment]) {
        core.with(|d, _, now| self.apply(d, segments, now));
    }
}

/// Serves one accepted client connection on listener `lk` of service `svc`.
pub(crate) async fn serve<C: Core>(
    ctx: Arc<Ctx<C>>,
    client: TcpStream,
    peer: SocketAddr,
    lk: ListenerKey,
    svc: ServiceKey,
) {
    let peer = canonical(peer);
    let mut syn = Packet::tcp(
        peer.ip(),
        peer.port(),
        lk.addr.ip(),
        lk.addr.port(),
        TcpFlags::SYN,
    );
    syn.len = 0;
    if let ServiceKey::Fwmark { mark, .. } = svc {
        syn.fwmark = mark;
    }
    let key = syn.conn_key();
    let live = Arc::new(LiveConn::new(key, ctx.clock.now()));
    let mut retries_left = ctx.connect_retries;
    let mut first = true;
    let (server, entry, target) = loop {
        let decision = ctx.core.with(|d, st, now| match d.handle_in(&syn, now) {
            InVerdict::Forward(f) => {
                st.counters.accepted += u64::from(first);
                if let Some(id) = f.conn {
                    st.register(id, live.clone());
                }
                Some(f)
            }
            InVerdict::Refuse(_) | InVerdict::Pass | InVerdict::Drop => {
                st.counters.refused += 1;
                None
            }
        });
        first = false;
        let Some(f) = decision else {
            reset(client);
            return;
        };
        let target = lk.target(f.daddr, f.dport);
        let entry = f.conn.map(|id| Entry {
            id,
            key,
            sees_replies: f.forward.sees_replies(),
        });
        let connected = tokio::select! {
            r = connect(target) => r,
            () = live.aborted() => {
                reset(client);
                return;
            }
        };
        match connected {
            Ok(s) => break (s, entry, target),
            Err(e) => {
                tracing::debug!(client = %peer, server = %target, error = %e, "real server connect failed");
                let retry = retries_left > 0;
                ctx.core.with(|d, st, now| {
                    if let Some(en) = &entry {
                        // NAT sees the server's RST. A retry (an rvs
                        // extension) also closes a DR/TUN entry, from the
                        // client's side, so that the SYN below re-schedules.
                        if en.sees_replies || retry {
                            let outbound = en.sees_replies;
                            d.handle_segment(en.id, &en.key, outbound, TcpFlags::RST, 0, now);
                        }
                        st.unregister(en.id, &live);
                    }
                    st.counters.count_connect_failure(target);
                });
                if !retry {
                    reset(client);
                    return;
                }
                retries_left -= 1;
            }
        }
    };
    // The client's socket inherits TCP_NODELAY from the listener.
    if let Some(en) = &entry {
        en.report(
            &*ctx.core,
            &[(true, TcpFlags::SYN_ACK), (false, TcpFlags::ACK)],
        );
    }

    let header = ctx.table.borrow().proxy.get(&(svc, target)).copied();
    let ok = match header {
        None => true,
        Some(v) => send_proxy_header(&server, v, peer, lk.addr).await.is_ok(),
    };
    let mut client = client;
    let mut server = server;
    let outcome = if ok {
        relay(&ctx, &mut client, &mut server, &live, entry.as_ref()).await
    } else {
        // The real server went away before it took the header.
        Outcome::Reset(Some((true, TcpFlags::RST)))
    };
    let last: &[Segment] = match &outcome {
        Outcome::Closed(segments) => segments,
        Outcome::Reset(segment) => {
            reset(client);
            reset(server);
            segment.as_slice()
        }
    };
    // One lock for the end: the last segments, the last traffic, the registry.
    ctx.core.with(|d, st, now| {
        if let Some(en) = &entry {
            let (traffic, last_active) = live.take();
            d.handle_traffic(en.id, &en.key, traffic, last_active);
            en.apply(d, last, now);
            st.unregister(en.id, &live);
        }
    });
}

/// How a flow ended, with the segments still to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Both directions ended with FINs: the FIN and ACK of the one that ended
    /// last (the first was reported when it happened).
    Closed([Segment; 2]),
    /// A side reset (its RST), or the entry expired (none): both sides get an
    /// RST.
    Reset(Option<Segment>),
}

/// How one direction ended.
enum DirEnd {
    Fin,
    Rst(Segment),
}

/// The FIN of the side that ends a direction and the other side's ACK
/// (`inbound`: the client's side ended).
fn fin_segments(inbound: bool) -> [Segment; 2] {
    [(!inbound, TcpFlags::FIN_ACK), (inbound, TcpFlags::ACK)]
}

async fn send_proxy_header(
    server: &TcpStream,
    version: ProxyProtocol,
    client: SocketAddr,
    vip: SocketAddr,
) -> io::Result<()> {
    let mut bytes = crate::table::proxy_header(version, client, vip);
    crate::relay::drain(server, &mut bytes).await
}

/// Relays both directions until both end, one side resets, or the core expires
/// the entry.
async fn relay<C: Core>(
    ctx: &Ctx<C>,
    client: &mut TcpStream,
    server: &mut TcpStream,
    live: &LiveConn,
    entry: Option<&Entry>,
) -> Outcome {
    let (client_rd, client_wr) = client.split();
    let (server_rd, server_wr) = server.split();
    // Set by the first direction to end: the second needs no shutdown(2), the
    // close that follows sends its FIN.
    let one_ended = AtomicBool::new(false);
    let mut up = pin!(one_way(
        ctx,
        client_rd,
        server_wr.as_ref(),
        live,
        entry,
        &one_ended,
        true
    ));
    let mut down = pin!(one_way(
        ctx,
        server_rd,
        client_wr.as_ref(),
        live,
        entry,
        &one_ended,
        false
    ));
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            end = &mut up, if !up_done => {
                if let DirEnd::Rst(seg) = end { return Outcome::Reset(Some(seg)); }
                up_done = true;
                if down_done { return Outcome::Closed(fin_segments(true)); }
            }
            end = &mut down, if !down_done => {
                if let DirEnd::Rst(seg) = end { return Outcome::Reset(Some(seg)); }
                down_done = true;
                if up_done { return Outcome::Closed(fin_segments(false)); }
            }
            () = live.aborted() => return Outcome::Reset(None),
        }
    }
}

/// Relays one direction (`inbound`: client to real server). The first
/// direction to end shuts its destination's write side and reports its FIN at
/// once (the entry shows the half-close); the last one leaves both to the end
/// of the flow.
async fn one_way<C: Core>(
    ctx: &Ctx<C>,
    src: ReadHalf<'_>,
    dst: &TcpStream,
    live: &LiveConn,
    entry: Option<&Entry>,
    one_ended: &AtomicBool,
    inbound: bool,
) -> DirEnd {
    match pump(src, dst, live, inbound, ctx.clock, ctx.splice).await {
        Ended::Eof => {
            if !one_ended.swap(true, Ordering::Relaxed) {
                let _ = SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                if let Some(en) = entry {
                    en.report(&*ctx.core, &fin_segments(inbound));
                }
            }
            DirEnd::Fin
        }
        Ended::SrcFailed(e) => {
            tracing::debug!(error = %e, inbound, "relay: read side reset");
            DirEnd::Rst((!inbound, TcpFlags::RST))
        }
        Ended::DstFailed(e) => {
            tracing::debug!(error = %e, inbound, "relay: write side reset");
            DirEnd::Rst((inbound, TcpFlags::RST))
        }
    }
}
