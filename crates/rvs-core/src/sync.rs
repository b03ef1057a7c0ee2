//! Connection synchronisation between directors: the core's half of IPVS's
//! sync daemon (net/netfilter/ipvs/ip_vs_sync.c). It decides which
//! connections a master announces and when (`ip_vs_sync_conn_needed`, asked on
//! every inbound packet as `ip_vs_in` does), and how a backup installs an
//! announced connection (`ip_vs_proc_conn`). The wire format lives in
//! rvs-wire and the sockets in rvsd; here are only values and rules.
//!
//! Invariants: a queued [`SyncedConn`] is a copy taken when the rule fired (the
//! kernel copies into its buffer at that moment too), so a later expiry does
//! not change what is sent; the queue never holds more than [`MAX_QUEUED`]
//! records (the rest are counted in [`SyncCounters::dropped`], as the kernel
//! drops beyond `sync_qlen_max`).

use std::net::IpAddr;

use crate::conn::ConnKey;
use crate::model::Forward;
use crate::time::Span;

/// Records a master keeps before the sender takes them; more are dropped.
pub const MAX_QUEUED: usize = 1 << 20;

/// Timeout of an announced template with no timeout (a version 0 message):
/// three minutes, as `ip_vs_proc_conn` uses.
pub const DEFAULT_TEMPLATE_TIMEOUT: Span = Span::from_secs(180);

/// The sync sysctls of a master (Documentation/networking/ipvs-sysctl.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncParams {
    /// `sync_threshold` first value (default 3): the inbound packet count at
    /// which a connection is first announced.
    pub threshold: u32,
    /// `sync_threshold` second value, the period (default 50): announced
    /// again each time the count is `threshold` modulo `period`; 0 announces
    /// once (or per `refresh_period`).
    pub period: u32,
    /// `sync_refresh_period` (default 0, off): announce again only when the
    /// expiry moved by this much (or half the timeout, at least 10 s).
    pub refresh_period: Span,
    /// `sync_retries` (default 0, at most 3): repeats within a refresh period,
    /// each `refresh_period / 8` apart.
    pub retries: u8,
    /// `sync_persist_mode` (default off): connections under a persistence
    /// template are not announced, only their templates.
    pub persist_mode: bool,
}

impl Default for SyncParams {
    fn default() -> Self {
        SyncParams {
            threshold: 3,
            period: 50,
            refresh_period: Span::from_secs(0),
            retries: 0,
            persist_mode: false,
        }
    }
}

impl SyncParams {
    /// The sysctl's own checks: `0 <= threshold < period` unless the period is
    /// 0, and at most 3 retries.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.period != 0 && self.threshold >= self.period {
            return Err("sync_threshold must be below sync_period");
        }
        if self.retries > 3 {
            return Err("sync_retries is at most 3");
        }
        Ok(())
    }

    /// The first packet count in `(old, new]` at which the packet rule of
    /// `ip_vs_sync_conn_needed` fires, for traffic counted in bulk (a fast
    /// path folds many packets at once): `None` when no count in between
    /// would have announced the connection.
    pub fn firing_count(&self, old: u32, new: u32) -> Option<u32> {
        if new <= old {
            return None;
        }
        if self.period > 0 {
            let r = self.threshold % self.period;
            let mut p = old - old % self.period + r;
            if p <= old {
                p = p.checked_add(self.period)?;
            }
            (p <= new).then_some(p)
        } else if self.refresh_period.as_millis() > 0 {
            Some(new)
        } else {
            (old < self.threshold && self.threshold <= new).then_some(self.threshold)
        }
    }
}

/// One connection or template as directors exchange it (`struct
/// ip_vs_sync_conn_v4/v6` without the wire details).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedConn {
    /// Client-side tuple; a template has `template` set, port 0 and, for a
    /// firewall-mark service, protocol 0 and the mark as its virtual address.
    pub key: ConnKey,
    pub daddr: IpAddr,
    pub dport: u16,
    /// The firewall mark of the connection's service (0 for an address
    /// service): the backup finds the service by it first.
    pub fwmark: u32,
    /// Protocol state index (templates: 0 NONE, 1 ASSURED).
    pub state: u8,
    /// IP_VS_CONN_F_INACTIVE.
    pub inactive: bool,
    /// IP_VS_CONN_F_NOOUTPUT.
    pub no_output: bool,
    /// The destination's method on the master. A backup ignores it: the
    /// connection takes its local destination's method (`ip_vs_bind_dest`).
    pub forward: Forward,
    /// The timeout of the connection's state (not the time left), as
    /// `cp->timeout / HZ` is sent.
    pub timeout: Span,
}

/// Why an announced connection was not installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("protocol {0} is not synchronised")]
    Protocol(u8),
    #[error("state {state} is not a state of protocol {proto}")]
    State { proto: u8, state: u8 },
    #[error("no virtual service for {0}")]
    NoService(String),
    #[error("no real server {0} in the virtual service")]
    NoDest(String),
    /// The message announces the end of a connection this director already
    /// replaced with another destination (ignored, as the kernel does).
    #[error("stale announcement of a replaced connection")]
    Replaced,
}

/// What the sync rules did on a master.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Records queued for sending.
    pub queued: u64,
    /// Records lost because the queue was full.
    pub dropped: u64,
}

/// A master's queue: the records waiting for the sender.
#[derive(Debug, Default)]
pub(crate) struct SyncMaster {
    pub(crate) params: SyncParams,
    pub(crate) queue: Vec<SyncedConn>,
    pub(crate) counters: SyncCounters,
}

impl SyncMaster {
    pub(crate) fn push(&mut self, rec: SyncedConn) {
        if self.queue.len() >= MAX_QUEUED {
            self.counters.dropped += 1;
        } else {
            self.queue.push(rec);
            self.counters.queued += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(p: &SyncParams, old: u32, new: u32) -> Option<u32> {
        (old + 1..=new).find(|&n| {
            if p.period > 0 {
                n % p.period == p.threshold
            } else if p.refresh_period.as_millis() > 0 {
                true
            } else {
                n == p.threshold
            }
        })
    }

    #[test]
    fn firing_count_matches_packet_by_packet_counting() {
        let cases = [
            SyncParams::default(),
            SyncParams {
                threshold: 0,
                period: 7,
                ..SyncParams::default()
            },
            SyncParams {
                threshold: 5,
                period: 0,
                ..SyncParams::default()
            },
        ];
        for p in &cases {
            for old in 0..120 {
                for new in old..200 {
                    assert_eq!(
                        p.firing_count(old, new),
                        naive(p, old, new),
                        "{p:?} {old}..{new}"
                    );
                }
            }
        }
    }

    #[test]
    fn validation_follows_the_sysctl() {
        assert!(SyncParams::default().validate().is_ok());
        let bad = SyncParams {
            threshold: 50,
            ..SyncParams::default()
        };
        assert!(bad.validate().is_err());
        let bad = SyncParams {
            retries: 4,
            ..SyncParams::default()
        };
        assert!(bad.validate().is_err());
    }
}
