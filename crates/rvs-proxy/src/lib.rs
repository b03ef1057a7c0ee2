//! rvs's socket data plane: every TCP and UDP virtual service of the core is
//! served as listening sockets on its VIP:port, with FullNAT semantics (the
//! director terminates the client's connection and opens its own to the real
//! server). No privileges are needed.
//!
//! The core decides everything: a new client connection is shown to the core as
//! the SYN the kernel would have seen (`Director::handle_in`), which schedules it
//! (persistence templates, thresholds, quiescing included); the plane then
//! reports the segments the kernel would see on the wire for the same exchange
//! (`Director::handle_segment`: the real server's SYN-ACK, the client's ACK,
//! FINs, RSTs), so the connection entry walks IPVS's own TCP states and
//! `ipvsadm -Lnc` shows what the kernel would show. Relayed bytes are counted by
//! each connection in atomics and reported to the core once a second
//! (`Director::handle_traffic`), which also pushes the entry's idle timeout; when
//! the core expires an entry whose connection is still open, the plane resets
//! both sides, as a NAT director that forgot the flow would.
//!
//! Invariants:
//! - Every core call happens under the owner's lock ([`Core::with`]), short and
//!   without I/O; relaying never holds it.
//! - A live connection is in [`PlaneState`]'s registry from its SYN until its
//!   final report; an entry's id is only trusted together with its key (ids are
//!   reused after expiry).
//! - Listeners follow the published [`PlaneTable`]; a changed table never
//!   touches established connections.

mod relay;
mod state;
mod table;
mod tcp;
mod udp;
mod worker;

use std::time::Instant;

use rvs_core::{Director, Time};

pub use relay::SpliceMode;
pub use state::{ListenerStatus, PlaneCounters, PlaneState};
pub use table::{ListenerKey, PlaneTable, ProxyProtocol, Transport, Unserved, PORT_ZERO};
pub use worker::{Plane, PlaneConfig, PlaneError, Publisher, RuntimeKind};

/// Access to the core the plane serves, owned by the daemon: `with` runs `f`
/// under the daemon's lock with the director, the plane's registry and the
/// current time.
pub trait Core: Send + Sync + 'static {
    fn with<R>(&self, f: impl FnOnce(&mut Director, &mut PlaneState, Time) -> R) -> R;
}

/// The monotonic clock shared with the daemon (time zero = its start).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new(epoch: Instant) -> Self {
        Clock { epoch }
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// Raises the soft open-files limit to the hard limit (each proxied connection
/// holds two descriptors, four while it splices); returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard.max(soft))
}
