//! The `/v1/daemons` routes: start, stop and list the connection sync daemons
//! ([`crate::sync::SyncDaemons`]), and the translation between the API's types
//! and the sync module's.
//!
//! Invariants: a start request is checked ([`DaemonSpec::check`]) before it
//! reaches the daemons; every refusal carries the errno the kernel returns for
//! the same request (net/netfilter/ipvs/ip_vs_sync.c `start_sync_thread` and
//! `stop_sync_thread`: EEXIST when that daemon runs, ESRCH when it does not,
//! ENODEV for a missing interface, checked first as the kernel does), so
//! `rvsadm` prints libipvs's text.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rvs_api::{
    ApiError, DaemonSpec, DaemonState, DaemonView, DaemonsView, ErrorKind, SyncStatsView,
};

use crate::http::{parse_body, ApiResponse};
use crate::sync::{DaemonConfig, Role, RunningDaemon, SyncDaemons, SyncError, SyncStats};

fn role_of(state: DaemonState) -> Role {
    match state {
        DaemonState::Master => Role::Master,
        DaemonState::Backup => Role::Backup,
    }
}

fn state_of(role: Role) -> DaemonState {
    match role {
        Role::Master => DaemonState::Master,
        Role::Backup => DaemonState::Backup,
    }
}

/// The sync module's request for a checked spec.
pub fn config_of(spec: &DaemonSpec) -> DaemonConfig {
    DaemonConfig {
        role: role_of(spec.state),
        mcast_ifn: spec.mcast_interface.clone(),
        syncid: spec.syncid,
        maxlen: spec.sync_maxlen,
        group: spec.mcast_group,
        port: spec.mcast_port,
        ttl: spec.mcast_ttl,
    }
}

pub fn view_of(d: &RunningDaemon) -> DaemonView {
    DaemonView {
        state: state_of(d.role),
        mcast_interface: d.mcast_ifn.clone(),
        syncid: d.syncid,
        sync_maxlen: d.maxlen,
        mcast_group: d.group,
        mcast_port: d.port,
        mcast_ttl: d.ttl,
    }
}

pub fn stats_view_of(s: &SyncStats) -> SyncStatsView {
    SyncStatsView {
        messages_sent: s.messages_sent,
        conns_sent: s.conns_sent,
        conns_dropped: s.conns_dropped,
        conns_skipped: s.conns_skipped,
        messages_received: s.messages_received,
        conns_received: s.conns_received,
        conns_imported: s.conns_imported,
        import_errors: s.import_errors,
        wrong_syncid: s.wrong_syncid,
        malformed: s.malformed,
        resync_requests_sent: s.resync_requests_sent,
        resync_requests_answered: s.resync_requests_answered,
    }
}

fn daemons_view(sync: &SyncDaemons) -> DaemonsView {
    DaemonsView {
        daemons: sync.running().iter().map(view_of).collect(),
        stats: stats_view_of(&sync.stats()),
    }
}

/// Whether rvsd's network namespace has an interface of that name (the
/// kernel's `__dev_get_by_name` in `start_sync_thread`).
fn interface_exists(name: &str) -> bool {
    !name.is_empty() && !name.contains('\0') && nix::net::if_::if_nametoindex(name).is_ok()
}

/// The errno name of an OS error number, for the errors a socket set-up meets.
fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        _ => return None,
    })
}

/// The OS error number a set-up message ends with (`... (os error N)`, as
/// `std::io::Error` prints it), if any.
fn os_error_in(message: &str) -> Option<i32> {
    let tail = message.rsplit("(os error ").next()?;
    if tail.len() == message.len() {
        return None;
    }
    tail.split(')').next()?.parse().ok()
}

/// A sync error as the API reports it. `interface` is the one the request named
/// (for a start): a set-up failure on a missing interface is ENODEV, as the
/// kernel's `__dev_get_by_name` check answers.
pub fn api_error_of(e: SyncError, interface: Option<&str>) -> ApiError {
    let message = e.to_string();
    match e {
        SyncError::Running(_) => {
            ApiError::new(ErrorKind::DaemonRunning, message).with_errno("EEXIST")
        }
        SyncError::NotRunning(_) => ApiError::new(ErrorKind::NoDaemon, message).with_errno("ESRCH"),
        SyncError::Setup(_) => {
            let err = ApiError::new(ErrorKind::Invalid, message.clone());
            // a missing interface fails the start's first step (resolve)
            if interface.is_some_and(|i| !interface_exists(i)) {
                return err.with_errno("ENODEV");
            }
            match os_error_in(&message).and_then(errno_name) {
                Some(n) => err.with_errno(n),
                None => err,
            }
        }
    }
}

