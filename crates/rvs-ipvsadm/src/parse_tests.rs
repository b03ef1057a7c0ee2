//! Parser tests. Every expected message, stream and status was checked against
//! ipvsadm 1.31's own ipvsadm.c linked with popt 1.19 and glibc 2.36.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::NoResolver;

fn argv(words: &[&str]) -> Vec<String> {
    std::iter::once("ipvsadm")
        .chain(words.iter().copied())
        .map(String::from)
        .collect()
}

fn run(words: &[&str]) -> Action {
    parse_args(&argv(words), false, &NoResolver)
}

/// (status, stderr) of an argv ipvsadm refuses with `exit()`.
fn exits(words: &[&str]) -> (i32, String) {
    match run(words) {
        Action::Exit(o) => {
            assert_eq!(o.stdout, "", "{words:?}");
            (o.code, o.stderr)
        }
        other => panic!("{words:?}: expected an exit, got {other:?}"),
    }
}

/// The stderr of a `fail(2, ...)`.
fn fails(words: &[&str]) -> String {
    let (code, err) = exits(words);
    assert_eq!(code, 2, "{words:?}: {err}");
    err
}

/// The stderr of a popt error after the command (status 255, restore goes on).
fn popt_error(words: &[&str]) -> String {
    match run(words) {
        Action::Failed(o) => {
            assert_eq!((o.code, o.stdout.as_str()), (255, ""));
            o.stderr
        }
        other => panic!("{words:?}: expected a popt error, got {other:?}"),
    }
}

fn apply(words: &[&str]) -> (Op, Command) {
    match run(words) {
        Action::Apply { op, command } => (op, command),
        other => panic!("{words:?}: expected a change, got {other:?}"),
    }
}

fn service_of(words: &[&str]) -> ServiceSpec {
    match apply(words) {
        (Op::AddService, Command::AddService { spec })
        | (Op::EditService, Command::EditService { spec }) => spec,
        other => panic!("{words:?}: {other:?}"),
    }
}

