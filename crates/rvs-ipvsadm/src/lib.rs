//! `rvs-ipvsadm` owns ipvsadm 1.31's user interface as data: how Debian's ipvsadm
//! (built with popt 1.19) reads its arguments, every message, stream and exit status
//! it answers them with, and every text it prints for the table (`-L` listings, `-c`,
//! `--timeout`, `-S` rules). It does no I/O: names are resolved through [`Resolver`],
//! the table arrives as [`rvs_api::TableView`], and results come back as strings and
//! [`Action`]s for the `rvsadm` binary to carry out.
//!
//! Use: a binary takes its [`Personality`] from `argv[0]`. As ipvsadm it calls
//! [`parse_args`] and carries out the [`Action`] (see there for `-R`). As
//! `ipvsadm-save` it checks [`save_script_args`] and then acts as `ipvsadm -S [-n]`;
//! as `ipvsadm-restore` it acts as `ipvsadm -C`, then as `ipvsadm -R` reading
//! [`restore_script_input`] of its standard input. Argv and standard input are
//! bytes to ipvsadm; a binary passes them here converted lossily to UTF-8.
//!
//! The target is Debian's build, which differs from the 1.31 tarball in one place
//! users can see: `-w` accepts up to 2147483647 (Debian bug 814348).
//!
//! Invariants: nothing here panics on any argv or input text; every output string is
//! what ipvsadm 1.31 writes byte for byte, except where a doc comment says otherwise
//! (rvs extensions such as the `FullNat` forwarding method, and the few ipvsadm
//! behaviours that no library can reproduce, such as a crash or a hang, which are
//! documented where they are handled).

#![forbid(unsafe_code)]

mod clib;
mod errors;
mod parse;
mod popt;
mod render;
mod restore;
mod sort;
mod usage;

use std::net::{IpAddr, Ipv4Addr};

pub use errors::error_message;
pub use parse::{parse_args, parse_args_ext};
pub use render::{
    render_conns, render_daemons, render_list_all, render_list_service, render_timeout,
};
pub use restore::{
    personality, restore_lines, restore_script_input, save_script_args, Personality,
};

/// Name resolution, as ipvsadm gets it from the C library. The binary implements this
/// with the system resolver; tests use [`NoResolver`] or a table.
pub trait Resolver {
    /// `gethostbyname(name)`: the first IPv4 address, or `None` when the name does not
    /// resolve or resolves to another family.
    fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr>;
    /// `gethostbyaddr(addr)`: the host's official name.
    fn addr_to_host(&self, addr: IpAddr) -> Option<String>;
    /// `getservbyname(name, "tcp"|"udp"|"sctp")`. Never called with [`Proto::Other`].
    fn service_to_port(&self, name: &str, proto: Proto) -> Option<u16>;
    /// `getservbyport(port, "tcp"|"udp"|"sctp")`. Never called with [`Proto::Other`].
    fn port_to_service(&self, port: u16, proto: Proto) -> Option<String>;
}

/// The protocol a port name is looked up for. `Other` (fwmark services, whose entries
/// carry protocol 0, and `IP` connection templates) never resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Other,
}

/// A resolver that knows no names: every look-up fails, so output is numeric.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResolver;

impl Resolver for NoResolver {
    fn host_to_addr(&self, _name: &str) -> Option<Ipv4Addr> {
        None
    }
    fn addr_to_host(&self, _addr: IpAddr) -> Option<String> {
        None
    }
    fn service_to_port(&self, _name: &str, _proto: Proto) -> Option<u16> {
        None
    }
    fn port_to_service(&self, _port: u16, _proto: Proto) -> Option<String> {
        None
    }
}

