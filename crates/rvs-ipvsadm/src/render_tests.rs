//! Renderer tests. Expected texts come from ipvsadm 1.31 itself: the capture in
//! shared/reference/ipvsadm-real-output.txt, and runs of ipvsadm.c (with popt 1.19 and
//! glibc 2.36) over equivalent tables. Trailing blanks are significant.
#![allow(clippy::unwrap_used)]

use super::*;
use rvs_api::{PersistenceSpec, RatesView, SchedFlagsSpec, ServerSpec, ServiceSpec, StatsView};
use std::net::Ipv4Addr;

use crate::NoResolver;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(a: &str, port: u16) -> ServiceRef {
    ServiceRef::Tcp {
        address: ip(a),
        port,
    }
}

fn svc(service: ServiceRef, sched: &str) -> ServiceView {
    ServiceView {
        spec: ServiceSpec {
            service,
            scheduler: sched.into(),
            sched_flags: SchedFlagsSpec::default(),
            persistence: None,
            one_packet: false,
            pe: None,
        },
        stats: StatsView::default(),
        rates: RatesView::default(),
        servers: vec![],
    }
}

fn server(a: &str, port: u16, forward: ForwardSpec, weight: u32) -> ServerView {
    ServerView {
        spec: ServerSpec {
            address: ip(a),
            port,
            weight,
            forward,
            tunnel: (forward == ForwardSpec::Tunnel).then(TunnelSpec::default),
            u_threshold: 0,
            l_threshold: 0,
            proxy_protocol: None,
        },
        active_conns: 0,
        inactive_conns: 0,
        persistent_conns: 0,
        stats: StatsView::default(),
        rates: RatesView::default(),
    }
}

fn table(services: Vec<ServiceView>) -> TableView {
    TableView {
        version: "1.2.1".into(),
        conn_tab_size: 4096,
        timeouts: TimeoutsSpec {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        },
        services,
        marks: Vec::new(),
    }
}

fn numeric() -> Format {
    Format {
        numeric: true,
        ..Format::default()
    }
}

/// The table of ipvsadm-real-output.txt, built in the order its commands ran (real
/// servers newest first, as the kernel and rvsd list them).
fn real_table() -> TableView {
    let mut web = svc(tcp("10.0.0.1", 80), "wlc");
    web.servers = vec![
        server("10.0.0.3", 8080, ForwardSpec::Masq, 1),
        server("10.0.0.2", 80, ForwardSpec::Route, 3),
    ];
    let mut dns = svc(
        ServiceRef::Udp {
            address: ip("10.0.0.1"),
            port: 53,
        },
        "sh",
    );
    dns.spec.sched_flags.flag2 = true;
    dns.spec.persistence = Some(PersistenceSpec {
        timeout: 60,
        netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        prefix_len: None,
    });
    dns.servers = vec![server("10.0.0.4", 53, ForwardSpec::Tunnel, 2)];
    let mut fw = svc(
        ServiceRef::Fwmark {
            mark: 6666,
            ipv6: false,
        },
        "rr",
    );
    fw.spec.persistence = Some(PersistenceSpec {
        timeout: 360,
        netmask: Some(Ipv4Addr::BROADCAST),
        prefix_len: None,
    });
    fw.servers = vec![server("10.0.0.5", 0, ForwardSpec::Route, 1)];
    table(vec![web, dns, fw])
}

#[test]
fn real_capture_ln() {
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 wlc
  -> 10.0.0.2:80                  Route   3      0          0         
  -> 10.0.0.3:8080                Masq    1      0          0         
UDP  10.0.0.1:53 sh (sh-port) persistent 60 mask 255.255.255.0
  -> 10.0.0.4:53                  Tunnel  2      0          0         
FWM  6666 rr persistent 360
  -> 10.0.0.5:0                   Route   1      0          0         
";
    assert_eq!(
        render_list_all(&real_table(), numeric(), &NoResolver),
        expected
    );
}

