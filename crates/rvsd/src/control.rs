//! The control plane: owns the core `Director`, the configured table that mirrors
//! it, and the state file; turns API commands into core changes.
//!
//! Invariants:
//! - A batch is all or nothing: it is first applied to a scratch core rebuilt from
//!   the configured table, and only when every command succeeds there is the new
//!   table written to the state file (write, fsync, rename) and then applied to the
//!   live core. A refused batch changes neither the core nor the file.
//! - When `apply` returns Ok the change is on disk, so an acknowledgement is never
//!   lost by a crash (`kill -9`) that follows it.
//! - Time comes from one monotonic clock started with the process; the core itself
//!   reads no clock.

use std::time::Instant;

use hashbrown::HashMap;
use rvs_api::{
    key_of, ref_of, server_spec_of, service_spec_of, ApiError, Command, ConnView, DataPlaneView,
    ErrorKind, ListenerView, MarkRuleSpec, ProxyProtocolSpec, RatesView, ServerFailuresView,
    ServerSpec, ServerView, ServiceView, StatsView, StatusView, TableView, UnservedView,
};
use rvs_core::{Counters, Director, DirectorConfig, Protocol, Rates, ServiceKey, Time};
use rvs_proxy::{ListenerStatus, PlaneState, PlaneTable, ProxyProtocol, Publisher};

use crate::events::{EventKind, EventLog};
use crate::keepalived::Keepalived;
use crate::state::{StateError, StateFile, TableState};

/// What the header of `ipvsadm -L` reports: the kernel's IPVS version.
pub const IPVS_VERSION: &str = "1.2.1";
/// Connection hash table size shown in the header (the kernel's default 2^12).
pub const CONN_TAB_SIZE: u32 = 4096;

/// Errors that stop rvsd from starting.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: the saved table does not apply: command {index}: {error}")]
    Replay {
        path: String,
        index: usize,
        error: ApiError,
    },
    #[error("the saved table has a service the socket data plane cannot serve: {0}")]
    Unservable(ApiError),
}

/// Outcome of a reload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Commands applied to move from the running table to the file's.
    pub changes: usize,
    /// What a keepalived.conf reload reported without refusing the file
    /// (unknown keywords, defaults applied), as `FILE:LINE:COL: warning: ...`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub struct Control {
    director: Director,
    table: TableState,
    file: Option<StateFile>,
    epoch: Instant,
    /// The socket plane's registry and counters (empty without a plane).
    plane: PlaneState,
    /// Where the plane's table goes after each change, when a plane runs.
    publisher: Option<Publisher>,
    /// `rvsd -f keepalived.conf`: the file and the health state own the table.
    keepalived: Option<Keepalived>,
    /// The VRRP driver's status, when the file has `vrrp_instance` blocks.
    vrrp: Option<std::sync::Arc<std::sync::Mutex<rvs_api::VrrpView>>>,
    /// The XDP packet plane's counters, when it runs.
    xdp: Option<std::sync::Arc<std::sync::Mutex<crate::xdp::XdpView>>>,
    /// Recent events for the dashboard and `GET /v1/events`.
    events: EventLog,
    reloads: rvs_api::ReloadsView,
    /// Each VRRP instance's state as last seen by `tick`, to log failovers.
    vrrp_seen: HashMap<String, String>,
    /// Whether the packet plane's flood guard was dropping at the last `tick`.
    guard_seen: bool,
    /// Connections a backup sync daemon installed since the packet plane last
    /// looked (it installs their fast-path entries).
    imported: Vec<rvs_core::ConnId>,
    /// The sync daemons' handle, for `/metrics` (attached by the server).
    sync: Option<crate::sync::SyncDaemons>,
}

