//! rvs-core: the sans-I/O brain of the rvs director.
//!
//! It owns the virtual services and their real servers ([`model`]), the IPVS
//! schedulers ([`sched`]), the connection table with IPVS's state machines and
//! persistence templates ([`conn`]), the counters and rate estimator ([`stats`]),
//! and the [`Director`] that ties them together. It reads
//! no clock ([`time::Time`] is passed in), opens no socket and spawns no task; data
//! planes and tests feed it events and carry out its decisions.
#![forbid(unsafe_code)]

pub mod conn;
pub mod dest;
pub mod director;
pub mod error;
pub mod mark;
pub mod model;
pub mod sched;
pub mod service;
pub mod stats;
pub mod sync;
pub mod time;

pub use conn::sctp::{SctpEvent, SctpState};
pub use conn::tcp::{TcpFlags, TcpState};
pub use conn::{Conn, ConnId, ConnKey};
pub use dest::{Dest, DestId};
pub use director::{
    Director, DirectorConfig, Forwarding, HashTable, InVerdict, OutVerdict, Packet, SctpInfo,
    Sysctl, Timeouts,
};
pub use error::{ConfigError, CoreError};
pub use mark::{MarkError, MarkRule, MarkRules, PortRange, Prefix};
pub use model::*;
pub use sched::{SchedParams, SchedulerKind};
pub use service::{Service, ServiceId};
pub use stats::{Counters, Rates, Stats};
pub use sync::{ImportError, SyncCounters, SyncParams, SyncedConn};
pub use time::{Span, Time};
