//! Connection sync daemons (IPVS's master and backup sync threads,
//! net/netfilter/ipvs/ip_vs_sync.c), driven by `rvsadm --start-daemon` /
//! `--stop-daemon` and keepalived's `lvs_sync_daemon`.
//!
//! SKELETON: the types and the handle are the contract between the API,
//! rvsadm, the VRRP driver and the packet plane; the sockets and tasks are
//! being written.

use std::net::IpAddr;

/// Which daemon: the master announces, the backup installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Backup,
}

/// What `--start-daemon` (or `lvs_sync_daemon`) asks for. `None` fields take
/// the kernel's defaults (maxlen from the interface MTU, group 224.0.0.81 or
/// ff02::81 by family, port 8848, ttl 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub role: Role,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub maxlen: Option<u16>,
    pub group: Option<IpAddr>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// EEXIST: that role's daemon runs already.
    #[error("the {0:?} sync daemon is already running")]
    Running(Role),
    /// ESRCH: no daemon of that role runs.
    #[error("no {0:?} sync daemon is running")]
    NotRunning(Role),
    /// ENODEV and friends: the interface or socket could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A running daemon as `ipvsadm -L --daemon` shows it: every default
/// resolved (maxlen from the interface MTU, as the kernel computes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningDaemon {
    pub role: Role,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub maxlen: u16,
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
}

/// What the daemons did since rvsd started (for `/metrics` and the API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Master: messages and connection records sent.
    pub messages_sent: u64,
    pub conns_sent: u64,
    /// Master: records the core queued but the sender lost (queue full).
    pub conns_dropped: u64,
    /// Backup: messages and records received (after the syncid filter).
    pub messages_received: u64,
    pub conns_received: u64,
    /// Backup: records installed or updated in the table.
    pub conns_imported: u64,
    /// Backup: records refused by the core (no such service or real server,
    /// bad state, stale).
    pub import_errors: u64,
    /// Backup: messages of another syncid, and messages that did not decode.
    pub wrong_syncid: u64,
    pub malformed: u64,
    /// rvs extension: whole-table requests sent (backup) and answered (master).
    pub resync_requests_sent: u64,
    pub resync_requests_answered: u64,
}

/// A cloneable handle on the running daemons.
#[derive(Clone)]
pub struct SyncDaemons {
    #[allow(dead_code)]
    shared: crate::http::Shared,
}

impl SyncDaemons {
    pub fn new(shared: crate::http::Shared) -> Self {
        SyncDaemons { shared }
    }

    /// Starts the daemon of `cfg.role` (spawned on the current tokio runtime).
    pub async fn start(&self, cfg: DaemonConfig) -> Result<(), SyncError> {
        Err(SyncError::Setup(format!("{:?} not yet wired", cfg.role)))
    }

    /// Stops the daemon of `role`.
    pub async fn stop(&self, role: Role) -> Result<(), SyncError> {
        Err(SyncError::NotRunning(role))
    }

    /// The running daemons, master first.
    pub fn running(&self) -> Vec<RunningDaemon> {
        Vec::new()
    }

    pub fn stats(&self) -> SyncStats {
        SyncStats::default()
    }
}
