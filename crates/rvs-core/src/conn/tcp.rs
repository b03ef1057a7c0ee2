//! IPVS's TCP connection states, their transitions and timeouts
//! (net/netfilter/ipvs/ip_vs_proto_tcp.c, current kernels).
//!
//! Three tables: INPUT (client to server, when replies are seen), OUTPUT (server to
//! client) and INPUT-ONLY (client to server for DR/TUN connections whose replies
//! bypass the director). The row is chosen from the packet's flags in the order
//! RST, SYN, FIN, ACK; a packet with none of them moves the connection to CLOSE, as
//! the kernel does. `secure_tcp` swaps in the DoS-hardened tables. A state is
//! "active" for the ActiveConn counter if it is ESTABLISHED, SYN_SENT, SYN_RECV or
//! SYNACK (`tcp_state_active_table`).

use super::TableDir;
use crate::time::Span;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

pub const STATE_COUNT: usize = 11;

const ALL: [TcpState; STATE_COUNT] = [
    TcpState::None,
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Listen,
    TcpState::SynAck,
];

impl TcpState {
    pub fn index(self) -> u8 {
        self as u8
    }

    pub fn from_index(i: u8) -> Option<Self> {
        ALL.get(usize::from(i)).copied()
    }

    /// The name `ipvsadm -Lnc` prints (`tcp_state_name_table`).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether a connection in this state counts in ActiveConn.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    /// The kernel's default timeout for this state (`tcp_timeouts`).
    pub fn default_timeout(self) -> Span {
        Span::from_secs(match self {
            TcpState::None => 2,
            TcpState::Established => 15 * 60,
            TcpState::SynSent => 2 * 60,
            TcpState::SynRecv => 60,
            TcpState::FinWait => 2 * 60,
            TcpState::TimeWait => 2 * 60,
            TcpState::Close => 10,
            TcpState::CloseWait => 60,
            TcpState::LastAck => 30,
            TcpState::Listen => 2 * 60,
            TcpState::SynAck => 2 * 60,
        })
    }
}

/// The TCP flags that drive the state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub syn: bool,
    pub fin: bool,
    pub ack: bool,
    pub rst: bool,
}

impl TcpFlags {
    pub const SYN: TcpFlags = TcpFlags {
        syn: true,
        fin: false,
        ack: false,
        rst: false,
    };
    pub const SYN_ACK: TcpFlags = TcpFlags {
        syn: true,
        fin: false,
        ack: true,
        rst: false,
    };
    pub const ACK: TcpFlags = TcpFlags {
        syn: false,
        fin: false,
        ack: true,
        rst: false,
    };
    pub const FIN_ACK: TcpFlags = TcpFlags {
        syn: false,
        fin: true,
        ack: true,
        rst: false,
    };
    pub const RST: TcpFlags = TcpFlags {
        syn: false,
        fin: false,
        ack: false,
        rst: true,
    };

