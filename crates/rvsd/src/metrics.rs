//! `GET /metrics`: rvsd's state in the OpenMetrics text format (Prometheus
//! scrapes it), encoded by `prometheus-client`. `docs/metrics.md` lists every
//! metric.
//!
//! Invariants:
//! - The control plane is locked only to copy its views ([`Snapshot::take`]);
//!   the registry is built and encoded after the lock is released.
//! - Label values come only from the configuration: services (`service`, in
//!   `ipvsadm -Ln` notation, e.g. `TCP 10.0.0.1:80`, `FWM 6666`), real servers
//!   (`server`, `ADDR:PORT`), VRRP instances and groups, checker kinds, and
//!   fixed sets of reasons, methods and states. No client address, and no
//!   free-form text (a check's failure reason, a listener's error) is a label,
//!   so the number of series is linear in services + servers + instances.
//! - Counters are the core's and the planes' own counters. `rvsadm -Z` zeroes
//!   the core's, which Prometheus sees as a counter reset (as after a restart).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use rvs_api::{HealthView, RatesView, ReloadsView, StatsView, StatusView, TableView, VrrpView};

use crate::control::Control;
use crate::http::{lock, Shared};
use crate::keepalived::translate::service_label;
use crate::sync::{Role, RunningDaemon, SyncStats};
use crate::xdp::XdpView;

/// What prometheus-client's text encoder produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// VRRP states, each a series of `rvs_vrrp_state` (keepalived's `vrrp_t.state`).
pub const VRRP_STATES: [&str; 5] = ["INIT", "BACKUP", "MASTER", "FAULT", "STOP"];

/// Everything `/metrics` shows, copied out of the control plane.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub status: Option<StatusView>,
    pub table: Option<TableView>,
    pub health: Vec<HealthView>,
    pub xdp: Option<XdpView>,
    pub vrrp: Option<VrrpView>,
    pub reloads: ReloadsView,
    /// The connection sync daemons, when the server attached their handle.
    pub sync: Option<SyncSnapshot>,
    /// When rvsd started (its control plane's clock epoch).
    pub started: Option<SystemTime>,
}

/// What the sync daemons report: their counters and the running daemons.
#[derive(Clone, Debug, Default)]
pub struct SyncSnapshot {
    pub stats: SyncStats,
    pub running: Vec<RunningDaemon>,
}

impl Snapshot {
    /// Copies the views out of `c` (called under the control lock; the sync
    /// daemons are read by [`handler`] after it is released).
    pub fn take(c: &Control) -> Snapshot {
        let started = SystemTime::now().checked_sub(c.epoch().elapsed());
        Snapshot {
            status: Some(c.status()),
            table: Some(c.table_view()),
            health: c.health_views(),
            xdp: c.xdp_view(),
            vrrp: c.vrrp_view(),
            reloads: c.reloads(),
            sync: None,
            started,
        }
    }
}

