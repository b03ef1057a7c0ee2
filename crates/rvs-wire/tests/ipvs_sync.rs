//! IPVS sync messages: byte-exact fixtures written by hand from the kernel's structures
//! (net/netfilter/ipvs/ip_vs_sync.c: struct ip_vs_sync_mesg, ip_vs_sync_v4/v6,
//! ip_vs_sync_mesg_v0, ip_vs_sync_conn_v0, ip_vs_sync_conn_options), splitting by maxlen,
//! the kernel's refusals, and property tests (decode never panics; decode inverts encode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rvs_wire::ipvs_sync::*;

fn v4(c: [u8; 4], v: [u8; 4], d: [u8; 4]) -> ConnAddrs {
    ConnAddrs::V4 {
        caddr: Ipv4Addr::from(c),
        vaddr: Ipv4Addr::from(v),
        daddr: Ipv4Addr::from(d),
    }
}

fn v6(c: &str, v: &str, d: &str) -> ConnAddrs {
    ConnAddrs::V6 {
        caddr: c.parse().unwrap(),
        vaddr: v.parse().unwrap(),
        daddr: d.parse().unwrap(),
    }
}

/// A v1 message: a NAT TCP connection with sequence adjustments, then an IPv6 UDP
/// direct-routing connection with persistence-engine data.
fn two_entry_v1() -> (SyncMessage, Vec<u8>) {
    let mut tcp = SyncConn::new(
        v4([10, 0, 0, 1], [10, 0, 0, 100], [10, 0, 2, 2]),
        6,
        40000,
        80,
        8080,
    );
    tcp.flags = CONN_F_MASQ | CONN_F_OUT_SEQ | CONN_F_IN_SEQ;
    tcp.state = 1; // ESTABLISHED
    tcp.timeout = 900;
    tcp.seq = Some(SeqOptions {
        in_seq: SeqDelta {
            init_seq: 0x0102_0304,
            delta: 5,
            previous_delta: 0xffff_fffe,
        },
        out_seq: SeqDelta {
            init_seq: 0xa0b0_c0d0,
            delta: 0,
            previous_delta: 7,
        },
    });
    let mut udp = SyncConn::new(
        v6("2001:db8::1", "2001:db8::100", "2001:db8:2::2"),
        17,
        5060,
        5060,
        5070,
    );
    udp.flags = CONN_F_DROUTE | CONN_F_INACTIVE;
    udp.fwmark = 0x0102;
    udp.timeout = 300;
    udp.pe_data = Some(b"abc".to_vec());
    udp.pe_name = Some(b"sip".to_vec());
    let message = SyncMessage {
        syncid: 9,
        conns: vec![tcp, udp],
    };

    let mut bytes = vec![
        0x00, // reserved: 0 in v1
        0x09, // syncid
        0x00, 0x00, // size, set at the end
        0x02, // nr_conns
        0x01, // version
        0x00, 0x00, // spare
    ];
    // entry 0: struct ip_vs_sync_v4 + SEQ_DATA option = 36 + 2 + 24 = 62 bytes
    bytes.extend_from_slice(&[
        0x00, // type: IPv4
        0x06, // protocol: TCP
        0x00, 62, // ver_size: version 0, size 62
        0x00, 0x00, 0x06, 0x00, // flags: IN_SEQ | OUT_SEQ, MASQ
        0x00, 0x01, // state: ESTABLISHED
        0x9c, 0x40, // cport 40000
        0x00, 0x50, // vport 80
        0x1f, 0x90, // dport 8080
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900 s
        10, 0, 0, 1, // caddr
        10, 0, 0, 100, // vaddr
        10, 0, 2, 2, // daddr
        0x01, 24, // option IPVS_OPT_SEQ_DATA, length 24
        0x01, 0x02, 0x03, 0x04, // in_seq.init_seq
        0x00, 0x00, 0x00, 0x05, // in_seq.delta
        0xff, 0xff, 0xff, 0xfe, // in_seq.previous_delta
        0xa0, 0xb0, 0xc0, 0xd0, // out_seq.init_seq
        0x00, 0x00, 0x00, 0x00, // out_seq.delta
        0x00, 0x00, 0x00, 0x07, // out_seq.previous_delta
        0x00, 0x00, // padding to 4 bytes (62 -> 64), not counted in the entry size
    ]);
    // entry 1: struct ip_vs_sync_v6 + PE_DATA + PE_NAME = 72 + 5 + 5 = 82 bytes
    bytes.extend_from_slice(&[
        0x01, // type: STYPE_F_INET6
        0x11, // protocol: UDP
        0x00, 82, // ver_size
        0x00, 0x00, 0x01, 0x03, // flags: INACTIVE, DROUTE
        0x00, 0x00, // state 0
        0x13, 0xc4, // cport 5060
        0x13, 0xc4, // vport 5060
        0x13, 0xce, // dport 5070
        0x00, 0x00, 0x01, 0x02, // fwmark 0x102
        0x00, 0x00, 0x01, 0x2c, // timeout 300 s
    ]);
    bytes.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()); // caddr
    bytes.extend_from_slice(&"2001:db8::100".parse::<Ipv6Addr>().unwrap().octets()); // vaddr
    bytes.extend_from_slice(&"2001:db8:2::2".parse::<Ipv6Addr>().unwrap().octets()); // daddr
    bytes.extend_from_slice(&[0x02, 3, b'a', b'b', b'c']); // IPVS_OPT_PE_DATA
    bytes.extend_from_slice(&[0x03, 3, b's', b'i', b'p']); // IPVS_OPT_PE_NAME
                                                           // no padding after the last entry
    assert_eq!(bytes.len(), 8 + 64 + 82);
    let size = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&size.to_be_bytes());
    (message, bytes)
}

