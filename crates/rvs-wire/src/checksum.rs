//! The Internet checksum (RFC 1071) and the pseudo-headers that upper-layer checksums
//! cover (RFC 768/793 for IPv4, RFC 8200 section 8.1 for IPv6). Every checksum in this
//! crate goes through [`internet_checksum`].
//!
//! Invariants: a message is treated as the concatenation of its chunks, so an odd-length
//! chunk's last byte pairs with the next chunk's first byte exactly as it would in one
//! buffer; an odd total length is padded with one zero byte (RFC 1071 section 4.1). A
//! message whose checksum field holds the value computed over it (with the field zero)
//! checksums to 0, which is how receivers verify.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The one's complement of the one's complement sum of the 16-bit big-endian words of
/// the concatenated `chunks`: the value to store in a checksum field (in network order,
/// `to_be_bytes`), or 0 when verifying a message that already carries its checksum.
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    !ones_complement_sum(chunks)
}

fn ones_complement_sum(chunks: &[&[u8]]) -> u16 {
    // Enough headroom for 2^48 words before the final fold.
    let mut sum: u64 = 0;
    // The high byte of a word whose low byte starts the next chunk.
    let mut pending_high: Option<u8> = None;
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        if let Some(high) = pending_high.take() {
            match rest.split_first() {
                Some((&low, tail)) => {
                    sum += u64::from(u16::from_be_bytes([high, low]));
                    rest = tail;
                }
                None => {
                    pending_high = Some(high);
                    continue;
                }
            }
        }
        let mut words = rest.chunks_exact(2);
        for word in &mut words {
            if let [high, low] = word {
                sum += u64::from(u16::from_be_bytes([*high, *low]));
            }
        }
        if let [last] = words.remainder() {
            pending_high = Some(*last);
        }
    }
    if let Some(high) = pending_high {
        sum += u64::from(high) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The 12-byte IPv4 pseudo-header: source, destination, zero, protocol, and the
/// upper-layer length (RFC 768, RFC 793 section 3.1; RFC 5798 section 5.2.8 for VRRPv3).
pub fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&src.octets());
    header[4..8].copy_from_slice(&dst.octets());
    header[9] = protocol;
    header[10..12].copy_from_slice(&len.to_be_bytes());
    header
}

/// The 40-byte IPv6 pseudo-header: source, destination, 32-bit upper-layer length, three
/// zero bytes and the next header value (RFC 8200 section 8.1).
pub fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> [u8; 40] {
    let mut header = [0u8; 40];
    header[0..16].copy_from_slice(&src.octets());
    header[16..32].copy_from_slice(&dst.octets());
    header[32..36].copy_from_slice(&len.to_be_bytes());
    header[39] = next_header;
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3 example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&[&data]), 0xddf2);
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
    }

    #[test]
    fn odd_chunks_pair_across_boundaries() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let whole = internet_checksum(&[&data]);
        assert_eq!(internet_checksum(&[&data[..1], &data[1..]]), whole);
        assert_eq!(
            internet_checksum(&[&data[..3], &[], &data[3..5], &data[5..]]),
            whole
        );
        // An odd total is padded with a zero byte at the end, not at a chunk boundary.
        assert_eq!(internet_checksum(&[&[0xab]]), !0xab00);
        // abcd + ef00 = 1_9acd, end-around carry 9ace.
        assert_eq!(internet_checksum(&[&[0xab], &[], &[0xcd, 0xef]]), !0x9ace);
    }
}
