//! The director: virtual services, their destinations and the connection table,
//! driven by packets (or a plane's synthetic events) and time, with IPVS's rules.
//!
//! Inbound packets follow `ip_vs_in_hook` (net/netfilter/ipvs/ip_vs_core.c):
//! existing connection first, with the conn_reuse_mode and expire_nodest_conn
//! rules for a new-connection packet on an old entry; otherwise the protocol's
//! scheduling rule (TCP: SYN only unless sloppy_tcp), service lookup
//! (`ip_vs_service_find`: fwmark, exact, FTP, port 0), persistence templates
//! (`ip_vs_sched_persist`), then counters, state transition and timer refresh.
//! Control changes follow ip_vs_ctl.c, including the destination "trash" that
//! keeps a deleted destination (and its counters) for reuse while connections
//! refer to it and for two minutes after.
//!
//! Invariants: for every destination, active + inactive equals its bound
//! non-template connections and persist_conns its bound templates; each live
//! service's scheduler has been told of every list, weight, count and overload
//! change of its destinations; nothing here reads a clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use slab::Slab;

use crate::conn::sctp::{self, SctpEvent, SctpState};
use crate::conn::tcp::{self, TcpFlags, TcpState};
use crate::conn::{
    Conn, ConnFlags, ConnId, ConnKey, ConnTable, NewConn, OutKey, TableDir, PROTO_IP,
};
use crate::dest::{Dest, DestId};
use crate::error::{ConfigError, CoreError};
use crate::mark::{MarkRule, MarkRules};
use crate::model::{DestConfig, Family, Forward, Protocol, ServiceConfig, ServiceKey};
use crate::sched::{DestChange, DestSet, SchedInput, SchedParams, SchedulerKind, XorShiftRandom};
use crate::service::{Service, ServiceId};
use crate::stats::{Counters, Stats, ESTIMATION_INTERVAL};
use crate::time::{Span, Time};

const FTP_PORT: u16 = 21;
const FTP_DATA_PORT: u16 = 20;
/// First port that needs no privilege (`ip_unprivileged_port_start`).
const UNPRIVILEGED_PORT_START: u16 = 1024;
/// A deleted destination leaves the trash this long after its last reference
/// (`IP_VS_DEST_TRASH_PERIOD`), checked every half period.
const TRASH_PERIOD: Span = Span::from_secs(120);
/// How long an expiring template that still controls connections is kept.
const EXPIRE_LATER: Span = Span::from_secs(60);
/// Timeout of a connection before its first state transition.
const INITIAL_TIMEOUT: Span = Span::from_secs(3);
/// Largest timeout `--set` accepts: 31 days, ipvsadm's MAX_TIMEOUT (the real
/// ipvsadm and Debian's kernel, HZ=250, take `--set 2678400 2678400 2678400`;
/// rvsadm goldens, timeouts.golden). Connection timeouts are u32 milliseconds,
/// which hold it.
const MAX_SET_TIMEOUT: u64 = 86_400 * 31;

/// The IPVS sysctls that change the connection path (Documentation/networking/ipvs-sysctl.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// Default 1: reschedule a new connection that reuses the ports of a closing
    /// one; bit 2 also in FIN_WAIT for input-only (DR/TUN) connections.
    pub conn_reuse_mode: u8,
    /// Default off: packets of a connection whose destination was removed are
    /// dropped; on: the entry is expired and the packet rescheduled.
    pub expire_nodest_conn: bool,
    /// Default off: on, a template whose destination has weight 0 is invalid.
    pub expire_quiescent_template: bool,
    /// Default off: on, any TCP packet (not only SYN) may create a connection.
    pub sloppy_tcp: bool,
    /// Default off: on, any SCTP packet may create a connection.
    pub sloppy_sctp: bool,
    /// Default off: on, the DoS-hardened TCP state tables are used.
    pub secure_tcp: bool,
    /// lblc cache entries unused this long are dropped (default 24 h).
    pub lblc_expiration: Span,
    /// lblcr shrinks a set unchanged this long (default 24 h).
    pub lblcr_expiration: Span,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            conn_reuse_mode: 1,
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            sloppy_sctp: false,
            secure_tcp: false,
            lblc_expiration: crate::sched::lblc::DEFAULT_EXPIRATION,
            lblcr_expiration: crate::sched::lblcr::DEFAULT_EXPIRATION,
        }
    }
}

/// Per-state timeouts (`ipvsadm --set` changes TCP ESTABLISHED, FIN_WAIT and UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [Span; tcp::STATE_COUNT],
    pub udp: Span,
    pub sctp: [Span; SctpState::COUNT],
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut t = [Span::default(); tcp::STATE_COUNT];
        for (i, slot) in t.iter_mut().enumerate() {
            if let Some(s) = TcpState::from_index(i as u8) {
                *slot = s.default_timeout();
            }
        }
        let mut sc = [Span::default(); SctpState::COUNT];
        for (slot, st) in sc.iter_mut().zip(SctpState::ALL) {
            *slot = sctp::default_timeout(st);
        }
        Timeouts {
            tcp: t,
            udp: Span::from_secs(300),
            sctp: sc,
        }
    }
}

impl Timeouts {
    /// The three values `ipvsadm -L --timeout` shows: tcp, tcpfin, udp (seconds).
    pub fn shown(&self) -> (u64, u64, u64) {
        (
            self.tcp[TcpState::Established as usize].as_secs(),
            self.tcp[TcpState::FinWait as usize].as_secs(),
            self.udp.as_secs(),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectorConfig {
    pub sched: SchedParams,
    pub sysctl: Sysctl,
    /// Seed of the connection table's hash.
    pub hash_seed: u64,
    /// Seed of the random source (twos).
    pub random_seed: u64,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            sched: SchedParams::default(),
            sysctl: Sysctl::default(),
            hash_seed: 0x05ee_d1b5,
            random_seed: 0x00dd_ba11,
        }
    }
}

/// What the core needs to know of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// IP protocol number.
    pub proto: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Firewall mark from the plane's classifier, 0 if none.
    pub fwmark: u32,
    /// TCP flags (ignored for other protocols).
    pub tcp: TcpFlags,
    /// SCTP chunk information (ignored for other protocols).
    pub sctp: SctpInfo,
    /// IP packet length in bytes, for the byte counters.
    pub len: u32,
}

