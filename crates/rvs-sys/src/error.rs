//! The crate's one error type: every failure says what was being done.

use std::io;
use std::net::IpAddr;

/// A failed system operation, naming what was being done (the interface,
/// address or namespace involved).
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// A system call failed (or its input was refused before the call).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// An rtnetlink request failed or its connection broke.
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The kernel has no route that sends packets for `addr` out of an
    /// interface (local, broadcast, multicast or unreachable destinations).
    #[error("no route out of this host to {addr}: {why}")]
    NoRoute { addr: IpAddr, why: String },
    /// The next hop's link-layer address stayed unknown after a resolution
    /// attempt.
    #[error("the neighbour {hop} on {ifname} (next hop to {addr}) did not resolve to a MAC address within {waited_ms} ms")]
    NoNeighbour {
        addr: IpAddr,
        hop: IpAddr,
        ifname: String,
        waited_ms: u64,
    },
    /// At a refresh, the next hop's neighbour entry held no usable
    /// link-layer address (it is FAILED, INCOMPLETE, or gone).
    #[error(
        "the neighbour {hop} on {ifname} (next hop to {addr}) has no usable MAC address ({entry})"
    )]
    NeighbourUnusable {
        addr: IpAddr,
        hop: IpAddr,
        ifname: String,
        /// The entry's state as `ip neigh` names it, or "no entry".
        entry: String,
    },
}

impl SysError {
    pub(crate) fn io(what: impl Into<String>, source: impl Into<io::Error>) -> SysError {
        SysError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An input the kernel would refuse or that makes no sense here.
    pub(crate) fn invalid(what: impl Into<String>, why: &str) -> SysError {
        SysError::io(what, io::Error::new(io::ErrorKind::InvalidInput, why))
    }

    /// The raw OS error number, when this is an I/O error that carries one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SysError::Io { source, .. } => source.raw_os_error(),
            SysError::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => Some(msg.raw_code().abs()),
            SysError::Netlink { .. }
            | SysError::NoRoute { .. }
            | SysError::NoNeighbour { .. }
            | SysError::NeighbourUnusable { .. } => None,
        }
    }
}
