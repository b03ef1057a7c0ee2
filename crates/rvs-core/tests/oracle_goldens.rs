//! Replays every golden recorded from the real IPVS (tests/golden/*.golden, made by
//! the scripts beside them with ../shared/tools/ipvs-oracle) through the core, and
//! checks that the core makes the same decisions.
//!
//! For each golden: `setup`/`cmd` lines are ipvsadm commands, applied in order
//! (a command the kernel refused, shown by a following `# ipvsadm said:` line, must
//! be refused here too); each block of `dest` lines must equal the service's
//! destinations in list order with weight and thresholds; each `conn` line is
//! replayed as the packets the director saw (NAT: SYN, SYN-ACK, ACK for `held`,
//! plus the FIN exchange for `closed`; SYN and the server's RST when the script
//! noted `# ECONNREFUSED` before it; one datagram and its reply for `udp`) and
//! must reach the same real server; `close` closes a held connection; `counts`
//! must equal ActiveConn/InActConn; `lnc` snapshots must list the same entries
//! with the same states.
//!
//! Exact except for two timing effects that no replay can know:
//! - the golden records when a connection *started* and when a snapshot was read,
//!   not when the kernel saw each packet (the guest is an emulator; a connection
//!   takes up to a second), so an `lnc` expiry may differ from the replay's by that
//!   window, at most [`EXPIRE_SLACK_SECS`];
//! - the kernel's timers fire late: its timer wheel files a timer of d jiffies in a
//!   level whose slots are 8^k jiffies wide (64 slots per level, HZ=250 on Debian),
//!   so an entry past its expiry shows `00:00` until its slot runs
//!   ([`kernel_timer_lateness`]). A kernel entry at `00:00` that the replay already
//!   expired, or re-armed (a template kept because it controls connections), is
//!   therefore accepted, and a re-armed template may be later by that lateness.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rvs_core::{
    DestConfig, Director, Family, Forward, InVerdict, Packet, Persistence, Protocol, SchedFlags,
    SchedulerKind, ServiceConfig, ServiceKey, SockAddrDisplay, Span, TcpFlags, Time, TunnelConfig,
    TunnelCsum, TunnelKind,
};

const EXPIRE_SLACK_SECS: i64 = 2;

/// How late the kernel's timer wheel may run a timer set `timeout` ahead:
/// one slot of the level it is filed in (kernel/time/timer.c, LVL_BITS 6,
/// LVL_CLK_SHIFT 3), at HZ=250.
fn kernel_timer_lateness(timeout: Span) -> Span {
    const HZ: u64 = 250;
    let jiffies = timeout.as_millis() * HZ / 1000;
    let mut level = 0u32;
    while level < 8 && jiffies >= 64 * 8u64.pow(level) {
        level += 1;
    }
    let gran = if level == 0 { 1 } else { 8u64.pow(level) };
    Span::from_millis(gran * 1000 / HZ)
}

#[derive(Debug)]
enum Command {
    AddService(ServiceConfig),
    EditService(ServiceConfig),
    DeleteService(ServiceKey),
    AddDest(ServiceKey, DestConfig),
    EditDest(ServiceKey, DestConfig),
    DeleteDest(ServiceKey, IpAddr, u16),
    Set(u64, u64, u64),
    Clear,
    Zero(Option<ServiceKey>),
}

fn parse_hostport(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']').ok_or("bad [v6]")?;
        let addr = a.parse().map_err(|e| format!("{a}: {e}"))?;
        let port = p.strip_prefix(':').map(|p| p.parse::<u16>()).transpose();
        return Ok((addr, port.map_err(|e| e.to_string())?));
    }
    match s.split_once(':') {
        Some((a, p)) => Ok((
            a.parse().map_err(|e| format!("{a}: {e}"))?,
            Some(p.parse().map_err(|e| format!("{p}: {e}"))?),
        )),
        None => Ok((s.parse().map_err(|e| format!("{s}: {e}"))?, None)),
    }
}

