//! rvs-loadgen: the load generator and demo real servers used to benchmark rvs's
//! data planes against other TCP proxies on loopback (see `bench/proxy/`).
//!
//! The binary (`src/main.rs`) is a thin command line over these modules; the tests
//! drive them in-process.

pub mod backend;
pub mod bulk;
pub mod cps;
pub mod idle;
pub mod pattern;
pub mod report;
pub mod runner;
