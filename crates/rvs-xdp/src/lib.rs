//! The XDP packet plane.
//!
//! - [`abi`]: the maps' keys and values, byte for byte as `bpf/rvs_abi.h`.
//! - [`engine`]: the Rust reference engine, the same forwarding as `bpf/rvs_xdp.c`
//!   over in-memory tables (docs/packet-plane.md is the contract for both).

pub mod abi;
pub mod engine;