#[test]
fn v1_fixture_encodes_and_decodes_byte_exact() {
    let (message, bytes) = two_entry_v1();
    assert_eq!(encode_v1(&message, 1472).unwrap(), vec![bytes.clone()]);
    assert_eq!(
        decode_versioned(&bytes).unwrap(),
        (SyncVersion::V1, message.clone())
    );
    let udp = &message.conns[1];
    assert_eq!(udp.forward_method(), Some(ForwardMethod::DirectRoute));
    assert!(udp.is_inactive() && !udp.is_template() && !udp.adjusts_seq());
    assert!(message.conns[0].adjusts_seq());
    assert_eq!(message.conns[0].forward_method(), Some(ForwardMethod::Masq));
}

/// A v0 message: a TCP connection with sequence options (in the sender's host order,
/// little-endian here), then a template.
#[test]
fn v0_fixture_encodes_and_decodes_byte_exact() {
    let mut bytes = vec![
        0x02, // nr_conns
        0x05, // syncid
        0x00, 0x00, // size, set below
    ];
    bytes.extend_from_slice(&[
        0x00, // reserved
        0x06, // protocol TCP
        0x04, 0xd2, // cport 1234
        0x00, 0x15, // vport 21
        0x00, 0x15, // dport 21
        192, 168, 1, 10, // caddr
        192, 168, 1, 1, // vaddr
        192, 168, 2, 20, // daddr
        0x02, 0x00, // flags: OUT_SEQ, MASQ (16 bits in v0)
        0x00, 0x05, // state: TIME_WAIT
        // struct ip_vs_sync_conn_options: two struct ip_vs_seq, host order (LE)
        0x10, 0x00, 0x00, 0x00, // in_seq.init_seq = 16
        0x02, 0x00, 0x00, 0x00, // in_seq.delta = 2
        0x01, 0x00, 0x00, 0x00, // in_seq.previous_delta = 1
        0x78, 0x56, 0x34, 0x12, // out_seq.init_seq = 0x12345678
        0xfd, 0xff, 0xff, 0xff, // out_seq.delta = -3
        0x00, 0x00, 0x00, 0x00, // out_seq.previous_delta = 0
    ]);
    bytes.extend_from_slice(&[
        0x00, // reserved
        0x06, // protocol TCP
        0x00, 0x00, // cport 0 (template)
        0x00, 0x50, // vport 80
        0x00, 0x50, // dport 80
        192, 168, 1, 10, // caddr
        192, 168, 1, 1, // vaddr
        192, 168, 2, 20, // daddr
        0x10, 0x03, // flags: TEMPLATE, DROUTE
        0x00, 0x01, // state: ASSURED
    ]);
    let size = bytes.len() as u16;
    assert_eq!(size, 4 + 48 + 24);
    bytes[2..4].copy_from_slice(&size.to_be_bytes());

    let addrs = v4([192, 168, 1, 10], [192, 168, 1, 1], [192, 168, 2, 20]);
    let mut ftp = SyncConn::new(addrs, 6, 1234, 21, 21);
    ftp.flags = CONN_F_OUT_SEQ;
    ftp.state = 5;
    ftp.seq = Some(SeqOptions {
        in_seq: SeqDelta {
            init_seq: 16,
            delta: 2,
            previous_delta: 1,
        },
        out_seq: SeqDelta {
            init_seq: 0x1234_5678,
            delta: (-3i32) as u32,
            previous_delta: 0,
        },
    });
    let mut template = SyncConn::new(addrs, 6, 0, 80, 80);
    template.flags = CONN_F_TEMPLATE | CONN_F_DROUTE;
    template.state = 1;
    let message = SyncMessage {
        syncid: 5,
        conns: vec![ftp, template],
    };
    assert_eq!(
        decode_versioned(&bytes).unwrap(),
        (SyncVersion::V0, message.clone())
    );
    assert_eq!(encode_v0(&message, 1472).unwrap(), vec![bytes]);
    assert_eq!(state_name(6, message.conns[1].flags, 1), Some("ASSURED"));
}

