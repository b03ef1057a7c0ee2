//! The IPVS connection-synchronisation messages that Linux directors multicast to each
//! other (kernel net/netfilter/ipvs/ip_vs_sync.c, flags from
//! include/uapi/linux/ip_vs.h): version 1, which rvs sends and receives, and the older
//! version 0, which a receiver must still accept. This module owns the UDP payload only;
//! sockets, the multicast group join and when to sync are the sync daemon's business.
//!
//! Version 1 layout, all multi-byte fields big-endian:
//!
//! ```text
//! message header (8 bytes)
//!   0      reserved, 0 (a v0 receiver reads it as nr_conns and so ignores the message)
//!   1      syncid
//!   2-3    size of the whole message in bytes
//!   4      number of connection entries
//!   5      version, 1
//!   6-7    spare, 0
//! connection entry (36 bytes for IPv4, 72 for IPv6, then options)
//!   0      type: bit 0 set for IPv6
//!   1      IP protocol
//!   2-3    ver_size: entry version in the top 4 bits (0), entry size in the low 12
//!   4-7    connection flags (IP_VS_CONN_F_*)
//!   8-9    state
//!   10-15  client, virtual and destination ports
//!   16-19  firewall mark
//!   20-23  timeout in seconds
//!   24-    client, virtual and destination addresses (4 or 16 bytes each)
//! options, each: kind (1 byte), length (1 byte, not 0), data
//!   kind 1 SEQ_DATA: 24 bytes, the input then the output sequence adjustment
//!          (init_seq, delta, previous_delta; 4 bytes each)
//!   kind 2 PE_DATA: persistence-engine data (at most 255 bytes)
//!   kind 3 PE_NAME: persistence-engine name (at most 16 bytes)
//!   bit 0x40 in the kind marks an option a receiver may ignore if it does not know it;
//!   the kernel masks it off before matching the kinds above
//! the next entry starts at the entry's size rounded up to 4 bytes (zero padding); the
//! message ends right after the last entry, unpadded.
//! ```
//!
//! Version 0 is a 4-byte header (nr_conns, syncid, size) and 24-byte IPv4 entries
//! (reserved, protocol, cport, vport, dport, caddr, vaddr, daddr, 16-bit flags, state),
//! each followed by the 24 bytes of sequence adjustments when its flags have a bit of
//! `IP_VS_CONN_F_SEQ_MASK`. No timeout, firewall mark or persistence data.
//!
//! Invariants:
//! - Version detection follows ip_vs_process_message: the `size` field must equal the
//!   datagram length; a message is version 1 when its byte 0 is 0, its byte 5 is 1 and
//!   bytes 6-7 are 0, and version 0 otherwise. A message with byte 0 zero and at least
//!   8 bytes that fails the other two tests is refused here ([`SyncError::UnknownVersion`],
//!   [`SyncError::NonZeroSpare`]); the kernel reads it as an empty v0 message, which has
//!   the same effect: nothing.
//! - Everything the kernel drops a whole message for is an error here (truncated entry,
//!   entry version other than 0, unknown entry type, bad option length, duplicate
//!   option, ...). Bytes after the last entry (past its 4-byte padding) are an error too,
//!   although the kernel ignores them: no kernel sends them.
//! - What the kernel judges per entry and only skips that entry for is kept, not judged:
//!   unknown options ([`SyncConn::unknown_options`], see
//!   [`SyncConn::has_unknown_mandatory_option`]), protocol and state values, PE data
//!   without a PE name. The receiver applies those rules.
//! - Flags are kept raw as on the wire. Encoding clears `IP_VS_CONN_F_HASHED` as the
//!   kernel's sender does; a receiver keeps `flags & CONN_F_BACKUP_MASK | CONN_F_SYNC`
//!   (v1) and sets `CONN_F_SYNC` (v0).
//! - Version 0 carries the sequence adjustments in the sender's host byte order (the
//!   kernel copies its structure as is). This module reads and writes them
//!   little-endian, the order of every director architecture in use (x86, arm64).
//! - No function here panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default multicast group of the sync daemon (`IP_VS_SYNC_GROUP`). The kernel has no
/// IPv6 default: an IPv6 group must be configured (`ipvsadm --mcast-group`).
pub const SYNC_MCAST_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The default UDP port (`IP_VS_SYNC_PORT`). With `sync_ports` = n > 1 the kernel runs n
/// threads, thread i using port + i.
pub const SYNC_PORT: u16 = 8848;
/// The default multicast TTL / hop limit of sync messages.
pub const SYNC_MCAST_TTL: u8 = 1;
/// The message version rvs sends (`SYNC_PROTO_VER`).
pub const SYNC_PROTO_VERSION: u8 = 1;
/// The master's default maximum message size over an IPv4 group: 1500 - 20 (IPv4) - 8
/// (UDP), the `ipvsadm --sync-maxlen` default. See [`sync_maxlen`].
pub const DEFAULT_SYNC_MAXLEN_V4: u16 = 1500 - IPV4_UDP_HEADERS;
/// The master's default maximum message size over an IPv6 group: 1500 - 40 - 8.
pub const DEFAULT_SYNC_MAXLEN_V6: u16 = 1500 - IPV6_UDP_HEADERS;

