//! FILE_CHECK (keepalived/check/check_file.c, keepalived/trackers/track_file.c
//! `process_track_file`, `update_track_file_status`,
//! `process_update_checker_track_file_status`).
//!
//! The file's first 127 bytes are read as a C `strtol(…, 0)` reads them (leading
//! white space, a sign, `0x` hex, `0` octal, decimal; trailing text ignored; no
//! number at all is 0). A missing, unreadable or empty file counts as 0. A value
//! that overflows or lies outside −2³¹..=2³¹ is ignored by keepalived, which keeps
//! the previous state; a probe has no previous state, so that fails with its reason.
//!
//! With weight 0 the file only says up or down: 0 is up, anything else down (the
//! reverse with `reverse`). Otherwise the value × weight (× −1 with `reverse`),
//! clamped to a 32-bit int, is added to the real server's configured weight while it
//! stays above −2³¹; at −2³¹ (keepalived's IPVS_WEIGHT_FAULT) the server is down.
//!
//! [`crate::Outcome`] has no room for a weight offset (its `weight` is the absolute
//! weight of MISC_CHECK's misc_dynamic), so [`run`](super::run) reports FILE_CHECK
//! as a plain pass or fail and [`read_file_status`] gives the offset.
//! keepalived watches the file with inotify; here it is read when the probe runs.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use super::FileProbe;
use crate::Outcome;

/// keepalived reads at most this much of the file (a 128-byte buffer with its NUL).
const READ_LIMIT: u64 = 127;

/// What a tracked file says about a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// The checker is down (keepalived's IPVS_WEIGHT_FAULT).
    Down,
    /// The checker is up and `weight_offset` is added to the real server's configured
    /// weight.
    Up { weight_offset: i32 },
}

pub(super) async fn check(probe: &FileProbe) -> Outcome {
    match read_file_status(probe) {
        Ok(FileStatus::Up { .. }) => Outcome::Pass { weight: None },
        Ok(FileStatus::Down) => Outcome::Fail {
            reason: format!("tracked file {} is in FAULT state", probe.path.display()),
        },
        Err(reason) => Outcome::Fail { reason },
    }
}

/// Reads the tracked file and applies the probe's weight, as keepalived does when the
/// file changes. Errors name an invalid number (see the module note).
pub fn read_file_status(probe: &FileProbe) -> Result<FileStatus, String> {
    let value = read_value(probe)?;
    if probe.weight == 0 {
        let down = if probe.reverse {
            value == 0
        } else {
            value != 0
        };
        return Ok(if down {
            FileStatus::Down
        } else {
            FileStatus::Up { weight_offset: 0 }
        });
    }
    let sign = if probe.reverse { -1 } else { 1 };
    let product = value
        .saturating_mul(i64::from(probe.weight))
        .saturating_mul(sign);
    let status =
        i32::try_from(product.clamp(i64::from(i32::MIN), i64::from(i32::MAX))).unwrap_or(i32::MIN);
    Ok(if status == i32::MIN {
        FileStatus::Down
    } else {
        FileStatus::Up {
            weight_offset: status,
        }
    })
}

fn read_value(probe: &FileProbe) -> Result<i64, String> {
    // Non-blocking, as keepalived opens it, so that a FIFO cannot hold the probe.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&probe.path);
    let mut text = Vec::new();
    if let Ok(file) = file {
        if file.take(READ_LIMIT).read_to_end(&mut text).is_err() {
            text.clear();
        }
    }
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    match strtol(text) {
        Some(value) if (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1).contains(&value) => {
            Ok(value)
        }
        _ => Err(format!(
            "invalid number {:?} read from {}",
            String::from_utf8_lossy(text).trim(),
            probe.path.display()
        )),
    }
}

/// C `strtol(text, NULL, 0)` on a 64-bit host; None where it would set ERANGE.
fn strtol(text: &[u8]) -> Option<i64> {
    let mut rest = text;
    while let [b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, tail @ ..] = rest {
        rest = tail;
    }
    let negative = rest.first() == Some(&b'-');
    if let [b'+' | b'-', tail @ ..] = rest {
        rest = tail;
    }
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => {
            (16, rest.get(2..).unwrap_or_default())
        }
        [b'0', ..] => (8, rest),
        _ => (10, rest),
    };
    let mut magnitude: u64 = 0;
    for digit in digits.iter().map_while(|&b| char::from(b).to_digit(radix)) {
        magnitude = magnitude
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::strtol;

    #[test]
    fn strtol_reads_like_c() {
        assert_eq!(strtol(b"  42\n"), Some(42));
        assert_eq!(strtol(b"-7 trailing"), Some(-7));
        assert_eq!(strtol(b"0x1F"), Some(31));
        assert_eq!(strtol(b"010"), Some(8));
        assert_eq!(strtol(b"09"), Some(0));
        assert_eq!(strtol(b"abc"), Some(0));
        assert_eq!(strtol(b""), Some(0));
        assert_eq!(strtol(b"99999999999999999999"), None);
        assert_eq!(strtol(b"-9223372036854775808"), Some(i64::MIN));
    }
}