impl Control {
    /// A control plane restored from `file` (if it exists), or empty.
    pub fn new(file: Option<StateFile>) -> Result<Self, ControlError> {
        let epoch = Instant::now();
        let table = match &file {
            Some(f) => f.load()?.unwrap_or_default(),
            None => TableState::default(),
        };
        let director =
            rebuild(&table, Time::ZERO).map_err(|(index, error)| ControlError::Replay {
                path: file
                    .as_ref()
                    .map(|f| f.path().display().to_string())
                    .unwrap_or_default(),
                index,
                error,
            })?;
        Ok(Control {
            director,
            table,
            file,
            epoch,
            plane: PlaneState::default(),
            publisher: None,
            keepalived: None,
            vrrp: None,
            xdp: None,
            events: EventLog::default(),
            reloads: rvs_api::ReloadsView::default(),
            vrrp_seen: HashMap::new(),
            guard_seen: false,
            imported: Vec::new(),
            sync: None,
        })
    }

    /// A backup sync daemon installed connection `id` (see `take_imported`).
    /// Bounded: beyond a million waiting ids the oldest half is dropped (the
    /// packet plane still installs those flows on their next packet).
    pub fn note_imported(&mut self, id: rvs_core::ConnId) {
        if self.imported.len() >= 1 << 20 {
            self.imported.drain(..1 << 19);
        }
        self.imported.push(id);
    }

    /// The connections installed by sync since the last call, oldest first.
    pub fn take_imported(&mut self) -> Vec<rvs_core::ConnId> {
        std::mem::take(&mut self.imported)
    }

    /// When the clock of `now` started.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// From now on a socket plane serves the table: services it cannot serve
    /// are refused, and every change is published to it. Fails if the table
    /// already holds such a service.
    pub fn attach_plane(&mut self, publisher: Publisher) -> Result<(), ControlError> {
        for entry in &self.table.services {
            if let Some(e) = socket_plane_refuses(&key_of(&entry.spec.service)) {
                return Err(ControlError::Unservable(e));
            }
        }
        publisher.publish(self.plane_table());
        self.publisher = Some(publisher);
        Ok(())
    }

    /// The director and the plane's state, for the plane's calls.
    pub fn plane_parts(&mut self) -> (&mut Director, &mut PlaneState) {
        (&mut self.director, &mut self.plane)
    }

    /// The plane's view of the running table.
    fn plane_table(&self) -> PlaneTable {
        let mut proxy = HashMap::new();
        for entry in &self.table.services {
            let key = key_of(&entry.spec.service);
            for s in &entry.servers {
                let version = match s.proxy_protocol {
                    Some(ProxyProtocolSpec::V1) => ProxyProtocol::V1,
                    Some(ProxyProtocolSpec::V2) => ProxyProtocol::V2,
                    Some(ProxyProtocolSpec::None) | None => continue,
                };
                proxy.insert((key, std::net::SocketAddr::new(s.address, s.port)), version);
            }
        }
        PlaneTable::build(&self.director, proxy)
    }

