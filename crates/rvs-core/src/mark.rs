//! The firewall-mark classifier rvs owns in place of iptables' MARK target:
//! rules that map (protocol, destination prefix, destination ports) to a mark,
//! which the planes hand to the core as `Packet::fwmark` so that `-f` services
//! (`ip_vs_service_find` looks them up before address services) see traffic.
//!
//! Invariants:
//! - A rule is canonical: its prefix has no host bits set (as iptables masks
//!   `-d 10.0.0.1/24` to `10.0.0.0/24`), its port ranges are sorted, merged and
//!   never contain port 0; an empty port list means every port.
//! - No two rules of a set overlap (same protocol, intersecting prefixes and
//!   intersecting ports), so a packet matches at most one rule and the order of
//!   rules never matters; an overlapping rule is refused with the rule it
//!   conflicts with. Identical rules are one rule: adding it again is refused.
//! - The mark is never 0 (0 means "no mark" to the core, as in the kernel).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

use crate::model::{Family, Protocol};

/// Why a rule was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MarkError {
    #[error("firewall mark 0 is not a mark (0 means unmarked)")]
    ZeroMark,
    #[error("port 0 is not a port a rule can match")]
    ZeroPort,
    #[error("port range {first}-{last} is inverted")]
    InvertedRange { first: u16, last: u16 },
    #[error("prefix length {len} is longer than the {bits} bits of {addr}")]
    PrefixTooLong { addr: IpAddr, len: u8, bits: u8 },
    #[error("rule `{rule}` overlaps rule `{existing}`")]
    Overlap { rule: String, existing: String },
    #[error("rule `{0}` already exists")]
    Exists(String),
    #[error("no such rule `{0}`")]
    NoRule(String),
    #[error("cannot parse {what} `{text}`")]
    Syntax { what: &'static str, text: String },
}

/// A destination prefix, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// `addr/len` with the host bits of `addr` cleared.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, MarkError> {
        let bits = family_bits(Family::of(&addr));
        if len > bits {
            return Err(MarkError::PrefixTooLong { addr, len, bits });
        }
        Ok(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// The single address `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        Prefix {
            addr,
            len: family_bits(Family::of(&addr)),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        Family::of(&a) == self.family() && mask(a, self.len) == self.addr
    }

    /// Whether some address is in both prefixes.
    pub fn intersects(&self, other: &Prefix) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(longer.addr)
    }

    /// How many addresses the prefix holds, saturating.
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(family_bits(self.family()) - self.len);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }

    /// Every address of the prefix, in order (callers bound it with `size`).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let base = to_u128(self.addr);
        let count = self.size();
        (0..count).map(move |i| from_u128(base + i, self.family()))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = MarkError;

    /// `ADDR` (a host) or `ADDR/LEN`.
    fn from_str(s: &str) -> Result<Self, MarkError> {
        let syntax = || MarkError::Syntax {
            what: "address or prefix",
            text: s.to_string(),
        };
        match s.split_once('/') {
            None => Ok(Prefix::host(s.parse().map_err(|_| syntax())?)),
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| syntax())?;
                let len: u8 = l.parse().map_err(|_| syntax())?;
                Prefix::new(addr, len)
            }
        }
    }
}

