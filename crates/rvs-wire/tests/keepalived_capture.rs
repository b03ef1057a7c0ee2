//! Golden packets captured from keepalived 2.2.7 itself (tests/fixtures/*.hex, written by
//! tests/fixtures/capture-keepalived.sh): the parsers accept them with the configured
//! fields, and the builders reproduce them byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::decode_hex_fixture;
use rvs_wire::arp::{gratuitous_arp, parse_arp_frame, ArpRepr};
use rvs_wire::ipv4::parse_ipv4;
use rvs_wire::ndisc::{parse_na_frame, unsolicited_na, NaRepr};
use rvs_wire::vrrp::{VrrpRepr, VrrpVersion, IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL};

/// The MAC the capture script gives the sending interface.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x09, 0x01];
const ETHERNET_HEADER_LEN: usize = 14;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Checks the Ethernet header and returns the IP packet after it.
fn ip_packet(frame: &[u8], dst_mac: [u8; 6], ethertype: u16) -> &[u8] {
    assert_eq!(&frame[0..6], &dst_mac, "destination MAC");
    assert_eq!(&frame[6..12], &MAC, "source MAC");
    assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), ethertype);
    &frame[ETHERNET_HEADER_LEN..]
}

/// Parses a captured IPv4 VRRP frame as an AF_INET raw socket would see it, checks the
/// IP header, and that emit reproduces the VRRP message exactly.
fn check_ipv4_vrrp(fixture: &str, expected: &VrrpRepr) {
    let frame = decode_hex_fixture(fixture);
    // 224.0.0.18 maps to 01:00:5e:00:00:12 (RFC 1112 section 6.4).
    let datagram = ip_packet(&frame, [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12], 0x0800);
    let (header, payload) = parse_ipv4(datagram).unwrap();
    assert_eq!(header.src, Ipv4Addr::new(10, 9, 9, 1));
    assert_eq!(header.dst, VRRP_MCAST_V4);
    assert_eq!(header.ttl, VRRP_TTL);
    assert_eq!(header.protocol, IPPROTO_VRRP);
    let (src, dst) = (IpAddr::V4(header.src), IpAddr::V4(header.dst));
    let repr = VrrpRepr::parse(payload, src, dst).unwrap();
    assert_eq!(&repr, expected);
    assert_eq!(repr.emit(src, dst).unwrap(), payload);
}

#[test]
fn keepalived_v2_pass_advert() {
    let expected = VrrpRepr {
        version: VrrpVersion::V2,
        vrid: 51,
        priority: 100,
        adver_int_cs: 100,
        auth_type: 1,
        auth_data: *b"1111\0\0\0\0",
        addresses: vec![ip("192.168.200.16")],
    };
    check_ipv4_vrrp(include_str!("fixtures/vrrp-v2-pass.hex"), &expected);
}

#[test]
fn keepalived_v2_pass_advert_matches_the_rfc_layout() {
    // RFC 3768 section 5.1 by hand: version 2 / type 1, vrid 51, priority 100, 1
    // address, auth type 1, 1 s, checksum, 192.168.200.16, "1111" zero-padded to 8.
    // Checksum by hand: 2133+6401+0101+c0a8+c810+3131+3131 = 2_714f -> 7151 -> ~8eae.
    let expected: [u8; 20] = [
        0x21, 51, 100, 1, 1, 1, 0x8e, 0xae, 192, 168, 200, 16, b'1', b'1', b'1', b'1', 0, 0, 0, 0,
    ];
    let frame = decode_hex_fixture(include_str!("fixtures/vrrp-v2-pass.hex"));
    let (_, payload) = parse_ipv4(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    assert_eq!(payload, &expected[..]);
}

#[test]
fn keepalived_v3_ipv4_advert_with_centisecond_interval() {
    let expected = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 52,
        priority: 150,
        adver_int_cs: 10,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![ip("192.168.200.17"), ip("192.168.200.18")],
    };
    check_ipv4_vrrp(include_str!("fixtures/vrrp-v3-ipv4.hex"), &expected);
}

#[test]
fn keepalived_v3_ipv6_advert() {
    let frame = decode_hex_fixture(include_str!("fixtures/vrrp-v3-ipv6.hex"));
    // ff02::12 maps to 33:33:00:00:00:12 (RFC 2464 section 7).
    let packet = ip_packet(&frame, [0x33, 0x33, 0, 0, 0, 0x12], 0x86dd);
    // IPv6 header (RFC 8200 section 3), read at fixed offsets: an AF_INET6 raw socket
    // would give the payload and these fields as ancillary data.
    assert_eq!(packet[0] >> 4, 6);
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    assert_eq!(packet[6], IPPROTO_VRRP);
    assert_eq!(packet[7], VRRP_TTL);
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap());
    assert_eq!(src, "fe80::9:1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(dst, VRRP_MCAST_V6);
    let payload = &packet[40..];
    assert_eq!(payload.len(), payload_len);

    let (src, dst) = (IpAddr::V6(src), IpAddr::V6(dst));
    let repr = VrrpRepr::parse(payload, src, dst).unwrap();
    assert_eq!(
        repr,
        VrrpRepr {
            version: VrrpVersion::V3,
            vrid: 53,
            priority: 200,
            adver_int_cs: 100,
            auth_type: 0,
            auth_data: [0; 8],
            addresses: vec![ip("2001:db8::16"), ip("2001:db8::17")],
        }
    );
    assert_eq!(repr.emit(src, dst).unwrap(), payload);
}

#[test]
fn keepalived_gratuitous_arp() {
    let frame = decode_hex_fixture(include_str!("fixtures/garp.hex"));
    let vip = Ipv4Addr::new(192, 168, 200, 16);
    assert_eq!(gratuitous_arp(MAC, vip), &frame[..]);
    assert_eq!(
        parse_arp_frame(&frame),
        Some(ArpRepr {
            op: 1,
            sender_mac: MAC,
            sender_ip: vip,
            target_mac: [0xff; 6],
            target_ip: vip,
        })
    );
}

#[test]
fn keepalived_unsolicited_neighbour_advert() {
    let frame = decode_hex_fixture(include_str!("fixtures/unsolicited-na.hex"));
    let vip: Ipv6Addr = "2001:db8::16".parse().unwrap();
    // The capture namespace does not forward IPv6, so keepalived clears the Router flag.
    assert_eq!(unsolicited_na(MAC, vip, false), frame);
    assert_eq!(
        parse_na_frame(&frame),
        Some(NaRepr {
            src_mac: MAC,
            target: vip,
            target_mac: Some(MAC),
            override_flag: true,
            router_flag: false,
        })
    );
}
