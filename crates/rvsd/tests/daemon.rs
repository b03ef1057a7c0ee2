//! rvsd and rvsadm behaviour beyond ipvsadm's bytes: restores are all or nothing,
//! a missing daemon is one clear line, SIGHUP reloads by difference and SIGTERM
//! stops cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

fn restore(d: &Daemon, program: &str, input: &str) -> std::process::Output {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(program);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rvsadm"), &link).unwrap();
    let mut child = Command::new(&link)
        .args(if program == "ipvsadm" {
            &["-R"][..]
        } else {
            &[][..]
        })
        .env("RVS_SOCKET", &d.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every restore input of the golden scenario `restore-error` (where the real
/// ipvsadm applies the lines before the bad one): rvs applies none of them.
#[test]
fn a_restore_with_a_bad_line_changes_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let o = d.rvsadm(&["-A", "-t", "10.9.9.9:80", "-s", "rr"]);
    assert!(o.status.success());
    let before = d.sn();
    let cmds = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/restore-error.cmds"),
    )
    .unwrap();
    let mut cases = 0;
    for line in cmds.lines().filter(|l| l.starts_with("printf '%s\\n' ")) {
        let (printf, program) = line.rsplit_once(" | ").unwrap();
        // printf '%s\n' 'a' 'b' ... : the quoted words are the input lines
        let words: Vec<&str> = printf
            .trim_start_matches("printf '%s\\n' ")
            .split("' '")
            .map(|w| w.trim_matches('\''))
            .collect();
        let input = words.join("\n") + "\n";
        let program = program.split_whitespace().next().unwrap();
        let out = restore(&d, program, &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: succeeded");
        assert!(
            stderr.contains("nothing was restored") && stderr.contains("line "),
            "{line}: {stderr}"
        );
        assert_eq!(d.sn(), before, "{line}: the table changed");
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} restore cases found");

    // the failing line is named with ipvsadm's own message for it
    let out = restore(&d, "ipvsadm", "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n");
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Service already exists\n"), "{stderr}");
    assert!(
        stderr.ends_with(
            "ipvsadm: restore: line 2 (-A -t 10.0.0.1:80) failed; nothing was restored\n"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    // and a good restore applies every line at once
    let out = restore(
        &d,
        "ipvsadm",
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w 2\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        d.sn(),
        format!("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w 2\n{before}")
    );
}

#[test]
fn without_a_daemon_rvsadm_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-home.sock");
    for args in [&["-Ln"][..], &["-A", "-t", "10.0.0.1:80"][..], &[][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
            .args(args)
            .env("RVS_SOCKET", &socket)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(socket.to_str().unwrap()), "{stderr}");
        assert!(stderr.contains("is rvsd running?"), "{stderr}");
    }
}

fn signal(d: &Daemon, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &d.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sighup_reloads_the_state_file_by_difference_and_keeps_the_table_on_a_bad_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    for args in [
        &["-A", "-t", "10.0.0.1:80", "-s", "rr"][..],
        &["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1:80", "-m"][..],
        &["-A", "-t", "10.0.0.2:80"][..],
    ] {
        assert!(d.rvsadm(args).status.success());
    }
    // an operator edits the saved table by hand: weight 1 -> 9, one service gone
    let text = std::fs::read_to_string(&d.state).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["services"][0]["servers"][0]["weight"] = 9.into();
    state["services"].as_array_mut().unwrap().remove(1);
    std::fs::write(&d.state, serde_json::to_vec(&state).unwrap()).unwrap();
    signal(&d, "-HUP");
    let want = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w 9\n";
    wait_for(|| d.sn() == want, "the reload");

    // a file that does not parse is refused; the running table stays
    std::fs::write(&d.state, b"{ broken").unwrap();
    signal(&d, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.sn(), want);
    assert!(
        d.rvsadm(&["-Ln"]).status.success(),
        "rvsd died on a bad reload"
    );

    // nor does a missing file clear the table
    std::fs::remove_file(&d.state).unwrap();
    signal(&d, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.sn(), want);
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_restores_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    assert!(d
        .rvsadm(&["-A", "-u", "10.0.0.1:53", "-s", "sh", "-b", "sh-port"])
        .status
        .success());
    let table = d.sn();
    signal(&d, "-TERM");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!d.socket.exists(), "socket left behind");
    let again = Daemon::start(dir.path(), &[]);
    assert_eq!(again.sn(), table);
}
