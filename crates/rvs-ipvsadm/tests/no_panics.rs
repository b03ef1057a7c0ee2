//! Property tests: no argv, restore input or table makes the library panic.

use proptest::prelude::*;
use rvs_ipvsadm::{parse_args, parse_args_ext, restore_lines, save_script_args, NoResolver};

/// Words that reach deep into the parser, mixed with arbitrary text.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-A",
            "-E",
            "-D",
            "-C",
            "-L",
            "-l",
            "-Z",
            "-a",
            "-e",
            "-d",
            "--set",
            "-h",
            "-v",
            "-R",
            "-S",
            "--start-daemon",
            "--stop-daemon",
            "master",
            "backup",
            "-t",
            "-u",
            "-f",
            "--sctp-service",
            "-s",
            "-p",
            "-M",
            "-r",
            "-m",
            "-i",
            "-g",
            "-w",
            "-x",
            "-y",
            "-n",
            "-c",
            "--timeout",
            "--daemon",
            "--stats",
            "--rate",
            "--thresholds",
            "--persistent-conn",
            "--nosort",
            "--sort",
            "-X",
            "-6",
            "-o",
            "--pe",
            "-b",
            "--mcast-group",
            "--mcast-port",
            "--mcast-ttl",
            "--sync-maxlen",
            "--syncid",
            "--mcast-interface",
            "--tun-info",
            "--tun-type",
            "--tun-port",
            "--tun-nocsum",
            "--tun-csum",
            "--tun-remcsum",
            "--",
            "-",
            "10.0.0.1:80",
            "[::1]:80",
            "::1",
            "1",
            "0",
            "65535",
            "gue",
            "gre",
            "ipip",
            "sh",
            "mh",
            "sh-port",
            ",",
            "flag-1,flag-3",
            "!#:+",
            "x!#:+",
            "-Lnc",
            "-mw",
            "--list=",
            "-p=",
            "224.0.0.81",
            "ff02::1",
            "255.255.255.0",
            "64",
        ])
        .prop_map(String::from),
        "[-=:\\[\\]0-9a-zA-Z!#+,. ]{0,12}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parse_args_never_panics(words in prop::collection::vec(word(), 0..10), stdin: bool, posix: bool) {
        let mut argv = vec!["ipvsadm".to_string()];
        argv.extend(words);
        let _ = parse_args(&argv, stdin, &NoResolver);
        let _ = parse_args_ext(&argv, stdin, posix, &NoResolver);
        let _ = parse_args(&argv[1..], stdin, &NoResolver);
        let _ = save_script_args(&argv);
    }

    #[test]
    fn restore_lines_never_panic(input in any::<String>(), words in prop::collection::vec(word(), 0..8)) {
        let _ = restore_lines("ipvsadm", &input);
        let _ = restore_lines("ipvsadm", &words.join(" \n\t\r"));
    }
}

mod tables {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use rvs_api::{
        ConnView, ForwardSpec, PersistenceSpec, RatesView, SchedFlagsSpec, ServerSpec, ServerView,
        ServiceRef, ServiceSpec, ServiceView, StatsView, TableView, TimeoutsSpec, TunnelCsumSpec,
        TunnelSpec, TunnelType,
    };
    use rvs_ipvsadm::{
        render_conns, render_list_all, render_list_service, render_timeout, Format, NoResolver,
    };

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    fn service_ref() -> impl Strategy<Value = ServiceRef> {
        prop_oneof![
            (addr(), any::<u16>()).prop_map(|(address, port)| ServiceRef::Tcp { address, port }),
            (addr(), any::<u16>()).prop_map(|(address, port)| ServiceRef::Udp { address, port }),
            (addr(), any::<u16>()).prop_map(|(address, port)| ServiceRef::Sctp { address, port }),
            (any::<u32>(), any::<bool>())
                .prop_map(|(mark, ipv6)| ServiceRef::Fwmark { mark, ipv6 }),
        ]
    }

    fn counters() -> impl Strategy<Value = (StatsView, RatesView)> {
        prop::array::uniform10(any::<u64>()).prop_map(|s| {
            (
                StatsView {
                    conns: s[0],
                    in_pkts: s[1],
                    out_pkts: s[2],
                    in_bytes: s[3],
                    out_bytes: s[4],
                },
                RatesView {
                    cps: s[5],
                    in_pps: s[6],
                    out_pps: s[7],
                    in_bps: s[8],
                    out_bps: s[9],
                },
            )
        })
    }