/// Forwarding-method mask of the connection flags; the method values follow.
pub const CONN_F_FWD_MASK: u32 = 0x0007;
pub const CONN_F_MASQ: u32 = 0x0000;
pub const CONN_F_LOCALNODE: u32 = 0x0001;
pub const CONN_F_TUNNEL: u32 = 0x0002;
pub const CONN_F_DROUTE: u32 = 0x0003;
pub const CONN_F_BYPASS: u32 = 0x0004;
/// Set by a receiver on the entries sync created.
pub const CONN_F_SYNC: u32 = 0x0020;
/// Local bookkeeping; the sender clears it.
pub const CONN_F_HASHED: u32 = 0x0040;
pub const CONN_F_NOOUTPUT: u32 = 0x0080;
pub const CONN_F_INACTIVE: u32 = 0x0100;
pub const CONN_F_OUT_SEQ: u32 = 0x0200;
pub const CONN_F_IN_SEQ: u32 = 0x0400;
/// Either sequence-adjustment bit; in v0 it says the 24 option bytes follow.
pub const CONN_F_SEQ_MASK: u32 = 0x0600;
pub const CONN_F_NO_CPORT: u32 = 0x0800;
/// A persistence template, not a connection.
pub const CONN_F_TEMPLATE: u32 = 0x1000;
/// One-packet scheduling (`-o`); the kernel never syncs these.
pub const CONN_F_ONE_PACKET: u32 = 0x2000;
/// The flags a v1 receiver keeps from the wire (before adding [`CONN_F_SYNC`]).
pub const CONN_F_BACKUP_MASK: u32 = CONN_F_FWD_MASK
    | CONN_F_NOOUTPUT
    | CONN_F_INACTIVE
    | CONN_F_SEQ_MASK
    | CONN_F_NO_CPORT
    | CONN_F_TEMPLATE;

/// Longest PE data option (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAXLEN: usize = 255;
/// Longest PE name option (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAXLEN: usize = 16;

/// Option kinds (`IPVS_OPT_*`) and the "may be ignored" bit (`IPVS_OPT_F_PARAM`).
pub const OPT_SEQ_DATA: u8 = 1;
pub const OPT_PE_DATA: u8 = 2;
pub const OPT_PE_NAME: u8 = 3;
pub const OPT_F_PARAM: u8 = 0x40;

const IPV4_UDP_HEADERS: u16 = 20 + 8;
const IPV6_UDP_HEADERS: u16 = 40 + 8;
const V1_HEADER_LEN: usize = 8;
const V0_HEADER_LEN: usize = 4;
const V1_ENTRY_V4_LEN: usize = 36;
const V1_ENTRY_V6_LEN: usize = 72;
const V0_ENTRY_LEN: usize = 24;
const SEQ_OPTIONS_LEN: usize = 24;
const ENTRY_TYPE_INET6: u8 = 0x01;
const ENTRY_SIZE_MASK: u16 = 0x0fff;
const ENTRY_VERSION_SHIFT: u16 = 12;
const MAX_CONNS_PER_MESSAGE: usize = u8::MAX as usize;

/// The version of a sync message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncVersion {
    V0,
    V1,
}

/// One sync datagram: the sender's sync id and its connection entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncMessage {
    /// The sender's `--syncid`; a backup with a non-zero syncid ignores other ids.
    pub syncid: u8,
    pub conns: Vec<SyncConn>,
}

/// A connection's three addresses, all of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnAddrs {
    V4 {
        caddr: Ipv4Addr,
        vaddr: Ipv4Addr,
        daddr: Ipv4Addr,
    },
    V6 {
        caddr: Ipv6Addr,
        vaddr: Ipv6Addr,
        daddr: Ipv6Addr,
    },
}

/// A TCP sequence adjustment of a NAT connection whose payload an application helper
/// resized (kernel `struct ip_vs_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqDelta {
    /// The delta applies to sequence numbers after this one.
    pub init_seq: u32,
    pub delta: u32,
    /// The delta before the last resized packet.
    pub previous_delta: u32,
}

/// The SEQ_DATA option: input then output adjustment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqOptions {
    pub in_seq: SeqDelta,
    pub out_seq: SeqDelta,
}

/// An option of a kind this module does not know, kept as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOption {
    /// The kind byte, with its [`OPT_F_PARAM`] bit.
    pub kind: u8,
    /// 1 to 255 bytes.
    pub data: Vec<u8>,
}

