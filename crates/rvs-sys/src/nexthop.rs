//! The next hop towards an address, as the XDP packet plane needs it to write
//! Ethernet headers itself: the egress interface, the gateway (if the route
//! has one), the neighbour's MAC address and the interface's own MAC.
//!
//! The route comes from the kernel's own lookup (`RTM_GETROUTE` for the
//! address, what `ip route get ADDR` does) and the MAC from the neighbour
//! table (`ip neigh show`). [`next_hop`] resolves an address for the first
//! time: an entry that is not usable yet is resolved the way any sender
//! would, with one UDP datagram to the discard port (9) that makes the kernel
//! send ARP or neighbour solicitation; then the table is polled.
//!
//! [`refresh_next_hops`] follows changes of hops already in use and never
//! waits: one route lookup per address, one dump of the neighbour table for
//! all of them, and for each entry the kernel is not verifying by itself
//! (STALE, FAILED, gone) an `RTM_NEWNEIGH` with `NTF_USE`, which makes the
//! kernel treat the entry as used by a packet (`neigh_event_send` in the
//! kernel's `net/core/neighbour.c` `neigh_add`): a STALE entry is probed
//! (DELAY, PROBE, then REACHABLE or FAILED), a FAILED or missing one is
//! resolved anew. Traffic the XDP program forwards never passes the kernel's
//! neighbour code, so without this an entry would stay STALE with whatever
//! MAC it last had. When a hop has no usable MAC, the previous one is kept:
//! a transient failure must not blackhole a server.
//!
//! Everything follows the network namespace of the thread that polls the
//! future (netlink and UDP sockets are opened there): in namespaced code, run
//! it on a current-thread runtime.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::net::if_::if_indextoname;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
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
    let (ifname, smac) = egress_link(ifindex, addr)?;
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

/// One entry of the neighbour table, as far as next hops care.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Neighbour {
    ifindex: u32,
    addr: IpAddr,
    state: NeighbourState,
    /// The link-layer address, when the entry carries an Ethernet one.
    lladdr: Option<[u8; 6]>,
}

impl Neighbour {
    /// The entry of a message, if it names an IP address.
    fn parse(entry: &NeighbourMessage) -> Option<Neighbour> {
        let mut addr = None;
        let mut lladdr = None;
        for attribute in &entry.attributes {
            match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    addr = Some(IpAddr::V4(*a));
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    addr = Some(IpAddr::V6(*a));
                }
                NeighbourAttribute::LinkLayerAddress(bytes) => {
                    lladdr = <[u8; 6]>::try_from(bytes.as_slice()).ok();
                }
                _ => {}
            }
        }
        Some(Neighbour {
            ifindex: entry.header.ifindex,
            addr: addr?,
            state: entry.header.state,
            lladdr,
        })
    }

    /// The link-layer address if the state holds a valid one: the kernel's
    /// `NUD_VALID` states apart from NOARP (REACHABLE, STALE, DELAY, PROBE,
    /// PERMANENT; `include/net/neighbour.h`).
    fn usable_mac(&self) -> Option<[u8; 6]> {
        let valid = matches!(
            self.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        );
        self.lladdr.filter(|_| valid)
    }
}

/// The link-layer address of an entry for `hop` on `ifindex` whose state
/// holds a valid one (see [`Neighbour::usable_mac`]).
fn usable_mac(entry: &NeighbourMessage, ifindex: u32, hop: IpAddr) -> Option<[u8; 6]> {
    Neighbour::parse(entry)
        .filter(|n| n.ifindex == ifindex && n.addr == hop)
        .and_then(|n| n.usable_mac())
}

/// What a refresh found for one address (see [`refresh_next_hops`]).
#[derive(Debug)]
pub struct HopRefresh {
    pub addr: IpAddr,
    /// The hop to use from now on: the fresh one when the route leads out and
    /// the neighbour entry holds a valid MAC; otherwise the previous one,
    /// kept (`None` when there was none).
    pub hop: Option<NextHop>,
    /// Why no fresh hop was found (no route, no usable neighbour entry);
    /// `None` when `hop` is fresh.
    pub error: Option<SysError>,
    /// The kernel was asked to verify the hop's neighbour entry.
    pub reverified: bool,
}

