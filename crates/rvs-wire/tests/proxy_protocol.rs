//! PROXY protocol: the spec's examples byte for byte, round trips, incremental
//! decoding, rejects of malformed headers, and properties over arbitrary input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use rvs_wire::proxy_protocol::{
    decode, encode, encode_v1, encode_v1_unknown, encode_v2, Addresses, Command, Header,
    ProxyError, Transport, Version, V1_MAX_LEN, V2_SIGNATURE,
};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxied(version: Version, transport: Transport, src: &str, dst: &str) -> Header {
    Header {
        version,
        command: Command::Proxy,
        transport: Some(transport),
        addresses: Some(Addresses {
            src: sa(src),
            dst: sa(dst),
        }),
    }
}

const V1_UNKNOWN: Header = Header {
    version: Version::V1,
    command: Command::Proxy,
    transport: None,
    addresses: None,
};

/// The header must decode whole, and every proper prefix must ask for more.
fn decode_whole(bytes: &[u8]) -> Header {
    for k in 0..bytes.len() {
        assert_eq!(decode(&bytes[..k]), Ok(None), "prefix of {k} bytes");
    }
    let (header, used) = decode(bytes).unwrap().expect("complete header");
    assert_eq!(used, bytes.len());
    header
}

// ---- the spec's examples -------------------------------------------------------

#[test]
fn v1_spec_example() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    assert_eq!(
        encode_v1(sa("192.168.0.1:56324"), sa("192.168.0.11:443")),
        line
    );
    let mut stream = line.to_vec();
    stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    let (header, used) = decode(&stream).unwrap().unwrap();
    assert_eq!(used, line.len());
    assert_eq!(
        header,
        proxied(
            Version::V1,
            Transport::Stream,
            "192.168.0.1:56324",
            "192.168.0.11:443"
        )
    );
    assert_eq!(&stream[used..used + 3], b"GET");
}

#[test]
fn v1_spec_longest_lines() {
    let v4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(v4.len(), 56);
    assert_eq!(
        encode_v1(sa("255.255.255.255:65535"), sa("255.255.255.255:65535")),
        v4
    );
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let v6 = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(v6.len(), 104);
    let all_f = sa(&format!("[{f}]:65535"));
    assert_eq!(encode_v1(all_f, all_f), v6.as_bytes());
    decode_whole(v6.as_bytes());
    // The worst case: UNKNOWN with every optional field at its longest, 107 bytes.
    let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(decode_whole(worst.as_bytes()), V1_UNKNOWN);
}

#[test]
fn v1_unknown_forms() {
    assert_eq!(encode_v1_unknown(), b"PROXY UNKNOWN\r\n");
    assert_eq!(decode_whole(b"PROXY UNKNOWN\r\n"), V1_UNKNOWN);
    // Anything after UNKNOWN up to the CRLF is ignored, even nonsense.
    assert_eq!(
        decode_whole(b"PROXY UNKNOWN 1.2.3.4 ::1 99999 x\r\n"),
        V1_UNKNOWN
    );
    assert_eq!(decode_whole(b"PROXY UNKNOWN \xff\r\n"), V1_UNKNOWN);
    // Datagrams cannot be named in version 1.
    assert_eq!(
        encode(
            Version::V1,
            Transport::Datagram,
            sa("1.2.3.4:5"),
            sa("6.7.8.9:10")
        ),
        b"PROXY UNKNOWN\r\n"
    );
}