/// `GET /v1/daemons`.
pub async fn list(State(sync): State<SyncDaemons>) -> Response {
    Json(daemons_view(&sync)).into_response()
}

/// `POST /v1/daemons`: body [`DaemonSpec`]; answers the daemons afterwards.
pub async fn start(State(sync): State<SyncDaemons>, body: Bytes) -> Result<Response, ApiResponse> {
    let spec: DaemonSpec = parse_body(&body)?;
    spec.check()?;
    sync.start(config_of(&spec))
        .await
        .map_err(|e| api_error_of(e, Some(&spec.mcast_interface)))?;
    tracing::info!(
        state = spec.state.name(),
        interface = %spec.mcast_interface,
        syncid = spec.syncid,
        "sync daemon started"
    );
    Ok(Json(daemons_view(&sync)).into_response())
}

/// `DELETE /v1/daemons/{master|backup}`; answers the daemons afterwards.
pub async fn stop(
    State(sync): State<SyncDaemons>,
    Path(role): Path<String>,
) -> Result<Response, ApiResponse> {
    let Some(state) = DaemonState::from_name(&role) else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no such sync daemon {role:?} (master or backup)"),
        )
        .into());
    };
    sync.stop(role_of(state))
        .await
        .map_err(|e| api_error_of(e, None))?;
    tracing::info!(state = state.name(), "sync daemon stopped");
    Ok(Json(daemons_view(&sync)).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sync_errors_carry_the_kernels_errno() {
        let e = api_error_of(SyncError::Running(Role::Master), Some("lo"));
        assert_eq!(
            (e.kind, e.errno.as_deref()),
            (ErrorKind::DaemonRunning, Some("EEXIST"))
        );
        let e = api_error_of(SyncError::NotRunning(Role::Backup), None);
        assert_eq!(
            (e.kind, e.errno.as_deref()),
            (ErrorKind::NoDaemon, Some("ESRCH"))
        );
        let e = api_error_of(
            SyncError::Setup("no such interface".into()),
            Some("nosuch0"),
        );
        assert_eq!(e.errno.as_deref(), Some("ENODEV"));
        let e = api_error_of(SyncError::Setup("x".into()), Some("lo/"));
        assert_eq!(e.errno.as_deref(), Some("ENODEV"));
        assert!(interface_exists("lo"));
        assert!(!interface_exists("") && !interface_exists("l\0o"));
        let e = api_error_of(
            SyncError::Setup("connect: Network is unreachable (os error 101)".into()),
            Some("lo"),
        );
        assert_eq!(e.errno.as_deref(), Some("ENETUNREACH"));
        assert_eq!(e.message, "connect: Network is unreachable (os error 101)");
        let e = api_error_of(SyncError::Setup("odd failure".into()), Some("lo"));
        assert_eq!((e.kind, e.errno), (ErrorKind::Invalid, None));
    }

    #[test]
    fn os_error_numbers_are_found() {
        assert_eq!(os_error_in("bind: x (os error 98)"), Some(98));
        assert_eq!(os_error_in("no number here"), None);
        assert_eq!(os_error_in("(os error abc)"), None);
    }

    #[test]
    fn spec_and_view_translate_field_for_field() {
        let spec = DaemonSpec {
            state: DaemonState::Backup,
            mcast_interface: "eth1".into(),
            syncid: 9,
            sync_maxlen: Some(1000),
            mcast_group: Some("239.1.2.3".parse().unwrap()),
            mcast_port: Some(9000),
            mcast_ttl: None,
        };
        let c = config_of(&spec);
        assert_eq!(c.role, Role::Backup);
        assert_eq!(
            (
                c.mcast_ifn.as_str(),
                c.syncid,
                c.maxlen,
                c.group,
                c.port,
                c.ttl
            ),
            ("eth1", 9, Some(1000), spec.mcast_group, Some(9000), None)
        );
        let v = view_of(&RunningDaemon {
            role: Role::Master,
            mcast_ifn: "lo".into(),
            syncid: 7,
            maxlen: 1472,
            group: "224.0.0.81".parse().unwrap(),
            port: 8848,
            ttl: 2,
        });
        assert_eq!(v.state, DaemonState::Master);
        assert_eq!(
            (
                v.mcast_interface.as_str(),
                v.syncid,
                v.sync_maxlen,
                v.mcast_port,
                v.mcast_ttl
            ),
            ("lo", 7, 1472, 8848, 2)
        );
        assert_eq!(v.mcast_group.to_string(), "224.0.0.81");
    }
}
