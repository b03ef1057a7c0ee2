//! Decodes arbitrary bytes into a sequence of director operations and runs them,
//! checking the director after each one. Shared by the `director_ops` fuzz target
//! (fuzz/fuzz_targets/director_ops.rs, through `#[path]`) and the bounded proptest in
//! tests/ops_fuzz.rs.
//!
//! Every value is drawn from small pools (a few VIPs, real servers, clients, ports,
//! fwmarks) so that operations collide: the same service is added twice, a packet
//! hits a service that exists, a reply matches a NAT connection. Each pool also has
//! a "raw" entry so invalid and unusual values (weight 65536, persistence timeout 0,
//! IPv6 prefix 200, unknown protocols, GUE without a port) show up too.
//!
//! Checks after each operation:
//! * `Director::check_invariants()`;
//! * an operation that returned `Err` changed nothing observable (services and their
//!   scheduler state, destinations including trashed ones, connections, timeouts,
//!   sysctls, counters);
//! * after `handle_timeout(now)` with a non-decreasing `now`, no connection is left
//!   whose expiry is at or before `now`, and every connection reported expired is gone;
//! * a `Forward` verdict names an existing destination, and an existing connection
//!   unless it is one-packet; a `Reply` names an existing connection;
//! * `poll_timeout()` is `Some` whenever connections are tracked.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_core::director::SctpInfo;
use rvs_core::{
    ConnId, DestConfig, DestId, Director, DirectorConfig, Family, Forward, InVerdict, OutVerdict,
    Packet, Persistence, Protocol, SchedFlags, SchedulerKind, ServiceConfig, ServiceKey, Span,
    Sysctl, TcpFlags, Time, TunnelConfig, TunnelCsum, TunnelKind,
};

/// Reads values from the fuzzer's bytes; once they run out every read is 0.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// One of `pool`, or (for the index just past it) a raw value from `raw`.
    fn pick<T: Copy>(&mut self, pool: &[T], raw: impl FnOnce(&mut Self) -> T) -> T {
        let i = usize::from(self.u8()) % (pool.len() + 1);
        match pool.get(i) {
            Some(v) => *v,
            None => raw(self),
        }
    }
}

const VIPS_V4: [u32; 2] = [0x0a00_0001, 0x0a00_0002];
const RIPS_V4: [u32; 4] = [0xc0a8_0001, 0xc0a8_0002, 0xc0a8_0003, 0xc0a8_0004];
const CLIENTS_V4: [u32; 4] = [0xcb00_7101, 0xcb00_7102, 0xcb00_7201, 0x0a00_0001];
const PORTS: [u16; 10] = [80, 80, 80, 443, 0, 20, 21, 1024, 8080, 40000];
const MARKS: [u32; 5] = [0, 0, 0, 1, 2];

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

/// Mostly the first pooled IPv4 address, then the others, IPv6, and raw ones.
fn addr(b: &mut Bytes<'_>, v4: &[u32], v6_base: u16) -> IpAddr {
    let sel = b.u8();
    match sel % 16 {
        0..=7 => IpAddr::V4(Ipv4Addr::from(v4[0])),
        8..=12 => IpAddr::V4(Ipv4Addr::from(v4[usize::from(sel / 16) % v4.len()])),
        13..=14 => v6(v6_base + u16::from(sel / 16 % 3)),
        _ => {
            if sel & 0x80 == 0 {
                IpAddr::V4(Ipv4Addr::from(b.u32()))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    (u128::from(b.u64()) << 64) | u128::from(b.u64()),
                ))
            }
        }
    }
}

fn vip(b: &mut Bytes<'_>) -> IpAddr {
    addr(b, &VIPS_V4, 0x1)
}

fn rip(b: &mut Bytes<'_>) -> IpAddr {
    addr(b, &RIPS_V4, 0xa)
}

fn client(b: &mut Bytes<'_>) -> IpAddr {
    addr(b, &CLIENTS_V4, 0xc0)
}

fn port(b: &mut Bytes<'_>) -> u16 {
    b.pick(&PORTS, Bytes::u16)
}

fn client_port(b: &mut Bytes<'_>) -> u16 {
    b.pick(&[40000, 40001, 40002, 20, 1023], Bytes::u16)
}

