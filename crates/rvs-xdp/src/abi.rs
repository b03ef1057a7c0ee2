//! The packet plane's map layout, mirrored from `bpf/rvs_abi.h` (the header is
//! the source of truth; docs/packet-plane.md says what the program does).
//!
//! Each struct converts to and from the exact bytes the kernel map holds with
//! `to_bytes`/`from_bytes` (native endian for host-order integers, network order
//! kept as stored for ports), so no `unsafe` cast is needed anywhere.
//! Invariant: `SIZE` of each struct equals the C `sizeof`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const METHOD_DR: u8 = 1;
pub const METHOD_TUN: u8 = 2;
pub const METHOD_NAT: u8 = 3;
pub const METHOD_FNAT: u8 = 4;

pub const TUN_IPIP: u8 = 0;
pub const TUN_GUE: u8 = 1;

pub const SCHED_UPCALL: u8 = 0;
pub const SCHED_SH: u8 = 1;
pub const SCHED_DH: u8 = 2;
pub const SCHED_MH: u8 = 3;
pub const SCHED_F_PORT: u8 = 1;

pub const REAL_F_USABLE: u8 = 1;

pub const FLOW_F_SNAT: u8 = 1;
pub const FLOW_F_DNAT: u8 = 2;
pub const FLOW_F_NOTIFY_ACK: u8 = 4;
pub const FLOW_F_OUT: u8 = 8;

pub const NO_REAL: u32 = 0xffff_ffff;
pub const MAX_REALS: u32 = 4096;
pub const MAX_VIPS: u32 = 4096;
pub const HASH_SLOTS: u32 = 1 << 20;
pub const MAX_FLOWS: u32 = 1 << 20;
pub const MAX_IFACES: u32 = 64;
/// Entries `rvs_marks` holds (one per rule and port; one for an every-port rule).
pub const MAX_MARK_ENTRIES: u32 = 65536;
/// Bits of a [`MarkKey`] always compared: proto, family and port.
pub const MARK_KEY_BITS: u32 = 32;
/// `proto` of a firewall-mark service's [`VipKey`] (IPPROTO_IP).
pub const VIP_PROTO_FWMARK: u8 = 0;

pub const EV_UPCALL: u32 = 1;
pub const EV_NEW: u32 = 2;
pub const EV_CONTROL: u32 = 3;
pub const UPCALL_SNAP: usize = 1536;
pub const NOTIFY_SNAP: usize = 128;

/// `enum rvs_stat`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Stat {
    Rx = 0,
    PassNotIp,
    PassNotVip,
    PassFragment,
    PassIpOptions,
    PassIcmp,
    DropMalformed,
    FwdDr,
    FwdTun,
    FwdNat,
    FwdFnat,
    FwdReply,
    XdpSched,
    Upcall,
    Notify,
    DropGuard,
    DropRingbuf,
    IcmpEcho,
    /// ICMP errors forwarded along the flow they quote: to its real server, or
    /// (NAT/FullNAT reply entries) back to the client; NAT/FullNAT rewritten.
    IcmpErrorFwd,
    DropTooBig,
    RedirectFail,
}

impl Stat {
    pub const COUNT: usize = 21;
    pub const ALL: [Stat; Stat::COUNT] = [
        Stat::Rx,
        Stat::PassNotIp,
        Stat::PassNotVip,
        Stat::PassFragment,
        Stat::PassIpOptions,
        Stat::PassIcmp,
        Stat::DropMalformed,
        Stat::FwdDr,
        Stat::FwdTun,
        Stat::FwdNat,
        Stat::FwdFnat,
        Stat::FwdReply,
        Stat::XdpSched,
        Stat::Upcall,
        Stat::Notify,
        Stat::DropGuard,
        Stat::DropRingbuf,
        Stat::IcmpEcho,
        Stat::IcmpErrorFwd,
        Stat::DropTooBig,
        Stat::RedirectFail,
    ];

