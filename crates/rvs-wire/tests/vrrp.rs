//! VRRP v2/v3 and the IPv4 header view: packets laid out by hand from RFC 3768 / RFC
//! 5798 with independently computed checksums, every error variant, and properties
//! (no panics, round trips, single bit flips detected).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{cat, reference_checksum};
use proptest::prelude::*;
use rvs_wire::ipv4::{emit_ipv4, parse_ipv4, Ipv4Error, Ipv4Header};
use rvs_wire::vrrp::{
    VrrpError, VrrpRepr, VrrpVersion, IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn set_checksum(packet: &mut [u8], checksum: u16) {
    packet[6..8].copy_from_slice(&checksum.to_be_bytes());
}

/// IPv4 pseudo-header laid out by hand: src, dst, zero, protocol, length.
fn pseudo_v4(src: [u8; 4], dst: [u8; 4], len: u16) -> Vec<u8> {
    let [len_high, len_low] = len.to_be_bytes();
    cat(&[&src, &dst, &[0, 112, len_high, len_low]])
}

/// IPv6 pseudo-header laid out by hand: src, dst, 32-bit length, 3 zeros, next header.
fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, len: u32) -> Vec<u8> {
    cat(&[
        &src.octets(),
        &dst.octets(),
        &len.to_be_bytes(),
        &[0, 0, 0, 112],
    ])
}

/// The VRRPv2 advert keepalived sends for vrid 51, priority 100, advert_int 1, auth PASS
/// "1111", VIP 192.168.200.16 (RFC 3768 section 5.1), checksum computed here.
fn keepalived_v2_vrid51() -> Vec<u8> {
    let mut packet = vec![
        0x21, // version 2, type 1
        51,   // vrid
        100,  // priority
        1,    // count
        1,    // auth type 1: simple text password
        1,    // advert interval, seconds
        0, 0, // checksum
        192, 168, 200, 16, // VIP
        b'1', b'1', b'1', b'1', 0, 0, 0, 0, // auth data
    ];
    let checksum = reference_checksum(&packet);
    set_checksum(&mut packet, checksum);
    packet
}

fn keepalived_v2_vrid51_repr() -> VrrpRepr {
    VrrpRepr {
        version: VrrpVersion::V2,
        vrid: 51,
        priority: 100,
        adver_int_cs: 100,
        auth_type: 1,
        auth_data: *b"1111\0\0\0\0",
        addresses: vec![ip("192.168.200.16")],
    }
}

#[test]
fn constants_match_the_rfcs() {
    assert_eq!(IPPROTO_VRRP, 112);
    assert_eq!(VRRP_TTL, 255);
    assert_eq!(VRRP_MCAST_V4, Ipv4Addr::new(224, 0, 0, 18));
    assert_eq!(VRRP_MCAST_V6, "ff02::12".parse::<Ipv6Addr>().unwrap());
}

#[test]
fn v2_keepalived_advert_known_answer() {
    let packet = keepalived_v2_vrid51();
    // By hand: 2133 + 6401 + 0101 + c0a8 + c810 + 3131 + 3131 = 2_714f -> 7151 -> ~ 8eae.
    assert_eq!(&packet[6..8], &[0x8e, 0xae]);
    let (src, dst) = (ip("10.9.9.1"), IpAddr::V4(VRRP_MCAST_V4));
    assert_eq!(
        VrrpRepr::parse(&packet, src, dst),
        Ok(keepalived_v2_vrid51_repr())
    );
    let repr = keepalived_v2_vrid51_repr();
    assert_eq!(repr.buffer_len(), 20);
    assert_eq!(repr.emit(src, dst).unwrap(), packet);
    // v2's checksum does not cover the IP addresses: any IPv4 pair parses.
    assert!(VrrpRepr::parse(&packet, ip("192.0.2.1"), ip("192.0.2.2")).is_ok());
}

