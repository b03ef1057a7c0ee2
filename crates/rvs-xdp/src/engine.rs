//! The Rust reference engine: the packet plane of `bpf/rvs_xdp.c` run over
//! in-memory copies of its maps ([`Tables`]). docs/packet-plane.md is the contract
//! for both; a differential test holds them to the same verdicts, counters and
//! output bytes, so every rule here follows that text to the letter (parsing order,
//! the RFC 1624 `update` function, counter choice, flow creation, encapsulation
//! fields, ICMP handling, guard arithmetic).
//!
//! Userspace also uses it: [`parse`] to ask the core about an upcalled frame,
//! [`entries_for`] to install the same flow entries the program would create,
//! [`apply`] to send the upcalled frame on once its entry exists, and
//! [`mark_entries`] to turn the core's classifier rules into `rvs_marks` keys.
//!
//! Invariants: nothing here panics on any frame or table content (every read of
//! frame bytes is bounds-checked); a `Pass`, `Drop` or `Upcall` output carries the
//! input frame unchanged; `stats[Rx]` grows by one per [`process`] call and exactly
//! one other counter names the outcome, except the documented extras (`Notify`,
//! `XdpSched`, `DropRingbuf`) counted in addition.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_core::sched::hash::{fold_addr, hash_32, hsiphash_u32};
use rvs_core::sched::{mh, sh};

use rvs_core::MarkRule;

use crate::abi::{
    self, addr_bytes, Config, Event, Flow, FlowKey, MarkKey, Real, Stat, Vip, VipKey,
};

const ETH_HLEN: usize = 14;
const ETH_ADDR_LEN: usize = 6;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const ICMP_HLEN: usize = 8;
/// The largest frame the program sends (1500-byte MTU plus Ethernet).
const MAX_FRAME: usize = 1514;

const PROTO_ICMP: u8 = 1;
const PROTO_IPIP: u8 = 4;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_ICMPV6: u8 = 58;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const IPV4_DF: u16 = 0x4000;
/// MF and the fragment offset.
const IPV4_FRAG_MASK: u16 = 0x3FFF;
/// TTL / hop limit of encapsulated packets and echo replies.
const NEW_TTL: u8 = 64;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 destination unreachable, packet too big, time exceeded.
const ICMPV6_ERRORS: [u8; 3] = [1, 2, 3];
/// Where an ICMP error's quoted packet starts in the ICMP message.
const ICMP_QUOTE_OFFSET: usize = 8;

const FNV_OFFSET: u32 = 0x811C_9DC5;
const FNV_PRIME: u32 = 0x0100_0193;

/// In-memory mirror of the BPF maps.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub config: abi::Config,
    pub vips: HashMap<abi::VipKey, abi::Vip>,
    /// Addresses that answer echo requests (`port_be` 0, `proto` 0).
    pub vip_addrs: HashSet<abi::VipKey>,
    /// The classifier (`rvs_marks`, an LPM trie): entry -> mark.
    pub marks: HashMap<abi::MarkKey, u32>,
    /// Index -> real (absent = zeroed array slot).
    pub reals: HashMap<u32, abi::Real>,
    /// Slot -> real index (absent = 0, as in a zeroed BPF array).
    pub hash: HashMap<u32, u32>,
    pub flows: HashMap<abi::FlowKey, abi::Flow>,
    pub stats: [u64; abi::Stat::COUNT],
    pub guard: abi::Guard,
    /// Records queued (upcall / new / control), in order.
    pub events: Vec<abi::Event>,
}

/// What the program returns for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Out of the interface the frame came in on.
    Tx,
    /// `bpf_redirect_map(&rvs_tx, ifindex, 0)`.
    Redirect(u32),
    /// A record was queued for userspace; the program dropped the frame.
    Upcall,
}

impl Verdict {
    /// The XDP action number (`XDP_DROP` 1, `XDP_PASS` 2, `XDP_TX` 3,
    /// `XDP_REDIRECT` 4); an upcall is an `XDP_DROP`.
    pub fn xdp_action(self) -> u32 {
        match self {
            Verdict::Drop | Verdict::Upcall => 1,
            Verdict::Pass => 2,
            Verdict::Tx => 3,
            Verdict::Redirect(_) => 4,
        }
    }
}

/// A verdict and the frame as the program leaves it (unchanged for `Pass`, `Drop`
/// and `Upcall`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub verdict: Verdict,
    pub frame: Vec<u8>,
}

/// What userspace needs of a frame to ask the core (the fields of
/// `rvs_core::director::Packet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// `abi::FAMILY_V4` or `abi::FAMILY_V6`.
    pub family: u8,
    pub proto: u8,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    /// Host order; 0 for ICMP.
    pub sport: u16,
    /// Host order; 0 for ICMP.
    pub dport: u16,
    /// The raw TCP flag byte (FIN 1, SYN 2, RST 4, PSH 8, ACK 16); 0 for other protocols.
    pub tcp_flags: u8,
    /// IPv4 `tot_len`, or 40 + IPv6 `payload_len`.
    pub ip_len: u32,
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
}

impl Parsed {
    /// The flow key of the packet as received.
    pub fn flow_key(&self) -> abi::FlowKey {
        FlowKey {
            saddr: addr_bytes(self.saddr),
            daddr: addr_bytes(self.daddr),
            sport_be: self.sport.to_be(),
            dport_be: self.dport.to_be(),
            proto: self.proto,
            family: self.family,
        }
    }

    fn is_v4(&self) -> bool {
        self.family == abi::FAMILY_V4
    }

    /// Offset of the L4 header in the frame (no IPv4 options, no IPv6 extension
    /// headers get this far).
    fn l4_offset(&self) -> usize {
        ETH_HLEN + if self.is_v4() { IPV4_HLEN } else { IPV6_HLEN }
    }

