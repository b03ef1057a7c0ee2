//! What `up` changed, kept in a JSON file (`--state`, default
//! `/run/rvs-realserver.json`) so that `down` undoes exactly that: the VIPs it
//! added (not ones that were on `lo` before), each sysctl's previous value, and
//! the pinned XDP link. The file is written before the first change and
//! rewritten after each step, by rename, so an interrupted `up` can be undone.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dr,
    Tun,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dr => "dr",
            Mode::Tun => "tun",
        }
    }
}

/// One sysctl file and the value it had before `up` wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSysctl {
    pub path: PathBuf,
    pub previous: String,
    pub value: String,
}

/// The XDP decapsulation program as attached by `tun up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunState {
    pub dev: String,
    /// "driver" (native) or "skb" (generic).
    pub xdp_mode: String,
    pub link_pin: PathBuf,
    pub stats_pin: PathBuf,
    pub locals: Vec<IpAddr>,
    pub gue_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub mode: Mode,
    /// Every VIP asked for.
    pub vips: Vec<IpAddr>,
    /// The VIPs `up` added to `lo` (the others were there already and stay).
    pub vips_added: Vec<IpAddr>,
    /// In the order written; `down` restores them in reverse.
    pub sysctls: Vec<SavedSysctl>,
    pub tun: Option<TunState>,
}

impl State {
    /// The state file, or None when it does not exist.
    pub fn load(path: &Path) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an rvs-realserver state file", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the file by rename, so it is never seen half written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding the state")?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, text + "\n")
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
    }

    pub fn remove(path: &Path) -> Result<()> {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_saved_state_loads_back_equal_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path).unwrap(), None);
        let state = State {
            mode: Mode::Tun,
            vips: vec!["10.9.9.9".parse().unwrap(), "2001:db8::9".parse().unwrap()],
            vips_added: vec!["10.9.9.9".parse().unwrap()],
            sysctls: vec![SavedSysctl {
                path: "/proc/sys/net/ipv4/conf/all/arp_ignore".into(),
                previous: "0".into(),
                value: "1".into(),
            }],
            tun: Some(TunState {
                dev: "eth0".into(),
                xdp_mode: "driver".into(),
                link_pin: "/sys/fs/bpf/rvs/decap_link_eth0".into(),
                stats_pin: "/sys/fs/bpf/rvs/decap_stats_eth0".into(),
                locals: vec!["192.0.2.10".parse().unwrap()],
                gue_ports: vec![6080],
            }),
        };
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(state));
        std::fs::write(&path, "{}").unwrap();
        assert!(State::load(&path).is_err());
    }
}
