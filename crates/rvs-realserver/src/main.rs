//! rvs-realserver: prepares a Linux host as an LVS real server and undoes it,
//! replacing the hand-written real-server scripts of the LVS howto.
//!
//! - `dr up --vip A [--vip B ...]`: each VIP as a host address (/32, /128) on
//!   `lo`, `arp_ignore=1` and `arp_announce=2` on `all` and `lo`.
//! - `tun up --vip A ... --dev IF [--local ADDR ...] [--gue-port PORT ...]`: as DR,
//!   plus `rp_filter=0` on `all` and IF, plus the XDP decapsulation program
//!   (`rvs_decap.o`) on IF for IPIP/IPv6-in-IP and GUE to the listed ports,
//!   addressed to IF's addresses (or `--local`) and carrying a VIP.
//! - `dr down` / `tun down`: undoes exactly what `up` did, from the state file.
//! - `status`: what is set up.
//!
//! Invariants: everything `up` changes is recorded in the state file before it
//! is changed; a failing `up` undoes its own steps; `down` restores the
//! recorded sysctl values, removes only VIPs it added, and removes the state
//! file only when everything was undone.

mod caps;
mod decap;
mod state;
mod sysctl;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use rvs_sys::Addresses;

use caps::{Cap, Caps};
use state::{Mode, SavedSysctl, State, TunState};

#[derive(Parser, Debug)]
#[command(
    name = "rvs-realserver",
    about = "Prepare this host as an LVS real server (DR or TUN) and undo it"
)]
struct Cli {
    /// Where `up` records what it changed, for `down` and `status`.
    #[arg(long, global = true, default_value = "/run/rvs-realserver.json")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Direct routing: VIPs on lo, ARP sysctls.
    Dr {
        #[command(subcommand)]
        action: DrAction,
    },
    /// IP tunnelling: as DR, plus rp_filter off and XDP decapsulation on a device.
    Tun {
        #[command(subcommand)]
        action: TunAction,
    },
    /// Show what is set up.
    Status,
}

#[derive(Subcommand, Debug)]
enum DrAction {
    Up {
        /// A virtual address (repeat for more).
        #[arg(long = "vip", required = true)]
        vips: Vec<IpAddr>,
    },
    Down,
}

#[derive(Subcommand, Debug)]
enum TunAction {
    Up {
        /// A virtual address (repeat for more).
        #[arg(long = "vip", required = true)]
        vips: Vec<IpAddr>,
        /// The device tunnelled packets arrive on.
        #[arg(long)]
        dev: String,
        /// Outer destination addresses to decapsulate (default: DEV's addresses).
        #[arg(long = "local")]
        locals: Vec<IpAddr>,
        /// A UDP port of GUE (variant 1) tunnels (repeat for more; none: IPIP only).
        #[arg(long = "gue-port")]
        gue_ports: Vec<u16>,
        /// Where the XDP link and counters are pinned (on a bpf filesystem).
        #[arg(long, default_value = "/sys/fs/bpf/rvs")]
        pin_dir: PathBuf,
    },
    Down,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("rvs-realserver: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dr {
            action: DrAction::Up { vips },
        } => up(&cli.state, Mode::Dr, &vips, None),
        Command::Tun {
            action:
                TunAction::Up {
                    vips,
                    dev,
                    locals,
                    gue_ports,
                    pin_dir,
                },
        } => {
            let tun = TunRequest {
                dev,
                locals,
                gue_ports,
                pin_dir,
            };
            up(&cli.state, Mode::Tun, &vips, Some(&tun))
        }
        Command::Dr {
            action: DrAction::Down,
        } => down(&cli.state, Mode::Dr),
        Command::Tun {
            action: TunAction::Down,
        } => down(&cli.state, Mode::Tun),
        Command::Status => status(&cli.state),
    }
}

/// An rvs-sys error as one message (its Display already ends with the OS
/// error, which anyhow's chain would print a second time).
fn sys(error: rvs_sys::SysError) -> anyhow::Error {
    anyhow!("{error}")
}

struct TunRequest {
    dev: String,
    locals: Vec<IpAddr>,
    gue_ports: Vec<u16>,
    pin_dir: PathBuf,
}

fn prefix_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// A current-thread runtime with the rtnetlink connection of this thread's
/// network namespace.
struct Netlink {
    runtime: tokio::runtime::Runtime,
    addresses: Addresses,
    lo: u32,
}