    /// A snake_case name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Rx => "rx",
            Stat::PassNotIp => "pass_not_ip",
            Stat::PassNotVip => "pass_not_vip",
            Stat::PassFragment => "pass_fragment",
            Stat::PassIpOptions => "pass_ip_options",
            Stat::PassIcmp => "pass_icmp",
            Stat::DropMalformed => "drop_malformed",
            Stat::FwdDr => "fwd_dr",
            Stat::FwdTun => "fwd_tun",
            Stat::FwdNat => "fwd_nat",
            Stat::FwdFnat => "fwd_fnat",
            Stat::FwdReply => "fwd_reply",
            Stat::XdpSched => "xdp_sched",
            Stat::Upcall => "upcall",
            Stat::Notify => "notify",
            Stat::DropGuard => "drop_guard",
            Stat::DropRingbuf => "drop_ringbuf",
            Stat::IcmpEcho => "icmp_echo",
            Stat::IcmpErrorFwd => "icmp_error_fwd",
            Stat::DropTooBig => "drop_too_big",
            Stat::RedirectFail => "redirect_fail",
        }
    }
}

/// A 16-byte address slot: IPv4 in the first 4 bytes.
pub fn addr_bytes(a: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The address in a 16-byte slot, by family (`None` for an unknown family).
pub fn addr_from(bytes: &[u8; 16], family: u8) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

pub fn family_of(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => FAMILY_V4,
        IpAddr::V6(_) => FAMILY_V6,
    }
}

/// Little cursor over a byte buffer; C layout with explicit offsets.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16ne(&mut self) -> u16 {
        u16::from_ne_bytes(self.take())
    }
    fn u32ne(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }
    fn u64ne(&mut self) -> u64 {
        u64::from_ne_bytes(self.take())
    }
}

macro_rules! bytes_impl {
    ($t:ty, $size:expr) => {
        impl $t {
            pub const SIZE: usize = $size;
        }
    };
}

/// `struct rvs_config`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub upcall_rate: u32,
    pub upcall_burst: u32,
    pub tun_saddr4: [u8; 4],
    pub tun_saddr6: [u8; 16],
    pub tun_spread_bits: u32,
    pub gue_sport_base: u16,
    pub gue_sport_span: u16,
}
bytes_impl!(Config, 36);

impl Config {
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.upcall_rate.to_ne_bytes());
        w.put(&self.upcall_burst.to_ne_bytes());
        w.put(&self.tun_saddr4);
        w.put(&self.tun_saddr6);
        w.put(&self.tun_spread_bits.to_ne_bytes());
        w.put(&self.gue_sport_base.to_ne_bytes());
        w.put(&self.gue_sport_span.to_ne_bytes());
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        Config {
            upcall_rate: r.u32ne(),
            upcall_burst: r.u32ne(),
            tun_saddr4: r.take(),
            tun_saddr6: r.take(),
            tun_spread_bits: r.u32ne(),
            gue_sport_base: r.u16ne(),
            gue_sport_span: r.u16ne(),
        }
    }
}

/// `struct rvs_vip_key`. `port` is in network order, as in the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}
bytes_impl!(VipKey, 20);

impl VipKey {
    pub fn new(addr: IpAddr, port: u16, proto: u8) -> Self {
        VipKey {
            addr: addr_bytes(addr),
            port_be: port.to_be(),
            proto,
            family: family_of(addr),
        }
    }
    /// The key of a firewall-mark service: the mark as a big-endian u32 in the
    /// first 4 address bytes, port 0, proto [`VIP_PROTO_FWMARK`].
    pub fn fwmark(mark: u32, family: u8) -> Self {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&mark.to_be_bytes());
        VipKey {
            addr,
            port_be: 0,
            proto: VIP_PROTO_FWMARK,
            family,
        }
    }
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.addr);
        w.put(&self.port_be.to_ne_bytes());
        w.put(&[self.proto, self.family]);
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        VipKey {
            addr: r.take(),
            port_be: r.u16ne(),
            proto: r.u8(),
            family: r.u8(),
        }
    }
}

/// `struct rvs_vip`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    pub svc: u32,
    pub sched: u8,
    pub sched_flags: u8,
    pub method: u8,
    pub table_off: u32,
    pub table_size: u32,
    pub table_bits: u32,
}
bytes_impl!(Vip, 20);