/// The subset of ipvsadm's command line the golden scripts use.
fn parse_ipvsadm(args: &[&str]) -> Result<Command, String> {
    let mut op = None;
    let mut key: Option<ServiceKey> = None;
    let mut v6 = false;
    let mut sched = SchedulerKind::Wlc;
    let mut persist: Option<u32> = None;
    let mut mask: Option<u32> = None;
    let mut flags = SchedFlags::default();
    let mut ops = false;
    let mut rs: Option<(IpAddr, Option<u16>)> = None;
    let mut fwd = Forward::Route;
    let mut tun = TunnelConfig::default();
    let mut weight = 1u32;
    let (mut upper, mut lower) = (0u32, 0u32);
    let mut set = None;
    let mut i = 0;
    let next = |i: &mut usize| -> Result<&str, String> {
        *i += 1;
        args.get(*i)
            .copied()
            .ok_or_else(|| "missing value".to_string())
    };
    while i < args.len() {
        let a = args[i];
        match a {
            "-A" | "-E" | "-D" | "-a" | "-e" | "-d" | "-C" | "-Z" => op = Some(a),
            "--set" => {
                let t = next(&mut i)?.parse().map_err(|_| "tcp")?;
                let f = next(&mut i)?.parse().map_err(|_| "tcpfin")?;
                let u = next(&mut i)?.parse().map_err(|_| "udp")?;
                set = Some((t, f, u));
            }
            "-t" | "-u" | "--sctp-service" => {
                let proto = match a {
                    "-t" => Protocol::Tcp,
                    "-u" => Protocol::Udp,
                    _ => Protocol::Sctp,
                };
                let (addr, port) = parse_hostport(next(&mut i)?)?;
                key = Some(ServiceKey::Addr {
                    proto,
                    addr,
                    port: port.unwrap_or(0),
                });
            }
            "-f" => {
                let mark = next(&mut i)?.parse().map_err(|_| "fwmark")?;
                key = Some(ServiceKey::Fwmark {
                    mark,
                    family: Family::V4,
                });
            }
            "-6" => v6 = true,
            "-s" => sched = SchedulerKind::parse(next(&mut i)?).map_err(|e| e.to_string())?,
            "-p" => {
                persist = Some(360);
                if let Some(t) = args.get(i + 1).and_then(|t| t.parse().ok()) {
                    persist = Some(t);
                    i += 1;
                }
            }
            "-M" => {
                let m = next(&mut i)?;
                mask = Some(match m.parse::<Ipv4Addr>() {
                    Ok(a) => u32::from(a),
                    Err(_) => m.parse().map_err(|_| "mask")?,
                });
            }
            "-b" => {
                for f in next(&mut i)?.split(',') {
                    match f {
                        "flag-1" | "sh-fallback" | "mh-fallback" => flags.flag1 = true,
                        "flag-2" | "sh-port" | "mh-port" => flags.flag2 = true,
                        "flag-3" => flags.flag3 = true,
                        _ => return Err(format!("flag {f}")),
                    }
                }
            }
            "-o" => ops = true,
            "-r" => rs = Some(parse_hostport(next(&mut i)?)?),
            "-g" => fwd = Forward::Route,
            "-m" => fwd = Forward::Masq,
            "-i" => fwd = Forward::Tunnel(tun),
            "--tun-type" => {
                tun.kind = match next(&mut i)? {
                    "ipip" => TunnelKind::Ipip,
                    "gue" => TunnelKind::Gue,
                    "gre" => TunnelKind::Gre,
                    t => return Err(format!("tun-type {t}")),
                }
            }
            "--tun-port" => tun.port = next(&mut i)?.parse().map_err(|_| "tun-port")?,
            "--tun-csum" => tun.csum = TunnelCsum::Csum,
            "--tun-remcsum" => tun.csum = TunnelCsum::RemCsum,
            "--tun-nocsum" => tun.csum = TunnelCsum::NoCsum,
            "-w" => weight = next(&mut i)?.parse().map_err(|_| "weight")?,
            "-x" => upper = next(&mut i)?.parse().map_err(|_| "-x")?,
            "-y" => lower = next(&mut i)?.parse().map_err(|_| "-y")?,
            other => return Err(format!("unsupported argument {other}")),
        }
        i += 1;
    }
    if let Forward::Tunnel(_) = fwd {
        fwd = Forward::Tunnel(tun);
    }
    if v6 {
        if let Some(ServiceKey::Fwmark { mark, .. }) = key {
            key = Some(ServiceKey::Fwmark {
                mark,
                family: Family::V6,
            });
        }
    }
    if let Some((t, f, u)) = set {
        return Ok(Command::Set(t, f, u));
    }
    let op = op.ok_or("no command")?;
    if op == "-C" {
        return Ok(Command::Clear);
    }
    if op == "-Z" {
        return Ok(Command::Zero(key));
    }
    let key = key.ok_or("no service")?;
    let service = || {
        let mut c = ServiceConfig::new(key);
        c.scheduler = sched;
        c.sched_flags = flags;
        c.one_packet = ops;
        c.persistence = persist.map(|timeout| Persistence {
            timeout,
            netmask: mask.unwrap_or(match key.family() {
                Family::V4 => u32::MAX,
                Family::V6 => 128,
            }),
        });
        c
    };
    let dest = || -> Result<DestConfig, String> {
        let (addr, port) = rs.ok_or("no -r")?;
        let port = port.unwrap_or(key.port());
        Ok(DestConfig {
            addr,
            port,
            weight,
            forward: fwd,
            u_threshold: upper,
            l_threshold: lower,
        })
    };
    Ok(match op {
        "-A" => Command::AddService(service()),
        "-E" => Command::EditService(service()),
        "-D" => Command::DeleteService(key),
        "-a" => Command::AddDest(key, dest()?),
        "-e" => Command::EditDest(key, dest()?),
        "-d" => {
            let d = dest()?;
            Command::DeleteDest(key, d.addr, d.port)
        }
        _ => unreachable!(),
    })
}

