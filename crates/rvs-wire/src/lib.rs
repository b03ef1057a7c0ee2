//! `rvs-wire` owns the byte formats rvs writes to, or reads from, a connection
//! without being the application on it. Today that is one format: the HAProxy PROXY
//! protocol ([`proxy_protocol`]), the header rvs's socket plane puts in front of a
//! relayed connection so that the real server learns the client's address.
//!
//! Invariants: everything here is pure (no I/O, no clock, no global state), and no
//! function panics on any input bytes.

#![forbid(unsafe_code)]

pub mod proxy_protocol;