#[test]
fn fwmark_template_round_trips() {
    // A fwmark service's template: protocol IPPROTO_IP, cport/vport/dport 0, the mark in
    // the fwmark field.
    let mut template = SyncConn::new(v4([10, 9, 8, 7], [0, 0, 0, 1], [10, 0, 2, 2]), 0, 0, 0, 0);
    template.flags = CONN_F_TEMPLATE | CONN_F_TUNNEL;
    template.fwmark = 1;
    template.timeout = 360;
    let message = SyncMessage {
        syncid: 0,
        conns: vec![template],
    };
    let encoded = encode_v1(&message, 1472).unwrap();
    assert_eq!(encoded.len(), 1);
    assert_eq!(encoded[0].len(), 8 + 36);
    assert_eq!(&encoded[0][8 + 16..8 + 20], &[0, 0, 0, 1], "fwmark field");
    let decoded = decode(&encoded[0]).unwrap();
    assert_eq!(decoded, message);
    assert_eq!(
        decoded.conns[0].forward_method(),
        Some(ForwardMethod::Tunnel)
    );
}

#[test]
fn encoder_clears_hashed_like_the_kernel() {
    let mut conn = SyncConn::new(v4([1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]), 6, 1, 2, 3);
    conn.flags = CONN_F_HASHED | CONN_F_DROUTE;
    let message = SyncMessage {
        syncid: 1,
        conns: vec![conn],
    };
    let bytes = &encode_v1(&message, 1472).unwrap()[0];
    assert_eq!(&bytes[12..16], &[0, 0, 0, 3]);
    let bytes = &encode_v0(&message, 1472).unwrap()[0];
    assert_eq!(&bytes[4 + 20..4 + 22], &[0, 3]);
}

fn plain_conns(count: usize) -> Vec<SyncConn> {
    (0..count)
        .map(|i| {
            SyncConn::new(
                v4(
                    [10, 1, (i >> 8) as u8, i as u8],
                    [10, 0, 0, 1],
                    [10, 2, 0, 2],
                ),
                6,
                1024 + i as u16,
                80,
                80,
            )
        })
        .collect()
}

