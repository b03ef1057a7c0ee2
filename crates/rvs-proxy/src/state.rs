//! The plane's state that lives under the daemon's lock beside the core: the
//! registry of live proxied flows, the plane's own counters, and how each
//! listening socket fared.
//!
//! Invariants: a flow is registered under its core entry's id while its sockets
//! are open; `tick` reports every flow's traffic before it lets the core expire
//! entries, so an active flow is never expired for idleness; an expired or
//! vanished entry aborts its flow (both sides reset) and leaves the registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use atomic_waker::AtomicWaker;
use hashbrown::HashMap;
use rvs_core::{ConnId, ConnKey, Counters, Director, Time};

use crate::table::ListenerKey;

/// One proxied flow as the registry and its task share it.
#[derive(Debug)]
pub(crate) struct LiveConn {
    pub(crate) key: ConnKey,
    in_pkts: AtomicU64,
    in_bytes: AtomicU64,
    out_pkts: AtomicU64,
    out_bytes: AtomicU64,
    last_active_ms: AtomicU64,
    /// `last_active_ms` as last reported to the core.
    reported_ms: AtomicU64,
    aborted: AtomicBool,
    /// The flow's task, woken by `abort` (one task waits on a flow).
    abort: AtomicWaker,
}

impl LiveConn {
    pub(crate) fn new(key: ConnKey, now: Time) -> Self {
        LiveConn {
            key,
            in_pkts: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            out_pkts: AtomicU64::new(0),
            out_bytes: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(now.as_millis()),
            reported_ms: AtomicU64::new(now.as_millis()),
            aborted: AtomicBool::new(false),
            abort: AtomicWaker::new(),
        }
    }

    /// Counts one relayed chunk: `inbound` is client to real server.
    pub(crate) fn record(&self, inbound: bool, bytes: usize, now: Time) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let (p, b) = if inbound {
            (&self.in_pkts, &self.in_bytes)
        } else {
            (&self.out_pkts, &self.out_bytes)
        };
        p.fetch_add(1, Ordering::Relaxed);
        b.fetch_add(bytes, Ordering::Relaxed);
        self.last_active_ms
            .fetch_max(now.as_millis(), Ordering::Relaxed);
    }

    /// The traffic since the last call, and when the flow last moved.
    pub(crate) fn take(&self) -> (Counters, Time) {
        let c = Counters {
            conns: 0,
            in_pkts: self.in_pkts.swap(0, Ordering::Relaxed),
            in_bytes: self.in_bytes.swap(0, Ordering::Relaxed),
            out_pkts: self.out_pkts.swap(0, Ordering::Relaxed),
            out_bytes: self.out_bytes.swap(0, Ordering::Relaxed),
        };
        let last = self.last_active_ms.load(Ordering::Relaxed);
        self.reported_ms.store(last, Ordering::Relaxed);
        (c, Time::from_millis(last))
    }

    /// Whether the flow moved since the last `take`.
    fn moved(&self) -> bool {
        self.last_active_ms.load(Ordering::Relaxed) != self.reported_ms.load(Ordering::Relaxed)
            || self.in_pkts.load(Ordering::Relaxed) != 0
            || self.out_pkts.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.abort.wake();
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Resolves once the flow is to be cut. Cheap to poll again and again (an
    /// atomic load and a waker swap), as the relay's select does.
    pub(crate) fn aborted(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.is_aborted() {
                return std::task::Poll::Ready(());
            }
            self.abort.register(cx.waker());
            // Checked again after registering: an abort in between is not lost.
            if self.is_aborted() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }
}

/// How a listening socket fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerStatus {
    Listening,
    /// The bind failed (the rule stays; the plane retries on the next change).
    Failed(String),
}

/// The plane's own counters (what the kernel has no counter for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaneCounters {
    /// Client connections and UDP sessions the plane accepted.
    pub accepted: u64,
    /// Refused with a reset (TCP) or dropped (UDP): no real server available.
    pub refused: u64,
    /// Connections to a real server that failed, in total and per server.
    pub connect_failed: u64,
    pub connect_failed_by_server: BTreeMap<SocketAddr, u64>,
    /// Flows cut because the core expired their entry (idle timeout, removed
    /// real server with expire_nodest_conn).
    pub expired_open: u64,
}