#[test]
fn v2_no_auth_two_addresses_known_answer() {
    let mut packet = vec![
        0x21, 7, 255, 2, 0, 3, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let checksum = reference_checksum(&packet);
    set_checksum(&mut packet, checksum);
    let repr = VrrpRepr {
        version: VrrpVersion::V2,
        vrid: 7,
        priority: 255,
        adver_int_cs: 300,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![ip("10.0.0.1"), ip("10.0.0.2")],
    };
    let (src, dst) = (ip("10.0.0.254"), IpAddr::V4(VRRP_MCAST_V4));
    assert_eq!(VrrpRepr::parse(&packet, src, dst), Ok(repr.clone()));
    assert_eq!(repr.emit(src, dst).unwrap(), packet);
}

#[test]
fn v3_ipv4_known_answer() {
    let mut packet = vec![
        0x31, // version 3, type 1
        52,   // vrid
        150,  // priority
        2,    // count
        0x00, 0x0a, // rsvd 0, max adver int 10 cs
        0, 0, // checksum
        192, 168, 200, 17, 192, 168, 200, 18,
    ];
    let pseudo = pseudo_v4([10, 9, 9, 1], [224, 0, 0, 18], 16);
    let checksum = reference_checksum(&cat(&[&pseudo, &packet]));
    set_checksum(&mut packet, checksum);
    let repr = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 52,
        priority: 150,
        adver_int_cs: 10,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![ip("192.168.200.17"), ip("192.168.200.18")],
    };
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    assert_eq!(VrrpRepr::parse(&packet, src, dst), Ok(repr.clone()));
    assert_eq!(repr.buffer_len(), 16);
    assert_eq!(repr.emit(src, dst).unwrap(), packet);
    // The pseudo-header is covered: another source address breaks the checksum.
    assert_eq!(
        VrrpRepr::parse(&packet, ip("10.9.9.2"), dst),
        Err(VrrpError::BadChecksum)
    );
}

#[test]
fn v3_ipv6_known_answer() {
    let src: Ipv6Addr = "fe80::9:1".parse().unwrap();
    let vip1: Ipv6Addr = "2001:db8::16".parse().unwrap();
    let vip2: Ipv6Addr = "2001:db8::17".parse().unwrap();
    let mut packet = vec![0x31, 53, 200, 2, 0x00, 0x64, 0, 0];
    packet.extend_from_slice(&vip1.octets());
    packet.extend_from_slice(&vip2.octets());
    assert_eq!(packet.len(), 40);
    let pseudo = pseudo_v6(src, VRRP_MCAST_V6, 40);
    let checksum = reference_checksum(&cat(&[&pseudo, &packet]));
    set_checksum(&mut packet, checksum);
    let repr = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 53,
        priority: 200,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![IpAddr::V6(vip1), IpAddr::V6(vip2)],
    };
    let (src, dst) = (IpAddr::V6(src), IpAddr::V6(VRRP_MCAST_V6));
    assert_eq!(VrrpRepr::parse(&packet, src, dst), Ok(repr.clone()));
    assert_eq!(repr.buffer_len(), 40);
    assert_eq!(repr.emit(src, dst).unwrap(), packet);
    assert_eq!(
        VrrpRepr::parse(&packet, ip("fe80::9:2"), dst),
        Err(VrrpError::BadChecksum)
    );
}

#[test]
fn v3_reserved_bits_are_ignored_on_receipt_and_zero_on_send() {
    let mut packet = vec![0x31, 1, 100, 1, 0xf1, 0x2c, 0, 0, 192, 0, 2, 1];
    let pseudo = pseudo_v4([192, 0, 2, 9], [224, 0, 0, 18], 12);
    let checksum = reference_checksum(&cat(&[&pseudo, &packet]));
    set_checksum(&mut packet, checksum);
    let (src, dst) = (ip("192.0.2.9"), ip("224.0.0.18"));
    let repr = VrrpRepr::parse(&packet, src, dst).unwrap();
    assert_eq!(repr.adver_int_cs, 0x12c);
    let emitted = repr.emit(src, dst).unwrap();
    assert_eq!(&emitted[4..6], &[0x01, 0x2c]);
}

