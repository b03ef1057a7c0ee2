//! DNS_CHECK (keepalived/check/check_dns.c).
//!
//! One query over a connected UDP socket: a random id, flags with only RD set, one
//! question (`name`, `type`, class IN). Until connect_timeout after the start, replies
//! are read; a reply passes when it has the query's id, the QR bit and RCODE 0 —
//! keepalived checks nothing else (not the answer count, not the question). Replies
//! shorter than 8 bytes, with another id, or without QR are skipped (the 8 is
//! keepalived's: it compares against the size of a pointer, not of the 12-byte
//! header). A non-zero RCODE, a receive error (an ICMP error such as port
//! unreachable) or no reply in time fails.
//!
//! The name is encoded as keepalived does: labels split at dots, a trailing dot
//! allowed, "" and "." both meaning the root. Labels over 63 bytes and names over
//! 255 bytes fail the check (keepalived would send a malformed query).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use tokio::time::{timeout_at, Instant};

use super::{net, DnsProbe, Target};

/// keepalived's receive buffer (include/check_dns.h `DNS_BUFFER_SIZE`).
const BUFFER_SIZE: usize = 768;
/// keepalived's minimum reply size: `sizeof` a pointer on 64-bit hosts.
const MIN_REPLY: usize = 8;
const FLAG_QR: u16 = 0x8000;
const FLAG_RD: u16 = 0x0100;

pub(super) async fn check(probe: &DnsProbe, target: &Target) -> Result<(), String> {
    let deadline = Instant::now() + target.connect_timeout;
    let id = random_id();
    let query = query(id, probe)?;
    let socket = net::connect_udp(target).await?;
    match timeout_at(deadline, socket.send(&query)).await {
        Ok(Ok(sent)) if sent == query.len() => {}
        Ok(Ok(_)) => return Err("failed to write all of the datagram".to_owned()),
        Ok(Err(e)) => return Err(format!("failed to write socket: {e}")),
        Err(_) => return Err("write timeout to socket".to_owned()),
    }
    let mut buffer = [0u8; BUFFER_SIZE];
    loop {
        let len = match timeout_at(deadline, socket.recv(&mut buffer)).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) => return Err(format!("failed to read socket: {e}")),
            Err(_) => return Err("read timeout from socket".to_owned()),
        };
        let Some(reply) = buffer.get(..len).filter(|reply| reply.len() >= MIN_REPLY) else {
            continue;
        };
        let reply_id = u16::from_be_bytes([reply[0], reply[1]]);
        let flags = u16::from_be_bytes([reply[2], reply[3]]);
        if reply_id != id || flags & FLAG_QR == 0 {
            continue;
        }
        return match flags & 0x000f {
            0 => Ok(()),
            rcode => Err(format!("read error occurred (rcode = {rcode})")),
        };
    }
}

/// A query id keepalived would send: random (std's per-process random hasher keys,
/// so no extra dependency).
fn random_id() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or_default(),
    );
    (hasher.finish() & 0xffff) as u16
}

/// The query datagram (check_dns.c `dns_make_query`).
pub(super) fn query(id: u16, probe: &DnsProbe) -> Result<Vec<u8>, String> {
    let mut query = Vec::with_capacity(12 + probe.name.len() + 6);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&FLAG_RD.to_be_bytes());
    query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    let name = probe.name.strip_suffix('.').unwrap_or(&probe.name);
    if !name.is_empty() {
        for label in name.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|len| (1..=63).contains(len))
                .ok_or_else(|| {
                    format!(
                        "DNS name '{}' has a label of {} bytes",
                        probe.name,
                        label.len()
                    )
                })?;
            query.push(len);
            query.extend_from_slice(label.as_bytes());
        }
    }
    query.push(0);
    if query.len() - 12 > 255 {
        return Err(format!(
            "DNS name '{}' is longer than 255 bytes",
            probe.name
        ));
    }
    query.extend_from_slice(&probe.query_type.code().to_be_bytes());
    query.extend_from_slice(&1u16.to_be_bytes());
    Ok(query)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::probe::DnsType;

    fn question(name: &str) -> Vec<u8> {
        let probe = DnsProbe {
            query_type: DnsType::A,
            name: name.to_owned(),
        };
        query(0x1234, &probe).unwrap()[12..].to_vec()
    }

    #[test]
    fn names_encode_like_keepalived() {
        assert_eq!(
            question("example.com"),
            b"\x07example\x03com\x00\x00\x01\x00\x01"
        );
        assert_eq!(question("example.com."), question("example.com"));
        assert_eq!(question(""), b"\x00\x00\x01\x00\x01");
        assert_eq!(question("."), question(""));
        assert!(query(
            1,
            &DnsProbe {
                query_type: DnsType::A,
                name: "a..b".into()
            }
        )
        .is_err());
    }
}