fn protocol(b: &mut Bytes<'_>) -> Protocol {
    match b.u8() % 6 {
        0..=2 => Protocol::Tcp,
        3..=4 => Protocol::Udp,
        _ => Protocol::Sctp,
    }
}

pub fn service_key(b: &mut Bytes<'_>) -> ServiceKey {
    if b.u8().is_multiple_of(4) {
        ServiceKey::Fwmark {
            mark: b.pick(&[1, 1, 2], Bytes::u32),
            family: if b.u8().is_multiple_of(4) {
                Family::V6
            } else {
                Family::V4
            },
        }
    } else {
        ServiceKey::Addr {
            proto: protocol(b),
            addr: vip(b),
            port: port(b),
        }
    }
}

/// A service named by position among the existing ones (resolved when the
/// operation runs), or a key of its own.
#[derive(Clone, Copy, Debug)]
pub enum KeySel {
    Existing(u8),
    Key(ServiceKey),
}

fn key_sel(b: &mut Bytes<'_>) -> KeySel {
    if b.u8().is_multiple_of(4) {
        KeySel::Key(service_key(b))
    } else {
        KeySel::Existing(b.u8())
    }
}

fn service_config(b: &mut Bytes<'_>) -> ServiceConfig {
    let key = service_key(b);
    let mut cfg = ServiceConfig::new(key);
    let s = usize::from(b.u8()) % SchedulerKind::ALL.len();
    cfg.scheduler = SchedulerKind::ALL[s];
    let f = b.u8();
    cfg.sched_flags = SchedFlags {
        flag1: f & 1 != 0,
        flag2: f & 2 != 0,
        flag3: f & 4 != 0,
    };
    if f & 8 != 0 {
        cfg.persistence = Some(Persistence {
            timeout: b.pick(&[1, 2, 60, 360, 0, 2_678_400, 2_678_401], Bytes::u32),
            netmask: b.pick(&[u32::MAX, 0xffff_ff00, 0, 64, 128, 129], Bytes::u32),
        });
    }
    cfg.one_packet = f & 16 != 0;
    cfg.pe_name = match (f >> 5) % 8 {
        1 => Some("sip".to_string()),
        2 => Some("bogus".to_string()),
        _ => None,
    };
    cfg
}

fn forward(b: &mut Bytes<'_>) -> Forward {
    match b.u8() % 8 {
        0..=2 => Forward::Masq,
        3..=4 => Forward::Route,
        5 => Forward::Local,
        6 => Forward::FullNat,
        _ => {
            let k = b.u8();
            Forward::Tunnel(TunnelConfig {
                kind: match k % 3 {
                    0 => TunnelKind::Ipip,
                    1 => TunnelKind::Gue,
                    _ => TunnelKind::Gre,
                },
                port: if k & 4 != 0 { b.u16() } else { 0 },
                csum: match (k >> 3) % 3 {
                    0 => TunnelCsum::NoCsum,
                    1 => TunnelCsum::Csum,
                    _ => TunnelCsum::RemCsum,
                },
            })
        }
    }
}

fn dest_config(b: &mut Bytes<'_>) -> DestConfig {
    let mut d = DestConfig::new(rip(b), port(b));
    d.weight = b.pick(&[1, 1, 2, 5, 0, 100, 65_535, 1 << 31], Bytes::u32);
    d.forward = forward(b);
    d.u_threshold = b.pick(&[0, 0, 0, 1, 2, 3, 10], Bytes::u32);
    d.l_threshold = b.pick(&[0, 0, 0, 1, 2, 5, 20], Bytes::u32);
    d
}

/// An SCTP segment: common header, then one to three chunks of pooled or raw types
/// with pooled or raw lengths, possibly truncated.
fn sctp_info(b: &mut Bytes<'_>) -> SctpInfo {
    let mut seg = vec![0u8; 12];
    let chunks = 1 + b.u8() % 3;
    for _ in 0..chunks {
        let ty = b.pick(&[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 14, 0xc0], Bytes::u8);
        let len = b.pick(&[4, 8, 16, 0, 5], Bytes::u16);
        seg.extend_from_slice(&[ty, 0]);
        seg.extend_from_slice(&len.to_be_bytes());
        let pad = usize::from(len.saturating_sub(4).min(16)).next_multiple_of(4);
        seg.extend(std::iter::repeat_n(0u8, pad));
    }
    let cut = b.u8();
    if cut < 16 {
        seg.truncate(usize::from(cut) + 4);
    }
    SctpInfo::from_segment(&seg).unwrap_or_default()
}

