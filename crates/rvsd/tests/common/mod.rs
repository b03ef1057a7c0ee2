//! Test helpers: start rvsd on a private socket and state file, run rvsadm against it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod netns;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl Daemon {
    /// Starts rvsd with `extra` arguments and waits until its socket answers.
    /// Without a `--data-plane` in `extra` it keeps the table only (the table
    /// tests use addresses and port-0 services no socket plane should bind).
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let state = dir.join("state.json");
        let plane: &[&str] = if extra.iter().any(|a| a.starts_with("--data-plane")) {
            &[]
        } else {
            &["--data-plane", "none"]
        };
        let mut args: Vec<&std::ffi::OsStr> = vec!["--state-file".as_ref(), state.as_ref()];
        args.extend(plane.iter().chain(extra).map(std::ffi::OsStr::new));
        Daemon::spawn(dir, &args, state.clone())
    }

    /// Starts rvsd from a keepalived.conf (`-f conf`, no state file) with the
    /// socket plane and `extra` arguments.
    pub fn start_keepalived(dir: &Path, conf: &Path, extra: &[&str]) -> Daemon {
        let mut args: Vec<&std::ffi::OsStr> = vec!["-f".as_ref(), conf.as_ref()];
        args.extend(
            ["--data-plane", "socket", "--plane-threads", "2"]
                .iter()
                .chain(extra)
                .map(std::ffi::OsStr::new),
        );
        Daemon::spawn(dir, &args, dir.join("no-state"))
    }

    /// Runs rvsd on `dir`'s socket with `args` and waits until it answers.
    fn spawn(dir: &Path, args: &[&std::ffi::OsStr], state: PathBuf) -> Daemon {
        let socket = dir.join("rvsd.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_rvsd"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("RVS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rvsd");
        let d = Daemon {
            child,
            socket,
            state,
        };
        d.wait_ready();
        d
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("rvsd did not come up on {}", self.socket.display());
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs rvsadm with `args` against this daemon.
    pub fn rvsadm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rvsadm"))
            .args(args)
            .env("RVS_SOCKET", &self.socket)
            .output()
            .expect("run rvsadm")
    }

    pub fn sn(&self) -> String {
        let o = self.rvsadm(&["-Sn"]);
        assert!(o.status.success(), "rvsadm -Sn: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request over TCP; returns (status, body).
pub fn http_tcp(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