#[test]
fn intervals_saturate_on_emit_and_v2_keeps_whole_seconds() {
    let (src, dst) = (ip("192.0.2.1"), IpAddr::V4(VRRP_MCAST_V4));
    let mut repr = keepalived_v2_vrid51_repr();
    for (cs, wire_seconds) in [(0, 0), (99, 0), (250, 2), (25500, 255), (u16::MAX, 255)] {
        repr.adver_int_cs = cs;
        let packet = repr.emit(src, dst).unwrap();
        assert_eq!(packet[5], wire_seconds, "{cs} cs");
        let parsed = VrrpRepr::parse(&packet, src, dst).unwrap();
        assert_eq!(parsed.adver_int_cs, u16::from(wire_seconds) * 100);
    }
    let mut repr = VrrpRepr {
        version: VrrpVersion::V3,
        ..keepalived_v2_vrid51_repr()
    };
    repr.auth_type = 0;
    repr.auth_data = [0; 8];
    for (cs, wire) in [(1, 1), (4095, 4095), (4096, 4095), (u16::MAX, 4095)] {
        repr.adver_int_cs = cs;
        let packet = repr.emit(src, dst).unwrap();
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), wire, "{cs} cs");
    }
}

#[test]
fn v3_emit_leaves_out_v2_authentication() {
    let repr = VrrpRepr {
        version: VrrpVersion::V3,
        ..keepalived_v2_vrid51_repr()
    };
    let (src, dst) = (ip("192.0.2.1"), IpAddr::V4(VRRP_MCAST_V4));
    let packet = repr.emit(src, dst).unwrap();
    assert_eq!(packet.len(), 12);
    let parsed = VrrpRepr::parse(&packet, src, dst).unwrap();
    assert_eq!((parsed.auth_type, parsed.auth_data), (0, [0; 8]));
}

#[test]
fn error_truncated() {
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    let packet = keepalived_v2_vrid51();
    assert_eq!(VrrpRepr::parse(&[], src, dst), Err(VrrpError::Truncated));
    assert_eq!(
        VrrpRepr::parse(&packet[..7], src, dst),
        Err(VrrpError::Truncated)
    );
}

#[test]
fn error_bad_version() {
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    let mut packet = keepalived_v2_vrid51();
    packet[0] = 0x41;
    assert_eq!(
        VrrpRepr::parse(&packet, src, dst),
        Err(VrrpError::BadVersion(4))
    );
    packet[0] = 0x11;
    assert_eq!(
        VrrpRepr::parse(&packet, src, dst),
        Err(VrrpError::BadVersion(1))
    );
}

#[test]
fn error_bad_type() {
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    let mut packet = keepalived_v2_vrid51();
    packet[0] = 0x22;
    assert_eq!(
        VrrpRepr::parse(&packet, src, dst),
        Err(VrrpError::BadType(2))
    );
}

#[test]
fn error_bad_length() {
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    let packet = keepalived_v2_vrid51();
    // One byte short, one byte over: keepalived wants the exact length.
    assert_eq!(
        VrrpRepr::parse(&packet[..19], src, dst),
        Err(VrrpError::BadLength {
            expected: 20,
            got: 19
        })
    );
    let mut long = packet.clone();
    long.push(0);
    assert_eq!(
        VrrpRepr::parse(&long, src, dst),
        Err(VrrpError::BadLength {
            expected: 20,
            got: 21
        })
    );
    // An address count higher than the addresses present.
    let mut too_many = packet.clone();
    too_many[3] = 2;
    assert_eq!(
        VrrpRepr::parse(&too_many, src, dst),
        Err(VrrpError::BadLength {
            expected: 24,
            got: 20
        })
    );
    // v3 over IPv6 counts 16 bytes an address: the v3 IPv4 message is too short.
    let v3 = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 1,
        priority: 1,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![ip("192.0.2.1")],
    }
    .emit(src, dst)
    .unwrap();
    assert_eq!(
        VrrpRepr::parse(&v3, ip("fe80::1"), ip("ff02::12")),
        Err(VrrpError::BadLength {
            expected: 24,
            got: 12
        })
    );
}

