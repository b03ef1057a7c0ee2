#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The rvs-only `fwmark_classifier` block: good rules land in the model in file
//! order across blocks; every bad rule is an error at its FILE:LINE:COL with
//! the core's message; an overlapping rule names the rule and line it overlaps.

use std::path::Path;

use rvs_config::{parse_str, Diagnostic, Loaded, Severity};

fn parse(text: &str) -> Loaded {
    parse_str(text, Path::new("/etc/keepalived/keepalived.conf"))
}

fn rules(l: &Loaded) -> Vec<(String, u32)> {
    l.config
        .mark_rules
        .iter()
        .map(|r| (r.rule.to_string(), r.span.line))
        .collect()
}

fn errors(l: &Loaded) -> Vec<String> {
    l.errors().map(Diagnostic::to_string).collect()
}

#[test]
fn good_blocks_accumulate_in_file_order() {
    let l = parse(
        "global_defs {\n  router_id a\n}\n\
         fwmark_classifier {\n\
         \x20   rule 6666 tcp 192.0.2.10 443,80\n\
         \x20   rule 6666 tcp 2001:db8::10 80,443\n\
         \x20   rule 7 udp 10.1.0.9/24 5000-5010\n\
         \x20   rule 8 tcp 192.0.2.20            # every port\n\
         }\n\
         virtual_server fwmark 6666 {\n  lb_algo rr\n  lb_kind DR\n  real_server 10.0.0.2 {\n    weight 1\n  }\n}\n\
         fwmark_classifier {\n\
         \x20   rule 0x9 sctp 2001:db8:1::/48 all\n\
         \x20   rule 6666 udp 192.0.2.10 80,443\n\
         }\n",
    );
    assert!(l.is_clean(), "{:?}", l.diagnostics);
    assert_eq!(
        rules(&l),
        [
            ("6666 tcp 192.0.2.10/32 80,443".to_string(), 5),
            ("6666 tcp 2001:db8::10/128 80,443".to_string(), 6),
            ("7 udp 10.1.0.0/24 5000-5010".to_string(), 7),
            ("8 tcp 192.0.2.20/32 all".to_string(), 8),
            ("9 sctp 2001:db8:1::/48 all".to_string(), 18),
            ("6666 udp 192.0.2.10/32 80,443".to_string(), 19),
        ]
    );
    let first = &l.config.mark_rules[0].span;
    assert_eq!(
        (first.file.as_path(), first.column),
        (Path::new("/etc/keepalived/keepalived.conf"), 5)
    );
    assert!(l.config.mark_rules[3].rule.all_ports());
    assert_eq!(l.config.virtual_servers.len(), 1);
}

/// Each bad rule: one error, at the word at fault, with the core's message;
/// the good rules around it are kept.
#[test]
fn bad_rules_are_errors_at_their_word() {
    let cases: &[(&str, u32, &str)] = &[
        (
            "rule 1 tcp 10.0.0.1 80,0",
            23,
            "fwmark_classifier rule `1 tcp 10.0.0.1 80,0`: port 0 is not a port a rule can match",
        ),
        (
            "rule 1 tcp 10.0.0.1 90-80",
            23,
            "fwmark_classifier rule `1 tcp 10.0.0.1 90-80`: port range 90-80 is inverted",
        ),
        (
            "rule 1 tcp 10.0.0.1/33 80",
            14,
            "fwmark_classifier rule `1 tcp 10.0.0.1/33 80`: prefix length 33 is longer than the 32 bits of 10.0.0.1",
        ),
        (
            "rule 1 tcp 10.0.0.300 80",
            14,
            "fwmark_classifier rule `1 tcp 10.0.0.300 80`: cannot parse address or prefix `10.0.0.300`",
        ),
        (
            "rule 0 tcp 10.0.0.1 80",
            8,
            "fwmark_classifier rule `0 tcp 10.0.0.1 80`: firewall mark 0 is not a mark (0 means unmarked)",
        ),
        (
            "rule 1 icmp 10.0.0.1",
            10,
            "fwmark_classifier rule `1 icmp 10.0.0.1`: cannot parse protocol (tcp, udp or sctp) `icmp`",
        ),
        (
            "rule 1 tcp",
            3,
            "fwmark_classifier rule `1 tcp`: cannot parse rule (MARK PROTO PREFIX [PORTS]) `1 tcp`",
        ),
        (
            "rule 1 tcp 10.0.0.1 80 extra",
            3,
            "fwmark_classifier rule `1 tcp 10.0.0.1 80 extra`: cannot parse rule (MARK PROTO PREFIX [PORTS]) `1 tcp 10.0.0.1 80 extra`",
        ),
    ];
    for (bad, column, message) in cases {
        let text = format!(
            "fwmark_classifier {{\n  rule 5 tcp 10.9.0.1 80\n  {bad}\n  rule 6 tcp 10.9.0.2 80\n}}\n"
        );
        let l = parse(&text);
        let errs: Vec<&Diagnostic> = l.errors().collect();
        assert_eq!(errs.len(), 1, "{bad}: {:?}", l.diagnostics);
        assert_eq!(
            errs[0].to_string(),
            format!("/etc/keepalived/keepalived.conf:3:{column}: error: {message}"),
            "{bad}"
        );
        assert_eq!(
            rules(&l),
            [
                ("5 tcp 10.9.0.1/32 80".to_string(), 2),
                ("6 tcp 10.9.0.2/32 80".to_string(), 4)
            ],
            "{bad}"
        );
    }
}

