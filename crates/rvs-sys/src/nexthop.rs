//! The next hop towards an address, as the XDP packet plane needs it to write
//! Ethernet headers itself: the egress interface, the gateway (if the route
//! has one), the neighbour's MAC address and the interface's own MAC.
//!
//! The route comes from the kernel's own lookup (`RTM_GETROUTE` for the
//! address, what `ip route get ADDR` does) and the MAC from the neighbour
//! table (`ip neigh show`). An entry that is not usable yet is resolved the
//! way any sender would: one UDP datagram to the discard port (9) makes the
//! kernel send ARP or neighbour solicitation; then the table is polled.
//!
//! Everything follows the network namespace of the thread that polls the
//! future (netlink and UDP sockets are opened there): in namespaced code, run
//! it on a current-thread runtime.

use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::net::if_::if_indextoname;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::{interface, SysError};

/// How often the neighbour table is read while resolution is under way.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long resolution may take before [`SysError::NoNeighbour`].
const RESOLVE_FOR: Duration = Duration::from_secs(1);
/// The discard port: the datagram only exists to trigger resolution.
const DISCARD_PORT: u16 = 9;

/// Where packets for an address leave this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub ifname: String,
    /// The route's gateway; `None` when the address is on the link.
    pub gateway: Option<IpAddr>,
    /// The MAC address of the gateway, or of the address itself when on-link.
    pub dmac: [u8; 6],
    /// The egress interface's MAC address.
    pub smac: [u8; 6],
}

/// The netlink connection's task, stopped when the lookup is over.
struct Connection {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn open_connection() -> Result<Connection, SysError> {
    let what = "opening the rtnetlink connection";
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| SysError::io(what, std::io::Error::other(e)))?;
    let (connection, handle, _events) =
        rtnetlink::new_connection().map_err(|e| SysError::io(what, e))?;
    let task = runtime.spawn(connection);
    Ok(Connection { handle, task })
}

