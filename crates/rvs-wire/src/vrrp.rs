//! VRRP advertisements: version 2 (RFC 3768, IPv4 only) and version 3 (RFC 5798, IPv4
//! and IPv6). This module owns the message that follows the IP header; the IP header
//! itself (TTL 255, protocol 112, multicast group) is the sender's and receiver's
//! business.
//!
//! Wire layout (RFC 3768 section 5.1, RFC 5798 section 5.1), all fields big-endian:
//!
//! ```text
//! byte 0     version (high nibble: 2 or 3) | type (low nibble: 1 = ADVERTISEMENT)
//! byte 1     Virtual Rtr ID
//! byte 2     Priority
//! byte 3     Count IPvX Addr
//! bytes 4-5  v2: Auth Type, Adver Int (seconds)
//!            v3: rsvd (4 bits, zero on send, ignored on receipt) | Max Adver Int (12 bits, centiseconds)
//! bytes 6-7  Checksum
//! then       Count addresses (4 bytes each for IPv4, 16 for IPv6)
//! v2 only    8 bytes of Authentication Data
//! ```
//!
//! Invariants:
//! - The message length must be exactly what the address count implies (keepalived
//!   keepalived/vrrp/vrrp.c `vrrp_check_packet` and `expected_vrrp_pkt_len`): trailing
//!   bytes are an error, not padding.
//! - The v2 checksum covers the VRRP message only (RFC 3768 section 5.3.8); the v3
//!   checksum adds the IPv4 or IPv6 pseudo-header (RFC 5798 section 5.2.8), so the
//!   caller passes the IP source and destination to both [`VrrpRepr::parse`] and
//!   [`VrrpRepr::emit`]. A received message must checksum to zero.
//! - v2 is IPv4 only; a v3 message's addresses are all of the IP header's family.
//! - Authentication type and data are kept raw, not judged: deciding whether "PASS" or
//!   AH is acceptable is the receiver's policy (RFC 3768 section 5.3.6; keepalived
//!   accepts types 0, 1 and 2).
//! - No function here panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{internet_checksum, ipv4_pseudo_header, ipv6_pseudo_header};

/// The IP protocol number of VRRP (RFC 3768 section 5.2.4, RFC 5798 section 5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 TTL / IPv6 hop limit a VRRP packet is sent with and must arrive with
/// (RFC 3768 section 7.1, RFC 5798 section 5.1.1.3).
pub const VRRP_TTL: u8 = 255;
/// The IPv4 multicast group VRRP advertisements go to (RFC 3768 section 5.2.2).
pub const VRRP_MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group VRRP advertisements go to (RFC 5798 section 5.1.2.2).
pub const VRRP_MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The fixed part of every VRRP message, before the addresses.
const HEADER_LEN: usize = 8;
/// The Authentication Data that ends a v2 message (RFC 3768 section 5.3.10).
const V2_AUTH_DATA_LEN: usize = 8;
/// The only message type (RFC 3768 section 5.3.2, RFC 5798 section 5.2.2).
const TYPE_ADVERTISEMENT: u8 = 1;
/// The widest v3 Max Adver Int (12 bits).
const V3_MAX_ADVER_INT_CS: u16 = 0x0fff;

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, interval in seconds, authentication fields.
    V2,
    /// RFC 5798: IPv4 or IPv6, interval in centiseconds, pseudo-header checksum.
    V3,
}

impl VrrpVersion {
    fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

/// A VRRP advertisement, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpRepr {
    pub version: VrrpVersion,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds. v2 carries whole seconds on the wire
    /// (8 bits): parse gives secs*100, emit writes adver_int_cs/100 (saturating at 255).
    /// v3 carries the 12-bit Max Adver Int in centiseconds (emit saturates at 4095).
    pub adver_int_cs: u16,
    /// v2 only (0 for v3): Auth Type (0 none, 1 simple text password, 2 IP AH) and the
    /// 8 Authentication Data bytes, kept raw (the receiver decides). Emit ignores both
    /// for v3, which has no such fields.
    pub auth_type: u8,
    pub auth_data: [u8; 8],
    /// The advertised addresses, all of the packet's family (IPv4 for v2; v3 uses the
    /// family of src/dst).
    pub addresses: Vec<IpAddr>,
}

