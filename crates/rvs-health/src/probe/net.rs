//! Socket setup shared by the probes, after keepalived/core/layer4.c
//! (`socket_bind_connect`, `udp_bind_connect`): set the fwmark, bind if asked, then
//! connect. Every error becomes a reason string that names the step.
//!
//! Not copied: keepalived's SO_LINGER of 5 s on TCP probe sockets. On Linux a
//! lingering close() blocks the closing thread even on a non-blocking socket, which
//! would stall a tokio worker against a black-holed peer; a probe's socket is dropped
//! with a normal close instead.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::Target;

/// Creates a socket of `kind` for the target's address family with the target's
/// fwmark set and bound to the target's `bind` address, if any.
fn prepared_socket(target: &Target, kind: Type, protocol: Protocol) -> Result<Socket, String> {
    let socket = Socket::new(Domain::for_address(target.address), kind, Some(protocol))
        .map_err(|e| format!("cannot create socket: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make socket non-blocking: {e}"))?;
    if let Some(mark) = target.fwmark {
        socket.set_mark(mark).map_err(|e| mark_error(mark, &e))?;
    }
    if let Some(bind) = target.bind {
        socket
            .bind(&bind.into())
            .map_err(|e| format!("checker bind to {bind} failed: {e}"))?;
    }
    Ok(socket)
}

/// The reason for a failed SO_MARK, naming the privilege it needs.
fn mark_error(mark: u32, error: &io::Error) -> String {
    if error.kind() == io::ErrorKind::PermissionDenied {
        format!("setting fwmark {mark} (SO_MARK) needs CAP_NET_ADMIN: {error}")
    } else {
        format!("setting fwmark {mark} (SO_MARK) failed: {error}")
    }
}

/// Connects a TCP stream to the target within `timeout`.
pub(super) async fn connect_tcp(target: &Target, timeout: Duration) -> Result<TcpStream, String> {
    let socket = prepared_socket(target, Type::STREAM, Protocol::TCP)?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    match tokio::time::timeout(timeout, socket.connect(target.address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connection to {} failed: {e}", target.address)),
        Err(_) => Err(format!("connection to {} timed out", target.address)),
    }
}

/// A UDP socket connected to the target, with IP(V6)_RECVERR set so that ICMP errors
/// (not only port unreachable) are reported on receive, as keepalived's
/// `udp_bind_connect` asks for.
pub(super) async fn connect_udp(target: &Target) -> Result<UdpSocket, String> {
    let socket = prepared_socket(target, Type::DGRAM, Protocol::UDP)?;
    // Best effort, as in keepalived: a failure here is only logged there.
    let _ = match target.address {
        SocketAddr::V4(_) => {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        }
        SocketAddr::V6(_) => {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6RecvErr, &true)
        }
    };
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| format!("cannot register UDP socket: {e}"))?;
    socket
        .connect(target.address)
        .await
        .map_err(|e| format!("UDP connect to {} failed: {e}", target.address))?;
    Ok(socket)
}

/// Fills `len` bytes with keepalived's filler "keepalived check - " repeated
/// (keepalived/core/layer4.c `set_buf`), used where no payload is configured.
pub(super) fn filler(len: usize) -> Vec<u8> {
    b"keepalived check - "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}