#[test]
fn real_capture_sn() {
    let expected = "\
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 3
-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 1
-A -u 10.0.0.1:53 -s sh -p 60 -M 255.255.255.0 -b sh-port
-a -u 10.0.0.1:53 -r 10.0.0.4:53 -i -w 2 --tun-type ipip
-A -f 6666 -s rr -p 360
-a -f 6666 -r 10.0.0.5:0 -g -w 1
";
    let f = Format {
        rule: true,
        ..numeric()
    };
    assert_eq!(render_list_all(&real_table(), f, &NoResolver), expected);
}

#[test]
fn real_capture_stats_and_rate() {
    let stats = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.1:80                         0        0        0        0        0
  -> 10.0.0.2:80                         0        0        0        0        0
  -> 10.0.0.3:8080                       0        0        0        0        0
UDP  10.0.0.1:53                         0        0        0        0        0
  -> 10.0.0.4:53                         0        0        0        0        0
FWM  6666                                0        0        0        0        0
  -> 10.0.0.5:0                          0        0        0        0        0
";
    let f = Format {
        stats: true,
        ..numeric()
    };
    assert_eq!(render_list_all(&real_table(), f, &NoResolver), stats);
    let rate = stats.replace(
        "               Conns   InPkts  OutPkts  InBytes OutBytes",
        "                 CPS    InPPS   OutPPS    InBPS   OutBPS",
    );
    let f = Format {
        rate: true,
        ..numeric()
    };
    assert_eq!(render_list_all(&real_table(), f, &NoResolver), rate);
}

#[test]
fn real_capture_thresholds_and_persistent_conn() {
    let thresholds = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.1:80 wlc
  -> 10.0.0.2:80                  0          0          0          0         
  -> 10.0.0.3:8080                0          0          0          0         
UDP  10.0.0.1:53 sh (sh-port) persistent 60 mask 255.255.255.0
  -> 10.0.0.4:53                  0          0          0          0         
FWM  6666 rr persistent 360
  -> 10.0.0.5:0                   0          0          0          0         
";
    let f = Format {
        thresholds: true,
        ..numeric()
    };
    assert_eq!(render_list_all(&real_table(), f, &NoResolver), thresholds);
    let persistent = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.1:80 wlc
  -> 10.0.0.2:80                  3         0           0          0         
  -> 10.0.0.3:8080                1         0           0          0         
UDP  10.0.0.1:53 sh (sh-port) persistent 60 mask 255.255.255.0
  -> 10.0.0.4:53                  2         0           0          0         
FWM  6666 rr persistent 360
  -> 10.0.0.5:0                   1         0           0          0         
";
    let f = Format {
        persistent_conn: true,
        ..numeric()
    };
    assert_eq!(render_list_all(&real_table(), f, &NoResolver), persistent);
}

#[test]
fn real_capture_timeout_and_empty_conns() {
    assert_eq!(
        render_timeout(&real_table().timeouts),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    assert_eq!(
        render_conns(&[], numeric(), &NoResolver),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
}

fn counters(s: [u64; 10]) -> (StatsView, RatesView) {
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
}

fn counted_table(svc_nums: [u64; 10], dest_nums: [u64; 10]) -> TableView {
    let mut s = svc(tcp("10.0.0.100", 80), "wlc");
    (s.stats, s.rates) = counters(svc_nums);
    let mut d = server("192.168.100.2", 80, ForwardSpec::Masq, 1);
    (d.stats, d.rates) = counters(dest_nums);
    d.active_conns = 3;
    d.inactive_conns = 12;
    s.servers = vec![d];
    table(vec![s])
}

fn last_two_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len() - 2..].join("\n")
}

