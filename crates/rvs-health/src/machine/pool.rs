//! One virtual server's health: its real servers, their checkers, quorum and the
//! sorry server, with keepalived 2.2.7's rules (keepalived/check/ipwrapper.c).
//!
//! The pool mirrors the destinations keepalived would have put in the kernel table: a
//! map from address to weight, changed only by the add/delete/edit commands keepalived
//! issues (ipvswrapper.c, ipvs_cmd, including its inhibit_on_failure rewrites), so
//! [`ServicePool::effective`] is what the daemon must make the running table equal.
//! Invariants: an address appears at most once in the table; a real server is alive
//! only after all its checkers were up when it last changed (num_failed_checkers == 0);
//! the due-probe index holds exactly one entry per checker that is not probing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use rvs_core::time::Time;

use super::checker::{CheckTiming, CheckerChange, CheckerMachine};
use crate::Outcome;

/// One checker of a real server, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerConfig {
    /// Resolved timing (see [`CheckTiming`]).
    pub timing: CheckTiming,
    /// `alpha`: the checker starts down (keepalived/check/check_data.c).
    pub alpha: bool,
    /// Identity for reload: a checker of a kept real server carries its state over to
    /// the first new checker with the same identity, as keepalived does for checkers
    /// of the same type whose settings compare equal (ipwrapper.c, migrate_checkers).
    /// The daemon derives it from the checker's type and settings.
    pub identity: u64,
}

/// One real server, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServerConfig {
    /// Address and port; the server's identity (ipwrapper.h, rs_iseq).
    pub address: SocketAddr,
    /// Configured weight (keepalived's `iweight`).
    pub weight: u32,
    /// `inhibit_on_failure`: a down server stays in the table with weight 0.
    pub inhibit_on_failure: bool,
    /// Its checkers; a server without checkers is always up.
    pub checkers: Vec<CheckerConfig>,
}

/// The sorry server: put in when quorum is lost (its weight is 1, check_data.c,
/// alloc_ssvr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SorryServerConfig {
    pub address: SocketAddr,
    /// `sorry_server_inhibit`: kept in the table with weight 0 while not needed.
    pub inhibit: bool,
}

/// A virtual server's health settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub real_servers: Vec<RealServerConfig>,
    pub sorry_server: Option<SorryServerConfig>,
    /// `quorum` (default 1). Lowered to the sum of the configured weights when above
    /// it (check_data.c, validate_check_config).
    pub quorum: u32,
    /// `hysteresis` (default 0). Lowered to quorum − 1 when not below quorum
    /// (check_data.c).
    pub hysteresis: u32,
    /// `omega`: run the down notifiers when the daemon stops ([`ServicePool::clear`]).
    pub omega: bool,
}

/// A checker: `server` indexes [`PoolConfig::real_servers`], `checker` its checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckerId {
    pub server: usize,
    pub checker: usize,
}

/// One destination the table must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveServer {
    pub address: SocketAddr,
    pub weight: u32,
    /// Put in as the sorry server.
    pub sorry: bool,
}

/// What the daemon reports, logs and runs scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// notify_up of a real server (ipwrapper.c, do_rs_notifies with alive set).
    ServerUp(SocketAddr),
    /// notify_down of a real server. Also sent when an alpha checker's first verdict
    /// agrees with the server's state (ipwrapper.c, update_svr_checker_state).
    ServerDown(SocketAddr),
    /// quorum_up of the virtual server (ipwrapper.c, do_vs_notifies).
    QuorumUp,
    /// quorum_down of the virtual server.
    QuorumDown,
    /// The server's effective weight changed, up or not (ipwrapper.c, update_svr_wgt).
    WeightChanged(SocketAddr, u32),
}

/// An unknown [`CheckerId`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no checker {checker} on real server {server} in this pool")]
pub struct UnknownChecker {
    pub server: usize,
    pub checker: usize,
}

#[derive(Clone, Debug)]
struct RealServer {
    address: SocketAddr,
    iweight: i64,
    effective_weight: i64,
    inhibit: bool,
    alive: bool,
    set: bool,
    checkers: Vec<CheckerMachine>,
    identities: Vec<u64>,
    /// Per checker: dynamic weight − configured weight (check_misc.c `cur_weight`).
    weight_offsets: Vec<i64>,
}