/// Address bits of a family.
fn family_bits(f: Family) -> u8 {
    match f {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// Inclusive destination port range, 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, MarkError> {
        if first == 0 || last == 0 {
            return Err(MarkError::ZeroPort);
        }
        if first > last {
            return Err(MarkError::InvertedRange { first, last });
        }
        Ok(PortRange { first, last })
    }

    pub fn single(port: u16) -> Result<Self, MarkError> {
        PortRange::new(port, port)
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn intersects(&self, o: &PortRange) -> bool {
        self.first <= o.last && o.first <= self.last
    }

    /// How many ports the range holds.
    pub fn count(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Parses `80,443,8000-8010` (`:` is also taken as the range separator, as
/// iptables writes it). Ranges are sorted and merged.
pub fn parse_ports(s: &str) -> Result<Vec<PortRange>, MarkError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let syntax = || MarkError::Syntax {
            what: "port or port range",
            text: part.to_string(),
        };
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| syntax());
        let r = match part.split_once(['-', ':']) {
            None => PortRange::single(port(part)?)?,
            Some((a, b)) => PortRange::new(port(a)?, port(b)?)?,
        };
        out.push(r);
    }
    Ok(normalize_ports(out))
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalize_ports(mut ports: Vec<PortRange>) -> Vec<PortRange> {
    ports.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(ports.len());
    for r in ports {
        match out.last_mut() {
            Some(prev) if u32::from(r.first) <= u32::from(prev.last) + 1 => {
                prev.last = prev.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// One classifier rule: traffic of `proto` to `dest` on one of `ports` (every
/// port when empty) carries `mark`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarkRule {
    mark: u32,
    proto: Protocol,
    dest: Prefix,
    ports: Vec<PortRange>,
}

impl MarkRule {
    /// A canonical rule; `ports` may come in any order and overlap.
    pub fn new(
        mark: u32,
        proto: Protocol,
        dest: Prefix,
        ports: Vec<PortRange>,
    ) -> Result<Self, MarkError> {
        if mark == 0 {
            return Err(MarkError::ZeroMark);
        }
        Ok(MarkRule {
            mark,
            proto,
            dest,
            ports: normalize_ports(ports),
        })
    }

    pub fn mark(&self) -> u32 {
        self.mark
    }

    pub fn proto(&self) -> Protocol {
        self.proto
    }

    pub fn dest(&self) -> Prefix {
        self.dest
    }

    pub fn family(&self) -> Family {
        self.dest.family()
    }

    /// The port ranges, sorted and merged; empty means every port.
    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }

    pub fn all_ports(&self) -> bool {
        self.ports.is_empty()
    }

    /// How many ports the rule matches (65535 for every port).
    pub fn port_count(&self) -> u32 {
        if self.ports.is_empty() {
            65535
        } else {
            self.ports.iter().map(PortRange::count).sum()
        }
    }

    /// Every port of the rule's ranges, in order (nothing for every-port rules).
    pub fn each_port(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().flat_map(|r| r.first..=r.last)
    }

    /// The ports as written in the rule text (`80,443,8000-8010`, `all`).
    pub fn ports_text(&self) -> String {
        if self.ports.is_empty() {
            return "all".to_string();
        }
        let parts: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
        parts.join(",")
    }

    pub fn matches(&self, proto: u8, daddr: IpAddr, dport: u16) -> bool {
        self.proto.number() == proto
            && self.dest.contains(daddr)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(dport)))
    }

    /// Whether some packet matches both rules.
    pub fn overlaps(&self, o: &MarkRule) -> bool {
        self.proto == o.proto
            && self.dest.intersects(&o.dest)
            && (self.ports.is_empty()
                || o.ports.is_empty()
                || self
                    .ports
                    .iter()
                    .any(|a| o.ports.iter().any(|b| a.intersects(b))))
    }
}

/// `6666 tcp 192.0.2.10/32 80,443`: the text form rvsadm lists, takes and
/// the configuration block uses.
impl fmt::Display for MarkRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.mark,
            self.proto.name().to_ascii_lowercase(),
            self.dest,
            self.ports_text()
        )
    }
}

/// Parses the words `MARK PROTO PREFIX [PORTS]` (`PORTS` `all` or absent for
/// every port); the mark may be decimal or `0x` hex, as iptables accepts.
pub fn parse_rule_words(words: &[&str]) -> Result<MarkRule, MarkError> {
    let syntax = |what, text: &str| MarkError::Syntax {
        what,
        text: text.to_string(),
    };
    let (mark, proto, dest, ports) = match words {
        [m, p, d] => (m, p, d, None),
        [m, p, d, ports] => (m, p, d, Some(ports)),
        _ => return Err(syntax("rule (MARK PROTO PREFIX [PORTS])", &words.join(" "))),
    };
    let mark = parse_mark(mark)?;
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return Err(syntax("protocol (tcp, udp or sctp)", proto)),
    };
    let dest: Prefix = dest.parse()?;
    let ports = match ports {
        None => Vec::new(),
        Some(p) if p.eq_ignore_ascii_case("all") => Vec::new(),
        Some(p) => parse_ports(p)?,
    };
    MarkRule::new(mark, proto, dest, ports)
}

