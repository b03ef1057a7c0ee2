//! rvsd, the rvs director daemon, as a library: the control plane over the core,
//! the crash-safe state file, the admin API, the server that runs them, and the
//! `--demo` real servers and table. The `rvsd` and `rvsadm` binaries of this
//! package are thin shells over it.

pub mod client;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod events;
pub mod http;
pub mod http_sync;
pub mod keepalived;
pub mod metrics;
pub mod paths;
pub mod server;
pub mod state;
pub mod sync;
pub mod vrrp;
pub mod xdp;