impl RealServer {
    fn failed_checkers(&self) -> usize {
        self.checkers.iter().filter(|c| !c.is_up()).count()
    }
}

#[derive(Clone, Copy, Debug)]
struct SorryServer {
    address: SocketAddr,
    inhibit: bool,
    alive: bool,
    set: bool,
    duplicates_rs: bool,
}

const SORRY_WEIGHT: u32 = 1;

/// keepalived's real_weight (include/check_data.h): clamp to 0..=i32::MAX.
fn real_weight(weight: i64) -> u32 {
    u32::try_from(weight.clamp(0, i64::from(i32::MAX))).unwrap_or(0)
}

/// The kernel table as keepalived's commands leave it.
#[derive(Clone, Debug, Default)]
struct Table(BTreeMap<SocketAddr, EffectiveServer>);

enum Cmd {
    Add,
    Del,
}

impl Table {
    /// `cmd` for real server `rs`, at its effective weight (ipvswrapper.c, ipvs_cmd
    /// with the server's own inhibit flag and failed-checker count).
    fn server_cmd(&mut self, cmd: Cmd, rs: &mut RealServer) {
        let failed = rs.failed_checkers();
        let weight = real_weight(rs.effective_weight);
        self.cmd(
            cmd,
            rs.address,
            rs.inhibit,
            &mut rs.set,
            weight,
            failed,
            false,
        );
    }

    /// ipvswrapper.c, ipvs_cmd for a destination: inhibit turns a delete into an edit
    /// to weight 0 and an add of a present server into an edit; `set` tracks presence.
    #[allow(clippy::too_many_arguments)]
    fn cmd(
        &mut self,
        cmd: Cmd,
        address: SocketAddr,
        inhibit: bool,
        set: &mut bool,
        weight: u32,
        failed_checkers: usize,
        sorry: bool,
    ) {
        match cmd {
            Cmd::Del if inhibit => self.edit(address, 0),
            Cmd::Add if inhibit && *set => self.edit(address, weight),
            Cmd::Add => {
                let weight = if !*set && inhibit && failed_checkers > 0 {
                    0
                } else {
                    weight
                };
                *set = true;
                self.0.entry(address).or_insert(EffectiveServer {
                    address,
                    weight,
                    sorry,
                });
            }
            Cmd::Del => {
                *set = false;
                self.0.remove(&address);
            }
        }
    }

    fn edit(&mut self, address: SocketAddr, weight: u32) {
        if let Some(entry) = self.0.get_mut(&address) {
            entry.weight = weight;
        }
    }
}

/// One virtual server's health state: owns the checkers of its real servers.
#[derive(Clone, Debug)]
pub struct ServicePool {
    servers: Vec<RealServer>,
    sorry: Option<SorryServer>,
    quorum: u32,
    hysteresis: u32,
    omega: bool,
    quorum_up: bool,
    table: Table,
    due: BTreeSet<(Time, CheckerId)>,
}

/// quorum and hysteresis after keepalived's corrections (check_data.c).
fn clamp_quorum(config: &PoolConfig) -> (u32, u32) {
    let total: u64 = config
        .real_servers
        .iter()
        .map(|rs| u64::from(rs.weight))
        .sum();
    let quorum = u32::try_from(u64::from(config.quorum).min(total)).unwrap_or(config.quorum);
    let hysteresis = if config.hysteresis >= quorum {
        quorum.saturating_sub(1)
    } else {
        config.hysteresis
    };
    (quorum, hysteresis)
}

fn build_servers(
    config: &PoolConfig,
    now: Time,
    random: &mut dyn FnMut() -> u64,
) -> Vec<RealServer> {
    config
        .real_servers
        .iter()
        .map(|rs| RealServer {
            address: rs.address,
            iweight: i64::from(rs.weight),
            effective_weight: i64::from(rs.weight),
            inhibit: rs.inhibit_on_failure,
            alive: false,
            set: false,
            checkers: rs
                .checkers
                .iter()
                .map(|c| CheckerMachine::registered(c.timing, c.alpha, now, random()))
                .collect(),
            identities: rs.checkers.iter().map(|c| c.identity).collect(),
            weight_offsets: vec![0; rs.checkers.len()],
        })
        .collect()
}