    fn publish(&self) {
        if let Some(p) = &self.publisher {
            p.publish(self.plane_table());
        }
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The configured table (what `-S` prints and the state file holds).
    pub fn configured(&self) -> &TableState {
        &self.table
    }

    pub fn director(&self) -> &Director {
        &self.director
    }

    pub fn director_mut(&mut self) -> &mut Director {
        &mut self.director
    }

    /// Applies `commands` all or nothing; Ok(n) once they are applied and saved.
    pub fn apply(&mut self, commands: &[Command]) -> Result<usize, ApiError> {
        self.apply_batch(commands, false).map(|(n, _)| n)
    }

    /// Applies `commands` all or nothing, or with `dry_run` only checks them and
    /// returns the table they would give (nothing changes, nothing is saved).
    pub fn apply_batch(
        &mut self,
        commands: &[Command],
        dry_run: bool,
    ) -> Result<(usize, Option<TableView>), ApiError> {
        let now = self.now();
        let mut scratch = rebuild(&self.table, now).map_err(|(_, e)| {
            ApiError::new(
                ErrorKind::Persist,
                format!("internal: the configured table no longer replays: {e}"),
            )
        })?;
        let mut next = self.table.clone();
        for (i, cmd) in commands.iter().enumerate() {
            if let (Some(_), Command::AddService { spec } | Command::EditService { spec }) =
                (&self.publisher, cmd)
            {
                if let Some(e) = socket_plane_refuses(&key_of(&spec.service)) {
                    return Err(e.at(i));
                }
            }
            apply_to_core(&mut scratch, cmd, now).map_err(|e| e.at(i))?;
            next.apply(cmd).map_err(|e| {
                ApiError::new(ErrorKind::Persist, format!("internal: state mirror: {e}")).at(i)
            })?;
        }
        if dry_run {
            return Ok((commands.len(), Some(table_view(&scratch, &next))));
        }
        self.persist(&next)?;
        for cmd in commands {
            if let Err(e) = apply_to_core(&mut self.director, cmd, now) {
                // The scratch core accepted it, so this is a bug, not bad input.
                tracing::error!(error = %e, ?cmd, "live core refused a command the scratch core accepted");
            }
        }
        self.note_weight_changes(&next, now);
        self.table = next;
        self.publish();
        Ok((commands.len(), None))
    }

    /// Logs each real server whose configured weight differs between the
    /// running table and `next` (drains, restores, edits).
    fn note_weight_changes(&mut self, next: &TableState, now: Time) {
        for entry in &next.services {
            let Some(old) = self
                .table
                .services
                .iter()
                .find(|o| o.spec.service == entry.spec.service)
            else {
                continue;
            };
            for s in &entry.servers {
                let before = old
                    .servers
                    .iter()
                    .find(|o| o.address == s.address && o.port == s.port);
                if let Some(b) = before.filter(|b| b.weight != s.weight) {
                    let service = crate::keepalived::translate::service_label(&entry.spec.service);
                    self.events.push(
                        EventKind::Weight,
                        format!(
                            "{service}: real server {} weight {} -> {}",
                            std::net::SocketAddr::new(s.address, s.port),
                            b.weight,
                            s.weight
                        ),
                        now,
                    );
                }
            }
        }
    }

    fn persist(&self, next: &TableState) -> Result<(), ApiError> {
        match &self.file {
            Some(f) if next != &self.table => f.save(next).map_err(|e| {
                ApiError::new(
                    ErrorKind::Persist,
                    format!("cannot save the state file, nothing was changed: {e}"),
                )
            }),
            _ => Ok(()),
        }
    }

    /// Re-reads the state file and applies only the difference to the running table:
    /// unchanged services and servers keep their connections and counters. A file
    /// that is missing, does not parse or does not apply changes nothing.
    pub fn reload(&mut self) -> Result<ReloadReport, ApiError> {
        let result = self.reload_inner();
        let now = self.now();
        self.reloads.last_at_ms = Some(now.as_millis());
        self.reloads.last_ok = Some(result.is_ok());
        match &result {
            Ok(r) => {
                self.reloads.succeeded += 1;
                self.events.push(
                    EventKind::Reload,
                    format!("configuration reloaded: {} change(s)", r.changes),
                    now,
                );
            }
            Err(e) => {
                self.reloads.failed += 1;
                self.events
                    .push(EventKind::ReloadFailed, e.message.clone(), now);
            }
        }
        result
    }

    fn reload_inner(&mut self) -> Result<ReloadReport, ApiError> {
        if self.keepalived.is_some() {
            return self.reload_keepalived();
        }
        let Some(file) = &self.file else {
            return Ok(ReloadReport {
                changes: 0,
                warnings: Vec::new(),
            });
        };
        // A missing file is refused rather than read as an empty table: a reload
        // must never clear the director because a file went away.
        let wanted = file
            .load()
            .map_err(|e| ApiError::invalid(format!("reload refused: {e}")))?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "reload refused: {} does not exist; the running table is kept",
                    file.path().display()
                ))
            })?;
        let changes = diff(&self.table, &wanted);
        let n = changes.len();
        if n > 0 {
            self.apply(&changes)
                .map_err(|e| ApiError::new(e.kind, format!("reload refused: {}", e.message)))?;
        }
        Ok(ReloadReport {
            changes: n,
            warnings: Vec::new(),
        })
    }

    /// Serves `status` (the VRRP driver's) on `GET /v1/vrrp`.
    pub fn attach_xdp(&mut self, view: std::sync::Arc<std::sync::Mutex<crate::xdp::XdpView>>) {
        self.xdp = Some(view);
    }

    /// Serves the sync daemons' state and counters on `/metrics`.
    pub fn attach_sync(&mut self, daemons: crate::sync::SyncDaemons) {
        self.sync = Some(daemons);
    }

    /// The sync daemons' handle, when attached. Its `stats()` and `running()`
    /// are read after the control lock is released (the daemons take it).
    pub fn sync_daemons(&self) -> Option<crate::sync::SyncDaemons> {
        self.sync.clone()
    }

    /// The packet plane's counters (`GET /v1/xdp`), when it runs.
    pub fn xdp_view(&self) -> Option<crate::xdp::XdpView> {
        let view = self.xdp.as_ref()?;
        Some(match view.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }

    pub fn attach_vrrp(&mut self, status: std::sync::Arc<std::sync::Mutex<rvs_api::VrrpView>>) {
        self.vrrp = Some(status);
    }

    /// The VRRP status; `None` when no VRRP instance runs.
    pub fn vrrp_view(&self) -> Option<rvs_api::VrrpView> {
        self.vrrp
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// From now on `ka` owns the table: it is converged to at once.
    pub fn attach_keepalived(&mut self, mut ka: Keepalived) -> Result<usize, ApiError> {
        ka.set_applied(self.table.clone());
        self.keepalived = Some(ka);
        self.converge()
    }

    pub fn keepalived(&self) -> Option<&Keepalived> {
        self.keepalived.as_ref()
    }

    pub fn keepalived_mut(&mut self) -> Option<&mut Keepalived> {
        self.keepalived.as_mut()
    }

    /// Moves the running table to what the keepalived source wants now. The
    /// change is the difference from the table it last converged to; if the
    /// running table drifted from that (an operator's rvsadm changes), the
    /// difference from the running table is applied instead, and logged.
    pub fn converge(&mut self) -> Result<usize, ApiError> {
        let Some(ka) = &self.keepalived else {
            return Ok(0);
        };
        let wanted = ka.wanted(ka.applied().timeouts);
        let changes = diff(ka.applied(), &wanted);
        let n = changes.len();
        if n > 0 {
            if let Err(e) = self.apply(&changes) {
                tracing::warn!(error = %e, "the table drifted from keepalived.conf's; converging from the running table");
                let changes = diff(&self.table, &wanted);
                self.apply(&changes)?;
            }
        }
        let now = self.now();
        if let Some(ka) = &mut self.keepalived {
            ka.set_applied(wanted);
            for (up, what) in ka.health_mut().take_transitions() {
                let kind = if up {
                    EventKind::ServerUp
                } else {
                    EventKind::ServerDown
                };
                self.events.push(kind, what, now);
            }
        }
        Ok(n)
    }

    fn reload_keepalived(&mut self) -> Result<ReloadReport, ApiError> {
        let now = self.now();
        let Some(ka) = &mut self.keepalived else {
            return Ok(ReloadReport {
                changes: 0,
                warnings: Vec::new(),
            });
        };
        let saved = (ka.plan().clone(), ka.health().clone());
        let warnings = ka.reread(now).map_err(|e| {
            ApiError::invalid(format!(
                "reload refused, the running configuration is kept:\n{e}"
            ))
        })?;
        let mut warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        if self
            .keepalived
            .as_ref()
            .is_some_and(|ka| ka.plan().vrrp != saved.0.vrrp)
        {
            warnings.push(
                "the VRRP blocks changed: VRRP keeps running the configuration rvsd started with \
                 until rvsd restarts"
                    .to_string(),
            );
        }
        match self.converge() {
            Ok(changes) => Ok(ReloadReport { changes, warnings }),
            Err(e) => {
                if let Some(ka) = &mut self.keepalived {
                    ka.restore(saved.0, saved.1);
                }
                Err(ApiError::new(
                    e.kind,
                    format!(
                        "reload refused, the running configuration is kept: {}",
                        e.message
                    ),
                ))
            }
        }
    }

    /// Expires connections and runs the rate estimator up to now.
    pub fn tick(&mut self) {
        let now = self.now();
        self.plane.tick(&mut self.director, now);
        self.note_vrrp_changes(now);
        self.note_guard_changes(now);
    }

    /// Logs the packet plane's flood guard starting and stopping to drop.
    fn note_guard_changes(&mut self, now: Time) {
        let active = self.xdp_view().is_some_and(|v| v.guard_active);
        if active != self.guard_seen {
            let message = if active {
                "flood guard: the packet plane drops new flows over the upcall rate"
            } else {
                "flood guard: new flows are no longer dropped"
            };
            self.events.push(EventKind::FloodGuard, message, now);
            self.guard_seen = active;
        }
    }

    /// Logs each VRRP instance whose state changed since the last look.
    fn note_vrrp_changes(&mut self, now: Time) {
        let Some(view) = self.vrrp_view() else { return };
        for i in &view.instances {
            let before = self.vrrp_seen.insert(i.name.clone(), i.state.clone());
            match before {
                Some(b) if b != i.state => self.events.push(
                    EventKind::Vrrp,
                    format!("VRRP instance {}: {b} -> {}", i.name, i.state),
                    now,
                ),
                None => self.events.push(
                    EventKind::Vrrp,
                    format!("VRRP instance {}: {}", i.name, i.state),
                    now,
                ),
                _ => {}
            }
        }
    }

    /// The events newer than `seq`, oldest first.
    pub fn events_since(&self, seq: u64) -> Vec<rvs_api::EventView> {
        self.events.since(seq)
    }

    /// The health-checked real servers (empty without `-f keepalived.conf`).
    pub fn health_views(&self) -> Vec<rvs_api::HealthView> {
        self.keepalived
            .as_ref()
            .map(|ka| ka.health().views())
            .unwrap_or_default()
    }

    /// Reloads since start and how the last one ended.
    pub fn reloads(&self) -> rvs_api::ReloadsView {
        self.reloads.clone()
    }

    /// The table as `ipvsadm -L` shows it.
    pub fn table_view(&self) -> TableView {
        table_view(&self.director, &self.table)
    }

    /// The classifier's rules, canonical, in the order they were added.
    pub fn mark_rules(&self) -> Vec<MarkRuleSpec> {
        self.director
            .mark_rules()
            .iter()
            .map(MarkRuleSpec::of)
            .collect()
    }

    /// The connection entries, as `/proc/net/ip_vs_conn` lists them.
    pub fn conn_views(&self) -> Vec<ConnView> {
        let now = self.now();
        let d = &self.director;
        d.conns()
            .map(|(_, c)| ConnView {
                // proto 0 is a fwmark template, which the kernel names IP
                protocol: Protocol::from_number(c.key.proto)
                    .map_or("IP", Protocol::name)
                    .to_string(),
                client: c.key.caddr,
                client_port: c.key.cport,
                virtual_address: c.key.vaddr,
                virtual_port: c.key.vport,
                server: c.daddr,
                server_port: c.dport,
                state: d.state_name(c).to_string(),
                expires: c.expires.as_millis().saturating_sub(now.as_millis()) / 1000,
                template: c.flags.template,
            })
            .collect()
    }

    pub fn status(&self) -> StatusView {
        let d = &self.director;
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_seconds: self.epoch.elapsed().as_secs(),
            services: self.table.services.len(),
            servers: self.table.services.iter().map(|e| e.servers.len()).sum(),
            connections: d.conn_count(),
            state_file: self.file.as_ref().map(|f| f.path().display().to_string()),
            data_plane: self
                .publisher
                .as_ref()
                .map(|p| self.data_plane_view(&p.current())),
        }
    }

    fn data_plane_view(&self, served: &PlaneTable) -> DataPlaneView {
        let p = &self.plane;
        let c = &p.counters;
        DataPlaneView {
            kind: "socket".into(),
            listeners: p
                .listeners
                .iter()
                .map(|(lk, status)| ListenerView {
                    protocol: lk.transport.name().into(),
                    address: lk.addr.ip(),
                    port: lk.addr.port(),
                    listening: *status == ListenerStatus::Listening,
                    error: match status {
                        ListenerStatus::Listening => None,
                        ListenerStatus::Failed(e) => Some(e.clone()),
                    },
                })
                .collect(),
            unserved: served
                .unserved
                .iter()
                .map(|u| UnservedView {
                    service: ref_of(&u.service),
                    reason: u.reason.clone(),
                })
                .collect(),
            live_flows: p.live(),
            accepted: c.accepted,
            refused: c.refused,
            connect_failed: c.connect_failed,
            connect_failed_by_server: c
                .connect_failed_by_server
                .iter()
                .map(|(a, n)| ServerFailuresView {
                    address: a.ip(),
                    port: a.port(),
                    failures: *n,
                })
                .collect(),
            expired_open: c.expired_open,
        }
    }
}

