//! VRRP parsing never panics, and whatever it accepts it can rebuild: emitting the
//! parsed advertisement and parsing that again gives the same advertisement, at the
//! same length.
//!
//! Input layout: the first byte selects the mode.
//! - bit 2 set: the rest is a whole IPv4 datagram, as an AF_INET raw socket returns it
//!   (`parse_ipv4`, then the VRRP payload with the header's addresses);
//! - otherwise bits 0 and 1 pick the source and destination families (set: IPv6), the
//!   addresses follow (4 or 16 bytes each), and the rest is the VRRP message. Mixed
//!   families are allowed on purpose: they must be refused, not crash.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use rvs_wire::ipv4::parse_ipv4;
use rvs_wire::vrrp::VrrpRepr;

/// Takes an address of the chosen family off the front of `bytes`.
fn take_addr(bytes: &[u8], ipv6: bool) -> Option<(IpAddr, &[u8])> {
    if ipv6 {
        let (octets, rest) = bytes.split_first_chunk::<16>()?;
        Some((IpAddr::V6(Ipv6Addr::from(*octets)), rest))
    } else {
        let (octets, rest) = bytes.split_first_chunk::<4>()?;
        Some((IpAddr::V4(Ipv4Addr::from(*octets)), rest))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (payload, src, dst) = if mode & 0x04 != 0 {
        let Ok((header, payload)) = parse_ipv4(rest) else {
            return;
        };
        assert_eq!(header.total_len, rest.len());
        (payload, IpAddr::V4(header.src), IpAddr::V4(header.dst))
    } else {
        let Some((src, rest)) = take_addr(rest, mode & 0x01 != 0) else {
            return;
        };
        let Some((dst, payload)) = take_addr(rest, mode & 0x02 != 0) else {
            return;
        };
        (payload, src, dst)
    };

    let Ok(repr) = VrrpRepr::parse(payload, src, dst) else {
        return;
    };
    let emitted = repr
        .emit(src, dst)
        .expect("an advertisement that parsed must emit");
    assert_eq!(emitted.len(), repr.buffer_len());
    assert_eq!(emitted.len(), payload.len());
    let reparsed = VrrpRepr::parse(&emitted, src, dst).expect("emitted advertisement must parse");
    assert_eq!(reparsed, repr);
});