impl Netlink {
    fn open() -> Result<Netlink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let addresses = {
            let _entered = runtime.enter();
            Addresses::new().map_err(sys)?
        };
        let lo = rvs_sys::interface("lo").map_err(sys)?.index;
        Ok(Netlink {
            runtime,
            addresses,
            lo,
        })
    }

    fn lo_addresses(&self) -> Result<Vec<IpAddr>> {
        let list = self
            .runtime
            .block_on(self.addresses.list(self.lo))
            .map_err(sys)?;
        Ok(list.into_iter().map(|(addr, _)| addr).collect())
    }
}

fn up(state_path: &Path, mode: Mode, vips: &[IpAddr], tun: Option<&TunRequest>) -> Result<()> {
    let caps = Caps::current()?;
    caps.require(
        Cap::NetAdmin,
        "add addresses to lo and write net.ipv4 sysctls",
    )?;
    if tun.is_some() {
        caps.require_bpf()?;
    }
    if let Some(existing) = State::load(state_path)? {
        bail!(
            "{} records a {} setup already; run `rvs-realserver {} down` first",
            state_path.display(),
            existing.mode.name(),
            existing.mode.name()
        );
    }
    let net = Netlink::open()?;
    let tun_dev = match tun {
        Some(request) => Some(
            rvs_sys::interface(&request.dev)
                .map_err(|e| anyhow!("the tunnel device (--dev): {e}"))?,
        ),
        None => None,
    };
    let on_lo = net.lo_addresses()?;
    let mut sysctls = Vec::new();
    for (path, value) in sysctl::wanted(tun.map(|t| t.dev.as_str())) {
        let previous = sysctl::read(&path)?;
        sysctls.push(SavedSysctl {
            path,
            previous,
            value: value.to_owned(),
        });
    }
    let mut state = State {
        mode,
        vips: vips.to_vec(),
        vips_added: vips
            .iter()
            .filter(|vip| !on_lo.contains(vip))
            .copied()
            .collect(),
        sysctls,
        tun: None,
    };
    state.save(state_path)?;
    let applied = apply(&net, &mut state, state_path, tun, tun_dev.as_ref(), caps);
    if let Err(e) = applied {
        return match teardown(&net, &state) {
            Ok(()) => {
                State::remove(state_path)?;
                Err(anyhow!("{e:#} (everything `up` had changed is undone)"))
            }
            Err(undo) => Err(e.context(format!(
                "undoing the partial setup failed too ({undo:#}); {} keeps what is left",
                state_path.display()
            ))),
        };
    }
    println!(
        "{} real server up: {} on lo",
        mode.name(),
        join(&state.vips)
    );
    if let Some(tun) = &state.tun {
        println!(
            "decapsulating on {} ({} mode) for {}{}",
            tun.dev,
            tun.xdp_mode,
            join(&tun.locals),
            if tun.gue_ports.is_empty() {
                String::new()
            } else {
                format!(", GUE ports {:?}", tun.gue_ports)
            }
        );
    }
    Ok(())
}

fn apply(
    net: &Netlink,
    state: &mut State,
    state_path: &Path,
    tun: Option<&TunRequest>,
    tun_dev: Option<&rvs_sys::Interface>,
    caps: Caps,
) -> Result<()> {
    for knob in &state.sysctls {
        sysctl::write(&knob.path, &knob.value)?;
    }
    for vip in &state.vips_added {
        net.runtime
            .block_on(net.addresses.add(net.lo, *vip, prefix_of(*vip), None))
            .map_err(sys)?;
    }
    let (Some(request), Some(dev)) = (tun, tun_dev) else {
        return Ok(());
    };
    let locals = if request.locals.is_empty() {
        let mut locals: Vec<IpAddr> = rvs_sys::interface_addrs(&dev.name, false)
            .map_err(sys)?
            .into_iter()
            .chain(rvs_sys::interface_addrs(&dev.name, true).map_err(sys)?)
            .map(|(addr, _)| addr)
            .collect();
        locals.dedup();
        if locals.is_empty() {
            bail!(
                "{} has no addresses to decapsulate for; give --local",
                dev.name
            );
        }
        locals
    } else {
        request.locals.clone()
    };
    decap::prepare_pin_dir(&request.pin_dir, caps)?;
    let link_pin = decap::link_pin(&request.pin_dir, &dev.name);
    if link_pin.exists() {
        // Checked before recording it, so that undoing this `up` leaves it alone.
        bail!(
            "{} exists: a decapsulation program is already attached to {}",
            link_pin.display(),
            dev.name
        );
    }
    let mut ebpf = decap::load(&state.vips, &locals, &request.gue_ports)?;
    // Recorded before attaching: if this process dies after the pin, `down` finds it.
    state.tun = Some(TunState {
        dev: dev.name.clone(),
        xdp_mode: String::new(),
        link_pin,
        stats_pin: decap::stats_pin(&request.pin_dir, &dev.name),
        locals,
        gue_ports: request.gue_ports.clone(),
    });
    state.save(state_path)?;
    let xdp_mode = decap::attach(&mut ebpf, &dev.name, dev.index, &request.pin_dir)?;
    if let Some(tun) = state.tun.as_mut() {
        tun.xdp_mode = xdp_mode.to_owned();
    }
    state.save(state_path)
}