#[test]
fn error_bad_length_on_emit_of_more_than_255_addresses() {
    let repr = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 1,
        priority: 1,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: (0..256u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect(),
    };
    assert_eq!(
        repr.emit(ip("10.0.0.1"), ip("224.0.0.18")),
        Err(VrrpError::BadLength {
            expected: 8 + 255 * 4,
            got: 8 + 256 * 4
        })
    );
    let mut fits = repr.clone();
    fits.addresses.truncate(255);
    let packet = fits.emit(ip("10.0.0.1"), ip("224.0.0.18")).unwrap();
    assert_eq!(packet.len(), fits.buffer_len());
    assert_eq!(packet[3], 255);
}

#[test]
fn error_bad_checksum_on_any_flipped_byte() {
    let (src, dst) = (ip("10.9.9.1"), ip("224.0.0.18"));
    let packet = keepalived_v2_vrid51();
    for i in 0..packet.len() {
        let mut corrupted = packet.clone();
        corrupted[i] ^= 0x5a;
        // Bytes 0 and 3 carry version/type and count, checked before the checksum.
        if i == 0 || i == 3 {
            assert!(VrrpRepr::parse(&corrupted, src, dst).is_err());
        } else {
            assert_eq!(
                VrrpRepr::parse(&corrupted, src, dst),
                Err(VrrpError::BadChecksum),
                "byte {i}"
            );
        }
    }
}

#[test]
fn error_family_mismatch() {
    let v2 = keepalived_v2_vrid51();
    // v2 is IPv4 only.
    assert_eq!(
        VrrpRepr::parse(&v2, ip("fe80::1"), ip("ff02::12")),
        Err(VrrpError::FamilyMismatch)
    );
    assert_eq!(
        keepalived_v2_vrid51_repr().emit(ip("fe80::1"), ip("ff02::12")),
        Err(VrrpError::FamilyMismatch)
    );
    // Source and destination of different families.
    let v3_repr = VrrpRepr {
        version: VrrpVersion::V3,
        vrid: 9,
        priority: 100,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![ip("192.0.2.1")],
    };
    let v3 = v3_repr.emit(ip("192.0.2.2"), ip("224.0.0.18")).unwrap();
    assert_eq!(
        VrrpRepr::parse(&v3, ip("192.0.2.2"), ip("ff02::12")),
        Err(VrrpError::FamilyMismatch)
    );
    assert_eq!(
        v3_repr.emit(ip("fe80::2"), ip("224.0.0.18")),
        Err(VrrpError::FamilyMismatch)
    );
    // Addresses of the other family than the packet's.
    assert_eq!(
        v3_repr.emit(ip("fe80::2"), ip("ff02::12")),
        Err(VrrpError::FamilyMismatch)
    );
    let mut mixed = v3_repr.clone();
    mixed.addresses.push(ip("2001:db8::1"));
    assert_eq!(
        mixed.emit(ip("192.0.2.2"), ip("224.0.0.18")),
        Err(VrrpError::FamilyMismatch)
    );
    let mut v2_with_v6 = keepalived_v2_vrid51_repr();
    v2_with_v6.addresses = vec![ip("2001:db8::1")];
    assert_eq!(
        v2_with_v6.emit(ip("192.0.2.2"), ip("224.0.0.18")),
        Err(VrrpError::FamilyMismatch)
    );
}

