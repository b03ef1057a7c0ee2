//! `GET /metrics` end to end: after real traffic through the socket plane the
//! exported counters and gauges equal what `rvsadm -Ln [--stats --exact]`
//! shows; the exposition parses as OpenMetrics; it is served on the Unix
//! socket and (with the token) on TCP; reloads are counted; the number of
//! series is linear in services + servers and no client address shows; and
//! every metric the Grafana dashboard queries exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, http_tcp, Daemon};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The clients' source address: it must never reach the exposition.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

/// One HTTP/1.1 GET over the Unix socket; returns (status, headers, body).
fn get_unix(socket: &Path, path: &str) -> (u16, String, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// `/metrics` over the Unix socket, checked for status and content type.
fn scrape(d: &Daemon) -> String {
    let (status, head, body) = get_unix(&d.socket, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains(&format!("content-type: {CONTENT_TYPE}")),
        "{head}"
    );
    body
}

type Labels = BTreeMap<String, String>;

/// An exposition read by a strict OpenMetrics parser.
struct Expo {
    families: MetricsExposition<OpenMetricsType, OpenMetricsValue>,
}

impl Expo {
    fn parse(text: &str) -> Expo {
        let families = openmetrics_parser::openmetrics::parse_openmetrics(text)
            .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{text}"));
        Expo { families }
    }

    /// The samples of family `name` (`rvs_service_bytes` for `rvs_service_bytes_total`).
    fn samples(&self, name: &str) -> Vec<(Labels, f64)> {
        let Some(f) = self.families.families.get(name) else {
            return Vec::new();
        };
        f.iter_samples()
            .map(|s| {
                let labels = s
                    .get_labelset()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let v = match &s.value {
                    OpenMetricsValue::Counter(c) => c.value.as_f64(),
                    OpenMetricsValue::Gauge(g) | OpenMetricsValue::Unknown(g) => g.as_f64(),
                    // The parser refuses an info sample whose value is not 1.
                    OpenMetricsValue::Info => 1.0,
                    other => panic!("{name}: unexpected {other:?}"),
                };
                (labels, v)
            })
            .collect()
    }

    /// The value of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples(name)
            .into_iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| v)
    }

    /// Every sample name (`_total` for counters, `_info` for infos).
    fn sample_names(&self) -> BTreeSet<String> {
        self.families
            .families
            .iter()
            .filter(|(_, f)| f.iter_samples().next().is_some())
            .map(|(name, f)| match f.family_type {
                OpenMetricsType::Counter => format!("{name}_total"),
                OpenMetricsType::Info => format!("{name}_info"),
                _ => name.clone(),
            })
            .collect()
    }

    fn series(&self) -> usize {
        self.families
            .families
            .values()
            .map(|f| f.iter_samples().count())
            .sum()
    }
}

