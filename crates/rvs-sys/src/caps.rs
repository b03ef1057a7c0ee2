//! Which of the capabilities the packet plane needs the process lacks, read
//! from the `CapEff:` line of `/proc/self/status` (a hexadecimal bit mask;
//! bit numbers from `linux/capability.h`, see proc_pid_status(5)).
//!
//! Invariant: when the mask cannot be read or parsed, every needed capability
//! is reported missing (the caller then refuses or explains, never assumes).

/// The capabilities loading and attaching XDP programs involves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Attach programs, configure interfaces and routes.
    NetAdmin,
    /// Raw and packet sockets.
    NetRaw,
    /// Everything BPF needs on kernels before 5.8 (no CAP_BPF).
    SysAdmin,
    /// Create maps and load programs (Linux 5.8+).
    Bpf,
    /// Tracing-type programs and pointer-leaking BPF features (Linux 5.8+).
    Perfmon,
}

impl Capability {
    /// The bit number in the capability sets.
    pub fn number(self) -> u32 {
        match self {
            Capability::NetAdmin => 12,
            Capability::NetRaw => 13,
            Capability::SysAdmin => 21,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities of `needed` that are not in this process's effective
/// set, in the order given. All of them if the set cannot be read.
pub fn missing_capabilities(needed: &[Capability]) -> Vec<Capability> {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_mask(&status));
    missing_from(effective, needed)
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
fn effective_mask(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

fn missing_from(effective: Option<u64>, needed: &[Capability]) -> Vec<Capability> {
    needed
        .iter()
        .copied()
        .filter(|cap| effective.is_none_or(|mask| mask & (1u64 << cap.number()) == 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Capability; 5] = [
        Capability::NetAdmin,
        Capability::NetRaw,
        Capability::SysAdmin,
        Capability::Bpf,
        Capability::Perfmon,
    ];

    /// A status text around one CapEff line (other Cap* lines differ on purpose).
    fn status(cap_eff: &str) -> String {
        format!(
            "Name:\trvsd\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
             CapEff:\t{cap_eff}\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n"
        )
    }

    #[test]
    fn full_root_set_misses_nothing() {
        let mask = effective_mask(&status("000001ffffffffff"));
        assert_eq!(mask, Some(0x1ff_ffff_ffff));
        assert_eq!(missing_from(mask, &ALL), Vec::new());
    }

    #[test]
    fn empty_set_misses_everything_in_order() {
        let mask = effective_mask(&status("0000000000000000"));
        assert_eq!(mask, Some(0));
        assert_eq!(
            missing_from(mask, &[Capability::Bpf, Capability::NetAdmin]),
            vec![Capability::Bpf, Capability::NetAdmin]
        );
    }

    #[test]
    fn single_bits_map_to_their_capabilities() {
        // CAP_NET_ADMIN (12) and CAP_BPF (39): 0x1000 | 0x80_0000_0000.
        let mask = effective_mask(&status("0000008000001000"));
        assert_eq!(
            missing_from(mask, &ALL),
            vec![
                Capability::NetRaw,
                Capability::SysAdmin,
                Capability::Perfmon
            ]
        );
        // CAP_NET_RAW (13), CAP_SYS_ADMIN (21), CAP_PERFMON (38).
        let mask = effective_mask(&status("0000004000202000"));
        assert_eq!(
            missing_from(mask, &ALL),
            vec![Capability::NetAdmin, Capability::Bpf]
        );
    }

    #[test]
    fn unreadable_mask_reports_all_missing() {
        assert_eq!(
            effective_mask("Name:\trvsd\nCapPrm:\t0000000000003000\n"),
            None
        );
        assert_eq!(effective_mask(&status("zz")), None);
        assert_eq!(missing_from(None, &ALL), ALL.to_vec());
    }

    #[test]
    fn names_are_the_kernel_names() {
        let names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "CAP_NET_ADMIN",
                "CAP_NET_RAW",
                "CAP_SYS_ADMIN",
                "CAP_BPF",
                "CAP_PERFMON"
            ]
        );
    }

    #[test]
    fn this_process_mask_is_readable() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(effective_mask(&status).is_some(), "{status}");
    }
}
