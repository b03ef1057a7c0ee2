//! PING_CHECK (keepalived/check/check_ping.c).
//!
//! One ICMP (or ICMPv6) echo request on an unprivileged ICMP datagram socket — the
//! kind keepalived itself opens — with a sequence number counting up per process and
//! 128 bytes of keepalived's filler; the kernel sets the identifier and checksum and
//! hands this socket only the replies to it. The first datagram received within
//! connect_timeout decides: an echo reply passes; anything else, a receive error or
//! silence fails. Like keepalived, PING_CHECK ignores bind and fwmark.
//!
//! Opening the socket needs root or a group in net.ipv4.ping_group_range (keepalived
//! widens that sysctl itself at start-up; a probe does not change system settings):
//! without it the check fails and says so.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::{net, Target};

/// keepalived's echo payload length (check_ping.c `ICMP_BUFSIZE`).
const PAYLOAD_LEN: usize = 128;
const ICMP_HEADER_LEN: usize = 8;

static SEQUENCE: AtomicU16 = AtomicU16::new(0);

pub(super) async fn check(target: &Target) -> Result<(), String> {
    let (domain, protocol, echo_request, echo_reply) = match target.address {
        SocketAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        SocketAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol)).map_err(|e| open_error(&e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the ICMP socket non-blocking: {e}"))?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| format!("cannot register the ICMP socket: {e}"))?;

    let mut request = vec![echo_request, 0, 0, 0, 0, 0];
    request.extend_from_slice(&SEQUENCE.fetch_add(1, Ordering::Relaxed).to_ne_bytes());
    request.extend_from_slice(&net::filler(PAYLOAD_LEN));
    let destination = SocketAddr::new(target.address.ip(), 0);
    socket
        .send_to(&request, destination)
        .await
        .map_err(|e| format!("send ICMP packet to {} failed: {e}", destination.ip()))?;

    let mut reply = [0u8; ICMP_HEADER_LEN + PAYLOAD_LEN];
    let len = match timeout(target.connect_timeout, socket.recv(&mut reply)).await {
        Ok(Ok(len)) => len,
        Ok(Err(e)) => return Err(format!("receive ICMP packet error: {e}")),
        Err(_) => return Err(format!("ICMP echo to {} timed out", destination.ip())),
    };
    if len < ICMP_HEADER_LEN {
        return Err(format!("short ICMP packet of {len} bytes"));
    }
    if reply[0] != echo_reply {
        return Err(format!("got ICMP packet with type {:#x}", reply[0]));
    }
    Ok(())
}

fn open_error(error: &io::Error) -> String {
    if matches!(error.kind(), io::ErrorKind::PermissionDenied) {
        format!(
            "cannot open an ICMP datagram socket: {error}; PING_CHECK needs root or a group \
             within net.ipv4.ping_group_range"
        )
    } else {
        format!("cannot open an ICMP datagram socket: {error}")
    }
}