fn tcp_flags(b: &mut Bytes<'_>) -> TcpFlags {
    // SYN, ACK, FIN|ACK, RST, SYN|ACK, FIN, RST|ACK, none, or raw.
    let byte = b.pick(
        &[0x02, 0x02, 0x10, 0x10, 0x11, 0x04, 0x12, 0x01, 0x14, 0],
        Bytes::u8,
    );
    TcpFlags::from_byte(byte)
}

/// A packet; its addresses, ports, protocol and mark may be replaced when the
/// operation runs (see [`Target`]).
fn packet(b: &mut Bytes<'_>, inbound: bool) -> Packet {
    let proto = b.pick(&[6, 6, 17, 132, 0, 1], Bytes::u8);
    let (saddr, sport, daddr, dport) = if inbound {
        (client(b), client_port(b), vip(b), port(b))
    } else {
        (rip(b), port(b), client(b), client_port(b))
    };
    Packet {
        proto,
        saddr,
        sport,
        daddr,
        dport,
        fwmark: b.pick(&MARKS, Bytes::u32),
        tcp: tcp_flags(b),
        sctp: sctp_info(b),
        len: u32::from(b.u16()),
    }
}

/// Where a packet goes, resolved when the operation runs.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The packet as decoded.
    Raw,
    /// Inbound only: to the n-th existing service (its protocol, address and
    /// port, or its mark).
    Service(u8),
    /// The n-th tracked connection, in the packet's direction (client side
    /// inbound, server side outbound).
    Conn(u8),
}

fn target(b: &mut Bytes<'_>, inbound: bool) -> Target {
    match b.u8() % 8 {
        0 => Target::Raw,
        1..=3 if inbound => Target::Service(b.u8()),
        _ => Target::Conn(b.u8()),
    }
}

fn sysctl(b: &mut Bytes<'_>) -> Sysctl {
    let f = b.u8();
    Sysctl {
        conn_reuse_mode: b.u8() % 4,
        expire_nodest_conn: f & 1 != 0,
        expire_quiescent_template: f & 2 != 0,
        sloppy_tcp: f & 4 != 0,
        sloppy_sctp: f & 8 != 0,
        secure_tcp: f & 16 != 0,
        lblc_expiration: Span::from_secs(u64::from(b.u8()) * 60),
        lblcr_expiration: Span::from_secs(u64::from(b.u8()) * 60),
    }
}

/// One operation on the director.
#[derive(Clone, Debug)]
pub enum Op {
    AddService(ServiceConfig),
    /// The config's key is replaced by the selected service's key when the
    /// selector names an existing one.
    EditService(KeySel, ServiceConfig),
    DeleteService(KeySel),
    AddDest(KeySel, DestConfig),
    /// The address and port are those of the selected service's n-th destination
    /// when the `Option` is set and that destination exists.
    EditDest(KeySel, Option<u8>, DestConfig),
    DeleteDest(KeySel, Option<u8>, IpAddr, u16),
    In(Target, Packet),
    Out(Target, Packet),
    /// Advance the clock by this many ms, then `handle_timeout`.
    Advance(u64),
    /// An inbound packet stamped this many ms before the current time (the core
    /// treats a past time as now).
    InLate(Target, Packet, u64),
    SetTimeouts(u64, u64, u64),
    Zero(Option<KeySel>),
    Clear,
    Sysctl(Sysctl),
}

fn dest_sel(b: &mut Bytes<'_>) -> Option<u8> {
    if !b.u8().is_multiple_of(4) {
        Some(b.u8())
    } else {
        None
    }
}