/// Re-resolves next hops in use without waiting for any resolution: for each
/// address (with its previous hop, if any), the kernel's route, then its
/// neighbour entry from ONE dump of the table (both families) taken after
/// the routes. Entries the kernel is not verifying by itself are sent an
/// `NTF_USE` request (see [`needs_reverify`]); their outcome shows at the
/// next refresh. Fails as a whole only when the table cannot be read.
pub async fn refresh_next_hops(
    known: &[(IpAddr, Option<NextHop>)],
) -> Result<Vec<HopRefresh>, SysError> {
    let connection = open_connection()?;
    let handle = &connection.handle;
    let mut routes = Vec::with_capacity(known.len());
    for (addr, _) in known {
        routes.push(route_to(handle, *addr).await);
    }
    let table = neighbour_table(handle).await?;
    let mut links: HashMap<u32, (String, [u8; 6])> = HashMap::new();
    let mut out = Vec::with_capacity(known.len());
    for ((addr, previous), route) in known.iter().zip(routes) {
        let mut reverified = false;
        let fresh = match route {
            Err(e) => Err(e),
            Ok((ifindex, gateway)) => match link_facts(&mut links, ifindex, *addr) {
                Err(e) => Err(e),
                Ok((ifname, smac)) => {
                    let hop = gateway.unwrap_or(*addr);
                    let entry = table.get(&(ifindex, hop));
                    if needs_reverify(entry.map(|n| n.state)) {
                        reverify(handle, ifindex, hop).await;
                        reverified = true;
                    }
                    fresh_hop(*addr, ifindex, ifname, gateway, smac, entry)
                }
            },
        };
        let (hop, error) = kept_or_fresh(previous.as_ref(), fresh);
        out.push(HopRefresh {
            addr: *addr,
            hop,
            error,
            reverified,
        });
    }
    Ok(out)
}

/// The name and MAC of interface `ifindex` (the egress towards `addr`),
/// cached for the round.
fn link_facts(
    links: &mut HashMap<u32, (String, [u8; 6])>,
    ifindex: u32,
    addr: IpAddr,
) -> Result<(String, [u8; 6]), SysError> {
    if let Some(facts) = links.get(&ifindex) {
        return Ok(facts.clone());
    }
    let (ifname, smac) = egress_link(ifindex, addr)?;
    links.insert(ifindex, (ifname.clone(), smac));
    Ok((ifname, smac))
}

/// The name and MAC of interface `ifindex`, the egress of the route to `addr`.
fn egress_link(ifindex: u32, addr: IpAddr) -> Result<(String, [u8; 6]), SysError> {
    let ifname = if_indextoname(ifindex)
        .map_err(|e| SysError::io(format!("naming ifindex {ifindex} (route to {addr})"), e))?
        .to_string_lossy()
        .into_owned();
    let smac = interface(&ifname)?.mac;
    Ok((ifname, smac))
}

/// Every IPv4 and IPv6 neighbour entry, by interface and address.
async fn neighbour_table(handle: &Handle) -> Result<HashMap<(u32, IpAddr), Neighbour>, SysError> {
    // AF_UNSPEC: the kernel dumps every neighbour table (ARP and ND).
    let mut dump = handle.neighbours().get().execute();
    let mut table = HashMap::new();
    loop {
        let entry = dump.try_next().await.map_err(|source| SysError::Netlink {
            what: "reading the neighbour table".into(),
            source,
        })?;
        let Some(entry) = entry else { break };
        if let Some(n) = Neighbour::parse(&entry) {
            table.insert((n.ifindex, n.addr), n);
        }
    }
    Ok(table)
}

/// Whether the kernel must be asked to verify a hop's entry (`None`: no
/// entry). REACHABLE was confirmed recently, PERMANENT and NOARP never
/// change; DELAY, PROBE and INCOMPLETE are being verified already (`NTF_USE`
/// would change nothing there). STALE is only verified when used, which
/// XDP-forwarded traffic never does; FAILED, NONE and a missing entry are
/// resolved anew.
fn needs_reverify(state: Option<NeighbourState>) -> bool {
    !matches!(
        state,
        Some(
            NeighbourState::Reachable
                | NeighbourState::Permanent
                | NeighbourState::Noarp
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Incomplete
        )
    )
}

/// Asks the kernel to verify `hop`'s entry on `ifindex` as a packet would
/// (`ip neigh replace HOP dev IF use`), creating the entry if it is gone;
/// NLM_F_REPLACE, not NLM_F_EXCL, so that an existing entry is accepted. The
/// state sent (NONE) is ignored for an existing entry and keeps a created
/// one out of PERMANENT. If the request is refused, one datagram to the
/// discard port uses the entry instead.
async fn reverify(handle: &Handle, ifindex: u32, hop: IpAddr) {
    let request = handle
        .neighbours()
        .add(ifindex, hop)
        .state(NeighbourState::None)
        .flags(NeighbourFlags::Use)
        .replace();
    if request.execute().await.is_err() {
        trigger_resolution(hop, ifindex);
    }
}

/// The hop towards `addr` from its route (egress `ifindex`, `gateway`,
/// the interface's `smac`) and the entry of the gateway or `addr`.
fn fresh_hop(
    addr: IpAddr,
    ifindex: u32,
    ifname: String,
    gateway: Option<IpAddr>,
    smac: [u8; 6],
    entry: Option<&Neighbour>,
) -> Result<NextHop, SysError> {
    let hop = gateway.unwrap_or(addr);
    match entry.and_then(Neighbour::usable_mac) {
        Some(dmac) => Ok(NextHop {
            ifindex,
            ifname,
            gateway,
            dmac,
            smac,
        }),
        None => Err(SysError::NeighbourUnusable {
            addr,
            hop,
            ifname,
            entry: entry.map_or_else(|| "no entry".to_owned(), |n| format!("entry {}", n.state)),
        }),
    }
}