/// One connection (or persistence template) entry.
///
/// For a template, the kernel's ports and addresses follow the template's key: client
/// port 0, virtual port 0 for port-0 services, the firewall mark in place of the virtual
/// address's role for fwmark services (protocol `IPPROTO_IP`, vaddr holding the mark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub addrs: ConnAddrs,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP; 0 for fwmark templates).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` bits as on the wire (only the low 16 survive v0).
    pub flags: u32,
    /// The protocol's state number (see [`state_name`]).
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    /// Firewall mark (0 if none; always 0 from v0).
    pub fwmark: u32,
    /// Remaining timeout in seconds (always 0 from v0, which means "the protocol's
    /// default for the state" to the kernel).
    pub timeout: u32,
    pub seq: Option<SeqOptions>,
    /// Persistence-engine data and name (e.g. the SIP Call-ID and "sip"); 1 to 255 and
    /// 1 to 16 bytes. The kernel sends the name only with data, and a receiver skips an
    /// entry with data but no name.
    pub pe_data: Option<Vec<u8>>,
    pub pe_name: Option<Vec<u8>>,
    /// Options of unknown kinds, in wire order.
    pub unknown_options: Vec<SyncOption>,
}

/// A forwarding method, from the low 3 bits of the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardMethod {
    /// NAT (`-m`).
    Masq,
    /// The director itself.
    LocalNode,
    /// IP-in-IP and other tunnels (`-i`).
    Tunnel,
    /// Direct routing (`-g`).
    DirectRoute,
    /// Cache bypass.
    Bypass,
}

/// Why bytes are not an acceptable sync message. `entry` counts from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("sync message of {0} bytes is shorter than its 4-byte header")]
    TooShort(usize),
    #[error("sync message size field says {header} bytes, the datagram has {actual}")]
    SizeMismatch { header: u16, actual: usize },
    #[error("sync message version {0} is not supported (only 0 and 1 exist)")]
    UnknownVersion(u8),
    #[error("sync v1 header spare field is {0:#06x}, not 0")]
    NonZeroSpare(u16),
    #[error("sync entry {entry} is truncated")]
    TruncatedEntry { entry: usize },
    #[error("sync entry {entry} claims {size} bytes, past the end of the message")]
    EntryOverrun { entry: usize, size: usize },
    #[error("sync entry {entry} has entry version {version}, only 0 exists")]
    UnknownEntryVersion { entry: usize, version: u8 },
    #[error("sync entry {entry} has unknown type {entry_type:#04x}")]
    UnknownEntryType { entry: usize, entry_type: u8 },
    #[error("sync entry {entry} size {size} is smaller than its fixed part of {min} bytes")]
    EntryTooShort {
        entry: usize,
        size: usize,
        min: usize,
    },
    #[error("sync entry {entry}: option header cut short")]
    TruncatedOption { entry: usize },
    #[error("sync entry {entry}: option kind {kind} has bad length {len}")]
    BadOptionLength { entry: usize, kind: u8, len: usize },
    #[error("sync entry {entry}: option kind {kind} appears twice")]
    DuplicateOption { entry: usize, kind: u8 },
    #[error("{0} bytes after the last sync entry")]
    TrailingBytes(usize),
}

/// Why a message cannot be encoded. `entry` counts from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("entry {entry}: PE data of {len} bytes (1 to 255 allowed)")]
    PeDataLength { entry: usize, len: usize },
    #[error("entry {entry}: PE name of {len} bytes (1 to 16 allowed)")]
    PeNameLength { entry: usize, len: usize },
    #[error("entry {entry}: option kind {kind} with {len} bytes (1 to 255 allowed)")]
    OptionLength { entry: usize, kind: u8, len: usize },
    #[error("entry {entry}: option kind {kind} is a known kind, not an unknown option")]
    KnownOptionKind { entry: usize, kind: u8 },
    #[error("entry {entry} is {size} bytes, more than the 4095 an entry can say")]
    EntryTooLong { entry: usize, size: usize },
    #[error("entry {entry}: sync version 0 carries IPv4 only")]
    V0NotIpv4 { entry: usize },
    #[error("entry {entry}: in sync version 0, sequence data is sent exactly when the flags have IP_VS_CONN_F_SEQ_MASK bits")]
    V0SeqMismatch { entry: usize },
}

/// Which end of the sync a size is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRole {
    Master,
    Backup,
}

