//! The admin API refuses what it must: unauthenticated TCP requests (401),
//! malformed JSON and out-of-range values (4xx with a message), and none of those
//! change the table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

mod common;

use common::{free_port, http_tcp, Daemon};

const ADD: &str = r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.1","port":80}}}]}"#;

fn table(addr: &str) -> String {
    let (status, body) = http_tcp(addr, "GET", "/v1/table", Some("s3cret"), "");
    assert_eq!(status, 200, "{body}");
    body
}

/// rvsd on a private directory with a TCP listener behind the token `s3cret`;
/// returns the directory (kept alive), the daemon and the listener's address.
fn daemon_with_token(extra: &[&str]) -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen", &addr, "--token-file", token.to_str().unwrap()];
    args.extend_from_slice(extra);
    let d = Daemon::start(dir.path(), &args);
    (dir, d, addr)
}

#[test]
fn tcp_listener_needs_the_token_and_bad_requests_change_nothing() {
    let (_dir, _d, addr) = daemon_with_token(&[]);
    let empty = table(&addr);

    // no token, a wrong one, a prefix of the right one, a longer one: 401, nothing applied
    for tok in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
        let (status, body) = http_tcp(&addr, "POST", "/v1/commands", tok, ADD);
        assert_eq!(status, 401, "{tok:?}: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    let (status, _) = http_tcp(&addr, "GET", "/v1/table", None, "");
    assert_eq!(status, 401);
    assert_eq!(table(&addr), empty);

    // malformed JSON: 400 with the parser's position
    let (status, body) = http_tcp(
        &addr,
        "POST",
        "/v1/commands",
        Some("s3cret"),
        "{\"commands\": [",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("EOF while parsing"), "{body}");

    // out of range: weight 2^31 (a u32, but the kernel's weight is an int), port 70000 (not a u16),
    // a negative timeout, an unknown scheduler, an unknown field, an unknown op
    let bad = [
        (
            r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.1","port":80}}},{"op":"add_server","service":{"protocol":"tcp","address":"10.0.0.1","port":80},"server":{"address":"10.0.0.2","port":80,"weight":2147483648}}]}"#,
            422,
            "2147483648",
        ),
        (
            r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.1","port":70000}}}]}"#,
            422,
            "70000",
        ),
        (
            r#"{"commands":[{"op":"set_timeouts","timeouts":{"tcp":-5,"tcpfin":0,"udp":0}}]}"#,
            422,
            "-5",
        ),
        (
            r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.1","port":80},"scheduler":"fastest"}}]}"#,
            422,
            "fastest",
        ),
        (
            r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.1","port":80},"colour":"red"}}]}"#,
            422,
            "colour",
        ),
        (r#"{"commands":[{"op":"explode"}]}"#, 422, "explode"),
        (
            r#"{"commands":[{"op":"add_service","spec":{"service":{"protocol":"tcp","address":"10.0.0.300","port":80}}}]}"#,
            422,
            "invalid IP address",
        ),
    ];
    for (body, want, mention) in bad {
        let (status, answer) = http_tcp(&addr, "POST", "/v1/commands", Some("s3cret"), body);
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer.contains(mention), "{body} -> {answer}");
        assert!(answer.starts_with("{\"error\":"), "{answer}");
    }
    // the first command of the weight batch was valid: the batch is all or nothing
    assert_eq!(table(&addr), empty);

    // a good request with the token works
    let (status, body) = http_tcp(&addr, "POST", "/v1/commands", Some("s3cret"), ADD);
    assert_eq!(status, 200, "{body}");
    assert_ne!(table(&addr), empty);
    let (status, body) = http_tcp(&addr, "GET", "/v1/nowhere", Some("s3cret"), "");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn tcp_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args([
            "--socket",
            dir.path().join("s").to_str().unwrap(),
            "--no-state",
        ])
        .args(["--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
}

#[test]
fn a_second_rvsd_on_the_same_socket_refuses_and_the_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--socket", d.socket.to_str().unwrap(), "--no-state"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
}

/// Classifier rules through the API: added, listed canonical, refused when bad
/// or overlapping (naming the rule) with nothing changed, and a batch with one
/// bad rule applies none of its rules.
#[test]
fn mark_rules_through_the_api() {
    let (_dir, _d, addr) = daemon_with_token(&[]);
    let post = |body: &str| http_tcp(&addr, "POST", "/v1/commands", Some("s3cret"), body);
    let marks = || {
        let (status, body) = http_tcp(&addr, "GET", "/v1/marks", Some("s3cret"), "");
        assert_eq!(status, 200, "{body}");
        body
    };
    let (status, body) = post(
        r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":6666,"protocol":"tcp","destination":"10.0.0.7/24","ports":"443,80"}},
                        {"op":"add_mark_rule","rule":{"mark":7,"protocol":"udp","destination":"2001:db8::1"}}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let listed = marks();
    assert_eq!(
        listed,
        r#"[{"mark":6666,"protocol":"tcp","destination":"10.0.0.0/24","ports":"80,443"},{"mark":7,"protocol":"udp","destination":"2001:db8::1/128"}]"#
    );
    for (body, status_wanted, says) in [
        (
            r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":9,"protocol":"tcp","destination":"10.0.0.9","ports":"443"}}]}"#,
            422,
            "overlaps rule `6666 tcp 10.0.0.0/24 80,443`",
        ),
        (
            r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":9,"protocol":"tcp","destination":"10.9.0.9","ports":"0"}}]}"#,
            422,
            "port 0",
        ),
        (
            r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":9,"protocol":"tcp","destination":"10.9.0.9","ports":"9-1"}}]}"#,
            422,
            "inverted",
        ),
        (
            r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":9,"protocol":"icmp","destination":"10.9.0.9"}}]}"#,
            422,
            "protocol",
        ),
        (
            r#"{"commands":[{"op":"add_mark_rule","rule":{"mark":9,"protocol":"tcp","destination":"10.9.0.9","ports":"1"}},{"op":"delete_mark_rule","rule":{"mark":8,"protocol":"tcp","destination":"10.9.0.8"}}]}"#,
            422,
            "no such rule `8 tcp 10.9.0.8/32 all`",
        ),
    ] {
        let (status, answer) = post(body);
        assert_eq!(status, status_wanted, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
        assert_eq!(marks(), listed, "a refused batch changed the rules");
    }
    // -C clears services, not the classifier; clear_mark_rules does.
    let (status, _) = post(r#"{"commands":[{"op":"clear"}]}"#);
    assert_eq!(status, 200);
    assert_eq!(marks(), listed);
    let (status, _) = post(r#"{"commands":[{"op":"clear_mark_rules"}]}"#);
    assert_eq!(status, 200);
    assert_eq!(marks(), "[]");
}

/// `--open-reads`: reads need no token, changes still do; a weight change and
/// a reload show up in `GET /v1/events`, in order, resumable by sequence.
#[test]
fn open_reads_and_events() {
    let (_dir, _d, addr) = daemon_with_token(&["--open-reads"]);
    let (status, _) = http_tcp(&addr, "GET", "/v1/table", None, "");
    assert_eq!(status, 200);
    let (status, _) = http_tcp(&addr, "POST", "/v1/commands", None, ADD);
    assert_eq!(status, 401);
    let batch = |op: &str, w: u32| {
        format!(
            r#"{{"commands":[{{"op":"{op}","service":{{"protocol":"tcp","address":"10.0.0.1","port":80}},"server":{{"address":"10.0.0.2","port":80,"weight":{w}}}}}]}}"#
        )
    };
    let (status, body) = http_tcp(&addr, "POST", "/v1/commands", Some("s3cret"), ADD);
    assert_eq!(status, 200, "{body}");
    for (op, w) in [("add_server", 3), ("edit_server", 0), ("edit_server", 5)] {
        let (status, body) = http_tcp(&addr, "POST", "/v1/commands", Some("s3cret"), &batch(op, w));
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = http_tcp(&addr, "POST", "/v1/reload", Some("s3cret"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_tcp(&addr, "GET", "/v1/events", None, "");
    assert_eq!(status, 200, "{body}");
    let events: Vec<rvs_api::EventView> = serde_json::from_str(&body).unwrap();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "weight",
                "TCP 10.0.0.1:80: real server 10.0.0.2:80 weight 3 -> 0"
            ),
            (
                "weight",
                "TCP 10.0.0.1:80: real server 10.0.0.2:80 weight 0 -> 5"
            ),
            ("reload", "configuration reloaded: 0 change(s)"),
        ]
    );
    let (_, body) = http_tcp(
        &addr,
        "GET",
        &format!("/v1/events?since={}", events[1].seq),
        None,
        "",
    );
    let tail: Vec<rvs_api::EventView> = serde_json::from_str(&body).unwrap();
    assert_eq!(tail, events[2..]);
    let (status, _) = http_tcp(&addr, "GET", "/v1/events?since=x", None, "");
    assert_eq!(status, 400);
}