pub fn op(b: &mut Bytes<'_>) -> Op {
    match b.u8() % 64 {
        0..=3 => Op::AddService(service_config(b)),
        4 => Op::EditService(key_sel(b), service_config(b)),
        5 => Op::DeleteService(key_sel(b)),
        6..=13 => Op::AddDest(key_sel(b), dest_config(b)),
        14..=15 => Op::EditDest(key_sel(b), dest_sel(b), dest_config(b)),
        16 => Op::DeleteDest(key_sel(b), dest_sel(b), rip(b), port(b)),
        17..=38 => Op::In(target(b, true), packet(b, true)),
        39..=48 => Op::Out(target(b, false), packet(b, false)),
        49..=54 => Op::Advance(match b.u8() % 8 {
            0..=2 => u64::from(b.u16() % 1000),
            3..=4 => u64::from(b.u16()) * 100,
            5 => u64::from(b.u32()),
            6 => 3_600_000 * u64::from(b.u8()),
            _ => b.u64() % (1 << 50),
        }),
        55..=56 => Op::InLate(target(b, true), packet(b, true), u64::from(b.u32())),
        57 => Op::SetTimeouts(
            b.pick(&[0, 1, 10, 900, 2_147_483, 2_147_484], Bytes::u64),
            b.pick(&[0, 1, 120], Bytes::u64),
            b.pick(&[0, 1, 300], Bytes::u64),
        ),
        58 => Op::Zero(if b.bool() { Some(key_sel(b)) } else { None }),
        59 => Op::Clear,
        _ => Op::Sysctl(sysctl(b)),
    }
}

/// Decodes all operations in `data` (at most `max_ops`).
pub fn decode(data: &[u8], max_ops: usize) -> Vec<Op> {
    let mut b = Bytes::new(data);
    let mut ops = Vec::new();
    while !b.is_empty() && ops.len() < max_ops {
        ops.push(op(&mut b));
    }
    ops
}

/// The key a selector names now.
fn resolve_key(d: &Director, k: &KeySel) -> ServiceKey {
    match *k {
        KeySel::Key(k) => k,
        KeySel::Existing(i) => {
            let mut keys: Vec<ServiceKey> = d.services().map(|s| s.config.key).collect();
            keys.sort();
            match keys.len() {
                0 => ServiceKey::Fwmark {
                    mark: 0xdead,
                    family: Family::V4,
                },
                n => keys[usize::from(i) % n],
            }
        }
    }
}

/// The address and port of a destination selector, else the given ones.
fn resolve_dest(
    d: &Director,
    key: &ServiceKey,
    sel: Option<u8>,
    a: IpAddr,
    p: u16,
) -> (IpAddr, u16) {
    let Some(i) = sel else { return (a, p) };
    let Some(svc) = d.service_by_key(key) else {
        return (a, p);
    };
    let ids = svc.dest_ids();
    if ids.is_empty() {
        return (a, p);
    }
    match d.dest(ids[usize::from(i) % ids.len()]) {
        Some(dest) => (dest.config.addr, dest.config.port),
        None => (a, p),
    }
}

fn client_of(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(CLIENTS_V4[0])),
        Family::V6 => v6(0xc0),
    }
}

/// The packet a target names now.
fn resolve_packet(d: &Director, t: Target, p: &Packet, inbound: bool) -> Packet {
    let mut p = *p;
    match t {
        Target::Raw => {}
        Target::Service(i) => match resolve_key(d, &KeySel::Existing(i)) {
            ServiceKey::Addr { proto, addr, port } => {
                p.proto = proto.number();
                p.daddr = addr;
                if port != 0 {
                    p.dport = port;
                }
                if Family::of(&p.saddr) != Family::of(&addr) {
                    p.saddr = client_of(Family::of(&addr));
                }
            }
            ServiceKey::Fwmark { mark, family } => {
                p.fwmark = mark;
                if Family::of(&p.daddr) != family {
                    p.daddr = match family {
                        Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
                        Family::V6 => v6(0x99),
                    };
                    p.saddr = client_of(family);
                }
            }
        },
        Target::Conn(i) => {
            let n = d.conn_count();
            if n > 0 {
                if let Some((_, c)) = d.conns().nth(usize::from(i) % n) {
                    p.proto = c.key.proto;
                    if inbound {
                        p.saddr = c.key.caddr;
                        p.sport = c.key.cport;
                        p.daddr = c.key.vaddr;
                        p.dport = c.key.vport;
                    } else {
                        p.saddr = c.daddr;
                        p.sport = c.dport;
                        p.daddr = c.key.caddr;
                        p.dport = c.key.cport;
                    }
                }
            }
        }
    }
    p
}

