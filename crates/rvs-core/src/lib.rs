//! rvs-core: the sans-I/O brain of the rvs director.
//!
//! It owns the virtual services and their real servers ([`model`]), the IPVS
//! schedulers ([`sched`]), and the counters and rate estimator ([`stats`]). It reads
//! no clock ([`time::Time`] is passed in), opens no socket and spawns no task; data
//! planes and tests feed it events and carry out its decisions.
#![forbid(unsafe_code)]

pub mod conn {
    /// Which of the kernel's state tables a packet is looked up in.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum TableDir {
        Input,
        Output,
        InputOnly,
    }
    pub mod sctp;
}
pub mod dest;
pub mod error;
pub mod model;
pub mod sched;
pub mod service;
pub mod stats;
pub mod time;

pub use dest::{Dest, DestId};
pub use error::{ConfigError, CoreError};
pub use model::*;
pub use sched::{SchedParams, SchedulerKind};
pub use service::{Service, ServiceId};
pub use stats::{Counters, Rates, Stats};
pub use time::{Span, Time};