fn server_of(words: &[&str]) -> (ServiceRef, ServerSpec) {
    match apply(words) {
        (Op::AddServer, Command::AddServer { service, server })
        | (Op::EditServer, Command::EditServer { service, server }) => (service, server),
        other => panic!("{words:?}: {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(a: &str, port: u16) -> ServiceRef {
    ServiceRef::Tcp {
        address: ip(a),
        port,
    }
}

const TRYHELP: &str = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n";

#[test]
fn no_argument_lists_the_table() {
    assert_eq!(run(&[]), Action::ListAll(Format::default()));
    // Inside a restore, a lone program name is not a listing.
    assert_eq!(
        parse_args(&argv(&[]), true, &NoResolver),
        Action::Exit(Output::stderr(TRYHELP.into(), 255))
    );
    // An empty argv (possible with execve) does not panic.
    assert!(matches!(
        parse_args(&[], false, &NoResolver),
        Action::Exit(_)
    ));
}

#[test]
fn help_and_version() {
    let Action::Exit(o) = run(&["-h", "-L", "--bogus"]) else {
        panic!()
    };
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(o.stdout.len(), 4645);
    assert_eq!(o.stdout.lines().count(), 82);
    assert!(o.stdout.starts_with(
        "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\nUsage:\n  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n"
    ));
    assert!(o
        .stdout
        .contains("  ipvsadm --stop-daemon {master|backup}\n  ipvsadm -h\n\nCommands:\n"));
    assert!(o.stdout.contains(
        "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n"
    ));
    assert!(o.stdout.ends_with(
        "  --sched-flags  -b flags             scheduler flags (comma-separated)\nDaemon Options:\n  --syncid sid                        syncid for connection sync (default=255)\n  --sync-maxlen length                Max sync message length (default=1472)\n  --mcast-interface interface         multicast interface for connection sync\n  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n  --mcast-port port                   UDP port (default=8848)\n  --mcast-ttl ttl                     Multicast TTL (default=1)\n"
    ));
    let Action::Exit(o) = parse_args(
        &["/usr/sbin/ipvsadm".to_string(), "--help".to_string()],
        false,
        &NoResolver,
    ) else {
        panic!()
    };
    assert!(o.stdout.contains("\n  /usr/sbin/ipvsadm -C\n"));

    let version = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n";
    assert_eq!(
        run(&["-v", "junk"]),
        Action::Exit(Output::stdout(version.into(), 0))
    );
    assert_eq!(
        run(&["--version"]),
        Action::Exit(Output::stdout(version.into(), 0))
    );
}

#[test]
fn the_first_option_must_be_a_command() {
    for words in [
        &["-n", "-L"][..],
        &["--", "-L"],
        &["foo"],
        &["-L=x"],
        &["--list=x"],
        &["--lis"],
        &["-q"],
        &["-t"],
        &["-"],
    ] {
        assert_eq!(exits(words), (255, TRYHELP.to_string()), "{words:?}");
    }
    let Action::Exit(o) = parse_args(
        &["./rvsadm".to_string(), "-x".to_string(), "1".to_string()],
        false,
        &NoResolver,
    ) else {
        panic!()
    };
    assert_eq!(
        o.stderr,
        "Try `./rvsadm -h' or './rvsadm --help' for more information.\n"
    );
}

#[test]
fn popt_errors_after_the_command() {
    assert_eq!(popt_error(&["-Lx"]), "-Lx: missing argument\n");
    assert_eq!(popt_error(&["-L", "-t"]), "-t: missing argument\n");
    assert_eq!(popt_error(&["-Lq"]), "-Lq: unknown option\n");
    assert_eq!(popt_error(&["-L", "--bogus"]), "--bogus: unknown option\n");
    assert_eq!(popt_error(&["-L", "--lis"]), "--lis: unknown option\n");
    assert_eq!(
        popt_error(&["-L", "--numeric=1"]),
        "--numeric=1: option does not take an argument\n"
    );
    assert_eq!(
        popt_error(&["-L", "-n="]),
        "-n=: option does not take an argument\n"
    );
    // Options are handled in order: an earlier option's own check fails first.
    assert_eq!(
        fails(&["-A", "-w", "x", "--bogus"]),
        "illegal weight specified\n"
    );
}

#[test]
fn a_second_command_is_an_invalid_option() {
    assert_eq!(fails(&["-A", "-L"]), "invalid option `-L'\n");
    assert_eq!(fails(&["-LA"]), "invalid option `-LA'\n");
    assert_eq!(fails(&["-L", "-h"]), "invalid option `-h'\n");
    // popt names the last element it read: here the daemon mode.
    assert_eq!(
        fails(&["-A", "--start-daemon", "master"]),
        "invalid option `master'\n"
    );
}

#[test]
fn leftovers() {
    assert_eq!(fails(&["foo", "-L"]), "unexpected argument foo\n");
    assert_eq!(fails(&["-L", "--", "-n"]), "unexpected argument -n\n");
    assert_eq!(fails(&["-L", "-"]), "unexpected argument -\n");
    assert_eq!(
        fails(&["-A", "--tcp-service=1.2.3.4:80", "-s", "rr", "extra"]),
        "unexpected argument extra\n"
    );
}

#[test]
fn set_timeouts() {
    assert_eq!(
        apply(&["--set", "1", "2", "3"]),
        (
            Op::SetTimeouts,
            Command::SetTimeouts {
                timeouts: TimeoutsSpec {
                    tcp: 1,
                    tcpfin: 2,
                    udp: 3
                }
            }
        )
    );
    assert_eq!(
        fails(&["--set", "1", "2"]),
        "--set option requires 3 timeout values\n"
    );
    assert_eq!(
        fails(&["--set", "1", "x", "3"]),
        "invalid timeout value `x' specified\n"
    );
    assert_eq!(
        fails(&["--set", "1", "2", "2678401"]),
        "invalid timeout value `2678401' specified\n"
    );
    assert_eq!(
        fails(&["--set", "1", "2", "3", "4"]),
        "unexpected argument 4\n"
    );
    assert_eq!(
        fails(&["--set", "1", "2", "3", "-n"]),
        "Illegal 'numeric' option with the 'set' command\n"
    );
}

#[test]
fn service_defaults_and_options() {
    assert_eq!(
        service_of(&["-A", "-t", "10.0.0.1:80"]),
        ServiceSpec {
            service: tcp("10.0.0.1", 80),
            scheduler: "wlc".into(),
            sched_flags: SchedFlagsSpec::default(),
            persistence: None,
            one_packet: false,
            pe: None,
        }
    );
    let s = service_of(&[
        "-E",
        "-u",
        "10.0.0.1:53",
        "-s",
        "sh",
        "-b",
        "sh-port",
        "-p",
        "-o",
    ]);
    assert_eq!(s.scheduler, "sh");
    assert!(s.sched_flags.flag2 && !s.sched_flags.flag1);
    assert!(s.one_packet);
    assert_eq!(
        s.persistence,
        Some(PersistenceSpec {
            timeout: 360,
            netmask: Some(Ipv4Addr::BROADCAST),
            prefix_len: None
        })
    );
    let s = service_of(&[
        "-A",
        "-t1.2.3.4:80",
        "-srr",
        "-p60",
        "-M",
        "255.255.255.0",
        "--pe",
        "sip",
    ]);
    assert_eq!((s.scheduler.as_str(), s.pe.as_deref()), ("rr", Some("sip")));
    assert_eq!(
        s.persistence,
        Some(PersistenceSpec {
            timeout: 60,
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            prefix_len: None
        })
    );
    // -M without -p is accepted and has no effect.
    assert_eq!(
        service_of(&["-A", "-t", "10.0.0.1:80", "-M", "255.255.255.0"]).persistence,
        None
    );
    // The scheduler name is cut to 15 bytes, the engine name to 16.
    let s = service_of(&[
        "-A",
        "-t",
        "10.0.0.1:80",
        "-s",
        "abcdefghijklmnopqrstuvwxyz",
        "--pe",
        "abcdefghijklmnopqrs",
    ]);
    assert_eq!(s.scheduler, "abcdefghijklmno");
    assert_eq!(s.pe.as_deref(), Some("abcdefghijklmnop"));
    // An empty -s falls back to wlc.
    assert_eq!(
        service_of(&["-A", "-t", "10.0.0.1:80", "-s", ""]).scheduler,
        "wlc"
    );
}

#[test]
fn optional_persistence_argument() {
    let timeout = |w: &[&str]| service_of(w).persistence.map(|p| p.timeout);
    assert_eq!(
        timeout(&["-A", "-t", "1.2.3.4:80", "-p", "-s", "rr"]),
        Some(360)
    );
    assert_eq!(timeout(&["-A", "-t", "1.2.3.4:80", "-p10"]), Some(10));
    assert_eq!(timeout(&["-A", "-t", "1.2.3.4:80", "-p=10"]), Some(10));
    assert_eq!(
        timeout(&["-A", "-t", "1.2.3.4:80", "--persistent=10"]),
        Some(10)
    );
    assert_eq!(
        timeout(&["-A", "-t", "1.2.3.4:80", "--persistent", "10"]),
        Some(10)
    );
    assert_eq!(
        timeout(&["-A", "-t", "1.2.3.4:80", "--persistent"]),
        Some(360)
    );
    // -p eats the rest of a cluster: "-pn" is a timeout of "n".
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-pn"]),
        "invalid timeout value `n' specified\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "1.2.3.4:80", "-p", ""]),
        "invalid timeout value `' specified\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "1.2.3.4:80", "-p", "0"]),
        "invalid timeout value `0' specified\n"
    );
    assert_eq!(
        timeout(&["-A", "-t", "1.2.3.4:80", "-p", " +2678400"]),
        Some(2_678_400)
    );
}

#[test]
fn service_addresses() {
    let s = |w: &str| service_of(&["-A", "-t", w, "-p"]).service;
    assert_eq!(s("10.0.0.1:80"), tcp("10.0.0.1", 80));
    assert_eq!(s("[2001:db8::1]:443"), tcp("2001:db8::1", 443));
    assert_eq!(s("::1"), tcp("::1", 0));
    assert_eq!(s("1.2"), tcp("1.0.0.2", 0));
    assert_eq!(s("0x7f.1:8080"), tcp("127.0.0.1", 8080));
    assert_eq!(s("010.0.0.1:1"), tcp("8.0.0.1", 1));
    // Brackets around IPv4 lose the port (ipvsadm looks for it again inside them).
    assert_eq!(s("[1.2.3.4]:80"), tcp("1.2.3.4", 0));
    // inet_aton stops at white space.
    assert_eq!(s("1.2.3.4 x:80"), tcp("1.2.3.4", 80));
    assert_eq!(s("1.2.3.4:+80"), tcp("1.2.3.4", 80));
    for bad in [
        "80",
        "",
        "1.2.3.4:99999",
        "1.2.3.4:-1",
        "1.2.3.4: 80x",
        "256.1.1.1:80",
        "[::1]",
        "[::1]80",
        "1.2.3.4:http",
        "localhost:80",
    ] {
        assert_eq!(
            fails(&["-A", "-t", bad]),
            "illegal virtual server address[:port] specified\n",
            "{bad}"
        );
    }
    assert_eq!(
        service_of(&["-A", "-u", "10.0.0.1:53"]).service,
        ServiceRef::Udp {
            address: ip("10.0.0.1"),
            port: 53
        }
    );
    assert_eq!(
        service_of(&["-A", "--sctp-service", "10.0.0.1:53"]).service,
        ServiceRef::Sctp {
            address: ip("10.0.0.1"),
            port: 53
        }
    );
}

#[test]
fn fwmarks() {
    let s = |w: &[&str]| service_of(w).service;
    assert_eq!(
        s(&["-A", "-f", "4294967295"]),
        ServiceRef::Fwmark {
            mark: u32::MAX,
            ipv6: false
        }
    );
    assert_eq!(
        s(&["-A", "-f", " +7", "-6"]),
        ServiceRef::Fwmark {
            mark: 7,
            ipv6: true
        }
    );
    for bad in ["0", "-1", "4294967296", "x", "", "7 "] {
        assert_eq!(
            fails(&["-A", "-f", bad]),
            format!("invalid fwmark value `{bad}' specified\n")
        );
    }
    // -6 repeats freely and sets a /128 granularity; -M then takes a prefix.
    let spec = service_of(&["-A", "-f", "1", "-6", "-6", "-M", "64", "-p"]);
    assert_eq!(spec.persistence.unwrap().prefix_len, Some(64));
    let spec = service_of(&["-A", "-f", "1", "-6", "-p"]);
    assert_eq!(spec.persistence.unwrap().prefix_len, Some(128));
    assert_eq!(
        fails(&["-A", "-t", "1.2.3.4:80", "-6"]),
        "-6 used before -f\n\n"
    );
}

#[test]
fn netmasks_follow_the_family_known_so_far() {
    let p = |w: &[&str]| service_of(w).persistence.unwrap();
    assert_eq!(
        p(&["-A", "-t", "[::1]:80", "-M", "64", "-p"]).prefix_len,
        Some(64)
    );
    // Before -t the family is unknown: 64 is read as an IPv4 mask, then -t resets it.
    assert_eq!(
        p(&["-A", "-M", "64", "-t", "[::1]:80", "-p"]).prefix_len,
        Some(128)
    );
    assert_eq!(
        p(&["-A", "-t", "1.2.3.4:80", "-M", "64", "-p"]).netmask,
        Some(Ipv4Addr::new(0, 0, 0, 64))
    );
    // atoi: trailing junk ignored, overflow wraps.
    assert_eq!(
        p(&["-A", "-t", "[::1]:80", "-M", "4294967297", "-p"]).prefix_len,
        Some(1)
    );
    assert_eq!(
        fails(&["-A", "-t", "[::1]:80", "-M", "129"]),
        "illegal ipv6 netmask specified\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "1.2.3.4:80", "-M", "abc"]),
        "illegal virtual server persistent mask specified\n"
    );
}

#[test]
fn scheduler_flags() {
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-b", "sh-port"]),
        "incompatible scheduler flag `sh-port'\n"
    );
    assert_eq!(
        fails(&[
            "-A",
            "-t",
            "10.0.0.1:80",
            "-s",
            "sh",
            "-b",
            "flag-1,mh-port"
        ]),
        "incompatible scheduler flag `mh-port'\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-b", "flag-1,bogus"]),
        "invalid scheduler flag `bogus'\n"
    );
    let f = service_of(&[
        "-A",
        "-t",
        "10.0.0.1:80",
        "-b",
        ",flag-1,,flag-3,",
        "-s",
        "mh",
    ])
    .sched_flags;
    assert_eq!((f.flag1, f.flag2, f.flag3), (true, false, true));
    let f = service_of(&[
        "-A",
        "-t",
        "10.0.0.1:80",
        "-s",
        "mh",
        "-b",
        "mh-fallback,mh-port",
    ])
    .sched_flags;
    assert_eq!((f.flag1, f.flag2, f.flag3), (true, true, false));
    // Scheduler flags are checked after the leftovers.
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-b", "bogus", "x"]),
        "unexpected argument x\n"
    );
    // A list of commas makes ipvsadm dereference NULL.
    assert_eq!(
        exits(&["-A", "-t", "1.2.3.4:80", "-b", ","]),
        (139, String::new())
    );
}