    /// From the flags byte of a TCP header (FIN=0x01, SYN=0x02, RST=0x04, ACK=0x10).
    pub fn from_byte(b: u8) -> Self {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            ack: b & 0x10 != 0,
        }
    }

    /// `tcp_state_idx`: row 0 syn, 1 fin, 2 ack, 3 rst, checked rst first.
    fn row(self) -> Option<usize> {
        if self.rst {
            Some(3)
        } else if self.syn {
            Some(0)
        } else if self.fin {
            Some(1)
        } else if self.ack {
            Some(2)
        } else {
            None
        }
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynAck as SA, SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Table = [[TcpState; STATE_COUNT]; 4];

// Columns: NO ES SS SR FW TW CL CW LA LI SA. Rows: syn fin ack rst.
const INPUT: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: Table = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

// The secure_tcp ("dos") tables.
const INPUT_DOS: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
    [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];
const OUTPUT_DOS: Table = [
    [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY_DOS: Table = [
    [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// The state after a packet with `flags` in direction `dir` (`set_tcp_state`).
pub fn next_state(state: TcpState, dir: TableDir, flags: TcpFlags, secure: bool) -> TcpState {
    let Some(row) = flags.row() else {
        return TcpState::Close;
    };
    let table = match (dir, secure) {
        (TableDir::Input, false) => &INPUT,
        (TableDir::Output, false) => &OUTPUT,
        (TableDir::InputOnly, false) => &INPUT_ONLY,
        (TableDir::Input, true) => &INPUT_DOS,
        (TableDir::Output, true) => &OUTPUT_DOS,
        (TableDir::InputOnly, true) => &INPUT_ONLY_DOS,
    };
    table[row][state as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::None as NO;

    fn walk(start: TcpState, steps: &[(TableDir, TcpFlags)]) -> Vec<TcpState> {
        let mut s = start;
        steps
            .iter()
            .map(|&(d, f)| {
                s = next_state(s, d, f, false);
                s
            })
            .collect()
    }

    #[test]
    fn nat_handshake_and_client_close() {
        use TableDir::*;
        let got = walk(
            NO,
            &[
                (Input, TcpFlags::SYN),
                (Output, TcpFlags::SYN_ACK),
                (Input, TcpFlags::ACK),
                (Input, TcpFlags::FIN_ACK),
                (Output, TcpFlags::ACK),
                (Output, TcpFlags::FIN_ACK),
                (Input, TcpFlags::ACK),
            ],
        );
        assert_eq!(got, vec![SR, SR, ES, CW, CW, TW, TW]);
    }

    #[test]
    fn nat_server_closes_first() {
        use TableDir::*;
        let got = walk(
            ES,
            &[
                (Output, TcpFlags::FIN_ACK),
                (Input, TcpFlags::ACK),
                (Input, TcpFlags::FIN_ACK),
                (Output, TcpFlags::ACK),
            ],
        );
        assert_eq!(got, vec![FW, FW, TW, TW]);
    }

    #[test]
    fn dr_input_only() {
        use TableDir::*;
        let got = walk(
            NO,
            &[
                (InputOnly, TcpFlags::SYN),
                (InputOnly, TcpFlags::ACK),
                (InputOnly, TcpFlags::FIN_ACK),
                (InputOnly, TcpFlags::ACK),
            ],
        );
        assert_eq!(got, vec![SR, ES, FW, FW]);
        // A new SYN on a FIN_WAIT input-only entry goes back to SYN_RECV.
        assert_eq!(next_state(FW, InputOnly, TcpFlags::SYN, false), SR);
        // Modern kernels: ACK in NONE goes to ESTABLISHED (sloppy start).
        assert_eq!(next_state(NO, InputOnly, TcpFlags::ACK, false), ES);
    }

    #[test]
    fn rst_and_flagless() {
        assert_eq!(next_state(ES, TableDir::Input, TcpFlags::RST, false), CL);
        assert_eq!(next_state(SR, TableDir::Input, TcpFlags::RST, false), SR);
        assert_eq!(
            next_state(ES, TableDir::Output, TcpFlags::default(), false),
            CL
        );
        // RST wins over SYN.
        let syn_rst = TcpFlags {
            rst: true,
            ..TcpFlags::SYN
        };
        assert_eq!(next_state(NO, TableDir::Input, syn_rst, false), CL);
    }

    #[test]
    fn secure_tcp_tables_differ_where_the_kernel_differs() {
        assert_eq!(next_state(NO, TableDir::InputOnly, TcpFlags::SYN, true), SA);
        assert_eq!(next_state(SR, TableDir::Input, TcpFlags::ACK, true), SR);
        assert_eq!(
            next_state(SR, TableDir::Output, TcpFlags::SYN_ACK, true),
            SA
        );
    }

    #[test]
    fn names_timeouts_activity() {
        assert_eq!(
            TcpState::from_index(5).map(TcpState::name),
            Some("TIME_WAIT")
        );
        assert_eq!(TcpState::from_index(11), None);
        assert_eq!(ES.default_timeout().as_secs(), 900);
        assert_eq!(NO.default_timeout().as_secs(), 2);
        assert_eq!(CL.default_timeout().as_secs(), 10);
        let active: Vec<_> = ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            active,
            vec!["ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"]
        );
    }
}
