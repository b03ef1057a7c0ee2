#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Parity with `keepalived -t` on the committed corpus (tests/corpus), plus exact checks
//! of diagnostics and model values on a few files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rvs_config::model::{CheckerKind, Method, Protocol, TunnelCsum, TunnelKind, VsAddress};
use rvs_config::{load, parse_str, Severity};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn expected() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(corpus().join("expected.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, verdict) = l.split_once(' ').unwrap();
            (name.to_string(), verdict == "clean")
        })
        .collect()
}

#[test]
fn corpus_verdicts_match_expected() {
    let expected = expected();
    assert!(expected.len() >= 60, "corpus too small");
    let on_disk = std::fs::read_dir(corpus())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".conf")
        })
        .count();
    assert_eq!(
        on_disk,
        expected.len(),
        "expected.txt out of date: run tests/corpus/gen-expected.sh"
    );
    let mut mismatches = Vec::new();
    for (name, clean) in &expected {
        let loaded = load(&corpus().join(name));
        if loaded.is_clean() != *clean {
            let diags: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
            mismatches.push(format!(
                "{name}: keepalived says {}, rvs says {:?}",
                if *clean { "clean" } else { "dirty" },
                diags
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn corpus_verdicts_match_live_keepalived() {
    if Command::new("keepalived")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: keepalived is not installed; live parity half not run");
        return;
    }
    for (name, _) in expected() {
        let path = corpus().join(&name);
        let status = Command::new("keepalived")
            .arg("-t")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap()
            .status;
        assert_eq!(
            load(&path).is_clean(),
            status.success(),
            "{name}: live keepalived exit {status}"
        );
    }
}

#[test]
fn missing_protocol_scheduler_and_method_are_warnings_with_defaults() {
    let loaded = load(&corpus().join("lvs-no-protocol.conf"));
    assert!(loaded.errors().next().is_none(), "{:?}", loaded.diagnostics);
    let d = &loaded.diagnostics[0];
    assert_eq!((d.line, d.column, d.severity), (2, 1, Severity::Warning));
    assert!(d.message.contains("no protocol set - defaulting to UDP"));
    assert!(d
        .to_string()
        .contains("lvs-no-protocol.conf:2:1: warning: "));
    let vs = &loaded.config.virtual_servers[0];
    assert_eq!(vs.protocol, Protocol::Udp);

    let loaded = load(&corpus().join("lvs-no-sched.conf"));
    assert_eq!(loaded.config.virtual_servers[0].scheduler, "wlc");
    let loaded = load(&corpus().join("lvs-no-method.conf"));
    assert!(loaded.diagnostics.iter().any(|d| d
        .message
        .contains("no forwarding method set, setting default NAT")));
    assert_eq!(
        loaded.config.virtual_servers[0].real_servers[0].method,
        Method::Nat
    );
}

#[test]
fn invalid_values_are_errors_at_their_position() {
    let loaded = load(&corpus().join("lvs-bad-sched.conf"));
    let errors: Vec<_> = loaded.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (7, 5));
    assert!(errors[0].message.contains("Invalid lvs_scheduler 'fancy'"));
    // The earlier valid lb_algo is kept, as keepalived ignores the bad one.
    assert_eq!(loaded.config.virtual_servers[0].scheduler, "rr");

    let loaded = load(&corpus().join("lvs-weight-neg.conf"));
    assert!(loaded
        .errors()
        .any(|e| e.line == 8 && e.message.contains("outside range 0-2147483647")));
    let loaded = load(&corpus().join("syn-missing-brace.conf"));
    assert!(loaded
        .errors()
        .any(|e| e.message.contains("There are 1 missing '}'s")));
    let loaded = load(&corpus().join("syn-extra-brace.conf"));
    assert!(loaded
        .errors()
        .any(|e| e.line == 4 && e.message == "Extra '}' found"));
}

#[test]
fn inheritance_checker_from_real_server_from_virtual_server() {
    let loaded = load(&corpus().join("lvs-inherit.conf"));
    assert!(loaded.is_clean(), "{:?}", loaded.diagnostics);
    let vs = &loaded.config.virtual_servers[0];
    assert!(vs.inhibit_on_failure);
    let rs = &vs.real_servers[0];
    assert_eq!(
        rs.weight, 5,
        "rs weight inherits the virtual server's weight"
    );
    assert!(rs.inhibit_on_failure);
    let tcp = &rs.checkers[0];
    assert_eq!(tcp.kind, CheckerKind::Tcp);
    assert_eq!(tcp.connect_port, Some(8080));
    assert_eq!(tcp.timing.retry, 4);
    assert_eq!(tcp.timing.connect_timeout, Duration::from_secs(7));
    assert_eq!(tcp.timing.delay_before_retry, Duration::from_secs(2));
    assert_eq!(
        tcp.timing.delay_loop,
        Duration::from_secs(9),
        "rs delay_loop beats vs"
    );
    assert_eq!(
        tcp.timing.warmup,
        Duration::from_secs(9),
        "no warmup anywhere: keepalived uses delay_loop"
    );
    let http = &rs.checkers[1];
    assert_eq!(http.timing.retry, 2);
    let CheckerKind::Http(h) = &http.kind else {
        panic!("not HTTP")
    };
    assert_eq!(h.urls[0].path, "/health");
    assert_eq!(h.urls[0].status_codes, vec![(200, 299)]);
}

#[test]
fn checker_defaults_per_kind() {
    let text = "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 10.0.0.2 {\n  HTTP_GET {\n   url {\n    path /\n   }\n  }\n  DNS_CHECK {\n  }\n  TCP_CHECK {\n  }\n }\n}\n";
    let loaded = parse_str(text, Path::new("/nonexistent/k.conf"));
    assert!(loaded.is_clean(), "{:?}", loaded.diagnostics);
    let rs = &loaded.config.virtual_servers[0].real_servers[0];
    assert_eq!(
        rs.address,
        "10.0.0.2:80".parse::<SocketAddr>().unwrap(),
        "DR real server takes the VS port"
    );
    let [http, dns, tcp] = &rs.checkers[..] else {
        panic!()
    };
    assert_eq!(
        (http.timing.retry, http.timing.delay_before_retry),
        (1, Duration::from_secs(3))
    );
    assert_eq!(
        (dns.timing.retry, dns.timing.delay_before_retry),
        (3, Duration::from_secs(60))
    );
    assert_eq!(
        (tcp.timing.retry, tcp.timing.delay_before_retry),
        (1, Duration::from_secs(1))
    );
    assert_eq!(tcp.timing.connect_timeout, Duration::from_secs(5));
    let CheckerKind::Dns(d) = &dns.kind else {
        panic!()
    };
    assert_eq!((d.query_type.as_str(), d.name.as_str()), ("SOA", "."));
}

#[test]
fn groups_fwmarks_tunnels_and_includes() {
    let loaded = load(&corpus().join("vsg-basic.conf"));
    let g = &loaded.config.vs_groups[0];
    assert_eq!(g.members.len(), 3);
    assert!(
        matches!(loaded.config.virtual_servers[0].address, VsAddress::Group(ref n) if n == "web")
    );

    let loaded = load(&corpus().join("lvs-tun-gue.conf"));
    assert_eq!(
        loaded.config.virtual_servers[0].method,
        Method::Tun {
            kind: TunnelKind::Gue { port: 6080 },
            csum: Some(TunnelCsum::Csum)
        }
    );

    let loaded = load(&corpus().join("inc-glob.conf"));
    assert!(loaded.is_clean(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.config.virtual_servers.len(), 1);
    assert_eq!(loaded.config.vrrp_scripts[0].weight, -10);
    let loaded = load(&corpus().join("inc-broken.conf"));
    assert!(loaded
        .diagnostics
        .iter()
        .any(|d| d.file.ends_with("inc2.d/bad.conf") && d.line == 1));

    let loaded = load(&corpus().join("lvs-persistence-bare.conf"));
    assert_eq!(
        loaded.config.virtual_servers[0].persistence_timeout,
        Some(360)
    );
}

#[test]
fn unreadable_file_is_an_error() {
    let loaded = load(Path::new("/nonexistent/rvs/keepalived.conf"));
    assert_eq!(loaded.errors().count(), 1);
}
