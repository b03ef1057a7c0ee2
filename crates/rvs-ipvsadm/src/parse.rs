//! argv to [`Action`]: ipvsadm.c `parse_options` and `process_options` with their
//! helpers (`parse_service`, `parse_netmask`, `parse_fwmark`, `parse_timeout`,
//! `parse_sched_flags`, `generic_opt_check`, `tunnel_opt_check`, `set_option`).
//! This module owns the command entry ipvsadm builds (mirrored field by field in
//! [`Entry`], because later options read what earlier ones wrote), the order in
//! which checks run, and every message and exit status they produce.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_api::{
    Command, ForwardSpec, PersistenceSpec, SchedFlagsSpec, ServerSpec, ServiceRef, ServiceSpec,
    TimeoutsSpec, TunnelCsumSpec, TunnelSpec, TunnelType,
};

use crate::clib::{
    atoi, c_str, inet_aton, inet_pton4, inet_pton6, str_is_digit, string_to_number, strtol10, text,
};
use crate::popt::{self, Next, Popt};
use crate::usage;
use crate::{Action, DaemonArgs, Format, Op, Output, Proto, Resolver};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_SCTP: u16 = 132;

const SVC_F_PERSISTENT: u32 = 0x1;
const SVC_F_ONEPACKET: u32 = 0x4;
const SVC_F_SCHED1: u32 = 0x8;
const SVC_F_SCHED2: u32 = 0x10;
const SVC_F_SCHED3: u32 = 0x20;

const CONN_F_MASQ: u32 = 0;
const CONN_F_TUNNEL: u32 = 2;
const CONN_F_DROUTE: u32 = 3;
/// rvs extension: FullNAT (`--fullnat`); the kernel has no such method (4 is BYPASS).
const CONN_F_FULLNAT: u32 = 5;
const CONN_F_FWD_MASK: u32 = 7;

/// `IPVS_SVC_PERSISTENT_TIMEOUT`.
const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;
/// `MAX_TIMEOUT`: 31 days.
const MAX_TIMEOUT: i64 = 86400 * 31;

const SERVICE_ADDR: u8 = 1;
const SERVICE_PORT: u8 = 2;

/// Exit status of a process killed by SIGSEGV, as a shell reports it.
const SEGV_STATUS: i32 = 139;

// Option bits (OPTC_* in ipvsadm.c), also the columns of the tables below.
const OPTC_NUMERIC: usize = 0;
const OPTC_CONNECTION: usize = 1;
const OPTC_SERVICE: usize = 2;
const OPTC_SCHEDULER: usize = 3;
const OPTC_PERSISTENT: usize = 4;
const OPTC_NETMASK: usize = 5;
const OPTC_SERVER: usize = 6;
const OPTC_FORWARD: usize = 7;
const OPTC_WEIGHT: usize = 8;
const OPTC_UTHRESHOLD: usize = 9;
const OPTC_LTHRESHOLD: usize = 10;
const OPTC_MCAST: usize = 11;
const OPTC_TIMEOUT: usize = 12;
const OPTC_DAEMON: usize = 13;
const OPTC_STATS: usize = 14;
const OPTC_RATE: usize = 15;
const OPTC_THRESHOLDS: usize = 16;
const OPTC_PERSISTENTCONN: usize = 17;
const OPTC_NOSORT: usize = 18;
const OPTC_SYNCID: usize = 19;
const OPTC_EXACT: usize = 20;
const OPTC_ONEPACKET: usize = 21;
const OPTC_PERSISTENCE_ENGINE: usize = 22;
const OPTC_SCHED_FLAGS: usize = 23;
const OPTC_MCAST_GROUP: usize = 24;
const OPTC_MCAST_PORT: usize = 25;
const OPTC_MCAST_TTL: usize = 26;
const OPTC_SYNC_MAXLEN: usize = 27;
const OPTC_TUN_INFO: usize = 28;
const OPTC_TUN_TYPE: usize = 29;
const OPTC_TUN_PORT: usize = 30;
const OPTC_TUN_NOCSUM: usize = 31;
const OPTC_TUN_CSUM: usize = 32;
const OPTC_TUN_REMCSUM: usize = 33;
const NUMBER_OF_OPT: usize = 34;

/// ipvsadm.c `optnames`.
const OPTNAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// The commands, in ipvsadm.c's `CMD_*` order (row of [`COMMANDS_V_OPTIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

