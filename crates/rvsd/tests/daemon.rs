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
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(program);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rvsadm"), &link).unwrap();
    let args: &[&str] = if program == "ipvsadm" { &["-R"] } else { &[] };
    run_with_input(d, &link, args, input)
}

/// Runs `program` (rvsadm under some name) against `d` with `args`, feeding
/// `input` on stdin.
fn run_with_input(d: &Daemon, program: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
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

/// Runs rvsadm against `d` with `args`, feeding `input` on stdin.
fn rvsadm_with_input(d: &Daemon, args: &[&str], input: &str) -> std::process::Output {
    run_with_input(d, Path::new(env!("CARGO_BIN_EXE_rvsadm")), args, input)
}

/// `rvsadm --marks import`: an iptables-save dump becomes rvsadm lines (or a
/// keepalived block); `--apply` applies a complete translation at once, and
/// applies nothing when a line could not be translated, naming that line.
#[test]
fn marks_import_from_iptables_save() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let dump = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 192.168.1.10/32 -p tcp -m multiport --dports 80,443 -j MARK --set-xmark 0x1a0a/0xffffffff
-A PREROUTING -d 192.168.1.11/32 -p udp -m udp --dport 5000:5010 -j MARK --set-xmark 0x7/0xffffffff
COMMIT
";
    let o = rvsadm_with_input(&d, &["--marks", "import"], dump);
    assert!(o.status.success(), "{o:?}");
    let printed = String::from_utf8(o.stdout).unwrap();
    let commands: Vec<&str> = printed.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        commands,
        [
            "rvsadm --marks add 6666 tcp 192.168.1.10/32 80,443",
            "rvsadm --marks add 7 udp 192.168.1.11/32 5000-5010"
        ]
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("table filter (1 rules)"));
    // Printing changed nothing; the printed lines are valid rvsadm input.
    assert_eq!(d.rvsadm(&["--marks"]).stdout, b"");
    let block = rvsadm_with_input(&d, &["--marks", "import", "--keepalived", "-"], dump);
    assert!(String::from_utf8_lossy(&block.stdout).contains("fwmark_classifier {\n    # line 8:"));

    let o = rvsadm_with_input(&d, &["--marks", "import", "--apply"], dump);
    assert!(o.status.success(), "{o:?}");
    let listed = d.rvsadm(&["--marks"]).stdout;
    assert_eq!(
        String::from_utf8(listed.clone()).unwrap(),
        "6666 tcp 192.168.1.10/32 80,443\n7 udp 192.168.1.11/32 5000-5010\n"
    );

    // One line it cannot translate (a source match): nothing is applied.
    let partial = dump.to_string()
        + "*mangle\n-A PREROUTING -s 10.0.0.0/8 -d 192.168.1.12/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x8/0xffffffff\n-A PREROUTING -d 192.168.1.13/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x9/0xffffffff\nCOMMIT\n";
    let o = rvsadm_with_input(&d, &["--marks", "import", "--apply"], &partial);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 12: not translated"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(d.rvsadm(&["--marks"]).stdout, listed);
    // Applying the same rules again is refused by the daemon, naming the rule.
    let o = rvsadm_with_input(&d, &["--marks", "import", "--apply"], dump);
    assert_eq!(o.status.code(), Some(255), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(d.rvsadm(&["--marks"]).stdout, listed);
}