    /// Offsets of the source and destination addresses and their length.
    fn addr_offsets(&self) -> (usize, usize, usize) {
        if self.is_v4() {
            (ETH_HLEN + 12, ETH_HLEN + 16, 4)
        } else {
            (ETH_HLEN + 8, ETH_HLEN + 24, 16)
        }
    }

    fn ip_len_usize(&self) -> usize {
        self.ip_len as usize
    }

    fn is_icmp(&self) -> bool {
        (self.is_v4() && self.proto == PROTO_ICMP) || (!self.is_v4() && self.proto == PROTO_ICMPV6)
    }

    fn has(&self, flag: u8) -> bool {
        self.proto == PROTO_TCP && self.tcp_flags & flag != 0
    }
}

fn bytes<const N: usize>(f: &[u8], off: usize) -> Option<[u8; N]> {
    f.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn byte(f: &[u8], off: usize) -> Option<u8> {
    f.get(off).copied()
}

fn be16(f: &[u8], off: usize) -> Option<u16> {
    bytes::<2>(f, off).map(u16::from_be_bytes)
}

fn put(f: &mut [u8], off: usize, b: &[u8]) -> Option<()> {
    f.get_mut(off..off.checked_add(b.len())?)?
        .copy_from_slice(b);
    Some(())
}

/// Reads a frame as the program does (docs/packet-plane.md, "Parsing"). `Err` is
/// the counter the program counts for a frame it does not look further into
/// (`PassNotIp`, `DropMalformed`, `PassIpOptions`, `PassFragment`, `PassNotVip`).
pub fn parse(frame: &[u8]) -> Result<Parsed, abi::Stat> {
    let eth: [u8; ETH_HLEN] = bytes(frame, 0).ok_or(Stat::DropMalformed)?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = eth;
    let eth_dst = [d0, d1, d2, d3, d4, d5];
    let eth_src = [s0, s1, s2, s3, s4, s5];
    let present = frame.len() - ETH_HLEN;
    let (family, proto, saddr, daddr, ip_len) = match u16::from_be_bytes([t0, t1]) {
        ETH_P_IP => {
            let hdr: [u8; IPV4_HLEN] = bytes(frame, ETH_HLEN).ok_or(Stat::DropMalformed)?;
            let [vihl, _tos, l0, l1, _, _, f0, f1, _ttl, proto, _, _, a0, a1, a2, a3, b0, b1, b2, b3] =
                hdr;
            let tot_len = usize::from(u16::from_be_bytes([l0, l1]));
            if vihl >> 4 != 4 || tot_len < IPV4_HLEN || tot_len > present {
                return Err(Stat::DropMalformed);
            }
            if vihl & 0x0F != 5 {
                return Err(Stat::PassIpOptions);
            }
            if u16::from_be_bytes([f0, f1]) & IPV4_FRAG_MASK != 0 {
                return Err(Stat::PassFragment);
            }
            let saddr = IpAddr::V4(Ipv4Addr::new(a0, a1, a2, a3));
            let daddr = IpAddr::V4(Ipv4Addr::new(b0, b1, b2, b3));
            (abi::FAMILY_V4, proto, saddr, daddr, tot_len)
        }
        ETH_P_IPV6 => {
            let first: [u8; 8] = bytes(frame, ETH_HLEN).ok_or(Stat::DropMalformed)?;
            if present < IPV6_HLEN {
                return Err(Stat::DropMalformed);
            }
            let [v, _, _, _, p0, p1, next, _hop] = first;
            let ip_len = IPV6_HLEN + usize::from(u16::from_be_bytes([p0, p1]));
            if v >> 4 != 6 || ip_len > present {
                return Err(Stat::DropMalformed);
            }
            if next == PROTO_FRAGMENT {
                return Err(Stat::PassFragment);
            }
            if !matches!(next, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
                return Err(Stat::PassIpOptions);
            }
            let s: [u8; 16] = bytes(frame, ETH_HLEN + 8).ok_or(Stat::DropMalformed)?;
            let d: [u8; 16] = bytes(frame, ETH_HLEN + 24).ok_or(Stat::DropMalformed)?;
            let saddr = IpAddr::V6(Ipv6Addr::from(s));
            let daddr = IpAddr::V6(Ipv6Addr::from(d));
            (abi::FAMILY_V6, next, saddr, daddr, ip_len)
        }
        _ => return Err(Stat::PassNotIp),
    };
    let mut parsed = Parsed {
        family,
        proto,
        saddr,
        daddr,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ip_len: u32::try_from(ip_len).map_err(|_| Stat::DropMalformed)?,
        eth_src,
        eth_dst,
    };
    let l4 = parsed.l4_offset();
    // Bytes of the L4 header and payload inside the IP length.
    let l4_len = (ETH_HLEN + ip_len).saturating_sub(l4);
    let malformed = |short: bool| {
        if short {
            Err(Stat::DropMalformed)
        } else {
            Ok(())
        }
    };
    match proto {
        PROTO_TCP => {
            malformed(l4_len < TCP_MIN_HLEN)?;
            let doff = usize::from(byte(frame, l4 + 12).ok_or(Stat::DropMalformed)? >> 4) * 4;
            malformed(doff < TCP_MIN_HLEN || doff > l4_len)?;
            parsed.tcp_flags = byte(frame, l4 + 13).ok_or(Stat::DropMalformed)?;
        }
        PROTO_UDP => malformed(l4_len < UDP_HLEN)?,
        _ if parsed.is_icmp() => malformed(l4_len < ICMP_HLEN)?,
        _ => return Err(Stat::PassNotVip),
    }
    if matches!(proto, PROTO_TCP | PROTO_UDP) {
        parsed.sport = be16(frame, l4).ok_or(Stat::DropMalformed)?;
        parsed.dport = be16(frame, l4 + 2).ok_or(Stat::DropMalformed)?;
    }
    Ok(parsed)
}

/// The flow hash of the contract (FNV-1a-like over 32-bit words, each step
/// followed by `h ^= h >> 16`): it picks the GUE source port, the spread bits of
/// the outer IPv4 source and the outer IPv6 flow label.
pub fn flow_hash(key: &abi::FlowKey) -> u32 {
    let words = |a: &[u8; 16]| {
        let mut out = [0u32; 4];
        for (w, chunk) in out.iter_mut().zip(a.chunks_exact(4)) {
            *w = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        }
        out
    };
    let ports =
        (u32::from(u16::from_be(key.sport_be)) << 16) | u32::from(u16::from_be(key.dport_be));
    let mut h = FNV_OFFSET;
    let all = words(&key.saddr)
        .into_iter()
        .chain(words(&key.daddr))
        .chain([ports, u32::from(key.proto)]);
    for w in all {
        h = (h ^ w).wrapping_mul(FNV_PRIME);
        h ^= h >> 16;
    }
    h
}

/// RFC 1624 incremental update of a ones' complement checksum, exactly the
/// contract's `update`: `old` and `new` are replaced 16-bit big-endian words (an
/// odd trailing byte counts as the high byte of a word).
pub fn update_checksum(check: u16, old: &[u8], new: &[u8]) -> u16 {
    fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
        b.chunks(2).map(|c| {
            let hi = u32::from(c.first().copied().unwrap_or(0));
            let lo = u32::from(c.get(1).copied().unwrap_or(0));
            (hi << 8) | lo
        })
    }
    let mut sum = u32::from(!check);
    for o in words(old) {
        sum += !o & 0xFFFF;
    }
    for n in words(new) {
        sum += n;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // The loop leaves a 16-bit value.
    !(sum as u16)
}

/// The full ones' complement checksum of an IPv4 header (its checksum field
/// counted as stored: zero it first).
fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| {
            let hi = u32::from(c.first().copied().unwrap_or(0));
            let lo = u32::from(c.get(1).copied().unwrap_or(0));
            (hi << 8) | lo
        })
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn egress(out_ifindex: u32, ingress_ifindex: u32) -> Verdict {
    if out_ifindex == ingress_ifindex {
        Verdict::Tx
    } else {
        Verdict::Redirect(out_ifindex)
    }
}

