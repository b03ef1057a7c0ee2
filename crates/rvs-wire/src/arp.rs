//! ARP over Ethernet for IPv4 (RFC 826), as far as a VRRP master needs it: the
//! gratuitous ARP it broadcasts when it takes over a virtual address, so that hosts and
//! switches learn the address's new MAC, and a parser for checking such frames.
//!
//! The frame is built the way keepalived builds it (keepalived/vrrp/vrrp_arp.c,
//! `send_gratuitous_arp_immediate`): an ARP *request* whose sender and target protocol
//! addresses are both the virtual address (RFC 5227 section 3 calls this an ARP
//! Announcement), target hardware address the broadcast address, and no Ethernet
//! padding (the 42 bytes are handed to an `AF_PACKET` socket; the NIC pads).
//!
//! Invariants: [`parse_arp_frame`] accepts only an untagged Ethernet frame carrying
//! Ethernet/IPv4 ARP (hardware type 1, protocol 0x0800, lengths 6 and 4) and ignores
//! bytes after the ARP body (Ethernet padding); it never panics.

use std::net::Ipv4Addr;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// The Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// ARP operation codes (RFC 826).
pub const ARP_OP_REQUEST: u16 = 1;
pub const ARP_OP_REPLY: u16 = 2;
/// Length of an Ethernet + Ethernet/IPv4 ARP frame without padding.
pub const ARP_FRAME_LEN: usize = 42;

const ETHERNET_HEADER_LEN: usize = 14;
const HARDWARE_ETHERNET: u16 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;

/// Ethernet frame of a gratuitous ARP as keepalived sends it (keepalived/vrrp/vrrp_arp.c):
/// dst ff:ff:ff:ff:ff:ff, src `mac`, ethertype 0x0806, htype 1, ptype 0x0800, hlen 6,
/// plen 4, op 1 (request), sender = (`mac`, `ip`), target = (ff:ff:ff:ff:ff:ff, `ip`).
/// 42 bytes (no padding).
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[0..6].copy_from_slice(&BROADCAST_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut frame[ETHERNET_HEADER_LEN..];
    arp[0..2].copy_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&ip.octets());
    arp[18..24].copy_from_slice(&BROADCAST_MAC);
    arp[24..28].copy_from_slice(&ip.octets());
    frame
}

/// An Ethernet/IPv4 ARP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// Parses an Ethernet+ARP frame (Ethernet/IPv4 ARP only); None for anything else.
pub fn parse_arp_frame(frame: &[u8]) -> Option<ArpRepr> {
    let frame: &[u8; ARP_FRAME_LEN] = frame.get(..ARP_FRAME_LEN)?.try_into().ok()?;
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_ARP {
        return None;
    }
    let arp = &frame[ETHERNET_HEADER_LEN..];
    let hardware = u16::from_be_bytes([arp[0], arp[1]]);
    let protocol = u16::from_be_bytes([arp[2], arp[3]]);
    if hardware != HARDWARE_ETHERNET || protocol != ETHERTYPE_IPV4 || arp[4] != 6 || arp[5] != 4 {
        return None;
    }
    Some(ArpRepr {
        op: u16::from_be_bytes([arp[6], arp[7]]),
        sender_mac: arp[8..14].try_into().ok()?,
        sender_ip: Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]),
        target_mac: arp[18..24].try_into().ok()?,
        target_ip: Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]),
    })
}