#[test]
fn large_numbers_scale_and_exact_widens() {
    let t = counted_table(
        [
            1520, 98765, 87654, 6543210, 123456789, 12, 340, 310, 24000, 410000,
        ],
        [
            760, 49000, 43000, 3200000, 61000000, 6, 170, 155, 12000, 205000,
        ],
    );
    let f = |stats, exact| Format {
        stats,
        rate: !stats,
        exact,
        ..numeric()
    };
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(true, false), &NoResolver)),
        "TCP  10.0.0.100:80                    1520    98765    87654  6543210  123456K\n  -> 192.168.100.2:80                  760    49000    43000  3200000 61000000"
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(true, true), &NoResolver)),
        "TCP  10.0.0.100:80                    1520    98765    87654  6543210 123456789\n  -> 192.168.100.2:80                  760    49000    43000  3200000 61000000"
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(false, false), &NoResolver)),
        "TCP  10.0.0.100:80                      12      340      310    24000   410000\n  -> 192.168.100.2:80                    6      170      155    12000   205000"
    );

    // Every scale step, and a real server's counters cut to 32 bits except bytes;
    // its cps/pps columns are plain %8llu even when wider.
    let t = counted_table(
        [
            99_999_999,
            100_000_000,
            999_999_999,
            1_000_000_000,
            99_999_999_999,
            100_000_000_000,
            99_999_999_999_999,
            100_000_000_000_000,
            u64::MAX,
            0,
        ],
        [
            1 << 32,
            (1 << 32) + 1,
            99_999_999_999,
            99_999_999_999,
            u64::MAX,
            1 << 32,
            (1 << 33) + 1,
            4_294_967_295,
            4_294_967_396,
            100_000_000_000,
        ],
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(true, false), &NoResolver)),
        "TCP  10.0.0.100:80                99999999  100000K  999999K    1000M   99999M\n  -> 192.168.100.2:80                    0        1    1215M   99999M18446744T"
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(false, false), &NoResolver)),
        "TCP  10.0.0.100:80                    100G   99999G     100T18446744T        0\n  -> 192.168.100.2:80                    0        1 4294967295      100    1215M"
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(true, true), &NoResolver)),
        "TCP  10.0.0.100:80                99999999 100000000 999999999 1000000000 99999999999\n  -> 192.168.100.2:80                    0        1 1215752191 99999999999 18446744073709551615"
    );
    assert_eq!(
        last_two_lines(&render_list_all(&t, f(false, true), &NoResolver)),
        "TCP  10.0.0.100:80                100000000000 99999999999999 100000000000000 18446744073709551615        0\n  -> 192.168.100.2:80                    0        1 4294967295      100 1215752192"
    );
}

