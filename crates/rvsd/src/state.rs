//! The table as configured (services, their real servers, timeouts), kept in the
//! order changes arrived, and its crash-safe file.
//!
//! Invariants: `TableState::apply` mirrors the core's semantics for every command
//! that the core accepted (the caller applies to the core first); servers are kept
//! oldest first, so replaying them into a fresh core rebuilds the kernel's
//! newest-first lists. A state file is only ever replaced whole: write a temporary
//! file beside it, fsync it, rename it over the old one, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rvs_api::{
    Command, MarkRuleSpec, ProxyProtocolSpec, ServerSpec, ServiceRef, ServiceSpec, TimeoutsSpec,
};
use serde::{Deserialize, Serialize};

/// Format version of the state file.
pub const STATE_VERSION: u32 = 1;

/// One service and its real servers, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
}

/// Everything a restart must restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableState {
    pub version: u32,
    pub timeouts: TimeoutsSpec,
    pub services: Vec<ServiceEntry>,
    /// The firewall-mark classifier's rules, canonical, in the order added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<MarkRuleSpec>,
}

impl Default for TableState {
    fn default() -> Self {
        TableState {
            version: STATE_VERSION,
            timeouts: TimeoutsSpec {
                tcp: 900,
                tcpfin: 120,
                udp: 300,
            },
            services: Vec::new(),
            marks: Vec::new(),
        }
    }
}

impl TableState {
    fn position(&self, service: &ServiceRef) -> Option<usize> {
        self.services
            .iter()
            .position(|e| &e.spec.service == service)
    }

    /// Mirrors a command the core has accepted. Commands the core refused never
    /// reach here; a mismatch is reported rather than ignored.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), String> {
        match cmd {
            Command::AddService { spec } => {
                if self.position(&spec.service).is_some() {
                    return Err("service already in state".into());
                }
                self.services.push(ServiceEntry {
                    spec: spec.clone(),
                    servers: Vec::new(),
                });
            }
            Command::EditService { spec } => {
                let i = self.position(&spec.service).ok_or("no such service")?;
                self.services[i].spec = spec.clone();
            }
            Command::DeleteService { service } => {
                let i = self.position(service).ok_or("no such service")?;
                self.services.remove(i);
            }
            Command::Clear {} => self.services.clear(),
            Command::AddServer { service, server } => {
                let i = self.position(service).ok_or("no such service")?;
                let mut server = server.clone();
                if server.proxy_protocol == Some(ProxyProtocolSpec::None) {
                    server.proxy_protocol = None;
                }
                self.services[i].servers.push(server);
            }
            Command::EditServer { service, server } => {
                let i = self.position(service).ok_or("no such service")?;
                let s = self.services[i]
                    .servers
                    .iter_mut()
                    .find(|s| s.address == server.address && s.port == server.port)
                    .ok_or("no such server")?;
                // An edit that does not name the extension keeps it (rvsadm -e
                // knows nothing of it).
                let proxy_protocol = match server.proxy_protocol {
                    None => s.proxy_protocol,
                    Some(ProxyProtocolSpec::None) => None,
                    Some(v) => Some(v),
                };
                *s = ServerSpec {
                    proxy_protocol,
                    ..server.clone()
                };
            }
            Command::DeleteServer {
                service,
                address,
                port,
            } => {
                let i = self.position(service).ok_or("no such service")?;
                let servers = &mut self.services[i].servers;
                let j = servers
                    .iter()
                    .position(|s| s.address == *address && s.port == *port)
                    .ok_or("no such server")?;
                servers.remove(j);
            }
            Command::Zero { .. } => {}
            Command::AddMarkRule { rule } => {
                let rule = canonical(rule)?;
                if self.marks.contains(&rule) {
                    return Err("mark rule already in state".into());
                }
                self.marks.push(rule);
            }
            Command::DeleteMarkRule { rule } => {
                let rule = canonical(rule)?;
                let i = self
                    .marks
                    .iter()
                    .position(|r| r == &rule)
                    .ok_or("no such mark rule")?;
                self.marks.remove(i);
            }
            Command::ClearMarkRules {} => self.marks.clear(),
            Command::SetTimeouts { timeouts } => {
                if timeouts.tcp != 0 {
                    self.timeouts.tcp = timeouts.tcp;
                }
                if timeouts.tcpfin != 0 {
                    self.timeouts.tcpfin = timeouts.tcpfin;
                }
                if timeouts.udp != 0 {
                    self.timeouts.udp = timeouts.udp;
                }
            }
        }
        Ok(())
    }

    /// The commands that rebuild this state on an empty core.
    pub fn replay(&self) -> Vec<Command> {
        let mut out = vec![Command::SetTimeouts {
            timeouts: self.timeouts,
        }];
        for e in &self.services {
            out.push(Command::AddService {
                spec: e.spec.clone(),
            });
            for s in &e.servers {
                out.push(Command::AddServer {
                    service: e.spec.service.clone(),
                    server: s.clone(),
                });
            }
        }
        out.extend(
            self.marks
                .iter()
                .map(|rule| Command::AddMarkRule { rule: rule.clone() }),
        );
        out
    }
}