/// The table of core `d`, services in the configured order of `table`.
fn table_view(d: &Director, table: &TableState) -> TableView {
    let mut services = Vec::with_capacity(table.services.len());
    for entry in &table.services {
        let key = key_of(&entry.spec.service);
        let Some(svc) = d.service_by_key(&key) else {
            continue;
        };
        let servers = d
            .dests_of(svc)
            .map(|dest| ServerView {
                spec: ServerSpec {
                    proxy_protocol: entry
                        .servers
                        .iter()
                        .find(|s| s.address == dest.config.addr && s.port == dest.config.port)
                        .and_then(|s| s.proxy_protocol),
                    ..server_spec_of(&dest.config)
                },
                active_conns: dest.active_conns,
                inactive_conns: dest.inactive_conns,
                persistent_conns: dest.persist_conns,
                stats: stats_view(dest.stats.counters()),
                rates: rates_view(dest.stats.rates()),
            })
            .collect();
        services.push(ServiceView {
            spec: service_spec_of(&svc.config),
            stats: stats_view(svc.stats.counters()),
            rates: rates_view(svc.stats.rates()),
            servers,
        });
    }
    let (tcp, tcpfin, udp) = d.timeouts().shown();
    TableView {
        version: IPVS_VERSION.to_string(),
        conn_tab_size: CONN_TAB_SIZE,
        timeouts: rvs_api::TimeoutsSpec { tcp, tcpfin, udp },
        services,
        marks: d.mark_rules().iter().map(MarkRuleSpec::of).collect(),
    }
}

