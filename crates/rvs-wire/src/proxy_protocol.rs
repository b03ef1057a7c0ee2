//! The PROXY protocol, versions 1 (text) and 2 (binary), as specified in HAProxy's
//! "The PROXY protocol, Versions 1 & 2" (doc/proxy-protocol.txt, revision
//! 2020/03/05; section numbers below refer to it). A proxy sends one header at the
//! very start of a connection, before any relayed byte, carrying the addresses the
//! server would have seen had the client connected to it directly.
//!
//! This module owns both directions:
//! - encoding ([`encode_v1`], [`encode_v2`], [`encode`]): what rvs sends to a real
//!   server. Output always follows the spec's grammar exactly.
//! - decoding ([`decode`]): for tests and demo servers. It is incremental: it
//!   answers `Ok(None)` while the bytes seen so far are a prefix of some valid
//!   header, and an error as soon as they cannot be.
//!
//! Choices where the spec leaves room, each the spec's own recommendation or
//! HAProxy's behaviour as a sender:
//! - Mixed families (one IPv4 and one IPv6 endpoint): the IPv4 one is sent as its
//!   IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as `TCP6` in version 1 and family
//!   AF_INET6 in version 2. Section 2.1 reserves `UNKNOWN` for when a correct line
//!   cannot be built, and a mapped address is a correct one (section 4.2).
//! - Version 1 can only name TCP (section 2.1: "other, unsupported, or unknown
//!   protocols must be reported" as `UNKNOWN`), so a datagram transport encodes as
//!   `PROXY UNKNOWN\r\n`.
//! - Version 1 IPv6 addresses are written as colon-separated hex groups only, with
//!   the longest run of two or more zero groups shortened to `::` (never the
//!   dotted-quad tail that `inet_ntop` uses for mapped addresses, which is not in
//!   the section 2.1 grammar). The decoder accepts that tail anyway, since HAProxy
//!   itself sends it.
//! - Version 2 `LOCAL` is sent with family and transport UNSPEC and no address
//!   block (section 2.2); on receipt, whatever `LOCAL` carries is skipped.
//! - Version 2 AF_UNIX and UNSPEC are decoded as "no addresses", the fallback
//!   section 2.2 allows; TLVs after the address block are skipped, never parsed.
//!
//! Decoding invariants: a returned length is exactly the header's length (never
//! more than the input); a version 1 line with its CRLF is at most 107 bytes; any
//! CR or LF other than the final CRLF is an error; numbers have no leading zeros;
//! a version 2 header is accepted only with version 2, a known command, a known
//! family and transport, and a length that covers the addresses it announces.
//! Decoded addresses have zero IPv6 flow info and scope id, and mapped addresses
//! stay IPv6 (use [`std::net::IpAddr::to_canonical`] to unmap them).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

/// The 12 bytes every version 2 header starts with (section 2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 line a receiver must accept, CRLF included (section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// The fixed part of a version 2 header: signature, version/command, family and
/// transport, length.
pub const V2_FIXED_LEN: usize = 16;

const V1_TAG: &[u8] = b"PROXY";
/// Version 2 address block lengths for AF_INET and AF_INET6 (section 2.2).
const V2_INET_LEN: u16 = 12;
const V2_INET6_LEN: u16 = 36;

/// PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Human-readable text line.
    V1,
    /// Binary header.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// `"v1"` or `"v2"` is not what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PROXY protocol version {0:?} (expected \"v1\" or \"v2\")")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            _ => Err(ParseVersionError(s.to_owned())),
        }
    }
}

/// What the connection is (version 2's command; version 1 headers decode as
/// [`Command::Proxy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Opened by the proxy itself (health checks): use the real endpoints.
    Local,
    /// Relayed on behalf of a client: the header's addresses are the real ones.
    Proxy,
}

/// The relayed connection's socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SOCK_STREAM (TCP).
    Stream,
    /// SOCK_DGRAM (UDP).
    Datagram,
}

