//! `rvs-vrrp`: VRRP as a pure state machine. The driver (rvsd) owns the sockets,
//! the clock, the addresses and the scripts; this crate decides.
//!
//! - [`config`]: what an instance and a sync group are configured to do.
//! - [`machine`]: [`Vrrp`], every instance and group of one router: feed it
//!   received packets, timer expiry, tracker reports and shutdown; drain its
//!   [`Action`]s and sleep until [`Vrrp::poll_timeout`].
//!
//! Invariants: no I/O, no clock, no randomness; the same inputs give the same
//! actions, so the conformance tests run in virtual time.

#![forbid(unsafe_code)]

pub mod config;
pub mod machine;

pub use config::{
    round_advert_int, ConfigError, GarpConfig, GroupConfig, InstanceConfig, TrackerConfig,
    PRIORITY_OWNER, PRIORITY_STOP,
};
pub use machine::{
    Action, Counters, DropReason, InstanceStatus, Notice, NoticeTarget, Received, State, Vrrp,
};