/// The hop to use after a refresh: the fresh one, or on failure the
/// previous one (the last known MAC), with the failure.
fn kept_or_fresh(
    previous: Option<&NextHop>,
    fresh: Result<NextHop, SysError>,
) -> (Option<NextHop>, Option<SysError>) {
    match fresh {
        Ok(hop) => (Some(hop), None),
        Err(e) => (previous.cloned(), Some(e)),
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

    fn neighbour(state: NeighbourState, mac: Option<[u8; 6]>) -> Neighbour {
        Neighbour {
            ifindex: 3,
            addr: HOP,
            state,
            lladdr: mac,
        }
    }

    const ALL_STATES: [NeighbourState; 9] = [
        NeighbourState::Incomplete,
        NeighbourState::Reachable,
        NeighbourState::Stale,
        NeighbourState::Delay,
        NeighbourState::Probe,
        NeighbourState::Failed,
        NeighbourState::Noarp,
        NeighbourState::Permanent,
        NeighbourState::None,
    ];

    #[test]
    fn entries_the_kernel_does_not_verify_by_itself_are_reverified() {
        let reverified: Vec<NeighbourState> = ALL_STATES
            .into_iter()
            .filter(|s| needs_reverify(Some(*s)))
            .collect();
        assert_eq!(
            reverified,
            [
                NeighbourState::Stale,
                NeighbourState::Failed,
                NeighbourState::None
            ]
        );
        // A missing entry (garbage-collected, or never made) is created.
        assert!(needs_reverify(None));
        // A state this crate does not know is verified too.
        assert!(needs_reverify(Some(NeighbourState::Other(0x100))));
    }

    #[test]
    fn a_fresh_hop_needs_a_valid_entry_and_says_which_it_found() {
        let fresh = |entry: Option<&Neighbour>| {
            fresh_hop(HOP, 3, "eth0".into(), None, [2, 0, 0, 0, 0, 1], entry)
        };
        let stale = neighbour(NeighbourState::Stale, Some(MAC));
        assert_eq!(
            fresh(Some(&stale)).ok(),
            Some(NextHop {
                ifindex: 3,
                ifname: "eth0".into(),
                gateway: None,
                dmac: MAC,
                smac: [2, 0, 0, 0, 0, 1],
            })
        );
        // FAILED entries may still carry the old address: it is not used.
        let failed = neighbour(NeighbourState::Failed, Some(MAC));
        let err = fresh(Some(&failed)).err();
        assert!(
            matches!(&err, Some(SysError::NeighbourUnusable { entry, .. }) if entry == "entry failed"),
            "{err:?}"
        );
        let err = fresh(None).err();
        assert!(
            matches!(&err, Some(SysError::NeighbourUnusable { entry, .. }) if entry == "no entry"),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.to_string().contains("10.0.0.1 on eth0")));
        // A gateway's entry gives the hop of the address behind it.
        let behind = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let hop = fresh_hop(behind, 3, "eth0".into(), Some(HOP), [0; 6], Some(&stale));
        assert_eq!(
            hop.map(|h| (h.gateway, h.dmac)).ok(),
            Some((Some(HOP), MAC))
        );
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_known_hop() {
        let old = NextHop {
            ifindex: 3,
            ifname: "eth0".into(),
            gateway: None,
            dmac: MAC,
            smac: [2, 0, 0, 0, 0, 1],
        };
        let new = NextHop {
            dmac: [2, 0, 0, 0, 0, 0xbb],
            ..old.clone()
        };
        let failure = || SysError::NoRoute {
            addr: HOP,
            why: "test".into(),
        };
        let (hop, err) = kept_or_fresh(Some(&old), Err(failure()));
        assert_eq!(hop, Some(old.clone()));
        assert!(err.is_some());
        let (hop, err) = kept_or_fresh(None, Err(failure()));
        assert_eq!(hop, None);
        assert!(err.is_some());
        let (hop, err) = kept_or_fresh(Some(&old), Ok(new.clone()));
        assert_eq!(hop, Some(new));
        assert!(err.is_none());
    }

    #[test]
    fn entries_without_an_ip_address_are_skipped() {
        let mut m = entry(3, NeighbourState::Reachable, HOP, &MAC);
        assert_eq!(
            Neighbour::parse(&m),
            Some(neighbour(NeighbourState::Reachable, Some(MAC)))
        );
        m.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::Destination(_)));
        assert_eq!(Neighbour::parse(&m), None);
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
