//! The PROXY protocol decoder never panics, and whatever it accepts it accepts
//! consistently: the consumed length is within the input, and a prefix of an
//! accepted header is never an error (only "need more bytes").
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_wire::proxy_protocol::decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = decode(data) {
        assert!(used <= data.len());
        for cut in 0..used {
            assert!(
                matches!(decode(&data[..cut]), Ok(None)),
                "a prefix of an accepted header was refused"
            );
        }
    }
});
