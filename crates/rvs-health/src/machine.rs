//! Sans-I/O health state machines with keepalived 2.2.7's semantics.
//!
//! - [`checker`]: one checker's timing and up/down state ([`CheckerMachine`]):
//!   when the next probe starts (warmup, delay_loop, retry, delay_before_retry)
//!   and when the checker flips (keepalived/check/check_{tcp,http,misc,dns,smtp,udp,ping}.c).
//! - [`pool`]: one virtual server's real servers ([`ServicePool`]): a real server is up
//!   only while all its checkers are up, quorum with hysteresis, sorry server,
//!   inhibit_on_failure, dynamic weights and reload (keepalived/check/ipwrapper.c).
//!
//! Invariants: nothing here reads a clock, does I/O or draws random numbers; time and
//! random draws are arguments. Callers pass non-decreasing times.

pub mod checker;
pub mod pool;

pub use checker::{CheckTiming, CheckerChange, CheckerMachine, RetryStyle, BOOTSTRAP_DELAY};
pub use pool::{
    CheckerConfig, CheckerId, EffectiveServer, HealthEvent, PoolConfig, RealServerConfig,
    ServicePool, SorryServerConfig, UnknownChecker,
};