/// The maximum sync message size (UDP payload) the kernel's start_sync_thread settles
/// on. `configured` is `--sync-maxlen` (0 for the default), `interface_mtu` the MTU of
/// the multicast interface, `group_is_ipv6` the group's family (its IP + UDP headers
/// are 48 bytes, 28 for IPv4).
///
/// - Default, master: 1500 minus the headers, whatever the MTU (1472 over IPv4), so a
///   message fits one 1500-byte frame; a bigger MTU is only used when configured.
/// - Default, backup: the interface MTU clamped to 1500..=65535, minus the headers: the
///   backup's receive buffer. A message longer than the backup's maxlen arrives cut and
///   is dropped (size mismatch), so a backup needs at least the master's value.
/// - Configured: clamped to 1 (master) or 1024 (backup) ..= 65535 minus the headers. A
///   value above the path MTU makes the IP layer fragment (the socket allows it).
pub fn sync_maxlen(
    role: SyncRole,
    group_is_ipv6: bool,
    configured: u16,
    interface_mtu: u32,
) -> u16 {
    let headers = if group_is_ipv6 {
        IPV6_UDP_HEADERS
    } else {
        IPV4_UDP_HEADERS
    };
    if configured != 0 {
        let floor = match role {
            SyncRole::Master => 1,
            SyncRole::Backup => 1024,
        };
        return configured.clamp(floor, u16::MAX - headers);
    }
    let mtu = match role {
        SyncRole::Master => 1500,
        SyncRole::Backup => u16::try_from(interface_mtu.clamp(1500, 65535)).unwrap_or(u16::MAX),
    };
    mtu - headers
}

/// The name ipvsadm shows (`ipvsadm -Lnc`, kernel ip_vs_state_name) for a state of a
/// TCP or UDP connection or of a template; `None` for other protocols or out-of-range
/// states.
pub fn state_name(protocol: u8, flags: u32, state: u16) -> Option<&'static str> {
    const TCP: [&str; 11] = [
        "NONE",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "SYNACK",
    ];
    const TEMPLATE: [&str; 2] = ["NONE", "ASSURED"];
    let index = usize::from(state);
    if flags & CONN_F_TEMPLATE != 0 {
        return TEMPLATE.get(index).copied();
    }
    match protocol {
        6 => TCP.get(index).copied(),
        17 if state == 0 => Some("UDP"),
        _ => None,
    }
}

impl ConnAddrs {
    pub fn is_ipv6(&self) -> bool {
        matches!(self, ConnAddrs::V6 { .. })
    }
    pub fn caddr(&self) -> IpAddr {
        match self {
            ConnAddrs::V4 { caddr, .. } => IpAddr::V4(*caddr),
            ConnAddrs::V6 { caddr, .. } => IpAddr::V6(*caddr),
        }
    }
    pub fn vaddr(&self) -> IpAddr {
        match self {
            ConnAddrs::V4 { vaddr, .. } => IpAddr::V4(*vaddr),
            ConnAddrs::V6 { vaddr, .. } => IpAddr::V6(*vaddr),
        }
    }
    pub fn daddr(&self) -> IpAddr {
        match self {
            ConnAddrs::V4 { daddr, .. } => IpAddr::V4(*daddr),
            ConnAddrs::V6 { daddr, .. } => IpAddr::V6(*daddr),
        }
    }
}

impl SyncConn {
    /// A plain entry: no options, flags, state, fwmark or timeout.
    pub fn new(addrs: ConnAddrs, protocol: u8, cport: u16, vport: u16, dport: u16) -> SyncConn {
        SyncConn {
            addrs,
            protocol,
            flags: 0,
            state: 0,
            cport,
            vport,
            dport,
            fwmark: 0,
            timeout: 0,
            seq: None,
            pe_data: None,
            pe_name: None,
            unknown_options: Vec::new(),
        }
    }

    /// The forwarding method, `None` for the undefined values 5 to 7.
    pub fn forward_method(&self) -> Option<ForwardMethod> {
        match self.flags & CONN_F_FWD_MASK {
            CONN_F_MASQ => Some(ForwardMethod::Masq),
            CONN_F_LOCALNODE => Some(ForwardMethod::LocalNode),
            CONN_F_TUNNEL => Some(ForwardMethod::Tunnel),
            CONN_F_DROUTE => Some(ForwardMethod::DirectRoute),
            CONN_F_BYPASS => Some(ForwardMethod::Bypass),
            _ => None,
        }
    }
    pub fn is_template(&self) -> bool {
        self.flags & CONN_F_TEMPLATE != 0
    }
    pub fn is_one_packet(&self) -> bool {
        self.flags & CONN_F_ONE_PACKET != 0
    }
    pub fn is_inactive(&self) -> bool {
        self.flags & CONN_F_INACTIVE != 0
    }
    pub fn is_no_output(&self) -> bool {
        self.flags & CONN_F_NOOUTPUT != 0
    }
    pub fn is_no_cport(&self) -> bool {
        self.flags & CONN_F_NO_CPORT != 0
    }
    /// Whether the flags ask for sequence adjustment in either direction.
    pub fn adjusts_seq(&self) -> bool {
        self.flags & CONN_F_SEQ_MASK != 0
    }
    /// Whether an unknown option lacks the [`OPT_F_PARAM`] bit: the kernel's receiver
    /// then skips this entry (and keeps the rest of the message).
    pub fn has_unknown_mandatory_option(&self) -> bool {
        self.unknown_options
            .iter()
            .any(|option| option.kind & OPT_F_PARAM == 0)
    }
}