impl ServicePool {
    /// The pool at daemon start (`now`); `random` supplies one draw per checker for its
    /// warmup. Alpha checkers start down, so their servers start down; the others start
    /// up and are put in the table at once; quorum is then evaluated, which may run
    /// quorum_up or put the sorry server in (ipwrapper.c, init_service_vs,
    /// init_service_rs, update_quorum_state with init). The returned events are the
    /// notifications keepalived sends at start (none for servers, unless quorum).
    pub fn new(
        config: &PoolConfig,
        now: Time,
        random: &mut dyn FnMut() -> u64,
    ) -> (Self, Vec<HealthEvent>) {
        let (quorum, hysteresis) = clamp_quorum(config);
        let mut servers = build_servers(config, now, random);
        for rs in &mut servers {
            for checker in &mut rs.checkers {
                let retry = checker.timing().retry;
                checker.set_retries_used(retry);
            }
        }
        let mut pool = ServicePool {
            servers,
            sorry: Self::sorry_from(config),
            quorum,
            hysteresis,
            omega: config.omega,
            quorum_up: u64::from(quorum) + u64::from(hysteresis) == 0,
            table: Table::default(),
            due: BTreeSet::new(),
        };
        pool.rebuild_due();
        let mut events = Vec::new();
        pool.init_service(&mut events, |_| false);
        (pool, events)
    }

    fn sorry_from(config: &PoolConfig) -> Option<SorryServer> {
        config.sorry_server.map(|s| SorryServer {
            address: s.address,
            inhibit: s.inhibit,
            alive: false,
            set: false,
            duplicates_rs: config.real_servers.iter().any(|rs| rs.address == s.address),
        })
    }

    fn rebuild_due(&mut self) {
        self.due.clear();
        for (server, rs) in self.servers.iter().enumerate() {
            for (checker, machine) in rs.checkers.iter().enumerate() {
                if let Some(at) = machine.poll_due() {
                    self.due.insert((at, CheckerId { server, checker }));
                }
            }
        }
    }

    /// ipwrapper.c init_service_vs / init_service_rs; `reloaded(i)` says whether
    /// server `i` was carried over by a reload (those keep their table state).
    fn init_service(&mut self, events: &mut Vec<HealthEvent>, reloaded: impl Fn(usize) -> bool) {
        for i in 0..self.servers.len() {
            if reloaded(i) {
                continue;
            }
            let rs = &mut self.servers[i];
            let failed = rs.failed_checkers();
            if (failed == 0 && !rs.alive) || (rs.inhibit && !rs.set) {
                self.table.server_cmd(Cmd::Add, rs);
                if failed == 0 {
                    rs.alive = true;
                }
            }
        }
        self.update_quorum_state(true, events);
        if let Some(sorry) = self.sorry.as_mut() {
            if sorry.inhibit && !sorry.set {
                if sorry.duplicates_rs {
                    sorry.set = true;
                } else {
                    self.table.cmd(
                        Cmd::Add,
                        sorry.address,
                        true,
                        &mut sorry.set,
                        SORRY_WEIGHT,
                        1,
                        true,
                    );
                }
            }
        }
    }

    fn live_weight(&self) -> i64 {
        self.servers
            .iter()
            .filter(|rs| rs.alive)
            .map(|rs| i64::from(real_weight(rs.effective_weight)))
            .sum()
    }

    fn sorry_alive(&self) -> bool {
        self.sorry.is_some_and(|s| s.alive)
    }

    /// Whether real-server changes reach the table: with quorum, or while no sorry
    /// server stands in (ipwrapper.c, perform_svr_state and update_svr_wgt).
    fn servers_in_charge(&self) -> bool {
        self.quorum_up || !self.sorry_alive()
    }