/// The relayed connection's endpoints, as the server would see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The client.
    pub src: SocketAddr,
    /// The address the client connected to.
    pub dst: SocketAddr,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// `None` for version 1 `UNKNOWN`, version 2 `LOCAL`, and a version 2
    /// transport of UNSPEC.
    pub transport: Option<Transport>,
    /// `None` when the header carries no usable addresses (`UNKNOWN`, `LOCAL`,
    /// families UNSPEC and AF_UNIX, transport UNSPEC): the receiver then uses
    /// the connection's own endpoints.
    pub addresses: Option<Addresses>,
}

/// Why bytes are not a valid PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "not a PROXY protocol header: it starts with neither \"PROXY\" nor the version 2 signature"
    )]
    NotProxy,
    #[error("PROXY v1: no CRLF within the first {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error(
        "PROXY v1: a lone CR or LF; the line must end with CRLF and contain no other CR or LF"
    )]
    V1LineEnd,
    #[error("PROXY v1: the line is not US-ASCII")]
    V1NotAscii,
    #[error("PROXY v1: unknown protocol {0:?} (expected TCP4, TCP6 or UNKNOWN)")]
    V1Protocol(String),
    #[error("PROXY v1: expected \"PROXY <TCP4|TCP6> <src> <dst> <src port> <dst port>\" separated by single spaces")]
    V1Fields,
    #[error("PROXY v1: invalid {family} {which} address {text:?}")]
    V1Address {
        family: &'static str,
        which: &'static str,
        text: String,
    },
    #[error("PROXY v1: invalid {which} port {text:?} (decimal 0-65535 without leading zeros)")]
    V1Port { which: &'static str, text: String },
    #[error("PROXY v2: version {0} after the signature (only 2 is defined)")]
    V2Version(u8),
    #[error("PROXY v2: unknown command {0:#x} (expected 0 LOCAL or 1 PROXY)")]
    V2Command(u8),
    #[error("PROXY v2: unknown address family {0:#x} (expected 0 to 3)")]
    V2Family(u8),
    #[error("PROXY v2: unknown transport {0:#x} (expected 0 to 2)")]
    V2Transport(u8),
    #[error("PROXY v2: length {len} is shorter than the {need} bytes of {family} addresses")]
    V2Length {
        family: &'static str,
        need: u16,
        len: u16,
    },
}

/// The version 1 line for a TCP connection from `src` to `dst`: `TCP4` when both
/// are IPv4, otherwise `TCP6` (an IPv4 endpoint sent IPv4-mapped).
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        _ => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            v6_text(as_v6(src)),
            v6_text(as_v6(dst)),
            src.port(),
            dst.port()
        ),
    };
    line.into_bytes()
}

