//! The one `bpf(2)` command aya 0.14 does not offer: `BPF_MAP_UPDATE_BATCH`,
//! which writes many elements of a map in one system call (the kernel's
//! `generic_map_update_batch` in `kernel/bpf/syscall.c` updates them one by
//! one, in order, and stops at the first failure).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::SysError;

/// `enum bpf_cmd` in `include/uapi/linux/bpf.h`.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr` (the kernel zero-fills the rest).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `count` elements to the map behind `map`: `keys` and `values` hold
/// them back to back, `key_size` and `value_size` bytes each, which must be
/// the map's own sizes (per-CPU maps are not supported here). Returns how
/// many were written, or how many were written before the first failure
/// with that failure.
pub fn map_update_batch(
    map: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    key_size: usize,
    value_size: usize,
) -> Result<u32, (u32, SysError)> {
    let n = keys.len().checked_div(key_size).unwrap_or(0);
    let what = || format!("BPF_MAP_UPDATE_BATCH of {n} elements");
    if n == 0 {
        return Ok(0);
    }
    if keys.len() != n * key_size || values.len() != n * value_size {
        return Err((
            0,
            SysError::invalid(
                what(),
                "keys and values are not the same number of whole elements",
            ),
        ));
    }
    let count =
        u32::try_from(n).map_err(|_| (0, SysError::invalid(what(), "too many elements")))?;
    let map_fd = u32::try_from(map.as_raw_fd())
        .map_err(|_| (0, SysError::invalid(what(), "negative fd")))?;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd,
        elem_flags: 0,
        flags: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `attr` is a live, initialised bpf_attr prefix of the size given;
    // the kernel reads `count` keys and values of the map's sizes, which the
    // slices hold exactly when the caller's sizes are the map's (documented),
    // and writes back only `attr.count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err((attr.count, SysError::io(what(), io::Error::last_os_error())));
    }
    Ok(attr.count)
}
