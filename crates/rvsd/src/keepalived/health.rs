//! The health checkers of a keepalived.conf, run: one rvs-health `ServicePool`
//! per `virtual_server`, its checkers' probes run on tokio, their outcomes fed
//! back under the control lock, the table converged after each change, and the
//! notify scripts started for each transition.
//!
//! Invariants:
//! - A checker has at most one probe in flight; its outcome is applied only if no
//!   reload happened meanwhile (the generation matches), since a reload
//!   registers every checker afresh as keepalived does (check_api.c).
//! - The pools' order and indexes follow the plan: pool `i` is
//!   `plan.services[i]`, checker `(s, c)` is checker `c` of real server `s`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rvs_config::model::Script;
use rvs_core::Time;
use rvs_health::machine::{
    CheckerConfig, CheckerId, EffectiveServer, HealthEvent, PoolConfig, RealServerConfig,
    ServicePool, SorryServerConfig,
};
use rvs_health::Outcome;
use tokio::sync::{mpsc, watch, Notify};

use super::scripts;
use super::translate::{CheckerPlan, Plan, VsPlan};
use crate::http::{lock, Shared};

/// A script to start, and why (for the log).
#[derive(Clone, Debug)]
pub struct PendingScript {
    pub script: Script,
    pub why: String,
}

#[derive(Clone, Debug)]
struct PoolRun {
    name: String,
    pool: ServicePool,
    /// `checkers[server][checker]`, as the pool numbers them.
    checkers: Vec<Vec<CheckerPlan>>,
    servers: Vec<SocketAddr>,
    notify_up: Vec<Option<Script>>,
    notify_down: Vec<Option<Script>>,
    quorum_up: Option<Script>,
    quorum_down: Option<Script>,
    /// The services the block puts in the table.
    services: Vec<rvs_api::ServiceRef>,
    /// Each server's last probe result (kept across reloads for the servers
    /// that stay).
    last: std::collections::HashMap<SocketAddr, rvs_api::CheckResultView>,
}

/// Every pool of the running configuration.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pools: Vec<PoolRun>,
    generation: u64,
    pending: Vec<PendingScript>,
    /// Server up/down transitions since the last `take_transitions`: (up, what).
    transitions: Vec<(bool, String)>,
}

/// One probe to run.
pub struct DueProbe {
    pub generation: u64,
    pub pool: usize,
    pub id: CheckerId,
    pub plan: CheckerPlan,
}

/// A draw for a checker's warmup: std's per-process random hasher keys.
fn random_draw() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A checker's identity across reloads: its type and every setting.
fn identity(plan: &CheckerPlan) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{plan:?}").hash(&mut h);
    h.finish()
}

fn pool_config(vs: &VsPlan) -> PoolConfig {
    PoolConfig {
        real_servers: vs
            .servers
            .iter()
            .map(|rs| RealServerConfig {
                address: rs.address(),
                weight: rs.spec.weight,
                inhibit_on_failure: rs.inhibit_on_failure,
                checkers: rs
                    .checkers
                    .iter()
                    .map(|c| CheckerConfig {
                        timing: c.timing,
                        alpha: c.alpha,
                        identity: identity(c),
                    })
                    .collect(),
            })
            .collect(),
        sorry_server: vs.sorry.as_ref().map(|s| SorryServerConfig {
            address: std::net::SocketAddr::new(s.spec.address, s.spec.port),
            inhibit: s.inhibit,
        }),
        quorum: vs.quorum,
        hysteresis: vs.hysteresis,
        omega: vs.omega,
    }
}