/// Why bytes are not an acceptable VRRP advertisement, or a repr cannot be emitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VrrpError {
    /// Shorter than the fixed 8-byte header.
    #[error("VRRP message shorter than its 8-byte header")]
    Truncated,
    /// The version nibble is neither 2 nor 3.
    #[error("unsupported VRRP version {0}")]
    BadVersion(u8),
    /// The type nibble is not 1 (ADVERTISEMENT).
    #[error("unknown VRRP message type {0} (only 1, ADVERTISEMENT, exists)")]
    BadType(u8),
    /// The message length differs from the one the address count implies (v2: 8 + 4n +
    /// 8; v3: 8 + 4n for IPv4 or 8 + 16n for IPv6). On emit: more than 255 addresses,
    /// `expected` being the longest message the 8-bit count allows.
    #[error("VRRP message length {got}, expected {expected} from its address count")]
    BadLength { expected: usize, got: usize },
    #[error("bad VRRP checksum")]
    BadChecksum,
    /// v2 with IPv6 source/destination, source and destination of different families,
    /// or (on emit) an address of another family than the packet's.
    #[error("VRRP address family mismatch")]
    FamilyMismatch,
}

/// The address family of a packet: whether its addresses are IPv6.
fn packet_is_ipv6(version: VrrpVersion, src: IpAddr, dst: IpAddr) -> Result<bool, VrrpError> {
    let is_ipv6 = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return Err(VrrpError::FamilyMismatch),
    };
    if is_ipv6 && version == VrrpVersion::V2 {
        return Err(VrrpError::FamilyMismatch);
    }
    Ok(is_ipv6)
}

fn address_len(is_ipv6: bool) -> usize {
    if is_ipv6 {
        16
    } else {
        4
    }
}

fn trailer_len(version: VrrpVersion) -> usize {
    match version {
        VrrpVersion::V2 => V2_AUTH_DATA_LEN,
        VrrpVersion::V3 => 0,
    }
}

/// The checksum over `message` (its checksum field included), with the v3 pseudo-header.
/// Zero means a received message is intact; over a message with a zero checksum field
/// it is the value to store.
fn checksum(version: VrrpVersion, src: IpAddr, dst: IpAddr, message: &[u8]) -> u16 {
    match (version, src, dst) {
        (VrrpVersion::V3, IpAddr::V4(src), IpAddr::V4(dst)) => {
            // Callers bound the message to well under 64 KiB (255 addresses at most).
            let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
            internet_checksum(&[&ipv4_pseudo_header(src, dst, IPPROTO_VRRP, len), message])
        }
        (VrrpVersion::V3, IpAddr::V6(src), IpAddr::V6(dst)) => {
            let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
            internet_checksum(&[&ipv6_pseudo_header(src, dst, IPPROTO_VRRP, len), message])
        }
        _ => internet_checksum(&[message]),
    }
}