#[test]
fn v1_splits_by_maxlen_like_the_kernel() {
    // 36-byte IPv4 entries, 8-byte header: (1472 - 8) / 36 = 40 per message.
    let message = SyncMessage {
        syncid: 3,
        conns: plain_conns(100),
    };
    let messages = encode_v1(&message, 1472).unwrap();
    let counts: Vec<u8> = messages.iter().map(|m| m[4]).collect();
    assert_eq!(counts, vec![40, 40, 20]);
    assert!(messages.iter().all(|m| m.len() <= 1472));
    assert_eq!(messages[0].len(), 8 + 40 * 36);
    let again: Vec<SyncConn> = messages
        .iter()
        .flat_map(|m| decode(m).unwrap().conns)
        .collect();
    assert_eq!(again, message.conns);

    // With padding: 62-byte entries (SEQ_DATA) take 64 bytes but the last one 62:
    // 8 + 64 * 3 + 62 = 262 fits 262, a fifth entry does not.
    let mut seq_conns = plain_conns(5);
    for conn in &mut seq_conns {
        conn.flags = CONN_F_IN_SEQ;
        conn.seq = Some(SeqOptions::default());
    }
    let message = SyncMessage {
        syncid: 3,
        conns: seq_conns,
    };
    let messages = encode_v1(&message, 262).unwrap();
    assert_eq!(
        messages.iter().map(|m| m.len()).collect::<Vec<_>>(),
        vec![262, 8 + 62]
    );
    let messages = encode_v1(&message, 261).unwrap();
    assert_eq!(
        messages.iter().map(|m| m[4]).collect::<Vec<_>>(),
        vec![3, 2]
    );

    // At most 255 entries a message (nr_conns is one byte), whatever maxlen says.
    let message = SyncMessage {
        syncid: 3,
        conns: plain_conns(300),
    };
    let messages = encode_v1(&message, 65535).unwrap();
    assert_eq!(
        messages.iter().map(|m| m[4]).collect::<Vec<_>>(),
        vec![255, 45]
    );

    // An entry longer than maxlen still goes, alone.
    let messages = encode_v1(
        &SyncMessage {
            syncid: 3,
            conns: plain_conns(2),
        },
        10,
    )
    .unwrap();
    assert_eq!(
        messages.iter().map(|m| m.len()).collect::<Vec<_>>(),
        vec![44, 44]
    );

    assert!(encode_v1(
        &SyncMessage {
            syncid: 3,
            conns: vec![]
        },
        1472
    )
    .unwrap()
    .is_empty());
}

#[test]
fn v0_splits_by_maxlen() {
    // 24-byte entries after a 4-byte header: (1472 - 4) / 24 = 61.
    let message = SyncMessage {
        syncid: 3,
        conns: plain_conns(100),
    };
    let messages = encode_v0(&message, 1472).unwrap();
    assert_eq!(
        messages.iter().map(|m| m[0]).collect::<Vec<_>>(),
        vec![61, 39]
    );
    assert_eq!(messages[0].len(), 4 + 61 * 24);
    let again: Vec<SyncConn> = messages
        .iter()
        .flat_map(|m| decode(m).unwrap().conns)
        .collect();
    assert_eq!(again, message.conns);
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let base = SyncConn::new(v4([1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]), 6, 1, 2, 3);
    let one = |conn: SyncConn| SyncMessage {
        syncid: 0,
        conns: vec![conn],
    };
    let mut conn = base.clone();
    conn.pe_name = Some(vec![b'x'; 17]);
    assert_eq!(
        encode_v1(&one(conn), 1472),
        Err(EncodeError::PeNameLength { entry: 0, len: 17 })
    );
    let mut conn = base.clone();
    conn.pe_data = Some(vec![]);
    assert_eq!(
        encode_v1(&one(conn), 1472),
        Err(EncodeError::PeDataLength { entry: 0, len: 0 })
    );
    let mut conn = base.clone();
    conn.unknown_options = vec![SyncOption {
        kind: 0x41,
        data: vec![0; 24],
    }];
    assert_eq!(
        encode_v1(&one(conn), 1472),
        Err(EncodeError::KnownOptionKind {
            entry: 0,
            kind: 0x41
        })
    );
    let mut conn = base.clone();
    conn.unknown_options = vec![
        SyncOption {
            kind: 9,
            data: vec![0; 255]
        };
        20
    ];
    assert!(matches!(
        encode_v1(&one(conn), 65535),
        Err(EncodeError::EntryTooLong { entry: 0, .. })
    ));
    let conn = SyncConn::new(v6("::1", "::2", "::3"), 6, 1, 2, 3);
    assert_eq!(
        encode_v0(&one(conn), 1472),
        Err(EncodeError::V0NotIpv4 { entry: 0 })
    );
    let mut conn = base.clone();
    conn.flags = CONN_F_IN_SEQ;
    assert_eq!(
        encode_v0(&one(conn), 1472),
        Err(EncodeError::V0SeqMismatch { entry: 0 })
    );
}

/// The fixture with one byte changed at `at`, or its size field rewritten to its length.
fn patched(at: usize, value: u8) -> Vec<u8> {
    let (_, mut bytes) = two_entry_v1();
    bytes[at] = value;
    bytes
}

fn resized(mut bytes: Vec<u8>) -> Vec<u8> {
    let size = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&size.to_be_bytes());
    bytes
}

