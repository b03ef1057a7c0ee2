//! Arbitrary bytes -> a sequence of director operations (control changes with
//! valid and invalid configs, TCP/UDP/SCTP packets in and out, time steps and big
//! jumps, timeouts, zero, clear); after each one the director's invariants are
//! checked and a rejected operation must have changed nothing. The decoder and
//! the checks are shared with crates/rvs-core/tests/ops_fuzz.rs.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run director_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/rvs-core/tests/ops/mod.rs"]
mod ops;

fuzz_target!(|data: &[u8]| {
    let ops = ops::decode(data, 2000);
    if let Err(e) = ops::run(&ops) {
        panic!("{e}");
    }
});
