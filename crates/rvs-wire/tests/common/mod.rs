//! Helpers shared by the wire-format tests, written independently of the crate's code
//! so that known answers do not come from the code under test.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// RFC 1071 checksum of `bytes` the plain way: sum big-endian 16-bit words into a u32
/// (an odd last byte is the high half of a word), fold the carries, complement.
pub fn reference_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let high = u32::from(bytes[i]) << 8;
        let low = if i + 1 < bytes.len() {
            u32::from(bytes[i + 1])
        } else {
            0
        };
        sum += high | low;
        i += 2;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Concatenates byte slices.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes a fixture: '#' lines are comments, the rest is hex with any whitespace.
pub fn decode_hex_fixture(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}
