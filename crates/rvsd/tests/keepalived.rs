//! rvsd run from a keepalived.conf (`rvsd -f`): health checks against real
//! servers on loopback that die and come back, quorum and the sorry server,
//! notify scripts, reloads that keep live connections, and `rvsd -t`.
//!
//! Timings are measured and printed (`cargo test -- --nocapture` shows them);
//! the assertions are keepalived's rules (a server leaves only after its retries,
//! returns on the first passing check) with generous slack, not performance goals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Daemon;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What an HTTP real server answers, changeable while it runs.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
}

/// An HTTP/1.0 real server on a fixed loopback port that can die (its port is
/// closed: connections are refused) and come back on the same port.
struct HttpRs {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    alive: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl HttpRs {
    fn start(body: &str) -> HttpRs {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let rs = HttpRs {
            addr,
            reply: Arc::new(Mutex::new(Reply {
                status: 200,
                body: body.to_string(),
            })),
            alive: Arc::new(AtomicBool::new(true)),
            done: Arc::new(AtomicBool::new(false)),
        };
        let (reply, alive, done) = (rs.reply.clone(), rs.alive.clone(), rs.done.clone());
        thread::spawn(move || {
            let mut listener = Some(l);
            while !done.load(Ordering::Relaxed) {
                match (alive.load(Ordering::Relaxed), listener.is_some()) {
                    (false, true) => listener = None,
                    (true, false) => listener = TcpListener::bind(addr).ok(),
                    _ => {}
                }
                let Some(l) = &listener else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((s, _)) => {
                        let reply = reply.lock().unwrap().clone();
                        let _ = thread::Builder::new()
                            .stack_size(64 << 10)
                            .spawn(move || answer(s, &reply));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rs
    }

    fn kill(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    fn restore(&self) {
        self.alive.store(true, Ordering::Relaxed);
    }

    fn set_reply(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = Reply {
            status,
            body: body.to_string(),
        };
    }

    fn rs(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for HttpRs {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn answer(mut s: TcpStream, reply: &Reply) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = Vec::new();
    let mut b = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&b[..n]),
        }
    }
    let _ = write!(
        s,
        "HTTP/1.0 {} X\r\nContent-Length: {}\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = s.shutdown(Shutdown::Write);
}

/// One HTTP request through `vip`: the body the real server sent, or the error
/// a client sees (a reset when the chosen server is dead).
fn who(vip: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&vip, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    raw.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {raw:?}")))
}

/// `rvsd -t -f conf`: checks a file as `keepalived -t` does.
fn config_test(conf: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("-t")
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap()
}

fn write_conf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn free_vip() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], common::free_port()))
}

/// The real servers of `vip` in `rvsadm -Ln`, address -> weight.
fn servers(d: &Daemon, vip: SocketAddr) -> BTreeMap<String, u32> {
    let o = d.rvsadm(&["-Ln", "-t", &vip.to_string()]);
    let mut out = BTreeMap::new();
    if !o.status.success() {
        return out;
    }
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some("->") {
            if let (Some(addr), Some(_fwd), Some(w)) = (f.next(), f.next(), f.next()) {
                if let Ok(w) = w.parse() {
                    out.insert(addr.to_string(), w);
                }
            }
        }
    }
    out
}

/// Polls `f` every 20 ms for up to `secs`; the time it first held.
fn wait_for(secs: f64, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        if f() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn wait_served(vip: SocketAddr) {
    assert!(
        wait_for(10.0, || who(vip).is_ok()).is_some(),
        "{vip} never answered"
    );
}

/// keepalived's failure rule with TCP_CHECK: a dead server leaves only after
/// its `retry` retries `delay_before_retry` apart (so not before
/// retry x delay_before_retry), within delay_loop + that; it returns at the first
/// passing check (within delay_loop). Meanwhile new connections stop reaching it.
#[test]
fn dead_server_leaves_after_its_retries_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (HttpRs::start("a"), HttpRs::start("b"), HttpRs::start("c"));
    let vip = free_vip();
    let rs = |r: &HttpRs| {
        format!(
            "  real_server {} {} {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 2\n      delay_before_retry 1\n    }}\n  }}\n",
            r.addr.ip(),
            r.addr.port()
        )
    };
    let conf = write_conf(
        dir.path(),
        "keepalived.conf",
        &format!(
            "virtual_server {} {} {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{}{}{}}}\n",
            vip.ip(),
            vip.port(),
            rs(&a),
            rs(&b),
            rs(&c)
        ),
    );
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert_eq!(servers(&d, vip).len(), 3, "{:?}", servers(&d, vip));
    wait_served(vip);
    // keepalived starts every checker with its retries used up (check_data.c), so
    // only a checker that has passed once retries: let the first probes run
    // (1 s bootstrap delay + a warmup draw up to delay_loop).
    thread::sleep(Duration::from_millis(2500));

    b.kill();
    let killed = Instant::now();
    let mut last_failure = None;
    let mut left = None;
    while killed.elapsed() < Duration::from_secs(8) {
        if who(vip).is_err() {
            last_failure = Some(killed.elapsed());
        }
        if left.is_none() && !servers(&d, vip).contains_key(&b.rs()) {
            left = Some(killed.elapsed());
        }
        if left.is_some_and(|t| killed.elapsed() > t + Duration::from_millis(500)) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let left = left.expect("the dead server never left the table");
    eprintln!(
        "TCP_CHECK delay_loop 1 retry 2 delay_before_retry 1: left the table {:.2} s after the kill, last failed client connection {:.2} s after",
        left.as_secs_f64(),
        last_failure.map_or(0.0, |t| t.as_secs_f64())
    );
    // Two retries one second apart come after the first failed check.
    assert!(
        left >= Duration::from_millis(1900),
        "left after {left:?}, before its retries were used"
    );
    assert!(left <= Duration::from_millis(4500), "left after {left:?}");
    for _ in 0..30 {
        let body = who(vip).expect("no failure once the dead server is out");
        assert_ne!(body, "b");
    }
    // GET /v1/health: b is down, its last probe failed and says why.
    let hb = health_of(&d, b.addr);
    assert!(!hb.up, "{hb:?}");
    let last = hb.last_check.expect("b was probed");
    assert_eq!(last.checker, "TCP_CHECK");
    assert!(!last.ok && last.reason.is_some(), "{last:?}");

    b.restore();
    let restored = Instant::now();
    let back = wait_for(6.0, || servers(&d, vip).contains_key(&b.rs()))
        .expect("the server never came back");
    let reached = wait_for(6.0, || (0..3).any(|_| who(vip).is_ok_and(|w| w == "b")))
        .map(|_| restored.elapsed())
        .expect("no connection reached the restored server");
    eprintln!(
        "restored: back in the table {:.2} s after, first connection {:.2} s after",
        back.as_secs_f64(),
        reached.as_secs_f64()
    );
    assert!(
        back <= Duration::from_millis(2500),
        "came back after {back:?}"
    );
    let hb = health_of(&d, b.addr);
    assert!(
        hb.up && hb.last_check.as_ref().is_some_and(|l| l.ok),
        "{hb:?}"
    );
    // The transitions are events, in order.
    let c = rvsd::client::Client::new(d.socket.clone());
    let events: Vec<rvs_api::EventView> = c.get("/v1/events").unwrap().unwrap();
    let of_b: Vec<&str> = events
        .iter()
        .filter(|e| e.message.contains(&b.rs()))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(of_b, ["server_down", "server_up"], "{events:?}");
}

/// The health-checked server at `addr`, from `GET /v1/health`.
fn health_of(d: &Daemon, addr: SocketAddr) -> rvs_api::HealthView {
    let c = rvsd::client::Client::new(d.socket.clone());
    let all: Vec<rvs_api::HealthView> = c.get("/v1/health").unwrap().unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    all.into_iter()
        .find(|h| SocketAddr::new(h.address, h.port) == addr)
        .unwrap()
}

fn http_conf(vip: SocketAddr, rs: &[(&HttpRs, &str)], extra_vs: &str) -> String {
    let mut text = format!(
        "virtual_server {} {} {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{extra_vs}",
        vip.ip(),
        vip.port()
    );
    for (r, checker) in rs {
        text.push_str(&format!(
            "  real_server {} {} {{\n    weight 1\n{checker}  }}\n",
            r.addr.ip(),
            r.addr.port()
        ));
    }
    text.push_str("}\n");
    text
}

fn md5_hex(body: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HTTP_GET: a wrong status code or a wrong body digest takes the server out;
/// the right answer brings it back.
#[test]
fn http_get_status_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (HttpRs::start("alpha"), HttpRs::start("bravo"));
    let vip = free_vip();
    let status_check = "    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n      connect_timeout 1\n      retry 0\n      delay_before_retry 1\n    }\n";
    let digest_check = format!(
        "    HTTP_GET {{\n      url {{\n        path /health\n        digest {}\n      }}\n      connect_timeout 1\n      retry 0\n      delay_before_retry 1\n    }}\n",
        md5_hex("bravo")
    );
    let conf = write_conf(
        dir.path(),
        "k.conf",
        &http_conf(vip, &[(&a, status_check), (&b, &digest_check)], ""),
    );
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert!(wait_for(5.0, || servers(&d, vip).len() == 2).is_some());

    a.set_reply(503, "alpha");
    assert!(
        wait_for(5.0, || !servers(&d, vip).contains_key(&a.rs())).is_some(),
        "a 503 did not take the server out"
    );
    assert!(servers(&d, vip).contains_key(&b.rs()));
    a.set_reply(200, "alpha");
    assert!(
        wait_for(5.0, || servers(&d, vip).contains_key(&a.rs())).is_some(),
        "a 200 did not bring it back"
    );

    b.set_reply(200, "bravo-changed");
    assert!(
        wait_for(5.0, || !servers(&d, vip).contains_key(&b.rs())).is_some(),
        "a wrong digest did not take the server out"
    );
    assert!(servers(&d, vip).contains_key(&a.rs()));
    b.set_reply(200, "bravo");
    assert!(wait_for(5.0, || servers(&d, vip).contains_key(&b.rs())).is_some());
}

/// MISC_CHECK: exit 0 passes, 1 fails; with misc_dynamic an exit code of 2..255
/// passes with weight code − 2; without it any non-zero code fails.
#[test]
fn misc_check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (HttpRs::start("a"), HttpRs::start("b"));
    let vip = free_vip();
    let script = dir.path().join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nexit \"$(cat \"$1\")\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code_a, code_b) = (dir.path().join("code-a"), dir.path().join("code-b"));
    std::fs::write(&code_a, "0").unwrap();
    std::fs::write(&code_b, "0").unwrap();
    let misc = |code: &Path, dynamic: bool| {
        format!(
            "    MISC_CHECK {{\n      misc_path \"{} {}\"\n      misc_timeout 2\n{}    }}\n",
            script.display(),
            code.display(),
            if dynamic { "      misc_dynamic\n" } else { "" }
        )
    };
    let text = http_conf(
        vip,
        &[(&a, &misc(&code_a, true)), (&b, &misc(&code_b, false))],
        "",
    )
    .replace("weight 1", "weight 5");
    let conf = write_conf(dir.path(), "k.conf", &text);
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert!(wait_for(5.0, || servers(&d, vip).len() == 2).is_some());
    assert_eq!(servers(&d, vip)[&a.rs()], 5);

    // Dynamic: 7 -> weight 5 (7 - 2), then 3 -> weight 1, then 1 -> out.
    std::fs::write(&code_a, "7").unwrap();
    assert!(
        wait_for(5.0, || servers(&d, vip).get(&a.rs()) == Some(&5)).is_some(),
        "{:?}",
        servers(&d, vip)
    );
    std::fs::write(&code_a, "3").unwrap();
    assert!(
        wait_for(5.0, || servers(&d, vip).get(&a.rs()) == Some(&1)).is_some(),
        "exit 3 with misc_dynamic should set weight 1: {:?}",
        servers(&d, vip)
    );
    std::fs::write(&code_a, "1").unwrap();
    assert!(wait_for(5.0, || !servers(&d, vip).contains_key(&a.rs())).is_some());

    // Not dynamic: 3 fails.
    std::fs::write(&code_b, "3").unwrap();
    assert!(
        wait_for(5.0, || !servers(&d, vip).contains_key(&b.rs())).is_some(),
        "exit 3 without misc_dynamic should fail"
    );
    std::fs::write(&code_b, "0").unwrap();
    assert!(wait_for(5.0, || servers(&d, vip).get(&b.rs()) == Some(&5)).is_some());
}

/// quorum 2 over two weight-1 servers: one death loses quorum, the sorry server
/// comes in and quorum_down/notify_down run; the recovery brings the servers
/// back, takes the sorry server out and runs quorum_up/notify_up.
#[test]
fn quorum_loss_brings_in_the_sorry_server() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, sorry) = (
        HttpRs::start("a"),
        HttpRs::start("b"),
        HttpRs::start("sorry"),
    );
    let vip = free_vip();
    let mark = |name: &str| dir.path().join(name);
    let check = format!(
        "    notify_up \"/usr/bin/touch {}\"\n    notify_down \"/usr/bin/touch {}\"\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n",
        mark("up").display(),
        mark("down").display()
    );
    let extra = format!(
        "  quorum 2\n  sorry_server {} {}\n  quorum_up \"/usr/bin/touch {}\"\n  quorum_down \"/usr/bin/touch {}\"\n",
        sorry.addr.ip(),
        sorry.addr.port(),
        mark("quorum-up").display(),
        mark("quorum-down").display()
    );
    let conf = write_conf(
        dir.path(),
        "k.conf",
        &http_conf(vip, &[(&a, &check), (&b, &check)], &extra),
    );
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert!(wait_for(5.0, || servers(&d, vip).len() == 2).is_some());
    assert!(!servers(&d, vip).contains_key(&sorry.rs()));
    wait_served(vip);

    a.kill();
    assert!(
        wait_for(6.0, || servers(&d, vip).contains_key(&sorry.rs())).is_some(),
        "quorum lost but no sorry server: {:?}",
        servers(&d, vip)
    );
    assert!(!servers(&d, vip).contains_key(&a.rs()));
    assert!(wait_for(3.0, || mark("down").exists()
        && mark("quorum-down").exists())
    .is_some());
    // While quorum is lost, clients reach only the sorry server.
    assert!(
        wait_for(3.0, || servers(&d, vip).len() == 1).is_some(),
        "{:?}",
        servers(&d, vip)
    );
    for _ in 0..5 {
        assert_eq!(who(vip).unwrap(), "sorry");
    }

    a.restore();
    assert!(
        wait_for(6.0, || {
            let s = servers(&d, vip);
            s.len() == 2 && !s.contains_key(&sorry.rs())
        })
        .is_some(),
        "quorum regained but the table is {:?}",
        servers(&d, vip)
    );
    assert!(wait_for(3.0, || mark("up").exists() && mark("quorum-up").exists()).is_some());
}