/// The version 1 line for a connection whose protocol version 1 cannot name.
pub fn encode_v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// The version 2 header. `Local` ignores the other arguments and sends family and
/// transport UNSPEC with no addresses; `Proxy` sends family AF_INET when both
/// endpoints are IPv4, otherwise AF_INET6 (an IPv4 endpoint sent IPv4-mapped).
pub fn encode_v2(
    command: Command,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + usize::from(V2_INET6_LEN));
    out.extend_from_slice(&V2_SIGNATURE);
    if command == Command::Local {
        out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        return out;
    }
    let proto = match transport {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    out.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x10 | proto);
            out.extend_from_slice(&V2_INET_LEN.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        _ => {
            out.push(0x20 | proto);
            out.extend_from_slice(&V2_INET6_LEN.to_be_bytes());
            out.extend_from_slice(&as_v6(src).octets());
            out.extend_from_slice(&as_v6(dst).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// The header rvs sends in front of a relayed connection: [`encode_v1`] (or
/// `PROXY UNKNOWN` for a datagram transport, which version 1 cannot name) or
/// [`encode_v2`] with [`Command::Proxy`].
pub fn encode(version: Version, transport: Transport, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    match (version, transport) {
        (Version::V1, Transport::Stream) => encode_v1(src, dst),
        (Version::V1, Transport::Datagram) => encode_v1_unknown(),
        (Version::V2, _) => encode_v2(Command::Proxy, transport, src, dst),
    }
}

/// Decodes the header at the start of `buf`: `Ok(None)` if `buf` is a proper
/// prefix of a valid header (read more and call again), otherwise the header and
/// how many bytes of `buf` it took; the bytes after it are the relayed data.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    if starts_like(buf, &V2_SIGNATURE) {
        decode_v2(buf)
    } else if starts_like(buf, V1_TAG) {
        decode_v1(buf)
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// Whether `buf` and `tag` agree on their common length.
fn starts_like(buf: &[u8], tag: &[u8]) -> bool {
    let n = buf.len().min(tag.len());
    buf[..n] == tag[..n]
}

fn decode_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let mut cr_at = None;
    for (i, &b) in window.iter().enumerate() {
        match (b, window.get(i + 1)) {
            (b'\r', Some(b'\n')) => {
                cr_at = Some(i);
                break;
            }
            (b'\r', None) => {}
            (b'\r' | b'\n', _) => return Err(ProxyError::V1LineEnd),
            _ => {}
        }
    }
    let Some(cr_at) = cr_at else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        if !starts_like(buf, b"PROXY ") {
            return Err(ProxyError::V1Fields);
        }
        return Ok(None);
    };
    let header = parse_v1_line(&buf[..cr_at])?;
    Ok(Some((header, cr_at + 2)))
}

/// Parses a complete version 1 line without its CRLF.
fn parse_v1_line(line: &[u8]) -> Result<Header, ProxyError> {
    let rest = line.strip_prefix(b"PROXY ").ok_or(ProxyError::V1Fields)?;
    // Section 2.1: after UNKNOWN the receiver ignores everything up to the CRLF.
    if let Some(after) = rest.strip_prefix(b"UNKNOWN") {
        if after.is_empty() || after.starts_with(b" ") {
            return Ok(Header {
                version: Version::V1,
                command: Command::Proxy,
                transport: None,
                addresses: None,
            });
        }
    }
    if !rest.is_ascii() {
        return Err(ProxyError::V1NotAscii);
    }
    let text = std::str::from_utf8(rest).map_err(|_| ProxyError::V1NotAscii)?;
    let mut fields = text.split(' ');
    let proto = fields.next().unwrap_or_default();
    let v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(ProxyError::V1Protocol(proto.to_owned())),
    };
    let fields: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = fields.as_slice() else {
        return Err(ProxyError::V1Fields);
    };
    let ip = |text: &str, which: &'static str| {
        let parsed = if v4 {
            parse_v4(text).map(std::net::IpAddr::V4)
        } else {
            text.parse::<Ipv6Addr>().ok().map(std::net::IpAddr::V6)
        };
        parsed.ok_or_else(|| ProxyError::V1Address {
            family: if v4 { "IPv4" } else { "IPv6" },
            which,
            text: text.to_owned(),
        })
    };
    let port = |text: &str, which: &'static str| {
        parse_decimal(text, u16::MAX.into())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| ProxyError::V1Port {
                which,
                text: text.to_owned(),
            })
    };
    let src_ip = ip(src, "source")?;
    let dst_ip = ip(dst, "destination")?;
    let src_port = port(sport, "source")?;
    let dst_port = port(dport, "destination")?;
    Ok(Header {
        version: Version::V1,
        command: Command::Proxy,
        transport: Some(Transport::Stream),
        addresses: Some(Addresses {
            src: socket_addr(src_ip, src_port),
            dst: socket_addr(dst_ip, dst_port),
        }),
    })
}

/// An IPv4 address as section 2.1 writes it: four decimal numbers 0-255 without
/// leading zeros, separated by single dots.
fn parse_v4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        *octet = u8::try_from(parse_decimal(parts.next()?, 255)?).ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// A decimal number of at most `max`: ASCII digits only, no sign, and no leading
/// zero unless the number is `0` itself.
fn parse_decimal(text: &str, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse::<u32>().ok().filter(|&n| n <= max)
}