/// Decodes a sync message of either version (see [`decode_versioned`]).
pub fn decode(bytes: &[u8]) -> Result<SyncMessage, SyncError> {
    decode_versioned(bytes).map(|(_, message)| message)
}

/// Decodes a sync message and says which version it was.
pub fn decode_versioned(bytes: &[u8]) -> Result<(SyncVersion, SyncMessage), SyncError> {
    let Some(&[first, syncid, size_high, size_low]) = bytes.first_chunk::<V0_HEADER_LEN>() else {
        return Err(SyncError::TooShort(bytes.len()));
    };
    let size = u16::from_be_bytes([size_high, size_low]);
    if usize::from(size) != bytes.len() {
        return Err(SyncError::SizeMismatch {
            header: size,
            actual: bytes.len(),
        });
    }
    match bytes.first_chunk::<V1_HEADER_LEN>() {
        Some(header) if first == 0 => {
            if header[5] != SYNC_PROTO_VERSION {
                return Err(SyncError::UnknownVersion(header[5]));
            }
            let spare = u16::from_be_bytes([header[6], header[7]]);
            if spare != 0 {
                return Err(SyncError::NonZeroSpare(spare));
            }
            let conns = decode_v1_entries(bytes, usize::from(header[4]))?;
            Ok((SyncVersion::V1, SyncMessage { syncid, conns }))
        }
        _ => {
            let conns = decode_v0_entries(bytes, usize::from(first))?;
            Ok((SyncVersion::V0, SyncMessage { syncid, conns }))
        }
    }
}

/// `N` bytes at `at`, if there.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes
        .get(at..at.checked_add(N)?)
        .and_then(|slice| <[u8; N]>::try_from(slice).ok())
}

fn be16(bytes: [u8; 2]) -> u16 {
    u16::from_be_bytes(bytes)
}

fn be32(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes)
}

fn sub<const N: usize, const M: usize>(bytes: &[u8; N], at: usize) -> [u8; M] {
    array_at(bytes, at).unwrap_or([0; M])
}

fn round_up4(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn decode_v1_entries(bytes: &[u8], count: usize) -> Result<Vec<SyncConn>, SyncError> {
    let mut conns = Vec::with_capacity(count);
    let mut start = V1_HEADER_LEN;
    let mut end = V1_HEADER_LEN;
    for entry in 0..count {
        let Some(fixed) = array_at::<V1_ENTRY_V4_LEN>(bytes, start) else {
            return Err(SyncError::TruncatedEntry { entry });
        };
        let ver_size = be16([fixed[2], fixed[3]]);
        let size = usize::from(ver_size & ENTRY_SIZE_MASK);
        end = start + size;
        let Some(body) = bytes.get(start..end) else {
            return Err(SyncError::EntryOverrun { entry, size });
        };
        let version = (ver_size >> ENTRY_VERSION_SHIFT) as u8;
        if version != 0 {
            return Err(SyncError::UnknownEntryVersion { entry, version });
        }
        conns.push(decode_v1_entry(entry, body)?);
        start += round_up4(size);
    }
    if bytes.len() > round_up4(end) {
        return Err(SyncError::TrailingBytes(bytes.len() - end));
    }
    Ok(conns)
}

/// One v1 entry, `body` being exactly its `size` bytes (at least the 36 of an IPv4
/// entry's fixed part: the caller read them).
fn decode_v1_entry(entry: usize, body: &[u8]) -> Result<SyncConn, SyncError> {
    let entry_type = body.first().copied().unwrap_or_default();
    let (addrs, fixed_len) = if entry_type & ENTRY_TYPE_INET6 != 0 {
        let Some(fixed) = array_at::<V1_ENTRY_V6_LEN>(body, 0) else {
            return Err(SyncError::EntryTooShort {
                entry,
                size: body.len(),
                min: V1_ENTRY_V6_LEN,
            });
        };
        let addrs = ConnAddrs::V6 {
            caddr: Ipv6Addr::from(sub::<72, 16>(&fixed, 24)),
            vaddr: Ipv6Addr::from(sub::<72, 16>(&fixed, 40)),
            daddr: Ipv6Addr::from(sub::<72, 16>(&fixed, 56)),
        };
        (addrs, V1_ENTRY_V6_LEN)
    } else if entry_type == 0 {
        let Some(fixed) = array_at::<V1_ENTRY_V4_LEN>(body, 0) else {
            return Err(SyncError::EntryTooShort {
                entry,
                size: body.len(),
                min: V1_ENTRY_V4_LEN,
            });
        };
        let addrs = ConnAddrs::V4 {
            caddr: Ipv4Addr::from(sub::<36, 4>(&fixed, 24)),
            vaddr: Ipv4Addr::from(sub::<36, 4>(&fixed, 28)),
            daddr: Ipv4Addr::from(sub::<36, 4>(&fixed, 32)),
        };
        (addrs, V1_ENTRY_V4_LEN)
    } else {
        return Err(SyncError::UnknownEntryType { entry, entry_type });
    };
    // Both fixed parts share their first 24 bytes; the caller checked there are 36.
    let common: [u8; 24] = array_at(body, 0).unwrap_or([0; 24]);
    let mut conn = SyncConn {
        addrs,
        protocol: common[1],
        flags: be32(sub(&common, 4)),
        state: be16(sub(&common, 8)),
        cport: be16(sub(&common, 10)),
        vport: be16(sub(&common, 12)),
        dport: be16(sub(&common, 14)),
        fwmark: be32(sub(&common, 16)),
        timeout: be32(sub(&common, 20)),
        seq: None,
        pe_data: None,
        pe_name: None,
        unknown_options: Vec::new(),
    };
    decode_options(entry, body.get(fixed_len..).unwrap_or_default(), &mut conn)?;
    Ok(conn)
}

/// The options after an entry's fixed part (kernel ip_vs_proc_sync_conn).
fn decode_options(entry: usize, mut rest: &[u8], conn: &mut SyncConn) -> Result<(), SyncError> {
    while !rest.is_empty() {
        let Some(&[kind, len]) = rest.first_chunk::<2>() else {
            return Err(SyncError::TruncatedOption { entry });
        };
        let len = usize::from(len);
        let Some(data) = rest.get(2..2 + len).filter(|_| len != 0) else {
            return Err(SyncError::BadOptionLength { entry, kind, len });
        };
        match kind & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                let Some(seq) =
                    array_at::<SEQ_OPTIONS_LEN>(data, 0).filter(|_| len == SEQ_OPTIONS_LEN)
                else {
                    return Err(SyncError::BadOptionLength { entry, kind, len });
                };
                if conn.seq.is_some() {
                    return Err(SyncError::DuplicateOption { entry, kind });
                }
                conn.seq = Some(seq_options(&seq, u32::from_be_bytes));
            }
            OPT_PE_DATA => {
                if conn.pe_data.is_some() {
                    return Err(SyncError::DuplicateOption { entry, kind });
                }
                conn.pe_data = Some(data.to_vec());
            }
            OPT_PE_NAME => {
                if len > PE_NAME_MAXLEN {
                    return Err(SyncError::BadOptionLength { entry, kind, len });
                }
                if conn.pe_name.is_some() {
                    return Err(SyncError::DuplicateOption { entry, kind });
                }
                conn.pe_name = Some(data.to_vec());
            }
            _ => conn.unknown_options.push(SyncOption {
                kind,
                data: data.to_vec(),
            }),
        }
        rest = rest.get(2 + len..).unwrap_or_default();
    }
    Ok(())
}

