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

/// The XDP program object (`bpf/rvs_xdp.c`, program `rvs_xdp`), 8-byte aligned
/// for `aya::Ebpf::load`.
pub const XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_xdp.o"));
/// The benchmark baselines (`bpf/rvs_bench.c`: `xdp_drop_all`, `xdp_redirect_peer`).
pub const BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs_bench.o"));
