//! `/v1/daemons`: the connection sync daemons (IPVS's master and backup sync
//! threads, started by `ipvsadm --start-daemon`). A request names the settings
//! the way ipvsadm's options do; a view shows them resolved, as the kernel
//! reports them to `ipvsadm -L --daemon` (net/netfilter/ipvs/ip_vs_ctl.c
//! `ip_vs_genl_dump_daemons`).
//!
//! Invariant: [`DaemonSpec::check`] refuses what ipvsadm's option parser refuses
//! (a zero port, ttl or maxlen, an empty or over-long interface name, a group that
//! is not multicast), so every accepted spec is one ipvsadm could have sent.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Which daemon: `master` announces connections, `backup` installs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    Master,
    Backup,
}

impl DaemonState {
    /// `master` or `backup`, as ipvsadm and the API path spell it.
    pub fn name(self) -> &'static str {
        match self {
            DaemonState::Master => "master",
            DaemonState::Backup => "backup",
        }
    }

    /// The inverse of [`DaemonState::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "master" => Some(DaemonState::Master),
            "backup" => Some(DaemonState::Backup),
            _ => None,
        }
    }
}

/// `POST /v1/daemons`: start one daemon. Omitted fields take the kernel's
/// defaults (syncid 0, maxlen from the interface, group 224.0.0.81 or ff02::81,
/// port 8848, ttl 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSpec {
    pub state: DaemonState,
    pub mcast_interface: String,
    #[serde(default)]
    pub syncid: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_maxlen: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcast_group: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcast_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcast_ttl: Option<u8>,
}

/// Largest `sync_maxlen` ipvsadm accepts (65535 - 20 - 8, the largest UDP payload).
pub const MAX_SYNC_MAXLEN: u16 = 65507;

impl DaemonSpec {
    /// Refuses the values ipvsadm's parser would not send (ipvsadm.c
    /// `parse_options`, `--mcast-*` and `--sync-maxlen` cases), naming the field.
    pub fn check(&self) -> Result<(), ApiError> {
        let n = self.mcast_interface.len();
        if n == 0 || n > MAX_IFNAME_LEN {
            return Err(ApiError::invalid(format!(
                "mcast_interface: {n} bytes, must be 1 to {MAX_IFNAME_LEN}"
            )));
        }
        if matches!(self.sync_maxlen, Some(m) if m == 0 || m > MAX_SYNC_MAXLEN) {
            return Err(ApiError::invalid(format!(
                "sync_maxlen: must be 1 to {MAX_SYNC_MAXLEN}"
            )));
        }
        if self.mcast_port == Some(0) {
            return Err(ApiError::invalid("mcast_port: must be 1 to 65535"));
        }
        if self.mcast_ttl == Some(0) {
            return Err(ApiError::invalid("mcast_ttl: must be 1 to 255"));
        }
        if let Some(g) = self.mcast_group {
            if !g.is_multicast() {
                return Err(ApiError::invalid(format!(
                    "mcast_group: {g} is not a multicast address"
                )));
            }
        }
        Ok(())
    }
}

/// A running daemon, every default resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    pub state: DaemonState,
    pub mcast_interface: String,
    pub syncid: u8,
    pub sync_maxlen: u16,
    pub mcast_group: IpAddr,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

/// What the daemons did since rvsd started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatsView {
    pub messages_sent: u64,
    pub conns_sent: u64,
    pub conns_dropped: u64,
    /// Master: FullNat records not sent (no IPVS equivalent).
    #[serde(default)]
    pub conns_skipped: u64,
    pub messages_received: u64,
    pub conns_received: u64,
    pub conns_imported: u64,
    pub import_errors: u64,
    pub wrong_syncid: u64,
    pub malformed: u64,
    pub resync_requests_sent: u64,
    pub resync_requests_answered: u64,
}

/// `GET /v1/daemons` (and the answer of a start or stop): the running daemons,
/// master first, and the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonsView {
    pub daemons: Vec<DaemonView>,
    pub stats: SyncStatsView,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn spec(json: &str) -> Result<DaemonSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn spec_defaults_and_round_trip() {
        let s = spec(r#"{"state":"backup","mcast_interface":"eth0"}"#).unwrap();
        assert_eq!(s.state, DaemonState::Backup);
        assert_eq!(s.syncid, 0);
        assert_eq!(
            (s.sync_maxlen, s.mcast_group, s.mcast_port, s.mcast_ttl),
            (None, None, None, None)
        );
        assert!(s.check().is_ok());
        let full = DaemonSpec {
            state: DaemonState::Master,
            mcast_interface: "eth1".into(),
            syncid: 7,
            sync_maxlen: Some(1000),
            mcast_group: Some("ff02::81".parse().unwrap()),
            mcast_port: Some(9000),
            mcast_ttl: Some(3),
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(spec(&text).unwrap(), full);
        assert!(spec(r#"{"state":"Master","mcast_interface":"eth0"}"#).is_err());
        assert!(spec(r#"{"state":"master","mcast_interface":"eth0","syncid":256}"#).is_err());
        assert!(spec(r#"{"state":"master","mcast_interface":"eth0","bogus":1}"#).is_err());
    }

    #[test]
    fn check_refuses_what_ipvsadm_refuses() {
        let base = spec(r#"{"state":"master","mcast_interface":"eth0"}"#).unwrap();
        let refused = |f: &dyn Fn(&mut DaemonSpec), field: &str| {
            let mut s = base.clone();
            f(&mut s);
            let e = s.check().unwrap_err();
            assert!(e.message.starts_with(field), "{}", e.message);
            assert_eq!(e.errno.as_deref(), Some("EINVAL"));
        };
        refused(&|s| s.mcast_interface.clear(), "mcast_interface");
        refused(
            &|s| s.mcast_interface = "0123456789abcdef".into(),
            "mcast_interface",
        );
        refused(&|s| s.sync_maxlen = Some(0), "sync_maxlen");
        refused(&|s| s.sync_maxlen = Some(65508), "sync_maxlen");
        refused(&|s| s.mcast_port = Some(0), "mcast_port");
        refused(&|s| s.mcast_ttl = Some(0), "mcast_ttl");
        refused(
            &|s| s.mcast_group = Some("10.0.0.1".parse().unwrap()),
            "mcast_group",
        );
        let mut ok = base.clone();
        ok.mcast_interface = "0123456789abcde".into();
        ok.sync_maxlen = Some(65507);
        ok.mcast_group = Some("239.1.2.3".parse().unwrap());
        assert!(ok.check().is_ok());
    }

    #[test]
    fn state_names() {
        for s in [DaemonState::Master, DaemonState::Backup] {
            assert_eq!(DaemonState::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
        }
        assert_eq!(DaemonState::from_name("Master"), None);
    }
}