/// A mark, decimal or `0x` hex.
pub fn parse_mark(s: &str) -> Result<u32, MarkError> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    };
    let mark = parsed.map_err(|_| MarkError::Syntax {
        what: "firewall mark",
        text: s.to_string(),
    })?;
    if mark == 0 {
        return Err(MarkError::ZeroMark);
    }
    Ok(mark)
}

impl FromStr for MarkRule {
    type Err = MarkError;

    fn from_str(s: &str) -> Result<Self, MarkError> {
        let words: Vec<&str> = s.split_whitespace().collect();
        parse_rule_words(&words)
    }
}

/// The rules in force, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkRules {
    rules: Vec<MarkRule>,
}

impl MarkRules {
    pub fn iter(&self) -> impl Iterator<Item = &MarkRule> {
        self.rules.iter()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule `rule` would conflict with, if any.
    pub fn conflict(&self, rule: &MarkRule) -> Option<MarkError> {
        self.rules.iter().find(|r| r.overlaps(rule)).map(|r| {
            if r == rule {
                MarkError::Exists(rule.to_string())
            } else {
                MarkError::Overlap {
                    rule: rule.to_string(),
                    existing: r.to_string(),
                }
            }
        })
    }

    /// Adds `rule` unless it overlaps one in force (then nothing changes).
    pub fn add(&mut self, rule: MarkRule) -> Result<(), MarkError> {
        if let Some(e) = self.conflict(&rule) {
            return Err(e);
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Removes the rule equal to `rule`.
    pub fn delete(&mut self, rule: &MarkRule) -> Result<(), MarkError> {
        let i = self
            .rules
            .iter()
            .position(|r| r == rule)
            .ok_or_else(|| MarkError::NoRule(rule.to_string()))?;
        self.rules.remove(i);
        Ok(())
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The mark of a packet of IP protocol `proto` to `daddr:dport`, 0 when no
    /// rule matches.
    pub fn classify(&self, proto: u8, daddr: IpAddr, dport: u16) -> u32 {
        self.rules
            .iter()
            .find(|r| r.matches(proto, daddr, dport))
            .map_or(0, MarkRule::mark)
    }

    /// The rules giving `mark` to traffic of `family`.
    pub fn of_mark(&self, mark: u32, family: Family) -> impl Iterator<Item = &MarkRule> {
        self.rules
            .iter()
            .filter(move |r| r.mark == mark && r.family() == family)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rule(s: &str) -> MarkRule {
        s.parse().unwrap()
    }

    #[test]
    fn rules_are_canonical() {
        let r = rule("6666 TCP 10.0.0.77/24 443,80,81-85,84");
        assert_eq!(r.to_string(), "6666 tcp 10.0.0.0/24 80-85,443");
        assert_eq!(r.port_count(), 7);
        assert_eq!(rule("0x1a0a udp 2001:db8::1 53").mark(), 6666);
        assert_eq!(
            rule("7 sctp 2001:db8::/32").to_string(),
            "7 sctp 2001:db8::/32 all"
        );
        assert_eq!(rule("7 tcp 192.0.2.1 all").port_count(), 65535);
        assert_eq!(rule("7 tcp 192.0.2.1 8000:8002").ports_text(), "8000-8002");
    }

    #[test]
    fn bad_rules_are_refused() {
        let err = |s: &str| s.parse::<MarkRule>().unwrap_err();
        assert_eq!(err("0 tcp 10.0.0.1 80"), MarkError::ZeroMark);
        assert_eq!(err("1 tcp 10.0.0.1 0"), MarkError::ZeroPort);
        assert_eq!(err("1 tcp 10.0.0.1 80,0-5"), MarkError::ZeroPort);
        assert_eq!(
            err("1 tcp 10.0.0.1 90-80"),
            MarkError::InvertedRange {
                first: 90,
                last: 80
            }
        );
        assert!(matches!(
            err("1 tcp 10.0.0.1/33 80"),
            MarkError::PrefixTooLong { len: 33, .. }
        ));
        assert!(matches!(
            err("1 icmp 10.0.0.1 80"),
            MarkError::Syntax { .. }
        ));
        assert!(matches!(
            err("1 tcp 10.0.0.1 65536"),
            MarkError::Syntax { .. }
        ));
        assert!(matches!(
            err("1 tcp 10.0.0.1 80 x"),
            MarkError::Syntax { .. }
        ));
        assert!(matches!(
            err("-1 tcp 10.0.0.1 80"),
            MarkError::Syntax { .. }
        ));
    }

    #[test]
    fn overlaps_are_refused_and_name_the_rule() {
        let mut set = MarkRules::default();
        set.add(rule("6666 tcp 10.0.0.1 80,443")).unwrap();
        set.add(rule("6666 udp 10.0.0.1 80,443")).unwrap();
        set.add(rule("6667 tcp 10.0.0.1 8080")).unwrap();
        set.add(rule("6668 tcp 10.0.1.0/24 80")).unwrap();
        set.add(rule("6666 tcp 2001:db8::1 80,443")).unwrap();
        let before = set.clone();
        for (bad, existing) in [
            ("1 tcp 10.0.0.0/16 443", "6666 tcp 10.0.0.1/32 80,443"),
            ("1 tcp 10.0.0.1 400-500", "6666 tcp 10.0.0.1/32 80,443"),
            ("1 tcp 10.0.1.9 all", "6668 tcp 10.0.1.0/24 80"),
            ("1 tcp 0.0.0.0/0 8080", "6667 tcp 10.0.0.1/32 8080"),
            ("1 tcp ::/0 80", "6666 tcp 2001:db8::1/128 80,443"),
        ] {
            let e = set.add(rule(bad)).unwrap_err();
            assert_eq!(
                e,
                MarkError::Overlap {
                    rule: rule(bad).to_string(),
                    existing: existing.to_string()
                },
                "{bad}"
            );
        }
        assert_eq!(
            set.add(rule("6666 tcp 10.0.0.1/32 443,80")).unwrap_err(),
            MarkError::Exists("6666 tcp 10.0.0.1/32 80,443".into())
        );
        assert_eq!(set, before, "a refused rule changes nothing");
        // Disjoint neighbours are fine.
        set.add(rule("9 tcp 10.0.0.1 81-442")).unwrap();
        set.add(rule("9 tcp 10.0.0.2 all")).unwrap();
    }

    #[test]
    fn classify_finds_the_one_matching_rule() {
        let mut set = MarkRules::default();
        set.add(rule("6666 tcp 10.0.0.1 80,443")).unwrap();
        set.add(rule("7 udp 10.0.0.0/30 5000-5009")).unwrap();
        set.add(rule("8 tcp 2001:db8::/126")).unwrap();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(set.classify(6, a("10.0.0.1"), 443), 6666);
        assert_eq!(set.classify(6, a("10.0.0.1"), 80), 6666);
        assert_eq!(set.classify(6, a("10.0.0.1"), 81), 0);
        assert_eq!(set.classify(17, a("10.0.0.1"), 80), 0);
        assert_eq!(set.classify(17, a("10.0.0.3"), 5009), 7);
        assert_eq!(set.classify(17, a("10.0.0.4"), 5009), 0);
        assert_eq!(set.classify(6, a("2001:db8::3"), 1), 8);
        assert_eq!(set.classify(6, a("2001:db8::4"), 1), 0);
        assert_eq!(set.classify(6, a("::ffff:10.0.0.1"), 80), 0);
        set.delete(&rule("6666 tcp 10.0.0.1 443,80")).unwrap();
        assert_eq!(set.classify(6, a("10.0.0.1"), 443), 0);
        assert!(matches!(
            set.delete(&rule("6666 tcp 10.0.0.1 80")),
            Err(MarkError::NoRule(_))
        ));
    }

    #[test]
    fn prefixes_enumerate_their_addresses() {
        let p: Prefix = "10.0.0.5/30".parse().unwrap();
        let all: Vec<String> = p.addresses().map(|a| a.to_string()).collect();
        assert_eq!(all, ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]);
        assert_eq!("::/0".parse::<Prefix>().unwrap().size(), u128::MAX);
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().size(), 1 << 32);
        assert_eq!("2001:db8::/127".parse::<Prefix>().unwrap().size(), 2);
    }
}