impl PlaneCounters {
    /// A connection to real server `server` failed.
    pub(crate) fn count_connect_failure(&mut self, server: SocketAddr) {
        self.connect_failed += 1;
        *self.connect_failed_by_server.entry(server).or_default() += 1;
    }
}

/// The plane's side of the shared state.
#[derive(Debug, Default)]
pub struct PlaneState {
    live: HashMap<ConnId, Arc<LiveConn>>,
    pub counters: PlaneCounters,
    pub listeners: BTreeMap<ListenerKey, ListenerStatus>,
    expired: Vec<ConnId>,
}

impl PlaneState {
    /// Live proxied flows.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn register(&mut self, id: ConnId, conn: Arc<LiveConn>) {
        self.live.insert(id, conn);
    }

    /// Removes `conn` if it is still the flow registered under `id`.
    pub(crate) fn unregister(&mut self, id: ConnId, conn: &Arc<LiveConn>) {
        if self.live.get(&id).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            self.live.remove(&id);
        }
    }

    /// Reports every live flow's traffic to the core, then advances the core's
    /// timers; flows whose entry expired (or vanished) are cut.
    pub fn tick(&mut self, d: &mut Director, now: Time) {
        let mut gone = std::mem::take(&mut self.expired);
        gone.clear();
        // An idle flow has nothing to report; its entry, if the core expires
        // it, comes back through `handle_timeout` below.
        for (&id, conn) in self.live.iter().filter(|(_, c)| c.moved()) {
            let (traffic, last) = conn.take();
            if !d.handle_traffic(id, &conn.key, traffic, last) {
                gone.push(id);
            }
        }
        let live = &self.live;
        d.handle_timeout(now, |id, c| {
            if live.get(&id).is_some_and(|l| l.key == c.key) {
                gone.push(id);
            }
        });
        for id in &gone {
            if let Some(conn) = self.live.remove(id) {
                conn.abort();
                self.counters.expired_open += 1;
            }
        }
        self.expired = gone;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rvs_core::{
        DestConfig, DirectorConfig, Forward, InVerdict, Packet, Protocol, ServiceConfig,
        ServiceKey, Span, TcpFlags, TcpState,
    };

    /// A registered flow's traffic reaches the core on the tick and keeps the
    /// entry alive; once idle past its timeout the entry expires and the flow
    /// is aborted and forgotten.
    #[test]
    fn tick_reports_traffic_then_expires_and_aborts() {
        let mut d = Director::new(DirectorConfig::default());
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        d.add_service(ServiceConfig::new(key)).unwrap();
        let dest = DestConfig {
            forward: Forward::Masq,
            ..DestConfig::new("10.0.1.1".parse().unwrap(), 80)
        };
        d.add_dest(&key, dest).unwrap();
        let t0 = Time::from_millis(1000);
        let syn = Packet {
            len: 0,
            ..Packet::tcp(
                "192.0.2.1".parse().unwrap(),
                5000,
                "10.0.0.1".parse().unwrap(),
                80,
                TcpFlags::SYN,
            )
        };
        let InVerdict::Forward(f) = d.handle_in(&syn, t0) else {
            panic!("not scheduled");
        };
        let id = f.conn.unwrap();
        let ck = syn.conn_key();
        d.handle_segment(id, &ck, true, TcpFlags::SYN_ACK, 0, t0);
        d.handle_segment(id, &ck, false, TcpFlags::ACK, 0, t0);

        let mut st = PlaneState::default();
        let live = Arc::new(LiveConn::new(ck, t0));
        st.register(id, live.clone());
        let established = TcpState::Established.default_timeout();

        // Busy until just before the original expiry: still alive after it.
        let busy = Time::from_millis((t0 + established).as_millis() - 1000);
        live.record(true, 1000, busy);
        live.record(false, 5000, busy);
        st.tick(&mut d, busy);
        let c = d.total_stats().counters();
        assert_eq!((c.in_bytes, c.out_bytes), (1000, 5000));
        st.tick(&mut d, t0 + established + Span::from_secs(1));
        assert_eq!(st.live(), 1);
        assert!(!live.is_aborted());

        // Then idle for a whole timeout: expired, aborted, unregistered.
        st.tick(&mut d, busy + established + Span::from_secs(1));
        assert_eq!(st.live(), 0);
        assert!(live.is_aborted());
        assert_eq!(st.counters.expired_open, 1);
        assert!(d.conn(id).is_none());
    }
}
