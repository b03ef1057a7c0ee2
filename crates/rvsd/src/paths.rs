//! Default locations of the admin socket and the state file, shared by rvsd and
//! rvsadm so that both find each other without options.
//!
//! root: `/run/rvs/rvsd.sock` and `/var/lib/rvs/state.json` (what the systemd unit
//! sets up). Anyone else: `$XDG_RUNTIME_DIR/rvs/rvsd.sock` (or `/tmp/rvs-UID/`) and
//! `$XDG_STATE_HOME/rvs/state.json` (or `~/.local/state/rvs/`). `RVS_SOCKET` and
//! `RVS_STATE_FILE` override them.

use std::path::PathBuf;

/// The effective uid, from /proc (no libc call needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn default_socket() -> PathBuf {
    match effective_uid() {
        Some(0) => PathBuf::from("/run/rvs/rvsd.sock"),
        uid => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("rvs/rvsd.sock"),
            _ => PathBuf::from(format!("/tmp/rvs-{}/rvsd.sock", uid.unwrap_or(0))),
        },
    }
}

pub fn default_state_file() -> PathBuf {
    let uid = effective_uid();
    if uid == Some(0) {
        return PathBuf::from("/var/lib/rvs/state.json");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rvs/state.json");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/rvs/state.json"),
        None => PathBuf::from(format!(
            "/tmp/rvs-{}/state.json",
            effective_uid().unwrap_or(0)
        )),
    }
}

/// The socket rvsadm and rvsd use: `RVS_SOCKET`, else the default.
pub fn socket_from_env() -> PathBuf {
    std::env::var_os("RVS_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_socket)
}
