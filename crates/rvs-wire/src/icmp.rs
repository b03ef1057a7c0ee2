//! The ICMP "port unreachable" answer a director sends when a virtual service
//! matched a new connection but no real server can take it (the kernel's
//! `ip_vs_leave`: `ICMP_DEST_UNREACH`/`ICMP_PORT_UNREACH` for IPv4,
//! `ICMPV6_DEST_UNREACH`/`ICMPV6_PORT_UNREACH` for IPv6), built as a whole
//! Ethernet frame back to the sender.
//!
//! Invariants: the answer goes from the packet's destination (the VIP) to its
//! source, with the Ethernet addresses swapped; it quotes the offending IP
//! packet from its header on, as much as fits in 576 bytes of IPv4
//! (RFC 1812 4.3.2.3) or 1280 bytes of IPv6 (RFC 4443 2.4 c); no answer is
//! built for a packet that must not get one (RFC 1122 3.2.2 and RFC 4443 2.4 e:
//! an ICMP error, a fragment other than the first, a multicast or broadcast
//! destination or source) or that is not a whole IPv4/IPv6 packet.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{internet_checksum, ipv6_pseudo_header};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
/// Largest IPv4 datagram an ICMP error may be (RFC 1812 4.3.2.3).
const IPV4_ERROR_MAX: usize = 576;
/// Largest IPv6 packet an ICMPv6 error may be (RFC 4443 2.4 c, the IPv6 minimum MTU).
const IPV6_ERROR_MAX: usize = 1280;
const HOP_LIMIT: u8 = 64;

/// The "port unreachable" frame answering the Ethernet frame `frame`, or
/// `None` when that packet must not (or cannot) be answered.
pub fn port_unreachable(frame: &[u8]) -> Option<Vec<u8>> {
    let eth = frame.get(..ETH_LEN)?;
    // Never answer a frame sent to a group address or from one.
    if eth[0] & 1 != 0 || eth[6] & 1 != 0 {
        return None;
    }
    match u16::from_be_bytes([eth[12], eth[13]]) {
        0x0800 => ipv4(eth, frame.get(ETH_LEN..)?),
        0x86DD => ipv6(eth, frame.get(ETH_LEN..)?),
        _ => None,
    }
}

/// The reply's Ethernet header: the frame's addresses swapped.
fn reply_eth(eth: &[u8], ethertype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN);
    out.extend_from_slice(&eth[6..12]);
    out.extend_from_slice(&eth[0..6]);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out
}