/// ipvsadm.c `cmdnames`, by [`Cmd`] order.
const CMDNAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// ipvsadm.c `commands_v_options`, one string per command, one byte per option:
/// `+` compulsory, `x` illegal, `1` at most one of them, blank optional.
const COMMANDS_V_OPTIONS: [&[u8; NUMBER_OF_OPT]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// ipvsadm.c `tunnames`.
const TUNNAMES: [&str; 3] = ["ipip", "gue", "gre"];
/// ipvsadm.c `tunopts`: the columns of [`TUNNEL_TYPES_V_OPTIONS`].
const TUNOPTS: [usize; 4] = [
    OPTC_TUN_PORT,
    OPTC_TUN_NOCSUM,
    OPTC_TUN_CSUM,
    OPTC_TUN_REMCSUM,
];
/// ipvsadm.c `tunnel_types_v_options`, by tunnel type.
const TUNNEL_TYPES_V_OPTIONS: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

/// The service part of ipvsadm's command entry (`ipvs_service_t`).
#[derive(Clone, Debug, Default)]
struct Svc {
    protocol: u16,
    /// Host order.
    port: u16,
    fwmark: u32,
    sched_name: Vec<u8>,
    flags: u32,
    timeout: u32,
    /// The `__be32 netmask` field as a little-endian host holds it: a dotted IPv4
    /// mask's bytes, or an IPv6 prefix length as a plain number.
    netmask: u32,
    af: u16,
    /// Network order; an IPv4 address fills the first four bytes.
    addr: [u8; 16],
    pe_name: Vec<u8>,
}

/// The real-server part (`ipvs_dest_t`).
#[derive(Clone, Debug, Default)]
struct Dest {
    port: u16,
    conn_flags: u32,
    weight: i32,
    u_threshold: u32,
    l_threshold: u32,
    af: u16,
    addr: [u8; 16],
    tun_type: usize,
    tun_port: u16,
    tun_flags: u16,
}

/// The sync daemon part (`ipvs_daemon_t`).
#[derive(Clone, Debug, Default)]
struct Daemon {
    master: bool,
    mcast_ifn: Vec<u8>,
    syncid: u8,
    sync_maxlen: u16,
    mcast_port: u16,
    mcast_ttl: u8,
    mcast_group: Option<IpAddr>,
}

/// ipvsadm.c `struct ipvs_command_entry`, plus the option and format bits.
#[derive(Clone, Debug)]
struct Entry {
    cmd: Option<Cmd>,
    svc: Svc,
    dest: Dest,
    timeout: TimeoutsSpec,
    daemon: Daemon,
    options: u64,
    format: Format,
}

impl Entry {
    /// `process_options`' starting values.
    fn new() -> Self {
        Entry {
            cmd: None,
            svc: Svc {
                netmask: 0xffff_ffff,
                ..Svc::default()
            },
            dest: Dest {
                weight: 1,
                conn_flags: CONN_F_DROUTE,
                ..Dest::default()
            },
            timeout: TimeoutsSpec::default(),
            daemon: Daemon::default(),
            options: 0,
            format: Format::default(),
        }
    }

    fn has(&self, optc: usize) -> bool {
        self.options & (1u64 << optc) != 0
    }
}

/// Stops the parse with the action ipvsadm ends in.
type Stop<T> = Result<T, Action>;

/// ipvsadm.c `fail`: the message and a newline on stderr, exit `code`.
fn fail<T>(code: i32, msg: impl Into<String>) -> Stop<T> {
    let mut s = msg.into();
    s.push('\n');
    Err(Action::Exit(Output::stderr(s, code)))
}

fn tryhelp<T>(program: &str) -> Stop<T> {
    Err(Action::Exit(Output::stderr(usage::tryhelp(program), 255)))
}

/// What stands in for the popt 1.19 `findNextArg` endless loop (see [`Next::Hang`]).
fn hang<T>() -> Stop<T> {
    Err(Action::Exit(Output::stderr(
        "ipvsadm: '!#:+' with no argument left to substitute: popt 1.19 loops forever here\n"
            .to_string(),
        255,
    )))
}

/// ipvsadm.c `set_option`.
fn set_option(e: &mut Entry, optc: usize) -> Stop<()> {
    let bit = 1u64 << optc;
    if e.options & bit != 0 {
        return fail(
            2,
            format!("multiple '{}' options specified", OPTNAMES[optc]),
        );
    }
    e.options |= bit;
    Ok(())
}

/// Parses an argv as ipvsadm 1.31 does and says what to do. `argv[0]` is the program
/// name as invoked; `reading_stdin` is true for the lines of a `-R` restore. Assumes
/// `POSIXLY_CORRECT` is unset (see [`parse_args_ext`]).
pub fn parse_args(argv: &[String], reading_stdin: bool, resolver: &dyn Resolver) -> Action {
    parse_args_ext(argv, reading_stdin, false, resolver)
}

/// [`parse_args`], saying whether `POSIXLY_CORRECT` (or `POSIX_ME_HARDER`) is set in
/// the environment: popt then ends option processing at the first non-option word.
pub fn parse_args_ext(
    argv: &[String],
    reading_stdin: bool,
    posixly_correct: bool,
    resolver: &dyn Resolver,
) -> Action {
    let args: Vec<Vec<u8>> = argv.iter().map(|a| c_str(a.as_bytes()).to_vec()).collect();
    let program = args.first().map(|a| text(a)).unwrap_or_default();
    // main: with no argument at all, list the table.
    if args.len() == 1 && !reading_stdin {
        return Action::ListAll(Format::default());
    }
    match process_options(args, &program, reading_stdin, posixly_correct, resolver) {
        Ok(a) | Err(a) => a,
    }
}

/// ipvsadm.c `parse_options`: fills the entry from the options, in argv order.
fn parse_options(
    args: Vec<Vec<u8>>,
    program: &str,
    posixly_correct: bool,
    e: &mut Entry,
    r: &dyn Resolver,
) -> Stop<()> {
    let mut p = Popt::new(args, posixly_correct);
    let mut sched_flags_arg: Vec<u8> = Vec::new();

    let (val, arg) = match p.next_opt() {
        Next::Opt { val, arg } => (val, arg.unwrap_or_default()),
        Next::Hang => return hang(),
        Next::End | Next::Err(_) => return tryhelp(program),
    };
    e.cmd = Some(match val {
        v if v == i32::from(b'A') => Cmd::Add,
        v if v == i32::from(b'E') => Cmd::Edit,
        v if v == i32::from(b'D') => Cmd::Del,
        v if v == i32::from(b'a') => Cmd::AddDest,
        v if v == i32::from(b'e') => Cmd::EditDest,
        v if v == i32::from(b'd') => Cmd::DelDest,
        v if v == i32::from(b'C') => Cmd::Flush,
        v if v == i32::from(b'L') || v == i32::from(b'l') => Cmd::List,
        v if v == i32::from(b'Z') => Cmd::Zero,
        popt::TAG_SET => Cmd::Timeout,
        v if v == i32::from(b'R') => Cmd::Restore,
        v if v == i32::from(b'S') => Cmd::Save,
        popt::TAG_START_DAEMON | popt::TAG_STOP_DAEMON => {
            e.daemon.master = match arg.as_slice() {
                b"master" => true,
                b"backup" => false,
                _ if val == popt::TAG_START_DAEMON => {
                    return fail(2, "illegal start-daemon parameter specified")
                }
                // (sic: ipvsadm's text for --stop-daemon)
                _ => return fail(2, "illegal start_daemon specified"),
            };
            if val == popt::TAG_START_DAEMON {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        v if v == i32::from(b'h') => {
            return Err(Action::Exit(Output::stdout(usage::usage(program), 0)))
        }
        v if v == i32::from(b'v') => return Err(Action::Exit(Output::stdout(usage::version(), 0))),
        _ => return tryhelp(program),
    });

    loop {
        let (val, arg) = match p.next_opt() {
            Next::Opt { val, arg } => (val, arg),
            Next::End => break,
            Next::Hang => return hang(),
            Next::Err(err) => {
                // parse_options prints popt's complaint and returns -1.
                let msg = format!("{}: {}\n", text(&p.bad_option()), err.text());
                return Err(Action::Failed(Output::stderr(msg, 255)));
            }
        };
        let a = arg.clone().unwrap_or_default();
        match val {
            v if v == i32::from(b't') || v == i32::from(b'u') || v == popt::TAG_SCTP_SERVICE => {
                set_option(e, OPTC_SERVICE)?;
                e.svc.protocol = if v == i32::from(b't') {
                    IPPROTO_TCP
                } else if v == i32::from(b'u') {
                    IPPROTO_UDP
                } else {
                    IPPROTO_SCTP
                };
                let parse = parse_service(&a, &mut e.svc, r);
                if parse & SERVICE_ADDR == 0 {
                    return fail(2, "illegal virtual server address[:port] specified");
                }
            }
            v if v == i32::from(b'f') => {
                set_option(e, OPTC_SERVICE)?;
                // -f sets these although a fwmark service uses neither.
                e.svc.af = AF_INET;
                e.svc.protocol = IPPROTO_TCP;
                e.svc.fwmark = parse_fwmark(&a)?;
            }
            v if v == i32::from(b's') => {
                set_option(e, OPTC_SCHEDULER)?;
                e.svc.sched_name = a.iter().copied().take(15).collect();
            }
            v if v == i32::from(b'p') => {
                set_option(e, OPTC_PERSISTENT)?;
                e.svc.flags |= SVC_F_PERSISTENT;
                e.svc.timeout = parse_timeout(arg.as_deref(), 1, MAX_TIMEOUT)?;
            }
            v if v == i32::from(b'M') => {
                set_option(e, OPTC_NETMASK)?;
                if e.svc.af != AF_INET6 {
                    match parse_netmask(&a, r) {
                        Some(m) => e.svc.netmask = m,
                        None => return fail(2, "illegal virtual server persistent mask specified"),
                    }
                } else {
                    e.svc.netmask = atoi(&a) as u32;
                    if e.svc.netmask < 1 || e.svc.netmask > 128 {
                        return fail(2, "illegal ipv6 netmask specified");
                    }
                }
            }
            v if v == i32::from(b'r') => {
                set_option(e, OPTC_SERVER)?;
                let mut t = e.svc.clone();
                let parse = parse_service(&a, &mut t, r);
                e.dest.af = t.af;
                e.dest.addr = t.addr;
                e.dest.port = t.port;
                if parse & SERVICE_ADDR == 0 {
                    return fail(2, "illegal real server address[:port] specified");
                }
                if parse == SERVICE_ADDR {
                    e.dest.port = e.svc.port;
                }
            }
            v if v == i32::from(b'i') || v == i32::from(b'g') || v == i32::from(b'm') => {
                set_option(e, OPTC_FORWARD)?;
                e.dest.conn_flags = if v == i32::from(b'i') {
                    CONN_F_TUNNEL
                } else if v == i32::from(b'g') {
                    CONN_F_DROUTE
                } else {
                    CONN_F_MASQ
                };
            }
            popt::TAG_FULLNAT => {
                set_option(e, OPTC_FORWARD)?;
                e.dest.conn_flags = CONN_F_FULLNAT;
            }
            v if v == i32::from(b'w') => {
                set_option(e, OPTC_WEIGHT)?;
                // Debian's ipvsadm 1.31 carries the patch raising the limit from
                // upstream's 65535 to the kernel's INT_MAX (Debian bug 814348).
                match string_to_number(&a, 0, i64::from(i32::MAX)) {
                    Some(n) => e.dest.weight = n as i32,
                    None => return fail(2, "illegal weight specified"),
                }
            }
            v if v == i32::from(b'x') => {
                set_option(e, OPTC_UTHRESHOLD)?;
                match string_to_number(&a, 0, i64::from(i32::MAX)) {
                    Some(n) => e.dest.u_threshold = n as u32,
                    None => return fail(2, "illegal u_threshold specified"),
                }
            }
            v if v == i32::from(b'y') => {
                set_option(e, OPTC_LTHRESHOLD)?;
                match string_to_number(&a, 0, i64::from(i32::MAX)) {
                    Some(n) => e.dest.l_threshold = n as u32,
                    None => return fail(2, "illegal l_threshold specified"),
                }
            }
            v if v == i32::from(b'c') => set_option(e, OPTC_CONNECTION)?,
            v if v == i32::from(b'n') => {
                set_option(e, OPTC_NUMERIC)?;
                e.format.numeric = true;
            }
            popt::TAG_MCAST_INTERFACE => {
                set_option(e, OPTC_MCAST)?;
                e.daemon.mcast_ifn = a.iter().copied().take(15).collect();
            }
            v if v == i32::from(b'I') => {
                set_option(e, OPTC_SYNCID)?;
                match string_to_number(&a, 0, 255) {
                    Some(n) => e.daemon.syncid = n as u8,
                    None => return fail(2, "illegal syncid specified"),
                }
            }
            popt::TAG_TIMEOUT => set_option(e, OPTC_TIMEOUT)?,
            popt::TAG_DAEMON => set_option(e, OPTC_DAEMON)?,
            popt::TAG_STATS => {
                set_option(e, OPTC_STATS)?;
                e.format.stats = true;
            }
            popt::TAG_RATE => {
                set_option(e, OPTC_RATE)?;
                e.format.rate = true;
            }
            popt::TAG_THRESHOLDS => {
                set_option(e, OPTC_THRESHOLDS)?;
                e.format.thresholds = true;
            }
            popt::TAG_PERSISTENTCONN => {
                set_option(e, OPTC_PERSISTENTCONN)?;
                e.format.persistent_conn = true;
            }
            popt::TAG_NO_SORT => {
                set_option(e, OPTC_NOSORT)?;
                e.format.nosort = true;
            }
            popt::TAG_SORT => {}
            v if v == i32::from(b'X') => {
                set_option(e, OPTC_EXACT)?;
                e.format.exact = true;
            }
            v if v == i32::from(b'6') => {
                // No option bit: -6 may repeat and goes with any command.
                if e.svc.fwmark != 0 {
                    e.svc.af = AF_INET6;
                    e.svc.netmask = 128;
                } else {
                    return fail(2, "-6 used before -f\n");
                }
            }
            v if v == i32::from(b'o') => {
                set_option(e, OPTC_ONEPACKET)?;
                e.svc.flags |= SVC_F_ONEPACKET;
            }
            popt::TAG_PERSISTENCE_ENGINE => {
                set_option(e, OPTC_PERSISTENCE_ENGINE)?;
                e.svc.pe_name = a.iter().copied().take(16).collect();
            }
            v if v == i32::from(b'b') => {
                set_option(e, OPTC_SCHED_FLAGS)?;
                sched_flags_arg = a.iter().copied().take(127).collect();
            }
            popt::TAG_MCAST_GROUP => {
                set_option(e, OPTC_MCAST_GROUP)?;
                e.daemon.mcast_group = Some(parse_mcast_group(&a)?);
            }
            popt::TAG_MCAST_PORT => {
                set_option(e, OPTC_MCAST_PORT)?;
                match string_to_number(&a, 1, 65535) {
                    Some(n) => e.daemon.mcast_port = n as u16,
                    None => return fail(2, "illegal mcast-port specified"),
                }
            }
            popt::TAG_MCAST_TTL => {
                set_option(e, OPTC_MCAST_TTL)?;
                match string_to_number(&a, 1, 255) {
                    Some(n) => e.daemon.mcast_ttl = n as u8,
                    None => return fail(2, "illegal mcast-ttl specified"),
                }
            }
            popt::TAG_SYNC_MAXLEN => {
                set_option(e, OPTC_SYNC_MAXLEN)?;
                match string_to_number(&a, 1, 65535 - 20 - 8) {
                    Some(n) => e.daemon.sync_maxlen = n as u16,
                    None => return fail(2, "illegal sync-maxlen specified"),
                }
            }
            popt::TAG_TUN_INFO => {
                set_option(e, OPTC_TUN_INFO)?;
                e.format.tun_info = true;
            }
            popt::TAG_TUN_TYPE => {
                set_option(e, OPTC_TUN_TYPE)?;
                match TUNNAMES.iter().position(|n| n.as_bytes() == a.as_slice()) {
                    Some(t) => e.dest.tun_type = t,
                    None => return fail(2, "illegal tunnel type specified"),
                }
            }
            popt::TAG_TUN_PORT => {
                set_option(e, OPTC_TUN_PORT)?;
                match string_to_number(&a, 1, 65535) {
                    Some(n) => e.dest.tun_port = n as u16,
                    None => return fail(2, "illegal tunnel port specified"),
                }
            }
            popt::TAG_TUN_NOCSUM => set_option(e, OPTC_TUN_NOCSUM)?,
            popt::TAG_TUN_CSUM => {
                set_option(e, OPTC_TUN_CSUM)?;
                e.dest.tun_flags |= 1;
            }
            popt::TAG_TUN_REMCSUM => {
                set_option(e, OPTC_TUN_REMCSUM)?;
                e.dest.tun_flags |= 2;
            }
            // A second command, -h or -v after the first option.
            _ => return fail(2, format!("invalid option `{}'", text(&p.bad_option()))),
        }
    }

    if e.cmd == Some(Cmd::Timeout) {
        let a0 = p.get_arg();
        let a1 = a0.as_ref().and_then(|_| p.get_arg());
        let a2 = a1.as_ref().and_then(|_| p.get_arg());
        match (a0, a1, a2) {
            (Some(t0), Some(t1), Some(t2)) => {
                e.timeout.tcp = u64::from(parse_timeout(Some(&t0), 0, MAX_TIMEOUT)?);
                e.timeout.tcpfin = u64::from(parse_timeout(Some(&t1), 0, MAX_TIMEOUT)?);
                e.timeout.udp = u64::from(parse_timeout(Some(&t2), 0, MAX_TIMEOUT)?);
            }
            _ => return fail(2, "--set option requires 3 timeout values"),
        }
    }

    if let Some(extra) = p.get_arg() {
        return fail(2, format!("unexpected argument {}", text(&extra)));
    }

    if !sched_flags_arg.is_empty() {
        e.svc.flags &= !(SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3);
        e.svc.flags |= parse_sched_flags(&e.svc.sched_name, &sched_flags_arg)?;
    }
    Ok(())
}

/// ipvsadm.c `parse_service`: `host[:port]`, `[ipv6]:port` or a bare IPv6 address into
/// `svc`; returns `SERVICE_ADDR | SERVICE_PORT` bits, 0 on failure (after which `svc`
/// may be partly written, as in C).
fn parse_service(buf: &[u8], svc: &mut Svc, r: &dyn Resolver) -> u8 {
    if str_is_digit(buf) {
        return 0;
    }
    let mut host: &[u8] = buf;
    let mut port: Option<&[u8]> = None;
    if buf.first() == Some(&b'[') {
        let inner = &buf[1..];
        let Some(close) = inner.iter().position(|b| *b == b']') else {
            return 0;
        };
        let after = &inner[close + 1..];
        if after.first() != Some(&b':') {
            return 0;
        }
        host = &inner[..close];
        port = Some(&after[1..]);
    }
    if let Some(a6) = inet_pton6(host) {
        svc.addr = a6;
        svc.af = AF_INET6;
        svc.netmask = 128;
    } else {
        // The port is searched for again, inside what is left of the host part (so
        // `[1.2.3.4]:80` loses its port, as in ipvsadm).
        port = match host.iter().rposition(|b| *b == b':') {
            Some(i) => {
                let p = &host[i + 1..];
                host = &host[..i];
                Some(p)
            }
            None => None,
        };
        let v4 = inet_aton(host).or_else(|| r.host_to_addr(&text(host)).map(|a| a.octets()));
        match v4 {
            Some(a) => {
                svc.addr[..4].copy_from_slice(&a);
                svc.af = AF_INET;
            }
            None => return 0,
        }
    }
    let mut result = SERVICE_ADDR;
    if let Some(p) = port {
        result |= SERVICE_PORT;
        if let Some(n) = string_to_number(p, 0, 65535) {
            svc.port = n as u16;
        } else if let Some(n) = service_to_port(p, svc.protocol, r) {
            svc.port = n;
        } else {
            return 0;
        }
    }
    result
}

fn proto_of(protocol: u16) -> Proto {
    match protocol {
        IPPROTO_TCP => Proto::Tcp,
        IPPROTO_UDP => Proto::Udp,
        IPPROTO_SCTP => Proto::Sctp,
        _ => Proto::Other,
    }
}

/// ipvsadm.c `service_to_port`: only TCP, UDP and SCTP names are looked up.
fn service_to_port(name: &[u8], protocol: u16, r: &dyn Resolver) -> Option<u16> {
    match proto_of(protocol) {
        Proto::Other => None,
        p => r.service_to_port(&text(name), p),
    }
}

/// ipvsadm.c `parse_netmask`: dotted (or `inet_aton`) form, else a host name.
fn parse_netmask(buf: &[u8], r: &dyn Resolver) -> Option<u32> {
    let bytes = inet_aton(buf).or_else(|| r.host_to_addr(&text(buf)).map(|a| a.octets()))?;
    Some(u32::from_le_bytes(bytes))
}

/// ipvsadm.c `parse_fwmark`: a decimal number in 1..=4294967295.
fn parse_fwmark(buf: &[u8]) -> Stop<u32> {
    let c = strtol10(buf);
    if c.end == 0 || c.end != buf.len() || c.range || c.value <= 0 || c.value > i64::from(u32::MAX)
    {
        return fail(2, format!("invalid fwmark value `{}' specified", text(buf)));
    }
    Ok(c.value as u32)
}

/// ipvsadm.c `parse_timeout`: no value (an optional `-p` without one) is 360 s.
fn parse_timeout(buf: Option<&[u8]>, min: i64, max: i64) -> Stop<u32> {
    let Some(buf) = buf else {
        return Ok(DEFAULT_PERSISTENT_TIMEOUT);
    };
    match string_to_number(buf, min, max) {
        Some(n) => Ok(n as u32),
        None => fail(
            2,
            format!("invalid timeout value `{}' specified", text(buf)),
        ),
    }
}

/// ipvsadm.c `parse_sched_flags`: a comma list checked against the scheduler (`wlc`
/// when none was given).
fn parse_sched_flags(sched: &[u8], arg: &[u8]) -> Stop<u32> {
    let sched: &[u8] = if sched.is_empty() { b"wlc" } else { sched };
    let mut flags = 0;
    let mut tokens = arg
        .split(|b| *b == b',')
        .filter(|t| !t.is_empty())
        .peekable();
    if tokens.peek().is_none() {
        // strtok finds no token and ipvsadm compares a NULL pointer: SIGSEGV.
        return Err(Action::Exit(Output::stderr(String::new(), SEGV_STATUS)));
    }
    for flag in tokens {
        let (bit, needs): (u32, Option<&[u8]>) = match flag {
            b"flag-1" => (SVC_F_SCHED1, None),
            b"flag-2" => (SVC_F_SCHED2, None),
            b"flag-3" => (SVC_F_SCHED3, None),
            b"sh-fallback" => (SVC_F_SCHED1, Some(b"sh")),
            b"sh-port" => (SVC_F_SCHED2, Some(b"sh")),
            b"mh-fallback" => (SVC_F_SCHED1, Some(b"mh")),
            b"mh-port" => (SVC_F_SCHED2, Some(b"mh")),
            _ => return fail(2, format!("invalid scheduler flag `{}'", text(flag))),
        };
        flags |= bit;
        if needs.is_some_and(|n| n != sched) {
            return fail(2, format!("incompatible scheduler flag `{}'", text(flag)));
        }
    }
    Ok(flags)
}

/// `--mcast-group`: an IPv6 multicast address if it has a colon, else IPv4 multicast.
fn parse_mcast_group(a: &[u8]) -> Stop<IpAddr> {
    if a.contains(&b':') {
        match inet_pton6(a) {
            Some(b) if b[0] == 0xff => Ok(IpAddr::V6(Ipv6Addr::from(b))),
            _ => fail(2, format!("invalid IPv6 mcast-group `{}'", text(a))),
        }
    } else {
        match inet_pton4(a) {
            Some(b) if b[0] & 0xf0 == 0xe0 => Ok(IpAddr::V4(Ipv4Addr::from(b))),
            _ => fail(2, format!("invalid IPv4 mcast-group `{}'", text(a))),
        }
    }
}

/// ipvsadm.c `generic_opt_check`: the first offending column wins.
fn generic_opt_check(cmd: Cmd, options: u64) -> Stop<()> {
    let i = cmd as usize;
    let row = COMMANDS_V_OPTIONS[i];
    let mut last = 0;
    let mut count = 0;
    for (j, rule) in row.iter().enumerate() {
        if options & (1u64 << j) == 0 {
            if *rule == b'+' {
                return fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{}' command",
                        OPTNAMES[j], CMDNAMES[i]
                    ),
                );
            }
        } else {
            if *rule == b'x' {
                return fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{}' command",
                        OPTNAMES[j], CMDNAMES[i]
                    ),
                );
            }
            if *rule == b'1' {
                count += 1;
                if count == 1 {
                    last = j;
                    continue;
                }
                return fail(
                    2,
                    format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        OPTNAMES[j], OPTNAMES[last], CMDNAMES[i]
                    ),
                );
            }
        }
    }
    Ok(())
}