fn stats_view(c: Counters) -> StatsView {
    StatsView {
        conns: c.conns,
        in_pkts: c.in_pkts,
        out_pkts: c.out_pkts,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
    }
}

fn rates_view(r: Rates) -> RatesView {
    RatesView {
        cps: r.cps,
        in_pps: r.in_pps,
        out_pps: r.out_pps,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
    }
}

/// Why the socket plane cannot serve service `key`, if it cannot.
fn socket_plane_refuses(key: &ServiceKey) -> Option<ApiError> {
    match key {
        ServiceKey::Addr {
            proto,
            addr,
            port: 0,
        } => Some(ApiError::new(
            ErrorKind::Invalid,
            format!(
                "{} {}: {}",
                proto.name(),
                std::net::SocketAddr::new(*addr, 0),
                rvs_proxy::PORT_ZERO
            ),
        )),
        _ => None,
    }
}

/// A fresh core holding `table`, or the index of the replayed command it refused.
fn rebuild(table: &TableState, now: Time) -> Result<Director, (usize, ApiError)> {
    let mut director = Director::new(DirectorConfig::default());
    for (index, cmd) in table.replay().iter().enumerate() {
        apply_to_core(&mut director, cmd, now).map_err(|e| (index, e))?;
    }
    Ok(director)
}

