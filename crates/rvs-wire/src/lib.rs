//! `rvs-wire` owns the byte formats rvs writes to, or reads from, the network without
//! being the application behind them:
//! - the HAProxy PROXY protocol ([`proxy_protocol`]), the header rvs's socket plane puts
//!   in front of a relayed connection so that the real server learns the client's
//!   address;
//! - VRRP advertisements, versions 2 and 3 ([`vrrp`]), for failover between directors,
//!   with a minimal IPv4 header view ([`ipv4`]) for what a raw socket hands back;
//! - the frames a new VRRP master sends to move a virtual address to its MAC: the
//!   gratuitous ARP ([`arp`]) and the unsolicited IPv6 Neighbor Advertisement
//!   ([`ndisc`]), built as keepalived builds them;
//! - the Internet checksum and pseudo-headers these share ([`checksum`]);
//! - the IPVS connection-sync messages, versions 1 and 0 ([`ipvs_sync`]), that directors
//!   multicast to each other, compatible with the Linux kernel's sync daemon;
//! - the ICMP "port unreachable" a director answers a refused new connection with
//!   ([`icmp`]).
//!
//! Invariants: everything here is pure (no I/O, no clock, no global state), and no
//! function panics on any input bytes.

#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod ipvs_sync;
pub mod ndisc;
pub mod proxy_protocol;
pub mod vrrp;
