//! Virtual addresses over rtnetlink: what `ip addr add/del/show` does.
//!
//! Invariants: add and del are idempotent (EEXIST on add and EADDRNOTAVAIL on
//! del are success), IPv6 addresses are added with `IFA_F_NODAD` so a VIP is
//! usable at once (keepalived does the same, `keepalived/vrrp/vrrp_ipaddress.c`),
//! and labels are IPv4 only (IPv6 has no address labels). The netlink socket
//! is opened by the thread calling [`Addresses::new`], so it acts in that
//! thread's network namespace.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::SysError;

/// A handle on the kernel's interface addresses; cheap to share by reference.
#[derive(Debug, Clone)]
pub struct Addresses {
    handle: Handle,
}

impl Addresses {
    /// Opens the netlink connection and spawns its task on the current tokio
    /// runtime.
    pub fn new() -> Result<Addresses, SysError> {
        let what = "opening the rtnetlink connection";
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SysError::io(what, std::io::Error::other(e)))?;
        let _guard = runtime.enter();
        let (connection, handle, _events) =
            rtnetlink::new_connection().map_err(|e| SysError::io(what, e))?;
        runtime.spawn(connection);
        Ok(Addresses { handle })
    }

    /// Adds `addr/prefix` to `ifindex`, with an optional IPv4 label. Already
    /// present is success.
    pub async fn add(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), SysError> {
        let what = || format!("adding {addr}/{prefix} to ifindex {ifindex}");
        check_prefix(addr, prefix).map_err(|why| SysError::invalid(what(), why))?;
        let mut request = self.handle.address().add(ifindex, addr, prefix);
        let message = request.message_mut();
        match (addr, label) {
            (IpAddr::V4(_), Some(label)) => {
                message
                    .attributes
                    .push(AddressAttribute::Label(label.to_owned()));
            }
            (IpAddr::V4(_), None) => {}
            (IpAddr::V6(_), Some(_)) => {
                return Err(SysError::invalid(what(), "address labels are IPv4 only"));
            }
            (IpAddr::V6(_), None) => {
                message.header.flags |= AddressHeaderFlags::Nodad;
                message
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(source) => Err(SysError::Netlink {
                what: what(),
                source,
            }),
        }
    }

    /// Removes `addr/prefix` from `ifindex`. Not present is success.
    pub async fn del(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<(), SysError> {
        let what = || format!("deleting {addr}/{prefix} from ifindex {ifindex}");
        check_prefix(addr, prefix).map_err(|why| SysError::invalid(what(), why))?;
        let message = address_message(ifindex, addr, prefix);
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(source) => Err(SysError::Netlink {
                what: what(),
                source,
            }),
        }
    }

    /// The addresses on `ifindex` (both families) with their prefix lengths.
    pub async fn list(&self, ifindex: u32) -> Result<Vec<(IpAddr, u8)>, SysError> {
        let what = || format!("listing the addresses of ifindex {ifindex}");
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut addrs = Vec::new();
        while let Some(message) = dump.try_next().await.map_err(|source| SysError::Netlink {
            what: what(),
            source,
        })? {
            if let Some(addr) = local_address(&message) {
                addrs.push((addr, message.header.prefix_len));
            }
        }
        Ok(addrs)
    }
}

fn address_message(ifindex: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(ifindex)
            .address(a, prefix)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(ifindex)
            .address(a, prefix)
            .build(),
    }
}

/// IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on
/// point-to-point links); IPv6 dumps carry IFA_LOCAL only when there is a peer.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

fn check_prefix(addr: IpAddr, prefix: u8) -> Result<(), &'static str> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        Err("prefix length too long for the address family")
    } else {
        Ok(())
    }
}

/// The errno of a netlink NACK (the kernel sends it negated).
fn netlink_errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_longer_than_the_family_are_refused() {
        let v4: IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 1).into();
        let v6: IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
        assert!(check_prefix(v4, 32).is_ok());
        assert!(check_prefix(v4, 33).is_err());
        assert!(check_prefix(v6, 128).is_ok());
        assert!(check_prefix(v6, 129).is_err());
    }

    #[test]
    fn local_address_prefers_ifa_local_over_the_peer() {
        let local: IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 1).into();
        let peer: IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 2).into();
        let mut message = AddressMessage::default();
        message.attributes.push(AddressAttribute::Address(peer));
        message.attributes.push(AddressAttribute::Local(local));
        assert_eq!(local_address(&message), Some(local));
        message.attributes.clear();
        message.attributes.push(AddressAttribute::Address(peer));
        assert_eq!(local_address(&message), Some(peer));
    }
}