/// Everything a rejected operation must leave unchanged, as text.
fn snapshot(d: &Director, max_dest: u32) -> String {
    let mut s = String::new();
    let mut svcs: Vec<_> = d.services().collect();
    svcs.sort_by_key(|s| s.id);
    for svc in svcs {
        let _ = writeln!(s, "{svc:?} {:?}", svc.stats);
    }
    for i in 0..=max_dest {
        if let Some(dest) = d.dest(DestId(i)) {
            let _ = writeln!(s, "{dest:?}");
        }
    }
    for (id, c) in d.conns() {
        let _ = writeln!(s, "{id:?} {c:?}");
    }
    let _ = writeln!(
        s,
        "{:?} {:?} {:?} {:?}",
        d.timeouts(),
        d.config(),
        d.total_stats(),
        d.poll_timeout()
    );
    s
}

/// Runs `ops` on a fresh director; `Err` describes the first violated check.
pub fn run(ops: &[Op]) -> Result<(), String> {
    let mut d = Director::new(DirectorConfig::default());
    let mut now = Time::ZERO;
    // Highest destination id seen, for snapshots (ids are slab keys).
    let mut max_dest = 0u32;
    for (step, op) in ops.iter().enumerate() {
        step_once(&mut d, &mut now, &mut max_dest, op)
            .map_err(|e| format!("step {step}: {op:?}: {e}"))?;
    }
    Ok(())
}

fn step_once(d: &mut Director, now: &mut Time, max_dest: &mut u32, op: &Op) -> Result<(), String> {
    let before = is_control(op).then(|| snapshot(d, *max_dest + 1));
    let rejected = match op {
        Op::AddService(cfg) => d.add_service(cfg.clone()).is_err(),
        Op::EditService(k, cfg) => {
            let mut cfg = cfg.clone();
            if let KeySel::Existing(_) = k {
                cfg.key = resolve_key(d, k);
            }
            d.edit_service(cfg).is_err()
        }
        Op::DeleteService(k) => {
            let k = resolve_key(d, k);
            d.delete_service(&k, *now).is_err()
        }
        Op::AddDest(k, cfg) => {
            let k = resolve_key(d, k);
            match d.add_dest(&k, *cfg) {
                Ok(id) => {
                    *max_dest = (*max_dest).max(id.0);
                    if d.dest(id).map(|x| x.config) != Some(*cfg) {
                        return Err("added destination does not carry its config".into());
                    }
                    false
                }
                Err(_) => true,
            }
        }
        Op::EditDest(k, sel, cfg) => {
            let k = resolve_key(d, k);
            let (addr, port) = resolve_dest(d, &k, *sel, cfg.addr, cfg.port);
            d.edit_dest(&k, DestConfig { addr, port, ..*cfg }).is_err()
        }
        Op::DeleteDest(k, sel, a, p) => {
            let k = resolve_key(d, k);
            let (addr, port) = resolve_dest(d, &k, *sel, *a, *p);
            d.delete_dest(&k, addr, port, *now).is_err()
        }
        Op::In(t, p) => {
            let p = resolve_packet(d, *t, p, true);
            let v = d.handle_in(&p, *now);
            check_in(d, v)?;
            false
        }
        Op::InLate(t, p, ago) => {
            let p = resolve_packet(d, *t, p, true);
            let at = Time::from_millis(now.as_millis().saturating_sub(*ago));
            let v = d.handle_in(&p, at);
            check_in(d, v)?;
            false
        }
        Op::Out(t, p) => {
            let p = resolve_packet(d, *t, p, false);
            if let OutVerdict::Reply { conn, .. } = d.handle_out(&p, *now) {
                if d.conn(conn).is_none() {
                    return Err("reply names a missing connection".into());
                }
            }
            false
        }
        Op::Advance(ms) => {
            *now = Time::from_millis(now.as_millis().saturating_add(*ms));
            let t = *now;
            let mut expired: Vec<ConnId> = Vec::new();
            d.handle_timeout(t, |id, _| expired.push(id));
            if let Some(id) = expired.iter().find(|id| d.conn(**id).is_some()) {
                return Err(format!("{id:?} reported expired is still tracked"));
            }
            if let Some((id, c)) = d.conns().find(|(_, c)| c.expires <= t) {
                return Err(format!(
                    "after handle_timeout({t}) {id:?} still expires at {}: {c:?}",
                    c.expires
                ));
            }
            false
        }
        Op::SetTimeouts(a, b, c) => d.set_timeouts(*a, *b, *c).is_err(),
        Op::Zero(k) => {
            let k = k.as_ref().map(|k| resolve_key(d, k));
            d.zero(k.as_ref()).is_err()
        }
        Op::Clear => {
            d.clear(*now);
            false
        }
        Op::Sysctl(s) => {
            d.set_sysctl(*s);
            false
        }
    };
    d.check_invariants()
        .map_err(|e| format!("invariant: {e}"))?;
    if let (Some(before), true) = (before, rejected) {
        let after = snapshot(d, *max_dest + 1);
        if after != before {
            return Err(format!(
                "rejected operation changed state:\n--- before\n{before}--- after\n{after}"
            ));
        }
    }
    if d.conn_count() > 0 && d.poll_timeout().is_none() {
        return Err("connections tracked but no timeout pending".into());
    }
    Ok(())
}

