//! The web dashboard: `GET /v1/stream` read over plain HTTP (snapshots, resume
//! by event sequence, the listener's token flag, health, the end of the stream
//! at shutdown, 300 services), and the page itself in headless Chromium driven
//! through chromedriver (rows, live updates, read-only without a token, drain
//! and restore with one, a screenshot). The browser tests skip loudly when
//! Debian's chromium and chromium-driver are not installed; CI installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, http_tcp, Daemon};
use rvs_api::SnapshotView;
use serde_json::json;
use webdriver::Browser;

const TOKEN: &str = "s3cret";

/// rvsd with a token-protected TCP listener (`--open-reads` when asked) and
/// `extra` arguments; returns the directory, the daemon and the address.
fn daemon(open_reads: bool, extra: &[&str]) -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen", &addr, "--token-file", token.to_str().unwrap()];
    if open_reads {
        args.push("--open-reads");
    }
    args.extend_from_slice(extra);
    let d = Daemon::start(dir.path(), &args);
    (dir, d, addr)
}

fn post(addr: &str, body: &serde_json::Value) {
    let (status, answer) = http_tcp(addr, "POST", "/v1/commands", Some(TOKEN), &body.to_string());
    assert_eq!(status, 200, "{body} -> {answer}");
}

fn tcp_ref(addr: &str, port: u16) -> serde_json::Value {
    json!({"protocol": "tcp", "address": addr, "port": port})
}

/// One open `GET /v1/stream`, read message by message.
struct SseStream {
    reader: BufReader<Box<dyn Read + Send>>,
    pending: String,
}

/// An SSE message: (event, id, data).
type Message = (String, String, String);

impl SseStream {
    fn open<S: Read + Write + Send + 'static>(mut conn: S, path: &str, headers: &str) -> SseStream {
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: rvsd\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(Box::new(conn) as Box<dyn Read + Send>);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut chunked = false;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let lower = line.trim_end().to_ascii_lowercase();
            if lower.is_empty() {
                break;
            }
            chunked |= lower == "transfer-encoding: chunked";
            if let Some(v) = lower.strip_prefix("content-type:") {
                content_type = v.trim().to_string();
            }
        }
        assert!(chunked, "an endless stream is chunked");
        assert_eq!(content_type, "text/event-stream");
        SseStream {
            reader,
            pending: String::new(),
        }
    }

    fn tcp(addr: &str, path: &str, headers: &str) -> SseStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        SseStream::open(s, path, headers)
    }

    /// The next message with data (keep-alive comments skipped); `None` when
    /// the server ended the stream.
    fn next(&mut self) -> Option<Message> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    return Some((event, id, data));
                }
            }
            let chunk = webdriver::read_chunk(&mut self.reader).unwrap()?;
            self.pending.push_str(&String::from_utf8(chunk).unwrap());
        }
    }

    fn snapshot(&mut self) -> (String, SnapshotView) {
        let (event, id, data) = self.next().expect("a message");
        assert_eq!(event, "snapshot");
        (id, serde_json::from_str(&data).unwrap())
    }
}

