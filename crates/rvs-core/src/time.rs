//! Time as an input. The core never reads a clock: every call that depends on time
//! takes a [`Time`], a count of milliseconds since an epoch the caller picks.
//! Invariant: callers pass non-decreasing times; a time in the past is treated as
//! "now" by every consumer (saturating arithmetic), never as an error.

use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds since a caller-chosen epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    pub const fn from_secs(s: u64) -> Self {
        Time(s.saturating_mul(1000))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(u64);

impl Span {
    pub const fn from_millis(ms: u64) -> Self {
        Span(ms)
    }
    pub const fn from_secs(s: u64) -> Self {
        Span(s.saturating_mul(1000))
    }
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// Whole seconds, truncated (as the kernel divides jiffies by HZ).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }
}

impl Add<Span> for Time {
    type Output = Time;
    fn add(self, rhs: Span) -> Time {
        Time(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Time> for Time {
    type Output = Span;
    fn sub(self, rhs: Time) -> Span {
        Span(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}
