//! Raw IP protocol 112 (VRRP) sockets, one per interface and family.
//!
//! Invariants: the socket is bound to its interface (`SO_BINDTODEVICE`), sends
//! with TTL / hop limit 255 (RFC 5798 section 5.1.1.3 and 5.1.2.3: receivers
//! drop anything else), does not loop its own multicast back, and never asks
//! the kernel for the IPv6 checksum (the caller computes and verifies the VRRP
//! checksum over the pseudo-header, RFC 5798 section 5.2.8). The source address
//! of every packet is chosen explicitly with `IP_PKTINFO` / `IPV6_PKTINFO`.
//! Receiving an IPv4 packet yields the whole datagram (the kernel keeps the
//! header on raw IPv4 sockets); IPv6 yields the payload and the addresses come
//! from the control data.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::cmsg_space;
use nix::sys::socket::{
    recv, recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::SysError;

// The protocol number, groups and TTL are rvs-wire's (RFC 5798 section 5.1).
const IPPROTO_VRRP: i32 = rvs_wire::vrrp::IPPROTO_VRRP as i32;
const VRRP_GROUP_V4: Ipv4Addr = rvs_wire::vrrp::VRRP_MCAST_V4;
const VRRP_GROUP_V6: Ipv6Addr = rvs_wire::vrrp::VRRP_MCAST_V6;
const VRRP_TTL: u32 = rvs_wire::vrrp::VRRP_TTL as u32;

/// A raw `IPPROTO_VRRP` socket on one interface and family, non-blocking and
/// registered with tokio.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifname: String,
    ifindex: u32,
    v6: bool,
}

/// What [`VrrpSocket::recv`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer (IPv4: the whole datagram; IPv6: the VRRP
    /// payload). A datagram longer than the buffer is cut to the buffer.
    pub len: usize,
    pub src: IpAddr,
    /// The destination address; unspecified when the kernel did not say.
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) as received; `None` when unknown.
    pub hop_limit: Option<u8>,
}