fn ipv4(eth: &[u8], ip: &[u8]) -> Option<Vec<u8>> {
    let header = ip.get(..IPV4_LEN)?;
    if header[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(header[0] & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if ihl < IPV4_LEN || total < ihl || total > ip.len() {
        return None;
    }
    // Only the first fragment of a datagram is answered.
    if u16::from_be_bytes([header[6], header[7]]) & 0x1FFF != 0 {
        return None;
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    if src.is_multicast()
        || src.is_broadcast()
        || src.is_unspecified()
        || dst.is_multicast()
        || dst.is_broadcast()
    {
        return None;
    }
    // An ICMP error is never answered with one (an unknown or too short ICMP
    // message is treated as an error).
    if header[9] == 1 {
        let icmp_type = *ip.get(ihl)?;
        if !matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return None;
        }
    }
    let quoted = &ip[..total.min(IPV4_ERROR_MAX - IPV4_LEN - ICMP_HEADER_LEN)];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let sum = internet_checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let len = u16::try_from(IPV4_LEN + icmp.len()).ok()?;
    let mut reply_ip = [0u8; IPV4_LEN];
    reply_ip[0] = 0x45;
    reply_ip[1] = 0xC0; // precedence "internetwork control", as Linux sends ICMP errors
    reply_ip[2..4].copy_from_slice(&len.to_be_bytes());
    reply_ip[8] = HOP_LIMIT;
    reply_ip[9] = 1;
    reply_ip[12..16].copy_from_slice(&dst.octets());
    reply_ip[16..20].copy_from_slice(&src.octets());
    let sum = internet_checksum(&[&reply_ip]);
    reply_ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut out = reply_eth(eth, 0x0800);
    out.extend_from_slice(&reply_ip);
    out.extend_from_slice(&icmp);
    Some(out)
}

fn ipv6(eth: &[u8], ip: &[u8]) -> Option<Vec<u8>> {
    let header = ip.get(..IPV6_LEN)?;
    if header[0] >> 4 != 6 {
        return None;
    }
    let total = IPV6_LEN + usize::from(u16::from_be_bytes([header[4], header[5]]));
    if total > ip.len() {
        return None;
    }
    let mut src_octets = [0u8; 16];
    src_octets.copy_from_slice(&header[8..24]);
    let mut dst_octets = [0u8; 16];
    dst_octets.copy_from_slice(&header[24..40]);
    let (src, dst) = (Ipv6Addr::from(src_octets), Ipv6Addr::from(dst_octets));
    if src.is_multicast() || src.is_unspecified() || dst.is_multicast() {
        return None;
    }
    // Fragments and ICMPv6 errors (types below 128) get no answer; other
    // extension headers are not walked, and such packets get none either.
    match header[6] {
        6 | 17 | 132 => {}
        58 => {
            if *ip.get(IPV6_LEN)? < 128 {
                return None;
            }
        }
        _ => return None,
    }
    let quoted = &ip[..total.min(IPV6_ERROR_MAX - IPV6_LEN - ICMP_HEADER_LEN)];
    let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let len = u32::try_from(icmp.len()).ok()?;
    let pseudo = ipv6_pseudo_header(dst, src, 58, len);
    let sum = internet_checksum(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut reply_ip = [0u8; IPV6_LEN];
    reply_ip[0] = 0x60;
    reply_ip[4..6].copy_from_slice(&u16::try_from(icmp.len()).ok()?.to_be_bytes());
    reply_ip[6] = 58;
    reply_ip[7] = HOP_LIMIT;
    reply_ip[8..24].copy_from_slice(&dst.octets());
    reply_ip[24..40].copy_from_slice(&src.octets());

    let mut out = reply_eth(eth, 0x86DD);
    out.extend_from_slice(&reply_ip);
    out.extend_from_slice(&icmp);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    /// A TCP SYN from 10.1.0.7:40000 to 10.2.0.1:80 with `payload` bytes.
    fn syn_v4(payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DIRECTOR_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = u16::try_from(20 + 20 + payload).unwrap();
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[10, 1, 0, 7, 10, 2, 0, 1]);
        let sum = internet_checksum(&[&ip]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ];
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend(std::iter::repeat_n(0xAB, payload));
        f.extend_from_slice(&tcp);
        f
    }

    fn syn_v6() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DIRECTOR_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x86, 0xDD]);
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
        f.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f
    }

    #[test]
    fn ipv4_answer_quotes_the_packet_from_the_vip() {
        let syn = syn_v4(0);
        let r = port_unreachable(&syn).unwrap();
        assert_eq!(&r[0..6], &CLIENT_MAC);
        assert_eq!(&r[6..12], &DIRECTOR_MAC);
        let ip = &r[14..34];
        assert_eq!(ip[9], 1, "ICMP");
        assert_eq!(&ip[12..16], &[10, 2, 0, 1], "from the VIP");
        assert_eq!(&ip[16..20], &[10, 1, 0, 7], "to the client");
        assert_eq!(internet_checksum(&[ip]), 0, "header checksum");
        let icmp = &r[34..];
        assert_eq!(&icmp[..2], &[3, 3], "destination unreachable, port");
        assert_eq!(internet_checksum(&[icmp]), 0, "ICMP checksum");
        assert_eq!(&icmp[8..], &syn[14..], "the whole SYN is quoted");
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            r.len() - 14
        );
    }

    #[test]
    fn ipv4_quote_stops_at_576_bytes() {
        let r = port_unreachable(&syn_v4(1000)).unwrap();
        assert_eq!(r.len() - 14, 576);
        assert_eq!(internet_checksum(&[&r[34..]]), 0);
    }

    #[test]
    fn ipv6_answer_has_a_valid_pseudo_header_checksum() {
        let syn = syn_v6();
        let r = port_unreachable(&syn).unwrap();
        assert_eq!(&r[12..14], &[0x86, 0xDD]);
        let ip = &r[14..54];
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
        assert_eq!(src, "2001:db8:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(dst, "2001:db8::7".parse::<Ipv6Addr>().unwrap());
        let icmp = &r[54..];
        assert_eq!(&icmp[..2], &[1, 4], "destination unreachable, port");
        let pseudo = ipv6_pseudo_header(src, dst, 58, u32::try_from(icmp.len()).unwrap());
        assert_eq!(internet_checksum(&[&pseudo, icmp]), 0);
        assert_eq!(&icmp[8..], &syn[14..]);
    }

    #[test]
    fn packets_that_must_not_be_answered_are_not() {
        // A fragment other than the first.
        let mut f = syn_v4(0);
        f[14 + 7] = 1;
        assert!(port_unreachable(&f).is_none());
        // An ICMP error about something else.
        let mut f = syn_v4(0);
        f[14 + 9] = 1;
        f[34] = 3;
        assert!(port_unreachable(&f).is_none());
        // A broadcast destination, a multicast source MAC.
        let mut f = syn_v4(0);
        f[14 + 16..14 + 20].copy_from_slice(&[255, 255, 255, 255]);
        assert!(port_unreachable(&f).is_none());
        let mut f = syn_v4(0);
        f[6] |= 1;
        assert!(port_unreachable(&f).is_none());
        // Truncated, or claiming more than is there.
        let f = syn_v4(0);
        assert!(port_unreachable(&f[..30]).is_none());
        let mut f = syn_v4(0);
        f[14 + 3] = 200;
        assert!(port_unreachable(&f).is_none());
        // An IPv6 fragment header, an ICMPv6 error.
        let mut f = syn_v6();
        f[14 + 6] = 44;
        assert!(port_unreachable(&f).is_none());
        let mut f = syn_v6();
        f[14 + 6] = 58;
        f[54] = 1;
        assert!(port_unreachable(&f).is_none());
        // Not IP.
        let mut f = syn_v4(0);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(port_unreachable(&f).is_none());
        // Arbitrary bytes never panic.
        for n in 0..80 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = port_unreachable(&junk);
        }
    }
}