impl Vip {
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.svc.to_ne_bytes());
        w.put(&[self.sched, self.sched_flags, self.method, 0]);
        w.put(&self.table_off.to_ne_bytes());
        w.put(&self.table_size.to_ne_bytes());
        w.put(&self.table_bits.to_ne_bytes());
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        let svc = r.u32ne();
        let [sched, sched_flags, method, _] = r.take::<4>();
        Vip {
            svc,
            sched,
            sched_flags,
            method,
            table_off: r.u32ne(),
            table_size: r.u32ne(),
            table_bits: r.u32ne(),
        }
    }
}

/// `struct rvs_mark_key`: a key of the classifier's LPM trie `rvs_marks`.
/// The trie compares the first `prefixlen` bits of the 20 bytes after
/// `prefixlen` (proto, family, port, address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MarkKey {
    pub prefixlen: u32,
    pub proto: u8,
    pub family: u8,
    /// Network order; 0 for a rule of every port.
    pub port_be: u16,
    pub addr: [u8; 16],
}
bytes_impl!(MarkKey, 24);

impl MarkKey {
    /// Bytes after `prefixlen` (what `aya::maps::lpm_trie::Key` carries).
    pub const DATA_SIZE: usize = 20;

    /// The entry of a rule's prefix `addr/len` for one port (0: every port).
    /// `addr` must have its host bits clear (rules are canonical).
    pub fn rule(proto: u8, addr: IpAddr, len: u8, port: u16) -> Self {
        MarkKey {
            prefixlen: MARK_KEY_BITS + u32::from(len),
            proto,
            family: family_of(addr),
            port_be: port.to_be(),
            addr: addr_bytes(addr),
        }
    }

    /// The key the program looks a packet up with: every bit of its family's
    /// address.
    pub fn lookup(proto: u8, daddr: IpAddr, port: u16) -> Self {
        let bits = match daddr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        MarkKey {
            prefixlen: MARK_KEY_BITS + bits,
            ..MarkKey::rule(proto, daddr, 0, port)
        }
    }

    pub fn data(&self) -> [u8; Self::DATA_SIZE] {
        let mut b = [0u8; Self::DATA_SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&[self.proto, self.family]);
        w.put(&self.port_be.to_ne_bytes());
        w.put(&self.addr);
        b
    }

    pub fn from_data(prefixlen: u32, b: &[u8; Self::DATA_SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        MarkKey {
            prefixlen,
            proto: r.u8(),
            family: r.u8(),
            port_be: r.u16ne(),
            addr: r.take(),
        }
    }

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..4].copy_from_slice(&self.prefixlen.to_ne_bytes());
        b[4..].copy_from_slice(&self.data());
        b
    }

    /// Whether this entry matches the lookup key `k` as the kernel's LPM trie
    /// decides it: its prefix is no longer than `k`'s and its first `prefixlen`
    /// data bits equal `k`'s.
    pub fn covers(&self, k: &MarkKey) -> bool {
        let bits = self.prefixlen as usize;
        if self.prefixlen > k.prefixlen || bits > Self::DATA_SIZE * 8 {
            return false;
        }
        let (a, b) = (self.data(), k.data());
        let whole = bits / 8;
        if a[..whole] != b[..whole] {
            return false;
        }
        let rest = bits % 8;
        rest == 0 || {
            let mask = 0xFFu8 << (8 - rest);
            a[whole] & mask == b[whole] & mask
        }
    }
}

/// `struct rvs_real`. Ports in network order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    pub addr: [u8; 16],
    pub family: u8,
    pub method: u8,
    pub tun_type: u8,
    pub flags: u8,
    pub port_be: u16,
    pub gue_port_be: u16,
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}
bytes_impl!(Real, 40);