/// Reads the two sequence adjustments with `word` (big-endian for v1, the sender's host
/// order for v0).
fn seq_options(bytes: &[u8; SEQ_OPTIONS_LEN], word: fn([u8; 4]) -> u32) -> SeqOptions {
    let delta = |at: usize| SeqDelta {
        init_seq: word(sub(bytes, at)),
        delta: word(sub(bytes, at + 4)),
        previous_delta: word(sub(bytes, at + 8)),
    };
    SeqOptions {
        in_seq: delta(0),
        out_seq: delta(12),
    }
}

fn put_seq_options(out: &mut Vec<u8>, seq: &SeqOptions, word: fn(u32) -> [u8; 4]) {
    for delta in [seq.in_seq, seq.out_seq] {
        out.extend_from_slice(&word(delta.init_seq));
        out.extend_from_slice(&word(delta.delta));
        out.extend_from_slice(&word(delta.previous_delta));
    }
}

/// v0 entries (kernel ip_vs_process_message_v0).
fn decode_v0_entries(bytes: &[u8], count: usize) -> Result<Vec<SyncConn>, SyncError> {
    let mut conns = Vec::with_capacity(count);
    let mut at = V0_HEADER_LEN;
    for entry in 0..count {
        let Some(fixed) = array_at::<V0_ENTRY_LEN>(bytes, at) else {
            return Err(SyncError::TruncatedEntry { entry });
        };
        at += V0_ENTRY_LEN;
        let flags = u32::from(be16(sub(&fixed, 20)));
        let seq = if flags & CONN_F_SEQ_MASK != 0 {
            let Some(seq) = array_at::<SEQ_OPTIONS_LEN>(bytes, at) else {
                return Err(SyncError::TruncatedEntry { entry });
            };
            at += SEQ_OPTIONS_LEN;
            Some(seq_options(&seq, u32::from_le_bytes))
        } else {
            None
        };
        conns.push(SyncConn {
            addrs: ConnAddrs::V4 {
                caddr: Ipv4Addr::from(sub::<24, 4>(&fixed, 8)),
                vaddr: Ipv4Addr::from(sub::<24, 4>(&fixed, 12)),
                daddr: Ipv4Addr::from(sub::<24, 4>(&fixed, 16)),
            },
            protocol: fixed[1],
            flags,
            state: be16(sub(&fixed, 22)),
            cport: be16(sub(&fixed, 2)),
            vport: be16(sub(&fixed, 4)),
            dport: be16(sub(&fixed, 6)),
            fwmark: 0,
            timeout: 0,
            seq,
            pe_data: None,
            pe_name: None,
            unknown_options: Vec::new(),
        });
    }
    if bytes.len() > at {
        return Err(SyncError::TrailingBytes(bytes.len() - at));
    }
    Ok(conns)
}