/// ipvsadm.c `tunnel_opt_check`.
fn tunnel_opt_check(tun_type: usize, options: u64) -> Stop<()> {
    let row = TUNNEL_TYPES_V_OPTIONS[tun_type];
    let mut last = 0;
    let mut count = 0;
    for (j, k) in TUNOPTS.iter().enumerate() {
        let k = *k;
        if options & (1u64 << k) == 0 {
            if row[j] == b'+' {
                return fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{}' tunnel type",
                        OPTNAMES[k], TUNNAMES[tun_type]
                    ),
                );
            }
        } else {
            if row[j] == b'x' {
                return fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{}' tunnel type",
                        OPTNAMES[k], TUNNAMES[tun_type]
                    ),
                );
            }
            if row[j] == b'1' {
                count += 1;
                if count == 1 {
                    last = k;
                    continue;
                }
                return fail(
                    2,
                    format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' tunnel type",
                        OPTNAMES[k], OPTNAMES[last], TUNNAMES[tun_type]
                    ),
                );
            }
        }
    }
    Ok(())
}

/// ipvsadm.c `process_options`.
fn process_options(
    args: Vec<Vec<u8>>,
    program: &str,
    reading_stdin: bool,
    posixly_correct: bool,
    r: &dyn Resolver,
) -> Stop<Action> {
    let mut e = Entry::new();
    parse_options(args, program, posixly_correct, &mut e, r)?;
    let Some(cmd) = e.cmd else {
        return tryhelp(program);
    };
    generic_opt_check(cmd, e.options)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if e.svc.fwmark == 0 && e.svc.port == 0 && e.svc.flags & SVC_F_PERSISTENT == 0 {
            return fail(2, "Zero port specified for non-persistent service");
        }
        if e.svc.flags & SVC_F_ONEPACKET != 0 && e.svc.fwmark == 0 && e.svc.protocol != IPPROTO_UDP
        {
            return fail(2, "One-Packet Scheduling is only for UDP virtual services");
        }
        if e.svc.sched_name.is_empty() {
            e.svc.sched_name = b"wlc".to_vec();
        }
    }

    if cmd == Cmd::StartDaemon && e.daemon.mcast_ifn.is_empty() {
        e.daemon.mcast_ifn = b"eth0".to_vec();
    }

    let fwd = e.dest.conn_flags & CONN_F_FWD_MASK;
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        if e.svc.fwmark == 0 && (fwd == CONN_F_TUNNEL || fwd == CONN_F_DROUTE) {
            e.dest.port = e.svc.port;
        }
        if e.dest.af != e.svc.af && fwd != CONN_F_TUNNEL {
            return fail(
                2,
                "Different address family is allowed only for tunneling servers",
            );
        }
        let tun_opts = [
            OPTC_TUN_TYPE,
            OPTC_TUN_PORT,
            OPTC_TUN_NOCSUM,
            OPTC_TUN_CSUM,
            OPTC_TUN_REMCSUM,
        ];
        if tun_opts.iter().any(|o| e.has(*o)) && fwd != CONN_F_TUNNEL {
            return fail(2, "Tunnel options conflict with forward method");
        }
        tunnel_opt_check(e.dest.tun_type, e.options)?;
    }

    let apply = |op: Op, command: Command| Ok(Action::Apply { op, command });
    match cmd {
        Cmd::List => {
            let any = |bits: &[usize]| bits.iter().any(|b| e.has(*b));
            if (any(&[OPTC_CONNECTION, OPTC_TIMEOUT, OPTC_DAEMON])
                && any(&[OPTC_STATS, OPTC_RATE, OPTC_THRESHOLDS]))
                || (any(&[OPTC_TIMEOUT, OPTC_DAEMON]) && e.has(OPTC_PERSISTENTCONN))
            {
                return fail(2, "options conflicts in the list command");
            }
            Ok(if e.has(OPTC_CONNECTION) {
                Action::ListConns(e.format)
            } else if e.has(OPTC_SERVICE) {
                Action::ListService(service_ref(&e.svc), e.format)
            } else if e.has(OPTC_TIMEOUT) {
                Action::ListTimeout
            } else if e.has(OPTC_DAEMON) {
                Action::ListDaemon
            } else {
                Action::ListAll(e.format)
            })
        }
        Cmd::Restore => {
            // restore_table refuses to nest.
            if reading_stdin {
                return tryhelp(program);
            }
            Ok(Action::Restore)
        }
        Cmd::Save => Ok(Action::Save(Format {
            rule: true,
            ..e.format
        })),
        Cmd::Flush => apply(Op::Clear, Command::Clear {}),
        Cmd::Add => apply(
            Op::AddService,
            Command::AddService {
                spec: service_spec(&e.svc),
            },
        ),
        Cmd::Edit => apply(
            Op::EditService,
            Command::EditService {
                spec: service_spec(&e.svc),
            },
        ),
        Cmd::Del => apply(
            Op::DeleteService,
            Command::DeleteService {
                service: service_ref(&e.svc),
            },
        ),
        Cmd::Zero => {
            // libipvs names the service only when one was given (not all zero).
            let given = e.svc.fwmark != 0 || e.svc.addr != [0; 16] || e.svc.port != 0;
            apply(
                Op::Zero,
                Command::Zero {
                    service: given.then(|| service_ref(&e.svc)),
                },
            )
        }
        Cmd::AddDest => apply(
            Op::AddServer,
            Command::AddServer {
                service: service_ref(&e.svc),
                server: server_spec(&e.dest),
            },
        ),
        Cmd::EditDest => apply(
            Op::EditServer,
            Command::EditServer {
                service: service_ref(&e.svc),
                server: server_spec(&e.dest),
            },
        ),
        Cmd::DelDest => apply(
            Op::DeleteServer,
            Command::DeleteServer {
                service: service_ref(&e.svc),
                address: addr_of(e.dest.af, &e.dest.addr),
                port: e.dest.port,
            },
        ),
        Cmd::Timeout => apply(
            Op::SetTimeouts,
            Command::SetTimeouts {
                timeouts: e.timeout,
            },
        ),
        Cmd::StartDaemon => Ok(Action::StartDaemon(daemon_args(&e))),
        Cmd::StopDaemon => Ok(Action::StopDaemon(daemon_args(&e))),
    }
}