#[test]
fn ipv4_header_known_answer_and_vrrp_inside() {
    let vrrp = keepalived_v2_vrid51();
    let datagram = emit_ipv4(Ipv4Addr::new(10, 9, 9, 1), VRRP_MCAST_V4, 255, 112, &vrrp);
    // RFC 791 layout, checked at fixed offsets.
    assert_eq!(datagram.len(), 40);
    assert_eq!(datagram[0], 0x45);
    assert_eq!(&datagram[2..4], &[0, 40]);
    assert_eq!(&datagram[4..8], &[0, 0, 0, 0]); // id 0, DF clear, offset 0
    assert_eq!(datagram[8], 255);
    assert_eq!(datagram[9], 112);
    assert_eq!(&datagram[12..16], &[10, 9, 9, 1]);
    assert_eq!(&datagram[16..20], &[224, 0, 0, 18]);
    assert_eq!(reference_checksum(&datagram[..20]), 0, "header checksum");
    assert_eq!(&datagram[20..], &vrrp[..]);

    let (header, payload) = parse_ipv4(&datagram).unwrap();
    assert_eq!(
        header,
        Ipv4Header {
            src: Ipv4Addr::new(10, 9, 9, 1),
            dst: VRRP_MCAST_V4,
            ttl: 255,
            protocol: 112,
            header_len: 20,
            total_len: 40,
        }
    );
    assert_eq!(payload, &vrrp[..]);
}

#[test]
fn ipv4_options_are_skipped() {
    let mut datagram = emit_ipv4(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 2),
        64,
        17,
        b"payload",
    );
    // Insert 4 bytes of options (router alert) and fix IHL and total length.
    datagram.splice(20..20, [0x94, 0x04, 0x00, 0x00]);
    datagram[0] = 0x46;
    let total_len = datagram.len() as u16;
    datagram[2..4].copy_from_slice(&total_len.to_be_bytes());
    let (header, payload) = parse_ipv4(&datagram).unwrap();
    assert_eq!(header.header_len, 24);
    assert_eq!(header.total_len, 31);
    assert_eq!(payload, b"payload");
}

#[test]
fn ipv4_errors() {
    let good = emit_ipv4(
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 2),
        64,
        17,
        b"abcd",
    );
    assert_eq!(parse_ipv4(&good[..19]), Err(Ipv4Error::Truncated));
    let mut v6 = good.clone();
    v6[0] = 0x65;
    assert_eq!(parse_ipv4(&v6), Err(Ipv4Error::NotIpv4(6)));
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    assert_eq!(parse_ipv4(&short_ihl), Err(Ipv4Error::BadHeaderLength(16)));
    let mut long_ihl = good.clone();
    long_ihl[0] = 0x47; // 28 > 24 bytes
    assert_eq!(parse_ipv4(&long_ihl), Err(Ipv4Error::BadHeaderLength(28)));
    assert_eq!(
        parse_ipv4(&good[..23]),
        Err(Ipv4Error::TotalLengthMismatch {
            header: 24,
            received: 23
        })
    );
    let mut padded = good.clone();
    padded.push(0);
    assert_eq!(
        parse_ipv4(&padded),
        Err(Ipv4Error::TotalLengthMismatch {
            header: 24,
            received: 25
        })
    );
    // A header-only datagram has an empty payload.
    let empty = emit_ipv4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 112, &[]);
    assert_eq!(parse_ipv4(&empty).unwrap().1, &[] as &[u8]);
}

// ---- properties ----

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn v4_addresses(max: usize) -> impl Strategy<Value = Vec<IpAddr>> {
    prop::collection::vec(
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        0..=max,
    )
}

fn v6_addresses(max: usize) -> impl Strategy<Value = Vec<IpAddr>> {
    prop::collection::vec(
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        0..=max,
    )
}