/// Undoes `state`: the XDP program, the VIPs added, the sysctls (in reverse).
/// Goes on after a failure and reports them all at the end.
fn teardown(net: &Netlink, state: &State) -> Result<()> {
    let mut failures = Vec::new();
    if let Some(tun) = &state.tun {
        if let Err(e) = decap::detach(&tun.link_pin, &tun.stats_pin) {
            failures.push(format!("{e:#}"));
        }
    }
    for vip in &state.vips_added {
        let removed = net
            .runtime
            .block_on(net.addresses.del(net.lo, *vip, prefix_of(*vip)));
        if let Err(e) = removed {
            failures.push(e.to_string());
        }
    }
    for knob in state.sysctls.iter().rev() {
        if let Err(e) = sysctl::write(&knob.path, &knob.previous) {
            // A device that went away took its knobs with it.
            if knob.path.exists() {
                failures.push(format!("{e:#}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

fn down(state_path: &Path, mode: Mode) -> Result<()> {
    Caps::current()?.require(
        Cap::NetAdmin,
        "remove addresses from lo and restore net.ipv4 sysctls",
    )?;
    let Some(state) = State::load(state_path)? else {
        bail!(
            "{} does not exist: nothing was set up by `rvs-realserver {} up` with this --state",
            state_path.display(),
            mode.name()
        );
    };
    if state.mode != mode {
        bail!(
            "{} records a {} setup; run `rvs-realserver {} down`",
            state_path.display(),
            state.mode.name(),
            state.mode.name()
        );
    }
    let net = Netlink::open()?;
    teardown(&net, &state)
        .with_context(|| format!("{} is kept for another try of `down`", state_path.display()))?;
    State::remove(state_path)?;
    println!(
        "{} real server down: removed {} from lo, restored {} sysctls{}",
        mode.name(),
        if state.vips_added.is_empty() {
            "nothing".to_owned()
        } else {
            join(&state.vips_added)
        },
        state.sysctls.len(),
        match &state.tun {
            Some(tun) => format!(", detached the decapsulation program from {}", tun.dev),
            None => String::new(),
        }
    );
    Ok(())
}

fn status(state_path: &Path) -> Result<()> {
    let Some(state) = State::load(state_path)? else {
        println!("nothing set up (no {})", state_path.display());
        return Ok(());
    };
    println!("mode: {}", state.mode.name());
    let on_lo = Netlink::open().and_then(|net| net.lo_addresses());
    for vip in &state.vips {
        let presence = match &on_lo {
            Ok(list) if list.contains(vip) => "on lo",
            Ok(_) => "MISSING from lo",
            Err(_) => "lo not readable",
        };
        let origin = if state.vips_added.contains(vip) {
            "added"
        } else {
            "was there before"
        };
        println!("vip {vip}: {presence} ({origin})");
    }
    for knob in &state.sysctls {
        let now = sysctl::read(&knob.path).unwrap_or_else(|e| format!("unreadable: {e:#}"));
        println!(
            "sysctl {}: {now} (set {}, was {})",
            knob.path.display(),
            knob.value,
            knob.previous
        );
    }
    if let Some(tun) = &state.tun {
        let attached = if decap::link_pinned(&tun.link_pin) {
            "attached"
        } else {
            "NOT attached (link pin missing)"
        };
        println!(
            "xdp on {}: {attached}, {} mode, link {}",
            tun.dev,
            tun.xdp_mode,
            tun.link_pin.display()
        );
        println!("decapsulating for: {}", join(&tun.locals));
        if !tun.gue_ports.is_empty() {
            println!("gue ports: {:?}", tun.gue_ports);
        }
        match decap::stats(&tun.stats_pin) {
            Ok(counts) => {
                for (name, count) in decap::STAT_NAMES.iter().zip(counts) {
                    println!("{name}: {count}");
                }
            }
            Err(e) => println!("counters: {e:#}"),
        }
    }
    Ok(())
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