/// Applies one command to a core, checking in the kernel's order: the service is
/// looked up before a real server's own values are checked (ip_vs_ctl.c answers
/// ESRCH for a missing service whatever the server says).
pub fn apply_to_core(d: &mut Director, cmd: &Command, now: Time) -> Result<(), ApiError> {
    let need_service = |d: &Director, r: &rvs_api::ServiceRef| {
        let key = key_of(r);
        if d.service_by_key(&key).is_none() {
            return Err(ApiError::from(rvs_core::CoreError::NoService(key)));
        }
        Ok(key)
    };
    match cmd {
        Command::AddService { spec } => {
            // The kernel finds an existing service before it looks for the
            // scheduler: `-A` of an existing service with `-s bogus` is EEXIST.
            let key = key_of(&spec.service);
            if d.service_by_key(&key).is_some() {
                return Err(rvs_core::CoreError::ServiceExists(key).into());
            }
            d.add_service(spec.to_core()?)?;
        }
        Command::EditService { spec } => {
            need_service(d, &spec.service)?;
            d.edit_service(spec.to_core()?)?;
        }
        Command::DeleteService { service } => d.delete_service(&key_of(service), now)?,
        Command::Clear {} => d.clear(now),
        Command::AddServer { service, server } => {
            let key = need_service(d, service)?;
            d.add_dest(&key, server.to_core(&key)?)?;
        }
        Command::EditServer { service, server } => {
            let key = need_service(d, service)?;
            d.edit_dest(&key, server.to_core(&key)?)?;
        }
        Command::DeleteServer {
            service,
            address,
            port,
        } => {
            let key = need_service(d, service)?;
            d.delete_dest(&key, *address, *port, now)?;
        }
        Command::Zero { service } => {
            let key = service.as_ref().map(key_of);
            d.zero(key.as_ref())?;
        }
        Command::SetTimeouts { timeouts } => {
            d.set_timeouts(timeouts.tcp, timeouts.tcpfin, timeouts.udp)?;
        }
        Command::AddMarkRule { rule } => d.add_mark_rule(rule.to_core()?)?,
        Command::DeleteMarkRule { rule } => d.delete_mark_rule(&rule.to_core()?)?,
        Command::ClearMarkRules {} => {
            let all: Vec<_> = d.mark_rules().iter().cloned().collect();
            for r in &all {
                d.delete_mark_rule(r)?;
            }
        }
    }
    Ok(())
}