fn apply(d: &mut Director, c: Command, now: Time) -> Result<(), String> {
    let r = match c {
        Command::AddService(s) => d.add_service(s).map(|_| ()),
        Command::EditService(s) => d.edit_service(s),
        Command::DeleteService(k) => d.delete_service(&k, now),
        Command::AddDest(k, x) => d.add_dest(&k, x).map(|_| ()),
        Command::EditDest(k, x) => d.edit_dest(&k, x),
        Command::DeleteDest(k, a, p) => d.delete_dest(&k, a, p, now),
        Command::Set(t, f, u) => return d.set_timeouts(t, f, u).map_err(|e| e.to_string()),
        Command::Clear => {
            d.clear(now);
            Ok(())
        }
        Command::Zero(k) => d.zero(k.as_ref()),
    };
    r.map_err(|e| e.to_string())
}

/// The oracle's tc rules: dst 10.0.1.0/24 gets mark 1, 10.0.2.0/24 mark 2.
fn fwmark_of(daddr: IpAddr) -> u32 {
    match daddr {
        IpAddr::V4(a) => match a.octets() {
            [10, 0, 1, _] => 1,
            [10, 0, 2, _] => 2,
            _ => 0,
        },
        IpAddr::V6(_) => 0,
    }
}

/// An address and port.
type Endpoint = (IpAddr, u16);

/// A held TCP connection: the virtual service it dialled, the real server, and
/// whether the director sees the server's packets (NAT) or not (DR/TUN).
#[derive(Clone, Copy)]
struct Held {
    vip: Endpoint,
    rs: Endpoint,
    sees_replies: bool,
}

/// One packet of an exchange: from the client (in) or from the server (out).
#[derive(Clone, Copy)]
enum Step {
    In(TcpFlags),
    Out(TcpFlags),
}

const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN_ACK;
const RST: TcpFlags = TcpFlags {
    syn: false,
    fin: false,
    ack: false,
    rst: true,
};

struct Replay {
    d: Director,
    name: String,
    /// Held TCP connections: client -> (vip, real server).
    held: HashMap<Endpoint, Held>,
    current: Option<ServiceKey>,
    dest_block: Vec<String>,
    lnc: Option<(Time, Vec<String>)>,
    failures: Vec<String>,
    checks: usize,
}

fn hp(s: &str) -> (IpAddr, u16) {
    match parse_hostport(s) {
        Ok((a, Some(p))) => (a, p),
        _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    }
}

fn packet(proto: &str, from: (IpAddr, u16), to: (IpAddr, u16), flags: TcpFlags) -> Packet {
    let mut p = if proto == "udp" {
        Packet::udp(from.0, from.1, to.0, to.1)
    } else {
        Packet::tcp(from.0, from.1, to.0, to.1, flags)
    };
    p.fwmark = fwmark_of(to.0);
    p
}

impl Replay {
    fn new(name: String) -> Self {
        Replay {
            d: Director::default(),
            name,
            held: HashMap::new(),
            current: None,
            dest_block: Vec::new(),
            lnc: None,
            failures: Vec::new(),
            checks: 0,
        }
    }