#[test]
fn v2_signature_and_layout() {
    assert_eq!(
        V2_SIGNATURE,
        [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    );
    let bytes = encode_v2(
        Command::Proxy,
        Transport::Stream,
        sa("172.19.0.1:42578"),
        sa("172.19.0.3:80"),
    );
    let mut want = V2_SIGNATURE.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    want.extend_from_slice(&[172, 19, 0, 1, 172, 19, 0, 3, 0xa6, 0x52, 0x00, 0x50]);
    assert_eq!(bytes, want);

    let udp6 = encode_v2(
        Command::Proxy,
        Transport::Datagram,
        sa("[2001:db8::1]:53"),
        sa("[2001:db8::2]:5353"),
    );
    assert_eq!(&udp6[12..16], &[0x21, 0x22, 0x00, 0x24]);
    assert_eq!(udp6.len(), 16 + 36);
    assert_eq!(&udp6[16..20], &[0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(&udp6[48..52], &[0x00, 0x35, 0x14, 0xe9]);

    let udp4 = encode_v2(
        Command::Proxy,
        Transport::Datagram,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
    );
    assert_eq!(&udp4[12..16], &[0x21, 0x12, 0x00, 0x0c]);
    let tcp6 = encode_v2(
        Command::Proxy,
        Transport::Stream,
        sa("[::1]:1"),
        sa("[::2]:2"),
    );
    assert_eq!(&tcp6[12..16], &[0x21, 0x21, 0x00, 0x24]);
}

#[test]
fn v2_local() {
    let bytes = encode_v2(
        Command::Local,
        Transport::Stream,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
    );
    let mut want = V2_SIGNATURE.to_vec();
    want.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(bytes, want);
    let local = Header {
        version: Version::V2,
        command: Command::Local,
        transport: None,
        addresses: None,
    };
    assert_eq!(decode_whole(&bytes), local);
    // A LOCAL header may still carry an address block: it is skipped by length.
    let mut with_block = encode_v2(
        Command::Proxy,
        Transport::Stream,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
    );
    with_block[12] = 0x20;
    assert_eq!(decode_whole(&with_block), local);
}

// ---- mixed families and round trips ----------------------------------------------

#[test]
fn mixed_families_map_ipv4_into_ipv6() {
    let src = sa("192.168.0.1:56324");
    let dst = sa("[2001:db8::11]:443");
    assert_eq!(
        encode_v1(src, dst),
        b"PROXY TCP6 ::ffff:c0a8:1 2001:db8::11 56324 443\r\n"
    );
    let want = |v| {
        proxied(
            v,
            Transport::Stream,
            "[::ffff:192.168.0.1]:56324",
            "[2001:db8::11]:443",
        )
    };
    assert_eq!(decode_whole(&encode_v1(src, dst)), want(Version::V1));
    let v2 = encode_v2(Command::Proxy, Transport::Stream, src, dst);
    assert_eq!(&v2[12..16], &[0x21, 0x21, 0x00, 0x24]);
    assert_eq!(
        &v2[16..32],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 0, 1]
    );
    assert_eq!(decode_whole(&v2), want(Version::V2));
}

#[test]
fn round_trips() {
    let cases = [
        ("10.0.0.1:1234", "10.0.0.2:80"),
        ("0.0.0.0:0", "255.255.255.255:65535"),
        ("[2001:db8::1]:1234", "[::]:0"),
        ("[fe80::1:2:3:4]:9", "[::ffff:10.0.0.1]:10"),
    ];
    for (src, dst) in cases {
        for transport in [Transport::Stream, Transport::Datagram] {
            let bytes = encode(Version::V2, transport, sa(src), sa(dst));
            assert_eq!(
                decode_whole(&bytes),
                proxied(Version::V2, transport, src, dst)
            );
        }
        let bytes = encode(Version::V1, Transport::Stream, sa(src), sa(dst));
        assert_eq!(
            decode_whole(&bytes),
            proxied(Version::V1, Transport::Stream, src, dst)
        );
    }
}

#[test]
fn trailing_data_is_not_consumed() {
    for version in [Version::V1, Version::V2] {
        let mut bytes = encode(
            version,
            Transport::Stream,
            sa("1.2.3.4:5"),
            sa("6.7.8.9:10"),
        );
        let len = bytes.len();
        bytes.extend_from_slice(b"\r\n\r\nPROXY data");
        assert_eq!(decode(&bytes).unwrap().unwrap().1, len);
    }
}

#[test]
fn v2_tlvs_are_skipped() {
    let mut bytes = encode_v2(
        Command::Proxy,
        Transport::Stream,
        sa("1.2.3.4:5"),
        sa("6.7.8.9:10"),
    );
    // A PP2_TYPE_NOOP TLV of 3 value bytes and an ALPN TLV "h2".
    let tlvs = [0x04, 0x00, 0x03, 0, 0, 0, 0x01, 0x00, 0x02, b'h', b'2'];
    bytes.extend_from_slice(&tlvs);
    bytes[15] += tlvs.len() as u8;
    assert_eq!(
        decode_whole(&bytes),
        proxied(Version::V2, Transport::Stream, "1.2.3.4:5", "6.7.8.9:10")
    );
}

#[test]
fn v2_unspec_and_unix_carry_no_addresses() {
    for (fam, transport) in [
        (0x00, None),
        (0x01, Some(Transport::Stream)),
        (0x10, None),
        (0x31, Some(Transport::Stream)),
        (0x32, Some(Transport::Datagram)),
    ] {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x21, fam, 0x00, 0x04, 1, 2, 3, 4]);
        let want = Header {
            version: Version::V2,
            command: Command::Proxy,
            transport,
            addresses: None,
        };
        assert_eq!(decode_whole(&bytes), want, "family byte {fam:#x}");
    }
}

