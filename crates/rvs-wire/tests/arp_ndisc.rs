//! Gratuitous ARP and unsolicited Neighbor Advertisement frames: every field at its
//! RFC offset, checksums computed independently, parser round trips and rejects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{cat, reference_checksum};
use proptest::prelude::*;
use rvs_wire::arp::{gratuitous_arp, parse_arp_frame, ArpRepr};
use rvs_wire::ndisc::{parse_na_frame, unsolicited_na, NaRepr};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[test]
fn gratuitous_arp_fields() {
    let ip = Ipv4Addr::new(192, 0, 2, 77);
    let frame = gratuitous_arp(MAC, ip);
    // Ethernet II.
    assert_eq!(&frame[0..6], &[0xff; 6]);
    assert_eq!(&frame[6..12], &MAC);
    assert_eq!(&frame[12..14], &[0x08, 0x06]);
    // RFC 826: hrd, pro, hln, pln, op.
    assert_eq!(&frame[14..16], &[0x00, 0x01]);
    assert_eq!(&frame[16..18], &[0x08, 0x00]);
    assert_eq!(frame[18], 6);
    assert_eq!(frame[19], 4);
    assert_eq!(&frame[20..22], &[0x00, 0x01]);
    // sha, spa, tha, tpa.
    assert_eq!(&frame[22..28], &MAC);
    assert_eq!(&frame[28..32], &[192, 0, 2, 77]);
    assert_eq!(&frame[32..38], &[0xff; 6]);
    assert_eq!(&frame[38..42], &[192, 0, 2, 77]);
}

#[test]
fn parse_arp_frame_accepts_padding_and_replies() {
    let ip = Ipv4Addr::new(10, 1, 2, 3);
    let mut padded = gratuitous_arp(MAC, ip).to_vec();
    padded.resize(60, 0);
    assert_eq!(
        parse_arp_frame(&padded),
        Some(ArpRepr {
            op: 1,
            sender_mac: MAC,
            sender_ip: ip,
            target_mac: [0xff; 6],
            target_ip: ip,
        })
    );
    let mut reply = padded.clone();
    reply[21] = 2;
    reply[32..38].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
    reply[38..42].copy_from_slice(&[10, 9, 8, 7]);
    assert_eq!(
        parse_arp_frame(&reply),
        Some(ArpRepr {
            op: 2,
            sender_mac: MAC,
            sender_ip: ip,
            target_mac: [1, 2, 3, 4, 5, 6],
            target_ip: Ipv4Addr::new(10, 9, 8, 7),
        })
    );
}

