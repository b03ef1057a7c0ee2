//! Interface facts: index, MAC, up/running, and addresses of one family.
//!
//! Everything comes from `getifaddrs` (a netlink dump made by the calling
//! thread) and `if_nametoindex`, so the answers are those of the calling
//! thread's network namespace. "Up" means administratively up and running
//! (carrier), keepalived's `FLAGS_UP` test (`keepalived/include/vrrp_if.h`).

use std::net::IpAddr;

use nix::errno::Errno;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::{if_nametoindex, InterfaceFlags};

use crate::SysError;

/// One network interface as the VRRP driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// The hardware address (all zeros for links without one).
    pub mac: [u8; 6],
    /// `IFF_UP` and `IFF_RUNNING` (the link has carrier).
    pub up: bool,
}

/// The link-level entry of one interface: its flags and hardware address.
struct LinkEntry {
    flags: InterfaceFlags,
    mac: [u8; 6],
}

fn what_interface(name: &str) -> String {
    format!("interface {name}")
}

/// The `AF_PACKET` entry `getifaddrs` gives for `name`, if the link exists.
fn link_entry(name: &str) -> Result<Option<LinkEntry>, SysError> {
    let entries = getifaddrs().map_err(|e| SysError::io(what_interface(name), e))?;
    for entry in entries {
        if entry.interface_name != name {
            continue;
        }
        if let Some(link) = entry.address.as_ref().and_then(|a| a.as_link_addr()) {
            return Ok(Some(LinkEntry {
                flags: entry.flags,
                mac: link.addr().unwrap_or([0; 6]),
            }));
        }
    }
    Ok(None)
}

fn flags_up(flags: InterfaceFlags) -> bool {
    flags.contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING)
}

fn no_such_interface(name: &str) -> SysError {
    SysError::io(what_interface(name), Errno::ENODEV)
}

/// Reads the interface's index, MAC and up state; errors name the interface.
pub fn interface(name: &str) -> Result<Interface, SysError> {
    let index = if_nametoindex(name).map_err(|e| SysError::io(what_interface(name), e))?;
    let entry = link_entry(name)?.ok_or_else(|| no_such_interface(name))?;
    Ok(Interface {
        name: name.to_owned(),
        index,
        mac: entry.mac,
        up: flags_up(entry.flags),
    })
}

/// Whether the link is administratively up and has carrier. A missing
/// interface is down, not an error.
pub fn link_up(name: &str) -> Result<bool, SysError> {
    Ok(link_entry(name)?.is_some_and(|entry| flags_up(entry.flags)))
}

/// The interface's addresses of one family with their prefix lengths, in the
/// kernel's order (IPv4: primary first), IPv6 link-local ones moved first.
pub fn interface_addrs(name: &str, v6: bool) -> Result<Vec<(IpAddr, u8)>, SysError> {
    let entries = getifaddrs().map_err(|e| SysError::io(what_interface(name), e))?;
    let mut link_seen = false;
    let mut addrs = Vec::new();
    for entry in entries {
        if entry.interface_name != name {
            continue;
        }
        let Some(address) = entry.address.as_ref() else {
            continue;
        };
        if address.as_link_addr().is_some() {
            link_seen = true;
        } else if v6 {
            if let Some(sin6) = address.as_sockaddr_in6() {
                let prefix = entry
                    .netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in6())
                    .map_or(128, |m| prefix_len(&m.ip().octets()));
                addrs.push((IpAddr::V6(sin6.ip()), prefix));
            }
        } else if let Some(sin) = address.as_sockaddr_in() {
            let prefix = entry
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map_or(32, |m| prefix_len(&m.ip().octets()));
            addrs.push((IpAddr::V4(sin.ip()), prefix));
        }
    }
    if !link_seen && addrs.is_empty() {
        return Err(no_such_interface(name));
    }
    // Stable: link-local first, each group keeps the kernel's order.
    addrs.sort_by_key(|(addr, _)| !is_link_local(addr));
    Ok(addrs)
}

fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V6(a) => a.is_unicast_link_local(),
        IpAddr::V4(_) => false,
    }
}

/// The number of leading one bits of a netmask.
fn prefix_len(mask: &[u8]) -> u8 {
    let mut bits: u32 = 0;
    for byte in mask {
        bits += byte.leading_ones();
        if *byte != 0xff {
            break;
        }
    }
    u8::try_from(bits).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_len_counts_leading_ones() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), 24);
        assert_eq!(prefix_len(&[255, 255, 255, 255]), 32);
        assert_eq!(prefix_len(&[255, 255, 240, 0]), 20);
        assert_eq!(prefix_len(&[0, 0, 0, 0]), 0);
        let mut v6 = [0u8; 16];
        v6[..8].fill(0xff);
        assert_eq!(prefix_len(&v6), 64);
        assert_eq!(prefix_len(&[0xff; 16]), 128);
    }

    #[test]
    fn missing_interface_is_down_and_an_error_for_facts() {
        let name = "rvsnosuch0";
        assert!(!link_up(name).unwrap_or(true));
        let err = match interface(name) {
            Ok(found) => panic!("found {found:?}"),
            Err(e) => e,
        };
        assert!(err.to_string().contains(name), "{err}");
        assert!(interface_addrs(name, false).is_err());
    }
}
