#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The iptables translator on a corpus of real dumps (tests/iptables/, made by
//! gen.sh with iptables 1.8.9) and one hand-written file. Each `X.expected`
//! is written by hand from what iptables does with each line: the rules the
//! translation must give (in order, with their lines), the lines it must skip
//! (with words their reason must contain), and the other tables it counts.

use std::path::{Path, PathBuf};

use rvs_config::iptables::{
    rvsadm_command, translate_iptables, translate_iptables_as, OtherTable, Translation,
};
use rvs_core::Family;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iptables")
}

/// What a `.expected` file asks for.
#[derive(Default)]
struct Expected {
    rules: Vec<(usize, String)>,
    skipped: Vec<(usize, String)>,
    notes: Vec<(usize, String)>,
    tables: Vec<OtherTable>,
}

fn read_expected(path: &Path) -> Expected {
    let mut e = Expected::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(' ').unwrap();
        let (n, rest) = rest.split_once(' ').unwrap();
        match kind {
            "rule" => e.rules.push((n.parse().unwrap(), rest.to_string())),
            "skip" => e.skipped.push((n.parse().unwrap(), rest.to_string())),
            "note" => e.notes.push((n.parse().unwrap(), rest.to_string())),
            "table" => {
                let (line, rules) = rest.split_once(' ').unwrap();
                e.tables.push(OtherTable {
                    name: n.to_string(),
                    line: line.parse().unwrap(),
                    rules: rules.parse().unwrap(),
                });
            }
            other => panic!("{}: bad kind {other}", path.display()),
        }
    }
    e
}

fn check(name: &str, t: &Translation, e: &Expected) -> Vec<String> {
    let mut bad = Vec::new();
    let got: Vec<(usize, String)> = t
        .rules
        .iter()
        .map(|r| (r.line, r.rule.to_string()))
        .collect();
    if got != e.rules {
        bad.push(format!(
            "{name}: rules\n  got:      {got:?}\n  expected: {:?}",
            e.rules
        ));
    }
    let got_lines: Vec<usize> = t.skipped.iter().map(|s| s.line).collect();
    let want_lines: Vec<usize> = e.skipped.iter().map(|s| s.0).collect();
    if got_lines != want_lines {
        bad.push(format!(
            "{name}: skipped lines\n  got:      {got_lines:?}\n  expected: {want_lines:?}\n  {:#?}",
            t.skipped
        ));
    } else {
        for (s, (line, words)) in t.skipped.iter().zip(&e.skipped) {
            if !s.reason.contains(words.as_str()) {
                bad.push(format!(
                    "{name}:{line}: reason `{}` lacks `{words}`",
                    s.reason
                ));
            }
        }
    }
    for (line, words) in &e.notes {
        let notes: Vec<&str> = t
            .rules
            .iter()
            .filter(|r| r.line == *line)
            .filter_map(|r| r.note.as_deref())
            .collect();
        if notes.is_empty() || !notes.iter().all(|n| n.contains(words.as_str())) {
            bad.push(format!("{name}:{line}: notes {notes:?} lack `{words}`"));
        }
    }
    for r in &t.rules {
        let has_note = e.notes.iter().any(|(l, _)| *l == r.line);
        if r.note.is_some() != has_note {
            bad.push(format!("{name}:{}: unexpected note {:?}", r.line, r.note));
        }
    }
    if t.other_tables != e.tables {
        bad.push(format!(
            "{name}: other tables {:?}, expected {:?}",
            t.other_tables, e.tables
        ));
    }
    bad
}