    /// ipwrapper.c, update_quorum_state: gained at Σ ≥ quorum + hysteresis while down;
    /// lost at Σ == 0 or Σ < quorum − hysteresis while up. Losing it swaps the live
    /// servers for the sorry server (if any); gaining it swaps them back.
    fn update_quorum_state(&mut self, init: bool, events: &mut Vec<HealthEvent>) {
        let sum = self.live_weight();
        let quorum = i64::from(self.quorum);
        let hysteresis = i64::from(self.hysteresis);
        let threshold = if self.quorum_up {
            quorum - hysteresis
        } else {
            quorum + hysteresis
        };
        if !self.quorum_up && sum >= threshold {
            self.quorum_up = true;
            if let Some(mut sorry) = self.sorry.filter(|s| s.alive) {
                self.table.cmd(
                    Cmd::Del,
                    sorry.address,
                    sorry.inhibit,
                    &mut sorry.set,
                    SORRY_WEIGHT,
                    0,
                    true,
                );
                sorry.alive = false;
                self.sorry = Some(sorry);
                self.perform_quorum_state(Cmd::Add);
            }
            events.push(HealthEvent::QuorumUp);
        } else if (self.quorum_up && (sum == 0 || sum < threshold))
            || (init && !self.quorum_up && self.sorry.is_some_and(|s| !s.alive))
        {
            self.quorum_up = false;
            if let Some(mut sorry) = self.sorry.filter(|s| !s.alive) {
                self.perform_quorum_state(Cmd::Del);
                self.table.cmd(
                    Cmd::Add,
                    sorry.address,
                    sorry.inhibit,
                    &mut sorry.set,
                    SORRY_WEIGHT,
                    0,
                    true,
                );
                sorry.alive = true;
                self.sorry = Some(sorry);
            }
            events.push(HealthEvent::QuorumDown);
        }
    }

    /// ipwrapper.c, perform_quorum_state: add or remove every alive real server.
    fn perform_quorum_state(&mut self, cmd: Cmd) {
        let add = matches!(cmd, Cmd::Add);
        for rs in self.servers.iter_mut().filter(|rs| rs.alive) {
            let cmd = if add { Cmd::Add } else { Cmd::Del };
            self.table.server_cmd(cmd, rs);
        }
    }

    /// ipwrapper.c, perform_svr_state: a real server goes up or down.
    fn perform_svr_state(&mut self, server: usize, alive: bool, events: &mut Vec<HealthEvent>) {
        if self.servers[server].alive == alive {
            return;
        }
        let in_charge = self.servers_in_charge();
        let rs = &mut self.servers[server];
        if in_charge {
            let cmd = if alive { Cmd::Add } else { Cmd::Del };
            self.table.server_cmd(cmd, rs);
        }
        rs.alive = alive;
        events.push(if alive {
            HealthEvent::ServerUp(rs.address)
        } else {
            HealthEvent::ServerDown(rs.address)
        });
        self.update_quorum_state(false, events);
    }

    /// ipwrapper.c, update_svr_wgt with quorum update.
    fn update_svr_wgt(&mut self, server: usize, weight: i64, events: &mut Vec<HealthEvent>) {
        let in_charge = self.servers_in_charge();
        let rs = &mut self.servers[server];
        let old = real_weight(rs.effective_weight);
        let new = real_weight(weight);
        rs.effective_weight = weight;
        if old != new {
            events.push(HealthEvent::WeightChanged(rs.address, new));
            if rs.set && rs.alive && in_charge {
                self.table.edit(rs.address, new);
            }
            self.update_quorum_state(false, events);
        }
    }

    /// The next probe to start: the checker due first, and when. O(log n).
    pub fn poll_due(&self) -> Option<(CheckerId, Time)> {
        self.due.first().map(|&(at, id)| (id, at))
    }

    fn machine(&self, id: CheckerId) -> Result<&CheckerMachine, UnknownChecker> {
        self.servers
            .get(id.server)
            .and_then(|rs| rs.checkers.get(id.checker))
            .ok_or(UnknownChecker {
                server: id.server,
                checker: id.checker,
            })
    }

    /// A checker's machine (state, timing, current URL).
    pub fn checker(&self, id: CheckerId) -> Result<&CheckerMachine, UnknownChecker> {
        self.machine(id)
    }