/// A valid repr with a source and destination it can be sent between.
fn valid_packet() -> impl Strategy<Value = (VrrpRepr, IpAddr, IpAddr)> {
    let v4 = || any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)));
    let v6 = || any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)));
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        0u16..=255,
        any::<u8>(),
        any::<[u8; 8]>(),
        v4_addresses(20),
        v4(),
        v4(),
    )
        .prop_map(
            |(vrid, priority, secs, auth_type, auth_data, addresses, src, dst)| {
                let repr = VrrpRepr {
                    version: VrrpVersion::V2,
                    vrid,
                    priority,
                    adver_int_cs: secs * 100,
                    auth_type,
                    auth_data,
                    addresses,
                };
                (repr, src, dst)
            },
        );
    let v3 = |addresses: BoxedStrategy<Vec<IpAddr>>,
              src: BoxedStrategy<IpAddr>,
              dst: BoxedStrategy<IpAddr>| {
        (any::<u8>(), any::<u8>(), 0u16..=4095, addresses, src, dst).prop_map(
            |(vrid, priority, adver_int_cs, addresses, src, dst)| {
                let repr = VrrpRepr {
                    version: VrrpVersion::V3,
                    vrid,
                    priority,
                    adver_int_cs,
                    auth_type: 0,
                    auth_data: [0; 8],
                    addresses,
                };
                (repr, src, dst)
            },
        )
    };
    prop_oneof![
        v2,
        v3(v4_addresses(20).boxed(), v4().boxed(), v4().boxed()),
        v3(v6_addresses(20).boxed(), v6().boxed(), v6().boxed()),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        src in any_ip(),
        dst in any_ip(),
    ) {
        let _ = VrrpRepr::parse(&bytes, src, dst);
    }

    #[test]
    fn parse_never_panics_on_vrrp_like_headers(
        version in 0u8..16,
        count in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..200),
        src in any_ip(),
        dst in any_ip(),
    ) {
        // Valid-looking first bytes reach the length and checksum checks more often.
        let mut bytes = vec![version << 4 | 1, 1, 100, count];
        bytes.extend_from_slice(&rest);
        let _ = VrrpRepr::parse(&bytes, src, dst);
    }

    #[test]
    fn parse_ipv4_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        if let Ok((header, payload)) = parse_ipv4(&bytes) {
            prop_assert_eq!(header.total_len, bytes.len());
            prop_assert_eq!(payload.len(), header.total_len - header.header_len);
        }
    }

    #[test]
    fn emit_then_parse_round_trips((repr, src, dst) in valid_packet()) {
        let packet = repr.emit(src, dst).unwrap();
        prop_assert_eq!(packet.len(), repr.buffer_len());
        prop_assert_eq!(VrrpRepr::parse(&packet, src, dst), Ok(repr.clone()));
        // Through an IPv4 datagram too, as a raw socket hands it back.
        if let (IpAddr::V4(src4), IpAddr::V4(dst4)) = (src, dst) {
            let datagram = emit_ipv4(src4, dst4, VRRP_TTL, IPPROTO_VRRP, &packet);
            let (header, payload) = parse_ipv4(&datagram).unwrap();
            prop_assert_eq!((header.src, header.dst, header.ttl), (src4, dst4, VRRP_TTL));
            prop_assert_eq!(
                VrrpRepr::parse(payload, IpAddr::V4(header.src), IpAddr::V4(header.dst)),
                Ok(repr)
            );
        }
    }

    #[test]
    fn emitted_checksum_matches_an_independent_computation((repr, src, dst) in valid_packet()) {
        let packet = repr.emit(src, dst).unwrap();
        let len = packet.len();
        let covered = match (repr.version, src, dst) {
            (VrrpVersion::V3, IpAddr::V4(s), IpAddr::V4(d)) => {
                cat(&[&pseudo_v4(s.octets(), d.octets(), len as u16), &packet])
            }
            (VrrpVersion::V3, IpAddr::V6(s), IpAddr::V6(d)) => {
                cat(&[&pseudo_v6(s, d, len as u32), &packet])
            }
            _ => packet.clone(),
        };
        prop_assert_eq!(reference_checksum(&covered), 0);
    }

    #[test]
    fn any_single_bit_flip_is_rejected_or_changes_the_repr(
        (repr, src, dst) in valid_packet(),
        bit in any::<prop::sample::Index>(),
    ) {
        let mut packet = repr.emit(src, dst).unwrap();
        let bit = bit.index(packet.len() * 8);
        packet[bit / 8] ^= 1 << (bit % 8);
        match VrrpRepr::parse(&packet, src, dst) {
            Err(_) => {}
            Ok(parsed) => prop_assert_ne!(parsed, repr),
        }
    }
}