/// Every dump of the corpus translates to what its `.expected` says.
#[test]
fn corpus_translates_as_expected() {
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".save") || n.ends_with(".txt")
        })
        .collect();
    dumps.sort();
    assert!(dumps.len() >= 8, "corpus too small: {dumps:?}");
    let mut bad = Vec::new();
    for dump in &dumps {
        let name = dump.file_name().unwrap().to_string_lossy().into_owned();
        let expected = PathBuf::from(format!("{}.expected", dump.display()));
        assert!(expected.exists(), "{name} has no .expected");
        let text = std::fs::read_to_string(dump).unwrap();
        let t = translate_iptables(&text);
        bad.extend(check(&name, &t, &read_expected(&expected)));
        // Every translated rule carries its input line, as written.
        let lines: Vec<&str> = text.lines().collect();
        for r in &t.rules {
            assert_eq!(r.text, lines[r.line - 1].trim_end(), "{name}:{}", r.line);
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The rules translated from one dump never overlap (rvs would refuse them).
#[test]
fn translated_rules_never_overlap() {
    for name in ["refusals.save", "handwritten.txt", "server.save"] {
        let text = std::fs::read_to_string(corpus().join(name)).unwrap();
        let t = translate_iptables(&text);
        let mut set = rvs_core::MarkRules::default();
        for r in &t.rules {
            set.add(r.rule.clone())
                .unwrap_or_else(|e| panic!("{name}:{}: {e}", r.line));
        }
    }
}

/// `-S` output without addresses says nothing of its family: a rule without
/// -d is refused unless the caller gives the family.
#[test]
fn the_caller_can_give_the_family() {
    let text = "-P PREROUTING ACCEPT\n-A PREROUTING -p udp -m udp --dport 4789 -j MARK --set-xmark 0x15/0xffffffff\n";
    let t = translate_iptables(text);
    assert!(t.rules.is_empty());
    assert_eq!(t.skipped.len(), 1);
    assert_eq!(t.skipped[0].line, 2);
    let t = translate_iptables_as(text, Some(Family::V6));
    assert_eq!(t.rules[0].rule.to_string(), "21 udp ::/0 4789");
    let t = translate_iptables_as(text, Some(Family::V4));
    assert_eq!(t.rules[0].rule.to_string(), "21 udp 0.0.0.0/0 4789");
    // A header comment wins over the caller's family for its section.
    let t = translate_iptables_as(
        &format!("# Generated by ip6tables-save v1.8.9 (nf_tables)\n*mangle\n{text}COMMIT\n"),
        Some(Family::V4),
    );
    assert_eq!(t.rules[0].rule.to_string(), "21 udp ::/0 4789");
}

/// The renderings: rvsadm command lines, and a keepalived.conf block that
/// rvs-config reads back to the same rules.
#[test]
fn renderings_read_back() {
    let text = std::fs::read_to_string(corpus().join("server.save")).unwrap();
    let t = translate_iptables(&text);
    assert_eq!(
        rvsadm_command(&t.rules[0].rule),
        "rvsadm --marks add 1 tcp 203.0.113.10/32 80,443"
    );
    assert_eq!(
        t.rvsadm_commands(),
        [
            "rvsadm --marks add 1 tcp 203.0.113.10/32 80,443",
            "rvsadm --marks add 1 udp 203.0.113.10/32 443",
            "rvsadm --marks add 2 tcp 203.0.113.20/32 all",
            "rvsadm --marks add 2 udp 203.0.113.20/32 all",
            "rvsadm --marks add 2 sctp 203.0.113.20/32 all",
        ]
    );
    assert!(!t.is_complete());
    let block = t.classifier_block();
    let loaded = rvs_config::parse_str(&block, Path::new("/tmp/marks.conf"));
    assert!(loaded.is_clean(), "{block}\n{:?}", loaded.diagnostics);
    let back: Vec<_> = loaded
        .config
        .mark_rules
        .iter()
        .map(|r| r.rule.clone())
        .collect();
    let rules: Vec<_> = t.rules.iter().map(|r| r.rule.clone()).collect();
    assert_eq!(back, rules);
    // The skipped lines are in the block as comments, with their reasons.
    assert!(
        block.contains("# not translated, line 11: -A FORWARD"),
        "{block}"
    );
}