#[test]
fn decode_refuses_what_the_kernel_drops() {
    let (_, good) = two_entry_v1();
    assert_eq!(decode(&good[..3]), Err(SyncError::TooShort(3)));
    assert_eq!(
        decode(&good[..100]),
        Err(SyncError::SizeMismatch {
            header: 154,
            actual: 100
        })
    );
    assert_eq!(decode(&patched(5, 2)), Err(SyncError::UnknownVersion(2)));
    assert_eq!(decode(&patched(7, 1)), Err(SyncError::NonZeroSpare(1)));
    // entry 1's size pointing past the end
    assert_eq!(
        decode(&patched(8 + 64 + 3, 83)),
        Err(SyncError::EntryOverrun { entry: 1, size: 83 })
    );
    // entry 0 claiming entry version 1
    assert_eq!(
        decode(&patched(8 + 2, 0x10)),
        Err(SyncError::UnknownEntryVersion {
            entry: 0,
            version: 1
        })
    );
    assert_eq!(
        decode(&patched(8, 0x02)),
        Err(SyncError::UnknownEntryType {
            entry: 0,
            entry_type: 2
        })
    );
    // IPv6 entry shorter than 72 bytes: make entry 1 say IPv6... entry 0 (62 bytes) does
    assert_eq!(
        decode(&patched(8, 0x01)),
        Err(SyncError::EntryTooShort {
            entry: 0,
            size: 62,
            min: 72
        })
    );
    // SEQ_DATA of length 23: the option then overruns nothing but is the wrong size
    assert_eq!(
        decode(&patched(8 + 37, 23)),
        Err(SyncError::BadOptionLength {
            entry: 0,
            kind: 1,
            len: 23
        })
    );
    // a zero-length option
    assert_eq!(
        decode(&patched(8 + 37, 0)),
        Err(SyncError::BadOptionLength {
            entry: 0,
            kind: 1,
            len: 0
        })
    );
    // the PE name option turned into a second PE data option
    assert_eq!(
        decode(&patched(8 + 64 + 77, 2)),
        Err(SyncError::DuplicateOption { entry: 1, kind: 2 })
    );
    // a message whose header says 2 entries but holds 1
    let one = resized(good[..8 + 62].to_vec());
    assert_eq!(decode(&one), Err(SyncError::TruncatedEntry { entry: 1 }));
    // bytes after the last entry (beyond its padding)
    let mut long = good.clone();
    long.extend_from_slice(&[0; 6]);
    assert_eq!(decode(&resized(long)), Err(SyncError::TrailingBytes(6)));
    // v0: seq flag set but the options missing
    let mut v0 = vec![1, 0, 0, 28];
    v0.extend_from_slice(&[
        0, 6, 0, 1, 0, 2, 0, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 0x04, 0x00, 0, 1,
    ]);
    assert_eq!(decode(&v0), Err(SyncError::TruncatedEntry { entry: 0 }));
    v0[20 + 4] = 0; // flags 0: a plain entry, which then fits exactly
    assert_eq!(decode(&v0).unwrap().conns.len(), 1);
    // the empty messages
    assert_eq!(
        decode(&[0, 7, 0, 4]).unwrap(),
        SyncMessage {
            syncid: 7,
            conns: vec![]
        }
    );
    assert_eq!(
        decode(&[0, 7, 0, 8, 0, 1, 0, 0]).unwrap(),
        SyncMessage {
            syncid: 7,
            conns: vec![]
        }
    );
}

#[test]
fn unknown_options_are_kept_and_the_param_bit_is_masked() {
    let (_, good) = two_entry_v1();
    // Replace entry 1's PE_NAME option by an unknown optional one (0x40 | 9) and the
    // PE_DATA option by an unknown mandatory one (8).
    let mut bytes = good.clone();
    bytes[8 + 64 + 72] = 8;
    bytes[8 + 64 + 77] = 0x49;
    let conn = &decode(&bytes).unwrap().conns[1];
    assert_eq!(
        conn.unknown_options,
        vec![
            SyncOption {
                kind: 8,
                data: b"abc".to_vec()
            },
            SyncOption {
                kind: 0x49,
                data: b"sip".to_vec()
            }
        ]
    );
    assert!(conn.has_unknown_mandatory_option());
    assert_eq!((conn.pe_data.clone(), conn.pe_name.clone()), (None, None));
    // SEQ_DATA with the "may ignore" bit is still SEQ_DATA.
    let bytes = patched(8 + 36, 0x41);
    let conn = &decode(&bytes).unwrap().conns[0];
    assert_eq!(conn.seq, two_entry_v1().0.conns[0].seq);
    assert!(conn.unknown_options.is_empty());
}