fn decode_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    // Check each fixed byte as soon as it arrives so that garbage fails early.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(ProxyError::V2Version(ver_cmd >> 4));
        }
        if ver_cmd & 0xf > 1 {
            return Err(ProxyError::V2Command(ver_cmd & 0xf));
        }
    }
    if let Some(&fam) = buf.get(13) {
        if fam >> 4 > 3 {
            return Err(ProxyError::V2Family(fam >> 4));
        }
        if fam & 0xf > 2 {
            return Err(ProxyError::V2Transport(fam & 0xf));
        }
    }
    if buf.len() < V2_FIXED_LEN {
        return Ok(None);
    }
    let command = if buf[12] & 0xf == 0 {
        Command::Local
    } else {
        Command::Proxy
    };
    let (family, proto) = (buf[13] >> 4, buf[13] & 0xf);
    let len = u16::from_be_bytes([buf[14], buf[15]]);
    let transport = match proto {
        1 => Some(Transport::Stream),
        2 => Some(Transport::Datagram),
        _ => None,
    };
    // Only PROXY over AF_INET/AF_INET6 with a known transport carries addresses
    // we read; everything else is skipped by length.
    let inet = match (command, family, transport) {
        (Command::Proxy, 1, Some(_)) => Some(("AF_INET", V2_INET_LEN)),
        (Command::Proxy, 2, Some(_)) => Some(("AF_INET6", V2_INET6_LEN)),
        _ => None,
    };
    if let Some((name, need)) = inet {
        if len < need {
            return Err(ProxyError::V2Length {
                family: name,
                need,
                len,
            });
        }
    }
    let total = V2_FIXED_LEN + usize::from(len);
    if buf.len() < total {
        return Ok(None);
    }
    let block = &buf[V2_FIXED_LEN..total];
    let addresses = inet.map(|(_, need)| {
        let ports = usize::from(need) - 4;
        let src_port = u16::from_be_bytes([block[ports], block[ports + 1]]);
        let dst_port = u16::from_be_bytes([block[ports + 2], block[ports + 3]]);
        if need == V2_INET_LEN {
            let ip =
                |at: usize| Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]);
            Addresses {
                src: SocketAddr::V4(SocketAddrV4::new(ip(0), src_port)),
                dst: SocketAddr::V4(SocketAddrV4::new(ip(4), dst_port)),
            }
        } else {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            Addresses {
                src: SocketAddr::V6(SocketAddrV6::new(ip(0), src_port, 0, 0)),
                dst: SocketAddr::V6(SocketAddrV6::new(ip(16), dst_port, 0, 0)),
            }
        }
    });
    let header = Header {
        version: Version::V2,
        command,
        transport: if command == Command::Local {
            None
        } else {
            transport
        },
        addresses,
    };
    Ok(Some((header, total)))
}

fn socket_addr(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    match ip {
        std::net::IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, port)),
        std::net::IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
    }
}

/// The address as IPv6, an IPv4 one mapped to `::ffff:a.b.c.d`.
fn as_v6(addr: SocketAddr) -> Ipv6Addr {
    match addr {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
        SocketAddr::V6(a) => *a.ip(),
    }
}

/// Lower-case hex groups without leading zeros, the first longest run of two or
/// more zero groups written `::` (RFC 5952 without its dotted-quad exception).
fn v6_text(ip: Ipv6Addr) -> String {
    let groups = ip.segments();
    let (mut best_at, mut best_len) = (0, 0);
    let mut i = 0;
    while i < groups.len() {
        let start = i;
        while i < groups.len() && groups[i] == 0 {
            i += 1;
        }
        if i - start > best_len {
            (best_at, best_len) = (start, i - start);
        }
        i = i.max(start + 1);
    }
    let hex = |gs: &[u16]| {
        gs.iter()
            .map(|g| format!("{g:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len >= 2 {
        format!(
            "{}::{}",
            hex(&groups[..best_at]),
            hex(&groups[best_at + best_len..])
        )
    } else {
        hex(&groups)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v6_text_examples() {
        let t = |s: &str| v6_text(s.parse().unwrap());
        assert_eq!(t("::"), "::");
        assert_eq!(t("::1"), "::1");
        assert_eq!(t("1::"), "1::");
        assert_eq!(t("2001:db8::1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(t("1:0:1:0:1:0:1:0"), "1:0:1:0:1:0:1:0");
        assert_eq!(t("::ffff:192.168.0.1"), "::ffff:c0a8:1");
        assert_eq!(
            t("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }

    proptest! {
        /// Outside IPv4-mapped addresses, std writes RFC 5952 text too.
        #[test]
        fn v6_text_matches_std(groups in prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()])) {
            let ip = Ipv6Addr::from(groups);
            prop_assume!(ip.to_ipv4_mapped().is_none());
            prop_assert_eq!(v6_text(ip), ip.to_string());
        }
    }
}
