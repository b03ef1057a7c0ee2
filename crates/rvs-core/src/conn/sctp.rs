//! SCTP connection states as IPVS tracks them: the state set and its names and
//! timeouts, how a packet's chunks become a state-machine event, the transition
//! tables for the three table directions, which states count as active, and the
//! SCTP-specific rules for when a packet may create a connection.
//!
//! The specification is the Linux kernel's `net/netfilter/ipvs/ip_vs_proto_sctp.c`
//! (with the state numbering of `include/net/ip_vs.h` and the SCTP-specific checks
//! in `net/netfilter/ipvs/ip_vs_core.c`); chunk type numbers are those of RFC 4960
//! section 3.2 (and the extension RFCs named at [`chunk`]). Behaviour follows the
//! kernel, including its quirks; the kernel's code is not copied.
//!
//! Nothing here reads a clock or owns a connection: the connection table calls
//! [`event_from_segment`] (or [`event_from_chunks`]) and [`next_state`] per packet,
//! stores the state, arms the timer with [`default_timeout`] of the new state (the
//! kernel re-arms it on every packet that yields an event, even when the state
//! stays the same) and moves the connection between the active and inactive
//! counters when [`is_active`] changes.

use super::TableDir;
use crate::time::Span;

/// SCTP chunk type numbers (RFC 4960 section 3.2, plus extensions).
pub mod chunk {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECNE: u8 = 12;
    pub const CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// RFC 4895.
    pub const AUTH: u8 = 0x0F;
    /// RFC 8260.
    pub const I_DATA: u8 = 0x40;
    /// RFC 5061.
    pub const ASCONF_ACK: u8 = 0x80;
    /// RFC 6525.
    pub const RECONF: u8 = 0x82;
    /// RFC 4820.
    pub const PAD: u8 = 0x84;
    /// RFC 3758.
    pub const FORWARD_TSN: u8 = 0xC0;
    /// RFC 5061.
    pub const ASCONF: u8 = 0xC1;
    /// RFC 8260.
    pub const I_FORWARD_TSN: u8 = 0xC2;
}

/// Length of the SCTP common header (ports, verification tag, checksum).
pub const COMMON_HEADER_LEN: usize = 12;
/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;

/// IPVS's SCTP connection states, numbered as the kernel numbers them
/// (`IP_VS_SCTP_S_*`). The names are "as seen by the real server": `Init1` to
/// `CookieReplied` are a client-started association, `CookieWait` to
/// `CookieEchoed` one started by the real server.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SctpState {
    /// Just created, no packet seen yet.
    None = 0,
    /// First INIT from the client seen; waiting for INIT ACK.
    Init1 = 1,
    /// A further INIT from the client seen; waiting for INIT ACK.
    Init = 2,
    /// INIT ACK from the server seen; waiting for COOKIE ECHO.
    CookieSent = 3,
    /// COOKIE ECHO from the client seen; waiting for COOKIE ACK.
    CookieReplied = 4,
    /// INIT from the server seen; waiting for INIT ACK from the client.
    CookieWait = 5,
    /// INIT ACK from the client seen; waiting for COOKIE ECHO from the server.
    Cookie = 6,
    /// COOKIE ECHO from the server seen; waiting for COOKIE ACK from the client.
    CookieEchoed = 7,
    Established = 8,
    ShutdownSent = 9,
    ShutdownReceived = 10,
    ShutdownAckSent = 11,
    /// The association was refused with ABORT during setup.
    Rejected = 12,
    Closed = 13,
}

impl SctpState {
    /// Number of states (`IP_VS_SCTP_S_LAST`).
    pub const COUNT: usize = 14;

    /// All states in numeric order.
    pub const ALL: [SctpState; SctpState::COUNT] = [
        SctpState::None,
        SctpState::Init1,
        SctpState::Init,
        SctpState::CookieSent,
        SctpState::CookieReplied,
        SctpState::CookieWait,
        SctpState::Cookie,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownReceived,
        SctpState::ShutdownAckSent,
        SctpState::Rejected,
        SctpState::Closed,
    ];

    /// The kernel's numeric value of the state (as carried in sync messages).
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// The state with the kernel's numeric value `i`, if there is one.
    pub fn from_index(i: u8) -> Option<SctpState> {
        SctpState::ALL.get(usize::from(i)).copied()
    }

    /// The name `ipvsadm -Lnc` prints for the state.
    pub const fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Init1 => "INIT1",
            SctpState::Init => "INIT",
            SctpState::CookieSent => "C-SENT",
            SctpState::CookieReplied => "C-REPLIED",
            SctpState::CookieWait => "C-WAIT",
            SctpState::Cookie => "COOKIE",
            SctpState::CookieEchoed => "C-ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "S-SENT",
            SctpState::ShutdownReceived => "S-RECEIVED",
            SctpState::ShutdownAckSent => "S-ACK-SENT",
            SctpState::Rejected => "REJECTED",
            SctpState::Closed => "CLOSED",
        }
    }
}