fn order_of(addrs: &[&str]) -> Vec<String> {
    let mut s = svc(tcp("10.0.0.1", 80), "rr");
    s.servers = addrs
        .iter()
        .map(|a| server(a, 80, ForwardSpec::Tunnel, 1))
        .collect();
    render_list_all(&table(vec![s]), numeric(), &NoResolver)
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn server_order_follows_the_wrapping_comparator_under_glibc_msort() {
    // 200.0.0.1 - 10.0.0.1 overflows a C int: 200.0.0.1 sorts first.
    assert_eq!(
        order_of(&["10.0.0.1", "200.0.0.1"]),
        ["200.0.0.1:80", "10.0.0.1:80"]
    );
    assert_eq!(
        order_of(&["200.0.0.1", "10.0.0.1"]),
        ["200.0.0.1:80", "10.0.0.1:80"]
    );
    assert_eq!(
        order_of(&["127.0.0.1", "128.0.0.1", "10.0.0.1", "200.0.0.1"]),
        [
            "127.0.0.1:80",
            "128.0.0.1:80",
            "200.0.0.1:80",
            "10.0.0.1:80"
        ]
    );
    // Non-transitive, yet the merge happens to come out ascending here.
    assert_eq!(
        order_of(&[
            "100.0.0.1",
            "200.0.0.1",
            "10.0.0.1",
            "150.0.0.1",
            "50.0.0.1"
        ]),
        [
            "10.0.0.1:80",
            "50.0.0.1:80",
            "100.0.0.1:80",
            "150.0.0.1:80",
            "200.0.0.1:80"
        ]
    );
    assert_eq!(
        order_of(&["1.0.0.1", "129.0.0.1", "2.0.0.1", "130.0.0.1", "3.0.0.1"]),
        [
            "1.0.0.1:80",
            "2.0.0.1:80",
            "3.0.0.1:80",
            "129.0.0.1:80",
            "130.0.0.1:80"
        ]
    );
    // Mixed families (tunnelled servers): the first operand's family decides.
    assert_eq!(
        order_of(&["2001:db8::1", "32.1.13.184", "10.0.0.1"]),
        ["10.0.0.1:80", "32.1.13.184:80", "[2001:db8::1]:80"]
    );
    assert_eq!(
        order_of(&["::1", "0.0.0.0", "::2", "8000::1", "1.2.3.4"]),
        [
            "0.0.0.0:80",
            "[::1]:80",
            "[::2]:80",
            "1.2.3.4:80",
            "[8000::1]:80"
        ]
    );
}

#[test]
fn service_order_and_nosort() {
    let t = table(vec![
        svc(tcp("10.0.0.1", 80), "rr"),
        svc(tcp("200.0.0.1", 80), "rr"),
        svc(tcp("::1", 80), "rr"),
        svc(
            ServiceRef::Fwmark {
                mark: u32::MAX,
                ipv6: false,
            },
            "rr",
        ),
    ]);
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  -1 rr
TCP  200.0.0.1:80 rr
TCP  10.0.0.1:80 rr
TCP  [::1]:80 rr
";
    assert_eq!(render_list_all(&t, numeric(), &NoResolver), expected);
    let nosort = Format {
        nosort: true,
        ..numeric()
    };
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 rr
TCP  200.0.0.1:80 rr
TCP  [::1]:80 rr
FWM  -1 rr
";
    assert_eq!(render_list_all(&t, nosort, &NoResolver), expected);
    assert_eq!(
        order_of(&["10.0.0.3", "10.0.0.2"]),
        ["10.0.0.2:80", "10.0.0.3:80"]
    );
}

/// Names as this machine's /etc/hosts and /etc/services give them.
struct Names;

impl Resolver for Names {
    fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr> {
        (name == "localhost").then_some(Ipv4Addr::LOCALHOST)
    }
    fn addr_to_host(&self, addr: IpAddr) -> Option<String> {
        match addr.to_string().as_str() {
            "127.0.0.1" => Some("localhost".into()),
            "10.0.0.9" => Some("a-rather-long-host-name.example.org".into()),
            "::1" => Some("ip6-localhost-with-a-long-name.example.org".into()),
            _ => None,
        }
    }
    fn service_to_port(&self, _name: &str, _proto: Proto) -> Option<u16> {
        None
    }
    fn port_to_service(&self, port: u16, proto: Proto) -> Option<String> {
        match (port, proto) {
            (80, Proto::Tcp) => Some("http".into()),
            (53, Proto::Udp) | (53, Proto::Tcp) => Some("domain".into()),
            (8080, Proto::Tcp) => Some("http-alt".into()),
            (22, Proto::Tcp) => Some("ssh".into()),
            (443, Proto::Tcp) => Some("https".into()),
            _ => None,
        }
    }
}

#[test]
fn names_and_truncation() {
    let mut a = svc(tcp("10.0.0.9", 8080), "rr");
    a.servers = vec![
        server("10.0.0.9", 80, ForwardSpec::Masq, 1),
        server("127.0.0.1", 80, ForwardSpec::Local, 1),
    ];
    let mut b = svc(tcp("::1", 80), "rr");
    b.servers = vec![server("::1", 80, ForwardSpec::Route, 1)];
    let mut c = svc(
        ServiceRef::Fwmark {
            mark: 7,
            ipv6: false,
        },
        "rr",
    );
    c.servers = vec![server("127.0.0.1", 80, ForwardSpec::Route, 1)];
    let t = table(vec![a, b, c]);
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  a-rather-long-host-name.exam rr
  -> a-rather-long-host-name.exam Masq    1      0          0         
  -> localhost:http               Local   1      0          0         
TCP  [ip6-localhost-with-a-long-name.example.org]:http rr
  -> [ip6-localhost-with-a-long-name.example.org]:http Route   1      0          0         
FWM  7 rr
  -> localhost:80                 Route   1      0          0         
";
    assert_eq!(render_list_all(&t, Format::default(), &Names), expected);
    let expected = "\
-A -t a-rather-long-host-name.example.org:http-alt -s rr
-a -t a-rather-long-host-name.example.org:http-alt -r a-rather-long-host-name.example.org:http -m -w 1
-a -t a-rather-long-host-name.example.org:http-alt -r localhost:http -g -w 1
-A -t [ip6-localhost-with-a-long-name.example.org]:http -s rr
-a -t [ip6-localhost-with-a-long-name.example.org]:http -r [ip6-localhost-with-a-long-name.example.org]:http -g -w 1
-A -f 7 -s rr
-a -f 7 -r localhost:80 -g -w 1
";
    let rule = Format {
        rule: true,
        ..Format::default()
    };
    assert_eq!(render_list_all(&t, rule, &Names), expected);
}

#[test]
fn name_column_is_cut_at_59_bytes() {
    struct Long;
    impl Resolver for Long {
        fn host_to_addr(&self, _: &str) -> Option<Ipv4Addr> {
            None
        }
        fn addr_to_host(&self, _: IpAddr) -> Option<String> {
            Some("h".repeat(70))
        }
        fn service_to_port(&self, _: &str, _: Proto) -> Option<u16> {
            None
        }
        fn port_to_service(&self, _: u16, _: Proto) -> Option<String> {
            None
        }
    }
    let t = table(vec![svc(tcp("10.0.0.1", 80), "rr")]);
    let rule = Format {
        rule: true,
        ..Format::default()
    };
    assert_eq!(
        render_list_all(&t, rule, &Long),
        format!("-A -t {} -s rr\n", "h".repeat(59))
    );
}

#[test]
fn service_line_variants() {
    let mut s = svc(tcp("10.0.0.1", 80), "sh");
    // sh prints no name for flag-3, but the parentheses still come.
    s.spec.sched_flags.flag3 = true;
    s.spec.one_packet = true;
    s.spec.pe = Some("sip".into());
    let mut v6 = svc(
        ServiceRef::Fwmark {
            mark: 2_147_483_649,
            ipv6: true,
        },
        "mh",
    );
    v6.spec.sched_flags = SchedFlagsSpec {
        flag1: true,
        flag2: true,
        flag3: false,
    };
    v6.spec.persistence = Some(PersistenceSpec {
        timeout: 2_678_400,
        netmask: None,
        prefix_len: Some(64),
    });
    v6.spec.pe = Some("sip".into());
    let mut wlc = svc(
        ServiceRef::Sctp {
            address: ip("2001:db8::1"),
            port: 0,
        },
        "wlc",
    );
    wlc.spec.sched_flags = SchedFlagsSpec {
        flag1: true,
        flag2: true,
        flag3: true,
    };
    wlc.spec.persistence = Some(PersistenceSpec {
        timeout: 1,
        netmask: None,
        prefix_len: Some(128),
    });
    let t = table(vec![s, v6, wlc]);
    assert_eq!(
        render_list_all(&t, numeric(), &NoResolver),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  -2147483647 IPv6 mh (mh-fallback,mh-port) persistent 2678400 mask 64 pe sip
TCP  10.0.0.1:80 sh () ops
SCTP [2001:db8::1]:0 wlc (flag-1,flag-2,flag-3) persistent 1
"
    );
    let rule = Format {
        rule: true,
        ..numeric()
    };
    assert_eq!(
        render_list_all(&t, rule, &NoResolver),
        "\
-A -f -2147483647 -6 -s mh -p 2678400 -M 64 --pe sip -b mh-fallback,mh-port
-A -t 10.0.0.1:80 -s sh --pe sip -o -b 
-A --sctp-service [2001:db8::1]:0 -s wlc -p 1 -b flag-1,flag-2,flag-3
"
    );
}

fn tunnel(a: &str, kind: TunnelType, port: u16, csum: TunnelCsumSpec) -> ServerView {
    let mut s = server(a, 80, ForwardSpec::Tunnel, 2);
    s.spec.tunnel = Some(TunnelSpec { kind, port, csum });
    s
}

#[test]
fn tunnels_and_other_forwarding() {
    let mut s = svc(tcp("10.0.0.1", 80), "rr");
    s.servers = vec![
        tunnel("10.0.0.6", TunnelType::Gre, 0, TunnelCsumSpec::Csum),
        tunnel("10.0.0.5", TunnelType::Gue, 6080, TunnelCsumSpec::Remcsum),
        tunnel("10.0.0.4", TunnelType::Ipip, 0, TunnelCsumSpec::Nocsum),
        server("10.0.0.3", 80, ForwardSpec::Local, 1),
        server("10.0.0.2", 8080, ForwardSpec::Fullnat, 0),
    ];
    let t = table(vec![s]);
    let info = Format {
        tun_info: true,
        ..numeric()
    };
    assert_eq!(
        render_list_all(&t, info, &NoResolver),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  10.0.0.1:80 rr
  -> 10.0.0.2:8080                FullNat n/a           0      0          0         
  -> 10.0.0.3:80                  Local   n/a           1      0          0         
  -> 10.0.0.4:80                  Tunnel  ipip          2      0          0         
  -> 10.0.0.5:80                  Tunnel  gue:6080:r+c  2      0          0         
  -> 10.0.0.6:80                  Tunnel  gre:+c        2      0          0         
"
    );
    let rule = Format {
        rule: true,
        ..numeric()
    };
    assert_eq!(
        render_list_all(&t, rule, &NoResolver),
        "\
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 0
-a -t 10.0.0.1:80 -r 10.0.0.3:80 -g -w 1
-a -t 10.0.0.1:80 -r 10.0.0.4:80 -i -w 2 --tun-type ipip
-a -t 10.0.0.1:80 -r 10.0.0.5:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-remcsum
-a -t 10.0.0.1:80 -r 10.0.0.6:80 -i -w 2 --tun-type gre --tun-csum
"
    );
}

#[test]
fn list_one_service() {
    let t = real_table();
    let fw = ServiceRef::Fwmark {
        mark: 6666,
        ipv6: false,
    };
    assert_eq!(
        render_list_service(&t, &fw, numeric(), &NoResolver).unwrap(),
        "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  6666 rr persistent 360
  -> 10.0.0.5:0                   Route   1      0          0         
"
    );
    let missing = ServiceRef::Fwmark {
        mark: 6666,
        ipv6: true,
    };
    let e = render_list_service(&t, &missing, numeric(), &NoResolver).unwrap_err();
    assert_eq!(
        e,
        Output {
            stdout: String::new(),
            stderr: "No such service\n".into(),
            code: 1
        }
    );
}

type End<'a> = (&'a str, u16);

