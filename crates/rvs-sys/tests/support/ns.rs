//! Test support shared by the root-only namespace tests of rvs-sys, rvs-xdp and
//! rvs-realserver (included with `#[path]`, so it is compiled into each test
//! crate): the root check, `ip` that panics with its stderr, and a named network
//! namespace deleted on drop. Names are unique per process and prefix.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// True when running as root; otherwise prints `SKIP: {test} needs root`.
pub fn is_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("SKIP: {test} needs root");
        false
    }
}

/// Runs `program ARGS`, panicking with its stderr on failure; returns stdout.
pub fn run_checked(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, checked.
pub fn ip(args: &[&str]) -> String {
    run_checked("ip", args)
}

/// A named network namespace, deleted on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// A new namespace named `{prefix}{pid}x{n}`.
    pub fn new(prefix: &str) -> Ns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}x{n}", std::process::id());
        ip(&["netns", "add", &name]);
        Ns { name }
    }

    /// `ip -n NS ARGS`, checked.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec NS PROGRAM ARGS`, unchecked.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {program}: {e}"))
    }

    /// A veth pair `a`-`b`, both up, in a namespace without IPv6 (whose
    /// router solicitations and MLD reports would reach the test's programs).
    pub fn quiet_veth_pair(&self, a: &str, b: &str) {
        for key in ["all", "default"] {
            let set = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            let out = self.exec("sysctl", &["-qw", &set]);
            assert!(out.status.success(), "disable IPv6 in {}", self.name);
        }
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// `ip -j link show dev DEV`: the link's JSON object.
    pub fn link_json(&self, dev: &str) -> serde_json::Value {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let list: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j output: {e}: {out}"));
        list[0].clone()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