/// Longest retransmission timeout plus a second: the timeout of every setup and
/// shutdown state except `Init1` and `Rejected`.
const MAX_RTO_SECS: u64 = 60 + 1;

/// The kernel's default timeout for a connection in `state` (`sctp_timeouts`).
pub const fn default_timeout(state: SctpState) -> Span {
    Span::from_secs(match state {
        SctpState::None => 2,
        SctpState::Init1 | SctpState::Rejected => 3 + 1,
        SctpState::Established => 15 * 60,
        SctpState::Init
        | SctpState::CookieSent
        | SctpState::CookieReplied
        | SctpState::CookieWait
        | SctpState::Cookie
        | SctpState::CookieEchoed
        | SctpState::ShutdownSent
        | SctpState::ShutdownReceived
        | SctpState::ShutdownAckSent
        | SctpState::Closed => MAX_RTO_SECS,
    })
}

/// Whether a connection in `state` counts in its real server's active
/// connections (otherwise in its inactive ones). For SCTP only `Established` is
/// active. The kernel starts every connection as inactive and moves it between the
/// counters only on a state change, so comparing `is_active` of the old and the new
/// state reproduces its accounting.
pub const fn is_active(state: SctpState) -> bool {
    matches!(state, SctpState::Established)
}

/// The state-machine events, numbered as the kernel numbers them (the row index of
/// the transition tables).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SctpEvent {
    /// DATA, SACK, HEARTBEAT, HEARTBEAT ACK, ECNE, CWR and every chunk type the
    /// kernel does not know (type 15 and above).
    Data = 0,
    Init = 1,
    InitAck = 2,
    CookieEcho = 3,
    CookieAck = 4,
    Shutdown = 5,
    ShutdownAck = 6,
    ShutdownComplete = 7,
    Error = 8,
    Abort = 9,
}

impl SctpEvent {
    /// Number of events (`IP_VS_SCTP_EVENT_LAST`).
    pub const COUNT: usize = 10;

    /// All events in numeric order.
    pub const ALL: [SctpEvent; SctpEvent::COUNT] = [
        SctpEvent::Data,
        SctpEvent::Init,
        SctpEvent::InitAck,
        SctpEvent::CookieEcho,
        SctpEvent::CookieAck,
        SctpEvent::Shutdown,
        SctpEvent::ShutdownAck,
        SctpEvent::ShutdownComplete,
        SctpEvent::Error,
        SctpEvent::Abort,
    ];

    pub const fn index(self) -> u8 {
        self as u8
    }

    pub fn from_index(i: u8) -> Option<SctpEvent> {
        SctpEvent::ALL.get(usize::from(i)).copied()
    }

    /// The event a single chunk type stands for, before any bundling rule: types
    /// 0..=14 by their meaning, every other type (AUTH, I-DATA, FORWARD TSN, ASCONF,
    /// RE-CONFIG, PAD, unassigned) as [`SctpEvent::Data`].
    pub const fn from_chunk_type(chunk_type: u8) -> SctpEvent {
        match chunk_type {
            chunk::INIT => SctpEvent::Init,
            chunk::INIT_ACK => SctpEvent::InitAck,
            chunk::ABORT => SctpEvent::Abort,
            chunk::SHUTDOWN => SctpEvent::Shutdown,
            chunk::SHUTDOWN_ACK => SctpEvent::ShutdownAck,
            chunk::ERROR => SctpEvent::Error,
            chunk::COOKIE_ECHO => SctpEvent::CookieEcho,
            chunk::COOKIE_ACK => SctpEvent::CookieAck,
            chunk::SHUTDOWN_COMPLETE => SctpEvent::ShutdownComplete,
            // DATA, SACK, HEARTBEAT, HEARTBEAT ACK, ECNE, CWR, and anything else.
            _ => SctpEvent::Data,
        }
    }
}

/// Whether the kernel looks past the first chunk for a bundled ABORT.
const fn may_carry_abort(first: u8) -> bool {
    first == chunk::COOKIE_ECHO || first == chunk::COOKIE_ACK
}

/// The event for a packet whose chunks, in packet order, have the types
/// `chunk_types`. `None` when there is no chunk: the kernel then leaves the
/// connection alone (state and timer).
///
/// Only the first chunk counts, with one exception: when the first chunk is COOKIE
/// ECHO or COOKIE ACK and the chunk right after it is ABORT, the event is ABORT.
/// ABORT later in the packet, or after any other first chunk (DATA, SACK, ...), is
/// not looked at. This assumes the list came from a well-formed walk of the packet;
/// [`event_from_segment`] reproduces the kernel on raw bytes, malformed lengths
/// included.
pub fn event_from_chunks(chunk_types: &[u8]) -> Option<SctpEvent> {
    let (&first, rest) = chunk_types.split_first()?;
    if may_carry_abort(first) && rest.first() == Some(&chunk::ABORT) {
        return Some(SctpEvent::Abort);
    }
    Some(SctpEvent::from_chunk_type(first))
}

