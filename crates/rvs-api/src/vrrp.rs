//! `GET /v1/vrrp`: the VRRP instances and sync groups of an rvsd running a
//! keepalived.conf with `vrrp_instance` blocks, as the driver last saw them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpView {
    pub instances: Vec<VrrpInstanceView>,
    pub groups: Vec<VrrpGroupView>,
    /// Packets no instance claimed: unknown VRID on that interface and family.
    pub unknown_vrid: u64,
    /// IPv4 datagrams whose header could not be read (length mismatch...).
    pub bad_ip_header: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpInstanceView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// INIT, BACKUP, MASTER, FAULT or STOP.
    pub state: String,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub advert_int_ms: u64,
    pub master_adver_int_ms: u64,
    /// The source address of this router's adverts.
    pub source: String,
    /// The last master heard (this router's own address while master).
    pub master: Option<String>,
    pub master_priority: Option<u8>,
    pub virtual_addresses: Vec<String>,
    /// Whether the virtual addresses are on the interface now.
    pub addresses_set: bool,
    pub trackers: Vec<VrrpTrackerView>,
    /// Milliseconds since rvsd started, of the last state change.
    pub last_transition_ms: Option<u64>,
    pub counters: VrrpCountersView,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpTrackerView {
    pub name: String,
    /// `None` before the first report (a script that has not run).
    pub up: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpGroupView {
    pub name: String,
    pub state: String,
    pub members: Vec<String>,
}

/// keepalived's per-instance statistics, and the drops by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpCountersView {
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    pub became_master: u64,
    pub released_master: u64,
    pub dropped: u64,
    pub length_errors: u64,
    pub ttl_errors: u64,
    pub version_errors: u64,
    pub type_errors: u64,
    pub checksum_errors: u64,
    pub invalid_auth_type: u64,
    pub auth_type_mismatch: u64,
    pub auth_failures: u64,
    pub advert_interval_errors: u64,
    pub address_list_errors: u64,
    pub delivery_errors: u64,
}