    fn server() -> impl Strategy<Value = ServerView> {
        let forward = prop::sample::select(vec![
            ForwardSpec::Masq,
            ForwardSpec::Route,
            ForwardSpec::Tunnel,
            ForwardSpec::Local,
            ForwardSpec::Fullnat,
        ]);
        let tunnel = prop::option::of((0..3usize, any::<u16>(), 0..3usize).prop_map(
            |(k, port, c)| TunnelSpec {
                kind: [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre][k],
                port,
                csum: [
                    TunnelCsumSpec::Nocsum,
                    TunnelCsumSpec::Csum,
                    TunnelCsumSpec::Remcsum,
                ][c],
            },
        ));
        (
            addr(),
            any::<u16>(),
            any::<u32>(),
            forward,
            tunnel,
            any::<[u32; 5]>(),
            counters(),
        )
            .prop_map(
                |(address, port, weight, forward, tunnel, n, (stats, rates))| ServerView {
                    spec: ServerSpec {
                        address,
                        port,
                        weight,
                        forward,
                        tunnel,
                        u_threshold: n[0],
                        l_threshold: n[1],
                        proxy_protocol: None,
                    },
                    active_conns: n[2],
                    inactive_conns: n[3],
                    persistent_conns: n[4],
                    stats,
                    rates,
                },
            )
    }

    fn service() -> impl Strategy<Value = ServiceView> {
        let persistence = prop::option::of(
            (
                any::<u32>(),
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u32>()),
            )
                .prop_map(|(timeout, m, prefix_len)| PersistenceSpec {
                    timeout,
                    netmask: m.map(Ipv4Addr::from),
                    prefix_len,
                }),
        );
        (
            service_ref(),
            "[a-z]{0,16}",
            any::<[bool; 4]>(),
            persistence,
            prop::option::of("[a-z]{0,4}"),
            counters(),
            prop::collection::vec(server(), 0..6),
        )
            .prop_map(
                |(service, scheduler, f, persistence, pe, (stats, rates), servers)| ServiceView {
                    spec: ServiceSpec {
                        service,
                        scheduler,
                        sched_flags: SchedFlagsSpec {
                            flag1: f[0],
                            flag2: f[1],
                            flag3: f[2],
                        },
                        persistence,
                        one_packet: f[3],
                        pe,
                    },
                    stats,
                    rates,
                    servers,
                },
            )
    }

    fn format() -> impl Strategy<Value = Format> {
        any::<[bool; 9]>().prop_map(|b| Format {
            numeric: b[0],
            rule: b[1],
            stats: b[2],
            rate: b[3],
            thresholds: b[4],
            persistent_conn: b[5],
            nosort: b[6],
            exact: b[7],
            tun_info: b[8],
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn renderers_never_panic(
            services in prop::collection::vec(service(), 0..6),
            f in format(),
            probe in service_ref(),
            t in any::<[u64; 3]>(),
            conns in prop::collection::vec((addr(), any::<u16>(), "[A-Z]{0,5}", "[A-Z_]{0,12}", any::<u64>()), 0..5),
        ) {
            let table = TableView {
                version: "1.2.1".into(),
                conn_tab_size: 4096,
                timeouts: TimeoutsSpec { tcp: t[0], tcpfin: t[1], udp: t[2] },
                services,
                marks: Vec::new(),
            };
            let all = render_list_all(&table, f, &NoResolver);
            // One line per service and per server, plus header and title.
            let entries: usize = table.services.iter().map(|s| 1 + s.servers.len()).sum();
            prop_assert!(all.lines().count() >= entries);
            for s in &table.services {
                prop_assert!(render_list_service(&table, &s.spec.service, f, &NoResolver).is_ok());
            }
            let _ = render_list_service(&table, &probe, f, &NoResolver);
            let _ = render_timeout(&table.timeouts);
            let views: Vec<ConnView> = conns
                .into_iter()
                .map(|(a, p, proto, state, expires)| ConnView {
                    protocol: proto,
                    client: a,
                    client_port: p,
                    virtual_address: a,
                    virtual_port: p,
                    server: a,
                    server_port: p,
                    state,
                    expires,
                    template: false,
                })
                .collect();
            let _ = render_conns(&views, f, &NoResolver);
        }
    }
}
