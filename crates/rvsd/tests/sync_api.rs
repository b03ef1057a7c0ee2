//! `/v1/daemons` end to end (rvsd's admin API and rvsadm): the answers the
//! kernel's errnos map to, the token rule of TCP listeners, and a daemon's
//! life cycle on `lo` (no root needed: the daemons only open UDP sockets).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use common::{free_port, http_tcp, Daemon};
use rvs_api::{ApiError, DaemonState, DaemonsView, ErrorBody, ErrorKind};

const TOKEN: &str = "s3cret";

/// rvsd with a TCP listener behind `TOKEN`; the directory must outlive it.
fn rvsd() -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(
        dir.path(),
        &["--listen", &addr, "--token-file", token.to_str().unwrap()],
    );
    (dir, d, addr)
}

fn error_of(status: u16, body: &str) -> (u16, ApiError) {
    let e: ErrorBody = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, e.error)
}

fn daemons(addr: &str) -> DaemonsView {
    let (status, body) = http_tcp(addr, "GET", "/v1/daemons", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// What works with nothing running (and with the sync module's contract alone).
#[test]
fn refusals_carry_the_kernels_errno() {
    let (_dir, d, addr) = rvsd();
    let none = daemons(&addr);
    assert!(none.daemons.is_empty());
    assert_eq!(none.stats, rvs_api::SyncStatsView::default());

    // stopping what does not run: ESRCH, and ipvsadm's text for it
    for role in ["master", "backup"] {
        let (status, body) = http_tcp(
            &addr,
            "DELETE",
            &format!("/v1/daemons/{role}"),
            Some(TOKEN),
            "",
        );
        let (status, e) = error_of(status, &body);
        assert_eq!(status, 404);
        assert_eq!(
            (e.kind, e.errno.as_deref()),
            (ErrorKind::NoDaemon, Some("ESRCH"))
        );
        let o = d.rvsadm(&["--stop-daemon", role]);
        assert_eq!(String::from_utf8_lossy(&o.stderr), "No daemon is running\n");
        assert_eq!(o.status.code(), Some(255));
    }
    let (status, body) = http_tcp(&addr, "DELETE", "/v1/daemons/Master", Some(TOKEN), "");
    let (status, e) = error_of(status, &body);
    assert_eq!((status, e.kind, e.errno), (404, ErrorKind::NotFound, None));

    // values ipvsadm would never send are refused before any daemon starts
    for (body, field) in [
        (
            r#"{"state":"master","mcast_interface":"lo","mcast_port":0}"#,
            "mcast_port",
        ),
        (
            r#"{"state":"master","mcast_interface":"lo","mcast_ttl":0}"#,
            "mcast_ttl",
        ),
        (
            r#"{"state":"master","mcast_interface":"","syncid":1}"#,
            "mcast_interface",
        ),
        (
            r#"{"state":"backup","mcast_interface":"lo","mcast_group":"10.0.0.1"}"#,
            "mcast_group",
        ),
        (
            r#"{"state":"backup","mcast_interface":"lo","syncid":256}"#,
            "request body",
        ),
        (r#"{"state":"both","mcast_interface":"lo"}"#, "request body"),
    ] {
        let (status, answer) = http_tcp(&addr, "POST", "/v1/daemons", Some(TOKEN), body);
        let (status, e) = error_of(status, &answer);
        assert_eq!(
            (status, e.kind),
            (422, ErrorKind::Invalid),
            "{body}: {answer}"
        );
        assert!(e.message.starts_with(field), "{body}: {}", e.message);
    }

    // a missing interface: ENODEV, "No such device" as ipvsadm prints it
    let (status, body) = http_tcp(
        &addr,
        "POST",
        "/v1/daemons",
        Some(TOKEN),
        r#"{"state":"master","mcast_interface":"nosuch0"}"#,
    );
    let (status, e) = error_of(status, &body);
    assert_eq!(
        (status, e.errno.as_deref()),
        (422, Some("ENODEV")),
        "{body}"
    );
    let o = d.rvsadm(&["--start-daemon", "backup", "--mcast-interface", "nosuch0"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "No such device\n");
    assert_eq!(o.status.code(), Some(255));
    assert!(daemons(&addr).daemons.is_empty());
}

/// Changes need the token on a TCP listener, as every other change does.
#[test]
fn tcp_changes_need_the_token() {
    let (_dir, _d, addr) = rvsd();
    let start = r#"{"state":"master","mcast_interface":"lo"}"#;
    for token in [None, Some("wrong")] {
        let (status, _) = http_tcp(&addr, "POST", "/v1/daemons", token, start);
        assert_eq!(status, 401);
        let (status, _) = http_tcp(&addr, "DELETE", "/v1/daemons/master", token, "");
        assert_eq!(status, 401);
        let (status, _) = http_tcp(&addr, "GET", "/v1/daemons", token, "");
        assert_eq!(status, 401);
    }
    assert!(daemons(&addr).daemons.is_empty());
}

/// A master and a backup on lo: started, listed with the kernel's defaults
/// resolved, refused a second time, stopped. Needs the sync daemons' sockets
/// (crates/rvsd/src/sync.rs).
#[test]
fn daemons_start_list_and_stop() {
    let (_dir, d, addr) = rvsd();
    let post = |body: &str| http_tcp(&addr, "POST", "/v1/daemons", Some(TOKEN), body);
    let (status, body) = post(r#"{"state":"master","mcast_interface":"lo","syncid":7}"#);
    assert_eq!(status, 200, "{body}");
    let after: DaemonsView = serde_json::from_str(&body).unwrap();
    assert_eq!(after.daemons.len(), 1);
    let m = &after.daemons[0];
    assert_eq!(m.state, DaemonState::Master);
    assert_eq!(
        (
            m.mcast_interface.as_str(),
            m.syncid,
            m.sync_maxlen,
            m.mcast_port,
            m.mcast_ttl
        ),
        ("lo", 7, 1472, 8848, 1)
    );
    assert_eq!(m.mcast_group.to_string(), "224.0.0.81");

    let (status, body) = post(r#"{"state":"master","mcast_interface":"lo","syncid":8}"#);
    let (status, e) = error_of(status, &body);
    assert_eq!(
        (status, e.kind, e.errno.as_deref()),
        (409, ErrorKind::DaemonRunning, Some("EEXIST"))
    );
    // the interface is looked up first, as the kernel does: ENODEV, not EEXIST
    let (status, body) = post(r#"{"state":"master","mcast_interface":"nosuch0"}"#);
    let (status, e) = error_of(status, &body);
    assert_eq!(
        (status, e.errno.as_deref()),
        (422, Some("ENODEV")),
        "{body}"
    );

    let o = d.rvsadm(&[
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "lo",
        "--syncid",
        "9",
        "--mcast-group",
        "239.1.2.3",
        "--mcast-port",
        "9000",
        "--mcast-ttl",
        "5",
        "--sync-maxlen",
        "2000",
    ]);
    assert!(o.status.success(), "{o:?}");
    let o = d.rvsadm(&["-L", "--daemon"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "master sync daemon (mcast=lo, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=lo, syncid=9, maxlen=2000, group=239.1.2.3, port=9000, ttl=5)\n"
    );

    let (status, body) = http_tcp(&addr, "DELETE", "/v1/daemons/master", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let left: DaemonsView = serde_json::from_str(&body).unwrap();
    assert_eq!(left.daemons.len(), 1);
    assert_eq!(left.daemons[0].state, DaemonState::Backup);
    let o = d.rvsadm(&["--stop-daemon", "backup"]);
    assert!(o.status.success(), "{o:?}");
    assert!(daemons(&addr).daemons.is_empty());
}
