//! IPv6 Neighbor Discovery (RFC 4861), as far as a VRRP master needs it: the
//! unsolicited Neighbor Advertisement it multicasts to all nodes when it takes over a
//! virtual IPv6 address (RFC 4861 sections 4.4 and 7.2.6; RFC 5798 section 6.4.2), and
//! a parser for checking such frames.
//!
//! The frame is built the way keepalived builds it (keepalived/vrrp/vrrp_ndisc.c,
//! `ndisc_send_unsolicited_na_immediate`): Ethernet to 33:33:00:00:00:01 (RFC 2464
//! section 7 mapping of ff02::1), IPv6 with traffic class and flow label 0, source the
//! virtual address itself, hop limit 255, no extension headers; ICMPv6 type 136 with the
//! Override flag (plus Router when the sender forwards), and one Target Link-Layer
//! Address option. 86 bytes.
//!
//! Invariants: [`parse_na_frame`] accepts only an untagged Ethernet frame with an IPv6
//! header directly followed by ICMPv6 (no extension headers), and applies the receiver
//! validation of RFC 4861 section 7.1.2: hop limit 255, valid ICMPv6 checksum (with the
//! pseudo-header), code 0, ICMPv6 length at least 24, target not multicast, Solicited
//! flag clear when sent to a multicast address, every option of non-zero length and
//! within the message. Bytes after the IPv6 payload length are ignored. It never panics.

use std::net::Ipv6Addr;

use crate::checksum::{internet_checksum, ipv6_pseudo_header};

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6 next header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 section 4.4).
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// The hop limit Neighbor Discovery messages are sent with and must arrive with.
pub const NDISC_HOP_LIMIT: u8 = 255;
/// The all-nodes link-local multicast address.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Length of the frame [`unsolicited_na`] builds.
pub const NA_FRAME_LEN: usize =
    ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN + LINK_ADDR_OPTION_LEN;

const ETHERNET_HEADER_LEN: usize = 14;
const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6 header, flags and reserved, target address.
const NA_LEN: usize = 24;
/// A Target Link-Layer Address option for a 6-byte MAC: type, length 1 (8 bytes), MAC.
const LINK_ADDR_OPTION_LEN: usize = 8;
const OPTION_TARGET_LINK_ADDR: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// Ethernet frame of an unsolicited neighbour advertisement (RFC 4861 4.4, 7.2.6) as
/// keepalived sends it (keepalived/vrrp/vrrp_ndisc.c): dst mac 33:33:00:00:00:01,
/// ethertype 0x86dd, IPv6 src = `target` (the VIP), dst ff02::1, hop limit 255, next
/// header 58; ICMPv6 type 136 code 0, flags Override (and Router when `router` is
/// true), target address, option 2 (target link-layer address, length 1) = `mac`;
/// ICMPv6 checksum with the pseudo-header.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(NA_FRAME_LEN);
    frame.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());

    let icmp_len = NA_LEN + LINK_ADDR_OPTION_LEN;
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    // 32 bytes: fits the 16-bit Payload Length.
    frame.extend_from_slice(&(icmp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[IPPROTO_ICMPV6, NDISC_HOP_LIMIT]);
    frame.extend_from_slice(&target.octets());
    frame.extend_from_slice(&ALL_NODES.octets());

    let mut icmp = Vec::with_capacity(icmp_len);
    let flags = FLAG_OVERRIDE | if router { FLAG_ROUTER } else { 0 };
    icmp.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_ADDR, 1]);
    icmp.extend_from_slice(&mac);
    let pseudo = ipv6_pseudo_header(target, ALL_NODES, IPPROTO_ICMPV6, icmp_len as u32);
    let checksum = internet_checksum(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&icmp);
    frame
}

/// A Neighbor Advertisement, decoded with the Ethernet source it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NaRepr {
    pub src_mac: [u8; 6],
    pub target: Ipv6Addr,
    /// The first Target Link-Layer Address option carrying a 6-byte address, if any.
    pub target_mac: Option<[u8; 6]>,
    pub override_flag: bool,
    pub router_flag: bool,
}

fn ipv6_at(bytes: &[u8], offset: usize) -> Option<Ipv6Addr> {
    let octets: [u8; 16] = bytes.get(offset..offset + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

/// Parses an Ethernet+IPv6+ICMPv6 NA frame, verifying the ICMPv6 checksum; None
/// otherwise (see the module invariants for every check).
pub fn parse_na_frame(frame: &[u8]) -> Option<NaRepr> {
    let ethernet = frame.get(..ETHERNET_HEADER_LEN)?;
    if u16::from_be_bytes([ethernet[12], ethernet[13]]) != ETHERTYPE_IPV6 {
        return None;
    }
    let src_mac: [u8; 6] = ethernet[6..12].try_into().ok()?;
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let ip_header = ip.get(..IPV6_HEADER_LEN)?;
    if ip_header[0] >> 4 != 6 || ip_header[6] != IPPROTO_ICMPV6 || ip_header[7] != NDISC_HOP_LIMIT {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([ip_header[4], ip_header[5]]));
    let src = ipv6_at(ip_header, 8)?;
    let dst = ipv6_at(ip_header, 24)?;
    let icmp = ip.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)?;
    if icmp.len() < NA_LEN || icmp[0] != ICMPV6_NEIGHBOR_ADVERT || icmp[1] != 0 {
        return None;
    }
    let pseudo = ipv6_pseudo_header(src, dst, IPPROTO_ICMPV6, u32::try_from(icmp.len()).ok()?);
    if internet_checksum(&[&pseudo, icmp]) != 0 {
        return None;
    }
    let flags = icmp[4];
    if dst.is_multicast() && flags & FLAG_SOLICITED != 0 {
        return None;
    }
    let target = ipv6_at(icmp, 8)?;
    if target.is_multicast() {
        return None;
    }

    let mut target_mac = None;
    let mut options = icmp.get(NA_LEN..)?;
    while let [option_type, length_units, ..] = *options {
        let option_len = usize::from(length_units) * 8;
        if option_len == 0 {
            return None;
        }
        let option = options.get(..option_len)?;
        if option_type == OPTION_TARGET_LINK_ADDR
            && option_len == LINK_ADDR_OPTION_LEN
            && target_mac.is_none()
        {
            target_mac = option[2..8].try_into().ok();
        }
        options = options.get(option_len..)?;
    }
    if !options.is_empty() {
        // A lone byte cannot be an option.
        return None;
    }

    Some(NaRepr {
        src_mac,
        target,
        target_mac,
        override_flag: flags & FLAG_OVERRIDE != 0,
        router_flag: flags & FLAG_ROUTER != 0,
    })
}
