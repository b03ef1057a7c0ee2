//! The capabilities this process has (`CapEff` in `/proc/self/status`), checked
//! before acting so that a missing one is reported by name instead of as an
//! EPERM from the middle of a half-done setup.

use anyhow::{bail, Context, Result};

/// Capability bit numbers (`linux/capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    NetAdmin = 12,
    SysAdmin = 21,
    Bpf = 39,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The effective capability set of this process.
#[derive(Debug, Clone, Copy)]
pub struct Caps(u64);

impl Caps {
    pub fn current() -> Result<Caps> {
        let status = std::fs::read_to_string("/proc/self/status")
            .context("reading /proc/self/status for the effective capabilities")?;
        Caps::parse(&status)
    }

    /// Parses the `CapEff:` line of a `/proc/PID/status` text.
    pub fn parse(status: &str) -> Result<Caps> {
        let Some(line) = status.lines().find_map(|l| l.strip_prefix("CapEff:")) else {
            bail!("/proc/self/status has no CapEff line");
        };
        let bits = u64::from_str_radix(line.trim(), 16)
            .with_context(|| format!("CapEff {:?} is not a hex mask", line.trim()))?;
        Ok(Caps(bits))
    }

    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1u64 << (cap as u32)) != 0
    }

    /// Fails with "needs CAP_X to WHY" when `cap` is missing.
    pub fn require(self, cap: Cap, why: &str) -> Result<()> {
        if self.has(cap) {
            Ok(())
        } else {
            bail!("needs {} to {why} (run as root)", cap.name())
        }
    }

    /// Loading a BPF program takes CAP_BPF, or CAP_SYS_ADMIN on its own.
    pub fn require_bpf(self) -> Result<()> {
        if self.has(Cap::Bpf) || self.has(Cap::SysAdmin) {
            Ok(())
        } else {
            bail!("needs CAP_BPF (or CAP_SYS_ADMIN) to load the XDP decapsulation program (run as root)")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cap_eff_bits_are_read_by_number() {
        // NET_ADMIN (12) and BPF (39) only.
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000008000001000\n";
        let caps = Caps::parse(status).unwrap();
        assert!(caps.has(Cap::NetAdmin));
        assert!(caps.has(Cap::Bpf));
        assert!(!caps.has(Cap::SysAdmin));
        assert!(caps.require_bpf().is_ok());
        let err = Caps::parse("CapEff:\t0000000000000000\n")
            .unwrap()
            .require(Cap::NetAdmin, "add addresses")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "needs CAP_NET_ADMIN to add addresses (run as root)"
        );
        assert!(Caps::parse("CapEff:\t0000000000200000\n")
            .unwrap()
            .require_bpf()
            .is_ok());
        assert!(Caps::parse("CapEff:\tzz\n").is_err());
        assert!(Caps::parse("Name:\tx\n").is_err());
    }
}
