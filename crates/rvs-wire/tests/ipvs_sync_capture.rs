//! Real IPVS sync datagrams from Debian's 6.1 kernel (tests/ipvs_sync/*.hex, recorded by
//! tests/ipvs_sync/capture.sh in the ipvs-oracle guest, see its README.md): they decode,
//! with the set-up's syncid, addresses, ports, protocols, forwarding methods, states and
//! timeouts, and to the same connections the kernel's own sync backup listed
//! (capture-output.txt).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rvs_wire::ipvs_sync::*;

const V1: &str = include_str!("ipvs_sync/v1.hex");
const V0: &str = include_str!("ipvs_sync/v0.hex");
const OUTPUT: &str = include_str!("ipvs_sync/capture-output.txt");

/// One datagram per non-comment line.
fn datagrams(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// capture.sh's services: (protocol, vport) -> (dport, forwarding method).
fn service(protocol: u8, vport: u16) -> (u16, ForwardMethod) {
    match (protocol, vport) {
        (6, 80) => (8080, ForwardMethod::Masq),
        (6, 8000) => (8000, ForwardMethod::Masq),
        (6, 81) => (81, ForwardMethod::DirectRoute),
        (17, 53) => (5353, ForwardMethod::Masq),
        other => panic!("no such service in capture.sh: {other:?}"),
    }
}

/// Decodes every captured message of one version and checks each entry against the
/// set-up; returns the entries in order.
fn decode_all(text: &str, version: SyncVersion) -> Vec<SyncConn> {
    let messages = datagrams(text);
    assert!(!messages.is_empty());
    let mut conns = Vec::new();
    for bytes in messages {
        let (got_version, message) = decode_versioned(&bytes).unwrap();
        assert_eq!(got_version, version);
        assert_eq!(message.syncid, 42);
        assert!(bytes.len() <= usize::from(DEFAULT_SYNC_MAXLEN_V4));
        for conn in &message.conns {
            assert_eq!(conn.addrs.caddr(), "10.0.1.2".parse::<IpAddr>().unwrap());
            assert_eq!(conn.addrs.vaddr(), "10.0.1.100".parse::<IpAddr>().unwrap());
            assert_eq!(conn.addrs.daddr(), "10.0.2.2".parse::<IpAddr>().unwrap());
            let (dport, method) = service(conn.protocol, conn.vport);
            assert_eq!(conn.dport, dport);
            assert_eq!(conn.forward_method(), Some(method));
            assert!(
                state_name(conn.protocol, conn.flags, conn.state).is_some(),
                "{conn:?}"
            );
            assert_eq!(conn.fwmark, 0);
            assert!(
                conn.seq.is_none() && conn.pe_data.is_none() && conn.unknown_options.is_empty()
            );
            assert_eq!(
                conn.flags & (CONN_F_HASHED | CONN_F_ONE_PACKET),
                0,
                "never sent"
            );
            if conn.is_template() {
                // -p 60 on port 8000 only: the template has client port 0.
                assert_eq!((conn.protocol, conn.cport, conn.vport), (6, 0, 8000));
            } else {
                assert_ne!(conn.cport, 0);
            }
            if version == SyncVersion::V0 {
                assert_eq!(conn.timeout, 0, "v0 has no timeout");
            } else if conn.is_template() {
                assert_eq!(conn.timeout, 60, "the -p 60 persistence");
            } else {
                // the kernel's default timeouts for the state (ip_vs_proto_tcp.c, _udp.c)
                let expected = match state_name(conn.protocol, conn.flags, conn.state) {
                    Some("ESTABLISHED") => 900,
                    Some("FIN_WAIT") | Some("TIME_WAIT") => 120,
                    Some("CLOSE_WAIT") => 60,
                    Some("UDP") => 300,
                    other => panic!("unexpected state {other:?}"),
                };
                assert_eq!(conn.timeout, expected, "{conn:?}");
            }
        }
        conns.extend(message.conns);
    }
    conns
}

type Key = (&'static str, String, String, String);

fn key(conn: &SyncConn) -> Key {
    let protocol = if conn.protocol == 17 { "UDP" } else { "TCP" };
    (
        protocol,
        format!("{}:{}", conn.addrs.caddr(), conn.cport),
        format!("{}:{}", conn.addrs.vaddr(), conn.vport),
        format!("{}:{}", conn.addrs.daddr(), conn.dport),
    )
}

/// The sync backup's `ipvsadm -Lnc` at the end of capture.sh: key -> state name.
fn backup_table() -> BTreeMap<Key, String> {
    let start = OUTPUT.find("# backup's connection table").unwrap();
    OUTPUT[start..]
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.trim_start_matches('#').split_whitespace().collect();
            let protocol = match words.first() {
                Some(&"TCP") => "TCP",
                Some(&"UDP") => "UDP",
                _ => return None,
            };
            let key = (
                protocol,
                words[3].to_string(),
                words[4].to_string(),
                words[5].to_string(),
            );
            Some((key, words[2].to_string()))
        })
        .collect()
}

#[test]
fn captured_v1_messages_decode_to_the_set_up() {
    let conns = decode_all(V1, SyncVersion::V1);
    // TCP connections through each TCP service, a UDP one and the persistence template.
    let vports: BTreeSet<(u8, u16, bool)> = conns
        .iter()
        .map(|c| (c.protocol, c.vport, c.is_template()))
        .collect();
    let expected = [
        (6, 80, false),
        (6, 81, false),
        (6, 8000, false),
        (6, 8000, true),
        (17, 53, false),
    ];
    assert_eq!(vports, expected.into_iter().collect());
    // the UDP client's fixed source port of phase 1
    assert!(conns.iter().any(|c| c.protocol == 17 && c.cport == 40001));
    // and each one is re-encoded byte for byte by rvs
    for bytes in datagrams(V1) {
        let message = decode(&bytes).unwrap();
        assert_eq!(
            encode_v1(&message, DEFAULT_SYNC_MAXLEN_V4).unwrap(),
            vec![bytes]
        );
    }
}

#[test]
fn captured_v0_messages_decode_to_the_set_up() {
    let conns = decode_all(V0, SyncVersion::V0);
    assert!(conns.iter().any(|c| c.protocol == 17 && c.cport == 40002));
    assert!(conns.iter().any(|c| c.is_template()));
    assert!(conns
        .iter()
        .any(|c| c.forward_method() == Some(ForwardMethod::DirectRoute)));
    for bytes in datagrams(V0) {
        let message = decode(&bytes).unwrap();
        assert_eq!(
            encode_v0(&message, DEFAULT_SYNC_MAXLEN_V4).unwrap(),
            vec![bytes]
        );
    }
}

#[test]
fn captured_messages_hold_what_the_kernel_backup_listed() {
    let mut last_state = BTreeMap::new();
    for conn in decode_all(V1, SyncVersion::V1)
        .iter()
        .chain(&decode_all(V0, SyncVersion::V0))
    {
        let name = state_name(conn.protocol, conn.flags, conn.state).unwrap();
        last_state.insert(key(conn), (conn.is_template(), name));
    }
    let backup = backup_table();
    assert_eq!(
        last_state.keys().collect::<Vec<_>>(),
        backup.keys().collect::<Vec<_>>()
    );
    for (key, (is_template, name)) in &last_state {
        // Connections show the last state the master sent; a template's state is not
        // compared (its state on the backup is not only what sync carried).
        if !is_template {
            assert_eq!(backup[key], *name, "{key:?}");
        }
    }
}