    fn fail(&mut self, lineno: usize, msg: String) {
        self.failures
            .push(format!("{}:{}: {msg}", self.name, lineno + 1));
    }

    fn service_of(&self, proto: &str, vip: (IpAddr, u16)) -> Option<ServiceKey> {
        let mark = fwmark_of(vip.0);
        if mark != 0 {
            let k = ServiceKey::Fwmark {
                mark,
                family: Family::V4,
            };
            if self.d.service_by_key(&k).is_some() {
                return Some(k);
            }
        }
        let proto = if proto == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        [vip.1, 0].into_iter().find_map(|port| {
            let k = ServiceKey::Addr {
                proto,
                addr: vip.0,
                port,
            };
            self.d.service_by_key(&k).map(|_| k)
        })
    }

    fn check_dest_block(&mut self, lineno: usize) {
        if self.dest_block.is_empty() {
            return;
        }
        let mut want: Vec<String> = std::mem::take(&mut self.dest_block);
        want.sort();
        let mut got = Vec::new();
        for s in self.d.services() {
            let name = match s.config.key {
                ServiceKey::Addr { proto, addr, port } => {
                    format!("{proto}/{}", SockAddrDisplay(addr, port))
                }
                ServiceKey::Fwmark { mark, .. } => format!("FWM/{mark}"),
            };
            for (pos, x) in self.d.dests_of(s).enumerate() {
                got.push(format!(
                    "{name} #{pos} {} {} {} {} {}",
                    SockAddrDisplay(x.config.addr, x.config.port),
                    x.config.forward.name(),
                    x.weight(),
                    x.config.u_threshold,
                    x.config.l_threshold
                ));
            }
        }
        got.sort();
        self.checks += 1;
        if want != got {
            self.fail(
                lineno,
                format!("dest list differs:\n kernel {want:#?}\n rvs {got:#?}"),
            );
        }
    }

    fn conn_entries(&self, now: Time) -> Vec<(String, i64, Span)> {
        self.d
            .conns()
            .map(|(_, c)| {
                let pro = match c.key.proto {
                    6 => "TCP",
                    17 => "UDP",
                    132 => "SCTP",
                    0 => "IP",
                    _ => "?",
                };
                let rem = c.expires.millis_since(now) as i64 / 1000;
                let late = if c.flags.template {
                    kernel_timer_lateness(c.timeout())
                } else {
                    Span::default()
                };
                (
                    format!(
                        "{pro} {} {} {} {}",
                        self.d.state_name(c),
                        SockAddrDisplay(c.key.caddr, c.key.cport),
                        SockAddrDisplay(c.key.vaddr, c.key.vport),
                        SockAddrDisplay(c.daddr, c.dport)
                    ),
                    rem,
                    late,
                )
            })
            .collect()
    }