impl Real {
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.addr);
        w.put(&[self.family, self.method, self.tun_type, self.flags]);
        w.put(&self.port_be.to_ne_bytes());
        w.put(&self.gue_port_be.to_ne_bytes());
        w.put(&self.ifindex.to_ne_bytes());
        w.put(&self.dmac);
        w.put(&self.smac);
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        Real {
            addr: r.take(),
            family: r.u8(),
            method: r.u8(),
            tun_type: r.u8(),
            flags: r.u8(),
            port_be: r.u16ne(),
            gue_port_be: r.u16ne(),
            ifindex: r.u32ne(),
            dmac: r.take(),
            smac: r.take(),
        }
    }
}

/// `struct rvs_flow_key`. Ports in network order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub family: u8,
}
bytes_impl!(FlowKey, 40);

impl FlowKey {
    /// A key from addresses and host-order ports (both addresses of one family).
    pub fn new(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, proto: u8) -> Self {
        FlowKey {
            saddr: addr_bytes(saddr),
            daddr: addr_bytes(daddr),
            sport_be: sport.to_be(),
            dport_be: dport.to_be(),
            proto,
            family: family_of(saddr),
        }
    }
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.saddr);
        w.put(&self.daddr);
        w.put(&self.sport_be.to_ne_bytes());
        w.put(&self.dport_be.to_ne_bytes());
        w.put(&[self.proto, self.family, 0, 0]);
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        FlowKey {
            saddr: r.take(),
            daddr: r.take(),
            sport_be: r.u16ne(),
            dport_be: r.u16ne(),
            proto: r.u8(),
            family: r.u8(),
        }
    }
}

/// `struct rvs_flow`. Ports in network order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub new_saddr: [u8; 16],
    pub new_daddr: [u8; 16],
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    pub real: u32,
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub method: u8,
    pub flags: u8,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}
bytes_impl!(Flow, 88);

impl Flow {
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.put(&self.new_saddr);
        w.put(&self.new_daddr);
        w.put(&self.new_sport_be.to_ne_bytes());
        w.put(&self.new_dport_be.to_ne_bytes());
        w.put(&self.real.to_ne_bytes());
        w.put(&self.ifindex.to_ne_bytes());
        w.put(&self.dmac);
        w.put(&self.smac);
        w.put(&[self.method, self.flags, 0, 0]);
        w.put(&[0u8; 4]); // alignment of the u64 that follows
        w.put(&self.last_seen_ns.to_ne_bytes());
        w.put(&self.packets.to_ne_bytes());
        w.put(&self.bytes.to_ne_bytes());
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        let new_saddr = r.take();
        let new_daddr = r.take();
        let new_sport_be = r.u16ne();
        let new_dport_be = r.u16ne();
        let real = r.u32ne();
        let ifindex = r.u32ne();
        let dmac = r.take();
        let smac = r.take();
        let [method, flags, _, _] = r.take::<4>();
        let _align = r.take::<4>();
        Flow {
            new_saddr,
            new_daddr,
            new_sport_be,
            new_dport_be,
            real,
            ifindex,
            dmac,
            smac,
            method,
            flags,
            last_seen_ns: r.u64ne(),
            packets: r.u64ne(),
            bytes: r.u64ne(),
        }
    }
}

/// `struct rvs_guard`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    pub last_ns: u64,
    pub tokens_milli: u64,
}
bytes_impl!(Guard, 16);

impl Guard {
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.last_ns.to_ne_bytes());
        b[8..].copy_from_slice(&self.tokens_milli.to_ne_bytes());
        b
    }
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = Reader { buf: b, at: 0 };
        Guard {
            last_ns: r.u64ne(),
            tokens_milli: r.u64ne(),
        }
    }
}

/// `struct rvs_event_hdr` and the captured frame bytes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub ifindex: u32,
    pub frame_len: u32,
    pub real: u32,
    pub frame: Vec<u8>,
}

impl Event {
    pub const HDR_SIZE: usize = 24;