#[test]
fn parse_arp_frame_rejects_other_frames() {
    let frame = gratuitous_arp(MAC, Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(parse_arp_frame(&frame[..41]), None);
    assert_eq!(parse_arp_frame(&[]), None);
    // (offset, value): ethertype IPv4, hardware type, protocol type, hlen, plen.
    for (offset, value) in [
        (12, 0x08),
        (13, 0x00),
        (15, 6),
        (16, 0x86),
        (18, 8),
        (19, 16),
    ] {
        let mut bad = frame;
        bad[offset] = value;
        if offset == 12 {
            bad[13] = 0x00;
        }
        assert_eq!(parse_arp_frame(&bad), None, "offset {offset}");
    }
}

fn all_nodes() -> Ipv6Addr {
    "ff02::1".parse().unwrap()
}

#[test]
fn unsolicited_na_fields() {
    let target: Ipv6Addr = "2001:db8:1::42".parse().unwrap();
    for router in [false, true] {
        let frame = unsolicited_na(MAC, target, router);
        assert_eq!(frame.len(), 86);
        // Ethernet II, RFC 2464 section 7 multicast mapping of ff02::1.
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&frame[6..12], &MAC);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        // IPv6 header (RFC 8200 section 3).
        let ip = &frame[14..54];
        assert_eq!(&ip[0..4], &[0x60, 0, 0, 0]);
        assert_eq!(&ip[4..6], &[0, 32]);
        assert_eq!(ip[6], 58);
        assert_eq!(ip[7], 255);
        assert_eq!(&ip[8..24], &target.octets());
        assert_eq!(&ip[24..40], &all_nodes().octets());
        // ICMPv6 Neighbor Advertisement (RFC 4861 section 4.4).
        let icmp = &frame[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[1], 0);
        let flags = if router { 0xa0 } else { 0x20 };
        assert_eq!(&icmp[4..8], &[flags, 0, 0, 0]);
        assert_eq!(&icmp[8..24], &target.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // Checksum computed independently over the pseudo-header (RFC 8200 section 8.1).
        let mut zeroed = icmp.to_vec();
        zeroed[2..4].copy_from_slice(&[0, 0]);
        let pseudo = cat(&[
            &target.octets(),
            &all_nodes().octets(),
            &32u32.to_be_bytes(),
            &[0, 0, 0, 58],
        ]);
        let expected = reference_checksum(&cat(&[&pseudo, &zeroed]));
        assert_eq!(&icmp[2..4], &expected.to_be_bytes());
    }
}

fn na_frame() -> Vec<u8> {
    unsolicited_na(MAC, "2001:db8::99".parse().unwrap(), false)
}

/// Rewrites the ICMPv6 checksum of a frame built by `unsolicited_na` after an edit.
fn refresh_checksum(frame: &mut [u8]) {
    frame[56..58].copy_from_slice(&[0, 0]);
    let payload_len = u16::from_be_bytes([frame[18], frame[19]]);
    let pseudo = cat(&[
        &frame[22..38],
        &frame[38..54],
        &u32::from(payload_len).to_be_bytes(),
        &[0, 0, 0, 58],
    ]);
    let icmp_end = 54 + usize::from(payload_len);
    let checksum = reference_checksum(&cat(&[&pseudo, &frame[54..icmp_end]]));
    frame[56..58].copy_from_slice(&checksum.to_be_bytes());
}

#[test]
fn parse_na_frame_reads_what_unsolicited_na_writes() {
    let target: Ipv6Addr = "2001:db8::99".parse().unwrap();
    for router in [false, true] {
        assert_eq!(
            parse_na_frame(&unsolicited_na(MAC, target, router)),
            Some(NaRepr {
                src_mac: MAC,
                target,
                target_mac: Some(MAC),
                override_flag: true,
                router_flag: router,
            })
        );
    }
}

#[test]
fn parse_na_frame_without_option_and_with_trailing_bytes() {
    let mut frame = na_frame();
    frame.truncate(78);
    frame[18..20].copy_from_slice(&24u16.to_be_bytes());
    frame[58] = 0; // no flags
    refresh_checksum(&mut frame);
    frame.extend_from_slice(&[0xee; 4]); // beyond the payload length: ignored
    let parsed = parse_na_frame(&frame).unwrap();
    assert_eq!(parsed.target_mac, None);
    assert!(!parsed.override_flag && !parsed.router_flag);
}

#[test]
fn parse_na_frame_rejects() {
    let good = na_frame();
    assert!(parse_na_frame(&good).is_some());
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let edit = |f: &dyn Fn(&mut Vec<u8>), refresh: bool| {
        let mut frame = good.clone();
        f(&mut frame);
        if refresh {
            refresh_checksum(&mut frame);
        }
        frame
    };
    cases.push(("truncated", good[..85].to_vec()));
    cases.push(("no ipv6 header", good[..50].to_vec()));
    cases.push(("bad checksum", edit(&|f| f[70] ^= 1, false)));
    cases.push(("ethertype", edit(&|f| f[13] = 0x00, true)));
    cases.push(("ip version", edit(&|f| f[14] = 0x40, true)));
    cases.push(("hop limit", edit(&|f| f[21] = 64, true)));
    cases.push(("next header", edit(&|f| f[20] = 17, true)));
    cases.push(("icmp type", edit(&|f| f[54] = 135, true)));
    cases.push(("icmp code", edit(&|f| f[55] = 1, true)));
    cases.push(("solicited to multicast", edit(&|f| f[58] |= 0x40, true)));
    cases.push(("multicast target", edit(&|f| f[62] = 0xff, true)));
    cases.push(("zero-length option", edit(&|f| f[79] = 0, true)));
    cases.push(("option overruns", edit(&|f| f[79] = 2, true)));
    cases.push((
        "icmp shorter than 24",
        edit(&|f| f[18..20].copy_from_slice(&20u16.to_be_bytes()), true),
    ));
    for (what, frame) in cases {
        assert_eq!(parse_na_frame(&frame), None, "{what}");
    }
}

proptest! {
    #[test]
    fn arp_round_trips(mac in any::<[u8; 6]>(), ip in any::<[u8; 4]>()) {
        let ip = Ipv4Addr::from(ip);
        let parsed = parse_arp_frame(&gratuitous_arp(mac, ip)).unwrap();
        prop_assert_eq!(parsed, ArpRepr {
            op: 1,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0xff; 6],
            target_ip: ip,
        });
    }

    #[test]
    fn na_round_trips_and_checksums(mac in any::<[u8; 6]>(), target in any::<[u8; 16]>(), router: bool) {
        let target = Ipv6Addr::from(target);
        let frame = unsolicited_na(mac, target, router);
        let pseudo = cat(&[&target.octets(), &all_nodes().octets(), &32u32.to_be_bytes(), &[0, 0, 0, 58]]);
        prop_assert_eq!(reference_checksum(&cat(&[&pseudo, &frame[54..]])), 0);
        let parsed = parse_na_frame(&frame);
        if target.is_multicast() {
            prop_assert_eq!(parsed, None);
        } else {
            prop_assert_eq!(parsed, Some(NaRepr {
                src_mac: mac,
                target,
                target_mac: Some(mac),
                override_flag: true,
                router_flag: router,
            }));
        }
    }

    #[test]
    fn frame_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = parse_arp_frame(&bytes);
        let _ = parse_na_frame(&bytes);
    }

    #[test]
    fn na_parser_never_panics_on_mangled_valid_frames(
        edits in prop::collection::vec((0usize..86, any::<u8>()), 1..6),
        cut in 0usize..=86,
    ) {
        let mut frame = na_frame();
        for (offset, value) in edits {
            frame[offset] = value;
        }
        frame.truncate(cut);
        let _ = parse_na_frame(&frame);
    }
}