impl VrrpSocket {
    /// Opens the socket on `ifname` / `ifindex` for IPv4 or IPv6, joining the
    /// VRRP multicast group on that interface when `join_multicast`.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        v6: bool,
        join_multicast: bool,
    ) -> Result<VrrpSocket, SysError> {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let what = |step: &str| format!("VRRP {family} socket on {ifname}: {step}");
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SysError::io(what("needs a tokio runtime"), io::Error::other(e)))?;
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
            .map_err(|e| SysError::io(what("socket"), e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| SysError::io(what("O_NONBLOCK"), e))?;
        socket
            .bind_device(Some(ifname.as_bytes()))
            .map_err(|e| SysError::io(what("SO_BINDTODEVICE"), e))?;
        if v6 {
            socket
                .set_multicast_if_v6(ifindex)
                .map_err(|e| SysError::io(what("IPV6_MULTICAST_IF"), e))?;
            socket
                .set_multicast_hops_v6(VRRP_TTL)
                .map_err(|e| SysError::io(what("IPV6_MULTICAST_HOPS"), e))?;
            socket
                .set_unicast_hops_v6(VRRP_TTL)
                .map_err(|e| SysError::io(what("IPV6_UNICAST_HOPS"), e))?;
            socket
                .set_multicast_loop_v6(false)
                .map_err(|e| SysError::io(what("IPV6_MULTICAST_LOOP"), e))?;
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                .map_err(|e| SysError::io(what("IPV6_RECVPKTINFO"), e))?;
            setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)
                .map_err(|e| SysError::io(what("IPV6_RECVHOPLIMIT"), e))?;
            if join_multicast {
                socket
                    .join_multicast_v6(&VRRP_GROUP_V6, ifindex)
                    .map_err(|e| SysError::io(what("IPV6_JOIN_GROUP ff02::12"), e))?;
            }
        } else {
            set_multicast_if_index(&socket, ifindex)
                .map_err(|e| SysError::io(what("IP_MULTICAST_IF"), e))?;
            socket
                .set_multicast_ttl_v4(VRRP_TTL)
                .map_err(|e| SysError::io(what("IP_MULTICAST_TTL"), e))?;
            socket
                .set_ttl_v4(VRRP_TTL)
                .map_err(|e| SysError::io(what("IP_TTL"), e))?;
            socket
                .set_multicast_loop_v4(false)
                .map_err(|e| SysError::io(what("IP_MULTICAST_LOOP"), e))?;
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
                .map_err(|e| SysError::io(what("IP_PKTINFO"), e))?;
            if join_multicast {
                socket
                    .join_multicast_v4_n(&VRRP_GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))
                    .map_err(|e| SysError::io(what("IP_ADD_MEMBERSHIP 224.0.0.18"), e))?;
            }
        }
        let _guard = runtime.enter();
        #[allow(unsafe_code)]
        // SAFETY: socket2::Socket owns its file descriptor: it is open now,
        // stays open and names the same socket until the Socket is dropped,
        // which happens only when the AsyncFd itself is dropped.
        let registered = unsafe { AsyncFd::register(socket) };
        let fd =
            registered.map_err(|e| SysError::io(what("tokio registration"), e.into_parts().1))?;
        Ok(VrrpSocket {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            v6,
        })
    }

    /// Receives one packet into `buf` (see [`Received`] for what lands there).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<Received, SysError> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| SysError::io(self.what("waiting to receive"), e))?;
            let raw = guard.get_inner().as_raw_fd();
            let v6 = self.v6;
            let buf = &mut *buf;
            match guard.try_io(|_| {
                if v6 {
                    recv_v6(raw, buf)
                } else {
                    recv_v4(raw, buf)
                }
            }) {
                Ok(result) => return result.map_err(|e| SysError::io(self.what("recvmsg"), e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `payload` from `src` to `dst`, forcing `src` as the source address.
    pub async fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Result<(), SysError> {
        let what = || format!("{} {src} -> {dst}", self.what("sendmsg"));
        let destination = match (self.v6, src, dst) {
            (false, IpAddr::V4(src), IpAddr::V4(dst)) => Destination::V4 { src, dst },
            (true, IpAddr::V6(src), IpAddr::V6(dst)) => Destination::V6 { src, dst },
            _ => {
                return Err(SysError::invalid(
                    what(),
                    "address family does not match the socket",
                ))
            }
        };
        let ifindex = self.ifindex;
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| SysError::io(what(), e))?;
            let raw = guard.get_inner().as_raw_fd();
            match guard.try_io(|_| send_to(raw, ifindex, destination, payload)) {
                Ok(Ok(sent)) if sent == payload.len() => return Ok(()),
                Ok(Ok(sent)) => {
                    let short = format!("sent {sent} of {} bytes", payload.len());
                    return Err(SysError::io(what(), io::Error::other(short)));
                }
                Ok(Err(e)) => return Err(SysError::io(what(), e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn what(&self, step: &str) -> String {
        let family = if self.v6 { "IPv6" } else { "IPv4" };
        format!("VRRP {family} socket on {}: {step}", self.ifname)
    }
}

#[derive(Debug, Clone, Copy)]
enum Destination {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

fn send_to(
    raw: RawFd,
    ifindex: u32,
    destination: Destination,
    payload: &[u8],
) -> io::Result<usize> {
    let iov = [IoSlice::new(payload)];
    match destination {
        Destination::V4 { src, dst } => {
            let info = libc::in_pktinfo {
                ipi_ifindex: i32::try_from(ifindex).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "ifindex too large")
                })?,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(src.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
            Ok(sendmsg(raw, &iov, &cmsgs, MsgFlags::empty(), Some(&to))?)
        }
        Destination::V6 { src, dst } => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            let scope = if needs_scope_id(&dst) { ifindex } else { 0 };
            let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
            let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
            Ok(sendmsg(raw, &iov, &cmsgs, MsgFlags::empty(), Some(&to))?)
        }
    }
}

/// Link-local unicast and interface/link-local scoped multicast destinations
/// only mean something with an interface attached.
fn needs_scope_id(dst: &Ipv6Addr) -> bool {
    let first = dst.segments()[0];
    dst.is_unicast_link_local() || (dst.is_multicast() && first & 0x000f <= 2)
}

fn recv_v4(raw: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let len = recv(raw, buf, MsgFlags::empty())?.min(buf.len());
    let (src, dst, hop_limit) = ipv4_header_facts(buf.get(..len).unwrap_or_default());
    Ok(Received {
        len,
        src,
        dst,
        hop_limit,
    })
}

/// Source, destination and TTL of an IPv4 datagram, read by rvs-wire's header
/// parser; unspecified / `None` when it is not a whole IPv4 datagram.
fn ipv4_header_facts(datagram: &[u8]) -> (IpAddr, IpAddr, Option<u8>) {
    match rvs_wire::ipv4::parse_ipv4(datagram) {
        Ok((h, _)) => (IpAddr::V4(h.src), IpAddr::V4(h.dst), Some(h.ttl)),
        Err(_) => {
            let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            (unspecified, unspecified, None)
        }
    }
}

fn recv_v6(raw: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(raw, &mut iov, Some(&mut control), MsgFlags::empty())?;
    let src = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut hop_limit = None;
    // Truncated control data (MSG_CTRUNC) reads as "missing".
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            match cmsg {
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                }
                ControlMessageOwned::Ipv6HopLimit(hops) => hop_limit = u8::try_from(hops).ok(),
                _ => {}
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        hop_limit,
    })
}

/// `setsockopt(IP_MULTICAST_IF)` naming the interface by index (`ip_mreqn`),
/// so multicast leaves through it whatever addresses it has.
fn set_multicast_if_index(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex too large"))?,
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::ip_mreqn>())
        .map_err(|_| io::Error::other("ip_mreqn size"))?;
    #[allow(unsafe_code)]
    // SAFETY: `request` is a fully initialised ip_mreqn living across the call,
    // `len` is its exact size, and the fd is owned by `socket` for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            std::ptr::from_ref(&request).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_facts_reads_addresses_and_ttl() {
        let mut header = [0u8; 20];
        header[0] = 0x45;
        header[3] = 20; // total length: the header alone
        header[8] = 255;
        header[12..16].copy_from_slice(&[10, 0, 0, 1]);
        header[16..20].copy_from_slice(&[224, 0, 0, 18]);
        assert_eq!(
            ipv4_header_facts(&header),
            (
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V4(VRRP_GROUP_V4),
                Some(255)
            )
        );
    }

    #[test]
    fn ipv4_header_facts_survives_odd_input() {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        for packet in [&[][..], &[0x45; 19][..], &[0x65; 40][..]] {
            assert_eq!(
                ipv4_header_facts(packet),
                (unspecified, unspecified, None),
                "{packet:?}"
            );
        }
    }

    #[test]
    fn scope_ids_go_to_link_scoped_destinations_only() {
        assert!(needs_scope_id(&VRRP_GROUP_V6));
        assert!(needs_scope_id(
            &"fe80::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
        ));
        assert!(!needs_scope_id(
            &"2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST)
        ));
        assert!(!needs_scope_id(&"ff05::2".parse().unwrap_or(VRRP_GROUP_V6)));
    }
}
