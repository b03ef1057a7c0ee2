//! Whole Ethernet frames out of one interface over `AF_PACKET` (`SOCK_RAW`):
//! gratuitous ARP and unsolicited neighbour advertisements for VIPs
//! (RFC 5798 section 6.4.2). The socket never receives (protocol 0), and each
//! frame goes to the interface with a `sockaddr_ll` carrying the frame's own
//! destination MAC and EtherType.

use std::io;

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

use crate::SysError;

/// Destination MAC (6) + source MAC (6) + EtherType (2).
const ETHERNET_HEADER_LEN: usize = 14;

/// Sends whole Ethernet frames on one interface.
#[derive(Debug)]
pub struct FrameSender {
    socket: Socket,
    ifindex: u32,
}

impl FrameSender {
    /// Opens an `AF_PACKET` raw socket for sending on `ifindex`.
    pub fn open(ifindex: u32) -> Result<FrameSender, SysError> {
        let what = || format!("AF_PACKET socket for ifindex {ifindex}");
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, None).map_err(|e| SysError::io(what(), e))?;
        // Bound to the interface with protocol 0 (it still receives nothing),
        // so that `send_many` needs no per-frame address.
        let index =
            i32::try_from(ifindex).map_err(|_| SysError::invalid(what(), "ifindex too large"))?;
        socket
            .bind(&link_layer_address(index, 0, [0; 6]))
            .map_err(|e| SysError::io(what(), e))?;
        Ok(FrameSender { socket, ifindex })
    }

    /// Sends one frame (Ethernet header included) out of the interface.
    pub fn send(&self, frame: &[u8]) -> Result<(), SysError> {
        let what = || {
            format!(
                "sending a {}-byte frame on ifindex {}",
                frame.len(),
                self.ifindex
            )
        };
        let Some(header) = frame.get(..ETHERNET_HEADER_LEN) else {
            return Err(SysError::invalid(what(), "shorter than an Ethernet header"));
        };
        let ifindex = i32::try_from(self.ifindex)
            .map_err(|_| SysError::invalid(what(), "ifindex too large"))?;
        let mut dst_mac = [0u8; 6];
        dst_mac.copy_from_slice(&header[..6]);
        // The EtherType is in network byte order already, as sockaddr_ll wants it.
        let protocol = u16::from_ne_bytes([header[12], header[13]]);
        let address = link_layer_address(ifindex, protocol, dst_mac);
        let sent = self
            .socket
            .send_to(frame, &address)
            .map_err(|e| SysError::io(what(), e))?;
        if sent != frame.len() {
            let short = format!("sent {sent} of {} bytes", frame.len());
            return Err(SysError::io(what(), io::Error::other(short)));
        }
        Ok(())
    }
}

impl FrameSender {
    /// Sends whole frames out of the interface with one `sendmmsg(2)`; the
    /// kernel takes each frame's EtherType from its header. Returns how many
    /// were sent (the kernel stops at the first frame it cannot send).
    pub fn send_many(&self, frames: &[Vec<u8>]) -> Result<usize, SysError> {
        use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        let what = || {
            format!(
                "sending {} frames on ifindex {}",
                frames.len(),
                self.ifindex
            )
        };
        if frames.is_empty() {
            return Ok(0);
        }
        if frames.iter().any(|f| f.len() < ETHERNET_HEADER_LEN) {
            return Err(SysError::invalid(
                what(),
                "a frame is shorter than an Ethernet header",
            ));
        }
        let slices: Vec<[IoSlice<'_>; 1]> = frames.iter().map(|f| [IoSlice::new(f)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = vec![None; frames.len()];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(frames.len(), None);
        let sent = sendmmsg(
            self.socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map_err(|e| SysError::io(what(), e))?;
        Ok(sent.count())
    }
}

/// A `sockaddr_ll` for `sendto` on a packet socket: the interface, the
/// EtherType (network byte order) and the destination hardware address.
fn link_layer_address(ifindex: i32, protocol_be: u16, dst_mac: [u8; 6]) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    let len = std::mem::size_of::<libc::sockaddr_ll>();
    #[allow(unsafe_code)]
    // SAFETY: SockAddrStorage is a sockaddr_storage, large and aligned enough
    // for a sockaddr_ll, and all-zero bytes are a valid sockaddr_ll; the length
    // given to SockAddr::new is exactly the sockaddr_ll written (it fits in a
    // socklen_t, being a few dozen bytes).
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
        ll.sll_protocol = protocol_be;
        ll.sll_ifindex = ifindex;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&dst_mac);
        SockAddr::new(storage, len as libc::socklen_t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_layer_address_is_an_af_packet_address_of_its_size() {
        let address = link_layer_address(7, 0x0608, [0xff; 6]);
        assert_eq!(address.family(), libc::AF_PACKET as libc::sa_family_t);
        assert_eq!(
            address.len() as usize,
            std::mem::size_of::<libc::sockaddr_ll>()
        );
    }

    #[test]
    fn short_frames_are_refused_before_the_kernel() {
        // ifindex 0 is never a real interface, so this cannot send anything.
        let Ok(sender) = FrameSender::open(0) else {
            eprintln!("SKIP: short_frames_are_refused_before_the_kernel needs root");
            return;
        };
        let err = sender.send(&[0u8; 13]).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("shorter than an Ethernet header")),
            "a 13-byte frame must be refused"
        );
    }
}
