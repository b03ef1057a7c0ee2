//! The core's typed errors. Each names the case the kernel or ipvsadm rejects, with a
//! message an operator can act on; the CLI maps them to ipvsadm's exact texts.

use thiserror::Error;

use crate::model::ServiceKey;

/// A rule that the kernel (or ipvsadm's own checks) would refuse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("zero port specified for non-persistent service")]
    ZeroPortNotPersistent,
    #[error("one-packet scheduling is only for UDP and fwmark virtual services")]
    OnePacketNotUdp,
    #[error("illegal weight {0}: must be 0..2147483647")]
    Weight(u64),
    #[error("lower threshold {lower} is higher than upper threshold {upper}")]
    Thresholds { lower: u32, upper: u32 },
    #[error("persistence timeout {0} out of range 1..2678400")]
    PersistenceTimeout(u32),
    #[error("IPv6 persistence prefix length {0} out of range 1..128")]
    Ipv6Prefix(u32),
    #[error("scheduler '{0}' not found")]
    UnknownScheduler(String),
    #[error("persistence engine '{0}' not found")]
    UnknownPersistenceEngine(String),
    #[error("real server address family differs from the service's; only tunnelling may mix them")]
    MixedFamily,
    #[error("GUE tunnel needs a non-zero --tun-port")]
    TunnelPortMissing,
    #[error("--tun-port is only for GUE tunnels")]
    TunnelPortNotGue,
    #[error("checksum option not supported by {0} tunnels")]
    TunnelCsum(&'static str),
    #[error("maglev table size {0} is not one of the kernel's primes")]
    MhTableSize(u32),
    #[error("timeout {0} s out of range")]
    Timeout(u64),
    #[error("sh table bits {0} out of range 4..20")]
    ShTableBits(u32),
}

/// An error from a change to the director's tables.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("service {0} already exists")]
    ServiceExists(ServiceKey),
    #[error("no such service {0}")]
    NoService(ServiceKey),
    #[error("destination already exists")]
    DestExists,
    #[error("no such destination")]
    NoDest,
    #[error("service key cannot change on edit")]
    KeyChanged,
    #[error(transparent)]
    Mark(#[from] crate::mark::MarkError),
}