/// The canonical form of a rule the core accepted.
fn canonical(rule: &MarkRuleSpec) -> Result<MarkRuleSpec, String> {
    rule.to_core()
        .map(|r| MarkRuleSpec::of(&r))
        .map_err(|e| e.message)
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid rvs state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path}: state file version {found} is not supported (this rvsd reads {STATE_VERSION})"
    )]
    Version { path: PathBuf, found: u32 },
}

/// The file that holds the last acknowledged table.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The saved state, or `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<TableState>, StateError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let state: TableState =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Replaces the file with `state`, durably: when this returns Ok, a crash at any
    /// later moment leaves exactly `state` on disk; before it, the old file.
    pub fn save(&self, state: &TableState) -> Result<(), StateError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| self.io(e))?;
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Parse {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.json".into());
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| self.io(e))?;
            f.write_all(&bytes).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> ServiceRef {
        ServiceRef::Tcp {
            address: "10.0.0.1".parse().unwrap(),
            port,
        }
    }

    #[test]
    fn save_then_load_round_trips_and_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("sub/state.json"));
        assert_eq!(file.load().unwrap(), None);
        let mut st = TableState::default();
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "service": {"protocol": "tcp", "address": "10.0.0.1", "port": 80}
        }))
        .unwrap();
        st.apply(&Command::AddService { spec }).unwrap();
        file.save(&st).unwrap();
        assert_eq!(file.load().unwrap(), Some(st.clone()));
        st.apply(&Command::Clear {}).unwrap();
        file.save(&st).unwrap();
        assert_eq!(file.load().unwrap().unwrap().services.len(), 0);
        // no temporary file is left behind
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn corrupt_or_future_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            StateFile::new(&path).load(),
            Err(StateError::Parse { .. })
        ));
        fs::write(
            &path,
            br#"{"version":9,"timeouts":{"tcp":1,"tcpfin":1,"udp":1},"services":[]}"#,
        )
        .unwrap();
        assert!(matches!(
            StateFile::new(&path).load(),
            Err(StateError::Version { found: 9, .. })
        ));
    }

    #[test]
    fn mirror_keeps_server_order_and_edits_in_place() {
        let mut st = TableState::default();
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "service": {"protocol": "tcp", "address": "10.0.0.1", "port": 80}
        }))
        .unwrap();
        st.apply(&Command::AddService { spec }).unwrap();
        for last in [2u8, 3, 4] {
            let server: ServerSpec = serde_json::from_value(
                serde_json::json!({"address": format!("10.0.0.{last}"), "port": 80}),
            )
            .unwrap();
            st.apply(&Command::AddServer {
                service: tcp(80),
                server,
            })
            .unwrap();
        }
        let edited: ServerSpec = serde_json::from_value(
            serde_json::json!({"address": "10.0.0.3", "port": 80, "weight": 7}),
        )
        .unwrap();
        st.apply(&Command::EditServer {
            service: tcp(80),
            server: edited,
        })
        .unwrap();
        let weights: Vec<u32> = st.services[0].servers.iter().map(|s| s.weight).collect();
        assert_eq!(weights, vec![1, 7, 1]);
        assert!(st
            .apply(&Command::DeleteService { service: tcp(81) })
            .is_err());
        assert_eq!(st.replay().len(), 1 + 1 + 3);
    }
}