/// The commands that turn table `from` into table `to`, touching only what differs:
/// removed services and servers are deleted, changed ones edited, new ones added.
pub fn diff(from: &TableState, to: &TableState) -> Vec<Command> {
    let mut out = Vec::new();
    if from.timeouts != to.timeouts {
        out.push(Command::SetTimeouts {
            timeouts: to.timeouts,
        });
    }
    // Rules leave before any arrive, so a changed rule never overlaps its old
    // self on the way.
    for old in from.marks.iter().filter(|r| !to.marks.contains(r)) {
        out.push(Command::DeleteMarkRule { rule: old.clone() });
    }
    for new in to.marks.iter().filter(|r| !from.marks.contains(r)) {
        out.push(Command::AddMarkRule { rule: new.clone() });
    }
    for old in &from.services {
        if !to
            .services
            .iter()
            .any(|n| n.spec.service == old.spec.service)
        {
            out.push(Command::DeleteService {
                service: old.spec.service.clone(),
            });
        }
    }
    for new in &to.services {
        let service = new.spec.service.clone();
        match from.services.iter().find(|o| o.spec.service == service) {
            None => {
                out.push(Command::AddService {
                    spec: new.spec.clone(),
                });
                for s in &new.servers {
                    out.push(Command::AddServer {
                        service: service.clone(),
                        server: s.clone(),
                    });
                }
            }
            Some(old) => {
                if old.spec != new.spec {
                    out.push(Command::EditService {
                        spec: new.spec.clone(),
                    });
                }
                for s in &old.servers {
                    if !new
                        .servers
                        .iter()
                        .any(|n| n.address == s.address && n.port == s.port)
                    {
                        out.push(Command::DeleteServer {
                            service: service.clone(),
                            address: s.address,
                            port: s.port,
                        });
                    }
                }
                for s in &new.servers {
                    match old
                        .servers
                        .iter()
                        .find(|o| o.address == s.address && o.port == s.port)
                    {
                        None => out.push(Command::AddServer {
                            service: service.clone(),
                            server: s.clone(),
                        }),
                        Some(o) if o != s => out.push(Command::EditServer {
                            service: service.clone(),
                            // An edit without the extension keeps it: say "none"
                            // to turn it off.
                            server: ServerSpec {
                                proxy_protocol: s.proxy_protocol.or(Some(ProxyProtocolSpec::None)),
                                ..s.clone()
                            },
                        }),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::ServiceRef;

    fn svc(port: u16) -> ServiceRef {
        ServiceRef::Tcp {
            address: "10.0.0.1".parse().unwrap(),
            port,
        }
    }

    fn add_service(port: u16, sched: &str) -> Command {
        Command::AddService {
            spec: serde_json::from_value(serde_json::json!({
                "service": {"protocol": "tcp", "address": "10.0.0.1", "port": port},
                "scheduler": sched
            }))
            .unwrap(),
        }
    }

    fn add_server(port: u16, last: u8, weight: u32) -> Command {
        Command::AddServer {
            service: svc(port),
            server: serde_json::from_value(serde_json::json!({
                "address": format!("10.0.1.{last}"), "port": port, "weight": weight
            }))
            .unwrap(),
        }
    }

    #[test]
    fn a_failing_batch_changes_nothing_and_names_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        let mut c = Control::new(Some(file.clone())).unwrap();
        c.apply(&[add_service(80, "rr"), add_server(80, 2, 1)])
            .unwrap();
        let before = c.table_view();
        let saved = std::fs::read(file.path()).unwrap();
        let err = c
            .apply(&[add_server(80, 3, 1), add_service(80, "wlc")])
            .unwrap_err();
        assert_eq!(err.index, Some(1));
        assert_eq!(err.kind, ErrorKind::ServiceExists);
        assert_eq!(c.table_view(), before);
        assert_eq!(std::fs::read(file.path()).unwrap(), saved);
    }

    #[test]
    fn restart_restores_the_acknowledged_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        let mut c = Control::new(Some(file.clone())).unwrap();
        c.apply(&[add_service(80, "rr")]).unwrap();
        for last in 2..6 {
            c.apply(&[add_server(80, last, u32::from(last))]).unwrap();
        }
        c.apply(&[Command::DeleteServer {
            service: svc(80),
            address: "10.0.1.3".parse().unwrap(),
            port: 80,
        }])
        .unwrap();
        let view = c.table_view();
        drop(c);
        let again = Control::new(Some(file)).unwrap();
        assert_eq!(again.table_view(), view);
        // newest first, as the kernel lists them
        let order: Vec<String> = view.services[0]
            .servers
            .iter()
            .map(|s| s.spec.address.to_string())
            .collect();
        assert_eq!(order, ["10.0.1.5", "10.0.1.4", "10.0.1.2"]);
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let mut a = Control::new(None).unwrap();
        a.apply(&[
            add_service(80, "rr"),
            add_server(80, 2, 1),
            add_server(80, 3, 1),
            add_service(81, "wlc"),
        ])
        .unwrap();
        let mut b_table = a.configured().clone();
        b_table.services[0].servers[1].weight = 5;
        b_table.services.remove(1);
        b_table.services[0].spec.scheduler = "wrr".into();
        let cmds = diff(a.configured(), &b_table);
        assert_eq!(cmds.len(), 3, "{cmds:?}");
        a.apply(&cmds).unwrap();
        assert_eq!(a.configured(), &b_table);
        assert!(diff(a.configured(), &b_table).is_empty());
    }
}