/// inhibit_on_failure keeps a dead server in the table at weight 0 (existing
/// connections may finish, new ones go elsewhere).
#[test]
fn inhibit_on_failure_sets_weight_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (HttpRs::start("a"), HttpRs::start("b"));
    let vip = free_vip();
    let check =
        "    inhibit_on_failure\n    TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }\n";
    let conf = write_conf(
        dir.path(),
        "k.conf",
        &http_conf(vip, &[(&a, check), (&b, check)], "").replace("weight 1", "weight 4"),
    );
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert!(wait_for(5.0, || servers(&d, vip).len() == 2).is_some());
    a.kill();
    assert!(
        wait_for(5.0, || servers(&d, vip).get(&a.rs()) == Some(&0)).is_some(),
        "{:?}",
        servers(&d, vip)
    );
    wait_served(vip);
    for _ in 0..10 {
        assert_eq!(who(vip).unwrap(), "b");
    }
    a.restore();
    assert!(wait_for(5.0, || servers(&d, vip).get(&a.rs()) == Some(&4)).is_some());
}

/// An echo real server for long-lived connections: greets with `id\n`, echoes.
fn echo_server(id: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = thread::Builder::new().stack_size(64 << 10).spawn(move || {
                let mut s = s;
                let _ = s.write_all(format!("{id}\n").as_bytes());
                let mut b = [0u8; 256];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn reload_conf(
    vip1: SocketAddr,
    vip2: SocketAddr,
    vip3: Option<SocketAddr>,
    rs: &[SocketAddr; 4],
    weight_a: u32,
    with_d: bool,
) -> String {
    let vs = |vip: SocketAddr, servers: &[(SocketAddr, u32)]| {
        let mut t = format!(
            "virtual_server {} {} {{\n  delay_loop 30\n  lb_algo wlc\n  lb_kind NAT\n  protocol TCP\n",
            vip.ip(),
            vip.port()
        );
        for (a, w) in servers {
            t.push_str(&format!(
                "  real_server {} {} {{\n    weight {w}\n    TCP_CHECK {{\n      connect_timeout 2\n    }}\n  }}\n",
                a.ip(),
                a.port()
            ));
        }
        t.push_str("}\n");
        t
    };
    let mut text = String::from("! reload test\nglobal_defs {\n  router_id rvs_test\n}\n");
    text.push_str(&vs(vip1, &[(rs[0], weight_a), (rs[1], 1)]));
    let mut second = vec![(rs[2], 1)];
    if with_d {
        second.push((rs[3], 1));
    }
    text.push_str(&vs(vip2, &second));
    if let Some(v3) = vip3 {
        text.push_str(&vs(v3, &[(rs[2], 2)]));
    }
    text
}

/// 1,000 connections through the socket plane survive a reload that adds a
/// service, changes a weight and removes an unrelated server; a broken file is
/// refused (by the API and by SIGHUP) and changes nothing.
#[test]
fn reload_keeps_live_connections_and_refuses_broken_files() {
    rvs_proxy::raise_fd_limit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rs = [
        echo_server("a"),
        echo_server("b"),
        echo_server("c"),
        echo_server("d"),
    ];
    let (vip1, vip2, vip3) = (free_vip(), free_vip(), free_vip());
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(&conf, reload_conf(vip1, vip2, None, &rs, 1, true)).unwrap();
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert!(wait_for(10.0, || TcpStream::connect(vip1).is_ok()).is_some());

    let mut conns = Vec::new();
    for _ in 0..1000 {
        let s = TcpStream::connect(vip1).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut greeting = [0u8; 2];
        (&s).read_exact(&mut greeting).unwrap();
        conns.push(s);
    }
    let active = |d: &Daemon| {
        let o = d.rvsadm(&["-Ln", "-t", &vip1.to_string()]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = active(&d);

    std::fs::write(&conf, reload_conf(vip1, vip2, Some(vip3), &rs, 3, false)).unwrap();
    let client = rvsd::client::Client::new(d.socket.clone());
    let report: serde_json::Value = client
        .post("/v1/reload", &serde_json::json!({}))
        .unwrap()
        .unwrap();
    assert_eq!(report["changes"], 4, "{report}"); // edit a, delete d, add vs3 + its server
    assert_eq!(servers(&d, vip1)[&rs[0].to_string()], 3);
    assert!(!servers(&d, vip2).contains_key(&rs[3].to_string()));
    assert_eq!(servers(&d, vip3)[&rs[2].to_string()], 2);
    assert!(wait_for(10.0, || TcpStream::connect(vip3).is_ok()).is_some());

    let ping_all = |conns: &[TcpStream]| {
        for (i, s) in conns.iter().enumerate() {
            let mut s = s;
            s.write_all(b"p")
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(&b, b"p");
        }
    };
    ping_all(&conns);
    // The connections are still counted on their servers (ActiveConn column).
    let after = active(&d);
    let active_sum = |text: &str| -> u32 {
        text.lines()
            .filter(|l| l.trim_start().starts_with("->"))
            .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u32>().ok())
            .sum()
    };
    assert_eq!(active_sum(&before), 1000, "{before}");
    assert_eq!(active_sum(&after), 1000, "{after}");

    // A broken file: refused with file:line, nothing changes.
    let table = d.sn();
    std::fs::write(
        &conf,
        reload_conf(vip1, vip2, None, &rs, 9, true).replace("lb_algo wlc", "lb_algo nosuch"),
    )
    .unwrap();
    let refused = client
        .post::<_, serde_json::Value>("/v1/reload", &serde_json::json!({}))
        .unwrap();
    let err = refused.expect_err("a broken file must be refused");
    assert!(
        err.message.contains("keepalived.conf:") && err.message.contains("nosuch"),
        "{}",
        err.message
    );
    assert_eq!(d.sn(), table);
    std::fs::write(&conf, "virtual_server 127.0.0.1 1 {\n").unwrap();
    send_signal(d.child.id(), "-HUP");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(d.sn(), table);
    ping_all(&conns);
}

fn send_signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// `rvsd -t` gives keepalived -t's verdict and exit status, and names the
/// file, line and column of what it reports.
#[test]
fn config_test_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_conf(
        dir.path(),
        "good.conf",
        "virtual_server 10.0.0.1 80 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.0.2 80 {\n    weight 2\n  }\n}\n",
    );
    let bad = write_conf(
        dir.path(),
        "bad.conf",
        "virtual_server 10.0.0.1 80 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  frobnicate 3\n}\n",
    );
    let run = config_test;
    let o = run(&good);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.conf:5:"), "{err}");
    assert!(err.contains("frobnicate"), "{err}");
}

/// A server on `addr` that greets every connection with `id\n`.
fn greeter(addr: SocketAddr, id: &'static str) {
    let l = TcpListener::bind(addr).unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(format!("{id}\n").as_bytes());
        }
    });
}