/// `GET /metrics` on every admin listener.
pub async fn handler(State(shared): State<Shared>) -> Response {
    let (mut snap, sync) = {
        let control = lock(&shared);
        (Snapshot::take(&control), control.sync_daemons())
    };
    snap.sync = sync.map(|daemons| SyncSnapshot {
        stats: daemons.stats(),
        running: daemons.running(),
    });
    match render(&snap) {
        Ok(body) => {
            let mut resp = body.into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

fn gauge_value(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A server's label: `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
pub fn server_label(address: std::net::IpAddr, port: u16) -> String {
    SocketAddr::new(address, port).to_string()
}

/// The families of one scrape, registered in a fresh registry.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn counters(&mut self, name: &str, help: &str, unit: Option<Unit>) -> Counters {
        let f = Counters::default();
        match unit {
            Some(u) => self.registry.register_with_unit(name, help, u, f.clone()),
            None => self.registry.register(name, help, f.clone()),
        }
        f
    }

    fn gauges(&mut self, name: &str, help: &str, unit: Option<Unit>) -> Gauges {
        let f = Gauges::default();
        match unit {
            Some(u) => self.registry.register_with_unit(name, help, u, f.clone()),
            None => self.registry.register(name, help, f.clone()),
        }
        f
    }

    /// A counter family of one label, a series per (label value, count).
    fn counters_by(&mut self, name: &str, help: &str, label: &'static str, values: &[(&str, u64)]) {
        let family = self.counters(name, help, None);
        for (v, count) in values {
            family.get_or_create(&labels([(label, v)])).inc_by(*count);
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    fn gauge(&mut self, name: &str, help: &str, value: i64) {
        let g = Gauge::<i64>::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    fn float_gauge(&mut self, name: &str, help: &str, unit: Unit, value: f64) {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(value);
        self.registry.register_with_unit(name, help, unit, g);
    }

    fn float_gauges(&mut self, name: &str, help: &str, unit: Unit) -> FloatGauges {
        let f = FloatGauges::default();
        self.registry
            .register_with_unit(name, help, unit, f.clone());
        f
    }
}

/// The counter and rate families shared by services and real servers.
struct Traffic {
    conns: Counters,
    packets: Counters,
    bytes: Counters,
    cps: Gauges,
    pps: Gauges,
    bps: Gauges,
}

impl Traffic {
    fn register(b: &mut Builder, what: &str) -> Traffic {
        Traffic {
            conns: b.counters(
                &format!("{what}_connections"),
                &format!("Connections scheduled to the {what} (ipvsadm --stats Conns)"),
                None,
            ),
            packets: b.counters(
                &format!("{what}_packets"),
                &format!(
                    "Packets of the {what}; direction in: client to server, out: server to client"
                ),
                None,
            ),
            bytes: b.counters(
                &format!("{what}_bytes"),
                &format!("Bytes of the {what}, by direction"),
                None,
            ),
            cps: b.gauges(
                &format!("{what}_connections_per_second"),
                &format!("Estimated connections per second of the {what} (ipvsadm --rate CPS)"),
                None,
            ),
            pps: b.gauges(
                &format!("{what}_packets_per_second"),
                &format!("Estimated packets per second of the {what}, by direction"),
                None,
            ),
            bps: b.gauges(
                &format!("{what}_bytes_per_second"),
                &format!("Estimated bytes per second of the {what}, by direction"),
                None,
            ),
        }
    }

    fn record(&self, base: &Labels, stats: &StatsView, rates: &RatesView) {
        let with = |dir: &str| {
            let mut l = base.clone();
            l.push(("direction", dir.to_string()));
            l
        };
        self.conns.get_or_create(base).inc_by(stats.conns);
        self.packets
            .get_or_create(&with("in"))
            .inc_by(stats.in_pkts);
        self.packets
            .get_or_create(&with("out"))
            .inc_by(stats.out_pkts);
        self.bytes.get_or_create(&with("in")).inc_by(stats.in_bytes);
        self.bytes
            .get_or_create(&with("out"))
            .inc_by(stats.out_bytes);
        self.cps.get_or_create(base).set(gauge_value(rates.cps));
        self.pps
            .get_or_create(&with("in"))
            .set(gauge_value(rates.in_pps));
        self.pps
            .get_or_create(&with("out"))
            .set(gauge_value(rates.out_pps));
        self.bps
            .get_or_create(&with("in"))
            .set(gauge_value(rates.in_bps));
        self.bps
            .get_or_create(&with("out"))
            .set(gauge_value(rates.out_bps));
    }
}

/// The exposition of `snap`, ending with `# EOF`.
pub fn render(snap: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut b = Builder {
        registry: Registry::with_prefix("rvs"),
    };
    process(&mut b, snap);
    if let Some(t) = &snap.table {
        table(&mut b, t);
    }
    health(&mut b, &snap.health, snap.started);
    if let Some(st) = &snap.status {
        socket_plane(&mut b, st, snap.table.as_ref());
    }
    if let Some(x) = &snap.xdp {
        xdp(&mut b, x);
    }
    if let Some(v) = &snap.vrrp {
        vrrp(&mut b, v);
    }
    reloads(&mut b, &snap.reloads, snap.started);
    if let Some(s) = &snap.sync {
        sync(&mut b, s);
    }
    let mut out = String::new();
    encode(&mut out, &b.registry)?;
    Ok(out)
}

fn process(b: &mut Builder, snap: &Snapshot) {
    let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]);
    b.registry
        .register("build", "rvsd's version (always 1)", info);
    if let Some(t) = snap.started {
        b.float_gauge(
            "start_time",
            "When rvsd started, in seconds since the Unix epoch",
            Unit::Seconds,
            unix_seconds(t),
        );
    }
    if let Some(st) = &snap.status {
        b.gauge(
            "connections",
            "Entries in the connection table (ipvsadm -Lnc), templates included",
            gauge_value(st.connections),
        );
    }
}

fn table(b: &mut Builder, t: &TableView) {
    let service_traffic = Traffic::register(b, "service");
    let server_traffic = Traffic::register(b, "server");
    let active = b.gauges(
        "server_active_connections",
        "Active connections of the real server (ipvsadm -Ln ActiveConn)",
        None,
    );
    let inactive = b.gauges(
        "server_inactive_connections",
        "Inactive connections of the real server (ipvsadm -Ln InActConn)",
        None,
    );
    let persistent = b.gauges(
        "server_persistent_connections",
        "Persistence templates pointing at the real server",
        None,
    );
    let weight = b.gauges(
        "server_weight",
        "The real server's weight in the table (0: quiesced)",
        None,
    );
    for svc in &t.services {
        let service = service_label(&svc.spec.service);
        let base = labels([("service", &service)]);
        service_traffic.record(&base, &svc.stats, &svc.rates);
        for s in &svc.servers {
            let server = server_label(s.spec.address, s.spec.port);
            let base = labels([("service", &service), ("server", &server)]);
            server_traffic.record(&base, &s.stats, &s.rates);
            active.get_or_create(&base).set(i64::from(s.active_conns));
            inactive
                .get_or_create(&base)
                .set(i64::from(s.inactive_conns));
            persistent
                .get_or_create(&base)
                .set(i64::from(s.persistent_conns));
            weight.get_or_create(&base).set(i64::from(s.spec.weight));
        }
    }
}

/// Health checks of `rvsd -f keepalived.conf`. A server the checkers hold
/// down may have left the table, so these come from the health views, one
/// series per service its `virtual_server` block makes.
fn health(b: &mut Builder, views: &[HealthView], started: Option<SystemTime>) {
    let up = b.gauges(
        "server_up",
        "Whether the health checkers hold the real server up (1) or down (0)",
        None,
    );
    let check = b.gauges(
        "server_check_success",
        "Whether the last probe of the real server succeeded (1) or failed (0), by checker kind",
        None,
    );
    let checked_at = b.float_gauges(
        "server_check_timestamp",
        "When the last probe of the real server finished, in seconds since the Unix epoch",
        Unit::Seconds,
    );
    for hv in views {
        let server = server_label(hv.address, hv.port);
        for r in &hv.services {
            let service = service_label(r);
            let base = labels([("service", &service), ("server", &server)]);
            up.get_or_create(&base).set(i64::from(hv.up));
            if let Some(c) = &hv.last_check {
                let l = labels([
                    ("service", &service),
                    ("server", &server),
                    ("checker", &c.checker),
                ]);
                check.get_or_create(&l).set(i64::from(c.ok));
                if let Some(start) = started {
                    let at = start + Duration::from_millis(c.at_ms);
                    checked_at.get_or_create(&base).set(unix_seconds(at));
                }
            }
        }
    }
}

fn socket_plane(b: &mut Builder, st: &StatusView, t: Option<&TableView>) {
    let Some(p) = &st.data_plane else {
        return;
    };
    let one = |b: &mut Builder, name: &str, help: &str, v: u64| {
        b.counter(name, help, v);
    };
    one(
        b,
        "socket_plane_accepted_connections",
        "Client connections (and UDP flows) the socket plane accepted",
        p.accepted,
    );
    one(
        b,
        "socket_plane_refused_connections",
        "Client connections the socket plane refused (no service, no server the scheduler would pick)",
        p.refused,
    );
    one(
        b,
        "socket_plane_connect_failures",
        "Connections to real servers that failed",
        p.connect_failed,
    );
    one(
        b,
        "socket_plane_expired_open_flows",
        "Proxied flows closed because their connection entry expired while open",
        p.expired_open,
    );
    // Per configured real server only: a server since removed is left out.
    let configured: HashSet<String> = t
        .map(|t| {
            t.services
                .iter()
                .flat_map(|s| s.servers.iter())
                .map(|s| server_label(s.spec.address, s.spec.port))
                .collect()
        })
        .unwrap_or_default();
    let by_server = b.counters(
        "socket_plane_server_connect_failures",
        "Connections to the real server that failed (configured servers only)",
        None,
    );
    for f in &p.connect_failed_by_server {
        let server = server_label(f.address, f.port);
        if configured.contains(&server) {
            by_server
                .get_or_create(&labels([("server", &server)]))
                .inc_by(f.failures);
        }
    }
    b.gauge(
        "socket_plane_flows",
        "Proxied flows open now",
        gauge_value(p.live_flows),
    );
    let listeners = b.gauges(
        "socket_plane_listeners",
        "The socket plane's listening sockets, by state (up, failed)",
        None,
    );
    let up = p.listeners.iter().filter(|l| l.listening).count();
    listeners
        .get_or_create(&labels([("state", "up")]))
        .set(gauge_value(up));
    listeners
        .get_or_create(&labels([("state", "failed")]))
        .set(gauge_value(p.listeners.len() - up));
    b.gauge(
        "socket_plane_unserved_services",
        "Virtual services the socket plane cannot serve (GET /v1/status says why)",
        gauge_value(p.unserved.len()),
    );
}

/// Where an XDP program counter (`rvs_xdp::abi::Stat::name`) goes: a family
/// and, for the grouped ones, its label.
fn xdp_program_metric(stat: &str) -> (&'static str, Option<(&'static str, &str)>) {
    if stat == "redirect_fail" {
        return ("xdp_dropped_packets", Some(("reason", stat)));
    }
    if let Some(reason) = stat.strip_prefix("drop_") {
        return ("xdp_dropped_packets", Some(("reason", reason)));
    }
    if let Some(reason) = stat.strip_prefix("pass_") {
        return ("xdp_passed_packets", Some(("reason", reason)));
    }
    if let Some(method) = stat.strip_prefix("fwd_") {
        return ("xdp_forwarded_packets", Some(("method", method)));
    }
    match stat {
        "rx" => ("xdp_received_packets", None),
        "upcall" => ("xdp_upcall_packets", None),
        "notify" => ("xdp_notify_packets", None),
        "xdp_sched" => ("xdp_scheduled_flows", None),
        "icmp_echo" => ("xdp_icmp_echo_replies", None),
        "icmp_error_fwd" => ("xdp_icmp_errors_forwarded", None),
        other => ("xdp_program_events", Some(("counter", other))),
    }
}

const XDP_PROGRAM_HELP: [(&str, &str); 10] = [
    ("xdp_received_packets", "Packets the XDP program saw"),
    (
        "xdp_passed_packets",
        "Packets the XDP program passed to the kernel's stack, by reason",
    ),
    (
        "xdp_dropped_packets",
        "Packets the XDP program dropped, by reason (guard: the upcall flood guard)",
    ),
    (
        "xdp_forwarded_packets",
        "Packets the XDP program forwarded, by method (dr, tun, nat, fnat, reply)",
    ),
    (
        "xdp_upcall_packets",
        "Packets the XDP program sent up to rvsd for a decision",
    ),
    (
        "xdp_notify_packets",
        "TCP control packets of known flows the XDP program reported to rvsd",
    ),
    (
        "xdp_scheduled_flows",
        "New flows the XDP program scheduled itself (sh, dh, mh services)",
    ),
    (
        "xdp_icmp_echo_replies",
        "ICMP echo requests to a VIP the XDP program answered",
    ),
    (
        "xdp_icmp_errors_forwarded",
        "ICMP errors about a flow the XDP program forwarded along it (NAT, FullNAT: rewritten)",
    ),
    (
        "xdp_program_events",
        "Other counters of the XDP program, by name",
    ),
];

fn xdp(b: &mut Builder, x: &XdpView) {
    for (name, help) in XDP_PROGRAM_HELP {
        let mine = x
            .program
            .iter()
            .map(|(stat, value)| (xdp_program_metric(stat), *value))
            .filter(|((family, _), _)| *family == name);
        let mut family: Option<Counters> = None;
        let mut plain: Option<u64> = None;
        for ((_, label), value) in mine {
            match label {
                Some((k, v)) => {
                    family
                        .get_or_insert_with(|| b.counters(name, help, None))
                        .get_or_create(&vec![(k, v.to_string())])
                        .inc_by(value);
                }
                None => *plain.get_or_insert(0) += value,
            }
        }
        if let Some(v) = plain {
            b.counter(name, help, v);
        }
    }
    let d = &x.driver;
    b.counters_by(
        "xdp_driver_upcalls",
        "Upcalls rvsd handled, by verdict (forwarded, refused, passed)",
        "verdict",
        &[
            ("forwarded", d.upcalls_forwarded),
            ("refused", d.upcalls_refused),
            ("passed", d.upcalls_passed),
        ],
    );
    let driver_one = |b: &mut Builder, name: &str, help: &str, v: u64| {
        b.counter(name, help, v);
    };
    driver_one(
        b,
        "xdp_driver_upcalls_received",
        "Upcalls rvsd received from the XDP program",
        d.upcalls,
    );
    driver_one(
        b,
        "xdp_driver_new_flows_confirmed",
        "Flows the XDP program scheduled that rvsd confirmed in the core",
        d.new_confirmed,
    );
    driver_one(
        b,
        "xdp_driver_new_flow_mismatches",
        "Flows the XDP program scheduled to another real server than the core (corrected)",
        d.new_mismatch,
    );
    driver_one(
        b,
        "xdp_driver_control_events",
        "TCP control notifications rvsd applied to the core",
        d.control,
    );
    driver_one(
        b,
        "xdp_driver_unknown_flow_events",
        "Notifications about a flow rvsd no longer knows",
        d.unknown_flow,
    );
    driver_one(
        b,
        "xdp_driver_send_errors",
        "Frames rvsd failed to send out after an upcall",
        d.send_errors,
    );
    driver_one(
        b,
        "xdp_driver_unresolved_reals",
        "Times a real server's first next-hop resolution failed, or an upcall chose a real server without one",
        d.unresolved_reals,
    );
    driver_one(
        b,
        "xdp_driver_next_hop_refreshes",
        "Rounds that re-resolved the next hops of the real servers in use",
        d.next_hop_refreshes,
    );
    driver_one(
        b,
        "xdp_driver_next_hop_changes",
        "Real servers' next hops whose interface or MAC changed at a refresh (rewritten in rvs_reals)",
        d.next_hop_changes,
    );
    driver_one(
        b,
        "xdp_driver_next_hop_reverified",
        "Neighbour entries of real servers' next hops the kernel was asked to verify (STALE, FAILED or gone)",
        d.next_hop_reverified,
    );
    driver_one(
        b,
        "xdp_driver_next_hop_failures",
        "Times a resolved next hop of a real server stopped resolving (its last MAC stays in use)",
        d.next_hop_failures,
    );
    driver_one(
        b,
        "xdp_driver_port_unreachable_sent",
        "ICMP port unreachable answers to refused new connections",
        d.unreachable_sent,
    );
    driver_one(
        b,
        "xdp_driver_port_unreachable_limited",
        "Refused new connections left unanswered by the ICMP rate limit (1000/s)",
        d.unreachable_limited,
    );
    driver_one(
        b,
        "xdp_flood_guard_activations",
        "Times the flood guard started dropping new flows (after a second without guard drops)",
        d.guard_activations,
    );
    driver_one(
        b,
        "xdp_driver_imported_installed",
        "Connections a backup sync daemon imported whose XDP flow entries rvsd installed",
        d.imported_installed,
    );
    driver_one(
        b,
        "xdp_driver_imported_dropped",
        "Imported connections left to the upcall path (real server or client next hop unknown too long)",
        d.imported_dropped,
    );
    driver_one(
        b,
        "xdp_driver_imported_fullnat_skipped",
        "Imported FullNAT connections not installed (the sync protocol has no local address)",
        d.imported_fullnat_skipped,
    );
    b.gauge(
        "xdp_driver_imported_pending",
        "Imported connections waiting for their real server's slot or their client's next hop",
        gauge_value(d.imported_pending),
    );
    b.gauge(
        "xdp_flood_guard_active",
        "1 while the flood guard drops new flows (during the last second)",
        gauge_value(usize::from(x.guard_active)),
    );
    let gauge_one = |b: &mut Builder, name: &str, help: &str, v: usize| {
        b.gauge(name, help, gauge_value(v));
    };
    gauge_one(b, "xdp_flows", "Flows in the XDP flow map", x.flows);
    gauge_one(
        b,
        "xdp_mark_entries",
        "Entries in the classifier map rvs_marks",
        x.mark_entries,
    );
    gauge_one(
        b,
        "xdp_mark_rules_not_loaded",
        "Firewall-mark rules that did not fit rvs_marks (not applied by XDP)",
        x.mark_rules_not_loaded.len(),
    );
    gauge_one(
        b,
        "xdp_interfaces",
        "Interfaces the XDP program is attached to",
        x.interfaces.len(),
    );
}

/// The sync daemons' families (`ipvsadm -L --daemon` and the daemons'
/// counters). `rvs_sync_daemon_running` has one series per role, 0 or 1.
fn sync(b: &mut Builder, s: &SyncSnapshot) {
    let running = b.gauges(
        "sync_daemon_running",
        "1 while the connection sync daemon of the role (master, backup) runs",
        None,
    );
    let syncid = b.gauges(
        "sync_daemon_syncid",
        "The running sync daemon's syncid",
        None,
    );
    for (role, name) in [(Role::Master, "master"), (Role::Backup, "backup")] {
        let daemon = s.running.iter().find(|d| d.role == role);
        let l = labels([("role", name)]);
        running.get_or_create(&l).set(i64::from(daemon.is_some()));
        if let Some(d) = daemon {
            syncid.get_or_create(&l).set(i64::from(d.syncid));
        }
    }
    let st = &s.stats;
    for (name, help, value) in [
        (
            "sync_messages_sent",
            "Sync messages the master daemon sent",
            st.messages_sent,
        ),
        (
            "sync_conns_sent",
            "Connection records the master daemon sent",
            st.conns_sent,
        ),
        (
            "sync_conns_dropped",
            "Connection records the master daemon lost (send queue full)",
            st.conns_dropped,
        ),
        (
            "sync_conns_skipped",
            "Connection records the master daemon did not send (FullNat has no IPVS equivalent)",
            st.conns_skipped,
        ),
        (
            "sync_messages_received",
            "Sync messages of its syncid the backup daemon received",
            st.messages_received,
        ),
        (
            "sync_conns_received",
            "Connection records the backup daemon received",
            st.conns_received,
        ),
        (
            "sync_conns_imported",
            "Connection records the backup daemon installed or updated in the table",
            st.conns_imported,
        ),
        (
            "sync_import_errors",
            "Connection records the core refused (no such service or real server, bad state)",
            st.import_errors,
        ),
        (
            "sync_resync_requests_sent",
            "Whole-table requests the backup daemon sent (rvs extension)",
            st.resync_requests_sent,
        ),
        (
            "sync_resync_requests_answered",
            "Whole-table requests the master daemon answered (rvs extension)",
            st.resync_requests_answered,
        ),
    ] {
        b.counter(name, help, value);
    }
    b.counters_by(
        "sync_messages_refused",
        "Sync messages the backup daemon did not read, by reason (wrong_syncid, malformed)",
        "reason",
        &[
            ("wrong_syncid", st.wrong_syncid),
            ("malformed", st.malformed),
        ],
    );
}

fn vrrp(b: &mut Builder, v: &VrrpView) {
    let state = b.gauges(
        "vrrp_state",
        "1 for the VRRP instance's current state, 0 for the others",
        None,
    );
    let group_state = b.gauges(
        "vrrp_group_state",
        "1 for the sync group's current state, 0 for the others",
        None,
    );
    let priority = b.gauges(
        "vrrp_effective_priority",
        "The instance's priority after its trackers' weights",
        None,
    );
    let base_priority = b.gauges(
        "vrrp_base_priority",
        "The instance's configured priority",
        None,
    );
    let per_instance = [
        (
            "vrrp_became_master",
            "Transitions of the instance to MASTER",
        ),
        (
            "vrrp_released_master",
            "Transitions of the instance out of MASTER",
        ),
        ("vrrp_adverts_sent", "Adverts the instance sent"),
        ("vrrp_adverts_received", "Adverts the instance received"),
        (
            "vrrp_priority_zero_sent",
            "Priority-0 adverts (resignations) the instance sent",
        ),
        (
            "vrrp_priority_zero_received",
            "Priority-0 adverts (resignations) the instance received",
        ),
    ];
    let families: Vec<Counters> = per_instance
        .iter()
        .map(|(name, help)| b.counters(name, help, None))
        .collect();
    let dropped = b.counters(
        "vrrp_dropped_adverts",
        "Adverts the instance dropped, by reason (keepalived's vrrp statistics)",
        None,
    );
    for i in &v.instances {
        let base = labels([("vrrp_instance", &i.name)]);
        for s in VRRP_STATES {
            let l = labels([("vrrp_instance", &i.name), ("state", s)]);
            state.get_or_create(&l).set(i64::from(i.state == s));
        }
        priority
            .get_or_create(&base)
            .set(i64::from(i.effective_priority));
        base_priority
            .get_or_create(&base)
            .set(i64::from(i.base_priority));
        let c = &i.counters;
        let values = [
            c.became_master,
            c.released_master,
            c.adverts_sent,
            c.adverts_received,
            c.priority_zero_sent,
            c.priority_zero_received,
        ];
        for (f, value) in families.iter().zip(values) {
            f.get_or_create(&base).inc_by(value);
        }
        for (reason, value) in [
            ("length", c.length_errors),
            ("ttl", c.ttl_errors),
            ("version", c.version_errors),
            ("type", c.type_errors),
            ("checksum", c.checksum_errors),
            ("invalid_auth_type", c.invalid_auth_type),
            ("auth_type_mismatch", c.auth_type_mismatch),
            ("auth_failure", c.auth_failures),
            ("advert_interval", c.advert_interval_errors),
            ("address_list", c.address_list_errors),
            ("delivery", c.delivery_errors),
        ] {
            let l = labels([("vrrp_instance", &i.name), ("reason", reason)]);
            dropped.get_or_create(&l).inc_by(value);
        }
    }
    for g in &v.groups {
        for s in VRRP_STATES {
            let l = labels([("group", &g.name), ("state", s)]);
            group_state.get_or_create(&l).set(i64::from(g.state == s));
        }
    }
    let one = |b: &mut Builder, name: &str, help: &str, v: u64| {
        b.counter(name, help, v);
    };
    one(
        b,
        "vrrp_unknown_vrid_packets",
        "VRRP packets no instance claimed (unknown VRID on that interface and family)",
        v.unknown_vrid,
    );
    one(
        b,
        "vrrp_bad_ip_header_packets",
        "VRRP datagrams whose IPv4 header could not be read",
        v.bad_ip_header,
    );
}

fn reloads(b: &mut Builder, r: &ReloadsView, started: Option<SystemTime>) {
    let total = b.counters(
        "config_reloads",
        "Configuration reloads (POST /v1/reload, SIGHUP), by outcome (success, failure)",
        None,
    );
    total
        .get_or_create(&labels([("outcome", "success")]))
        .inc_by(r.succeeded);
    total
        .get_or_create(&labels([("outcome", "failure")]))
        .inc_by(r.failed);
    // Before any reload the configuration in force is the one rvsd started
    // with, which loaded: 1, as Prometheus' own config_last_reload_successful.
    b.gauge(
        "config_last_reload_successful",
        "Whether the last configuration reload succeeded (1 before any reload)",
        i64::from(r.last_ok.unwrap_or(true)),
    );
    if let (Some(at_ms), Some(start)) = (r.last_at_ms, started) {
        let at = start + Duration::from_millis(at_ms);
        b.float_gauge(
            "config_last_reload_timestamp",
            "When the last configuration reload ended, in seconds since the Unix epoch",
            Unit::Seconds,
            unix_seconds(at),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::{CheckResultView, ServiceRef, VrrpCountersView, VrrpGroupView, VrrpInstanceView};

    /// The exposition parses as OpenMetrics 1.0 (a strict parser: `# EOF`,
    /// `_total` samples of counters, one type per family).
    fn parsed(text: &str) {
        if let Err(e) = openmetrics_parser::openmetrics::parse_openmetrics(text) {
            panic!("not OpenMetrics: {e:?}\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }

    fn epoch_plus(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn xdp_counters_go_to_reason_and_method_labels() {
        let mut x = XdpView::default();
        for (k, v) in [
            ("rx", 100),
            ("drop_guard", 7),
            ("drop_malformed", 2),
            ("redirect_fail", 1),
            ("pass_not_vip", 5),
            ("fwd_dr", 40),
            ("fwd_fnat", 4),
            ("upcall", 9),
            ("xdp_sched", 6),
            ("icmp_echo", 3),
            ("some_new_counter", 11),
        ] {
            x.program.insert(k.to_string(), v);
        }
        x.driver.upcalls = 9;
        x.driver.upcalls_forwarded = 6;
        x.driver.upcalls_refused = 2;
        x.driver.upcalls_passed = 1;
        x.driver.new_mismatch = 4;
        x.driver.guard_activations = 2;
        x.guard_active = true;
        x.driver.imported_installed = 5;
        x.driver.imported_dropped = 3;
        x.driver.imported_fullnat_skipped = 2;
        x.driver.imported_pending = 7;
        x.flows = 12;
        x.interfaces = vec!["veth0".into(), "veth1".into()];
        let text = render(&Snapshot {
            xdp: Some(x),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&text);
        for line in [
            "rvs_xdp_received_packets_total 100",
            "rvs_xdp_dropped_packets_total{reason=\"guard\"} 7",
            "rvs_xdp_dropped_packets_total{reason=\"malformed\"} 2",
            "rvs_xdp_dropped_packets_total{reason=\"redirect_fail\"} 1",
            "rvs_xdp_passed_packets_total{reason=\"not_vip\"} 5",
            "rvs_xdp_forwarded_packets_total{method=\"dr\"} 40",
            "rvs_xdp_forwarded_packets_total{method=\"fnat\"} 4",
            "rvs_xdp_upcall_packets_total 9",
            "rvs_xdp_scheduled_flows_total 6",
            "rvs_xdp_icmp_echo_replies_total 3",
            "rvs_xdp_program_events_total{counter=\"some_new_counter\"} 11",
            "rvs_xdp_driver_upcalls_received_total 9",
            "rvs_xdp_driver_upcalls_total{verdict=\"forwarded\"} 6",
            "rvs_xdp_driver_upcalls_total{verdict=\"refused\"} 2",
            "rvs_xdp_driver_upcalls_total{verdict=\"passed\"} 1",
            "rvs_xdp_driver_new_flow_mismatches_total 4",
            "rvs_xdp_flood_guard_activations_total 2",
            "rvs_xdp_flood_guard_active 1",
            "rvs_xdp_flows 12",
            "rvs_xdp_driver_imported_installed_total 5",
            "rvs_xdp_driver_imported_dropped_total 3",
            "rvs_xdp_driver_imported_fullnat_skipped_total 2",
            "rvs_xdp_driver_imported_pending 7",
            "rvs_xdp_interfaces 2",
            "# TYPE rvs_xdp_dropped_packets counter",
            "# TYPE rvs_xdp_flows gauge",
        ] {
            has(&text, line);
        }
        // Without the plane, no XDP family at all.
        let none = render(&Snapshot::default()).unwrap();
        assert!(!none.contains("rvs_xdp_"), "{none}");
    }

    #[test]
    fn sync_daemons_show_per_role_and_their_counters() {
        let stats = SyncStats {
            messages_sent: 11,
            conns_sent: 40,
            conns_dropped: 1,
            conns_skipped: 8,
            messages_received: 9,
            conns_received: 30,
            conns_imported: 28,
            import_errors: 2,
            wrong_syncid: 4,
            malformed: 3,
            resync_requests_sent: 6,
            resync_requests_answered: 5,
        };
        let backup = RunningDaemon {
            role: Role::Backup,
            mcast_ifn: "eth1".into(),
            syncid: 7,
            maxlen: 1472,
            group: "224.0.0.81".parse().unwrap(),
            port: 8848,
            ttl: 1,
        };
        let text = render(&Snapshot {
            sync: Some(SyncSnapshot {
                stats,
                running: vec![backup],
            }),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&text);
        for line in [
            "rvs_sync_daemon_running{role=\"master\"} 0",
            "rvs_sync_daemon_running{role=\"backup\"} 1",
            "rvs_sync_daemon_syncid{role=\"backup\"} 7",
            "rvs_sync_messages_sent_total 11",
            "rvs_sync_conns_sent_total 40",
            "rvs_sync_conns_dropped_total 1",
            "rvs_sync_conns_skipped_total 8",
            "rvs_sync_messages_received_total 9",
            "rvs_sync_conns_received_total 30",
            "rvs_sync_conns_imported_total 28",
            "rvs_sync_import_errors_total 2",
            "rvs_sync_messages_refused_total{reason=\"wrong_syncid\"} 4",
            "rvs_sync_messages_refused_total{reason=\"malformed\"} 3",
            "rvs_sync_resync_requests_sent_total 6",
            "rvs_sync_resync_requests_answered_total 5",
            "# TYPE rvs_sync_daemon_running gauge",
            "# TYPE rvs_sync_conns_imported counter",
        ] {
            has(&text, line);
        }
        assert!(
            !text.contains("rvs_sync_daemon_syncid{role=\"master\"}"),
            "{text}"
        );
        // Without the handle, no sync family at all.
        let none = render(&Snapshot::default()).unwrap();
        assert!(!none.contains("rvs_sync_"), "{none}");
    }

    /// Every family of the XDP driver and the sync daemons is listed in
    /// docs/metrics.md (under the name a scrape shows: counters with `_total`).
    #[test]
    fn xdp_driver_and_sync_families_are_documented() {
        let doc = include_str!("../../../docs/metrics.md");
        let text = render(&Snapshot {
            xdp: Some(XdpView::default()),
            sync: Some(SyncSnapshot::default()),
            ..Snapshot::default()
        })
        .unwrap();
        let mut checked = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut words = rest.split(' ');
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            if !(name.starts_with("rvs_xdp_driver") || name.starts_with("rvs_sync_")) {
                continue;
            }
            let shown = if kind == "counter" {
                format!("`{name}_total`")
            } else {
                format!("`{name}`")
            };
            assert!(doc.contains(&shown), "docs/metrics.md lacks {shown}");
            checked += 1;
        }
        assert!(checked >= 20, "{text}");
    }

    fn instance(name: &str, state: &str) -> VrrpInstanceView {
        VrrpInstanceView {
            name: name.into(),
            interface: "eth0".into(),
            vrid: 51,
            version: 2,
            state: state.into(),
            base_priority: 100,
            effective_priority: 90,
            advert_int_ms: 1000,
            master_adver_int_ms: 1000,
            source: "192.0.2.1".into(),
            master: Some("192.0.2.1".into()),
            master_priority: Some(90),
            virtual_addresses: vec!["192.0.2.100/32".into()],
            addresses_set: state == "MASTER",
            trackers: Vec::new(),
            last_transition_ms: Some(10),
            counters: VrrpCountersView::default(),
        }
    }

    #[test]
    fn vrrp_state_is_one_hot_and_counters_carry_over() {
        let mut vi1 = instance("VI_1", "MASTER");
        vi1.counters = VrrpCountersView {
            adverts_sent: 30,
            adverts_received: 4,
            became_master: 2,
            released_master: 1,
            auth_failures: 3,
            ttl_errors: 5,
            dropped: 8,
            ..VrrpCountersView::default()
        };
        let v = VrrpView {
            instances: vec![vi1, instance("VI_2", "BACKUP")],
            groups: vec![VrrpGroupView {
                name: "G1".into(),
                state: "FAULT".into(),
                members: vec!["VI_1".into()],
            }],
            unknown_vrid: 6,
            bad_ip_header: 0,
        };
        let text = render(&Snapshot {
            vrrp: Some(v),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&text);
        for (instance, current) in [("VI_1", "MASTER"), ("VI_2", "BACKUP")] {
            for s in VRRP_STATES {
                has(
                    &text,
                    &format!(
                        "rvs_vrrp_state{{vrrp_instance=\"{instance}\",state=\"{s}\"}} {}",
                        u8::from(s == current)
                    ),
                );
            }
        }
        for line in [
            "rvs_vrrp_group_state{group=\"G1\",state=\"FAULT\"} 1",
            "rvs_vrrp_group_state{group=\"G1\",state=\"MASTER\"} 0",
            "rvs_vrrp_became_master_total{vrrp_instance=\"VI_1\"} 2",
            "rvs_vrrp_released_master_total{vrrp_instance=\"VI_1\"} 1",
            "rvs_vrrp_adverts_sent_total{vrrp_instance=\"VI_1\"} 30",
            "rvs_vrrp_adverts_received_total{vrrp_instance=\"VI_1\"} 4",
            "rvs_vrrp_dropped_adverts_total{vrrp_instance=\"VI_1\",reason=\"auth_failure\"} 3",
            "rvs_vrrp_dropped_adverts_total{vrrp_instance=\"VI_1\",reason=\"ttl\"} 5",
            "rvs_vrrp_dropped_adverts_total{vrrp_instance=\"VI_2\",reason=\"ttl\"} 0",
            "rvs_vrrp_effective_priority{vrrp_instance=\"VI_1\"} 90",
            "rvs_vrrp_base_priority{vrrp_instance=\"VI_1\"} 100",
            "rvs_vrrp_unknown_vrid_packets_total 6",
            "# TYPE rvs_vrrp_became_master counter",
            "# TYPE rvs_vrrp_state gauge",
        ] {
            has(&text, line);
        }
    }

    #[test]
    fn reloads_count_by_outcome_and_date_the_last() {
        let never = render(&Snapshot {
            started: epoch_plus(1000),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&never);
        has(&never, "rvs_config_reloads_total{outcome=\"success\"} 0");
        has(&never, "rvs_config_last_reload_successful 1");
        assert!(!never.contains("rvs_config_last_reload_timestamp_seconds "));
        has(&never, "rvs_start_time_seconds 1000.0");

        let text = render(&Snapshot {
            reloads: ReloadsView {
                succeeded: 2,
                failed: 1,
                last_ok: Some(false),
                last_at_ms: Some(1500),
            },
            started: epoch_plus(1000),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&text);
        for line in [
            "rvs_config_reloads_total{outcome=\"success\"} 2",
            "rvs_config_reloads_total{outcome=\"failure\"} 1",
            "rvs_config_last_reload_successful 0",
            "rvs_config_last_reload_timestamp_seconds 1001.5",
            "# UNIT rvs_config_last_reload_timestamp_seconds seconds",
            &format!(
                "rvs_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            has(&text, line);
        }
    }

    #[test]
    fn health_is_a_gauge_per_service_and_the_reason_is_no_label() {
        let services = vec![
            ServiceRef::Tcp {
                address: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            ServiceRef::Fwmark {
                mark: 6,
                ipv6: false,
            },
        ];
        let views = vec![HealthView {
            virtual_server: "group G".into(),
            services,
            address: "10.0.1.2".parse().unwrap(),
            port: 8080,
            up: false,
            weight: None,
            last_check: Some(CheckResultView {
                checker: "HTTP_GET".into(),
                ok: false,
                reason: Some("status 503 from 10.0.1.2:8080".into()),
                at_ms: 2500,
            }),
        }];
        let text = render(&Snapshot {
            health: views,
            started: epoch_plus(1000),
            ..Snapshot::default()
        })
        .unwrap();
        parsed(&text);
        for service in ["TCP 10.0.0.1:80", "FWM 6"] {
            let base = format!("service=\"{service}\",server=\"10.0.1.2:8080\"");
            has(&text, &format!("rvs_server_up{{{base}}} 0"));
            has(
                &text,
                &format!("rvs_server_check_success{{{base},checker=\"HTTP_GET\"}} 0"),
            );
            has(
                &text,
                &format!("rvs_server_check_timestamp_seconds{{{base}}} 1002.5"),
            );
        }
        assert!(!text.contains("503"), "{text}");
    }
}