/// Finds the next hop towards `addr`: the route, then the neighbour entry of
/// the gateway (or of `addr` when it is on-link), resolving it if needed for
/// up to one second.
pub async fn next_hop(addr: IpAddr) -> Result<NextHop, SysError> {
    let connection = open_connection()?;
    let handle = &connection.handle;
    let (ifindex, gateway) = route_to(handle, addr).await?;
    let ifname = if_indextoname(ifindex)
        .map_err(|e| SysError::io(format!("naming ifindex {ifindex} (route to {addr})"), e))?
        .to_string_lossy()
        .into_owned();
    let smac = interface(&ifname)?.mac;
    let hop = gateway.unwrap_or(addr);

    let started = Instant::now();
    let mut poked = false;
    let dmac = loop {
        if let Some(mac) = neighbour_mac(handle, ifindex, hop).await? {
            break mac;
        }
        let waited = started.elapsed();
        if waited >= RESOLVE_FOR {
            return Err(SysError::NoNeighbour {
                addr,
                hop,
                ifname,
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if !poked {
            trigger_resolution(hop, ifindex);
            poked = true;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    Ok(NextHop {
        ifindex,
        ifname,
        gateway,
        dmac,
        smac,
    })
}

/// The kernel's route for `addr`: egress ifindex and gateway.
async fn route_to(handle: &Handle, addr: IpAddr) -> Result<(u32, Option<IpAddr>), SysError> {
    let what = || format!("looking up the route to {addr}");
    let full_length = if addr.is_ipv4() { 32 } else { 128 };
    let message = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, full_length)
        .map_err(|e| SysError::invalid(what(), &e.to_string()))?
        .build();
    let mut replies = handle.route().get(message).execute();
    let route = match replies.try_next().await {
        Ok(Some(route)) => route,
        Ok(None) => {
            return Err(SysError::NoRoute {
                addr,
                why: "the kernel answered with no route".into(),
            })
        }
        Err(rtnetlink::Error::NetlinkError(msg)) => {
            let errno = msg.raw_code().abs();
            return Err(SysError::NoRoute {
                addr,
                why: std::io::Error::from_raw_os_error(errno).to_string(),
            });
        }
        Err(source) => {
            return Err(SysError::Netlink {
                what: what(),
                source,
            })
        }
    };
    route_facts(addr, &route)
}

/// Egress and gateway from a route reply; only unicast routes lead out.
fn route_facts(addr: IpAddr, route: &RouteMessage) -> Result<(u32, Option<IpAddr>), SysError> {
    if route.header.kind != RouteType::Unicast {
        return Err(SysError::NoRoute {
            addr,
            why: format!("the route is of type {:?}, not unicast", route.header.kind),
        });
    }
    let mut ifindex = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    let ifindex = ifindex.ok_or_else(|| SysError::NoRoute {
        addr,
        why: "the route names no egress interface".into(),
    })?;
    Ok((ifindex, gateway))
}

/// The MAC of `hop` on `ifindex` if its neighbour entry holds a usable one.
async fn neighbour_mac(
    handle: &Handle,
    ifindex: u32,
    hop: IpAddr,
) -> Result<Option<[u8; 6]>, SysError> {
    let family = if hop.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut dump = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute();
    let mut found = None;
    loop {
        let entry = dump.try_next().await.map_err(|source| SysError::Netlink {
            what: format!("reading the neighbour table for {hop} on ifindex {ifindex}"),
            source,
        })?;
        let Some(entry) = entry else { break };
        if found.is_none() {
            found = usable_mac(&entry, ifindex, hop);
        }
    }
    Ok(found)
}

/// The link-layer address of an entry for `hop` on `ifindex` whose state
/// holds a valid one: the kernel's `NUD_VALID` states apart from NOARP
/// (REACHABLE, STALE, DELAY, PROBE, PERMANENT; `include/net/neighbour.h`).
fn usable_mac(entry: &NeighbourMessage, ifindex: u32, hop: IpAddr) -> Option<[u8; 6]> {
    if entry.header.ifindex != ifindex {
        return None;
    }
    let valid = matches!(
        entry.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if !valid {
        return None;
    }
    let mut is_hop = false;
    let mut mac = None;
    for attribute in &entry.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                is_hop = IpAddr::V4(*a) == hop;
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                is_hop = IpAddr::V6(*a) == hop;
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    if is_hop {
        mac
    } else {
        None
    }
}

/// Sends one datagram to `hop`'s discard port so that the kernel resolves
/// it. Failures are ignored: the neighbour table decides the outcome.
fn trigger_resolution(hop: IpAddr, ifindex: u32) {
    let (bind, target): (SocketAddr, SocketAddr) = match hop {
        IpAddr::V4(_) => (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::new(hop, DISCARD_PORT),
        ),
        IpAddr::V6(v6) => {
            // A link-local hop is only reachable through its interface.
            let scope = if v6.is_unicast_link_local() {
                ifindex
            } else {
                0
            };
            (
                SocketAddr::from(([0u16; 8], 0)),
                SocketAddr::V6(SocketAddrV6::new(v6, DISCARD_PORT, 0, scope)),
            )
        }
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[0], target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::neighbour::NeighbourHeader;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn entry(ifindex: u32, state: NeighbourState, dst: IpAddr, mac: &[u8]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header = NeighbourHeader {
            ifindex,
            state,
            ..NeighbourHeader::default()
        };
        let dst = match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        m.attributes = vec![
            NeighbourAttribute::Destination(dst),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        m
    }

    const HOP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    #[test]
    fn usable_entries_need_the_hop_the_interface_and_a_valid_state() {
        assert_eq!(
            usable_mac(&entry(3, NeighbourState::Reachable, HOP, &MAC), 3, HOP),
            Some(MAC)
        );
        assert_eq!(
            usable_mac(&entry(3, NeighbourState::Stale, HOP, &MAC), 3, HOP),
            Some(MAC)
        );
        assert_eq!(
            usable_mac(&entry(4, NeighbourState::Reachable, HOP, &MAC), 3, HOP),
            None
        );
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            usable_mac(&entry(3, NeighbourState::Reachable, other, &MAC), 3, HOP),
            None
        );
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::Noarp,
            NeighbourState::None,
        ] {
            assert_eq!(
                usable_mac(&entry(3, state, HOP, &MAC), 3, HOP),
                None,
                "{state:?}"
            );
        }
        // Not an Ethernet address.
        assert_eq!(
            usable_mac(
                &entry(3, NeighbourState::Permanent, HOP, &[1, 2, 3, 4]),
                3,
                HOP
            ),
            None
        );
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(
            usable_mac(&entry(3, NeighbourState::Probe, v6, &MAC), 3, v6),
            Some(MAC)
        );
    }

    #[test]
    fn only_unicast_routes_with_an_egress_lead_out() {
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut route = RouteMessage::default();
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![
            RouteAttribute::Oif(5),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(192, 0, 2, 1))),
        ];
        assert_eq!(
            route_facts(addr, &route).unwrap_or((0, None)),
            (5, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
        );
        route.attributes = vec![RouteAttribute::Oif(5)];
        assert_eq!(route_facts(addr, &route).unwrap_or((0, None)), (5, None));
        route.attributes.clear();
        assert!(matches!(
            route_facts(addr, &route),
            Err(SysError::NoRoute { .. })
        ));
        route.header.kind = RouteType::Local;
        route.attributes = vec![RouteAttribute::Oif(1)];
        let err = route_facts(addr, &route).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.to_string().contains("192.0.2.9")),
            "{err:?}"
        );
    }
}