fn conn(proto: &str, c: End, v: End, d: End, state: &str, expires: u64) -> ConnView {
    ConnView {
        protocol: proto.into(),
        client: ip(c.0),
        client_port: c.1,
        virtual_address: ip(v.0),
        virtual_port: v.1,
        server: ip(d.0),
        server_port: d.1,
        state: state.into(),
        expires,
        template: false,
    }
}

#[test]
fn connections() {
    let conns = vec![
        conn(
            "TCP",
            ("203.0.113.7", 51234),
            ("10.0.0.100", 80),
            ("192.168.100.2", 80),
            "ESTABLISHED",
            897,
        ),
        conn(
            "UDP",
            ("203.0.113.7", 33000),
            ("10.0.0.100", 53),
            ("192.168.100.2", 53),
            "UDP",
            287,
        ),
        conn(
            "IP",
            ("203.0.113.0", 0),
            ("10.0.0.100", 443),
            ("192.168.100.2", 443),
            "NONE",
            355,
        ),
        conn(
            "TCP",
            ("127.0.0.1", 80),
            ("127.0.0.1", 22),
            ("127.0.0.1", 443),
            "SYN_RECV",
            3_600_000,
        ),
        conn(
            "TCP",
            ("2001:db8::1", 8080),
            ("2001:db8::2", 80),
            ("::ffff:1.2.3.4", 80),
            "FIN_WAIT",
            0,
        ),
        conn(
            "SCTP",
            ("10.0.0.1", 80),
            ("10.0.0.2", 80),
            ("10.0.0.3", 80),
            "ESTABLISHED",
            61,
        ),
    ];
    assert_eq!(
        render_conns(&conns, numeric(), &NoResolver),
        "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:57  ESTABLISHED 203.0.113.7:51234  10.0.0.100:80      192.168.100.2:80
UDP 04:47  UDP         203.0.113.7:33000  10.0.0.100:53      192.168.100.2:53
IP  05:55  NONE        203.0.113.0:0      10.0.0.100:443     192.168.100.2:443
TCP 60000:00 SYN_RECV    127.0.0.1:80       127.0.0.1:22       127.0.0.1:443
TCP 00:00  FIN_WAIT    [2001:db8::1]:8080 [2001:db8::2]:80   [::ffff:1.2.3.4]:80
SCTP 01:01  ESTABLISHED 10.0.0.1:80        10.0.0.2:80        10.0.0.3:80
"
    );
    let named = Format {
        persistent_conn: true,
        ..Format::default()
    };
    assert_eq!(
        render_conns(&conns[2..4], named, &Names),
        "\
IPVS connection entries
pro expire state       source             virtual            destination        pe name          pe_data
IP  05:55  NONE        203.0.113.0:0      10.0.0.100:443     192.168.100.2:443
TCP 60000:00 SYN_RECV    localhost:http     localhost:ssh      localhost:https
"
    );
}

