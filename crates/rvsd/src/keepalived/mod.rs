//! keepalived.conf mode (`rvsd -f FILE`): the file is the source of the table,
//! health checkers decide which of its real servers are in it, and a reload
//! applies only the difference.
//!
//! Invariants:
//! - The running table is always `wanted()`: the file's services, each with the
//!   real servers its health pool lets in (at their effective weights), plus the
//!   sorry server while quorum is lost, and the file's `fwmark_classifier` rules. Every change (a health transition, a
//!   reload) moves the table from the last table it converged to to the new one
//!   by a diff, so unchanged services and servers keep their connections and
//!   counters.
//! - A file with errors (or one rvs cannot run) is refused whole: the running
//!   configuration, table and health state stay, and the error is returned.
//! - A reload keeps the health state of every checker whose real server and
//!   settings did not change (rvs-health's pool reconfiguration).

pub mod health;
pub mod scripts;
pub mod translate;
pub mod vrrp_plan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rvs_api::{Command, ServerSpec, TimeoutsSpec};
use rvs_config::Diagnostic;
use rvs_core::Time;

use crate::state::{ServiceEntry, TableState};
use health::Health;
use translate::{Plan, TranslateError};

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}", render_errors(.0))]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Unrunnable(#[from] TranslateError),
}

fn render_errors(d: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, e) in d.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&e.to_string());
    }
    out
}

/// Loads and translates a file: Ok with its warnings, or the errors that refuse it.
pub fn load(path: &Path) -> Result<(Plan, Vec<Diagnostic>), LoadError> {
    let loaded = rvs_config::load(path);
    let errors: Vec<Diagnostic> = loaded.errors().cloned().collect();
    if !errors.is_empty() {
        return Err(LoadError::Invalid(errors));
    }
    let plan = translate::plan(&loaded.config)?;
    Ok((plan, loaded.diagnostics))
}

/// The keepalived.conf source of a running rvsd.
pub struct Keepalived {
    path: PathBuf,
    plan: Plan,
    health: Health,
    /// The table the last change converged to.
    applied: TableState,
    /// Wakes the health loop when checkers change (a reload).
    wake: Arc<tokio::sync::Notify>,
}

impl Keepalived {
    /// Loads `path`; the health state starts fresh (keepalived's start: every
    /// real server up unless `alpha`).
    pub fn start(path: &Path, now: Time) -> Result<(Keepalived, Vec<Diagnostic>), LoadError> {
        let (plan, warnings) = load(path)?;
        let health = Health::build(&plan, None, now);
        Ok((
            Keepalived {
                path: path.to_path_buf(),
                plan,
                health,
                applied: TableState::default(),
                wake: Arc::new(tokio::sync::Notify::new()),
            },
            warnings,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn applied(&self) -> &TableState {
        &self.applied
    }

    pub fn set_applied(&mut self, table: TableState) {
        self.applied = table;
    }

    /// Puts back a plan and health state saved before a reload that failed.
    pub fn restore(&mut self, plan: Plan, health: Health) {
        self.plan = plan;
        self.health = health;
        self.wake.notify_one();
    }

    /// Re-reads the file. On success the new plan and health pools (states of
    /// unchanged checkers kept) replace the old ones and the warnings are
    /// returned; on failure nothing changes.
    pub fn reread(&mut self, now: Time) -> Result<Vec<Diagnostic>, LoadError> {
        let (plan, warnings) = load(&self.path)?;
        let previous = std::mem::take(&mut self.health);
        self.health = Health::build(&plan, Some(previous), now);
        self.plan = plan;
        self.wake.notify_one();
        Ok(warnings)
    }

    /// The table the file and the health state ask for. `timeouts` are the
    /// running ones, kept unless the file sets `lvs_timeouts`.
    pub fn wanted(&self, timeouts: TimeoutsSpec) -> TableState {
        let mut table = TableState {
            timeouts,
            marks: self.plan.marks.clone(),
            ..TableState::default()
        };
        if let Some(t) = self.plan.timeouts {
            // 0 keeps a value, as `ipvsadm --set` does; the mirror never refuses it.
            let _ = table.apply(&Command::SetTimeouts { timeouts: t });
        }
        for vs in &self.plan.services {
            let mut servers: Vec<ServerSpec> = Vec::new();
            for e in self.health.effective(&vs.name) {
                let base = if e.sorry {
                    vs.sorry.as_ref().map(|s| &s.spec)
                } else {
                    vs.servers
                        .iter()
                        .find(|r| r.address() == e.address)
                        .map(|r| &r.spec)
                };
                if let Some(spec) = base.filter(|s| {
                    !servers
                        .iter()
                        .any(|o| o.address == s.address && o.port == s.port)
                }) {
                    servers.push(ServerSpec {
                        weight: e.weight,
                        ..spec.clone()
                    });
                }
            }
            for spec in &vs.services {
                table.services.push(ServiceEntry {
                    spec: spec.clone(),
                    servers: servers.clone(),
                });
            }
        }
        table
    }
}