    /// The daemon started this checker's probe at `now`; it is not due again until
    /// its outcome is handled.
    pub fn start_probe(&mut self, id: CheckerId, now: Time) -> Result<(), UnknownChecker> {
        let due = self.machine(id)?.poll_due();
        if let Some(at) = due {
            self.due.remove(&(at, id));
        }
        self.servers[id.server].checkers[id.checker].start_probe(now);
        Ok(())
    }

    /// A probe's outcome, finished at `now`: reschedule the checker and apply its
    /// verdict to the server, quorum and table (ipwrapper.c update_svr_checker_state:
    /// a server goes up when its last failed checker passes, down when its first
    /// checker fails; check_misc.c: a passing MISC_CHECK with misc_dynamic sets the
    /// weight to its exit code − 2, a final failure restores the configured weight).
    pub fn handle_outcome(
        &mut self,
        id: CheckerId,
        outcome: &Outcome,
        now: Time,
    ) -> Result<Vec<HealthEvent>, UnknownChecker> {
        if let Some(at) = self.machine(id)?.poll_due() {
            self.due.remove(&(at, id));
        }
        let mut events = Vec::new();
        let failed_before = self.servers[id.server].failed_checkers();
        let rs = &mut self.servers[id.server];
        let machine = &mut rs.checkers[id.checker];
        let was_up = machine.is_up();
        // The machine flips its own state; keepalived changes the server first and
        // the checker after, so undo the flip until the server is handled.
        let change = machine.handle_outcome(outcome, now);
        let dynamic = machine.dynamic_weight();
        if let Some(at) = machine.poll_due() {
            self.due.insert((at, id));
        }
        rs.checkers[id.checker].set_up(was_up);
        let iweight = rs.iweight;
        let offset = &mut rs.weight_offsets[id.checker];
        match outcome {
            Outcome::Pass { weight } => {
                let new_offset = weight.map_or(0, |w| i64::from(w) - iweight);
                if new_offset != *offset {
                    let weight = rs.effective_weight - *offset + new_offset;
                    *offset = new_offset;
                    self.update_svr_wgt(id.server, weight, &mut events);
                }
            }
            Outcome::Fail { .. } => {
                if dynamic.is_none() && *offset != 0 {
                    rs.effective_weight -= *offset;
                    *offset = 0;
                }
            }
        }
        match change {
            Some(CheckerChange::Up) => {
                if failed_before <= 1 {
                    self.perform_svr_state(id.server, true, &mut events);
                }
                self.servers[id.server].checkers[id.checker].set_up(true);
            }
            Some(CheckerChange::Down) => {
                if failed_before == 0 {
                    self.perform_svr_state(id.server, false, &mut events);
                }
                self.servers[id.server].checkers[id.checker].set_up(false);
            }
            Some(CheckerChange::FirstVerdictNotify) => {
                let rs = &self.servers[id.server];
                events.push(if rs.alive {
                    HealthEvent::ServerUp(rs.address)
                } else {
                    HealthEvent::ServerDown(rs.address)
                });
            }
            None => {}
        }
        Ok(events)
    }

    /// The destinations the table must hold now, sorted by address, each once.
    pub fn effective(&self) -> Vec<EffectiveServer> {
        self.table.0.values().copied().collect()
    }

    /// Whether the real server at `address` is up (alive).
    pub fn is_server_up(&self, address: SocketAddr) -> Option<bool> {
        self.servers
            .iter()
            .find(|rs| rs.address == address)
            .map(|rs| rs.alive)
    }

    /// The weight keepalived counts for the server (real_weight(effective_weight)).
    pub fn server_weight(&self, address: SocketAddr) -> Option<u32> {
        self.servers
            .iter()
            .find(|rs| rs.address == address)
            .map(|rs| real_weight(rs.effective_weight))
    }

    /// Whether the virtual server has quorum.
    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    /// quorum and hysteresis in force, after keepalived's corrections.
    pub fn quorum_settings(&self) -> (u32, u32) {
        (self.quorum, self.hysteresis)
    }

