//! The XDP decapsulation program (`crates/rvs-xdp/bpf/rvs_decap.c`, embedded
//! prebuilt) on the tunnel device: loading, filling its maps, attaching it and
//! pinning the link so it outlives this process, and taking it away again.
//!
//! Invariants: the program is only ever attached through a BPF link pinned at
//! `PIN_DIR/decap_link_DEV`, so removing that pin detaches it; its counters
//! map is pinned beside it (`decap_stats_DEV`) for `status`. Map keys follow
//! `bpf/rvs_abi.h`: 16-byte addresses (IPv4 in the first 4 bytes), ports in
//! network byte order.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use crate::caps::{Cap, Caps};

/// The object `crates/rvs-xdp/bpf/build-decap.sh` builds from `rvs_decap.c`.
pub const DECAP_OBJECT: &[u8] =
    aya::include_bytes_aligned!("../../rvs-xdp/bpf/prebuilt/rvs_decap.o");

/// Where bpffs is normally mounted.
const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// `decap_stats` indices (`enum decap_stat` in rvs_decap.c).
pub const STAT_NAMES: [&str; 2] = ["decapsulated", "passed"];

pub fn link_pin(pin_dir: &Path, dev: &str) -> PathBuf {
    pin_dir.join(format!("decap_link_{dev}"))
}

pub fn stats_pin(pin_dir: &Path, dev: &str) -> PathBuf {
    pin_dir.join(format!("decap_stats_{dev}"))
}

/// A map key for an address: 16 bytes, IPv4 in the first 4.
pub fn addr_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&a.octets());
            key
        }
        IpAddr::V6(a) => a.octets(),
    }
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 as u64 == BPF_FS_MAGIC)
}

/// Makes `pin_dir` exist on a bpf filesystem, mounting bpffs at /sys/fs/bpf
/// when the pin directory is under it and nothing is mounted there yet.
pub fn prepare_pin_dir(pin_dir: &Path, caps: Caps) -> Result<()> {
    if pin_dir.is_dir() && is_bpffs(pin_dir) {
        return Ok(());
    }
    let parent = pin_dir
        .parent()
        .ok_or_else(|| anyhow!("pin directory {} has no parent", pin_dir.display()))?;
    if !is_bpffs(parent) {
        if parent != Path::new(BPFFS_ROOT) {
            bail!(
                "{} is not on a bpf filesystem (mount one with `mount -t bpf bpf DIR`)",
                parent.display()
            );
        }
        caps.require(Cap::SysAdmin, "mount the bpf filesystem at /sys/fs/bpf")?;
        // Pins live as long as their bpffs mount. A private mount namespace (as
        // `ip netns exec` makes, with its own /sys) would drop the mount, and the
        // pinned program with it, when this process exits.
        let own = std::fs::read_link("/proc/self/ns/mnt").ok();
        let init = std::fs::read_link("/proc/1/ns/mnt").ok();
        if own.is_none() || own != init {
            bail!(
                "no bpf filesystem at /sys/fs/bpf, and this process cannot tell that it runs in \
                 the host's mount namespace (a bpffs mounted in a private one, as `ip netns exec` \
                 makes, would vanish with the pinned program when it exits): run \
                 `mount -t bpf bpf /sys/fs/bpf` on the host, or pass --pin-dir on a mounted bpffs"
            );
        }
        nix::mount::mount(
            Some("bpf"),
            BPFFS_ROOT,
            Some("bpf"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            None::<&str>,
        )
        .context("mounting the bpf filesystem at /sys/fs/bpf")?;
    }
    match std::fs::create_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", pin_dir.display())),
    }
}

fn fill_set(ebpf: &mut Ebpf, name: &str, keys: &[[u8; 16]]) -> Result<()> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("rvs_decap.o has no map {name}"))?;
    let mut set: HashMap<_, [u8; 16], u8> =
        HashMap::try_from(map).with_context(|| format!("map {name}"))?;
    for key in keys {
        set.insert(key, 1, 0)
            .with_context(|| format!("filling map {name}"))?;
    }
    Ok(())
}