impl Health {
    /// The pools of `plan`. With `previous` (a reload), pools of virtual servers
    /// that stay are reconfigured so their servers keep their state; pools that
    /// go are cleared (their servers' down notifications run with omega).
    pub fn build(plan: &Plan, previous: Option<Health>, now: Time) -> Health {
        let mut old = previous.unwrap_or_default();
        let mut health = Health {
            pools: Vec::with_capacity(plan.services.len()),
            generation: old.generation + 1,
            pending: std::mem::take(&mut old.pending),
            transitions: std::mem::take(&mut old.transitions),
        };
        let mut random = random_draw;
        for vs in &plan.services {
            let cfg = pool_config(vs);
            let servers: Vec<SocketAddr> = vs.servers.iter().map(|rs| rs.address()).collect();
            let (pool, events, mut last) = match old.pools.iter().position(|p| p.name == vs.name) {
                Some(i) => {
                    let mut run = old.pools.swap_remove(i);
                    let events = run.pool.reconfigure(&cfg, now, &mut random);
                    (run.pool, events, run.last)
                }
                None => {
                    let (pool, events) = ServicePool::new(&cfg, now, &mut random);
                    (pool, events, Default::default())
                }
            };
            last.retain(|a, _| servers.contains(a));
            let run = PoolRun {
                name: vs.name.clone(),
                pool,
                checkers: vs.servers.iter().map(|rs| rs.checkers.clone()).collect(),
                servers,
                notify_up: vs.servers.iter().map(|rs| rs.notify_up.clone()).collect(),
                notify_down: vs.servers.iter().map(|rs| rs.notify_down.clone()).collect(),
                quorum_up: vs.quorum_up.clone(),
                quorum_down: vs.quorum_down.clone(),
                services: vs.services.iter().map(|s| s.service.clone()).collect(),
                last,
            };
            Health::note(&mut health.pending, &mut health.transitions, &run, &events);
            health.pools.push(run);
        }
        for mut gone in old.pools {
            let events = gone.pool.clear(false);
            Health::note(&mut health.pending, &mut health.transitions, &gone, &events);
        }
        health
    }

    /// Logs `events` of `run`, queues their scripts on `pending` and the
    /// server transitions on `transitions`.
    fn note(
        pending: &mut Vec<PendingScript>,
        transitions: &mut Vec<(bool, String)>,
        run: &PoolRun,
        events: &[HealthEvent],
    ) {
        for e in events {
            let (script, why) = match *e {
                HealthEvent::ServerUp(a) => {
                    tracing::warn!(service = %run.name, server = %a, "real server up: added");
                    transitions.push((true, format!("{}: real server {a} up", run.name)));
                    let i = run.servers.iter().position(|s| *s == a);
                    (
                        i.and_then(|i| run.notify_up[i].clone()),
                        format!("{} {a} up", run.name),
                    )
                }
                HealthEvent::ServerDown(a) => {
                    tracing::warn!(service = %run.name, server = %a, "real server down: removed");
                    transitions.push((false, format!("{}: real server {a} down", run.name)));
                    let i = run.servers.iter().position(|s| *s == a);
                    (
                        i.and_then(|i| run.notify_down[i].clone()),
                        format!("{} {a} down", run.name),
                    )
                }
                HealthEvent::QuorumUp => {
                    tracing::warn!(service = %run.name, "quorum gained");
                    (run.quorum_up.clone(), format!("{} quorum up", run.name))
                }
                HealthEvent::QuorumDown => {
                    tracing::warn!(service = %run.name, "quorum lost");
                    (run.quorum_down.clone(), format!("{} quorum down", run.name))
                }
                HealthEvent::WeightChanged(a, w) => {
                    tracing::info!(service = %run.name, server = %a, weight = w, "weight changed");
                    (None, String::new())
                }
            };
            if let Some(script) = script {
                pending.push(PendingScript { script, why });
            }
        }
    }

