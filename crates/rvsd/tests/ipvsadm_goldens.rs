//! Replays every `tests/golden/NAME.cmds` scenario against rvsd + rvsadm with the
//! same `driver.sh` that recorded `NAME.golden` from the real ipvsadm 1.31 and
//! kernel IPVS (see tests/golden/README.md), and compares byte for byte: stdout,
//! stderr and exit code of every command.
//!
//! rvsadm is reached through links named `ipvsadm`, `ipvsadm-save` and
//! `ipvsadm-restore` on PATH, as an operator's scripts would reach it.
//! `restore-error` is left out on purpose: real `ipvsadm -R` stops half-way, rvs
//! applies all or nothing (tests/restore.rs checks rvs's behaviour).
//! GOLDEN=NAME limits the run to one scenario.
//!
//! The scenarios in [`SYNC_DAEMON_SCENARIOS`] start real sync daemons (on `lo`,
//! no root needed) and run in their own test, so that the rest of the corpus is
//! judged on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Daemon;

const DELIBERATE_DIFFERENCES: &[&str] = &["restore-error"];

/// Scenarios that start and stop sync daemons (`--start-daemon`, see
/// tests/golden/README.md, "Sync daemons").
const SYNC_DAEMON_SCENARIOS: &[&str] = &["daemon-sync", "daemon-sync-ipv6"];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        if w.get(i) != g.get(i) {
            let from = i.saturating_sub(6);
            let ctx: Vec<String> = w[from..i.min(w.len())]
                .iter()
                .map(|l| format!("   {l:?}"))
                .collect();
            return format!(
                "line {}:\n{}\n - {:?}\n + {:?}",
                i + 1,
                ctx.join("\n"),
                w.get(i),
                g.get(i)
            );
        }
    }
    "no line differs (trailing newline?)".into()
}

/// Replays the scenarios `wanted` accepts, each against a fresh rvsd; returns
/// how many commands were compared and the differences.
fn replay(wanted: impl Fn(&str) -> bool) -> (usize, Vec<String>) {
    let only = std::env::var("GOLDEN").ok().filter(|s| !s.is_empty());
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cmds"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut compared = 0;
    for cmds in &cases {
        let name = cmds.file_stem().unwrap().to_string_lossy().into_owned();
        if !wanted(&name) || only.as_ref().is_some_and(|o| o != &name) {
            continue;
        }
        let want = std::fs::read_to_string(cmds.with_extension("golden"))
            .unwrap_or_else(|e| panic!("{name}.golden: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for link in ["ipvsadm", "ipvsadm-save", "ipvsadm-restore"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rvsadm"), bin.join(link)).unwrap();
        }
        let daemon = Daemon::start(&dir.path().join("d"), &[]);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg(golden_dir().join("driver.sh"))
            .arg(cmds)
            .env("PATH", path)
            .env("RVS_SOCKET", &daemon.socket)
            .env("TMPDIR", dir.path())
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        compared += want.lines().filter(|l| l.starts_with("$ ")).count();
        if got != want {
            failures.push(format!("{name}: {}", first_difference(&want, &got)));
        }
    }
    (compared, failures)
}

/// Fails unless some command was replayed and every scenario matched; `kind`
/// ("sync daemon", or `None` for the plain goldens) names the scenarios in the messages.
fn assert_all_matched(compared: usize, failures: &[String], kind: Option<&str>) {
    let prefix = kind.map(|k| format!("{k} ")).unwrap_or_default();
    assert!(compared > 0, "no {} scenario ran", kind.unwrap_or("golden"));
    assert!(
        failures.is_empty(),
        "{} of the {prefix}scenarios differ from the real ipvsadm:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{compared} {prefix}commands matched the real ipvsadm byte for byte");
}

#[test]
fn rvsadm_matches_the_real_ipvsadm_byte_for_byte() {
    let (compared, failures) = replay(|name| {
        !DELIBERATE_DIFFERENCES.contains(&name) && !SYNC_DAEMON_SCENARIOS.contains(&name)
    });
    if std::env::var("GOLDEN").is_ok_and(|g| SYNC_DAEMON_SCENARIOS.contains(&g.as_str())) {
        return; // that scenario is the other test's
    }
    assert_all_matched(compared, &failures, None);
}

/// `--start-daemon`, `--stop-daemon` and `-L --daemon` with daemons that really
/// run: starting twice, stopping what does not run, a missing interface, both
/// roles at once, every setting given explicitly, an IPv6 group.
#[test]
fn sync_daemons_match_the_real_ipvsadm_byte_for_byte() {
    let (compared, failures) = replay(|name| SYNC_DAEMON_SCENARIOS.contains(&name));
    if std::env::var("GOLDEN")
        .is_ok_and(|g| !g.is_empty() && !SYNC_DAEMON_SCENARIOS.contains(&g.as_str()))
    {
        return; // that scenario is the other test's
    }
    assert_all_matched(compared, &failures, Some("sync daemon"));
}