/// An overlapping rule is refused naming the rule it overlaps and that rule's
/// line, even across blocks; a repeated rule likewise; IPv4 and IPv6 never
/// overlap, nor do different protocols.
#[test]
fn overlaps_name_the_earlier_rule_and_line() {
    let l = parse(
        "fwmark_classifier {\n\
         \x20 rule 6666 tcp 192.0.2.10 80,443\n\
         \x20 rule 6666 tcp ::/0 443\n\
         \x20 rule 6666 udp 192.0.2.0/24 443\n\
         }\n\
         fwmark_classifier {\n\
         \x20 rule 7 tcp 192.0.2.0/24 400-500\n\
         \x20 rule 8 tcp 2001:db8::10 443\n\
         \x20 rule 6666 tcp 192.0.2.10 443,80\n\
         \x20 rule 9 tcp 192.0.2.11 all\n\
         }\n",
    );
    assert_eq!(
        errors(&l),
        [
            "/etc/keepalived/keepalived.conf:7:3: error: fwmark_classifier rule `7 tcp 192.0.2.0/24 400-500` overlaps rule `6666 tcp 192.0.2.10/32 80,443` of line 2: a packet may match only one rule",
            "/etc/keepalived/keepalived.conf:8:3: error: fwmark_classifier rule `8 tcp 2001:db8::10/128 443` overlaps rule `6666 tcp ::/0 443` of line 3: a packet may match only one rule",
            "/etc/keepalived/keepalived.conf:9:3: error: fwmark_classifier rule `6666 tcp 192.0.2.10/32 80,443` is the rule of line 2 again (`6666 tcp 192.0.2.10/32 80,443`)",
        ]
    );
    assert_eq!(
        rules(&l),
        [
            ("6666 tcp 192.0.2.10/32 80,443".to_string(), 2),
            ("6666 tcp ::/0 443".to_string(), 3),
            ("6666 udp 192.0.2.0/24 443".to_string(), 4),
            ("9 tcp 192.0.2.11/32 all".to_string(), 10),
        ]
    );
}

/// An overlap with a rule of an included file names that file.
#[test]
fn overlap_across_files_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("marks.conf"),
        "fwmark_classifier {\n  rule 1 tcp 10.0.0.1 80\n}\n",
    )
    .unwrap();
    let main = dir.path().join("keepalived.conf");
    std::fs::write(
        &main,
        "include marks.conf\nfwmark_classifier {\n  rule 2 tcp 10.0.0.0/8 80\n}\n",
    )
    .unwrap();
    let l = rvs_config::load(&main);
    let errs = errors(&l);
    assert_eq!(errs.len(), 1, "{:?}", l.diagnostics);
    let included = dir.path().join("marks.conf");
    assert!(
        errs[0].ends_with(&format!(
            "overlaps rule `1 tcp 10.0.0.1/32 80` of {}:2: a packet may match only one rule",
            included.display()
        )),
        "{}",
        errs[0]
    );
}

/// The block is rvs's own: anything but `rule` in it, arguments, a missing
/// `{` or a `{` after a rule are errors (not keepalived's unknown-keyword
/// warnings).
#[test]
fn block_shape_errors() {
    let l = parse("fwmark_classifier extra {\n  rules 1 tcp 10.0.0.1 80\n  rule 2 tcp 10.0.0.2 {\n  }\n  rule 3 tcp 10.0.0.3\n}\nfwmark_classifier\n");
    let found: Vec<(u32, Severity, String)> = l
        .diagnostics
        .iter()
        .map(|d| (d.line, d.severity, d.message.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                1,
                Severity::Error,
                "fwmark_classifier takes no arguments (got 'extra')".to_string()
            ),
            (
                2,
                Severity::Error,
                "Unknown keyword 'rules' in fwmark_classifier (only `rule MARK PROTO PREFIX [PORTS]`)"
                    .to_string()
            ),
            (3, Severity::Error, "Unexpected '{' - ignoring".to_string()),
            (
                7,
                Severity::Error,
                "Missing '{' at beginning of configuration block".to_string()
            ),
        ]
    );
    assert_eq!(rules(&l), [("3 tcp 10.0.0.3/32 all".to_string(), 5)]);
}