fn set_eth(f: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
    put(f, 0, dst)?;
    put(f, ETH_ADDR_LEN, src)
}

/// Source/destination rewrites of a flow entry (`F_SNAT`, `F_DNAT`) with the
/// incremental checksum updates in the contract's order.
fn rewrite(f: &mut [u8], p: &Parsed, entry: &Flow) -> Option<()> {
    let snat = entry.flags & abi::FLOW_F_SNAT != 0;
    let dnat = entry.flags & abi::FLOW_F_DNAT != 0;
    let (s_off, d_off, alen) = p.addr_offsets();
    let l4 = p.l4_offset();
    let v4 = p.is_v4();
    let l4_check_off = match p.proto {
        PROTO_TCP => Some(l4 + 16),
        PROTO_UDP => Some(l4 + 6),
        // ICMPv6 covers a pseudo header; the program never rewrites ICMP, but
        // keep `apply` correct for it.
        PROTO_ICMPV6 if !v4 => Some(l4 + 2),
        _ => None,
    };
    let mut l4_check = match l4_check_off {
        Some(off) => Some(be16(f, off)?),
        None => None,
    };
    let udp = p.proto == PROTO_UDP;
    if udp && v4 && l4_check == Some(0) {
        // No UDP checksum in IPv4: it stays 0.
        l4_check = None;
    }
    let mut ip_check = if v4 {
        Some(be16(f, ETH_HLEN + 10)?)
    } else {
        None
    };
    let mut l4_updated = false;

    let mut addrs: Vec<(usize, &[u8])> = Vec::with_capacity(2);
    if snat {
        addrs.push((s_off, entry.new_saddr.get(..alen)?));
    }
    if dnat {
        addrs.push((d_off, entry.new_daddr.get(..alen)?));
    }
    for (off, new) in addrs {
        let old = f.get(off..off + alen)?.to_vec();
        if old == new {
            continue;
        }
        put(f, off, new)?;
        if let Some(c) = ip_check.as_mut() {
            *c = update_checksum(*c, &old, new);
        }
        if let Some(c) = l4_check.as_mut() {
            *c = update_checksum(*c, &old, new);
            l4_updated = true;
        }
    }
    if matches!(p.proto, PROTO_TCP | PROTO_UDP) {
        let mut ports: Vec<(usize, [u8; 2])> = Vec::with_capacity(2);
        if snat {
            ports.push((l4, entry.new_sport_be.to_ne_bytes()));
        }
        if dnat {
            ports.push((l4 + 2, entry.new_dport_be.to_ne_bytes()));
        }
        for (off, new) in ports {
            let old: [u8; 2] = bytes(f, off)?;
            if old == new {
                continue;
            }
            put(f, off, &new)?;
            if let Some(c) = l4_check.as_mut() {
                *c = update_checksum(*c, &old, &new);
                l4_updated = true;
            }
        }
    }
    if let Some(c) = ip_check {
        put(f, ETH_HLEN + 10, &c.to_be_bytes())?;
    }
    if let (Some(off), Some(mut c)) = (l4_check_off, l4_check) {
        if udp && l4_updated && c == 0 {
            c = 0xFFFF;
        }
        put(f, off, &c.to_be_bytes())?;
    }
    Some(())
}