impl Packet {
    /// The client-side tuple this packet is looked up by.
    pub fn conn_key(&self) -> ConnKey {
        ConnKey {
            proto: self.proto,
            template: false,
            caddr: self.saddr,
            cport: self.sport,
            vaddr: self.daddr,
            vport: self.dport,
        }
    }

    pub fn tcp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, flags: TcpFlags) -> Self {
        Packet {
            proto: Protocol::Tcp.number(),
            saddr,
            sport,
            daddr,
            dport,
            fwmark: 0,
            tcp: flags,
            sctp: SctpInfo::default(),
            len: 60,
        }
    }

    pub fn udp(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16) -> Self {
        Packet {
            proto: Protocol::Udp.number(),
            saddr,
            sport,
            daddr,
            dport,
            fwmark: 0,
            tcp: TcpFlags::default(),
            sctp: SctpInfo::default(),
            len: 60,
        }
    }
}

/// What the SCTP state machine needs of a packet: its first chunk type and the
/// event the kernel derives from its chunks (`sctp::event_from_segment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpInfo {
    pub first_chunk: u8,
    pub event: Option<SctpEvent>,
}

impl SctpInfo {
    /// From the SCTP segment (common header onwards); `None` if it is too short
    /// to carry a chunk, which the kernel drops.
    pub fn from_segment(segment: &[u8]) -> Option<Self> {
        Some(SctpInfo {
            first_chunk: sctp::first_chunk_type(segment)?,
            event: sctp::event_from_segment(segment),
        })
    }
}

/// Where to send an inbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarding {
    /// The connection; `None` for one-packet scheduling (no entry is kept).
    pub conn: Option<ConnId>,
    pub dest: DestId,
    pub daddr: IpAddr,
    pub dport: u16,
    pub forward: Forward,
    /// Whether this packet created the connection.
    pub new: bool,
}

/// The decision for an inbound (client to virtual service) packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InVerdict {
    Forward(Forwarding),
    /// Not for a virtual service, or a packet that cannot open a connection:
    /// the host handles it (the kernel's NF_ACCEPT).
    Pass,
    /// A virtual service matched but no real server is available: refuse
    /// (ICMP port unreachable, or RST in a socket plane).
    Refuse(ServiceId),
    /// Drop silently (the connection's destination was removed).
    Drop,
}

/// The decision for an outbound (real server reply) packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutVerdict {
    /// A reply of a tracked connection: rewrite the source to the virtual address.
    Reply {
        conn: ConnId,
        vaddr: IpAddr,
        vport: u16,
    },
    Pass,
}

/// A hash scheduler's table as [`Director::hash_table`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTable {
    pub kind: SchedulerKind,
    /// sh and dh: the `hash_32` bits (the table has `2^bits` slots); mh: 0.
    pub bits: u32,
    /// Number of slots.
    pub size: u32,
    /// `sh-port` / `mh-port`: the source port is part of the key.
    pub port: bool,
    /// Slot -> destination.
    pub slots: Vec<Option<DestId>>,
}

/// What the protocol of a connection is, from its key.
fn proto_of(c: &Conn) -> Option<Protocol> {
    Protocol::from_number(c.key.proto)
}

fn fwmark_addr(mark: u32, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(mark)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(u128::from(mark) << 96)),
    }
}

struct TrashEntry {
    service: ServiceKey,
    dest: DestId,
    idle_since: Option<Time>,
}

/// The director core.
pub struct Director {
    cfg: DirectorConfig,
    services: Slab<Service>,
    by_key: HashMap<ServiceKey, ServiceId>,
    dests: Slab<Dest>,
    trash: Vec<TrashEntry>,
    trash_timer: Option<Time>,
    conns: ConnTable,
    timeouts: Timeouts,
    rng: XorShiftRandom,
    total: Stats,
    next_estimation: Option<Time>,
    due: Vec<ConnId>,
    /// A destination was deleted with expire_nodest_conn on: its entries go at
    /// the next `handle_timeout` (the kernel queues this work one jiffy later).
    nodest_flush: bool,
    /// The firewall-mark classifier (kept by `clear`, as `ipvsadm -C` leaves
    /// iptables' MARK rules alone).
    marks: MarkRules,
    /// A master sync daemon's rule and queue (`None`: not announcing).
    sync: Option<crate::sync::SyncMaster>,
    /// See [`Director::set_hash_pickup`].
    hash_pickup: bool,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director")
            .field("services", &self.services.len())
            .field("dests", &self.dests.len())
            .field("conns", &self.conns.len())
            .finish()
    }
}

impl Default for Director {
    fn default() -> Self {
        Self::new(DirectorConfig::default())
    }
}

impl Director {
    pub fn new(cfg: DirectorConfig) -> Self {
        Director {
            cfg,
            services: Slab::new(),
            by_key: HashMap::new(),
            dests: Slab::new(),
            trash: Vec::new(),
            trash_timer: None,
            conns: ConnTable::new(cfg.hash_seed),
            timeouts: Timeouts::default(),
            rng: XorShiftRandom::new(cfg.random_seed),
            total: Stats::default(),
            next_estimation: None,
            due: Vec::new(),
            nodest_flush: false,
            marks: MarkRules::default(),
            sync: None,
            hash_pickup: false,
        }
    }

    /// Validates the build-time parameters, then creates the director.
    pub fn try_new(cfg: DirectorConfig) -> Result<Self, ConfigError> {
        cfg.sched.validate()?;
        Ok(Self::new(cfg))
    }

    // ----- views -----

    pub fn config(&self) -> &DirectorConfig {
        &self.cfg
    }

    pub fn sysctl(&self) -> &Sysctl {
        &self.cfg.sysctl
    }

    /// Changes the sysctls; the schedulers see new expirations at once.
    pub fn set_sysctl(&mut self, sysctl: Sysctl) {
        self.cfg.sysctl = sysctl;
        for (_, svc) in self.services.iter_mut() {
            Self::apply_expiration(&sysctl, svc);
        }
    }

