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