fn arb_addrs() -> impl Strategy<Value = ConnAddrs> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(c, v, d)| v4(c, v, d)),
        (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(c, v, d)| {
            ConnAddrs::V6 {
                caddr: Ipv6Addr::from(c),
                vaddr: Ipv6Addr::from(v),
                daddr: Ipv6Addr::from(d),
            }
        }),
    ]
}

fn arb_seq() -> impl Strategy<Value = SeqOptions> {
    any::<[u32; 6]>().prop_map(|w| SeqOptions {
        in_seq: SeqDelta {
            init_seq: w[0],
            delta: w[1],
            previous_delta: w[2],
        },
        out_seq: SeqDelta {
            init_seq: w[3],
            delta: w[4],
            previous_delta: w[5],
        },
    })
}

fn arb_v1_conn() -> impl Strategy<Value = SyncConn> {
    (
        arb_addrs(),
        any::<u8>(),
        any::<u32>().prop_map(|f| f & !CONN_F_HASHED),
        any::<(u16, u16, u16, u16, u32, u32)>(),
        proptest::option::of(arb_seq()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=255)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=16)),
        proptest::collection::vec(
            (
                prop_oneof![Just(0u8), 4u8..0x41, 0x44u8..=255],
                proptest::collection::vec(any::<u8>(), 1..40),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(
                addrs,
                protocol,
                flags,
                (state, cport, vport, dport, fwmark, timeout),
                seq,
                pe_data,
                pe_name,
                unknown,
            )| SyncConn {
                addrs,
                protocol,
                flags,
                state,
                cport,
                vport,
                dport,
                fwmark,
                timeout,
                seq,
                pe_data,
                pe_name,
                unknown_options: unknown
                    .into_iter()
                    .map(|(kind, data)| SyncOption { kind, data })
                    .collect(),
            },
        )
}

fn arb_v0_conn() -> impl Strategy<Value = SyncConn> {
    (
        any::<([u8; 4], [u8; 4], [u8; 4])>(),
        any::<u8>(),
        any::<u16>(),
        any::<(u16, u16, u16, u16)>(),
        arb_seq(),
    )
        .prop_map(
            |((c, v, d), protocol, flags, (state, cport, vport, dport), seq)| {
                let flags = u32::from(flags) & !CONN_F_HASHED;
                let mut conn = SyncConn::new(v4(c, v, d), protocol, cport, vport, dport);
                conn.flags = flags;
                conn.state = state;
                conn.seq = (flags & CONN_F_SEQ_MASK != 0).then_some(seq);
                conn
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        // and with a consistent size field, which gets further into the entries
        if bytes.len() >= 4 && bytes.len() <= usize::from(u16::MAX) {
            let mut sized = bytes.clone();
            sized[2..4].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
            let _ = decode(&sized);
            sized[0] = 0;
            if sized.len() >= 8 {
                sized[5] = 1;
                sized[6] = 0;
                sized[7] = 0;
            }
            let _ = decode(&sized);
        }
    }

    #[test]
    fn v1_decode_inverts_encode(
        syncid in any::<u8>(),
        conns in proptest::collection::vec(arb_v1_conn(), 0..12),
        maxlen in 1u16..2000,
    ) {
        let message = SyncMessage { syncid, conns };
        let mut again = Vec::new();
        for bytes in encode_v1(&message, maxlen).unwrap() {
            let (version, decoded) = decode_versioned(&bytes).unwrap();
            prop_assert_eq!(version, SyncVersion::V1);
            prop_assert_eq!(decoded.syncid, syncid);
            prop_assert!(!decoded.conns.is_empty());
            prop_assert!(bytes.len() <= usize::from(maxlen) || decoded.conns.len() == 1);
            again.extend(decoded.conns);
        }
        prop_assert_eq!(again, message.conns);
    }

    #[test]
    fn v0_decode_inverts_encode(
        syncid in any::<u8>(),
        conns in proptest::collection::vec(arb_v0_conn(), 1..12),
        maxlen in 1u16..600,
    ) {
        let message = SyncMessage { syncid, conns };
        let mut again = Vec::new();
        for bytes in encode_v0(&message, maxlen).unwrap() {
            let (version, decoded) = decode_versioned(&bytes).unwrap();
            prop_assert_eq!(version, SyncVersion::V0);
            again.extend(decoded.conns);
        }
        prop_assert_eq!(again, message.conns);
    }
}