/// The chunk header at `offset` of `segment`: (type, length), if four bytes are
/// there.
fn chunk_header_at(segment: &[u8], offset: usize) -> Option<(u8, u16)> {
    let end = offset.checked_add(CHUNK_HEADER_LEN)?;
    match segment.get(offset..end)? {
        &[ty, _flags, hi, lo] => Some((ty, u16::from_be_bytes([hi, lo]))),
        _ => None,
    }
}

/// The type of the first chunk of an SCTP `segment` (starting at the common
/// header), if the segment is long enough to hold its chunk header.
pub fn first_chunk_type(segment: &[u8]) -> Option<u8> {
    chunk_header_at(segment, COMMON_HEADER_LEN).map(|(ty, _)| ty)
}

/// The event for the SCTP `segment` (the bytes from the SCTP common header to the
/// end of the IP payload), exactly as the kernel derives it: `None` if the first
/// chunk header is not complete; the second chunk is looked for only after COOKIE
/// ECHO / COOKIE ACK, only if the first chunk's length field is at least 4, at the
/// first chunk's length rounded up to a multiple of 4, and only if its header is
/// complete. No checksum or length validation beyond that.
pub fn event_from_segment(segment: &[u8]) -> Option<SctpEvent> {
    let (first, len) = chunk_header_at(segment, COMMON_HEADER_LEN)?;
    if may_carry_abort(first) && usize::from(len) >= CHUNK_HEADER_LEN {
        let padded = usize::from(len).next_multiple_of(4);
        if let Some((chunk::ABORT, _)) = chunk_header_at(segment, COMMON_HEADER_LEN + padded) {
            return Some(SctpEvent::Abort);
        }
    }
    Some(SctpEvent::from_chunk_type(first))
}

// Short names for the transition tables only (no cell leads to `None`).
const I1: SctpState = SctpState::Init1;
const IN: SctpState = SctpState::Init;
const CS: SctpState = SctpState::CookieSent;
const CR: SctpState = SctpState::CookieReplied;
const CW: SctpState = SctpState::CookieWait;
const CO: SctpState = SctpState::Cookie;
const CE: SctpState = SctpState::CookieEchoed;
const ES: SctpState = SctpState::Established;
const SS: SctpState = SctpState::ShutdownSent;
const SR: SctpState = SctpState::ShutdownReceived;
const SA: SctpState = SctpState::ShutdownAckSent;
const RJ: SctpState = SctpState::Rejected;
const CL: SctpState = SctpState::Closed;

type Table = [[SctpState; SctpState::COUNT]; SctpEvent::COUNT];

// Rows: events in `SctpEvent` order. Columns: current state in `SctpState` order:
//   NO  I1  IN  CS  CR  CW  CO  CE  ES  SS  SR  SA  RJ  CL