/// A real server: greets with `id\n`, echoes until the client's FIN, closes.
fn backend(id: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let id = id.to_string();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let id = id.clone();
            thread::spawn(move || {
                let _ = s.write_all(format!("{id}\n").as_bytes());
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A client from [`CLIENT`]: sends `n` bytes, reads greeting and echo to EOF.
fn exchange(vip: SocketAddr, n: usize) -> usize {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(CLIENT.into(), 0).into())
        .unwrap();
    sock.connect_timeout(&vip.into(), IO_TIMEOUT).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&vec![b'x'; n]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    got.len()
}

fn rvsadm(d: &Daemon, args: &[&str]) -> String {
    let o = d.rvsadm(args);
    assert!(o.status.success(), "rvsadm {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// `rvsadm -Ln`-style rows: (service, server or "") -> the numbers after the
/// address (and, for `-Ln`, the forward method's column dropped).
fn table_rows(text: &str) -> BTreeMap<(String, String), Vec<u64>> {
    let mut rows = BTreeMap::new();
    let mut service = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&("TCP" | "UDP" | "SCTP" | "FWM")) => {
                service = format!("{} {}", f[0], f[1]);
                let nums = f[2..].iter().filter_map(|w| w.parse().ok()).collect();
                rows.insert((service.clone(), String::new()), nums);
            }
            Some(&"->")
                if f.get(1).is_some_and(|a| a.contains(':')) && f[1] != "RemoteAddress:Port" =>
            {
                let nums = f[2..].iter().filter_map(|w| w.parse().ok()).collect();
                rows.insert((service.clone(), f[1].to_string()), nums);
            }
            _ => {}
        }
    }
    rows
}

/// What the exposition says for the `--stats` columns of each row.
fn stats_rows(e: &Expo) -> BTreeMap<(String, String), Vec<u64>> {
    let mut rows = BTreeMap::new();
    for (labels, _) in e.samples("rvs_service_connections") {
        let service = labels["service"].clone();
        let l = |dir| vec![("service", service.as_str()), ("direction", dir)];
        let v = |name: &str, l: &[(&str, &str)]| e.value(name, l).unwrap() as u64;
        rows.insert(
            (service.clone(), String::new()),
            vec![
                v("rvs_service_connections", &[("service", &service)]),
                v("rvs_service_packets", &l("in")),
                v("rvs_service_packets", &l("out")),
                v("rvs_service_bytes", &l("in")),
                v("rvs_service_bytes", &l("out")),
            ],
        );
    }
    for (labels, _) in e.samples("rvs_server_connections") {
        let (service, server) = (labels["service"].clone(), labels["server"].clone());
        let base = [("service", service.as_str()), ("server", server.as_str())];
        let l = |dir| {
            let mut l = base.to_vec();
            l.push(("direction", dir));
            l
        };
        let v = |name: &str, l: &[(&str, &str)]| e.value(name, l).unwrap() as u64;
        rows.insert(
            (service.clone(), server.clone()),
            vec![
                v("rvs_server_connections", &base),
                v("rvs_server_packets", &l("in")),
                v("rvs_server_packets", &l("out")),
                v("rvs_server_bytes", &l("in")),
                v("rvs_server_bytes", &l("out")),
            ],
        );
    }
    rows
}

/// rvsd with the socket plane and a TCP listener behind the token `s3cret`.
fn plane_daemon(dir: &Path, extra: &[&str]) -> (Daemon, String) {
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--data-plane",
        "socket",
        "--plane-threads",
        "2",
        "--listen",
        &listen,
        "--token-file",
        token.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (Daemon::start(dir, &args), listen)
}

fn wait_served(vip: SocketAddr) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while TcpStream::connect_timeout(&vip, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{vip} never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_and_gauges_equal_rvsadm_after_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (d, listen) = plane_daemon(dir.path(), &[]);
    let vip = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let v = vip.to_string();
    rvsadm(&d, &["-A", "-t", &v, "-s", "wrr"]);
    let servers = [backend("a"), backend("b"), backend("c")];
    for (rs, w) in servers.iter().zip(["1", "2", "3"]) {
        rvsadm(&d, &["-a", "-t", &v, "-r", &rs.to_string(), "-m", "-w", w]);
    }
    wait_served(vip);
    // The probe above was one connection; six more with known sizes.
    let mut sent = 0;
    for i in 0..6 {
        let n = 1000 * (i + 1);
        let got = exchange(vip, n);
        assert_eq!(got, n + 2, "greeting + echo");
        sent += n;
    }
    // One held open: an active connection on some server.
    let held = TcpStream::connect_timeout(&vip, IO_TIMEOUT).unwrap();
    held.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut greet = [0u8; 2];
    (&held).read_exact(&mut greet).unwrap();

    // Counters settle once the flows are done: compare a scrape taken between
    // two equal ones with rvsadm's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (exported, shown) = loop {
        let before = stats_rows(&Expo::parse(&scrape(&d)));
        let shown = table_rows(&rvsadm(&d, &["-Ln", "--stats", "--exact"]));
        let after = stats_rows(&Expo::parse(&scrape(&d)));
        if (before == after && after == shown) || Instant::now() > deadline {
            break (after, shown);
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exported, shown, "metrics vs rvsadm -Ln --stats --exact");
    assert_eq!(
        exported.len(),
        4,
        "one service, three servers: {exported:?}"
    );
    let service = format!("TCP {v}");
    let svc = &exported[&(service.clone(), String::new())];
    assert_eq!(svc[0], 8, "conns: probe + 6 + held");
    assert!(svc[3] >= sent as u64, "in bytes {} < {sent}", svc[3]);

    // Connection gauges and weights against `-Ln`'s columns.
    let text = scrape(&d);
    let e = Expo::parse(&text);
    let listed = table_rows(&rvsadm(&d, &["-Ln"]));
    let mut active_total = 0;
    for rs in &servers {
        let server = rs.to_string();
        let cols = &listed[&(service.clone(), server.clone())];
        let l = [("service", service.as_str()), ("server", server.as_str())];
        let g = |name| e.value(name, &l).unwrap() as u64;
        assert_eq!(
            [
                g("rvs_server_weight"),
                g("rvs_server_active_connections"),
                g("rvs_server_inactive_connections")
            ],
            [cols[0], cols[1], cols[2]],
            "{server}: {cols:?}"
        );
        active_total += cols[1];
    }
    assert_eq!(active_total, 1, "the held connection: {listed:?}");
    let weights: Vec<u64> = servers
        .iter()
        .map(|rs| {
            let s = rs.to_string();
            e.value(
                "rvs_server_weight",
                &[("service", &service), ("server", &s)],
            )
            .unwrap() as u64
        })
        .collect();
    assert_eq!(weights, [1, 2, 3]);

    // The socket plane's own counters.
    assert_eq!(
        e.value("rvs_socket_plane_accepted_connections", &[]),
        Some(8.0)
    );
    assert_eq!(e.value("rvs_socket_plane_flows", &[]), Some(1.0));
    assert_eq!(
        e.value("rvs_socket_plane_listeners", &[("state", "up")]),
        Some(1.0)
    );
    // No client address anywhere.
    assert!(!text.contains(&CLIENT.to_string()), "{text}");

    // TCP: with the token the same exposition; without, 401.
    let (status, body) = http_tcp(&listen, "GET", "/metrics", Some("s3cret"), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(
        stats_rows(&Expo::parse(&body)),
        stats_rows(&Expo::parse(&scrape(&d)))
    );
    let (status, _) = http_tcp(&listen, "GET", "/metrics", None, "");
    assert_eq!(status, 401);
    let (status, _) = http_tcp(&listen, "GET", "/metrics", Some("wrong"), "");
    assert_eq!(status, 401);
    drop(held);
}

#[test]
fn open_reads_serve_metrics_without_token_and_reloads_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (d, listen) = plane_daemon(dir.path(), &["--open-reads"]);
    let (status, body) = http_tcp(&listen, "GET", "/metrics", None, "");
    assert_eq!(status, 200, "{body}");
    let e = Expo::parse(&body);
    assert_eq!(
        e.value("rvs_config_reloads", &[("outcome", "success")]),
        Some(0.0)
    );
    assert_eq!(
        e.value("rvs_config_last_reload_timestamp_seconds", &[]),
        None
    );

    // A reload re-reads the state file, which the first change writes.
    let vip = format!("127.0.0.1:{}", free_port());
    rvsadm(&d, &["-A", "-t", &vip]);
    let (status, body) = http_tcp(&listen, "POST", "/v1/reload", Some("s3cret"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_tcp(&listen, "GET", "/metrics", None, "");
    assert_eq!(status, 200, "{body}");
    let e = Expo::parse(&body);
    assert_eq!(
        e.value("rvs_config_reloads", &[("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        e.value("rvs_config_reloads", &[("outcome", "failure")]),
        Some(0.0)
    );
    assert_eq!(e.value("rvs_config_last_reload_successful", &[]), Some(1.0));
    let at = e
        .value("rvs_config_last_reload_timestamp_seconds", &[])
        .unwrap();
    let start = e.value("rvs_start_time_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= at && at <= now + 1.0, "{start} {at} {now}");
    assert_eq!(
        e.value("rvs_build", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );

    // A refused reload: the state file no longer parses.
    std::fs::write(&d.state, "{ not json").unwrap();
    let (status, _) = http_tcp(&listen, "POST", "/v1/reload", Some("s3cret"), "");
    assert_ne!(status, 200);
    let e = Expo::parse(&scrape(&d));
    assert_eq!(
        e.value("rvs_config_reloads", &[("outcome", "failure")]),
        Some(1.0)
    );
    assert_eq!(e.value("rvs_config_last_reload_successful", &[]), Some(0.0));
}

/// `n` TCP services of two real servers each, in one batch over the socket.
fn add_services(d: &Daemon, n: u16) {
    let mut commands = Vec::new();
    for i in 0..n {
        let service =
            serde_json::json!({"protocol": "tcp", "address": "10.1.0.1", "port": 1000 + i});
        commands.push(serde_json::json!({"op": "add_service", "spec": {"service": service}}));
        for last in [2, 3] {
            commands.push(serde_json::json!({"op": "add_server", "service": service,
                "server": {"address": format!("10.1.1.{last}"), "port": 80, "weight": 1}}));
        }
    }
    let c = rvsd::client::Client::new(d.socket.clone());
    let applied: serde_json::Value = c
        .post("/v1/commands", &serde_json::json!({"commands": commands}))
        .unwrap()
        .unwrap();
    assert_eq!(applied["applied"], u64::from(n) * 3);
}

#[test]
fn series_grow_linearly_with_services_and_servers() {
    let count = |n: u16| {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(dir.path(), &[]);
        let empty = Expo::parse(&scrape(&d)).series();
        add_services(&d, n);
        let e = Expo::parse(&scrape(&d));
        let services = e.samples("rvs_service_connections").len();
        assert_eq!(services, usize::from(n));
        assert_eq!(e.samples("rvs_server_weight").len(), usize::from(n) * 2);
        e.series() - empty
    };
    let one = count(1);
    let hundred = count(100);
    assert_eq!(hundred, 100 * one, "series per service: {one}");
    // A service: connections, 2 packets, 2 bytes and their 5 rates; a server:
    // the same 10, active, inactive, persistent and weight.
    assert_eq!(one, 10 + 2 * 14, "series for one service and two servers");
}

#[test]
fn dashboard_queries_only_metrics_that_exist() {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/grafana/rvs-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&json, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("rvs_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }

    // A running rvsd: socket plane, keepalived.conf with checked servers (one
    // up, one down), after a reload.
    let dir = tempfile::tempdir().unwrap();
    let up = backend("up");
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let vip = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let rs = |a: SocketAddr| {
        format!(
            "  real_server {} {} {{\n    weight 2\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n",
            a.ip(),
            a.port()
        )
    };
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server {} {} {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n{}{}}}\n",
            vip.ip(),
            vip.port(),
            rs(up),
            rs(down)
        ),
    )
    .unwrap();
    let d = Daemon::start_keepalived(dir.path(), &conf, &[]);
    let c = rvsd::client::Client::new(d.socket.clone());
    let _: serde_json::Value = c
        .post("/v1/reload", &serde_json::json!({}))
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = loop {
        let e = Expo::parse(&scrape(&d));
        if e.samples("rvs_server_check_success").len() == 2 || Instant::now() > deadline {
            break e;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let mut have = running.sample_names();
    let down_label = down.to_string();
    assert_eq!(
        running.value(
            "rvs_server_up",
            &[("service", &format!("TCP {vip}")), ("server", &down_label)]
        ),
        Some(0.0)
    );
    // The VRRP and XDP planes need root and real interfaces: their families
    // come from the same renderer fed views shaped like theirs.
    let mut xdp = rvsd::xdp::XdpView::default();
    xdp.program.extend(
        [
            "rx",
            "drop_guard",
            "pass_not_vip",
            "fwd_dr",
            "upcall",
            "xdp_sched",
        ]
        .map(|k| (k.to_string(), 1)),
    );
    let vrrp: rvs_api::VrrpView = serde_json::from_value(serde_json::json!({
        "instances": [{"name": "VI_1", "interface": "eth0", "vrid": 51, "version": 2,
            "state": "MASTER", "base_priority": 100, "effective_priority": 100,
            "advert_int_ms": 1000, "master_adver_int_ms": 1000, "source": "192.0.2.1",
            "master": null, "master_priority": null, "virtual_addresses": [],
            "addresses_set": true, "trackers": [], "last_transition_ms": null,
            "counters": rvs_api::VrrpCountersView::default()}],
        "groups": [{"name": "G", "state": "MASTER", "members": ["VI_1"]}],
        "unknown_vrid": 0, "bad_ip_header": 0
    }))
    .unwrap();
    let planes = rvsd::metrics::render(&rvsd::metrics::Snapshot {
        xdp: Some(xdp),
        vrrp: Some(vrrp),
        ..Default::default()
    })
    .unwrap();
    have.extend(
        Expo::parse(&planes)
            .sample_names()
            .into_iter()
            .filter(|n| n.starts_with("rvs_xdp_") || n.starts_with("rvs_vrrp_")),
    );
    let missing: Vec<&String> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}; rvsd has {have:?}"
    );
    assert!(used.len() >= 10, "{used:?}");
}