/// Encodes `message` as version 1 datagrams of at most `maxlen` bytes each (see
/// [`sync_maxlen`]), filling each in order as the kernel's master fills its sync buffer:
/// an entry that does not fit (with its padding) starts a new message, a message holds
/// at most 255 entries, and an entry longer than `maxlen` on its own still goes out,
/// alone in a message of its size. No connections give no messages.
pub fn encode_v1(message: &SyncMessage, maxlen: u16) -> Result<Vec<Vec<u8>>, EncodeError> {
    let entries = message
        .conns
        .iter()
        .enumerate()
        .map(|(entry, conn)| encode_v1_entry(entry, conn))
        .collect::<Result<Vec<_>, _>>()?;
    let header = [0, message.syncid, 0, 0, 0, SYNC_PROTO_VERSION, 0, 0];
    Ok(pack(entries, maxlen, &header, 4))
}

/// Encodes `message` as version 0 datagrams of at most `maxlen` bytes each, split like
/// [`encode_v1`]. Only the low 16 flag bits exist in v0; fwmark, timeout, PE data and
/// unknown options are not sent (the kernel's v0 sender drops them too).
pub fn encode_v0(message: &SyncMessage, maxlen: u16) -> Result<Vec<Vec<u8>>, EncodeError> {
    let entries = message
        .conns
        .iter()
        .enumerate()
        .map(|(entry, conn)| encode_v0_entry(entry, conn))
        .collect::<Result<Vec<_>, _>>()?;
    let header = [0, message.syncid, 0, 0];
    Ok(pack(entries, maxlen, &header, 1))
}

/// Packs encoded entries into messages: `header` starts one, entries are aligned to
/// `align` bytes, and the count (byte 0 for v0, 4 for v1) and size (bytes 2-3) are set
/// when a message is closed.
fn pack(entries: Vec<Vec<u8>>, maxlen: u16, header: &[u8], align: usize) -> Vec<Vec<u8>> {
    let count_at = if header.len() == V1_HEADER_LEN { 4 } else { 0 };
    let close = |mut message: Vec<u8>, count: usize| {
        let size = u16::try_from(message.len()).unwrap_or(u16::MAX);
        if let Some(slot) = message.get_mut(2..4) {
            slot.copy_from_slice(&size.to_be_bytes());
        }
        if let Some(slot) = message.get_mut(count_at) {
            *slot = u8::try_from(count).unwrap_or(u8::MAX);
        }
        message
    };
    let mut messages = Vec::new();
    // The message being filled, its capacity and its entry count.
    let mut current: Option<(Vec<u8>, usize, usize)> = None;
    for entry in entries {
        if let Some((message, capacity, count)) = current.take() {
            let padded = round_up4_to(message.len(), align);
            if padded + entry.len() > capacity || count == MAX_CONNS_PER_MESSAGE {
                messages.push(close(message, count));
            } else {
                current = Some((message, capacity, count));
            }
        }
        let (message, _, count) = current.get_or_insert_with(|| {
            let capacity = usize::from(maxlen).max(header.len() + entry.len());
            (header.to_vec(), capacity, 0)
        });
        message.resize(round_up4_to(message.len(), align), 0);
        message.extend_from_slice(&entry);
        *count += 1;
    }
    if let Some((message, _, count)) = current {
        messages.push(close(message, count));
    }
    messages
}

fn round_up4_to(len: usize, align: usize) -> usize {
    if align == 4 {
        round_up4(len)
    } else {
        len
    }
}

