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

/// A cloneable handle on the running daemons.
#[derive(Clone, Default)]
pub struct SyncDaemons {}

impl SyncDaemons {
    /// Starts the daemon of `cfg.role` (spawned on the current tokio runtime).
    pub async fn start(&self, cfg: DaemonConfig) -> Result<(), SyncError> {
        Err(SyncError::Setup(format!("{:?} not yet wired", cfg.role)))
    }

    /// Stops the daemon of `role`.
    pub async fn stop(&self, role: Role) -> Result<(), SyncError> {
        Err(SyncError::NotRunning(role))
    }

    /// The running daemons' settings.
    pub fn running(&self) -> Vec<DaemonConfig> {
        Vec::new()
    }
}