    /// Empty the table, as keepalived does when the virtual server goes away on reload
    /// (`stopping` false) or the daemon stops (`stopping` true): every server is
    /// removed, alive ones get notify_down, and quorum_down runs if quorum is lost;
    /// when stopping, the notifications are sent only with `omega`, and quorum_down
    /// runs even if quorum was already down (ipwrapper.c, clear_service_vs,
    /// clear_service_rs, update_vs_notifies).
    pub fn clear(&mut self, stopping: bool) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        let notify = !stopping || self.omega;
        if let Some(sorry) = self.sorry.as_mut() {
            if sorry.set && !sorry.duplicates_rs {
                self.table.0.remove(&sorry.address);
            }
            sorry.set = false;
            sorry.alive = false;
        }
        for rs in &mut self.servers {
            if !rs.set {
                continue;
            }
            self.table.0.remove(&rs.address);
            rs.set = false;
            if rs.alive {
                rs.alive = false;
                if notify {
                    events.push(HealthEvent::ServerDown(rs.address));
                }
            }
        }
        let threshold = i64::from(self.quorum) - i64::from(self.hysteresis);
        let sum = self.live_weight();
        if stopping || (self.quorum_up && (sum == 0 || sum < threshold)) {
            self.quorum_up = false;
            if notify {
                events.push(HealthEvent::QuorumDown);
            }
        }
        self.due.clear();
        events
    }

    /// Apply a reloaded configuration for the same virtual server at `now`, as
    /// keepalived's SIGHUP does (ipwrapper.c clear_diff_services, clear_diff_rs,
    /// migrate_checkers, clear_diff_s_srv, check_new_rs_state, then init_service_vs):
    /// - servers gone from the configuration leave the table (notify_down if alive);
    /// - kept servers (same address) keep alive/in-table state; their weight
    ///   becomes the new configured weight plus their dynamic offsets
    ///   (check_daemon.c set_effective_weights, then init_service_rs applies a
    ///   change with update_svr_wgt); each new checker takes the state of the first old
    ///   checker with the same identity; if the server then has a failed checker, or
    ///   is down with no checker run, its checkers that have not run need one failure
    ///   only and alpha ones start down;
    /// - new servers start up, or down if they have alpha checkers;
    /// - quorum state is kept and re-evaluated against the new quorum/hysteresis.
    ///
    /// Every checker is registered afresh: its first probe is at
    /// `now + BOOTSTRAP_DELAY + warmup draw`. Checker ids follow the new configuration.
    pub fn reconfigure(
        &mut self,
        config: &PoolConfig,
        now: Time,
        random: &mut dyn FnMut() -> u64,
    ) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        let (quorum, hysteresis) = clamp_quorum(config);
        let mut new_servers = build_servers(config, now, random);
        for rs in &mut new_servers {
            for checker in &mut rs.checkers {
                checker.set_up(true);
            }
        }
        let old_servers = std::mem::take(&mut self.servers);
        let old_quorum = (self.quorum, self.hysteresis);
        let old_quorum_up = self.quorum_up;
        let old_sorry = self.sorry.take();
        self.servers = new_servers;
        self.sorry = Self::sorry_from(config);
        self.quorum = quorum;
        self.hysteresis = hysteresis;
        self.omega = config.omega;
        let mut reloaded = vec![false; self.servers.len()];
        let mut old_alive_weight: i64 = 0;

        for old in &old_servers {
            let Some(index) = self.servers.iter().position(|rs| rs.address == old.address) else {
                if old.set {
                    self.table.0.remove(&old.address);
                }
                if old.alive {
                    events.push(HealthEvent::ServerDown(old.address));
                }
                continue;
            };
            if old.alive {
                old_alive_weight += i64::from(real_weight(old.effective_weight));
            }
            reloaded[index] = true;
            self.migrate(index, old, &mut events);
        }

        // update_vs_notifies on the old virtual server, with its old settings.
        let old_threshold = i64::from(old_quorum.0) - i64::from(old_quorum.1);
        if old_quorum_up && (old_alive_weight == 0 || old_alive_weight < old_threshold) {
            events.push(HealthEvent::QuorumDown);
        }

        self.carry_sorry(old_sorry);

        // check_new_rs_state: new servers with alpha checkers start down.
        for (i, rs) in self.servers.iter_mut().enumerate() {
            if reloaded[i] {
                continue;
            }
            for checker in &mut rs.checkers {
                if checker.is_alpha() {
                    checker.set_up(false);
                    rs.alive = false;
                }
            }
        }
        self.rebuild_due();
        self.init_service(&mut events, |i| reloaded[i]);
        events
    }

    /// ipwrapper.c, clear_diff_rs and migrate_checkers for one kept server. The new
    /// pool's quorum flag is the old one here (copied before the diff).
    fn migrate(&mut self, index: usize, old: &RealServer, events: &mut Vec<HealthEvent>) {
        let rs = &mut self.servers[index];
        rs.alive = old.alive;
        rs.set = old.set;
        rs.effective_weight = old.effective_weight;
        let iweight = rs.iweight;
        for (n, identity) in rs.identities.clone().into_iter().enumerate() {
            let Some(o) = old.identities.iter().position(|&i| i == identity) else {
                continue;
            };
            let (old_c, new_c) = (&old.checkers[o], &mut rs.checkers[n]);
            if old_c.has_run() && old_c.is_up() != new_c.is_up() {
                new_c.set_up(old_c.is_up());
            }
            new_c.set_has_run(old_c.has_run());
            let new_retry = new_c.timing().retry;
            if old_c.retries_used() > 0 && new_retry > 0 {
                new_c.set_retries_used(old_c.retries_used().min(new_retry - 1));
            }
            new_c.set_dynamic_weight(old_c.dynamic_weight());
            rs.weight_offsets[n] = old_c.dynamic_weight().map_or(0, |w| i64::from(w) - iweight);
        }
        let any_run = rs.checkers.iter().any(|c| c.has_run());
        if rs.failed_checkers() > 0 || (!rs.alive && !any_run) {
            for checker in rs.checkers.iter_mut().filter(|c| !c.has_run()) {
                if checker.is_alpha() {
                    checker.set_up(false);
                }
                let retry = checker.timing().retry;
                checker.set_retries_used(retry);
            }
        }
        // check_daemon.c, set_effective_weights, then init_service_rs: a kept
        // server's weight is the new configured weight plus its checkers'
        // dynamic offsets, and a change is applied (update_svr_wgt).
        let target = rs.iweight + rs.weight_offsets.iter().sum::<i64>();
        if target != rs.effective_weight {
            self.update_svr_wgt(index, target, events);
        }
        let rs = &mut self.servers[index];
        let failed = rs.failed_checkers();
        if failed == 0 && !rs.alive {
            self.perform_svr_state(index, true, events);
        } else if failed > 0 && rs.set != rs.inhibit {
            let cmd = if rs.inhibit { Cmd::Add } else { Cmd::Del };
            self.table.server_cmd(cmd, rs);
        }
    }

    /// ipwrapper.c, clear_diff_s_srv.
    fn carry_sorry(&mut self, old: Option<SorryServer>) {
        let Some(mut old) = old else { return };
        match self.sorry.as_mut() {
            Some(new) if new.address == old.address => {
                new.alive = old.alive;
                new.set = old.set;
            }
            _ => {
                if old.inhibit {
                    if !old.alive && old.set {
                        old.alive = true;
                    }
                    old.inhibit = false;
                }
                if old.alive {
                    self.table.0.remove(&old.address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn a() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 80))
    }

    #[test]
    fn real_weight_clamps_like_keepalived() {
        assert_eq!(real_weight(-3), 0);
        assert_eq!(real_weight(7), 7);
        assert_eq!(real_weight(i64::MAX), i32::MAX as u32);
    }

    #[test]
    fn inhibit_rewrites_delete_and_re_add_as_edits() {
        let mut table = Table::default();
        let mut set = false;
        // First add of a server with a failed checker under inhibit: weight 0.
        table.cmd(Cmd::Add, a(), true, &mut set, 5, 1, false);
        assert!(set);
        assert_eq!(table.0[&a()].weight, 0);
        table.cmd(Cmd::Add, a(), true, &mut set, 5, 0, false);
        assert_eq!(table.0[&a()].weight, 5);
        table.cmd(Cmd::Del, a(), true, &mut set, 5, 1, false);
        assert!(set);
        assert_eq!(table.0[&a()].weight, 0);
        table.cmd(Cmd::Del, a(), false, &mut set, 5, 1, false);
        assert!(!set);
        assert!(table.0.is_empty());
    }
}