fn encode_v1_entry(entry: usize, conn: &SyncConn) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(V1_ENTRY_V6_LEN + SEQ_OPTIONS_LEN + 2);
    out.push(if conn.addrs.is_ipv6() {
        ENTRY_TYPE_INET6
    } else {
        0
    });
    out.push(conn.protocol);
    out.extend_from_slice(&[0, 0]); // ver_size, set below
    out.extend_from_slice(&(conn.flags & !CONN_F_HASHED).to_be_bytes());
    out.extend_from_slice(&conn.state.to_be_bytes());
    out.extend_from_slice(&conn.cport.to_be_bytes());
    out.extend_from_slice(&conn.vport.to_be_bytes());
    out.extend_from_slice(&conn.dport.to_be_bytes());
    out.extend_from_slice(&conn.fwmark.to_be_bytes());
    out.extend_from_slice(&conn.timeout.to_be_bytes());
    match conn.addrs {
        ConnAddrs::V4 {
            caddr,
            vaddr,
            daddr,
        } => {
            for address in [caddr, vaddr, daddr] {
                out.extend_from_slice(&address.octets());
            }
        }
        ConnAddrs::V6 {
            caddr,
            vaddr,
            daddr,
        } => {
            for address in [caddr, vaddr, daddr] {
                out.extend_from_slice(&address.octets());
            }
        }
    }
    if let Some(seq) = &conn.seq {
        out.extend_from_slice(&[OPT_SEQ_DATA, SEQ_OPTIONS_LEN as u8]);
        put_seq_options(&mut out, seq, u32::to_be_bytes);
    }
    if let Some(data) = &conn.pe_data {
        let len = u8::try_from(data.len())
            .ok()
            .filter(|len| *len != 0)
            .ok_or(EncodeError::PeDataLength {
                entry,
                len: data.len(),
            })?;
        out.extend_from_slice(&[OPT_PE_DATA, len]);
        out.extend_from_slice(data);
    }
    if let Some(name) = &conn.pe_name {
        let len = u8::try_from(name.len())
            .ok()
            .filter(|len| (1..=PE_NAME_MAXLEN).contains(&usize::from(*len)))
            .ok_or(EncodeError::PeNameLength {
                entry,
                len: name.len(),
            })?;
        out.extend_from_slice(&[OPT_PE_NAME, len]);
        out.extend_from_slice(name);
    }
    for option in &conn.unknown_options {
        let kind = option.kind;
        if matches!(
            kind & !OPT_F_PARAM,
            OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME
        ) {
            return Err(EncodeError::KnownOptionKind { entry, kind });
        }
        let len = u8::try_from(option.data.len())
            .ok()
            .filter(|len| *len != 0)
            .ok_or(EncodeError::OptionLength {
                entry,
                kind,
                len: option.data.len(),
            })?;
        out.extend_from_slice(&[kind, len]);
        out.extend_from_slice(&option.data);
    }
    let size = u16::try_from(out.len())
        .ok()
        .filter(|size| *size <= ENTRY_SIZE_MASK)
        .ok_or(EncodeError::EntryTooLong {
            entry,
            size: out.len(),
        })?;
    if let Some(slot) = out.get_mut(2..4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
    Ok(out)
}

fn encode_v0_entry(entry: usize, conn: &SyncConn) -> Result<Vec<u8>, EncodeError> {
    let ConnAddrs::V4 {
        caddr,
        vaddr,
        daddr,
    } = conn.addrs
    else {
        return Err(EncodeError::V0NotIpv4 { entry });
    };
    let flags = (conn.flags & !CONN_F_HASHED) as u16;
    if (u32::from(flags) & CONN_F_SEQ_MASK != 0) != conn.seq.is_some() {
        return Err(EncodeError::V0SeqMismatch { entry });
    }
    let mut out = Vec::with_capacity(V0_ENTRY_LEN + SEQ_OPTIONS_LEN);
    out.extend_from_slice(&[0, conn.protocol]);
    out.extend_from_slice(&conn.cport.to_be_bytes());
    out.extend_from_slice(&conn.vport.to_be_bytes());
    out.extend_from_slice(&conn.dport.to_be_bytes());
    for address in [caddr, vaddr, daddr] {
        out.extend_from_slice(&address.octets());
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&conn.state.to_be_bytes());
    if let Some(seq) = &conn.seq {
        put_seq_options(&mut out, seq, u32::to_le_bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxlen_defaults_and_clamps() {
        assert_eq!(sync_maxlen(SyncRole::Master, false, 0, 9000), 1472);
        assert_eq!(sync_maxlen(SyncRole::Master, true, 0, 9000), 1452);
        assert_eq!(sync_maxlen(SyncRole::Backup, false, 0, 9000), 9000 - 28);
        assert_eq!(sync_maxlen(SyncRole::Backup, false, 0, 1280), 1472);
        assert_eq!(sync_maxlen(SyncRole::Backup, false, 100, 1500), 1024);
        assert_eq!(sync_maxlen(SyncRole::Master, false, 100, 1500), 100);
        assert_eq!(sync_maxlen(SyncRole::Master, true, 65535, 1500), 65535 - 48);
        assert_eq!(sync_maxlen(SyncRole::Backup, false, 0, 100_000), 65535 - 28);
    }

    #[test]
    fn state_names_follow_ipvsadm() {
        assert_eq!(state_name(6, 0, 1), Some("ESTABLISHED"));
        assert_eq!(state_name(6, 0, 5), Some("TIME_WAIT"));
        assert_eq!(state_name(6, 0, 11), None);
        assert_eq!(state_name(17, 0, 0), Some("UDP"));
        assert_eq!(state_name(6, CONN_F_TEMPLATE, 0), Some("NONE"));
        assert_eq!(state_name(0, CONN_F_TEMPLATE, 1), Some("ASSURED"));
        assert_eq!(state_name(132, 0, 1), None);
    }
}