fn daemon(state: DaemonState, ifn: &str, syncid: u8, maxlen: u16, group: &str) -> DaemonView {
    DaemonView {
        state,
        mcast_interface: ifn.into(),
        syncid,
        sync_maxlen: maxlen,
        mcast_group: ip(group),
        mcast_port: 8848,
        mcast_ttl: 1,
    }
}

/// Lines from tests/golden/daemon-sync.golden (ipvsadm 1.31 on Linux 6.1).
#[test]
fn daemon_lines_as_ipvsadm_prints_them() {
    assert_eq!(render_daemons(&[]), "");
    let master = daemon(DaemonState::Master, "lo", 7, 1472, "224.0.0.81");
    let mut backup = daemon(DaemonState::Backup, "lo", 9, 1024, "239.1.2.3");
    backup.mcast_port = 9000;
    backup.mcast_ttl = 5;
    let want = "master sync daemon (mcast=lo, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
                backup sync daemon (mcast=lo, syncid=9, maxlen=1024, group=239.1.2.3, port=9000, ttl=5)\n";
    // master first, whatever order the daemon answers in
    assert_eq!(render_daemons(&[backup.clone(), master.clone()]), want);
    assert_eq!(render_daemons(&[master, backup]), want);
    let v6 = daemon(DaemonState::Backup, "lo", 2, 65487, "ff02::81");
    assert_eq!(
        render_daemons(std::slice::from_ref(&v6)),
        "backup sync daemon (mcast=lo, syncid=2, maxlen=65487, group=ff02::81, port=8848, ttl=1)\n"
    );
    // zero maxlen, port and ttl are left out, as list_daemon does
    let mut bare = v6;
    bare.sync_maxlen = 0;
    bare.mcast_port = 0;
    bare.mcast_ttl = 0;
    assert_eq!(
        render_daemons(&[bare]),
        "backup sync daemon (mcast=lo, syncid=2, group=ff02::81)\n"
    );
}
