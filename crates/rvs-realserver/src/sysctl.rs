//! The kernel knobs a real server needs, written through `/proc/sys`.
//!
//! DR and TUN (the LVS howto's "ARP problem"): the VIP sits on `lo`, and
//! `arp_ignore=1` (answer ARP only for addresses of the receiving interface)
//! with `arp_announce=2` (never use the VIP as the ARP source) on `all` and
//! `lo` keep the real server from answering ARP for the VIP, which belongs to
//! the director. TUN also sets `rp_filter=0` on `all` and the tunnel device:
//! decapsulated packets arrive there with the client's source, which the
//! reverse-path check would drop (the effective value is the maximum of `all`
//! and the device's).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `/proc/sys/net/ipv4/conf/SCOPE/KNOB`.
pub fn conf_path(scope: &str, knob: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{scope}/{knob}"))
}

/// The knobs and values for `dr up`, or `tun up` on `tun_dev`.
pub fn wanted(tun_dev: Option<&str>) -> Vec<(PathBuf, &'static str)> {
    let mut knobs = Vec::new();
    for scope in ["all", "lo"] {
        knobs.push((conf_path(scope, "arp_ignore"), "1"));
        knobs.push((conf_path(scope, "arp_announce"), "2"));
    }
    if let Some(dev) = tun_dev {
        knobs.push((conf_path("all", "rp_filter"), "0"));
        if dev != "all" && dev != "lo" {
            knobs.push((conf_path(dev, "rp_filter"), "0"));
        }
    }
    knobs
}

pub fn read(path: &Path) -> Result<String> {
    let value =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(value.trim().to_owned())
}

pub fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, format!("{value}\n"))
        .with_context(|| format!("writing {value} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tun_adds_rp_filter_on_all_and_the_device_to_the_dr_knobs() {
        let dr = wanted(None);
        assert_eq!(dr.len(), 4);
        assert!(dr.contains(&(conf_path("lo", "arp_ignore"), "1")));
        assert!(dr.contains(&(conf_path("all", "arp_announce"), "2")));
        let tun = wanted(Some("eth1"));
        assert_eq!(&tun[..4], &dr[..]);
        assert_eq!(
            &tun[4..],
            &[
                (conf_path("all", "rp_filter"), "0"),
                (conf_path("eth1", "rp_filter"), "0")
            ]
        );
    }
}