#[test]
fn command_checks() {
    assert_eq!(
        fails(&["-A"]),
        "You need to supply the 'service-address' option for the 'add-service' command\n"
    );
    assert_eq!(
        fails(&["-a", "-t", "10.0.0.1:80"]),
        "You need to supply the 'real-server' option for the 'add-server' command\n"
    );
    assert_eq!(
        fails(&["-D", "-t", "10.0.0.1:80", "-s", "rr"]),
        "Illegal 'scheduler' option with the 'delete-service' command\n"
    );
    assert_eq!(
        fails(&["-C", "-n"]),
        "Illegal 'numeric' option with the 'flush' command\n"
    );
    assert_eq!(
        fails(&["-L", "-c", "-t", "1.2.3.4:80"]),
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-t", "10.0.0.2:80"]),
        "multiple 'service-address' options specified\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:80", "-f", "1"]),
        "multiple 'service-address' options specified\n"
    );
    assert_eq!(
        fails(&["-L", "-nn"]),
        "multiple 'numeric' options specified\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1"]),
        "Zero port specified for non-persistent service\n"
    );
    assert_eq!(
        fails(&["-A", "-t", "10.0.0.1:53", "-o"]),
        "One-Packet Scheduling is only for UDP virtual services\n"
    );
    assert!(service_of(&["-A", "-f", "1", "-o"]).one_packet);
    assert_eq!(
        fails(&["-L", "-c", "--stats"]),
        "options conflicts in the list command\n"
    );
    assert_eq!(
        fails(&["-L", "--timeout", "--persistent-conn"]),
        "options conflicts in the list command\n"
    );
    assert_eq!(
        fails(&["--start-daemon", "bogus"]),
        "illegal start-daemon parameter specified\n"
    );
    assert_eq!(
        fails(&["--stop-daemon", "x"]),
        "illegal start_daemon specified\n"
    );
    assert_eq!(fails(&["-R", "x"]), "unexpected argument x\n");
    assert_eq!(
        fails(&["-S", "--stats"]),
        "Illegal 'stats' option with the 'save' command\n"
    );
}

