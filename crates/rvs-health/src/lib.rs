//! Health checking with keepalived's semantics (keepalived/check/*.c).
//!
//! - [`machine`]: sans-I/O state machines. A checker's timing (delay_loop, retry,
//!   delay_before_retry, warmup) and a virtual server's aggregation (a real server
//!   is up only while all its checkers pass; quorum, hysteresis, sorry server,
//!   inhibit_on_failure). Time is passed in; nothing here reads a clock or does I/O.
//! - [`probe`]: the probes themselves (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
//!   DNS_CHECK, SMTP_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK), run on tokio; each
//!   returns one [`Outcome`].

pub mod machine;
pub mod probe;

/// The result of one probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed. `weight` is set by checkers with dynamic weights
    /// (MISC_CHECK with misc_dynamic: exit code − 2; FILE_CHECK with dynamic):
    /// the real server's weight becomes that value while it stays up.
    Pass { weight: Option<u32> },
    /// The check failed; `reason` says why, for the log and the API.
    Fail { reason: String },
}
