//! rvs-sys: the small system edge of rvsd's VRRP driver and XDP packet plane.
//!
//! It owns the few kernel interfaces those need and nothing else:
//! - [`VrrpSocket`]: raw IP protocol 112 sockets (IPv4 and IPv6) bound to one
//!   interface, registered with tokio;
//! - [`FrameSender`]: whole Ethernet frames on one interface over `AF_PACKET`
//!   (gratuitous ARP, unsolicited neighbour advertisements);
//! - [`Addresses`]: virtual addresses over rtnetlink (`ip addr add/del/show`);
//! - [`interface`], [`link_up`], [`interface_addrs`]: interface facts;
//! - [`netns::enter`]: moving the calling thread into a named network namespace;
//! - [`next_hop`]: route, egress interface and neighbour MAC towards an
//!   address (for the XDP packet plane's Ethernet headers);
//! - [`missing_capabilities`]: which needed capabilities the process lacks;
//! - [`XskSocket`]: an AF_XDP socket in copy mode (the packet plane's
//!   benchmark compares it with the ring buffer upcall).
//!
//! Every fact is read through a socket or netlink request made by the calling
//! thread, so all of it follows the thread's network namespace (sysfs would
//! not: `/sys/class/net` shows the namespace of whoever mounted `/sys`).
//!
//! This is the only crate of the workspace allowed `unsafe` (its lints deny it;
//! each block opts in with `#[allow(unsafe_code)]` and a `// SAFETY:` note).
//! The unsafe blocks:
//! 1. `vrrp_socket::set_multicast_if_index`: `setsockopt(IP_MULTICAST_IF)` with
//!    a `struct ip_mreqn` naming the interface by index (neither nix nor
//!    socket2 offers the ifindex form).
//! 2. `frame::link_layer_address`: writes a `sockaddr_ll` into socket2's
//!    sockaddr storage and wraps it as a `SockAddr` for `sendto` (no safe
//!    constructor exists for link-layer addresses).
//! 3. `VrrpSocket::open`: registers the socket with tokio through
//!    `AsyncFd::register`, which is unsafe since tokio 1.54 because the fd must
//!    stay open for the registration's life (socket2's `Socket` owns it).
//! 4. `xsk`: the AF_XDP socket's system calls (`socket`, `setsockopt`,
//!    `getsockopt`, `bind`, `sendto` with structs of `if_xdp.h`; no safe
//!    wrapper exists), `mmap`/`munmap` of its UMEM and rings, and access to
//!    the rings' shared indices (atomics) and entries inside those mappings.
//! 5. `bpf::map_update_batch`: the `bpf(2)` system call for
//!    `BPF_MAP_UPDATE_BATCH` (aya has no batch operations).

mod addresses;
pub mod bpf;
mod caps;
mod error;
mod frame;
mod iface;
pub mod netns;
mod nexthop;
mod vrrp_socket;
mod xsk;

pub use addresses::Addresses;
pub use caps::{missing_capabilities, Capability};
pub use error::SysError;
pub use frame::FrameSender;
pub use iface::{interface, interface_addrs, link_up, Interface};
pub use nexthop::{next_hop, refresh_next_hops, HopRefresh, NextHop};
pub use vrrp_socket::{Received, VrrpSocket};
pub use xsk::{XskCounters, XskSocket, XSK_FRAME_SIZE};