#[test]
fn real_servers() {
    // Direct routing and tunnelling use the service's port whatever -r says.
    let (svc, s) = server_of(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8:90", "-g"]);
    assert_eq!(svc, tcp("1.2.3.4", 80));
    assert_eq!(
        s,
        ServerSpec {
            address: ip("5.6.7.8"),
            port: 80,
            weight: 1,
            forward: ForwardSpec::Route,
            tunnel: None,
            u_threshold: 0,
            l_threshold: 0,
            proxy_protocol: None,
        }
    );
    assert_eq!(
        server_of(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8:90", "-m"])
            .1
            .port,
        90
    );
    // No port: the service's port as known when -r is read.
    assert_eq!(
        server_of(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-m"])
            .1
            .port,
        80
    );
    assert_eq!(
        server_of(&["-a", "-r", "1.2.3.4", "-t", "5.6.7.8:80", "-m"])
            .1
            .port,
        0
    );
    // fwmark services keep the given port.
    assert_eq!(server_of(&["-a", "-f", "1", "-r", "5.6.7.8:90"]).1.port, 90);
    let (_, s) = server_of(&[
        "-e",
        "-t",
        "10.0.0.1:80",
        "-r",
        "10.0.0.2",
        "-w",
        "0",
        "-x",
        "5",
        "-y",
        "9",
    ]);
    assert_eq!((s.weight, s.u_threshold, s.l_threshold), (0, 5, 9));
    assert_eq!(
        server_of(&[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-w",
            "2147483647"
        ])
        .1
        .weight,
        2_147_483_647
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-w",
            "2147483648"
        ]),
        "illegal weight specified\n"
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.0.0.2",
            "-x",
            "2147483648"
        ]),
        "illegal u_threshold specified\n"
    );
    assert_eq!(
        fails(&["-a", "-t", "10.0.0.1:80", "-r", "80"]),
        "illegal real server address[:port] specified\n"
    );
    assert_eq!(
        fails(&["-a", "-f", "1", "-r", "[::1]:80"]),
        "Different address family is allowed only for tunneling servers\n"
    );
    let (_, s) = server_of(&["-a", "-f", "1", "-r", "[::1]:80", "-i"]);
    assert_eq!((s.address, s.port), (ip("::1"), 80));
    assert_eq!(s.tunnel, Some(TunnelSpec::default()));
    let (_, s) = server_of(&[
        "-a",
        "-t",
        "1.2.3.4:80",
        "-r",
        "5.6.7.8",
        "-i",
        "--tun-type",
        "gue",
        "--tun-port",
        "6080",
        "--tun-remcsum",
    ]);
    assert_eq!(
        s.tunnel,
        Some(TunnelSpec {
            kind: TunnelType::Gue,
            port: 6080,
            csum: TunnelCsumSpec::Remcsum
        })
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-type",
            "gue"
        ]),
        "You need to supply the 'tun-port' option for the 'gue' tunnel type\n"
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-type",
            "gue",
            "--tun-port",
            "1",
            "--tun-csum",
            "--tun-remcsum"
        ]),
        "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type\n"
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-type",
            "gre",
            "--tun-remcsum"
        ]),
        "Illegal 'tun-remcsum' option with the 'gre' tunnel type\n"
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-i",
            "--tun-port",
            "1"
        ]),
        "Illegal 'tun-port' option with the 'ipip' tunnel type\n"
    );
    assert_eq!(
        fails(&[
            "-a",
            "-t",
            "1.2.3.4:80",
            "-r",
            "5.6.7.8",
            "-m",
            "--tun-csum"
        ]),
        "Tunnel options conflict with forward method\n"
    );
    assert_eq!(
        fails(&["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "--tun-type", "x"]),
        "illegal tunnel type specified\n"
    );
}

#[test]
fn deletions_and_zero() {
    assert_eq!(
        apply(&["-d", "-r", "1.2.3.4", "-t", "5.6.7.8:80"]),
        (
            Op::DeleteServer,
            Command::DeleteServer {
                service: tcp("5.6.7.8", 80),
                address: ip("1.2.3.4"),
                port: 0
            }
        )
    );
    assert_eq!(
        apply(&["-d", "-t", "5.6.7.8:80", "-r", "1.2.3.4"]).1,
        Command::DeleteServer {
            service: tcp("5.6.7.8", 80),
            address: ip("1.2.3.4"),
            port: 80
        }
    );
    assert_eq!(
        apply(&["-D", "-f", "3"]),
        (
            Op::DeleteService,
            Command::DeleteService {
                service: ServiceRef::Fwmark {
                    mark: 3,
                    ipv6: false
                }
            }
        )
    );
    assert_eq!(apply(&["-C"]), (Op::Clear, Command::Clear {}));
    assert_eq!(apply(&["-Z"]), (Op::Zero, Command::Zero { service: None }));
    // An all-zero service is "all services" to libipvs.
    assert_eq!(
        apply(&["-Z", "-t", "0.0.0.0:0"]).1,
        Command::Zero { service: None }
    );
    assert_eq!(
        apply(&["-Z", "-t", "[::]:0"]).1,
        Command::Zero { service: None }
    );
    assert_eq!(
        apply(&["-Z", "-t", "0.0.0.0:80"]).1,
        Command::Zero {
            service: Some(tcp("0.0.0.0", 80))
        }
    );
}

#[test]
fn listings() {
    let n = Format {
        numeric: true,
        ..Format::default()
    };
    assert_eq!(run(&["-Ln"]), Action::ListAll(n));
    assert_eq!(run(&["-ln"]), Action::ListAll(n));
    assert_eq!(run(&["--list", "--numeric"]), Action::ListAll(n));
    assert_eq!(run(&["-Lnc"]), Action::ListConns(n));
    assert_eq!(
        run(&[
            "-L",
            "--stats",
            "--exact",
            "--nosort",
            "--sort",
            "--tun-info"
        ]),
        Action::ListAll(Format {
            stats: true,
            exact: true,
            nosort: true,
            tun_info: true,
            ..Format::default()
        })
    );
    assert_eq!(
        run(&["-L", "-f", "1", "-6", "--rate"]),
        Action::ListService(
            ServiceRef::Fwmark {
                mark: 1,
                ipv6: true
            },
            Format {
                rate: true,
                ..Format::default()
            }
        )
    );
    assert_eq!(run(&["-L", "--timeout"]), Action::ListTimeout);
    assert_eq!(run(&["-L", "--daemon"]), Action::ListDaemon);
    assert_eq!(
        run(&["-Sn"]),
        Action::Save(Format {
            rule: true,
            numeric: true,
            ..Format::default()
        })
    );
    assert_eq!(run(&["-R"]), Action::Restore);
    // restore_table refuses to nest.
    assert_eq!(
        parse_args(&argv(&["-R"]), true, &NoResolver),
        Action::Exit(Output::stderr(TRYHELP.into(), 255))
    );
}

/// Every option the parser accepts reaches the API request, and the request
/// passes the API's own check (no value ipvsadm accepts is refused there).
#[test]
fn daemon_requests() {
    let Action::StartDaemon(a) = run(&[
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "averyveryverylonginterface",
        "--syncid",
        "255",
        "--sync-maxlen",
        "65507",
        "--mcast-group",
        "239.1.2.3",
        "--mcast-port",
        "65535",
        "--mcast-ttl",
        "255",
    ]) else {
        panic!("not a start")
    };
    let spec = a.spec();
    assert_eq!(spec.state, rvs_api::DaemonState::Backup);
    assert_eq!(spec.mcast_interface, "averyveryverylo");
    assert_eq!(
        (
            spec.syncid,
            spec.sync_maxlen,
            spec.mcast_group,
            spec.mcast_port,
            spec.mcast_ttl
        ),
        (
            255,
            Some(65507),
            Some(ip("239.1.2.3")),
            Some(65535),
            Some(255)
        )
    );
    assert!(spec.check().is_ok());
    let Action::StartDaemon(a) = run(&["--start-daemon", "master"]) else {
        panic!("not a start")
    };
    let spec = a.spec();
    assert_eq!(spec.state, rvs_api::DaemonState::Master);
    assert_eq!((spec.mcast_interface.as_str(), spec.syncid), ("eth0", 0));
    assert_eq!(
        (
            spec.sync_maxlen,
            spec.mcast_group,
            spec.mcast_port,
            spec.mcast_ttl
        ),
        (None, None, None, None)
    );
    assert!(spec.check().is_ok());
}

#[test]
fn daemons() {
    assert_eq!(
        run(&["--start-daemon", "master"]),
        Action::StartDaemon(DaemonArgs {
            master: true,
            mcast_interface: "eth0".into(),
            syncid: None,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None
        })
    );
    assert_eq!(
        run(&[
            "--start-daemon",
            "backup",
            "--mcast-group",
            "ff02::1",
            "--mcast-port",
            "8848",
            "--mcast-ttl",
            "1",
            "--sync-maxlen",
            "1472",
            "--syncid",
            "9",
            "--mcast-interface",
            "averyveryverylonginterface"
        ]),
        Action::StartDaemon(DaemonArgs {
            master: false,
            mcast_interface: "averyveryverylo".into(),
            syncid: Some(9),
            sync_maxlen: Some(1472),
            mcast_group: Some(ip("ff02::1")),
            mcast_port: Some(8848),
            mcast_ttl: Some(1)
        })
    );
    assert_eq!(
        run(&["--stop-daemon", "backup", "--syncid", "3"]),
        Action::StopDaemon(DaemonArgs {
            master: false,
            mcast_interface: String::new(),
            syncid: Some(3),
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None
        })
    );
    assert_eq!(
        fails(&["--start-daemon", "master", "--mcast-group", "10.1.1.1"]),
        "invalid IPv4 mcast-group `10.1.1.1'\n"
    );
    assert_eq!(
        fails(&["--start-daemon", "master", "--mcast-group", "224.0.0.081"]),
        "invalid IPv4 mcast-group `224.0.0.081'\n"
    );
    assert_eq!(
        fails(&["--start-daemon", "master", "--mcast-group", "fe80::1"]),
        "invalid IPv6 mcast-group `fe80::1'\n"
    );
    assert_eq!(
        fails(&["--start-daemon", "master", "--sync-maxlen", "65508"]),
        "illegal sync-maxlen specified\n"
    );
    assert_eq!(
        fails(&["--stop-daemon", "backup", "--mcast-interface", "eth1"]),
        "Illegal 'mcast-interface' option with the 'stop-daemon' command\n"
    );
}

#[test]
fn next_argument_substitution() {
    // popt splices the next non-option word into "!#:+".
    assert_eq!(
        fails(&["-A", "-t", "x!#:+", "-s", "rr", "1.1.1.1:80"]),
        "illegal virtual server address[:port] specified\n"
    );
    assert_eq!(
        service_of(&["-A", "-t", "1.2.3.4:!#:+", "80", "-s", "rr"]).service,
        tcp("1.2.3.4", 80)
    );
    // The spliced word is no leftover any more...
    assert_eq!(
        service_of(&["-A", "-t", "1.2.3.4:80", "-s", "r!#:+", "r"]).scheduler,
        "rr"
    );
    // ...but an option's argument is read without looking whether it was taken.
    assert_eq!(
        fails(&["-A", "-t", "1.2.3.4:80", "-s", "r!#:+", "-p", "r"]),
        "invalid timeout value `r' specified\n"
    );
    // With words left but none usable, popt 1.19 spins forever; rvs reports it.
    let (code, err) = exits(&["-A", "-t", "1.2.3.4:80", "-s", "r!#:+", "-n"]);
    assert_eq!(code, 255);
    assert!(err.contains("loops forever"));
}

#[test]
fn names_through_the_resolver() {
    struct R;
    impl Resolver for R {
        fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr> {
            (name == "web").then(|| Ipv4Addr::new(10, 0, 0, 7))
        }
        fn addr_to_host(&self, _: IpAddr) -> Option<String> {
            None
        }
        fn service_to_port(&self, name: &str, proto: Proto) -> Option<u16> {
            match (name, proto) {
                ("http", Proto::Tcp) => Some(80),
                ("domain", Proto::Tcp | Proto::Udp) => Some(53),
                _ => None,
            }
        }
        fn port_to_service(&self, _: u16, _: Proto) -> Option<String> {
            None
        }
    }
    let run = |w: &[&str]| parse_args(&argv(w), false, &R);
    let added = |w: &[&str]| match run(w) {
        Action::Apply {
            command: Command::AddServer { service, server },
            ..
        } => (service, server),
        other => panic!("{w:?}: {other:?}"),
    };
    let (service, server) = added(&["-a", "-t", "web:http", "-r", "web:domain", "-m"]);
    assert_eq!(service, tcp("10.0.0.7", 80));
    assert_eq!((server.address, server.port), (ip("10.0.0.7"), 53));
    // Port names are looked up for the service's protocol; -f means TCP.
    assert!(matches!(
        run(&["-A", "-u", "10.0.0.1:http"]),
        Action::Exit(_)
    ));
    assert_eq!(added(&["-a", "-f", "1", "-r", "10.0.0.2:http"]).1.port, 80);
    // -r before -t: no protocol yet, so no name.
    assert_eq!(
        run(&["-a", "-r", "10.0.0.2:http", "-t", "10.0.0.1:80"]),
        Action::Exit(Output::stderr(
            "illegal real server address[:port] specified\n".into(),
            2
        ))
    );
    // A netmask may be a host name too.
    let Action::Apply {
        command: Command::AddService { spec },
        ..
    } = run(&["-A", "-t", "10.0.0.1:80", "-p", "-M", "web"])
    else {
        panic!()
    };
    assert_eq!(
        spec.persistence.and_then(|p| p.netmask),
        Some(Ipv4Addr::new(10, 0, 0, 7))
    );
}

#[test]
fn nul_bytes_end_an_argument() {
    assert_eq!(
        service_of(&["-A", "-t", "10.0.0.1:80\0junk"]).service,
        tcp("10.0.0.1", 80)
    );
}

#[test]
fn posixly_correct_ends_options_at_the_first_word() {
    let words = argv(&["-A", "-t", "1.2.3.4:80", "x", "-s"]);
    assert_eq!(
        parse_args_ext(&words, false, true, &NoResolver),
        Action::Exit(Output::stderr("unexpected argument x\n".into(), 2))
    );
    assert_eq!(
        parse_args_ext(&words, false, false, &NoResolver),
        Action::Failed(Output::stderr("-s: missing argument\n".into(), 255))
    );
    assert_eq!(
        parse_args_ext(&argv(&["x", "-L"]), false, true, &NoResolver),
        Action::Exit(Output::stderr(TRYHELP.into(), 255))
    );
}

#[test]
fn fullnat_is_an_rvs_extension_switch_for_real_servers() {
    let text = format!(
        "{:?}",
        run(&["-a", "-t", "10.0.0.1:80", "-r", "10.1.0.1:80", "--fullnat"])
    );
    assert!(text.contains("Fullnat"), "{text}");
    let plain = format!(
        "{:?}",
        run(&["-a", "-t", "10.0.0.1:80", "-r", "10.1.0.1:80", "-m"])
    );
    assert!(
        plain.contains("Masq") && !plain.contains("Fullnat"),
        "{plain}"
    );
    // One forwarding method per command, as with -g/-i/-m.
    assert!(!format!(
        "{:?}",
        run(&[
            "-a",
            "-t",
            "10.0.0.1:80",
            "-r",
            "10.1.0.1:80",
            "-m",
            "--fullnat"
        ])
    )
    .contains("Fullnat"));
}