    fn check_lnc(&mut self, lineno: usize, at: Time, lines: Vec<String>) {
        let mut kernel: Vec<(String, i64)> = lines
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (mm, ss) = f.get(1)?.split_once(':')?;
                let rem = mm.parse::<i64>().ok()? * 60 + ss.parse::<i64>().ok()?;
                Some((format!("{} {} {} {} {}", f[0], f[2], f[3], f[4], f[5]), rem))
            })
            .collect();
        kernel.sort();
        let mut ours = self.conn_entries(at);
        ours.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        self.checks += 1;
        let mut problems = Vec::new();
        for (name, krem) in &kernel {
            match ours.iter().position(|o| &o.0 == name) {
                Some(i) => {
                    let (_, orem, late) = ours.remove(i);
                    let slack = EXPIRE_SLACK_SECS + (late.as_millis() as i64 + 999) / 1000;
                    // Overdue in the kernel (its timer has not run yet): any value.
                    if *krem != 0 && (krem - orem).abs() > slack {
                        problems.push(format!(
                            "{name}: kernel expires in {krem} s, rvs in {orem} s"
                        ));
                    }
                }
                // Overdue in the kernel, expired on time here.
                None if *krem == 0 => {}
                None => problems.push(format!("{name}: in the kernel's table, not in rvs's")),
            }
        }
        for (name, rem, _) in ours {
            problems.push(format!(
                "{name} (expires in {rem} s): in rvs's table, not in the kernel's"
            ));
        }
        for p in problems {
            self.fail(lineno, p);
        }
    }

    fn run(&mut self, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let (t, rest) = match line.strip_prefix("t=") {
                Some(r) => {
                    let (t, rest) = r.split_once(' ').unwrap_or((r, ""));
                    (
                        t.parse::<u64>().ok().map(|cs| Time::from_millis(cs * 10)),
                        rest,
                    )
                }
                None => (None, *line),
            };
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or("");
            if kind != "dest" && !line.starts_with('#') {
                self.check_dest_block(n);
            }
            let now = t.unwrap_or(Time::ZERO);
            if t.is_some() {
                self.d.handle_timeout(now, |_, _| {});
            }
            match kind {
                "setup" | "cmd" => {
                    let args: Vec<&str> = words.collect();
                    let refused = lines
                        .get(n + 1)
                        .is_some_and(|l| l.starts_with("# ipvsadm said:"));
                    let result = parse_ipvsadm(&args).and_then(|c| apply(&mut self.d, c, now));
                    match (result, refused) {
                        (Ok(()), true) => self.fail(n, "kernel refused, rvs accepted".into()),
                        (Err(e), false) => self.fail(n, format!("rvs refused: {e}")),
                        _ => {}
                    }
                }
                "rule" => {}
                "sysctl" => {
                    let name = words.next().unwrap_or("");
                    let value: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    let on = value != 0;
                    let mut sc = *self.d.sysctl();
                    match name {
                        "expire_quiescent_template" => sc.expire_quiescent_template = on,
                        "expire_nodest_conn" => sc.expire_nodest_conn = on,
                        "sloppy_tcp" => sc.sloppy_tcp = on,
                        "conn_reuse_mode" => sc.conn_reuse_mode = value as u8,
                        "sloppy_sctp" => sc.sloppy_sctp = on,
                        "lblc_expiration" => sc.lblc_expiration = Span::from_secs(value),
                        "lblcr_expiration" => sc.lblcr_expiration = Span::from_secs(value),
                        other => self.fail(n, format!("unknown sysctl {other}")),
                    }
                    self.d.set_sysctl(sc);
                }
                "dest" => {
                    let f: Vec<&str> = words.collect();
                    if f.len() == 6 {
                        let pos = self
                            .dest_block
                            .iter()
                            .filter(|l| l.starts_with(&format!("{} ", f[0])))
                            .count();
                        self.dest_block.push(format!(
                            "{} #{pos} {} {} {} {} {}",
                            f[0], f[1], f[2], f[3], f[4], f[5]
                        ));
                    }
                }
                "conn" => {
                    let f: Vec<&str> = words.collect();
                    // conn KIND PROTO CADDR:CPORT VIP:VPORT -> RS:PORT
                    if f.len() < 6 {
                        self.fail(n, "short conn line".into());
                        continue;
                    }
                    let note = if n > 0 { lines[n - 1] } else { "" };
                    let k = if note.starts_with("# ECONNREFUSED") {
                        "refused"
                    } else if note.starts_with("# ETIMEDOUT: IPVS forwarded it") {
                        "follows-entry"
                    } else if note.starts_with("# challenge-ack") {
                        "challenge-ack"
                    } else {
                        f[0]
                    };
                    let (proto, c, v, rs) = (f[1], hp(f[2]), hp(f[3]), f[5]);
                    self.current = self.service_of(proto, v);
                    self.replay_conn(n, now, k, proto, c, v, rs);
                }
                "close" | "abort" => {
                    let c = hp(words.next().unwrap_or(""));
                    let unseen = words.next() == Some("unseen");
                    let Some(h) = self.held.remove(&c) else {
                        self.fail(n, format!("{kind} of unknown held connection {c:?}"));
                        continue;
                    };
                    self.current = self.service_of("tcp", h.vip);
                    let steps: &[Step] = match (kind, unseen) {
                        ("close", _) => &[Step::In(FIN), Step::Out(FIN), Step::In(ACK)],
                        (_, false) => &[Step::In(RST)],
                        (_, true) => &[],
                    };
                    self.exchange(c, h, steps, now);
                }
                "send" => {
                    // send CADDR:CPORT -> RS | none (+ "# send failed: ERR")
                    let f: Vec<&str> = words.collect();
                    let c = hp(f.first().copied().unwrap_or(""));
                    let want = f.get(2).copied().unwrap_or("");
                    let Some(h) = self.held.get(&c).copied() else {
                        self.fail(n, format!("send on unknown held connection {c:?}"));
                        continue;
                    };
                    let v = self.d.handle_in(&packet("tcp", c, h.vip, ACK), now);
                    let note = lines.get(n + 1).copied().unwrap_or("");
                    self.checks += 1;
                    let ok = match v {
                        InVerdict::Forward(fw) => {
                            SockAddrDisplay(fw.daddr, fw.dport).to_string() == want
                        }
                        // Dropped: the entry's server was removed.
                        InVerdict::Drop => want == "none" && note.contains("ETIMEDOUT"),
                        // No entry: the host's own stack answers RST.
                        InVerdict::Pass => want == "none" && note.contains("ECONNRESET"),
                        InVerdict::Refuse(_) => false,
                    };
                    if !ok {
                        self.fail(n, format!("send {c:?}: kernel {want} ({note}), rvs {v:?}"));
                    }
                    if matches!(v, InVerdict::Forward(_)) {
                        self.exchange(c, h, &[Step::Out(ACK), Step::In(ACK)], now);
                    }
                    if note.contains("ECONNRESET") {
                        self.held.remove(&c);
                    }
                }
                "stats" => {
                    let f: Vec<&str> = words.collect();
                    let (a, p) = hp(f.first().copied().unwrap_or(""));
                    let want: i64 = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(-1);
                    let got: Vec<i64> = self
                        .d
                        .services()
                        .flat_map(|s| self.d.dests_of(s))
                        .filter(|x| x.config.addr == a && x.config.port == p)
                        .map(|x| x.stats.counters().conns as i64)
                        .collect();
                    self.checks += 1;
                    if got != vec![want] {
                        self.fail(n, format!("Conns of {}: kernel {want}, rvs {got:?}", f[0]));
                    }
                }
                "counts" => {
                    let f: Vec<&str> = words.collect();
                    if f.len() != 3 {
                        continue;
                    }
                    let (a, p) = hp(f[0]);
                    let want = (f[1].parse().unwrap_or(-1i64), f[2].parse().unwrap_or(-1i64));
                    // The service of the last connection, else the one service
                    // that has this destination.
                    let in_service = |k: &ServiceKey| {
                        let s = self.d.service_by_key(k)?;
                        self.d
                            .dests_of(s)
                            .find(|x| x.config.addr == a && x.config.port == p)
                            .map(|x| (i64::from(x.active_conns), i64::from(x.inactive_conns)))
                    };
                    let got = self.current.and_then(|k| in_service(&k)).or_else(|| {
                        let all: Vec<_> = self
                            .d
                            .services()
                            .filter_map(|s| in_service(&s.config.key))
                            .collect();
                        (all.len() == 1).then(|| all[0])
                    });
                    self.checks += 1;
                    if got != Some(want) {
                        self.fail(
                            n,
                            format!("counts of {}: kernel {want:?}, rvs {got:?}", f[0]),
                        );
                    }
                }
                "lnc-begin" => self.lnc = Some((now, Vec::new())),
                "lnc" => {
                    if let Some((_, v)) = self.lnc.as_mut() {
                        v.push(rest.trim_start_matches("lnc ").to_string());
                    }
                }
                "lnc-end" => {
                    if let Some((at, v)) = self.lnc.take() {
                        self.check_lnc(n, at, v);
                    }
                }
                _ => {}
            }
            if let Err(e) = self.d.check_invariants() {
                self.fail(n, format!("invariant: {e}"));
            }
        }
        self.check_dest_block(lines.len());
    }

    /// Sends the steps of an exchange on a connection; server packets only when
    /// the director sees them (NAT).
    fn exchange(&mut self, c: Endpoint, h: Held, steps: &[Step], now: Time) {
        for step in steps {
            match *step {
                Step::In(fl) => {
                    self.d.handle_in(&packet("tcp", c, h.vip, fl), now);
                }
                Step::Out(fl) if h.sees_replies => {
                    self.d.handle_out(&packet("tcp", h.rs, c, fl), now);
                }
                Step::Out(_) => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn replay_conn(
        &mut self,
        n: usize,
        now: Time,
        kind: &str,
        proto: &str,
        c: Endpoint,
        v: Endpoint,
        rs: &str,
    ) {
        if proto == "tcp" && matches!(kind, "follows-entry" | "challenge-ack") {
            // The SYN meets an ESTABLISHED entry: not scheduled, it follows the
            // entry to its server, which answers with a bare ACK.
            let verdict = self.d.handle_in(&packet(proto, c, v, TcpFlags::SYN), now);
            let InVerdict::Forward(f) = verdict else {
                self.fail(
                    n,
                    format!("SYN on a live entry was not forwarded: {verdict:?}"),
                );
                return;
            };
            let h = Held {
                vip: v,
                rs: (f.daddr, f.dport),
                sees_replies: f.forward.sees_replies(),
            };
            self.exchange(c, h, &[Step::Out(ACK)], now);
            if kind == "follows-entry" {
                // The client's RSTs are dropped; it resends the SYN (1 s, 3 s).
                self.checks += 1;
                if SockAddrDisplay(f.daddr, f.dport).to_string() != rs {
                    self.fail(
                        n,
                        format!("SYN followed the entry to {:?}, kernel {rs}", f.daddr),
                    );
                }
                for later in [1000, 3000] {
                    let t = now + Span::from_millis(later);
                    self.d.handle_in(&packet(proto, c, v, TcpFlags::SYN), t);
                    self.exchange(c, h, &[Step::Out(ACK)], t);
                }
                self.held.remove(&c);
                return;
            }
            // challenge-ack: the client's RST closes the entry; its SYN again is
            // rescheduled and the connection proceeds as usual.
            self.exchange(c, h, &[Step::In(RST)], now);
            self.held.remove(&c);
        }
        let first = if proto == "udp" {
            TcpFlags::default()
        } else {
            TcpFlags::SYN
        };
        let verdict = self.d.handle_in(&packet(proto, c, v, first), now);
        let got = match verdict {
            InVerdict::Forward(f) => SockAddrDisplay(f.daddr, f.dport).to_string(),
            _ => "none".to_string(),
        };
        self.checks += 1;
        if got != rs {
            self.fail(
                n,
                format!("{c:?} -> {v:?}: kernel chose {rs}, rvs {got} ({verdict:?})"),
            );
            return;
        }
        let InVerdict::Forward(f) = verdict else {
            return;
        };
        let h = Held {
            vip: v,
            rs: (f.daddr, f.dport),
            sees_replies: f.forward.sees_replies(),
        };
        if proto == "udp" {
            if h.sees_replies {
                self.d
                    .handle_out(&packet(proto, h.rs, c, TcpFlags::default()), now);
            }
            return;
        }
        if kind == "refused" {
            let rst_ack = TcpFlags { ack: true, ..RST };
            self.exchange(c, h, &[Step::Out(rst_ack)], now);
            return;
        }
        self.exchange(c, h, &[Step::Out(TcpFlags::SYN_ACK), Step::In(ACK)], now);
        if kind == "closed" {
            self.exchange(c, h, &[Step::In(FIN), Step::Out(FIN), Step::In(ACK)], now);
        } else {
            self.held.insert(c, h);
        }
    }
}

fn goldens() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "golden"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn replay(path: &Path) -> Replay {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut r = Replay::new(name);
    r.run(&text);
    r
}

#[test]
fn every_golden_replays_exactly() {
    let files = goldens();
    assert!(!files.is_empty(), "no goldens found in tests/golden");
    let mut all = Vec::new();
    for f in &files {
        let r = replay(f);
        eprintln!(
            "{}: {} checks, {} failures",
            r.name,
            r.checks,
            r.failures.len()
        );
        if r.checks == 0 {
            // A golden of facts only (e.g. env.golden: module availability).
            eprintln!("{}: no replayable events", r.name);
        }
        all.extend(r.failures.into_iter().take(5));
    }
    assert!(
        all.is_empty(),
        "{} mismatches:\n{}",
        all.len(),
        all.join("\n")
    );
}

#[test]
fn the_harness_notices_a_wrong_pick() {
    // A golden whose recorded pick is impossible must fail.
    let text = "setup -A -t 10.0.0.1:80 -s rr\n\
                setup -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1\n\
                t=100 conn held tcp 10.1.1.1:1000 10.0.0.1:80 -> 10.2.9.2:80\n";
    let mut r = Replay::new("synthetic".into());
    r.run(text);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
}