/// The stream's first snapshot comes at once and holds the table, the
/// listener's token flag and the events so far; the next comes about a second
/// later with no event twice; a reconnect with `Last-Event-ID` (what
/// EventSource sends) or `?since=` gets only newer events; the Unix socket's
/// stream says writes need no token; and a stopping rvsd ends open streams.
#[test]
fn stream_sends_snapshots_and_resumes_after_the_last_event() {
    let (_dir, mut d, addr) = daemon(true, &[]);
    let svc = tcp_ref("10.0.0.1", 80);
    let server =
        |w: u32| json!({"address": "10.0.0.2", "port": 80, "weight": w, "forward": "masq"});
    post(
        &addr,
        &json!({"commands": [
            {"op": "add_service", "spec": {"service": svc, "scheduler": "wrr"}},
            {"op": "add_server", "service": svc, "server": server(3)},
        ]}),
    );
    post(
        &addr,
        &json!({"commands": [{"op": "edit_server", "service": svc, "server": server(0)}]}),
    );

    let started = Instant::now();
    let mut stream = SseStream::tcp(&addr, "/v1/stream", "");
    let (id, first) = stream.snapshot();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "first snapshot after {:?}",
        started.elapsed()
    );
    assert!(
        first.writes_need_token,
        "a --listen stream says writes need the token"
    );
    assert_eq!(first.table.services.len(), 1);
    assert_eq!(first.table.services[0].spec.scheduler, "wrr");
    assert_eq!(first.table.services[0].servers[0].spec.weight, 0);
    assert_eq!(first.status.services, 1);
    assert!(first.health.is_empty(), "no -f: nothing is health-checked");
    assert!(first.vrrp.is_none());
    let kinds: Vec<&str> = first.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        kinds,
        ["TCP 10.0.0.1:80: real server 10.0.0.2:80 weight 3 -> 0"]
    );
    assert_eq!(
        id,
        first.events[0].seq.to_string(),
        "the id is the last event's seq"
    );

    let (id2, second) = stream.snapshot();
    let gap = second.at_ms - first.at_ms;
    assert!((700..=2500).contains(&gap), "snapshots {gap} ms apart");
    assert!(second.events.is_empty(), "an event was sent twice");
    assert_eq!(id2, id);

    // A change shows up in the open stream, once.
    post(
        &addr,
        &json!({"commands": [{"op": "edit_server", "service": svc, "server": server(5)}]}),
    );
    let (id3, third) = stream.snapshot();
    assert_eq!(third.events.len(), 1, "{:?}", third.events);
    assert!(third.events[0].message.ends_with("weight 0 -> 5"));
    assert_eq!(third.table.services[0].servers[0].spec.weight, 5);
    assert_eq!(id3, third.events[0].seq.to_string());

    // Resuming: Last-Event-ID wins over ?since=, and both skip what was seen.
    let (_, resumed) = SseStream::tcp(
        &addr,
        "/v1/stream?since=0",
        &format!("Last-Event-ID: {id}\r\n"),
    )
    .snapshot();
    assert_eq!(resumed.events, third.events);
    let (_, resumed) = SseStream::tcp(&addr, &format!("/v1/stream?since={id3}"), "").snapshot();
    assert!(resumed.events.is_empty());
    let (status, _) = http_tcp(&addr, "GET", "/v1/stream?since=x", None, "");
    assert_eq!(status, 400);

    // Without --open-reads the stream is a read like the others: token needed.
    let (_dir2, _d2, closed) = daemon(false, &[]);
    let (status, _) = http_tcp(&closed, "GET", "/v1/stream", None, "");
    assert_eq!(status, 401);
    let (status, _) = http_tcp(&closed, "GET", "/", None, "");
    assert_eq!(status, 401);

    // The Unix socket: local trust, writes need no token.
    let unix = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut local = SseStream::open(unix, "/v1/stream", "");
    let (_, snap) = local.snapshot();
    assert!(!snap.writes_need_token);
    assert_eq!(snap.table.services.len(), 1);

    // SIGTERM with streams open: they end and rvsd exits.
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    while stream.next().is_some() {
        assert!(stopping.elapsed() < Duration::from_secs(5));
    }
    while local.next().is_some() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rvsd did not stop with a stream open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under `rvsd -f keepalived.conf` the snapshot carries each checked server's
/// health: up with a passing check, down with the failing check's reason.
#[test]
fn stream_carries_health_from_keepalived_conf() {
    let dir = tempfile::tempdir().unwrap();
    let alive = TcpListener::bind("127.0.0.1:0").unwrap();
    let alive_addr = alive.local_addr().unwrap();
    std::thread::spawn(move || for _ in alive.incoming() {});
    let dead_port = free_port();
    let vip_port = free_port();
    let check = "    TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }\n";
    let conf = format!(
        "virtual_server 127.0.0.1 {vip_port} {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n  real_server 127.0.0.1 {} {{\n    weight 2\n{check}  }}\n  real_server 127.0.0.1 {dead_port} {{\n    weight 1\n{check}  }}\n}}\n",
        alive_addr.port()
    );
    let path = dir.path().join("keepalived.conf");
    std::fs::write(&path, conf).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start_keepalived(
        dir.path(),
        &path,
        &[
            "--listen",
            &addr,
            "--token-file",
            token.to_str().unwrap(),
            "--open-reads",
        ],
    );
    let mut stream = SseStream::tcp(&addr, "/v1/stream", "");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut events = Vec::new();
    loop {
        let (_, snap) = stream.snapshot();
        events.extend(snap.events.iter().cloned());
        let checked = |port: u16| {
            snap.health
                .iter()
                .find(|h| h.port == port)
                .filter(|h| h.last_check.is_some())
                .cloned()
        };
        if let (Some(up), Some(down)) = (checked(alive_addr.port()), checked(dead_port)) {
            if !down.up {
                assert!(up.up, "{up:?}");
                assert!(up.last_check.as_ref().unwrap().ok);
                let last = down.last_check.unwrap();
                assert_eq!(last.checker, "TCP_CHECK");
                assert!(!last.ok);
                assert!(last.reason.is_some_and(|r| !r.is_empty()));
                assert_eq!(down.virtual_server, format!("TCP 127.0.0.1:{vip_port}"));
                assert!(
                    events
                        .iter()
                        .any(|e| e.kind == "server_down"
                            && e.message.contains(&dead_port.to_string())),
                    "the down transition is an event: {events:?}"
                );
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "health never settled: {:?}",
            snap.health
        );
    }
}

/// A real server that greets each connection with `hi\n` and closes.
fn greeter() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"hi\n");
        }
    });
    addr
}