/// The TUN encapsulation of the contract: the inner IP packet (padding dropped)
/// behind a new Ethernet header, an outer IPv4 or IPv6 header by the real's
/// family, and for GUE a UDP header.
fn encapsulate(
    config: &Config,
    real: &Real,
    key: &FlowKey,
    frame: &[u8],
    p: &Parsed,
) -> Result<Vec<u8>, Stat> {
    let ip_len = p.ip_len_usize();
    let inner = frame
        .get(ETH_HLEN..ETH_HLEN + ip_len)
        .ok_or(Stat::DropMalformed)?;
    let gue = real.tun_type == abi::TUN_GUE;
    let (outer_hlen, ethertype) = match real.family {
        abi::FAMILY_V4 => (IPV4_HLEN, ETH_P_IP),
        abi::FAMILY_V6 => (IPV6_HLEN, ETH_P_IPV6),
        _ => return Err(Stat::DropMalformed),
    };
    let udp_len = if gue { UDP_HLEN } else { 0 };
    let total = ETH_HLEN + outer_hlen + udp_len + ip_len;
    if total > MAX_FRAME {
        return Err(Stat::DropTooBig);
    }
    let h = flow_hash(key);
    let inner_v4 = p.is_v4();
    let b0 = byte(inner, 0).ok_or(Stat::DropMalformed)?;
    let b1 = byte(inner, 1).ok_or(Stat::DropMalformed)?;
    let (tos, df) = if inner_v4 {
        let frag = be16(inner, 6).ok_or(Stat::DropMalformed)?;
        (b1, frag & IPV4_DF != 0)
    } else {
        (((b0 & 0x0F) << 4) | (b1 >> 4), true)
    };
    let next = if gue {
        PROTO_UDP
    } else if inner_v4 {
        PROTO_IPIP
    } else {
        PROTO_IPV6
    };
    // total <= MAX_FRAME, so every length below fits 16 bits.
    let len16 = |n: usize| u16::try_from(n).map_err(|_| Stat::DropTooBig);

    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&real.dmac);
    out.extend_from_slice(&real.smac);
    out.extend_from_slice(&ethertype.to_be_bytes());
    if real.family == abi::FAMILY_V4 {
        let bits = config.tun_spread_bits;
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let saddr = (u32::from_be_bytes(config.tun_saddr4) & !mask) | (h & mask);
        let mut hdr = [0u8; IPV4_HLEN];
        hdr[0] = 0x45;
        hdr[1] = tos;
        hdr[2..4].copy_from_slice(&len16(IPV4_HLEN + udp_len + ip_len)?.to_be_bytes());
        // id 0
        let flags = if df { IPV4_DF } else { 0 };
        hdr[6..8].copy_from_slice(&flags.to_be_bytes());
        hdr[8] = NEW_TTL;
        hdr[9] = next;
        hdr[12..16].copy_from_slice(&saddr.to_be_bytes());
        hdr[16..20].copy_from_slice(&real.addr[..4]);
        let check = ipv4_header_checksum(&hdr);
        hdr[10..12].copy_from_slice(&check.to_be_bytes());
        out.extend_from_slice(&hdr);
    } else {
        let word0 = (6u32 << 28) | (u32::from(tos) << 20) | (h & 0xF_FFFF);
        out.extend_from_slice(&word0.to_be_bytes());
        out.extend_from_slice(&len16(udp_len + ip_len)?.to_be_bytes());
        out.push(next);
        out.push(NEW_TTL);
        out.extend_from_slice(&config.tun_saddr6);
        out.extend_from_slice(&real.addr);
    }
    if gue {
        let span = u32::from(config.gue_sport_span.max(1));
        // h % span < 2^16.
        let sport = config.gue_sport_base.wrapping_add((h % span) as u16);
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&real.gue_port_be.to_ne_bytes());
        out.extend_from_slice(&len16(UDP_HLEN + ip_len)?.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(inner);
    Ok(out)
}

/// Applies an entry to a parsed frame: the output and its forwarding counter.
fn apply_parsed(
    config: &Config,
    real: Option<&Real>,
    key: &FlowKey,
    entry: &Flow,
    frame: &[u8],
    p: &Parsed,
    ingress_ifindex: u32,
) -> Result<(Output, Stat), Stat> {
    if entry.flags & abi::FLOW_F_OUT != 0 {
        let mut f = frame.to_vec();
        rewrite(&mut f, p, entry).ok_or(Stat::DropMalformed)?;
        set_eth(&mut f, &entry.dmac, &entry.smac).ok_or(Stat::DropMalformed)?;
        let verdict = egress(entry.ifindex, ingress_ifindex);
        return Ok((Output { verdict, frame: f }, Stat::FwdReply));
    }
    let real = real.filter(|r| r.family != 0).ok_or(Stat::DropMalformed)?;
    let (f, stat) = match entry.method {
        abi::METHOD_DR => (frame.to_vec(), Stat::FwdDr),
        abi::METHOD_NAT | abi::METHOD_FNAT => {
            let mut f = frame.to_vec();
            rewrite(&mut f, p, entry).ok_or(Stat::DropMalformed)?;
            let stat = if entry.method == abi::METHOD_NAT {
                Stat::FwdNat
            } else {
                Stat::FwdFnat
            };
            (f, stat)
        }
        abi::METHOD_TUN => (encapsulate(config, real, key, frame, p)?, Stat::FwdTun),
        _ => return Err(Stat::DropMalformed),
    };
    let mut f = f;
    set_eth(&mut f, &real.dmac, &real.smac).ok_or(Stat::DropMalformed)?;
    let verdict = egress(real.ifindex, ingress_ifindex);
    Ok((Output { verdict, frame: f }, stat))
}

/// Applies one flow entry to a frame of that flow (what the program does after the
/// lookup, without counters or notifications): used by userspace to send an
/// upcalled packet on after installing its flow. `real` is the entry's real (None
/// for reply entries). `Err` is the counter the program would count instead.
pub fn apply(
    config: &abi::Config,
    real: Option<&abi::Real>,
    key: &abi::FlowKey,
    entry: &abi::Flow,
    frame: &[u8],
    ingress_ifindex: u32,
) -> Result<Output, abi::Stat> {
    let p = parse(frame)?;
    apply_parsed(config, real, key, entry, frame, &p, ingress_ifindex).map(|(out, _)| out)
}