fn addr_of(af: u16, addr: &[u8; 16]) -> IpAddr {
    if af == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    }
}

fn service_ref(svc: &Svc) -> ServiceRef {
    if svc.fwmark != 0 {
        return ServiceRef::Fwmark {
            mark: svc.fwmark,
            ipv6: svc.af == AF_INET6,
        };
    }
    let address = addr_of(svc.af, &svc.addr);
    let port = svc.port;
    match svc.protocol {
        IPPROTO_UDP => ServiceRef::Udp { address, port },
        IPPROTO_SCTP => ServiceRef::Sctp { address, port },
        _ => ServiceRef::Tcp { address, port },
    }
}

fn service_spec(svc: &Svc) -> ServiceSpec {
    let persistence = (svc.flags & SVC_F_PERSISTENT != 0).then(|| {
        if svc.af == AF_INET6 {
            PersistenceSpec {
                timeout: svc.timeout,
                netmask: None,
                prefix_len: Some(svc.netmask),
            }
        } else {
            PersistenceSpec {
                timeout: svc.timeout,
                netmask: Some(Ipv4Addr::from(svc.netmask.to_le_bytes())),
                prefix_len: None,
            }
        }
    });
    ServiceSpec {
        service: service_ref(svc),
        scheduler: text(&svc.sched_name),
        sched_flags: SchedFlagsSpec {
            flag1: svc.flags & SVC_F_SCHED1 != 0,
            flag2: svc.flags & SVC_F_SCHED2 != 0,
            flag3: svc.flags & SVC_F_SCHED3 != 0,
        },
        persistence,
        one_packet: svc.flags & SVC_F_ONEPACKET != 0,
        pe: (!svc.pe_name.is_empty()).then(|| text(&svc.pe_name)),
    }
}