fn rvsadm_ok(d: &Daemon, args: &[&str]) -> String {
    let o = d.rvsadm(args);
    assert!(o.status.success(), "rvsadm {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// The weight `rvsadm -Ln` shows for real server `rs`.
fn listed_weight(d: &Daemon, rs: SocketAddr) -> u32 {
    let listing = rvsadm_ok(d, &["-Ln"]);
    let line = listing
        .lines()
        .find(|l| l.contains(&format!("-> {rs} ")))
        .unwrap_or_else(|| panic!("{rs} not in\n{listing}"));
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn wait_listening(d: &Daemon, port: u16) {
    let c = rvsd::client::Client::new(d.socket.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: rvs_api::StatusView = c.get("/v1/status").unwrap().unwrap();
        let plane = s.data_plane.expect("the socket plane runs");
        if plane
            .listeners
            .iter()
            .any(|l| l.port == port && l.listening)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{port} never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Errors in the browser log, leaving out those `expected` names.
fn errors(log: &[(String, String)], expected: &[&str]) -> Vec<String> {
    log.iter()
        .filter(|(level, _)| level == "SEVERE")
        .filter(|(_, m)| !expected.iter().any(|e| m.contains(e)))
        .map(|(_, m)| m.clone())
        .collect()
}

fn skip_without_browser(test: &str) -> bool {
    if webdriver::available() {
        return false;
    }
    eprintln!(
        "SKIP: {test}: chromium/chromedriver not installed ({} and {}; apt-get install chromium chromium-driver)",
        webdriver::CHROMIUM,
        webdriver::CHROMEDRIVER
    );
    true
}

/// The page in Chromium: it loads with no console error and shows both
/// services and their real servers; traffic through a service changes its
/// counters without a reload; without a token nothing can be changed (drain
/// buttons disabled, and the API answers the page's own POST with 401); with
/// the token, "Drain" sets the weight to 0 (as `rvsadm -Ln` shows) and
/// "Restore" brings back the weight it had. Saves a screenshot.
#[test]
fn dashboard_in_chromium() {
    if skip_without_browser("dashboard_in_chromium") {
        return;
    }
    let (_dir, d, addr) = daemon(true, &["--data-plane", "socket", "--plane-threads", "2"]);
    let (rs_a, rs_b, rs_c) = (greeter(), greeter(), greeter());
    let (web, api) = (free_port(), free_port());
    for (port, sched) in [(web, "wrr"), (api, "rr")] {
        rvsadm_ok(&d, &["-A", "-t", &format!("127.0.0.1:{port}"), "-s", sched]);
    }
    let add = |port: u16, rs: SocketAddr, w: &str| {
        let vip = format!("127.0.0.1:{port}");
        rvsadm_ok(
            &d,
            &["-a", "-t", &vip, "-r", &rs.to_string(), "-m", "-w", w],
        );
    };
    add(web, rs_a, "3");
    add(web, rs_b, "1");
    add(api, rs_c, "2");
    wait_listening(&d, web);
    wait_listening(&d, api);
    let started = Instant::now();

    let browser = Browser::start();
    browser.goto(&format!("http://{addr}/"));
    let web_sel = format!("tbody[data-service=\"TCP 127.0.0.1:{web}\"]");
    browser.wait_for(
        5,
        "both services drawn",
        "return window.rvsDashboard && window.rvsDashboard.snapshots > 0 && document.querySelectorAll('tbody.svc-group').length === 2",
    );
    let shown = browser.js(
        "return [...document.querySelectorAll('tbody.svc-group')].map(b => [b.dataset.service, [...b.querySelectorAll('tr.rs')].map(r => r.dataset.server + ' ' + r.querySelector('td.method').textContent + ' ' + r.querySelector('td.weight').dataset.weight)])",
        json!([]),
    );
    assert_eq!(
        shown,
        json!([
            [
                format!("TCP 127.0.0.1:{web}"),
                [format!("{rs_b} masq 1"), format!("{rs_a} masq 3")]
            ],
            [format!("TCP 127.0.0.1:{api}"), [format!("{rs_c} masq 2")]],
        ])
    );
    let log = browser.log();
    assert!(errors(&log, &[]).is_empty(), "console errors: {log:?}");

    // Live: connections through the service show up without a reload.
    let conns = |browser: &Browser| {
        browser.js(
            &format!("return document.querySelector('{web_sel} tr.svc td.conns').textContent"),
            json!([]),
        )
    };
    assert_eq!(conns(&browser), json!("0"));
    browser.js("window.notReloaded = true", json!([]));
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", web)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line).unwrap();
        assert_eq!(line, "hi\n");
    }
    browser.wait_for(
        5,
        "the page to count 5 connections",
        &format!("return document.querySelector('{web_sel} tr.svc td.conns').textContent === '5' && window.notReloaded === true"),
    );

    // Read-only without a token: controls disabled, and the API refuses the
    // page's own change with 401.
    let controls = browser.js(
        "return [...document.querySelectorAll('button.drain, button.set-weight, input.weight')].map(b => b.disabled)",
        json!([]),
    );
    assert_eq!(controls, json!(vec![true; 9]), "{controls}");
    assert!(browser
        .js(
            "return document.getElementById('access').textContent",
            json!([])
        )
        .as_str()
        .unwrap()
        .starts_with("read-only"));
    let status = browser.js_async(
        "const done = arguments[arguments.length - 1];
         fetch('/v1/commands', {method: 'POST', headers: {'Content-Type': 'application/json'},
           body: JSON.stringify({commands: [{op: 'edit_server', service: arguments[0], server: arguments[1]}]})})
           .then(r => done(r.status), e => done(String(e)));",
        json!([tcp_ref("127.0.0.1", web), {"address": "127.0.0.1", "port": rs_a.port(), "weight": 0, "forward": "masq"}]),
    );
    assert_eq!(status, json!(401));
    assert_eq!(
        listed_weight(&d, rs_a),
        3,
        "the refused change changed nothing"
    );
    let log = browser.log();
    assert!(errors(&log, &["401"]).is_empty(), "console errors: {log:?}");

    // With the token: drain, then restore to the weight it had.
    browser.type_into("#token", TOKEN);
    browser.click("#token-use");
    browser.wait_for(
        5,
        "the token to be accepted",
        "return document.getElementById('token-form').dataset.writable === 'true'",
    );
    let rs_a_sel = format!("{web_sel} tr[data-server=\"{rs_a}\"]");
    browser.wait_for(
        3,
        "an enabled drain button",
        &format!("return !document.querySelector('{rs_a_sel} button.drain').disabled"),
    );
    browser.click(&format!("{rs_a_sel} button.drain"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed_weight(&d, rs_a) != 0 {
        assert!(Instant::now() < deadline, "drain did not reach the table");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        listed_weight(&d, rs_b),
        1,
        "only the clicked server drained"
    );
    browser.wait_for(
        5,
        "the drained row with restore enabled",
        &format!("return document.querySelector('{rs_a_sel} td.weight').dataset.weight === '0' && !document.querySelector('{rs_a_sel} button.restore').disabled"),
    );
    browser.click(&format!("{rs_a_sel} button.restore"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed_weight(&d, rs_a) != 3 {
        assert!(
            Instant::now() < deadline,
            "restore did not bring weight 3 back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.wait_for(
        5,
        "the drain and restore events on the page",
        "const t = document.getElementById('events').textContent; return t.includes('weight 3 -> 0') && t.includes('weight 0 -> 3')",
    );
    browser.wait_for(
        3,
        "a sparkline with the traffic",
        &format!("return [...document.querySelectorAll('{web_sel} tr.svc svg.spark polyline')].every(p => p.getAttribute('points').split(' ').length > 2)"),
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshot.png");
    browser.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // The log check catches a real error: an uncaught one is reported.
    let log = browser.log();
    assert!(errors(&log, &[]).is_empty(), "console errors: {log:?}");
    browser.js(
        "setTimeout(() => { throw new Error('rvs-probe-error'); }, 0)",
        json!([]),
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = browser.log();
    assert_eq!(errors(&log, &[]).len(), 1, "{log:?}");
    assert!(errors(&log, &[])[0].contains("rvs-probe-error"));
    eprintln!("dashboard_in_chromium: {:?}", started.elapsed());
}

/// 300 services: the stream's snapshot of them all comes quickly, and the page
/// shows 300 rows (real servers collapsed), renders a snapshot quickly and
/// filters them.
#[test]
fn three_hundred_services() {
    let (_dir, _d, addr) = daemon(true, &[]);
    let mut commands = Vec::new();
    for i in 0..300u32 {
        let svc = tcp_ref(&format!("10.1.{}.{}", i / 250, i % 250 + 1), 80);
        commands.push(json!({"op": "add_service", "spec": {"service": svc, "scheduler": "wlc"}}));
        for rs in 1..=2 {
            commands.push(json!({"op": "add_server", "service": svc,
                "server": {"address": format!("10.2.{}.{rs}", i % 250), "port": 8000 + i, "forward": "masq"}}));
        }
    }
    post(&addr, &json!({ "commands": commands }));

    let started = Instant::now();
    let mut stream = SseStream::tcp(&addr, "/v1/stream", "");
    let (_, snap) = stream.snapshot();
    let first = started.elapsed();
    assert_eq!(snap.table.services.len(), 300);
    assert!(snap.table.services.iter().all(|s| s.servers.len() == 2));
    let (_, again) = stream.snapshot();
    assert_eq!(again.table.services.len(), 300);
    eprintln!("300 services: first snapshot after {first:?}");
    assert!(
        first < Duration::from_millis(800),
        "first snapshot after {first:?}"
    );

    if skip_without_browser("three_hundred_services (page part)") {
        return;
    }
    let browser = Browser::start();
    let loading = Instant::now();
    browser.goto(&format!("http://{addr}/"));
    browser.wait_for(
        10,
        "300 rows",
        "return document.querySelectorAll('tbody.svc-group').length === 300 && window.rvsDashboard.snapshots > 0",
    );
    eprintln!("300 services: page drawn after {:?}", loading.elapsed());
    let before = browser
        .js("return window.rvsDashboard.snapshots", json!([]))
        .as_u64()
        .unwrap();
    browser.wait_for(
        5,
        "two more snapshots",
        &format!("return window.rvsDashboard.snapshots >= {}", before + 2),
    );
    let facts = browser.js(
        "const groups = [...document.querySelectorAll('tbody.svc-group')];
         return {
           collapsed: groups.every(g => g.classList.contains('collapsed')),
           visible_servers: [...document.querySelectorAll('tr.rs')].filter(r => r.offsetParent !== null).length,
           render_ms: window.rvsDashboard.renderMs,
         };",
        json!([]),
    );
    assert_eq!(facts["collapsed"], json!(true), "{facts}");
    assert_eq!(facts["visible_servers"], json!(0), "{facts}");
    let render_ms = facts["render_ms"].as_f64().unwrap();
    eprintln!("300 services: a snapshot drawn in {render_ms:.1} ms");
    assert!(render_ms < 500.0, "{facts}");

    // The filter keeps only the matching service.
    browser.type_into("#filter", "10.1.1.7:");
    let visible = browser.wait_for(
        3,
        "the filter",
        "const v = [...document.querySelectorAll('tbody.svc-group')].filter(g => !g.hidden).map(g => g.dataset.service); return v.length === 1 && v",
    );
    assert_eq!(visible, json!(["TCP 10.1.1.7:80"]));
    let log = browser.log();
    assert!(errors(&log, &[]).is_empty(), "console errors: {log:?}");
}
