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

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Daemon;

const DELIBERATE_DIFFERENCES: &[&str] = &["restore-error"];

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

#[test]
fn rvsadm_matches_the_real_ipvsadm_byte_for_byte() {
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
        if DELIBERATE_DIFFERENCES.contains(&name.as_str()) {
            continue;
        }
        if only.as_ref().is_some_and(|o| o != &name) {
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
    assert!(compared > 0, "no golden scenario ran");
    assert!(
        failures.is_empty(),
        "{} of the scenarios differ from the real ipvsadm:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{compared} commands matched the real ipvsadm byte for byte");
}