    /// Decodes one ring buffer record; `None` if it is shorter than its header
    /// says (never from a correct program, but the bytes come from the kernel).
    pub fn parse(rec: &[u8]) -> Option<Event> {
        if rec.len() < Self::HDR_SIZE {
            return None;
        }
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(rec.get(i..i + 4)?.try_into().ok()?))
        };
        let cap = usize::try_from(word(12)?).ok()?;
        let frame = rec.get(Self::HDR_SIZE..Self::HDR_SIZE + cap)?.to_vec();
        Some(Event {
            kind: word(0)?,
            ifindex: word(4)?,
            frame_len: word(8)?,
            real: word(16)?,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let f = Flow {
            new_saddr: [1; 16],
            new_daddr: [2; 16],
            new_sport_be: 0x1234,
            new_dport_be: 0x5678,
            real: 7,
            ifindex: 9,
            dmac: [3; 6],
            smac: [4; 6],
            method: METHOD_NAT,
            flags: FLOW_F_SNAT | FLOW_F_OUT,
            last_seen_ns: 11,
            packets: 12,
            bytes: 13,
        };
        assert_eq!(Flow::from_bytes(&f.to_bytes()), f);
        let k = FlowKey::new(
            "10.0.0.1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            40000,
            "10.0.0.10"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            80,
            6,
        );
        assert_eq!(FlowKey::from_bytes(&k.to_bytes()), k);
        assert_eq!(k.to_bytes()[32..34], 40000u16.to_be_bytes());
        let r = Real {
            addr: [5; 16],
            family: 6,
            method: 2,
            tun_type: 1,
            flags: 1,
            port_be: 80u16.to_be(),
            gue_port_be: 6080u16.to_be(),
            ifindex: 3,
            dmac: [6; 6],
            smac: [7; 6],
        };
        assert_eq!(Real::from_bytes(&r.to_bytes()), r);
        let v = Vip {
            svc: 1,
            sched: SCHED_MH,
            sched_flags: 1,
            method: 3,
            table_off: 65521,
            table_size: 65521,
            table_bits: 0,
        };
        assert_eq!(Vip::from_bytes(&v.to_bytes()), v);
        let c = Config {
            upcall_rate: 1,
            upcall_burst: 2,
            tun_saddr4: [1, 2, 3, 4],
            tun_saddr6: [9; 16],
            tun_spread_bits: 8,
            gue_sport_base: 49152,
            gue_sport_span: 16384,
        };
        assert_eq!(Config::from_bytes(&c.to_bytes()), c);
        let m = MarkKey::rule(
            6,
            "10.0.0.0"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            24,
            443,
        );
        assert_eq!(m.prefixlen, 56);
        let b = m.to_bytes();
        assert_eq!(b[4..8], [6, FAMILY_V4, 0x01, 0xbb]);
        assert_eq!(b[8..11], [10, 0, 0]);
        let mut data = [0u8; MarkKey::DATA_SIZE];
        data.copy_from_slice(&b[4..]);
        assert_eq!(MarkKey::from_data(56, &data), m);
        assert_eq!(
            VipKey::fwmark(6666, FAMILY_V6).to_bytes()[..4],
            [0, 0, 0x1a, 0x0a]
        );
    }

    #[test]
    fn mark_keys_cover_as_the_lpm_trie_does() {
        let a = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let rule = MarkKey::rule(6, a("10.0.0.0"), 23, 80);
        assert!(rule.covers(&MarkKey::lookup(6, a("10.0.1.200"), 80)));
        assert!(!rule.covers(&MarkKey::lookup(6, a("10.0.2.1"), 80)));
        assert!(!rule.covers(&MarkKey::lookup(6, a("10.0.0.1"), 81)));
        assert!(!rule.covers(&MarkKey::lookup(17, a("10.0.0.1"), 80)));
        assert!(!rule.covers(&MarkKey::lookup(6, a("a00::1"), 80)));
        let host6 = MarkKey::rule(17, a("fd00::10"), 128, 0);
        assert!(host6.covers(&MarkKey::lookup(17, a("fd00::10"), 0)));
        assert!(!host6.covers(&MarkKey::lookup(17, a("fd00::11"), 0)));
        // A longer prefix than the lookup's never matches.
        let long = MarkKey {
            prefixlen: 161,
            ..host6
        };
        assert!(!long.covers(&MarkKey::lookup(17, a("fd00::10"), 0)));
    }
}