/// The `rvs_marks` entries of one classifier rule: one per port of its ranges,
/// or a single port-0 entry for a rule of every port.
pub fn mark_entries(rule: &MarkRule) -> Vec<MarkKey> {
    let (proto, dest) = (rule.proto().number(), rule.dest());
    let key = |port| MarkKey::rule(proto, dest.addr(), dest.prefix_len(), port);
    if rule.all_ports() {
        vec![key(0)]
    } else {
        rule.each_port().map(key).collect()
    }
}

/// The longest-prefix match of `rvs_marks` for the lookup key `k`, as the
/// kernel's LPM trie finds it.
pub fn lookup_mark(marks: &HashMap<MarkKey, u32>, k: &MarkKey) -> Option<u32> {
    marks
        .iter()
        .filter(|(e, _)| e.covers(k))
        .max_by_key(|(e, _)| e.prefixlen)
        .map(|(_, m)| *m)
}

/// The classifier's mark of a TCP/UDP packet (0: none), as the program looks it
/// up: at the destination port, then at port 0; the first entry found decides.
pub fn classify(tables: &Tables, p: &Parsed) -> u32 {
    [p.dport, 0]
        .into_iter()
        .find_map(|port| lookup_mark(&tables.marks, &MarkKey::lookup(p.proto, p.daddr, port)))
        .unwrap_or(0)
}

/// The entries the program creates for a scheduling decision: the in entry, and
/// for NAT the reply entry (FullNAT's reply entry and its `F_SNAT` are userspace's).
/// The NAT destination port is the real's, or the packet's when the real's is 0
/// (IPVS: `dest->port ? dest->port : vport`).
pub fn entries_for(
    parsed: &Parsed,
    real_index: u32,
    real: &abi::Real,
    vip_addr: IpAddr,
    vip_port: u16,
    ingress_ifindex: u32,
    now_ns: u64,
) -> Vec<(abi::FlowKey, abi::Flow)> {
    let key = parsed.flow_key();
    let mut entry = Flow {
        real: real_index,
        method: real.method,
        flags: if parsed.proto == PROTO_TCP {
            abi::FLOW_F_NOTIFY_ACK
        } else {
            0
        },
        last_seen_ns: now_ns,
        ..Flow::default()
    };
    let dport_be = if real.port_be != 0 {
        real.port_be
    } else {
        parsed.dport.to_be()
    };
    if matches!(real.method, abi::METHOD_NAT | abi::METHOD_FNAT) {
        entry.flags |= abi::FLOW_F_DNAT;
        entry.new_daddr = real.addr;
        entry.new_dport_be = dport_be;
    }
    let mut out = vec![(key, entry)];
    if real.method == abi::METHOD_NAT {
        let reply_key = FlowKey {
            saddr: real.addr,
            daddr: addr_bytes(parsed.saddr),
            sport_be: dport_be,
            dport_be: parsed.sport.to_be(),
            proto: parsed.proto,
            family: parsed.family,
        };
        let reply = Flow {
            new_saddr: addr_bytes(vip_addr),
            new_sport_be: vip_port.to_be(),
            real: abi::NO_REAL,
            ifindex: ingress_ifindex,
            dmac: parsed.eth_src,
            smac: parsed.eth_dst,
            method: real.method,
            flags: abi::FLOW_F_OUT | abi::FLOW_F_SNAT,
            last_seen_ns: now_ns,
            ..Flow::default()
        };
        out.push((reply_key, reply));
    }
    out
}

fn bump(t: &mut Tables, s: Stat) {
    if let Some(c) = t.stats.get_mut(s as usize) {
        *c = c.wrapping_add(1);
    }
}

fn unchanged(verdict: Verdict, frame: &[u8]) -> Output {
    Output {
        verdict,
        frame: frame.to_vec(),
    }
}

/// The verdict of a frame the program stops at with counter `s`.
fn stopped(s: Stat, frame: &[u8]) -> Output {
    let verdict = match s {
        Stat::PassNotIp
        | Stat::PassNotVip
        | Stat::PassFragment
        | Stat::PassIpOptions
        | Stat::PassIcmp => Verdict::Pass,
        _ => Verdict::Drop,
    };
    unchanged(verdict, frame)
}

fn queue_event(t: &mut Tables, kind: u32, snap: usize, real: u32, frame: &[u8], ingress: u32) {
    let cap = frame.len().min(snap);
    t.events.push(Event {
        kind,
        ifindex: ingress,
        frame_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
        real,
        frame: frame.get(..cap).unwrap_or_default().to_vec(),
    });
}

/// The real an entry without `F_OUT` uses: `None` if its index is outside the
/// array, a zeroed real if the slot was never written.
fn real_at(t: &Tables, index: u32) -> Option<Real> {
    (index < abi::MAX_REALS).then(|| t.reals.get(&index).copied().unwrap_or_default())
}

fn forward(
    t: &mut Tables,
    key: &FlowKey,
    entry: &Flow,
    real: Option<&Real>,
    frame: &[u8],
    p: &Parsed,
    ingress: u32,
) -> Output {
    match apply_parsed(&t.config, real, key, entry, frame, p, ingress) {
        Ok((out, stat)) => {
            bump(t, stat);
            out
        }
        Err(s) => {
            bump(t, s);
            stopped(s, frame)
        }
    }
}