    fn apply_expiration(sysctl: &Sysctl, svc: &mut Service) {
        match svc.config.scheduler {
            SchedulerKind::Lblc => svc.sched.set_expiration(sysctl.lblc_expiration),
            SchedulerKind::Lblcr => svc.sched.set_expiration(sysctl.lblcr_expiration),
            _ => {}
        }
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Services in no particular order (listings sort them as ipvsadm does).
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().map(|(_, s)| s)
    }

    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id.index())
    }

    pub fn service_by_key(&self, key: &ServiceKey) -> Option<&Service> {
        self.by_key.get(key).and_then(|id| self.service(*id))
    }

    pub fn dest(&self, id: DestId) -> Option<&Dest> {
        self.dests.get(id.index())
    }

    /// The destinations of a service in list order (head = added last).
    pub fn dests_of<'a>(&'a self, svc: &'a Service) -> impl Iterator<Item = &'a Dest> + 'a {
        svc.order.iter().map(move |id| &self.dests[id.index()])
    }

    pub fn conns(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter()
    }

    pub fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id)
    }

    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Director-wide counters (`ipvsadm -L --stats` totals, /proc/net/ip_vs_stats).
    pub fn total_stats(&self) -> &Stats {
        &self.total
    }

    /// The name `ipvsadm -Lnc` shows for a connection's state.
    pub fn state_name(&self, c: &Conn) -> &'static str {
        if c.flags.template {
            return if c.state == 0 { "NONE" } else { "ASSURED" };
        }
        match proto_of(c) {
            Some(Protocol::Tcp) => TcpState::from_index(c.state).map_or("ERR!", TcpState::name),
            Some(Protocol::Udp) => "UDP",
            Some(Protocol::Sctp) => SctpState::from_index(c.state).map_or("ERR!", SctpState::name),
            None => "NONE",
        }
    }

    // ----- control -----

    fn find_trash(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> Option<usize> {
        self.trash.iter().position(|t| {
            let d = &self.dests[t.dest.index()];
            t.service == *key && d.config.addr == addr && d.config.port == port
        })
    }

    fn renumber(&mut self, sid: ServiceId) {
        let svc = &self.services[sid.index()];
        for (pos, id) in svc.order.iter().enumerate() {
            self.dests[id.index()].list_pos = pos as u32;
        }
    }

    pub fn add_service(&mut self, cfg: ServiceConfig) -> Result<ServiceId, CoreError> {
        cfg.validate()?;
        if self.by_key.contains_key(&cfg.key) {
            return Err(CoreError::ServiceExists(cfg.key));
        }
        let entry = self.services.vacant_entry();
        let id = ServiceId(entry.key() as u32);
        let sched = cfg
            .scheduler
            .build(DestSet::new(&[], &self.dests), &self.cfg.sched);
        self.by_key.insert(cfg.key, id);
        let svc = entry.insert(Service {
            id,
            config: cfg,
            order: Vec::new(),
            sched,
            stats: Stats::default(),
        });
        Self::apply_expiration(&self.cfg.sysctl, svc);
        Ok(id)
    }

    fn service_id(&self, key: &ServiceKey) -> Result<ServiceId, CoreError> {
        self.by_key
            .get(key)
            .copied()
            .ok_or(CoreError::NoService(*key))
    }

    /// `ipvsadm -E`: scheduler, flags, persistence, one-packet and PE may change;
    /// the key may not.
    pub fn edit_service(&mut self, cfg: ServiceConfig) -> Result<(), CoreError> {
        cfg.validate()?;
        let sid = self.service_id(&cfg.key)?;
        let svc = &mut self.services[sid.index()];
        let rebuild = svc.config.scheduler != cfg.scheduler;
        if rebuild {
            svc.sched = cfg
                .scheduler
                .build(DestSet::new(&svc.order, &self.dests), &self.cfg.sched);
        }
        svc.config = cfg;
        if rebuild {
            Self::apply_expiration(&self.cfg.sysctl, svc);
        }
        Ok(())
    }

    pub fn delete_service(&mut self, key: &ServiceKey, now: Time) -> Result<(), CoreError> {
        let sid = self.service_id(key)?;
        self.by_key.remove(key);
        let svc = self.services.remove(sid.index());
        for id in svc.order {
            self.move_to_trash(*key, id, now);
        }
        Ok(())
    }

    /// `ipvsadm -C`: deletes every service (connections stay until they expire).
    /// The firewall-mark classifier's rules.
    pub fn mark_rules(&self) -> &MarkRules {
        &self.marks
    }

    /// Adds a classifier rule; an overlapping one is refused, changing nothing.
    pub fn add_mark_rule(&mut self, rule: MarkRule) -> Result<(), CoreError> {
        Ok(self.marks.add(rule)?)
    }

    pub fn delete_mark_rule(&mut self, rule: &MarkRule) -> Result<(), CoreError> {
        Ok(self.marks.delete(rule)?)
    }

    /// The mark the classifier gives a packet of IP protocol `proto` to
    /// `daddr:dport` (0: none), for the planes to put in `Packet::fwmark`.
    pub fn classify(&self, proto: u8, daddr: IpAddr, dport: u16) -> u32 {
        self.marks.classify(proto, daddr, dport)
    }

    pub fn clear(&mut self, now: Time) {
        let keys: Vec<ServiceKey> = self.by_key.keys().copied().collect();
        for k in keys {
            let _ = self.delete_service(&k, now);
        }
    }

    fn move_to_trash(&mut self, service: ServiceKey, id: DestId, now: Time) {
        self.dests[id.index()].available = false;
        if self.cfg.sysctl.expire_nodest_conn {
            self.nodest_flush = true;
        }
        if self.trash.is_empty() {
            self.trash_timer = Some(now + Span::from_millis(TRASH_PERIOD.as_millis() / 2));
        }
        self.trash.push(TrashEntry {
            service,
            dest: id,
            idle_since: None,
        });
    }

    pub fn add_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<DestId, CoreError> {
        let sid = self.service_id(key)?;
        cfg.validate(key)?;
        if self.find_dest(sid, cfg.addr, cfg.port).is_some() {
            return Err(CoreError::DestExists);
        }
        let id = match self.find_trash(key, cfg.addr, cfg.port) {
            Some(i) => {
                let t = self.trash.swap_remove(i);
                let d = &mut self.dests[t.dest.index()];
                d.config = cfg;
                d.last_weight = cfg.weight;
                d.available = true;
                d.service = sid;
                d.update_overload_on_edit();
                t.dest
            }
            None => {
                let entry = self.dests.vacant_entry();
                let id = DestId(entry.key() as u32);
                entry.insert(Dest::new(id, cfg, sid));
                id
            }
        };
        self.services[sid.index()].order.insert(0, id);
        self.renumber(sid);
        self.tell_scheduler(sid, DestChange::Added(0));
        Ok(id)
    }

    /// The kernel's add_dest/del_dest/upd_dest callback to the service's scheduler.
    fn tell_scheduler(&mut self, sid: ServiceId, change: DestChange) {
        let svc = &mut self.services[sid.index()];
        svc.sched
            .dests_changed(DestSet::new(&svc.order, &self.dests), change);
    }

    fn find_dest(&self, sid: ServiceId, addr: IpAddr, port: u16) -> Option<(usize, DestId)> {
        let svc = &self.services[sid.index()];
        svc.order.iter().enumerate().find_map(|(pos, id)| {
            let d = &self.dests[id.index()];
            (d.config.addr == addr && d.config.port == port).then_some((pos, *id))
        })
    }

    /// `ipvsadm -e`: weight, method and thresholds change for new connections.
    pub fn edit_dest(&mut self, key: &ServiceKey, cfg: DestConfig) -> Result<(), CoreError> {
        let sid = self.service_id(key)?;
        cfg.validate(key)?;
        let (pos, id) = self
            .find_dest(sid, cfg.addr, cfg.port)
            .ok_or(CoreError::NoDest)?;
        let d = &mut self.dests[id.index()];
        d.config = cfg;
        if cfg.weight != 0 {
            d.last_weight = cfg.weight;
        }
        d.update_overload_on_edit();
        self.tell_scheduler(sid, DestChange::Updated(pos));
        Ok(())
    }

    pub fn delete_dest(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
        now: Time,
    ) -> Result<(), CoreError> {
        let sid = self.service_id(key)?;
        let (pos, id) = self.find_dest(sid, addr, port).ok_or(CoreError::NoDest)?;
        self.services[sid.index()].order.remove(pos);
        self.renumber(sid);
        self.move_to_trash(*key, id, now);
        self.tell_scheduler(sid, DestChange::Removed(pos, id));
        Ok(())
    }

    /// `ipvsadm -Z [service]`.
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), CoreError> {
        let ids: Vec<ServiceId> = match key {
            Some(k) => vec![self.service_id(k)?],
            None => {
                self.total.zero();
                self.services
                    .iter()
                    .map(|(i, _)| ServiceId(i as u32))
                    .collect()
            }
        };
        for sid in ids {
            let svc = &mut self.services[sid.index()];
            svc.stats.zero();
            for d in &svc.order {
                self.dests[d.index()].stats.zero();
            }
        }
        Ok(())
    }

    /// `ipvsadm --set tcp tcpfin udp` (seconds; 0 keeps the current value).
    pub fn set_timeouts(&mut self, tcp: u64, tcpfin: u64, udp: u64) -> Result<(), ConfigError> {
        for v in [tcp, tcpfin, udp] {
            if v > MAX_SET_TIMEOUT {
                return Err(ConfigError::Timeout(v));
            }
        }
        if tcp != 0 {
            self.timeouts.tcp[TcpState::Established as usize] = Span::from_secs(tcp);
        }
        if tcpfin != 0 {
            self.timeouts.tcp[TcpState::FinWait as usize] = Span::from_secs(tcpfin);
        }
        if udp != 0 {
            self.timeouts.udp = Span::from_secs(udp);
        }
        Ok(())
    }

    // ----- data path -----

    fn notify_load(&mut self, id: DestId) {
        let d = &self.dests[id.index()];
        if !d.available {
            return;
        }
        let (sid, pos) = (d.service, d.list_pos as usize);
        if let Some(svc) = self.services.get_mut(sid.index()) {
            svc.sched
                .load_changed(DestSet::new(&svc.order, &self.dests), pos);
        }
    }

    /// `ip_vs_service_find`.
    fn find_service(&self, p: &Packet, proto: Protocol) -> Option<ServiceId> {
        let family = Family::of(&p.daddr);
        if p.fwmark != 0 {
            if let Some(id) = self.by_key.get(&ServiceKey::Fwmark {
                mark: p.fwmark,
                family,
            }) {
                return Some(*id);
            }
        }
        let exact = |port| ServiceKey::Addr {
            proto,
            addr: p.daddr,
            port,
        };
        if let Some(id) = self.by_key.get(&exact(p.dport)) {
            return Some(*id);
        }
        if proto == Protocol::Tcp
            && (p.dport == FTP_DATA_PORT || p.dport >= UNPRIVILEGED_PORT_START)
        {
            if let Some(id) = self.by_key.get(&exact(FTP_PORT)) {
                return Some(*id);
            }
        }
        self.by_key.get(&exact(0)).copied()
    }

    /// Binds a new entry to its destination (`ip_vs_bind_dest`).
    fn bind(&mut self, dest: DestId, template: bool) {
        let d = &mut self.dests[dest.index()];
        if template {
            d.persist_conns += 1;
        } else {
            d.inactive_conns += 1;
        }
        d.update_overload_on_bind();
        if !template {
            self.notify_load(dest);
        }
    }

    /// Releases an entry's destination (`ip_vs_unbind_dest`).
    fn unbind(&mut self, c: &Conn) {
        let Some(d) = self.dests.get_mut(c.dest.index()) else {
            return;
        };
        if c.flags.template {
            d.persist_conns = d.persist_conns.saturating_sub(1);
        } else if c.flags.inactive {
            d.inactive_conns = d.inactive_conns.saturating_sub(1);
        } else {
            d.active_conns = d.active_conns.saturating_sub(1);
        }
        d.update_overload_on_unbind();
        self.notify_load(c.dest);
    }

    /// Creates a connection bound to `dest` (`ip_vs_conn_new`).
    #[allow(clippy::too_many_arguments)]
    fn new_conn(
        &mut self,
        key: ConnKey,
        dest: DestId,
        dport: u16,
        one_packet: bool,
        control: Option<ConnId>,
        template_timeout: Option<Span>,
        now: Time,
    ) -> ConnId {
        let d = &self.dests[dest.index()];
        let sees_replies = d.config.forward.sees_replies();
        let template = template_timeout.is_some();
        let flags = ConnFlags {
            template,
            inactive: true,
            no_output: !sees_replies,
            one_packet,
            invalidated: false,
            out_indexed: false,
        };
        let n = NewConn {
            key,
            daddr: d.config.addr,
            dport,
            dest,
            flags,
            state: 0,
            timeout: template_timeout.unwrap_or(INITIAL_TIMEOUT),
            control,
        };
        let id = self.conns.insert(n, now, !template && sees_replies);
        self.bind(dest, template);
        id
    }

    /// `ip_vs_check_template`: whether a found template may be used.
    fn template_valid(&mut self, ct: ConnId) -> bool {
        let Some(c) = self.conns.get(ct) else {
            return false;
        };
        let ok = self.dests.get(c.dest.index()).is_some_and(|d| {
            d.available && !(self.cfg.sysctl.expire_quiescent_template && d.weight() == 0)
        });
        if !ok {
            self.conns.invalidate_template(ct);
        }
        ok
    }

    fn schedule_dest(&mut self, sid: ServiceId, p: &Packet, now: Time) -> Option<DestId> {
        let svc = &mut self.services[sid.index()];
        let mut input = SchedInput {
            proto: p.proto,
            saddr: p.saddr,
            sport: p.sport,
            daddr: p.daddr,
            dport: p.dport,
            flags: svc.config.sched_flags,
            now,
            rng: &mut self.rng,
        };
        let set = DestSet::new(&svc.order, &self.dests);
        let pos = svc.sched.schedule(set, &mut input)?;
        let id = *svc.order.get(pos)?;
        // A scheduler must never pick an unschedulable server (lblc's cache hit
        // excepted, as in the kernel): a bug in tests, a refusal in production.
        let d = &self.dests[id.index()];
        let kind = svc.config.scheduler;
        let ok = d.schedulable() || (kind.may_pick_overloaded() && d.weight() > 0);
        debug_assert!(ok, "{kind} picked an unschedulable server");
        ok.then_some(id)
    }

    /// `ip_vs_schedule` / `ip_vs_sched_persist`; Err carries the verdict when no
    /// connection is made.
    fn schedule(
        &mut self,
        sid: ServiceId,
        p: &Packet,
        proto: Protocol,
        now: Time,
    ) -> Result<ConnId, InVerdict> {
        if p.sport == FTP_DATA_PORT {
            return Err(InVerdict::Pass);
        }
        let cfg = &self.services[sid.index()].config;
        let (svc_key, persistence) = (cfg.key, cfg.persistence);
        let svc_port = svc_key.port();
        let one_packet = cfg.one_packet && proto == Protocol::Udp;
        let key = p.conn_key();
        let Some(persist) = persistence else {
            if svc_key.fwmark().is_none() && p.dport != svc_port {
                return Err(self.leave(sid, p));
            }
            let Some(dest) = self.schedule_dest(sid, p, now) else {
                return Err(self.leave(sid, p));
            };
            let dp = self.dests[dest.index()].config.port;
            let dport = if dp != 0 { dp } else { p.dport };
            let id = self.new_conn(key, dest, dport, one_packet, None, None, now);
            self.conn_stats(dest, sid);
            return Ok(id);
        };
        // Template key (ip_vs_sched_persist).
        let snet = persist.mask(p.saddr);
        let (tproto, tvaddr, tvport) = if p.dport == svc_port {
            (
                p.proto,
                p.daddr,
                if svc_port != FTP_PORT { p.dport } else { 0 },
            )
        } else if let ServiceKey::Fwmark { mark, family } = svc_key {
            (PROTO_IP, fwmark_addr(mark, family), 0)
        } else {
            (p.proto, p.daddr, 0)
        };
        let tkey = ConnKey {
            proto: tproto,
            template: true,
            caddr: snet,
            cport: 0,
            vaddr: tvaddr,
            vport: tvport,
        };
        let found = self
            .conns
            .lookup_in(&tkey)
            .filter(|&ct| self.template_valid(ct));
        let (ct, dest) = match found {
            Some(ct) => {
                let dest = self.conns.get(ct).map(|c| c.dest);
                match dest {
                    Some(d) => (ct, d),
                    None => return Err(self.leave(sid, p)),
                }
            }
            None => {
                let Some(dest) = self.schedule_dest(sid, p, now) else {
                    return Err(self.leave(sid, p));
                };
                let tdport = if p.dport == svc_port && svc_port != FTP_PORT {
                    self.dests[dest.index()].config.port
                } else {
                    0
                };
                let timeout = Span::from_secs(u64::from(persist.timeout));
                let ct = self.new_conn(tkey, dest, tdport, false, None, Some(timeout), now);
                (ct, dest)
            }
        };
        let dp = self.dests[dest.index()].config.port;
        let dport = if p.dport == svc_port && dp != 0 {
            dp
        } else {
            p.dport
        };
        let id = self.new_conn(key, dest, dport, one_packet, Some(ct), None, now);
        // ip_vs_conn_put(ct): the template's timer restarts.
        self.conns.rearm(ct, now);
        self.conn_stats(dest, sid);
        Ok(id)
    }

    /// `ip_vs_leave`: no destination for a new connection.
    fn leave(&self, sid: ServiceId, p: &Packet) -> InVerdict {
        let svc_port = self.services[sid.index()].config.key.port();
        if svc_port == FTP_PORT && p.dport != FTP_PORT {
            InVerdict::Pass
        } else {
            InVerdict::Refuse(sid)
        }
    }

    fn conn_stats(&mut self, dest: DestId, sid: ServiceId) {
        self.dests[dest.index()].stats.add_conn();
        if let Some(s) = self.services.get_mut(sid.index()) {
            s.stats.add_conn();
        }
        self.total.add_conn();
    }

    fn traffic_stats(&mut self, dest: DestId, inbound: bool, bytes: u64) {
        self.count_on(dest, |s| {
            if inbound {
                s.add_in(bytes)
            } else {
                s.add_out(bytes)
            }
        });
    }

    /// Applies `add` to the counters of `dest`, its service and the totals;
    /// nothing for a destination that was removed (the kernel stops counting
    /// a dest in the trash).
    fn count_on(&mut self, dest: DestId, add: impl Fn(&mut Stats)) {
        let Some(d) = self.dests.get_mut(dest.index()) else {
            return;
        };
        if !d.available {
            return;
        }
        let sid = d.service;
        add(&mut d.stats);
        if let Some(s) = self.services.get_mut(sid.index()) {
            add(&mut s.stats);
        }
        add(&mut self.total);
    }

    /// The entry `id` if it is still the flow `key` (ids are reused after
    /// expiry).
    fn flow(&self, id: ConnId, key: &ConnKey) -> Option<&Conn> {
        self.conns.get(id).filter(|c| c.key == *key)
    }

    /// Marks a controlling template ASSURED (`ip_vs_control_assure_ct`).
    fn assure_control(&mut self, id: ConnId) {
        let ct = self.conns.get(id).and_then(Conn::control);
        if let Some(ct) = ct {
            if let Some(t) = self.conns.get_mut(ct) {
                if t.flags.template {
                    t.state = 1;
                }
            }
        }
    }

    /// The table a packet is looked up in, clearing NOOUTPUT on the first reply
    /// (`set_tcp_state`, `set_sctp_state`).
    fn table_dir(c: &mut Conn, outbound: bool) -> TableDir {
        if c.flags.no_output {
            if outbound {
                c.flags.no_output = false;
            } else {
                return TableDir::InputOnly;
            }
        }
        if outbound {
            TableDir::Output
        } else {
            TableDir::Input
        }
    }

    /// Moves a connection to `new`: active/inactive accounting on a change of
    /// activity, the state's timeout, and ASSURED on the template when the
    /// connection becomes established.
    fn apply_transition(
        &mut self,
        id: ConnId,
        new: u8,
        active: bool,
        timeout: Span,
        established: bool,
    ) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let changed = c.state != new;
        c.state = new;
        c.set_timeout(timeout);
        if !changed {
            return;
        }
        let dest = c.dest;
        let was_active = !c.flags.inactive;
        if was_active != active {
            c.flags.inactive = !active;
            if let Some(d) = self.dests.get_mut(dest.index()) {
                if active {
                    d.active_conns += 1;
                    d.inactive_conns = d.inactive_conns.saturating_sub(1);
                } else {
                    d.active_conns = d.active_conns.saturating_sub(1);
                    d.inactive_conns += 1;
                }
            }
            self.notify_load(dest);
        }
        if established {
            self.assure_control(id);
        }
    }

    /// The protocol state transition for one packet (`ip_vs_set_state`).
    fn set_state(&mut self, id: ConnId, outbound: bool, p: &Packet) {
        let secure = self.cfg.sysctl.secure_tcp;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match Protocol::from_number(c.key.proto) {
            Some(Protocol::Tcp) => {
                let dir = Self::table_dir(c, outbound);
                let old = TcpState::from_index(c.state).unwrap_or(TcpState::None);
                let new = tcp::next_state(old, dir, p.tcp, secure);
                let timeout = self.timeouts.tcp[new as usize];
                self.apply_transition(
                    id,
                    new.index(),
                    new.is_active(),
                    timeout,
                    new == TcpState::Established,
                );
            }
            Some(Protocol::Sctp) => {
                let Some(event) = p.sctp.event else {
                    return;
                };
                let dir = Self::table_dir(c, outbound);
                let old = SctpState::from_index(c.state).unwrap_or(SctpState::None);
                let new = sctp::next_state(old, dir, event);
                let timeout = self.timeouts.sctp[new.index() as usize];
                self.apply_transition(
                    id,
                    new.index(),
                    sctp::is_active(new),
                    timeout,
                    new == SctpState::Established,
                );
            }
            Some(Protocol::Udp) => {
                c.set_timeout(self.timeouts.udp);
                if outbound {
                    self.assure_control(id);
                }
            }
            None => {}
        }
    }

    /// Whether a new-connection packet may replace this old entry
    /// (`is_new_conn_expected`).
    fn new_conn_expected(&self, c: &Conn) -> bool {
        if c.control().is_some() {
            return false;
        }
        match proto_of(c) {
            Some(Protocol::Tcp) => {
                let s = TcpState::from_index(c.state);
                s == Some(TcpState::TimeWait)
                    || s == Some(TcpState::Close)
                    || (self.cfg.sysctl.conn_reuse_mode & 2 != 0
                        && s == Some(TcpState::FinWait)
                        && c.flags.no_output)
            }
            Some(Protocol::Sctp) => {
                SctpState::from_index(c.state).is_some_and(sctp::conn_reuse_expected)
            }
            _ => false,
        }
    }

    /// The bucket table of a hash-scheduled service (sh, dh, mh), built by the
    /// same pure functions its scheduler uses, with list positions turned into
    /// destination ids, so that a data plane can copy it and choose exactly as the
    /// scheduler does. `None` for other schedulers, an unknown id, or an mh table
    /// that cannot be built. Overload and weight 0 are not in the table: the
    /// scheduler refuses such a destination at lookup, so a copy must not pick it.
    pub fn hash_table(&self, id: ServiceId) -> Option<HashTable> {
        let svc = self.services.get(id.index())?;
        let set = DestSet::new(&svc.order, &self.dests);
        let (positions, bits, size) = match svc.config.scheduler {
            SchedulerKind::Sh => {
                let bits = crate::sched::sh::table_bits(self.cfg.sched.sh_tab_bits);
                (crate::sched::sh::build_table(set, bits), bits, 1u32 << bits)
            }
            SchedulerKind::Dh => {
                let bits = crate::sched::dh::TAB_BITS;
                (crate::sched::dh::build_table(set), bits, 1u32 << bits)
            }
            SchedulerKind::Mh => {
                let size = self.cfg.sched.mh_tab_size;
                (crate::sched::mh::build_table(set, size).ok()?, 0, size)
            }
            _ => return None,
        };
        let slots = positions
            .iter()
            .map(|p| p.and_then(|p| svc.order.get(p as usize).copied()))
            .collect();
        Some(HashTable {
            kind: svc.config.scheduler,
            bits,
            size,
            port: svc.config.sched_flags.flag2 && svc.config.scheduler != SchedulerKind::Dh,
            slots,
        })
    }

    /// Handles a packet from a client to a virtual address.
    pub fn handle_in(&mut self, p: &Packet, now: Time) -> InVerdict {
        let Some(proto) = Protocol::from_number(p.proto) else {
            return InVerdict::Pass;
        };
        let key = p.conn_key();
        let mut found = self.conns.lookup_in(&key);
        let opens = match proto {
            Protocol::Tcp => p.tcp.syn,
            Protocol::Sctp => sctp::is_new_conn(p.sctp.first_chunk),
            Protocol::Udp => false,
        };
        if let (Some(id), true) = (found, opens) {
            if let Some(c) = self.conns.get(id) {
                let dest_quiesced = self
                    .dests
                    .get(c.dest.index())
                    .is_some_and(|d| d.weight() == 0);
                let resched = (self.cfg.sysctl.expire_nodest_conn && dest_quiesced)
                    || (self.cfg.sysctl.conn_reuse_mode != 0 && self.new_conn_expected(c));
                if resched {
                    if c.n_control == 0 {
                        self.expire(id, now);
                    }
                    found = None;
                }
            }
        }
        if let Some(id) = found {
            let available = self
                .conns
                .get(id)
                .and_then(|c| self.dests.get(c.dest.index()))
                .is_some_and(|d| d.available);
            if !available {
                if self.cfg.sysctl.expire_nodest_conn {
                    self.expire(id, now);
                    found = None;
                } else {
                    return InVerdict::Drop;
                }
            }
        }
        let (id, new) = match found {
            Some(id) => (id, false),
            None => {
                let may_schedule = match proto {
                    Protocol::Tcp => {
                        !p.tcp.rst
                            && (p.tcp.syn || self.cfg.sysctl.sloppy_tcp || self.picks_up(p, proto))
                    }
                    Protocol::Udp => true,
                    Protocol::Sctp => {
                        sctp::schedules_new_conn(p.sctp.first_chunk, self.cfg.sysctl.sloppy_sctp)
                    }
                };
                if !may_schedule {
                    return InVerdict::Pass;
                }
                let Some(sid) = self.find_service(p, proto) else {
                    return InVerdict::Pass;
                };
                match self.schedule(sid, p, proto, now) {
                    Ok(id) => (id, true),
                    Err(v) => return v,
                }
            }
        };
        let Some(c) = self.conns.get(id) else {
            return InVerdict::Drop;
        };
        let dest = c.dest;
        self.traffic_stats(dest, true, u64::from(p.len));
        self.set_state(id, false, p);
        let Some(c) = self.conns.get_mut(id) else {
            return InVerdict::Drop;
        };
        c.in_pkts = c.in_pkts.wrapping_add(1);
        let (daddr, dport, one_packet, pkts) = (c.daddr, c.dport, c.flags.one_packet, c.in_pkts);
        let forward = self.dests[dest.index()].config.forward;
        if self.sync.is_some() {
            // A one-packet entry is never announced itself, so its count does
            // not matter; its template keeps its own.
            self.sync_conn(id, pkts, now);
        }
        if one_packet {
            // ip_vs_conn_put with ONE_PACKET: the entry goes at once.
            self.expire(id, now);
        } else {
            self.conns.rearm(id, now);
        }
        InVerdict::Forward(Forwarding {
            conn: (!one_packet).then_some(id),
            dest,
            daddr,
            dport,
            forward,
            new,
        })
    }

    /// Handles a packet from a real server back towards a client (NAT replies).
    pub fn handle_out(&mut self, p: &Packet, now: Time) -> OutVerdict {
        let key = OutKey {
            proto: p.proto,
            daddr: p.saddr,
            dport: p.sport,
            caddr: p.daddr,
            cport: p.dport,
        };
        let Some(id) = self.conns.lookup_out(&key) else {
            return OutVerdict::Pass;
        };
        let Some(c) = self.conns.get(id) else {
            return OutVerdict::Pass;
        };
        let (dest, vaddr, vport) = (c.dest, c.key.vaddr, c.key.vport);
        self.traffic_stats(dest, false, u64::from(p.len));
        self.set_state(id, true, p);
        self.conns.rearm(id, now);
        OutVerdict::Reply {
            conn: id,
            vaddr,
            vport,
        }
    }

    /// A segment of a flow that the plane terminates itself (the socket plane
    /// synthesizes the SYN-ACK, ACKs, FINs and RSTs the kernel would see on the
    /// wire for the same connection). Moves the state as `handle_in`/`handle_out`
    /// would, counts one packet and re-arms the timeout, but finds the entry by
    /// `id` (no lookup, no scheduling). `key` guards against an id that was
    /// expired and reused: `false` when the entry is gone or is another flow.
    /// `bytes` is what the packet carried (a UDP datagram's payload; 0 for a
    /// TCP control segment). For UDP, `flags` is ignored.
    pub fn handle_segment(
        &mut self,
        id: ConnId,
        key: &ConnKey,
        outbound: bool,
        flags: TcpFlags,
        bytes: u32,
        now: Time,
    ) -> bool {
        let Some(c) = self.flow(id, key) else {
            return false;
        };
        let dest = c.dest;
        self.traffic_stats(dest, !outbound, u64::from(bytes));
        let p = Packet {
            proto: key.proto,
            len: bytes,
            ..Packet::tcp(key.caddr, key.cport, key.vaddr, key.vport, flags)
        };
        self.set_state(id, outbound, &p);
        if !outbound {
            let pkts = self.conns.get_mut(id).map(|c| {
                c.in_pkts = c.in_pkts.wrapping_add(1);
                c.in_pkts
            });
            if let (Some(pkts), true) = (pkts, self.sync.is_some()) {
                self.sync_conn(id, pkts, now);
            }
        }
        self.conns.rearm(id, now);
        true
    }

    /// Traffic a plane relayed on one of its flows since its last report:
    /// counts it on the real server, its service and the totals, and pushes the
    /// expiry to `last_active` + the state's timeout (never earlier than it is).
    /// `false` when the entry is gone or `key` names another flow.
    pub fn handle_traffic(
        &mut self,
        id: ConnId,
        key: &ConnKey,
        traffic: Counters,
        last_active: Time,
    ) -> bool {
        let Some(c) = self.flow(id, key) else {
            return false;
        };
        let (dest, later) = (c.dest, last_active + c.timeout() > c.expires);
        self.count_on(dest, |s| s.add_bulk(traffic));
        let counts = self.conns.get_mut(id).map(|c| {
            let pkts = u32::try_from(traffic.in_pkts).unwrap_or(u32::MAX);
            let old = c.in_pkts;
            c.in_pkts = c.in_pkts.wrapping_add(pkts);
            (old, c.in_pkts)
        });
        if later {
            self.conns.rearm(id, last_active);
        }
        if let (Some((old, new)), true) = (counts, self.sync.is_some()) {
            if new >= old {
                self.sync_bulk(id, old, new, last_active);
            }
        }
        true
    }

    /// Expires one entry now (`ip_vs_conn_expire`): a template that still
    /// controls connections is kept another minute instead.
    fn expire(&mut self, id: ConnId, now: Time) -> Option<Conn> {
        let c = self.conns.get(id)?;
        if c.n_control > 0 {
            self.conns.refresh(id, EXPIRE_LATER, now);
            return None;
        }
        let conn = self.conns.remove(id)?;
        self.unbind(&conn);
        Some(conn)
    }

    /// Advances time: expires due connections (each expired one is passed to
    /// `on_expired`), runs the rate estimator every 2 s, scheduler housekeeping
    /// and the destination trash.
    pub fn handle_timeout(&mut self, now: Time, mut on_expired: impl FnMut(ConnId, &Conn)) {
        if std::mem::take(&mut self.nodest_flush) {
            self.flush_nodest(&mut on_expired);
        }
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.conns.due(now, &mut due);
        for &id in &due {
            if let Some(c) = self.expire(id, now) {
                on_expired(id, &c);
            }
        }
        self.due = due;

        let next = *self
            .next_estimation
            .get_or_insert(now + ESTIMATION_INTERVAL);
        if now >= next {
            let behind = now.millis_since(next) / ESTIMATION_INTERVAL.as_millis() + 1;
            for _ in 0..behind.min(32) {
                self.estimate();
            }
            self.next_estimation =
                Some(next + Span::from_millis(behind * ESTIMATION_INTERVAL.as_millis()));
        }

        for (_, svc) in self.services.iter_mut() {
            svc.sched.tick(now);
        }

        if let Some(t) = self.trash_timer {
            if now >= t {
                self.expire_trash(now);
            }
        }
    }

    /// `ip_vs_expire_nodest_conn_flush`: deletes every entry whose destination
    /// was removed and that controls nothing, then its template if that no longer
    /// controls anything.
    fn flush_nodest(&mut self, on_expired: &mut impl FnMut(ConnId, &Conn)) {
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.n_control == 0 && self.dests.get(c.dest.index()).is_some_and(|d| !d.available)
            })
            .map(|(id, _)| id)
            .collect();
        for id in victims {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            if c.n_control != 0 {
                continue;
            }
            let control = c.control();
            self.delete_conn(id, on_expired);
            if let Some(ct) = control {
                if self.conns.get(ct).is_some_and(|t| t.n_control == 0) {
                    self.delete_conn(ct, on_expired);
                }
            }
        }
    }

    fn delete_conn(&mut self, id: ConnId, on_expired: &mut impl FnMut(ConnId, &Conn)) {
        if let Some(conn) = self.conns.remove(id) {
            self.unbind(&conn);
            on_expired(id, &conn);
        }
    }

    fn estimate(&mut self) {
        self.total.estimate();
        for (_, s) in self.services.iter_mut() {
            s.stats.estimate();
        }
        for (_, d) in self.dests.iter_mut() {
            d.stats.estimate();
        }
    }

    /// `ip_vs_dest_trash_expire`.
    fn expire_trash(&mut self, now: Time) {
        let dests = &mut self.dests;
        self.trash.retain_mut(|t| {
            let Some(d) = dests.get(t.dest.index()) else {
                return false;
            };
            if d.bound() > 0 {
                return true;
            }
            match t.idle_since {
                None => {
                    t.idle_since = Some(now);
                    true
                }
                Some(since) if now < since + TRASH_PERIOD => true,
                Some(_) => {
                    dests.remove(t.dest.index());
                    false
                }
            }
        });
        self.trash_timer =
            (!self.trash.is_empty()).then(|| now + Span::from_millis(TRASH_PERIOD.as_millis() / 2));
    }

    /// Recomputes every counter from the connection table and checks the
    /// director's invariants; returns the first violation found. For tests and
    /// fuzzing: O(connections + destinations).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counted: HashMap<DestId, (u32, u32, u32)> = HashMap::new();
        let mut controls: HashMap<ConnId, u32> = HashMap::new();
        for (id, c) in self.conns.iter() {
            if self.dests.get(c.dest.index()).is_none() {
                return Err(format!("conn {id:?} bound to missing dest {:?}", c.dest));
            }
            let e = counted.entry(c.dest).or_default();
            if c.flags.template {
                e.2 += 1;
            } else if c.flags.inactive {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
            if let Some(ct) = c.control() {
                match self.conns.get(ct) {
                    Some(t) if t.flags.template => *controls.entry(ct).or_default() += 1,
                    _ => return Err(format!("conn {id:?} controlled by non-template {ct:?}")),
                }
            }
            let active_state = match proto_of(c) {
                _ if c.flags.template => None,
                Some(Protocol::Tcp) => TcpState::from_index(c.state).map(TcpState::is_active),
                Some(Protocol::Sctp) => SctpState::from_index(c.state).map(sctp::is_active),
                _ => Some(false),
            };
            if let Some(active) = active_state {
                if active == c.flags.inactive {
                    return Err(format!(
                        "conn {id:?} activity flag disagrees with its state"
                    ));
                }
            }
        }
        for (id, c) in self.conns.iter() {
            let want = controls.get(&id).copied().unwrap_or(0);
            if c.n_control != want {
                return Err(format!(
                    "template {id:?} n_control {} != {want}",
                    c.n_control
                ));
            }
        }
        for (i, d) in self.dests.iter() {
            let (a, ina, p) = counted.get(&DestId(i as u32)).copied().unwrap_or_default();
            if (d.active_conns, d.inactive_conns, d.persist_conns) != (a, ina, p) {
                return Err(format!(
                    "dest {i}: counters ({}, {}, {}) but table has ({a}, {ina}, {p})",
                    d.active_conns, d.inactive_conns, d.persist_conns
                ));
            }
        }
        for (sid, svc) in self.services.iter() {
            for (pos, id) in svc.order.iter().enumerate() {
                let d = self
                    .dests
                    .get(id.index())
                    .ok_or_else(|| format!("service {sid} lists missing dest {id:?}"))?;
                if !d.available || d.list_pos as usize != pos || d.service.index() != sid {
                    return Err(format!("dest {id:?} list bookkeeping is wrong"));
                }
            }
        }
        Ok(())
    }

    /// The next time `handle_timeout` has work, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.conns.next_deadline(),
            self.next_estimation,
            self.trash_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[path = "director_sync.rs"]
mod sync_rules;

#[cfg(test)]
#[path = "director_tests.rs"]
mod tests;