/// Loads the program and fills its maps (not attached).
pub fn load(vips: &[IpAddr], locals: &[IpAddr], gue_ports: &[u16]) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(DECAP_OBJECT).context("loading rvs_decap.o")?;
    let vip_keys: Vec<[u8; 16]> = vips.iter().map(|a| addr_key(*a)).collect();
    let local_keys: Vec<[u8; 16]> = locals.iter().map(|a| addr_key(*a)).collect();
    fill_set(&mut ebpf, "decap_vips", &vip_keys)?;
    fill_set(&mut ebpf, "decap_local", &local_keys)?;
    let map = ebpf
        .map_mut("decap_ports")
        .ok_or_else(|| anyhow!("rvs_decap.o has no map decap_ports"))?;
    let mut ports: HashMap<_, [u8; 2], u8> = HashMap::try_from(map).context("map decap_ports")?;
    for port in gue_ports {
        ports
            .insert(port.to_be_bytes(), 1, 0)
            .context("filling map decap_ports")?;
    }
    let program: &mut Xdp = ebpf
        .program_mut("rvs_decap")
        .ok_or_else(|| anyhow!("rvs_decap.o has no program rvs_decap"))?
        .try_into()
        .context("rvs_decap is not an XDP program")?;
    program
        .load()
        .context("loading rvs_decap into the kernel (verifier)")?;
    Ok(ebpf)
}

/// Attaches the loaded program to `ifindex` (native mode, generic if the
/// driver refuses) and pins link and counters under `pin_dir`. Returns the
/// mode used: "driver" or "skb".
pub fn attach(ebpf: &mut Ebpf, dev: &str, ifindex: u32, pin_dir: &Path) -> Result<&'static str> {
    let link_pin = link_pin(pin_dir, dev);
    let stats_pin = stats_pin(pin_dir, dev);
    if link_pin.exists() {
        bail!(
            "{} exists: a decapsulation program is already attached to {dev}",
            link_pin.display()
        );
    }
    let program: &mut Xdp = ebpf
        .program_mut("rvs_decap")
        .ok_or_else(|| anyhow!("rvs_decap.o has no program rvs_decap"))?
        .try_into()
        .context("rvs_decap is not an XDP program")?;
    let (link_id, xdp_mode) = match program.attach_to_if_index(ifindex, XdpMode::Driver) {
        Ok(id) => (id, "driver"),
        Err(native) => match program.attach_to_if_index(ifindex, XdpMode::Skb) {
            Ok(id) => (id, "skb"),
            Err(generic) => bail!(
                "attaching XDP to {dev}: native mode: {native}; generic (skb) mode: {generic}"
            ),
        },
    };
    let link = program.take_link(link_id).context("taking the XDP link")?;
    let link = FdLink::try_from(link).map_err(|_| {
        anyhow!(
            "the kernel attached XDP to {dev} through netlink (no BPF links for XDP, Linux < 5.9), \
             which cannot be pinned; it stays attached: remove it with `ip link set dev {dev} xdp off`"
        )
    })?;
    // Until the pin exists, dropping `link` detaches the program again.
    link.pin(&link_pin)
        .with_context(|| format!("pinning the XDP link at {}", link_pin.display()))?;
    let stats = ebpf
        .map("decap_stats")
        .ok_or_else(|| anyhow!("rvs_decap.o has no map decap_stats"))?;
    if let Err(e) = stats.pin(&stats_pin) {
        let _ = detach(&link_pin, &stats_pin);
        return Err(e).with_context(|| format!("pinning decap_stats at {}", stats_pin.display()));
    }
    Ok(xdp_mode)
}

/// Removes the pins (the link's last reference: the program detaches).
/// Missing pins are not an error.
pub fn detach(link_pin: &Path, stats_pin: &Path) -> Result<()> {
    if link_pin.exists() {
        let link = PinnedLink::from_pin(link_pin)
            .with_context(|| format!("opening the pinned XDP link {}", link_pin.display()))?;
        let link = link
            .unpin()
            .with_context(|| format!("unpinning {}", link_pin.display()))?;
        // Closing the last fd of an unpinned BPF link detaches the program.
        drop(link);
    }
    match std::fs::remove_file(stats_pin) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", stats_pin.display())),
    }
    if let Some(dir) = link_pin.parent() {
        // Only succeeds when empty; other pins keep it.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Whether the pinned link is there (the program is attached).
pub fn link_pinned(link_pin: &Path) -> bool {
    PinnedLink::from_pin(link_pin).is_ok()
}

/// The counters (summed over CPUs), in [`STAT_NAMES`] order.
pub fn stats(stats_pin: &Path) -> Result<[u64; 2]> {
    let data = MapData::from_pin(stats_pin)
        .with_context(|| format!("opening the pinned counters {}", stats_pin.display()))?;
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).context("decap_stats")?;
    let mut sums = [0u64; 2];
    for (index, sum) in (0u32..).zip(sums.iter_mut()) {
        let values = counters
            .get(&index, 0)
            .with_context(|| format!("reading decap_stats[{index}]"))?;
        *sum = values.iter().sum();
    }
    Ok(sums)
}