#[test]
fn v1_accepts_upper_case_hex_and_haproxy_mapped_text() {
    let h = decode_whole(b"PROXY TCP6 2001:DB8::A ::ffff:192.168.0.1 1 2\r\n");
    assert_eq!(
        h,
        proxied(
            Version::V1,
            Transport::Stream,
            "[2001:db8::a]:1",
            "[::ffff:c0a8:1]:2"
        )
    );
}

#[test]
fn version_names() {
    assert_eq!("v1".parse::<Version>(), Ok(Version::V1));
    assert_eq!("v2".parse::<Version>(), Ok(Version::V2));
    assert_eq!(Version::V1.to_string(), "v1");
    assert_eq!(Version::V2.to_string(), "v2");
    let err = "V2".parse::<Version>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown PROXY protocol version \"V2\" (expected \"v1\" or \"v2\")"
    );
}

// ---- rejects -------------------------------------------------------------------

fn reject(bytes: &[u8]) -> ProxyError {
    match decode(bytes) {
        Err(e) => e,
        other => panic!("{:?} decoded as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn rejects_what_is_not_a_header() {
    assert_eq!(reject(b"GET / HTTP/1.1\r\n"), ProxyError::NotProxy);
    assert_eq!(reject(b"proxy TCP4"), ProxyError::NotProxy);
    assert_eq!(reject(b"\r\n\r\n\0\r\nQUIX\n"), ProxyError::NotProxy);
    assert_eq!(reject(b"\r\n\r\n\x01"), ProxyError::NotProxy);
    assert_eq!(reject(b"PROXYTCP4"), ProxyError::V1Fields);
}

#[test]
fn rejects_v1_line_ends() {
    let e = ProxyError::V1LineEnd;
    assert_eq!(reject(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), e);
    assert_eq!(reject(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), e);
    assert_eq!(reject(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx"), e);
    assert_eq!(reject(b"PROXY UNKNOWN \n\r\n"), e);
    // A CR with nothing after it yet is a proper prefix, not an error.
    assert_eq!(decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), Ok(None));
}

#[test]
fn rejects_v1_over_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    long.extend_from_slice(b"\r\n"); // 108 bytes with the CRLF
    assert_eq!(reject(&long), ProxyError::V1TooLong);
    assert_eq!(reject(&long[..V1_MAX_LEN]), ProxyError::V1TooLong);
    assert_eq!(decode(&long[..V1_MAX_LEN - 1]), Ok(None));
}

#[test]
fn rejects_v1_fields() {
    let cases: &[(&[u8], ProxyError)] = &[
        (
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            ProxyError::V1Protocol("TCP5".into()),
        ),
        (
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            ProxyError::V1Protocol("tcp4".into()),
        ),
        (
            b"PROXY UNKNOWNX\r\n",
            ProxyError::V1Protocol("UNKNOWNX".into()),
        ),
        (b"PROXY \r\n", ProxyError::V1Protocol(String::new())),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyError::V1Fields),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            ProxyError::V1Fields,
        ),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Fields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", ProxyError::V1Fields),
        (
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            ProxyError::V1Protocol(String::new()),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.\xe9 1 2\r\n",
            ProxyError::V1NotAscii,
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(&reject(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn rejects_v1_addresses() {
    for (proto, src) in [
        ("TCP4", "192.168.00.1"),
        ("TCP4", "256.0.0.1"),
        ("TCP4", "1.2.3"),
        ("TCP4", "1.2.3.4.5"),
        ("TCP4", "+1.2.3.4"),
        ("TCP4", "::1"),
        ("TCP6", "1.2.3.4"),
        ("TCP6", "1:2:3:4:5:6:7:8:9"),
        ("TCP6", "00001::"),
        ("TCP6", "fe80::1%eth0"),
        ("TCP6", "1::2::3"),
    ] {
        let dst = if proto == "TCP4" { "5.6.7.8" } else { "::2" };
        let line = format!("PROXY {proto} {src} {dst} 1 2\r\n");
        match reject(line.as_bytes()) {
            ProxyError::V1Address { which, text, .. } => {
                assert_eq!((which, text.as_str()), ("source", src), "{line:?}");
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
}

#[test]
fn rejects_v1_ports() {
    for port in ["65536", "0443", "00", "-1", "+1", "", "1a", "99999999999"] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 1 {port}\r\n");
        let want = ProxyError::V1Port {
            which: "destination",
            text: port.into(),
        };
        assert_eq!(reject(line.as_bytes()), want, "{line:?}");
    }
    assert!(decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n")
        .unwrap()
        .is_some());
    let msg = reject(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").to_string();
    assert_eq!(
        msg,
        "PROXY v1: invalid source port \"01\" (decimal 0-65535 without leading zeros)"
    );
}

fn v2_with(ver_cmd: u8, fam: u8, len: u16) -> Vec<u8> {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.push(ver_cmd);
    bytes.push(fam);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

#[test]
fn rejects_v2_fixed_fields() {
    assert_eq!(reject(&v2_with(0x11, 0x11, 12)), ProxyError::V2Version(1));
    assert_eq!(reject(&v2_with(0x31, 0x11, 12)), ProxyError::V2Version(3));
    assert_eq!(reject(&v2_with(0x22, 0x11, 12)), ProxyError::V2Command(2));
    assert_eq!(reject(&v2_with(0x2f, 0x11, 12)), ProxyError::V2Command(15));
    assert_eq!(reject(&v2_with(0x21, 0x41, 12)), ProxyError::V2Family(4));
    assert_eq!(reject(&v2_with(0x21, 0x13, 12)), ProxyError::V2Transport(3));
    // The bad byte is reported as soon as it arrives.
    assert_eq!(
        reject(&v2_with(0x11, 0x11, 12)[..13]),
        ProxyError::V2Version(1)
    );
    assert_eq!(
        reject(&v2_with(0x21, 0x41, 12)[..14]),
        ProxyError::V2Family(4)
    );
}

#[test]
fn rejects_v2_truncated_lengths() {
    assert_eq!(
        reject(&v2_with(0x21, 0x11, 8)),
        ProxyError::V2Length {
            family: "AF_INET",
            need: 12,
            len: 8
        }
    );
    assert_eq!(
        reject(&v2_with(0x21, 0x22, 12)),
        ProxyError::V2Length {
            family: "AF_INET6",
            need: 36,
            len: 12
        }
    );
    assert_eq!(
        reject(&v2_with(0x21, 0x21, 0)).to_string(),
        "PROXY v2: length 0 is shorter than the 36 bytes of AF_INET6 addresses"
    );
    // A length longer than the bytes present is an incomplete header.
    let mut short = v2_with(0x21, 0x11, 20);
    short.extend_from_slice(&[0; 12]);
    assert_eq!(decode(&short), Ok(None));
}

// ---- properties ----------------------------------------------------------------

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    let group = prop_oneof![Just(0u16), Just(0xffffu16), any::<u16>()];
    let v6 = (prop::array::uniform8(group), any::<u16>()).prop_map(|(groups, port)| {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(groups), port, 0, 0))
    });
    prop_oneof![v4, v6]
}

fn any_transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Stream), Just(Transport::Datagram)]
}

fn any_version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

/// What [`encode`] must decode to: mixed families as IPv6, version 1 datagrams as
/// UNKNOWN.
fn expected(version: Version, transport: Transport, src: SocketAddr, dst: SocketAddr) -> Header {
    if version == Version::V1 && transport == Transport::Datagram {
        return V1_UNKNOWN;
    }
    let (src, dst) = match (src, dst) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => (src, dst),
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
                IpAddr::V6(_) => a,
            };
            (v6(src), v6(dst))
        }
    };
    Header {
        version,
        command: Command::Proxy,
        transport: Some(transport),
        addresses: Some(Addresses { src, dst }),
    }
}