/// The new-flow guard, then an upcall record.
fn upcall(t: &mut Tables, frame: &[u8], ingress: u32, now: u64) -> Output {
    let rate = u64::from(t.config.upcall_rate);
    if rate != 0 {
        let cap = u64::from(t.config.upcall_burst) * 1000;
        let g = &mut t.guard;
        // Exact arithmetic (docs/packet-plane.md "Guard arithmetic"): a clock
        // that went back adds nothing, and nothing overflows.
        let elapsed = u128::from(now.saturating_sub(g.last_ns));
        let add = elapsed * u128::from(rate) / 1_000_000;
        let tokens = (u128::from(g.tokens_milli) + add).min(u128::from(cap));
        g.tokens_milli = u64::try_from(tokens).unwrap_or(cap);
        g.last_ns = now;
        if g.tokens_milli < 1000 {
            bump(t, Stat::DropGuard);
            return unchanged(Verdict::Drop, frame);
        }
        g.tokens_milli -= 1000;
    }
    if frame.len() > abi::UPCALL_SNAP {
        bump(t, Stat::DropTooBig);
        return unchanged(Verdict::Drop, frame);
    }
    queue_event(
        t,
        abi::EV_UPCALL,
        abi::UPCALL_SNAP,
        abi::NO_REAL,
        frame,
        ingress,
    );
    bump(t, Stat::Upcall);
    unchanged(Verdict::Upcall, frame)
}

/// A packet of a known flow.
fn established(
    t: &mut Tables,
    key: FlowKey,
    mut entry: Flow,
    frame: &[u8],
    p: &Parsed,
    ingress: u32,
    now: u64,
) -> Output {
    let out_entry = entry.flags & abi::FLOW_F_OUT != 0;
    let (syn, ack) = (p.has(TCP_SYN), p.has(TCP_ACK));
    if syn && !ack && !out_entry {
        return upcall(t, frame, ingress, now);
    }
    let notify_ack = ack && entry.flags & abi::FLOW_F_NOTIFY_ACK != 0;
    let notify = p.has(TCP_FIN) || p.has(TCP_RST) || notify_ack || (out_entry && syn);
    if notify_ack {
        entry.flags &= !abi::FLOW_F_NOTIFY_ACK;
    }
    if notify {
        queue_event(
            t,
            abi::EV_CONTROL,
            abi::NOTIFY_SNAP,
            entry.real,
            frame,
            ingress,
        );
        bump(t, Stat::Notify);
    }
    entry.last_seen_ns = now;
    if !notify {
        entry.packets = entry.packets.wrapping_add(1);
        entry.bytes = entry.bytes.wrapping_add(u64::from(p.ip_len));
    }
    t.flows.insert(key, entry);
    let real = if out_entry {
        None
    } else {
        real_at(t, entry.real)
    };
    forward(t, &key, &entry, real.as_ref(), frame, p, ingress)
}

/// The slot of a packet in a hashing scheduler's table, as rvs_core computes it.
fn sched_slot(vip: &Vip, p: &Parsed) -> Option<u32> {
    let port = if vip.sched_flags & abi::SCHED_F_PORT != 0 {
        p.sport
    } else {
        0
    };
    match vip.sched {
        abi::SCHED_SH => Some(hash_32(sh::hash_key(p.saddr, port), vip.table_bits)),
        abi::SCHED_DH => Some(hash_32(fold_addr(p.daddr), vip.table_bits)),
        abi::SCHED_MH => {
            let h = hsiphash_u32(mh::hash_key(p.saddr, port, 0), &mh::HASH1_KEY);
            // BPF defines x % 0 as x.
            Some(h.checked_rem(vip.table_size).unwrap_or(h))
        }
        _ => None,
    }
}

/// The real a hashing scheduler picks in XDP, if it may.
fn sched_pick(t: &Tables, vip: &Vip, p: &Parsed) -> Option<(u32, Real)> {
    let at = vip.table_off.wrapping_add(sched_slot(vip, p)?);
    if at >= abi::HASH_SLOTS {
        return None;
    }
    let index = t.hash.get(&at).copied().unwrap_or(0);
    if index == abi::NO_REAL {
        return None;
    }
    let real = real_at(t, index)?;
    (real.flags & abi::REAL_F_USABLE != 0).then_some((index, real))
}

/// A TCP/UDP packet without a flow entry.
fn service(t: &mut Tables, frame: &[u8], p: &Parsed, ingress: u32, now: u64) -> Output {
    let vip_key = VipKey {
        addr: addr_bytes(p.daddr),
        port_be: p.dport.to_be(),
        proto: p.proto,
        family: p.family,
    };
    // ip_vs_service_find: a firewall-mark service of the packet's mark first.
    let mark = classify(t, p);
    let fwmark_vip = (mark != 0)
        .then(|| t.vips.get(&VipKey::fwmark(mark, p.family)))
        .flatten();
    let Some(vip) = fwmark_vip.or_else(|| t.vips.get(&vip_key)).copied() else {
        bump(t, Stat::PassNotVip);
        return unchanged(Verdict::Pass, frame);
    };
    let new_connection =
        p.proto == PROTO_UDP || (p.has(TCP_SYN) && !p.has(TCP_ACK) && !p.has(TCP_RST));
    let hashing = matches!(vip.sched, abi::SCHED_SH | abi::SCHED_DH | abi::SCHED_MH);
    if hashing && new_connection {
        if let Some((index, real)) = sched_pick(t, &vip, p) {
            let entries = entries_for(p, index, &real, p.daddr, p.dport, ingress, now);
            for (k, e) in &entries {
                t.flows.insert(*k, *e);
            }
            bump(t, Stat::XdpSched);
            queue_event(t, abi::EV_NEW, abi::NOTIFY_SNAP, index, frame, ingress);
            if let Some((key, entry)) = entries.first() {
                return forward(t, key, entry, Some(&real), frame, p, ingress);
            }
        }
    }
    upcall(t, frame, ingress, now)
}

