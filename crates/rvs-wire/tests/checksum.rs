//! The shared Internet checksum against a plain reference fold, across any chunking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::reference_checksum;
use proptest::prelude::*;
use rvs_wire::checksum::{internet_checksum, ipv4_pseudo_header, ipv6_pseudo_header};

#[test]
fn pseudo_header_layouts() {
    let v4 = ipv4_pseudo_header(
        Ipv4Addr::new(1, 2, 3, 4),
        Ipv4Addr::new(5, 6, 7, 8),
        112,
        0x1234,
    );
    assert_eq!(v4, [1, 2, 3, 4, 5, 6, 7, 8, 0, 112, 0x12, 0x34]);
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "ff02::12".parse().unwrap();
    let v6 = ipv6_pseudo_header(src, dst, 58, 0x0102_0304);
    assert_eq!(&v6[0..16], &src.octets());
    assert_eq!(&v6[16..32], &dst.octets());
    assert_eq!(&v6[32..40], &[1, 2, 3, 4, 0, 0, 0, 58]);
}

proptest! {
    #[test]
    fn any_chunking_matches_the_reference(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(internet_checksum(&chunks), reference_checksum(&bytes));
    }

    #[test]
    fn a_message_carrying_its_checksum_verifies(mut bytes in prop::collection::vec(any::<u8>(), 2..200)) {
        bytes[0] = 0;
        bytes[1] = 0;
        let sum = internet_checksum(&[&bytes]);
        bytes[..2].copy_from_slice(&sum.to_be_bytes());
        prop_assert_eq!(internet_checksum(&[&bytes]), 0);
    }
}