impl VrrpRepr {
    /// Parses a VRRP message: the IP payload only. `src`/`dst` are the IP header's
    /// addresses: the v3 checksum covers the pseudo-header (RFC 5798 5.2.8, for IPv4 and
    /// IPv6); v2's covers the VRRP message only.
    ///
    /// Checks, in order: length of the fixed header, version, type, families, exact
    /// length, checksum.
    pub fn parse(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<VrrpRepr, VrrpError> {
        let Some(header) = payload.get(..HEADER_LEN) else {
            return Err(VrrpError::Truncated);
        };
        let version = match header[0] >> 4 {
            2 => VrrpVersion::V2,
            3 => VrrpVersion::V3,
            other => return Err(VrrpError::BadVersion(other)),
        };
        let message_type = header[0] & 0x0f;
        if message_type != TYPE_ADVERTISEMENT {
            return Err(VrrpError::BadType(message_type));
        }
        let is_ipv6 = packet_is_ipv6(version, src, dst)?;
        let count = usize::from(header[3]);
        let expected = HEADER_LEN + count * address_len(is_ipv6) + trailer_len(version);
        if payload.len() != expected {
            return Err(VrrpError::BadLength {
                expected,
                got: payload.len(),
            });
        }
        if checksum(version, src, dst, payload) != 0 {
            return Err(VrrpError::BadChecksum);
        }

        let address_bytes = payload
            .get(HEADER_LEN..HEADER_LEN + count * address_len(is_ipv6))
            .unwrap_or_default();
        let addresses = if is_ipv6 {
            address_bytes
                .chunks_exact(16)
                .filter_map(|octets| <[u8; 16]>::try_from(octets).ok())
                .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
                .collect()
        } else {
            address_bytes
                .chunks_exact(4)
                .filter_map(|octets| <[u8; 4]>::try_from(octets).ok())
                .map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
                .collect()
        };
        let (adver_int_cs, auth_type, auth_data) = match version {
            VrrpVersion::V2 => {
                let auth_data = payload
                    .get(payload.len() - V2_AUTH_DATA_LEN..)
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                    .unwrap_or_default();
                (u16::from(header[5]) * 100, header[4], auth_data)
            }
            VrrpVersion::V3 => (
                u16::from_be_bytes([header[4], header[5]]) & V3_MAX_ADVER_INT_CS,
                0,
                [0; 8],
            ),
        };
        Ok(VrrpRepr {
            version,
            vrid: header[1],
            priority: header[2],
            adver_int_cs,
            auth_type,
            auth_data,
            addresses,
        })
    }

    /// The message length emit produces.
    pub fn buffer_len(&self) -> usize {
        let addresses: usize = self
            .addresses
            .iter()
            .map(|address| address_len(address.is_ipv6()))
            .sum();
        HEADER_LEN + addresses + trailer_len(self.version)
    }

    /// Builds the message with its checksum (same pseudo-header rule as [`Self::parse`]).
    /// Errors: [`VrrpError::FamilyMismatch`] for v2 over IPv6, src/dst of different
    /// families, or an address of the other family; [`VrrpError::BadLength`] for more
    /// than 255 addresses.
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, VrrpError> {
        let is_ipv6 = packet_is_ipv6(self.version, src, dst)?;
        if self
            .addresses
            .iter()
            .any(|address| address.is_ipv6() != is_ipv6)
        {
            return Err(VrrpError::FamilyMismatch);
        }
        let Ok(count) = u8::try_from(self.addresses.len()) else {
            return Err(VrrpError::BadLength {
                expected: HEADER_LEN
                    + usize::from(u8::MAX) * address_len(is_ipv6)
                    + trailer_len(self.version),
                got: self.buffer_len(),
            });
        };
        let interval = match self.version {
            VrrpVersion::V2 => {
                let seconds = u8::try_from(self.adver_int_cs / 100).unwrap_or(u8::MAX);
                [self.auth_type, seconds]
            }
            VrrpVersion::V3 => self.adver_int_cs.min(V3_MAX_ADVER_INT_CS).to_be_bytes(),
        };
        let mut message = Vec::with_capacity(self.buffer_len());
        message.push(self.version.number() << 4 | TYPE_ADVERTISEMENT);
        message.extend_from_slice(&[self.vrid, self.priority, count]);
        message.extend_from_slice(&interval);
        message.extend_from_slice(&[0, 0]);
        for address in &self.addresses {
            match address {
                IpAddr::V4(address) => message.extend_from_slice(&address.octets()),
                IpAddr::V6(address) => message.extend_from_slice(&address.octets()),
            }
        }
        if self.version == VrrpVersion::V2 {
            message.extend_from_slice(&self.auth_data);
        }
        let sum = checksum(self.version, src, dst, &message);
        message[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(message)
    }
}
