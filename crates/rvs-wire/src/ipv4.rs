//! A minimal view of an IPv4 header (RFC 791 section 3.1): what a receiver of an
//! `AF_INET` raw socket needs from the whole datagram the kernel hands back (addresses,
//! TTL, protocol, where the payload is). Used for VRRP over IPv4, where the TTL must be
//! checked and the v3 checksum needs the addresses.
//!
//! Invariants: [`parse_ipv4`] accepts only version 4, a header length of at least 20
//! bytes that fits in the datagram, and a total length equal to the bytes received
//! (keepalived/vrrp/vrrp.c `vrrp_check_packet` compares `tot_len` with the received
//! length). The header checksum is not checked: the kernel drops datagrams with a bad
//! one before a raw socket sees them. Options are skipped, never interpreted.

use std::net::Ipv4Addr;

use crate::checksum::internet_checksum;

/// The length of a header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;

/// The fields of an IPv4 header that rvs reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// IHL * 4, options included.
    pub header_len: usize,
    /// The Total Length field: header and payload.
    pub total_len: usize,
}

/// Why a datagram is not a usable IPv4 datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("IPv4 datagram shorter than the 20-byte minimum header")]
    Truncated,
    #[error("not IPv4: version {0}")]
    NotIpv4(u8),
    #[error("bad IPv4 header length {0} (at least 20, and within the datagram)")]
    BadHeaderLength(usize),
    #[error("IPv4 total length {header} does not match the {received} bytes received")]
    TotalLengthMismatch { header: usize, received: usize },
}

/// Parses the header and returns it with the payload (bytes `header_len..total_len`).
/// `total_len` must equal `datagram.len()` (keepalived checks ip tot_len against the
/// received length).
pub fn parse_ipv4(datagram: &[u8]) -> Result<(Ipv4Header, &[u8]), Ipv4Error> {
    let Some(fixed) = datagram.get(..IPV4_MIN_HEADER_LEN) else {
        return Err(Ipv4Error::Truncated);
    };
    let version = fixed[0] >> 4;
    if version != 4 {
        return Err(Ipv4Error::NotIpv4(version));
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if total_len != datagram.len() {
        return Err(Ipv4Error::TotalLengthMismatch {
            header: total_len,
            received: datagram.len(),
        });
    }
    if header_len < IPV4_MIN_HEADER_LEN || header_len > total_len {
        return Err(Ipv4Error::BadHeaderLength(header_len));
    }
    let header = Ipv4Header {
        src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
        dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
        ttl: fixed[8],
        protocol: fixed[9],
        header_len,
        total_len,
    };
    let payload = datagram.get(header_len..).unwrap_or_default();
    Ok((header, payload))
}

/// Builds a 20-byte header (no options, TOS 0, DF clear, id 0, header checksum filled)
/// followed by `payload`; used by tests to craft packets. A payload too long for the
/// 16-bit Total Length gets Total Length 65535, which [`parse_ipv4`] refuses.
pub fn emit_ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total_len = u16::try_from(IPV4_MIN_HEADER_LEN + payload.len()).unwrap_or(u16::MAX);
    let mut datagram = Vec::with_capacity(IPV4_MIN_HEADER_LEN + payload.len());
    datagram.extend_from_slice(&[0x45, 0x00]);
    datagram.extend_from_slice(&total_len.to_be_bytes());
    // Identification 0, flags and fragment offset 0.
    datagram.extend_from_slice(&[0, 0, 0, 0]);
    datagram.extend_from_slice(&[ttl, protocol, 0, 0]);
    datagram.extend_from_slice(&src.octets());
    datagram.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&[&datagram]);
    datagram[10..12].copy_from_slice(&checksum.to_be_bytes());
    datagram.extend_from_slice(payload);
    datagram
}
