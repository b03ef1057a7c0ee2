//! The XDP packet plane.
//!
//! - [`abi`]: the maps' keys and values, byte for byte as `bpf/rvs_abi.h`.
//! - [`engine`]: the Rust reference engine, the same forwarding as `bpf/rvs_xdp.c`
//!   over in-memory tables (docs/packet-plane.md is the contract for both).
//! - [`loader`]: loads the BPF object into the kernel, attaches it and reads
//!   and writes its maps; [`error`]: its errors.

pub mod abi;
pub mod engine;
pub mod error;
pub mod loader;

pub use error::XdpError;
pub use loader::{AttachMode, Loaded, TestOutcome};