/// Packets from the client.
#[rustfmt::skip]
const INPUT: Table = [
    /* data     */ [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* init     */ [I1, IN, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, IN, IN],
    /* init_ack */ [CW, CW, CW, CS, CR, CO, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* c_echo   */ [CR, IN, IN, CR, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* c_ack    */ [ES, I1, IN, CS, CR, CW, CO, ES, ES, SS, SR, SA, RJ, CL],
    /* shut     */ [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
    /* shut_ack */ [CL, IN, IN, CS, CR, CW, CO, CE, ES, CL, SR, CL, RJ, CL],
    /* shut_cmp */ [CL, CL, CL, CS, CR, CW, CO, CE, ES, SS, SR, CL, RJ, CL],
    /* error    */ [CL, I1, IN, CS, CR, CW, CO, CL, ES, SS, SR, SA, RJ, CL],
    /* abort    */ [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
];

/// Packets from the real server (seen in NAT mode only).
#[rustfmt::skip]
const OUTPUT: Table = [
    /* data     */ [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* init     */ [CW, CW, CW, CW, CW, CW, CW, CW, ES, CW, CW, CW, CW, CW],
    /* init_ack */ [CS, CS, CS, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* c_echo   */ [CE, CE, CE, CE, CE, CE, CE, CE, ES, SS, SR, SA, RJ, CL],
    /* c_ack    */ [ES, ES, ES, ES, ES, ES, ES, ES, ES, SS, SR, SA, RJ, CL],
    /* shut     */ [SS, SS, SS, SS, SS, SS, SS, SS, SS, SS, SR, SA, RJ, CL],
    /* shut_ack */ [SA, SA, SA, SA, SA, CW, CO, CE, ES, SA, SA, SA, RJ, CL],
    /* shut_cmp */ [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* error    */ [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* abort    */ [CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL],
];

/// Packets from the client on a connection whose replies the director does not
/// see (DR/TUN: the kernel's NOOUTPUT connections).
#[rustfmt::skip]
const INPUT_ONLY: Table = [
    /* data     */ [ES, I1, IN, CS, CR, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* init     */ [I1, IN, IN, IN, IN, IN, CO, CE, ES, SS, SR, SA, IN, IN],
    /* init_ack */ [CE, CE, CE, CE, CE, CE, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* c_echo   */ [ES, ES, ES, ES, ES, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* c_ack    */ [ES, I1, IN, ES, ES, CW, ES, ES, ES, SS, SR, SA, RJ, CL],
    /* shut     */ [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
    /* shut_ack */ [CL, IN, IN, CS, CR, CW, CO, CE, CL, CL, SR, CL, RJ, CL],
    /* shut_cmp */ [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, CL, CL, RJ, CL],
    /* error    */ [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    /* abort    */ [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
];

/// The state after `event` arrives in direction `dir` on a connection in `state`
/// (the kernel's `sctp_states` table).
///
/// Choosing `dir` is the caller's job and follows the kernel: a packet from the
/// real server is `Output` and clears the connection's "no output" mark (set when
/// it was created towards a non-NAT real server); a packet from the client is
/// `InputOnly` while the mark is set, `Input` otherwise.
pub fn next_state(state: SctpState, dir: TableDir, event: SctpEvent) -> SctpState {
    let table = match dir {
        TableDir::Input => &INPUT,
        TableDir::Output => &OUTPUT,
        TableDir::InputOnly => &INPUT_ONLY,
    };
    table[usize::from(event.index())][usize::from(state.index())]
}

/// Whether a packet from a client with no connection entry, whose first chunk is
/// `first_chunk`, may be scheduled to a real server (and so create a connection).
/// Only INIT may, unless `sloppy` (the `sloppy_sctp` sysctl) is set, in which case
/// anything may except ABORT: an ABORT never creates a connection.
///
/// When this is false the kernel lets the packet through untouched (not dropped).
/// A packet too short to hold the common header and a chunk header is dropped by
/// the kernel instead; see [`schedule_verdict`].
pub const fn schedules_new_conn(first_chunk: u8, sloppy: bool) -> bool {
    first_chunk != chunk::ABORT && (sloppy || first_chunk == chunk::INIT)
}

/// What the kernel does with an SCTP packet from a client that matches no
/// connection, before looking for a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleVerdict {
    /// Look up the virtual service and schedule a real server.
    Schedule,
    /// Not a connection starter: let it continue untouched.
    Pass,
    /// The common header or first chunk header is cut short: drop.
    Drop,
}

/// [`schedules_new_conn`] on the raw SCTP `segment` (from the common header on),
/// with the kernel's verdict for segments too short to read.
///
/// Not for ICMP errors quoting an SCTP packet (the `schedule_icmp` sysctl path):
/// the kernel schedules those on the ports alone, without a chunk check.
pub fn schedule_verdict(segment: &[u8], sloppy: bool) -> ScheduleVerdict {
    match first_chunk_type(segment) {
        None => ScheduleVerdict::Drop,
        Some(first) if schedules_new_conn(first, sloppy) => ScheduleVerdict::Schedule,
        Some(_) => ScheduleVerdict::Pass,
    }
}

/// Whether the first chunk is ABORT. Besides never creating a connection (see
/// [`schedules_new_conn`]), an ABORT from a NAT real server with no connection
/// entry is not answered with ICMP port unreachable when `nat_icmp_send` is set.
pub const fn is_abort(first_chunk: u8) -> bool {
    first_chunk == chunk::ABORT
}

/// Whether a packet with this first chunk asks for a new association: INIT. The
/// kernel uses this (with [`conn_reuse_expected`]) to decide whether a packet that
/// matches an existing connection should instead expire it and be scheduled anew.
pub const fn is_new_conn(first_chunk: u8) -> bool {
    first_chunk == chunk::INIT
}

/// Whether an existing connection in `state` may be replaced by a new association
/// when an INIT arrives for it and `conn_reuse_mode` is non-zero: only `Closed`.
/// The caller must also check what the kernel checks for every protocol: the
/// connection is not controlled by another (FTP data, persistence template).
pub const fn conn_reuse_expected(state: SctpState) -> bool {
    matches!(state, SctpState::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TableDir::{Input, InputOnly, Output};

    /// Apply `steps` (direction, chunk types of the packet, expected state after)
    /// from a new connection, checking the state and its timeout after each.
    fn walk(steps: &[(TableDir, &[u8], SctpState)]) {
        let mut state = SctpState::None;
        for (i, &(dir, chunks, want)) in steps.iter().enumerate() {
            let Some(event) = event_from_chunks(chunks) else {
                panic!("step {i}: no event for {chunks:?}");
            };
            let next = next_state(state, dir, event);
            assert_eq!(
                next,
                want,
                "step {i}: {} --{event:?}/{dir:?}--> {} (want {})",
                state.name(),
                next.name(),
                want.name()
            );
            state = next;
        }
    }

    #[test]
    fn state_numbers_names_and_timeouts_match_the_kernel() {
        let want: [(u8, &str, u64); SctpState::COUNT] = [
            (0, "NONE", 2),
            (1, "INIT1", 4),
            (2, "INIT", 61),
            (3, "C-SENT", 61),
            (4, "C-REPLIED", 61),
            (5, "C-WAIT", 61),
            (6, "COOKIE", 61),
            (7, "C-ECHOED", 61),
            (8, "ESTABLISHED", 900),
            (9, "S-SENT", 61),
            (10, "S-RECEIVED", 61),
            (11, "S-ACK-SENT", 61),
            (12, "REJECTED", 4),
            (13, "CLOSED", 61),
        ];
        for (state, &(idx, name, secs)) in SctpState::ALL.iter().zip(want.iter()) {
            assert_eq!(state.index(), idx);
            assert_eq!(SctpState::from_index(idx), Some(*state));
            assert_eq!(state.name(), name);
            assert_eq!(default_timeout(*state), Span::from_secs(secs), "{name}");
        }
        assert_eq!(SctpState::from_index(14), None);
        assert_eq!(SctpState::from_index(255), None);
    }

    #[test]
    fn event_numbers_match_the_kernel() {
        for (i, ev) in SctpEvent::ALL.iter().enumerate() {
            assert_eq!(usize::from(ev.index()), i);
            assert_eq!(SctpEvent::from_index(ev.index()), Some(*ev));
        }
        assert_eq!(SctpEvent::Abort.index(), 9);
        assert_eq!(SctpEvent::from_index(10), None);
    }

    #[test]
    fn only_established_is_active() {
        for s in SctpState::ALL {
            assert_eq!(is_active(s), s == SctpState::Established, "{}", s.name());
        }
    }

    #[test]
    fn nat_association_client_closes() {
        use chunk::*;
        use SctpState::*;
        walk(&[
            (Input, &[INIT], Init1),
            (Output, &[INIT_ACK], CookieSent),
            (Input, &[COOKIE_ECHO, DATA], CookieReplied),
            (Output, &[COOKIE_ACK, SACK], Established),
            (Input, &[DATA], Established),
            (Output, &[SACK], Established),
            (Output, &[HEARTBEAT], Established),
            (Input, &[HEARTBEAT_ACK], Established),
            (Input, &[SHUTDOWN], ShutdownReceived),
            (Output, &[SHUTDOWN_ACK], ShutdownAckSent),
            (Input, &[SHUTDOWN_COMPLETE], Closed),
        ]);
    }

    #[test]
    fn nat_association_server_closes() {
        use chunk::*;
        use SctpState::*;
        walk(&[
            (Input, &[INIT], Init1),
            (Input, &[INIT], Init), // retransmitted INIT
            (Output, &[INIT_ACK], CookieSent),
            (Input, &[COOKIE_ECHO], CookieReplied),
            (Output, &[COOKIE_ACK], Established),
            (Output, &[SHUTDOWN], ShutdownSent),
            (Output, &[SHUTDOWN], ShutdownSent),
            (Input, &[SHUTDOWN_ACK], Closed),
            (Output, &[SHUTDOWN_COMPLETE], Closed),
        ]);
    }

    #[test]
    fn nat_association_started_by_the_real_server() {
        use chunk::*;
        use SctpState::*;
        walk(&[
            (Output, &[INIT], CookieWait),
            (Input, &[INIT_ACK], Cookie),
            (Output, &[COOKIE_ECHO], CookieEchoed),
            (Input, &[COOKIE_ACK], Established),
        ]);
    }

    #[test]
    fn input_only_association() {
        use chunk::*;
        use SctpState::*;
        // DR/TUN: only the client's packets are seen.
        walk(&[
            (InputOnly, &[INIT], Init1),
            (InputOnly, &[COOKIE_ECHO, DATA], Established),
            (InputOnly, &[DATA], Established),
            (InputOnly, &[SACK], Established),
            (InputOnly, &[SHUTDOWN], ShutdownReceived),
            (InputOnly, &[SHUTDOWN_COMPLETE], Closed),
        ]);
        // Server-initiated close: the client's SHUTDOWN ACK closes.
        walk(&[
            (InputOnly, &[INIT], Init1),
            (InputOnly, &[INIT], Init),
            (InputOnly, &[COOKIE_ECHO], Established),
            (InputOnly, &[SHUTDOWN_ACK], Closed),
        ]);
        // The same client packets through the Input table stall in setup, which is
        // why the direction matters.
        walk(&[
            (Input, &[INIT], Init1),
            (Input, &[COOKIE_ECHO], Init),
            (Input, &[DATA], Init),
        ]);
    }

    #[test]
    fn abort_from_either_side() {
        use chunk::*;
        use SctpState::*;
        for dir in [Input, Output, InputOnly] {
            walk(&[
                (Input, &[INIT], Init1),
                (Output, &[INIT_ACK], CookieSent),
                (Input, &[COOKIE_ECHO], CookieReplied),
                (Output, &[COOKIE_ACK], Established),
                (dir, &[ABORT], Closed),
            ]);
        }
        // The real server refuses the INIT.
        walk(&[(Input, &[INIT], Init1), (Output, &[ABORT], Rejected)]);
        // ... but a refused retransmitted INIT just closes.
        walk(&[
            (Input, &[INIT], Init1),
            (Input, &[INIT], Init),
            (Output, &[ABORT], Closed),
        ]);
        // The client refuses the real server's INIT.
        walk(&[(Output, &[INIT], CookieWait), (Input, &[ABORT], Rejected)]);
        // A client's INIT after rejection starts over.
        walk(&[
            (Input, &[INIT], Init1),
            (Output, &[ABORT], Rejected),
            (Input, &[INIT], Init),
        ]);
        // Client ABORT during setup, either table.
        walk(&[(Input, &[INIT], Init1), (Input, &[ABORT], Closed)]);
        walk(&[(InputOnly, &[INIT], Init1), (InputOnly, &[ABORT], Closed)]);
    }

    #[test]
    fn abort_bundled_after_cookie_chunks() {
        use chunk::*;
        use SctpState::*;
        walk(&[
            (Input, &[INIT], Init1),
            (Output, &[INIT_ACK], CookieSent),
            (Input, &[COOKIE_ECHO, ABORT], Closed),
        ]);
        walk(&[
            (Input, &[INIT], Init1),
            (Output, &[INIT_ACK], CookieSent),
            (Input, &[COOKIE_ECHO], CookieReplied),
            (Output, &[COOKIE_ACK, ABORT], Closed),
        ]);
    }

    #[test]
    fn event_derivation() {
        use chunk::*;
        let ev = event_from_chunks;
        assert_eq!(ev(&[]), None);
        let single = [
            (DATA, SctpEvent::Data),
            (INIT, SctpEvent::Init),
            (INIT_ACK, SctpEvent::InitAck),
            (SACK, SctpEvent::Data),
            (HEARTBEAT, SctpEvent::Data),
            (HEARTBEAT_ACK, SctpEvent::Data),
            (ABORT, SctpEvent::Abort),
            (SHUTDOWN, SctpEvent::Shutdown),
            (SHUTDOWN_ACK, SctpEvent::ShutdownAck),
            (ERROR, SctpEvent::Error),
            (COOKIE_ECHO, SctpEvent::CookieEcho),
            (COOKIE_ACK, SctpEvent::CookieAck),
            (ECNE, SctpEvent::Data),
            (CWR, SctpEvent::Data),
            (SHUTDOWN_COMPLETE, SctpEvent::ShutdownComplete),
        ];
        for (ty, want) in single {
            assert_eq!(ev(&[ty]), Some(want), "chunk {ty}");
        }
        // Unknown and extension types count as DATA.
        for ty in [
            AUTH,
            I_DATA,
            ASCONF_ACK,
            RECONF,
            PAD,
            FORWARD_TSN,
            ASCONF,
            15,
            63,
            255,
        ] {
            assert_eq!(ev(&[ty]), Some(SctpEvent::Data), "chunk {ty}");
        }
        // A bundled ABORT counts only right after COOKIE ECHO / COOKIE ACK.
        assert_eq!(ev(&[COOKIE_ECHO, ABORT]), Some(SctpEvent::Abort));
        assert_eq!(ev(&[COOKIE_ACK, ABORT]), Some(SctpEvent::Abort));
        assert_eq!(ev(&[COOKIE_ECHO, DATA, ABORT]), Some(SctpEvent::CookieEcho));
        assert_eq!(ev(&[COOKIE_ACK, SACK, ABORT]), Some(SctpEvent::CookieAck));
        assert_eq!(ev(&[SACK, ABORT]), Some(SctpEvent::Data));
        assert_eq!(ev(&[DATA, SHUTDOWN]), Some(SctpEvent::Data));
        assert_eq!(ev(&[AUTH, ABORT]), Some(SctpEvent::Data));
        assert_eq!(ev(&[SHUTDOWN, ABORT]), Some(SctpEvent::Shutdown));
        assert_eq!(ev(&[ERROR, ABORT]), Some(SctpEvent::Error));
    }

    /// An SCTP segment: common header, then chunks of (type, length field, body
    /// bytes actually present).
    fn segment(chunks: &[(u8, u16, usize)]) -> Vec<u8> {
        let mut s = vec![0u8; COMMON_HEADER_LEN];
        for &(ty, len, body) in chunks {
            s.push(ty);
            s.push(0);
            s.extend_from_slice(&len.to_be_bytes());
            s.extend(std::iter::repeat_n(0u8, body));
        }
        s
    }

    #[test]
    fn event_from_raw_segment() {
        use chunk::*;
        assert_eq!(event_from_segment(&[]), None);
        assert_eq!(event_from_segment(&[0; COMMON_HEADER_LEN]), None);
        assert_eq!(event_from_segment(&[0; COMMON_HEADER_LEN + 3]), None);
        assert_eq!(
            event_from_segment(&segment(&[(DATA, 16, 12)])),
            Some(SctpEvent::Data)
        );
        // COOKIE ECHO of length 7 is padded to 8; the ABORT follows.
        let s = segment(&[(COOKIE_ECHO, 7, 4), (ABORT, 4, 0)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::Abort));
        let s = segment(&[(COOKIE_ACK, 4, 0), (ABORT, 4, 0)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::Abort));
        // Length field below 4: the second chunk is not looked for.
        let s = segment(&[(COOKIE_ACK, 0, 0), (ABORT, 4, 0)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::CookieAck));
        // The length field points past the ABORT (or past the end): no ABORT.
        let s = segment(&[(COOKIE_ECHO, 12, 0), (ABORT, 4, 0)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::CookieEcho));
        let s = segment(&[(COOKIE_ECHO, u16::MAX, 4)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::CookieEcho));
        // A cut-off ABORT header does not count.
        let mut s = segment(&[(COOKIE_ECHO, 4, 0)]);
        s.extend_from_slice(&[ABORT, 0, 0]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::CookieEcho));
        // ABORT after DATA is never looked for.
        let s = segment(&[(DATA, 4, 0), (ABORT, 4, 0)]);
        assert_eq!(event_from_segment(&s), Some(SctpEvent::Data));
        assert_eq!(first_chunk_type(&s), Some(DATA));
    }

    #[test]
    fn new_connection_rules() {
        use chunk::*;
        assert!(schedules_new_conn(INIT, false));
        assert!(schedules_new_conn(INIT, true));
        for ty in [DATA, INIT_ACK, COOKIE_ECHO, SHUTDOWN, HEARTBEAT, 0xC0] {
            assert!(!schedules_new_conn(ty, false), "chunk {ty}");
            assert!(schedules_new_conn(ty, true), "chunk {ty}");
        }
        assert!(!schedules_new_conn(ABORT, false));
        assert!(!schedules_new_conn(ABORT, true));

        let init = segment(&[(INIT, 20, 16)]);
        let abort = segment(&[(ABORT, 4, 0)]);
        let data = segment(&[(DATA, 16, 12)]);
        assert_eq!(schedule_verdict(&init, false), ScheduleVerdict::Schedule);
        assert_eq!(schedule_verdict(&data, false), ScheduleVerdict::Pass);
        assert_eq!(schedule_verdict(&data, true), ScheduleVerdict::Schedule);
        assert_eq!(schedule_verdict(&abort, true), ScheduleVerdict::Pass);
        assert_eq!(schedule_verdict(&init[..15], true), ScheduleVerdict::Drop);

        assert!(is_abort(ABORT) && !is_abort(SHUTDOWN_COMPLETE));
        assert!(is_new_conn(INIT) && !is_new_conn(INIT_ACK) && !is_new_conn(COOKIE_ECHO));
        for s in SctpState::ALL {
            assert_eq!(
                conn_reuse_expected(s),
                s == SctpState::Closed,
                "{}",
                s.name()
            );
        }
    }

    #[test]
    fn table_cells_checked_by_hand() {
        use SctpEvent as E;
        use SctpState::*;
        let cells = [
            // Sloppy pickup of an established association mid-flow.
            (None, Input, E::Data, Established),
            (None, InputOnly, E::Data, Established),
            (None, Output, E::Data, Established),
            // INIT on a closed or rejected connection restarts it.
            (Closed, Input, E::Init, Init),
            (Rejected, InputOnly, E::Init, Init),
            // Server INIT collides with any setup state.
            (CookieReplied, Output, E::Init, CookieWait),
            (Established, Output, E::Init, Established),
            // INPUT_ONLY: data after a server INIT means it was accepted.
            (CookieWait, InputOnly, E::Data, Established),
            (CookieWait, Input, E::Data, CookieWait),
            // INPUT_ONLY: the client's INIT ACK / COOKIE ACK answer a server INIT.
            (None, InputOnly, E::InitAck, CookieEchoed),
            (Cookie, InputOnly, E::CookieAck, Established),
            (CookieSent, InputOnly, E::CookieAck, Established),
            (Init1, InputOnly, E::CookieAck, Init1),
            // Shutdown corner cells.
            (Established, InputOnly, E::ShutdownAck, Closed),
            (Established, Input, E::ShutdownAck, Established),
            (ShutdownReceived, InputOnly, E::ShutdownComplete, Closed),
            (
                ShutdownReceived,
                Input,
                E::ShutdownComplete,
                ShutdownReceived,
            ),
            (CookieWait, Output, E::ShutdownAck, CookieWait),
            (Init, Output, E::ShutdownAck, ShutdownAckSent),
            (Init1, Input, E::ShutdownAck, Init),
            (Init1, Output, E::ShutdownComplete, Init1),
            (Init1, Input, E::ShutdownComplete, Closed),
            // ERROR during setup.
            (CookieEchoed, Input, E::Error, Closed),
            (CookieEchoed, InputOnly, E::Error, CookieEchoed),
            (Init1, Output, E::Error, Closed),
            (CookieWait, Output, E::Error, CookieWait),
            // ABORT: REJECTED only when refusing a fresh INIT.
            (Init1, Output, E::Abort, Rejected),
            (Init1, Input, E::Abort, Closed),
            (CookieWait, Input, E::Abort, Rejected),
            (CookieWait, InputOnly, E::Abort, Rejected),
            (CookieWait, Output, E::Abort, Closed),
            (Rejected, Input, E::Abort, Closed),
        ];
        for (from, dir, ev, want) in cells {
            assert_eq!(
                next_state(from, dir, ev),
                want,
                "{} --{ev:?}/{dir:?}-->",
                from.name()
            );
        }
    }

    /// The whole of the kernel's table, transcribed a second time in a different
    /// layout (one string per direction and event, states by ipvsadm name order),
    /// so that a wrong cell in either transcription fails here.
    #[test]
    fn every_table_cell() {
        const CODES: [&str; SctpState::COUNT] = [
            "NO", "I1", "IN", "CS", "CR", "CW", "CO", "CE", "ES", "SS", "SR", "SA", "RJ", "CL",
        ];
        let tables: [(TableDir, [&str; SctpEvent::COUNT]); 3] = [
            (
                Input,
                [
                    "ES I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "I1 IN IN CS CR CW CO CE ES SS SR SA IN IN",
                    "CW CW CW CS CR CO CO CE ES SS SR SA RJ CL",
                    "CR IN IN CR CR CW CO CE ES SS SR SA RJ CL",
                    "ES I1 IN CS CR CW CO ES ES SS SR SA RJ CL",
                    "SR I1 IN CS CR CW CO CE SR SS SR SA RJ CL",
                    "CL IN IN CS CR CW CO CE ES CL SR CL RJ CL",
                    "CL CL CL CS CR CW CO CE ES SS SR CL RJ CL",
                    "CL I1 IN CS CR CW CO CL ES SS SR SA RJ CL",
                    "CL CL CL CL CL RJ CL CL CL CL CL CL CL CL",
                ],
            ),
            (
                Output,
                [
                    "ES I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CW CW CW CW CW CW CW CW ES CW CW CW CW CW",
                    "CS CS CS CS CR CW CO CE ES SS SR SA RJ CL",
                    "CE CE CE CE CE CE CE CE ES SS SR SA RJ CL",
                    "ES ES ES ES ES ES ES ES ES SS SR SA RJ CL",
                    "SS SS SS SS SS SS SS SS SS SS SR SA RJ CL",
                    "SA SA SA SA SA CW CO CE ES SA SA SA RJ CL",
                    "CL I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CL CL CL CL CL CW CO CE ES SS SR SA RJ CL",
                    "CL RJ CL CL CL CL CL CL CL CL CL CL CL CL",
                ],
            ),
            (
                InputOnly,
                [
                    "ES I1 IN CS CR ES CO CE ES SS SR SA RJ CL",
                    "I1 IN IN IN IN IN CO CE ES SS SR SA IN IN",
                    "CE CE CE CE CE CE CO CE ES SS SR SA RJ CL",
                    "ES ES ES ES ES ES CO CE ES SS SR SA RJ CL",
                    "ES I1 IN ES ES CW ES ES ES SS SR SA RJ CL",
                    "SR I1 IN CS CR CW CO CE SR SS SR SA RJ CL",
                    "CL IN IN CS CR CW CO CE CL CL SR CL RJ CL",
                    "CL CL CL CL CL CW CO CE ES SS CL CL RJ CL",
                    "CL I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CL CL CL CL CL RJ CL CL CL CL CL CL CL CL",
                ],
            ),
        ];
        let mut checked = 0;
        for (dir, rows) in tables {
            for (event, row) in SctpEvent::ALL.iter().zip(rows) {
                let cells: Vec<&str> = row.split(' ').collect();
                assert_eq!(cells.len(), SctpState::COUNT);
                for (from, code) in SctpState::ALL.iter().zip(cells) {
                    let got = next_state(*from, dir, *event);
                    assert_eq!(
                        CODES[usize::from(got.index())],
                        code,
                        "{dir:?} {event:?} from {}",
                        from.name()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * SctpEvent::COUNT * SctpState::COUNT);
    }
}