proptest! {
    #[test]
    fn decode_inverts_encode(
        version in any_version(),
        transport in any_transport(),
        src in any_addr(),
        dst in any_addr(),
        tail in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let header = encode(version, transport, src, dst);
        let max_len = match version {
            Version::V1 => V1_MAX_LEN,
            Version::V2 => 16 + 36,
        };
        prop_assert!(header.len() <= max_len);
        for k in 0..header.len() {
            prop_assert_eq!(decode(&header[..k]), Ok(None));
        }
        let mut bytes = header.clone();
        bytes.extend_from_slice(&tail);
        let (got, used) = decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, header.len());
        prop_assert_eq!(got, expected(version, transport, src, dst));
    }

    #[test]
    fn decode_never_panics(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(b"PROXY ".to_vec()),
            Just(b"PROXY TCP4 ".to_vec()),
            Just(b"PROXY TCP6 ".to_vec()),
            Just(V2_SIGNATURE.to_vec()),
            Just([&V2_SIGNATURE[..], &[0x21]].concat()),
        ],
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let bytes = [prefix, body].concat();
        if let Ok(Some((_, used))) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
            // The header alone decodes the same way.
            prop_assert_eq!(decode(&bytes[..used]), decode(&bytes));
        }
    }

    #[test]
    fn decode_never_panics_on_near_headers(
        version in any_version(),
        src in any_addr(),
        dst in any_addr(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(version, Transport::Stream, src, dst);
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = decode(&bytes);
    }
}