/// The echo reply to a request, in place.
fn echo_reply(frame: &[u8], p: &Parsed) -> Option<Vec<u8>> {
    let mut f = frame.to_vec();
    let dst: [u8; 6] = bytes(&f, 0)?;
    let src: [u8; 6] = bytes(&f, ETH_ADDR_LEN)?;
    set_eth(&mut f, &src, &dst)?;
    let (s_off, d_off, alen) = p.addr_offsets();
    let s = f.get(s_off..s_off + alen)?.to_vec();
    let d = f.get(d_off..d_off + alen)?.to_vec();
    put(&mut f, s_off, &d)?;
    put(&mut f, d_off, &s)?;
    let l4 = p.l4_offset();
    let reply = if p.is_v4() {
        put(&mut f, ETH_HLEN + 8, &[NEW_TTL])?;
        put(&mut f, ETH_HLEN + 10, &[0, 0])?;
        let check = ipv4_header_checksum(f.get(ETH_HLEN..ETH_HLEN + IPV4_HLEN)?);
        put(&mut f, ETH_HLEN + 10, &check.to_be_bytes())?;
        ICMP_ECHO_REPLY
    } else {
        put(&mut f, ETH_HLEN + 7, &[NEW_TTL])?;
        ICMPV6_ECHO_REPLY
    };
    let old: [u8; 2] = bytes(&f, l4)?;
    let new = [reply, old[1]];
    let check = update_checksum(be16(&f, l4 + 2)?, &old, &new);
    put(&mut f, l4, &new)?;
    put(&mut f, l4 + 2, &check.to_be_bytes())?;
    Some(f)
}

/// The flow key an ICMP error's quoted packet belongs to (the quote travels the
/// other way of its flow, so it is turned round), if its IP header and ports are
/// all inside the ICMP packet.
fn quoted_flow_key(frame: &[u8], p: &Parsed) -> Option<FlowKey> {
    let q = p.l4_offset() + ICMP_QUOTE_OFFSET;
    let ip_end = ETH_HLEN + p.ip_len_usize();
    let (hlen, proto, s, d) = if p.is_v4() {
        let vihl = byte(frame, q)?;
        if vihl != 0x45 {
            return None;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&bytes::<4>(frame, q + 12)?);
        d[..4].copy_from_slice(&bytes::<4>(frame, q + 16)?);
        (IPV4_HLEN, byte(frame, q + 9)?, s, d)
    } else {
        if byte(frame, q)? >> 4 != 6 {
            return None;
        }
        (
            IPV6_HLEN,
            byte(frame, q + 6)?,
            bytes::<16>(frame, q + 8)?,
            bytes::<16>(frame, q + 24)?,
        )
    };
    let ports = q + hlen;
    if ports + 4 > ip_end {
        return None;
    }
    let qs: [u8; 2] = bytes(frame, ports)?;
    let qd: [u8; 2] = bytes(frame, ports + 2)?;
    Some(FlowKey {
        saddr: d,
        daddr: s,
        sport_be: u16::from_ne_bytes(qd),
        dport_be: u16::from_ne_bytes(qs),
        proto,
        family: p.family,
    })
}

/// Replaces the bytes at `off` with `new` unless they are equal, updating each
/// checksum in `checks` over the old and new bytes.
fn replace_field(f: &mut [u8], off: usize, new: &[u8], checks: &mut [&mut u16]) -> Option<()> {
    let old = f.get(off..off.checked_add(new.len())?)?.to_vec();
    if old == new {
        return Some(());
    }
    for c in checks.iter_mut() {
        **c = update_checksum(**c, &old, new);
    }
    put(f, off, new)
}

/// The rewrites of an ICMP error about a NAT or FullNAT flow (the kernel's
/// `ip_vs_nat_icmp` / `ip_vs_nat_icmp_v6`, generalised to FullNAT): the outer
/// header gets the address changes `entry` makes to packets of its flow, the
/// quote (a packet of the other direction) the mirrored changes: its source
/// takes the entry's new destination, its destination the entry's new source.
/// Checksums are updated in the contract's order: outer addresses (the IPv4
/// header checksum, or ICMPv6's, whose pseudo header holds them), quoted
/// addresses (ICMP, and the quoted IPv4 header's), the quoted IPv4 header
/// checksum word (ICMP), quoted ports (ICMP). The quoted L4 checksum is left
/// alone, as the kernel does.
fn rewrite_icmp_error(f: &mut [u8], p: &Parsed, entry: &Flow) -> Option<()> {
    let snat = entry.flags & abi::FLOW_F_SNAT != 0;
    let dnat = entry.flags & abi::FLOW_F_DNAT != 0;
    let v4 = p.is_v4();
    let (s_off, d_off, alen) = p.addr_offsets();
    let l4 = p.l4_offset();
    let q = l4 + ICMP_QUOTE_OFFSET;
    let (q_hlen, q_s_off, q_d_off, q_proto) = if v4 {
        (IPV4_HLEN, q + 12, q + 16, byte(f, q + 9)?)
    } else {
        (IPV6_HLEN, q + 8, q + 24, byte(f, q + 6)?)
    };
    let ports = q + q_hlen;
    f.get(..ports + 4)?;
    let new_saddr = entry.new_saddr.get(..alen)?;
    let new_daddr = entry.new_daddr.get(..alen)?;
    let icmp_check_off = l4 + 2;
    let outer_check_off = ETH_HLEN + 10;
    let quote_check_off = q + 10;
    let mut icmp_check = be16(f, icmp_check_off)?;
    let mut outer_check = be16(f, outer_check_off)?;
    let mut quote_check = be16(f, quote_check_off)?;

    // The outer header: IPv4 keeps its addresses in its header checksum,
    // ICMPv6 in its checksum's pseudo header.
    let outer = [(snat, s_off, new_saddr), (dnat, d_off, new_daddr)];
    for (on, off, new) in outer {
        if on {
            let sum = if v4 {
                &mut outer_check
            } else {
                &mut icmp_check
            };
            replace_field(f, off, new, &mut [sum])?;
        }
    }
    // The quote: inside the ICMP message (and the quoted IPv4 header's sum).
    let quote_check_before = quote_check;
    let quoted = [(dnat, q_s_off, new_daddr), (snat, q_d_off, new_saddr)];
    for (on, off, new) in quoted {
        if on {
            if v4 {
                replace_field(f, off, new, &mut [&mut icmp_check, &mut quote_check])?;
            } else {
                replace_field(f, off, new, &mut [&mut icmp_check])?;
            }
        }
    }
    if v4 {
        put(f, quote_check_off, &quote_check.to_be_bytes())?;
        put(f, outer_check_off, &outer_check.to_be_bytes())?;
        if quote_check != quote_check_before {
            icmp_check = update_checksum(
                icmp_check,
                &quote_check_before.to_be_bytes(),
                &quote_check.to_be_bytes(),
            );
        }
    }
    if matches!(q_proto, PROTO_TCP | PROTO_UDP) {
        let quoted_ports = [
            (dnat, ports, entry.new_dport_be.to_ne_bytes()),
            (snat, ports + 2, entry.new_sport_be.to_ne_bytes()),
        ];
        for (on, off, new) in quoted_ports {
            if on {
                replace_field(f, off, &new, &mut [&mut icmp_check])?;
            }
        }
    }
    put(f, icmp_check_off, &icmp_check.to_be_bytes())
}