fn server_spec(d: &Dest) -> ServerSpec {
    let forward = match d.conn_flags & CONN_F_FWD_MASK {
        CONN_F_MASQ => ForwardSpec::Masq,
        CONN_F_TUNNEL => ForwardSpec::Tunnel,
        CONN_F_FULLNAT => ForwardSpec::Fullnat,
        _ => ForwardSpec::Route,
    };
    let tunnel = (forward == ForwardSpec::Tunnel).then_some(TunnelSpec {
        kind: match d.tun_type {
            1 => TunnelType::Gue,
            2 => TunnelType::Gre,
            _ => TunnelType::Ipip,
        },
        port: d.tun_port,
        csum: match d.tun_flags {
            1 => TunnelCsumSpec::Csum,
            2 => TunnelCsumSpec::Remcsum,
            _ => TunnelCsumSpec::Nocsum,
        },
    });
    ServerSpec {
        address: addr_of(d.af, &d.addr),
        port: d.port,
        weight: d.weight as u32,
        forward,
        tunnel,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        proxy_protocol: None,
    }
}

fn daemon_args(e: &Entry) -> DaemonArgs {
    let d = &e.daemon;
    DaemonArgs {
        master: d.master,
        mcast_interface: text(&d.mcast_ifn),
        syncid: e.has(OPTC_SYNCID).then_some(d.syncid),
        sync_maxlen: e.has(OPTC_SYNC_MAXLEN).then_some(d.sync_maxlen),
        mcast_group: d.mcast_group,
        mcast_port: e.has(OPTC_MCAST_PORT).then_some(d.mcast_port),
        mcast_ttl: e.has(OPTC_MCAST_TTL).then_some(d.mcast_ttl),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