fn greeting(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn fwmark_conf(port: u16, extra_rule: &str) -> String {
    format!(
        "! rvs extension: the classifier in place of iptables' MARK\n\
         fwmark_classifier {{\n    rule 6666 tcp 127.0.0.1 {port}\n{extra_rule}}}\n\
         virtual_server fwmark 6666 {{\n  delay_loop 30\n  lb_algo rr\n  lb_kind NAT\n  persistence_timeout 300\n\
         \x20 real_server 127.0.0.2 {{\n    weight 1\n  }}\n}}\n"
    )
}

/// The table's classifier rules, as `GET /v1/table` lists them.
fn marks(d: &Daemon) -> Vec<String> {
    let client = rvsd::client::Client::new(d.socket.clone());
    let table: serde_json::Value = client.get("/v1/table").unwrap().unwrap();
    table["marks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    format!(
                        "{} {} {} {}",
                        m["mark"],
                        m["protocol"].as_str().unwrap(),
                        m["destination"].as_str().unwrap(),
                        m["ports"].as_str().unwrap_or("all")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A `fwmark_classifier` block puts its rules in the table with the
/// `virtual_server fwmark` it feeds (the socket plane then serves the rule's
/// address and port); a reload with a changed rule replaces it (delete, then
/// add) and leaves the unchanged ones; a file with a bad rule is refused and
/// changes nothing.
#[test]
fn fwmark_classifier_rules_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (common::free_port(), common::free_port());
    greeter(SocketAddr::from(([127, 0, 0, 2], p1)), "one");
    greeter(SocketAddr::from(([127, 0, 0, 2], p2)), "two");
    let other = "    rule 7 udp 10.1.0.0/24 5000-5010\n";
    let conf = write_conf(dir.path(), "keepalived.conf", &fwmark_conf(p1, other));
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    assert_eq!(
        marks(&d),
        [
            format!("6666 tcp 127.0.0.1/32 {p1}"),
            "7 udp 10.1.0.0/24 5000-5010".to_string()
        ]
    );
    let sn = d.sn();
    assert!(sn.contains("-A -f 6666 -s rr -p 300"), "{sn}");
    // The mark's rule is what the fwmark service is reached by.
    let vip1 = SocketAddr::from(([127, 0, 0, 1], p1));
    assert!(
        wait_for(10.0, || greeting(vip1).is_ok_and(|g| g == "one\n")).is_some(),
        "{vip1} never served the fwmark service"
    );

    std::fs::write(&conf, fwmark_conf(p2, other)).unwrap();
    let client = rvsd::client::Client::new(d.socket.clone());
    let report: serde_json::Value = client
        .post("/v1/reload", &serde_json::json!({}))
        .unwrap()
        .unwrap();
    assert_eq!(report["changes"], 2, "{report}"); // delete the old rule, add the new
    assert_eq!(
        marks(&d),
        [
            "7 udp 10.1.0.0/24 5000-5010".to_string(),
            format!("6666 tcp 127.0.0.1/32 {p2}")
        ]
    );
    let vip2 = SocketAddr::from(([127, 0, 0, 1], p2));
    assert!(
        wait_for(10.0, || greeting(vip2).is_ok_and(|g| g == "two\n")).is_some(),
        "{vip2} never served the fwmark service"
    );
    assert!(
        wait_for(10.0, || greeting(vip1).is_err()).is_some(),
        "{vip1} is still served after its rule left"
    );

    // An overlapping rule: refused with both lines, nothing changes.
    let before = marks(&d);
    std::fs::write(&conf, fwmark_conf(p2, "    rule 8 tcp 127.0.0.0/8 all\n")).unwrap();
    let err = client
        .post::<_, serde_json::Value>("/v1/reload", &serde_json::json!({}))
        .unwrap()
        .expect_err("an overlapping rule must be refused");
    assert!(
        err.message.contains("keepalived.conf:4:")
            && err.message.contains("overlaps rule `6666 tcp 127.0.0.1/32")
            && err.message.contains("of line 3"),
        "{}",
        err.message
    );
    assert_eq!(marks(&d), before);
}

/// `rvsd -t` knows the rvs-only block: a good one is clean (keepalived -t
/// would report it as unknown), a bad rule is reported at its line and word.
#[test]
fn config_test_knows_the_classifier_block() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_conf(dir.path(), "good.conf", &fwmark_conf(8080, ""));
    let bad = write_conf(
        dir.path(),
        "bad.conf",
        &fwmark_conf(8080, "    rule 7 tcp 10.0.0.1 90-80\n"),
    );
    let run = config_test;
    let o = run(&good);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = run(&bad);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.conf:4:25: error: fwmark_classifier rule `7 tcp 10.0.0.1 90-80`: port range 90-80 is inverted"),
        "{err}"
    );
}