    /// The servers the pool of `name` puts in the table now.
    pub fn effective(&self, name: &str) -> Vec<EffectiveServer> {
        self.pools
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.pool.effective())
            .unwrap_or_default()
    }

    /// Starts every probe due at `now` (marks it in flight) and returns them.
    pub fn start_due(&mut self, now: Time) -> Vec<DueProbe> {
        let mut out = Vec::new();
        for (i, run) in self.pools.iter_mut().enumerate() {
            while let Some((id, at)) = run.pool.poll_due() {
                if at > now {
                    break;
                }
                if run.pool.start_probe(id, now).is_err() {
                    break;
                }
                if let Some(plan) = run.checkers.get(id.server).and_then(|c| c.get(id.checker)) {
                    out.push(DueProbe {
                        generation: self.generation,
                        pool: i,
                        id,
                        plan: plan.clone(),
                    });
                }
            }
        }
        out
    }

    /// When the next probe is due, if any is scheduled.
    pub fn next_due(&self) -> Option<Time> {
        self.pools
            .iter()
            .filter_map(|p| p.pool.poll_due().map(|(_, t)| t))
            .min()
    }

    /// Applies a probe's outcome; true when the table may have changed.
    pub fn handle(&mut self, probe: &DueProbe, outcome: &Outcome, now: Time) -> bool {
        if probe.generation != self.generation {
            return false;
        }
        let Some(run) = self.pools.get_mut(probe.pool) else {
            return false;
        };
        if let Outcome::Fail { reason } = outcome {
            tracing::debug!(service = %run.name, server = ?run.servers.get(probe.id.server), checker = probe.plan.kind, reason, "check failed");
        }
        if let Some(&server) = run.servers.get(probe.id.server) {
            let (ok, reason) = match outcome {
                Outcome::Fail { reason } => (false, Some(reason.to_string())),
                _ => (true, None),
            };
            run.last.insert(
                server,
                rvs_api::CheckResultView {
                    checker: probe.plan.kind.to_string(),
                    ok,
                    reason,
                    at_ms: now.as_millis(),
                },
            );
        }
        match run.pool.handle_outcome(probe.id, outcome, now) {
            Ok(events) if events.is_empty() => false,
            Ok(events) => {
                Health::note(&mut self.pending, &mut self.transitions, run, &events);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "health: outcome for an unknown checker");
                false
            }
        }
    }

    /// The server transitions since the last call: (up, what happened).
    pub fn take_transitions(&mut self) -> Vec<(bool, String)> {
        std::mem::take(&mut self.transitions)
    }

    /// The scripts queued by transitions since the last call.
    pub fn take_pending(&mut self) -> Vec<PendingScript> {
        std::mem::take(&mut self.pending)
    }

    /// Every checked server's state, for `GET /v1/health`, the dashboard and
    /// `/metrics`.
    pub fn views(&self) -> Vec<rvs_api::HealthView> {
        let mut out = Vec::new();
        for p in &self.pools {
            for a in &p.servers {
                out.push(rvs_api::HealthView {
                    virtual_server: p.name.clone(),
                    services: p.services.clone(),
                    address: a.ip(),
                    port: a.port(),
                    up: p.pool.is_server_up(*a).unwrap_or(false),
                    weight: p.pool.server_weight(*a),
                    last_check: p.last.get(a).cloned(),
                });
            }
        }
        out
    }
}

/// Runs one probe; checkers rvs cannot run pass (said once at load).
async fn probe(plan: &CheckerPlan) -> Outcome {
    if plan.unsupported.is_some() {
        return Outcome::Pass { weight: None };
    }
    rvs_health::probe::run(&plan.probe, &plan.target).await
}

/// The health loop: until `quit`, starts due probes, applies their outcomes,
/// converges the table and runs notify scripts. `wake` is signalled by reloads.
pub async fn run(shared: Shared, wake: Arc<Notify>, mut quit: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(DueProbe, Outcome)>();
    let epoch = lock(&shared).epoch();
    loop {
        let (due, next, scripts) = {
            let mut c = lock(&shared);
            let now = c.now();
            let Some(ka) = c.keepalived_mut() else { return };
            let health = ka.health_mut();
            let due = health.start_due(now);
            (due, health.next_due(), health.take_pending())
        };
        for s in scripts {
            scripts::run(&s.script, &s.why);
        }
        for d in due {
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = probe(&d.plan).await;
                let _ = tx.send((d, outcome));
            });
        }
        let sleep_to = match next {
            Some(t) => epoch + Duration::from_millis(t.as_millis()),
            None => tokio::time::Instant::now().into_std() + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_to.into()) => {}
            _ = wake.notified() => {}
            Some((d, outcome)) = rx.recv() => {
                let mut c = lock(&shared);
                let now = c.now();
                let changed = c
                    .keepalived_mut()
                    .is_some_and(|ka| ka.health_mut().handle(&d, &outcome, now));
                if changed {
                    if let Err(e) = c.converge() {
                        tracing::error!(error = %e, "health: the table could not follow a health change");
                    }
                }
            }
            _ = quit.wait_for(|v| *v) => break,
        }
    }
}
