//! Entering a named network namespace (`/run/netns/NAME`, as `ip netns add`
//! creates it). Affects the calling thread only: sockets it opens afterwards
//! live in that namespace.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

use crate::SysError;

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Moves the CALLING THREAD into the named network namespace
/// (`/run/netns/NAME`) with `setns(CLONE_NEWNET)`.
pub fn enter(name: &str) -> Result<(), SysError> {
    let what = format!("entering network namespace {name:?}");
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(SysError::invalid(what, "not a namespace name"));
    }
    let file = File::open(format!("{NETNS_DIR}/{name}")).map_err(|e| SysError::io(&what, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| SysError::io(&what, e))
}