/// An ICMP error about a flow `entry` (found by its quote turned round): DR and
/// TUN send it on unchanged as a packet of the flow; NAT and FullNAT rewrite it
/// first ([`rewrite_icmp_error`]), towards the real server (in entries) or the
/// client (reply entries). `Err` is the counter of a frame that stops here.
fn forward_icmp_error(
    t: &Tables,
    key: &FlowKey,
    entry: &Flow,
    frame: &[u8],
    p: &Parsed,
    ingress: u32,
) -> Result<Output, Stat> {
    if entry.flags & abi::FLOW_F_OUT != 0 {
        let mut f = frame.to_vec();
        rewrite_icmp_error(&mut f, p, entry).ok_or(Stat::DropMalformed)?;
        set_eth(&mut f, &entry.dmac, &entry.smac).ok_or(Stat::DropMalformed)?;
        let verdict = egress(entry.ifindex, ingress);
        return Ok(Output { verdict, frame: f });
    }
    if !matches!(
        entry.method,
        abi::METHOD_DR | abi::METHOD_TUN | abi::METHOD_NAT | abi::METHOD_FNAT
    ) {
        return Err(Stat::PassIcmp);
    }
    let real = real_at(t, entry.real);
    if matches!(entry.method, abi::METHOD_DR | abi::METHOD_TUN) {
        return apply_parsed(&t.config, real.as_ref(), key, entry, frame, p, ingress)
            .map(|(out, _)| out);
    }
    let real = real.filter(|r| r.family != 0).ok_or(Stat::DropMalformed)?;
    let mut f = frame.to_vec();
    rewrite_icmp_error(&mut f, p, entry).ok_or(Stat::DropMalformed)?;
    set_eth(&mut f, &real.dmac, &real.smac).ok_or(Stat::DropMalformed)?;
    let verdict = egress(real.ifindex, ingress);
    Ok(Output { verdict, frame: f })
}

/// ICMP and ICMPv6 (they have no flow entry of their own).
fn icmp(t: &mut Tables, frame: &[u8], p: &Parsed, ingress: u32) -> Output {
    let l4 = p.l4_offset();
    let Some(kind) = byte(frame, l4) else {
        bump(t, Stat::PassIcmp);
        return unchanged(Verdict::Pass, frame);
    };
    let v4 = p.is_v4();
    let echo_request = if v4 {
        ICMP_ECHO_REQUEST
    } else {
        ICMPV6_ECHO_REQUEST
    };
    if kind == echo_request {
        let addr_key = VipKey {
            addr: addr_bytes(p.daddr),
            port_be: 0,
            proto: 0,
            family: p.family,
        };
        if t.vip_addrs.contains(&addr_key) {
            if let Some(f) = echo_reply(frame, p) {
                bump(t, Stat::IcmpEcho);
                return Output {
                    verdict: Verdict::Tx,
                    frame: f,
                };
            }
        }
        bump(t, Stat::PassIcmp);
        return unchanged(Verdict::Pass, frame);
    }
    let error = if v4 {
        kind == ICMP_DEST_UNREACH || kind == ICMP_TIME_EXCEEDED
    } else {
        ICMPV6_ERRORS.contains(&kind)
    };
    let found = error
        .then(|| quoted_flow_key(frame, p))
        .flatten()
        .and_then(|key| Some((key, t.flows.get(&key).copied()?)));
    let Some((key, entry)) = found else {
        bump(t, Stat::PassIcmp);
        return unchanged(Verdict::Pass, frame);
    };
    match forward_icmp_error(t, &key, &entry, frame, p, ingress) {
        Ok(out) => {
            bump(t, Stat::IcmpErrorFwd);
            out
        }
        Err(s) => {
            bump(t, s);
            stopped(s, frame)
        }
    }
}

/// Runs the program on one frame (docs/packet-plane.md), updating the tables,
/// counters and queued events as the program would.
pub fn process(tables: &mut Tables, frame: &[u8], ingress_ifindex: u32, now_ns: u64) -> Output {
    bump(tables, Stat::Rx);
    let p = match parse(frame) {
        Ok(p) => p,
        Err(s) => {
            bump(tables, s);
            return stopped(s, frame);
        }
    };
    if p.is_icmp() {
        return icmp(tables, frame, &p, ingress_ifindex);
    }
    let key = p.flow_key();
    if let Some(entry) = tables.flows.get(&key).copied() {
        return established(tables, key, entry, frame, &p, ingress_ifindex, now_ns);
    }
    service(tables, frame, &p, ingress_ifindex, now_ns)
}