fn is_control(op: &Op) -> bool {
    matches!(
        op,
        Op::AddService(_)
            | Op::EditService(..)
            | Op::DeleteService(_)
            | Op::AddDest(..)
            | Op::EditDest(..)
            | Op::DeleteDest(..)
            | Op::SetTimeouts(..)
            | Op::Zero(_)
    )
}

fn check_in(d: &Director, v: InVerdict) -> Result<(), String> {
    match v {
        InVerdict::Forward(f) => {
            if d.dest(f.dest).is_none() {
                return Err("forward to a missing destination".into());
            }
            if let Some(c) = f.conn {
                if d.conn(c).is_none() {
                    return Err("forward names a missing connection".into());
                }
            }
        }
        InVerdict::Refuse(sid) => {
            if d.service(sid).is_none() {
                return Err("refused by a missing service".into());
            }
        }
        InVerdict::Pass | InVerdict::Drop => {}
    }
    Ok(())
}

/// Counts of what a run reached, to judge how deep random inputs go.
#[derive(Debug, Default)]
pub struct Reach {
    pub ops: usize,
    pub services_added: usize,
    pub dests_added: usize,
    pub forwards_new: usize,
    pub forwards_existing: usize,
    pub replies: usize,
    pub expired: usize,
    pub max_conns: usize,
    pub rejected: usize,
}

/// Like `run` without the checks, counting what was reached.
pub fn reach(ops: &[Op], r: &mut Reach) {
    let mut d = Director::new(DirectorConfig::default());
    let mut now = Time::ZERO;
    let mut max_dest = 0;
    for op in ops {
        r.ops += 1;
        let conns = d.conn_count();
        match op {
            Op::AddService(cfg) => match d.add_service(cfg.clone()) {
                Ok(_) => r.services_added += 1,
                Err(_) => r.rejected += 1,
            },
            Op::AddDest(k, cfg) => {
                let k = resolve_key(&d, k);
                match d.add_dest(&k, *cfg) {
                    Ok(_) => r.dests_added += 1,
                    Err(_) => r.rejected += 1,
                }
            }
            Op::In(t, p) | Op::InLate(t, p, _) => {
                let p = resolve_packet(&d, *t, p, true);
                if let InVerdict::Forward(f) = d.handle_in(&p, now) {
                    if f.new {
                        r.forwards_new += 1;
                    } else {
                        r.forwards_existing += 1;
                    }
                }
            }
            Op::Out(t, p) => {
                let p = resolve_packet(&d, *t, p, false);
                if let OutVerdict::Reply { .. } = d.handle_out(&p, now) {
                    r.replies += 1;
                }
            }
            Op::Advance(_) => {
                let _ = step_once(&mut d, &mut now, &mut max_dest, op);
                r.expired += conns.saturating_sub(d.conn_count());
            }
            _ => {
                let _ = step_once(&mut d, &mut now, &mut max_dest, op);
            }
        }
        r.max_conns = r.max_conns.max(d.conn_count());
    }
}