/// ipvsadm's printing format flags (`FMT_*` in ipvsadm.c).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// `-n`: addresses and ports as numbers.
    pub numeric: bool,
    /// `-S`: print the table as `-A`/`-a` rules.
    pub rule: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`.
    pub nosort: bool,
    /// `--exact`.
    pub exact: bool,
    /// `--tun-info`.
    pub tun_info: bool,
}

/// What a finished ipvsadm run wrote and how it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The process exit status (255 where ipvsadm returns or exits with -1).
    pub code: i32,
}

impl Output {
    /// `text` on stdout, nothing on stderr.
    pub fn stdout(text: String, code: i32) -> Self {
        Output {
            stdout: text,
            stderr: String::new(),
            code,
        }
    }

    /// `text` on stderr, nothing on stdout.
    pub fn stderr(text: String, code: i32) -> Self {
        Output {
            stdout: String::new(),
            stderr: text,
            code,
        }
    }
}

/// The libipvs call a table change goes through, which selects the text of its
/// errors (libipvs `ipvs_strerror` keys its table on the function that failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AddService,
    EditService,
    DeleteService,
    Clear,
    AddServer,
    EditServer,
    DeleteServer,
    Zero,
    SetTimeouts,
    /// `--start-daemon` (not in the original list; for [`error_message`] only).
    StartDaemon,
    /// `--stop-daemon` (not in the original list; for [`error_message`] only).
    StopDaemon,
}

/// The sync daemon request of `--start-daemon`/`--stop-daemon`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonArgs {
    /// `master` (true) or `backup`.
    pub master: bool,
    /// `--mcast-interface`, at most 15 bytes; `eth0` when starting without it, empty
    /// when stopping (ipvsadm sends it empty).
    pub mcast_interface: String,
    /// `--syncid` (ipvsadm sends 0 without it).
    pub syncid: Option<u8>,
    pub sync_maxlen: Option<u16>,
    pub mcast_group: Option<IpAddr>,
    pub mcast_port: Option<u16>,
    pub mcast_ttl: Option<u8>,
}

/// What an argv asks for.
///
/// For `-R` the caller reads standard input, splits it with [`restore_lines`] and
/// calls [`parse_args`] with `reading_stdin = true` for each line, in order. Then:
/// * [`Action::Exit`] ends the whole process with its status, as ipvsadm's `exit()`
///   does (no later line runs);
/// * [`Action::Failed`] prints its text and makes that line's status 255, and the
///   restore goes on with the next line;
/// * every other action runs; a daemon error prints [`error_message`] on stderr and
///   makes the line's status 255, and the restore goes on.
///
/// ipvsadm `-R` exits with the status of the last line it ran (restore_table keeps
/// only the last `process_options` result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Print `stdout`/`stderr` and exit with `code`: `-h` (usage on stdout, 0), `-v`,
    /// and every failure for which ipvsadm calls `exit()` (`fail`, `tryhelp_exit`).
    Exit(Output),
    /// A popt error after the command (`"-t: missing argument"`, ...): ipvsadm prints
    /// it and `process_options` returns -1, so the process exits 255, but inside `-R`
    /// the next line still runs. (Not in the original API list: ipvsadm treats this
    /// case differently from [`Action::Exit`] only while restoring.)
    Failed(Output),
    /// One table change; the caller sends it to the daemon. On an error, ipvsadm
    /// prints `error_message(op, err)` and a newline on stderr and its status is 255.
    Apply { op: Op, command: rvs_api::Command },
    /// `-L`/`-l` (also ipvsadm with no argument at all): [`render_list_all`].
    ListAll(Format),
    /// `-L -t|-u|--sctp-service|-f ...`: [`render_list_service`]. Its `Err` ends the
    /// process (ipvsadm calls `exit(1)`), inside `-R` too.
    ListService(rvs_api::ServiceRef, Format),
    /// `-L -c`: [`render_conns`].
    ListConns(Format),
    /// `-L --timeout`: [`render_timeout`].
    ListTimeout,
    /// `-L --daemon`: [`render_daemons`] of the running sync daemons.
    ListDaemon,
    /// `-S`: [`render_list_all`] with `format.rule` set (`numeric` as given).
    Save(Format),
    /// `-R`: read rules from standard input (see above).
    Restore,
    /// `--start-daemon`: send [`DaemonArgs::spec`]; on an error print
    /// `error_message(Op::StartDaemon, err)` and a newline on stderr, status 255.
    StartDaemon(DaemonArgs),
    /// `--stop-daemon`: stop the daemon of that role; on an error print
    /// `error_message(Op::StopDaemon, err)` and a newline on stderr, status 255.
    StopDaemon(DaemonArgs),
}

impl DaemonArgs {
    /// The API request ipvsadm's options amount to (ipvsadm sends syncid 0
    /// without `--syncid`, and leaves the other settings to the kernel).
    pub fn spec(&self) -> rvs_api::DaemonSpec {
        rvs_api::DaemonSpec {
            state: self.state(),
            mcast_interface: self.mcast_interface.clone(),
            syncid: self.syncid.unwrap_or(0),
            sync_maxlen: self.sync_maxlen,
            mcast_group: self.mcast_group,
            mcast_port: self.mcast_port,
            mcast_ttl: self.mcast_ttl,
        }
    }

    /// `master` or `backup`.
    pub fn state(&self) -> rvs_api::DaemonState {
        if self.master {
            rvs_api::DaemonState::Master
        } else {
            rvs_api::DaemonState::Backup
        }
    }
}
