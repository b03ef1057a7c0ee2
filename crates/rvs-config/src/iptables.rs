//! Translation of iptables' MARK rules into rvs firewall-mark classifier rules
//! (issue 10: firewall-mark services without iptables).
//!
//! Input: the output of `iptables-save` / `ip6tables-save` (with or without
//! `-c` counters), or of `iptables -t mangle -S` / `ip6tables -t mangle -S`
//! (with or without `-v`). Output: a [`Translation`]: every rule translated
//! (with the input line it came from) and every rule line that was not, with
//! the reason.
//!
//! Invariants:
//! - Nothing is guessed. A rule is translated only when the rvs rule marks
//!   exactly the packets iptables' rule marks, with the same mark: MARK in the
//!   mangle table's PREROUTING chain, setting the whole mark (mask
//!   0xffffffff), matching only protocol, destination and destination ports.
//!   Every other rule line of the mangle table is in `skipped` with the reason
//!   (negations, sources, interfaces, source ports, other match modules, other
//!   targets, other chains, jumps to user chains, partial masks, mark 0,
//!   protocols other than tcp/udp/sctp).
//! - The rules translated never overlap: iptables lets a later MARK rule
//!   override an earlier one for the same packet, rvs refuses overlapping
//!   rules, so a rule overlapping an earlier translated rule is skipped, naming
//!   the earlier line.
//! - Lines outside any table section are read as the mangle table: that is
//!   what `iptables -t mangle -S` prints (no `*mangle` header). Sections of the
//!   other tables (`*filter`, `*nat`, `*raw`, `*security`) are skipped and only
//!   counted in [`Translation::other_tables`].
//! - A MARK rule without `-p` and without ports marks every protocol: it is
//!   translated to one rule for every port of each protocol rvs classifies
//!   (tcp, udp and sctp), with a note saying so. Without `-p` but with ports,
//!   iptables itself refuses the rule; so does the translation.
//! - A rule without `-d` matches every destination of the dump's family:
//!   `ip6tables-save`'s header comment, the caller's family, or the family of
//!   the section's `-d` addresses say which; when none does, the rule is
//!   skipped.
//!
//! Option names and their printed forms are iptables 1.8's (`iptables-save`
//! prints `-j MARK --set-mark 6666` as `--set-xmark 0x1a0a/0xffffffff`;
//! `--and-mark`/`--or-mark`/`--xor-mark` as `--set-xmark` with a partial
//! mask), see iptables' `extensions/libxt_MARK.c`, `libxt_tcp.c`,
//! `libxt_multiport.c`.

use std::fmt;
use std::net::IpAddr;

use rvs_core::mark::{parse_ports, MarkRule, Prefix};
use rvs_core::{Family, Protocol};

/// What a dump translates to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// The rules translated, in input order; no two overlap.
    pub rules: Vec<Translated>,
    /// The rule lines of the mangle table not translated, in input order.
    pub skipped: Vec<Skipped>,
    /// Sections of other tables, skipped whole.
    pub other_tables: Vec<OtherTable>,
}

/// One translated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// 1-based line of the input it came from.
    pub line: usize,
    /// That line, as written.
    pub text: String,
    pub rule: MarkRule,
    /// Something the reader should know about the translation.
    pub note: Option<String>,
}

/// A rule line (or an unreadable line) of the mangle table left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line of the input.
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// A table section other than mangle (`*filter` ... `COMMIT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherTable {
    pub name: String,
    /// 1-based line of its `*name` header.
    pub line: usize,
    /// How many rule (`-A`) lines it held.
    pub rules: usize,
}

impl Translation {
    /// Every rule line was translated. When not, review the skipped lines:
    /// one may change the marks of packets that translated rules also match
    /// (an earlier RETURN, a later negated MARK rule...), which no rvs rule can
    /// say.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }

    /// The rules as `rvsadm --marks add ...` command lines, in order.
    pub fn rvsadm_commands(&self) -> Vec<String> {
        self.rules.iter().map(|t| rvsadm_command(&t.rule)).collect()
    }

    /// The rules as an rvs `fwmark_classifier` block for keepalived.conf, each
    /// rule preceded by a comment naming its input line; skipped lines are
    /// listed as comments at the end.
    pub fn classifier_block(&self) -> String {
        let mut out = String::from("fwmark_classifier {\n");
        for t in &self.rules {
            out.push_str(&format!("    # line {}: {}\n", t.line, t.text));
            if let Some(note) = &t.note {
                out.push_str(&format!("    # note: {note}\n"));
            }
            out.push_str(&format!("    rule {}\n", t.rule));
        }
        out.push_str("}\n");
        for s in &self.skipped {
            out.push_str(&format!(
                "# not translated, line {}: {}\n#   {}\n",
                s.line, s.text, s.reason
            ));
        }
        out
    }
}

/// `rvsadm --marks add 6666 tcp 192.168.1.10/32 80,443`.
pub fn rvsadm_command(rule: &MarkRule) -> String {
    format!("rvsadm --marks add {rule}")
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} ({})", self.line, self.reason, self.text)
    }
}

/// Translates a dump whose family is told by its own header comments or
/// addresses (see the module notes).
pub fn translate_iptables(text: &str) -> Translation {
    translate_iptables_as(text, None)
}

/// Same as [`translate_iptables`], with the dump's family when the caller knows
/// it (`ip6tables -t mangle -S` output has no header saying it is IPv6).
pub fn translate_iptables_as(text: &str, family: Option<Family>) -> Translation {
    let mut reader = Reader::new(family);
    for (i, line) in text.lines().enumerate() {
        reader.read_line(i + 1, line);
    }
    reader.finish()
}

/// Which table the lines being read belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Table {
    /// No header seen (yet): `-S` output, taken as mangle.
    Implicit,
    Named(String),
    /// After COMMIT, before the next header.
    Outside,
}

/// A table section while reading.
struct Section {
    family: Option<Family>,
    /// Families of its `-d` addresses.
    seen: Vec<Family>,
    user_chains: Vec<String>,
}

/// A mangle rule line, its words read.
struct Pending {
    line: usize,
    text: String,
    section: usize,
    parsed: Result<RuleLine, String>,
}

struct Reader {
    caller_family: Option<Family>,
    /// The family the last `# Generated by ...` comment named.
    header_family: Option<Family>,
    table: Table,
    sections: Vec<Section>,
    pending: Vec<Pending>,
    skipped_early: Vec<Skipped>,
    other_tables: Vec<OtherTable>,
}

impl Reader {
    fn new(family: Option<Family>) -> Self {
        Reader {
            caller_family: family,
            header_family: None,
            table: Table::Implicit,
            sections: vec![Section {
                family,
                seen: Vec::new(),
                user_chains: Vec::new(),
            }],
            pending: Vec::new(),
            skipped_early: Vec::new(),
            other_tables: Vec::new(),
        }
    }

    fn in_mangle(&self) -> bool {
        match &self.table {
            Table::Implicit => true,
            Table::Named(n) => n == "mangle",
            Table::Outside => false,
        }
    }

    fn skip(&mut self, line: usize, text: &str, reason: impl Into<String>) {
        self.skipped_early.push(Skipped {
            line,
            text: text.to_string(),
            reason: reason.into(),
        });
    }

    fn read_line(&mut self, number: usize, raw: &str) {
        let text = raw.trim_end();
        let line = text.trim_start();
        if line.is_empty() {
            return;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if comment.starts_with("Generated by ip6tables") {
                self.header_family = Some(Family::V6);
            } else if comment.starts_with("Generated by iptables") {
                self.header_family = Some(Family::V4);
            }
            return;
        }
        if let Some(name) = line.strip_prefix('*') {
            let name = name.trim().to_string();
            self.table = Table::Named(name.clone());
            self.sections.push(Section {
                family: self.header_family.or(self.caller_family),
                seen: Vec::new(),
                user_chains: Vec::new(),
            });
            if name != "mangle" {
                self.other_tables.push(OtherTable {
                    name,
                    line: number,
                    rules: 0,
                });
            }
            return;
        }
        if line == "COMMIT" {
            if self.table == Table::Outside {
                self.skip(number, text, "COMMIT outside a table section");
            }
            self.table = Table::Outside;
            return;
        }
        if !self.in_mangle() {
            if let Table::Named(_) = self.table {
                if is_rule_line(line) {
                    if let Some(t) = self.other_tables.last_mut() {
                        t.rules += 1;
                    }
                }
                return;
            }
            // Outside: after COMMIT, before the next header.
            self.skip(
                number,
                text,
                "line outside a table section (after COMMIT, before the next `*table`)",
            );
            return;
        }
        let section = self.sections.len() - 1;
        if let Some(chain) = line.strip_prefix(':') {
            // `:NAME POLICY [packets:bytes]`; user chains have policy `-`.
            let mut parts = chain.split_whitespace();
            if let (Some(name), Some("-")) = (parts.next(), parts.next()) {
                self.sections[section].user_chains.push(name.to_string());
            }
            return;
        }
        let words = match split_words(line) {
            Ok(w) => w,
            Err(e) => {
                self.skip(number, text, e);
                return;
            }
        };
        let mut words: &[String] = &words;
        // `iptables-save -c` puts `[packets:bytes]` before the rule.
        if words
            .first()
            .is_some_and(|w| w.starts_with('[') && w.ends_with(']'))
        {
            words = &words[1..];
        }
        match words.first().map(String::as_str) {
            Some("-P") => {}
            Some("-N") => {
                if let Some(name) = words.get(1) {
                    self.sections[section].user_chains.push(name.clone());
                }
            }
            Some("-A" | "--append") => {
                let parsed = parse_rule(&words[1..]);
                if let Ok(r) = &parsed {
                    if let Some(Ok(p)) = r.dest.as_deref().map(parse_destination) {
                        self.sections[section].seen.push(p.family());
                    }
                }
                self.pending.push(Pending {
                    line: number,
                    text: text.to_string(),
                    section,
                    parsed,
                });
            }
            Some(w @ ("-I" | "--insert" | "-R" | "--replace" | "-D" | "--delete")) => {
                let reason = format!(
                    "`{w}` is not read: only `-A` rules, as iptables-save and iptables -S print them"
                );
                self.skip(number, text, reason);
            }
            _ => self.skip(
                number,
                text,
                "not a line of iptables-save or iptables -S output",
            ),
        }
    }

    fn finish(self) -> Translation {
        let mut out = Translation {
            other_tables: self.other_tables,
            ..Translation::default()
        };
        let mut skipped = self.skipped_early;
        for p in self.pending {
            let section = &self.sections[p.section];
            let family = section.family.or_else(|| match section.seen.first() {
                Some(f) if section.seen.iter().all(|s| s == f) => Some(*f),
                _ => None,
            });
            match p
                .parsed
                .and_then(|r| translate_rule(&r, family, &section.user_chains))
            {
                Err(reason) => skipped.push(Skipped {
                    line: p.line,
                    text: p.text,
                    reason,
                }),
                Ok((rules, note)) => {
                    let earlier = rules.iter().find_map(|rule| {
                        out.rules
                            .iter()
                            .find(|t| t.rule.overlaps(rule))
                            .map(|t| (rule, t))
                    });
                    if let Some((rule, t)) = earlier {
                        let reason = if t.rule == *rule {
                            format!(
                                "same rule as line {} (`{}`); iptables marks the packet twice with the same mark, rvs keeps one rule",
                                t.line, t.rule
                            )
                        } else {
                            format!(
                                "overlaps line {} (`{}`): for packets matching both, iptables' later MARK wins, and rvs refuses overlapping rules; make the iptables rules disjoint first",
                                t.line, t.rule
                            )
                        };
                        skipped.push(Skipped {
                            line: p.line,
                            text: p.text,
                            reason,
                        });
                        continue;
                    }
                    for rule in rules {
                        out.rules.push(Translated {
                            line: p.line,
                            text: p.text.clone(),
                            rule,
                            note: note.clone(),
                        });
                    }
                }
            }
        }
        skipped.sort_by_key(|s| s.line);
        out.skipped = skipped;
        out
    }
}

fn is_rule_line(line: &str) -> bool {
    let line = match line.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(line, |(_, r)| r.trim_start()),
        None => line,
    };
    line.starts_with("-A ") || line.starts_with("--append ")
}

/// Splits a line into words as iptables-save quotes them: double quotes
/// group, and inside them `\"` and `\\` stand for `"` and `\`.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unbalanced double quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => word.push(e),
                            None => return Err("unbalanced double quote".into()),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The words of one `-A` rule, as far as the translation cares.
#[derive(Debug, Default)]
struct RuleLine {
    chain: String,
    dest: Option<String>,
    proto: Option<String>,
    /// (option as written, its value).
    ports: Vec<(String, String)>,
    modules: Vec<String>,
    /// (target, `-g` rather than `-j`).
    target: Option<(String, bool)>,
    /// (option as written, its value): `--set-xmark`, `--set-mark`.
    mark: Option<(String, String)>,
    /// Everything that keeps the rule from being translated, as reasons.
    problems: Vec<String>,
}

impl RuleLine {
    fn problem(&mut self, p: String) {
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }
}

/// The match modules the translation understands (`-m tcp` and friends only
/// load the options it reads; `-m comment` changes nothing).
const KNOWN_MODULES: &[&str] = &["tcp", "udp", "sctp", "multiport", "comment"];

/// Reads the words after `-A`.
fn parse_rule(words: &[String]) -> Result<RuleLine, String> {
    let mut r = RuleLine::default();
    let Some(chain) = words.first() else {
        return Err("`-A` without a chain".into());
    };
    r.chain = chain.clone();
    let mut i = 1;
    // The last match module that rvs does not know: its options are its own.
    let mut foreign_module: Option<String> = None;
    while i < words.len() {
        let w = words[i].as_str();
        let value = words.get(i + 1).cloned();
        let mut need_value = |r: &mut RuleLine| -> Option<String> {
            if value.is_none() {
                r.problem(format!("`{w}` without a value"));
            }
            i += 1;
            value.clone()
        };
        match w {
            "!" => r.problem(format!(
                "negation (`! {}`): rvs rules match only what is named, never its complement",
                words.get(i + 1).map_or("", String::as_str)
            )),
            "-d" | "--destination" | "--dst" => {
                if let Some(v) = need_value(&mut r) {
                    if r.dest.is_some() {
                        r.problem("two destinations".into());
                    }
                    r.dest = Some(v);
                }
            }
            "-s" | "--source" | "--src" => {
                let v = need_value(&mut r).unwrap_or_default();
                r.problem(format!(
                    "source match `{w} {v}`: rvs rules match the destination only"
                ));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let v = need_value(&mut r).unwrap_or_default();
                r.problem(format!(
                    "interface match `{w} {v}`: rvs rules do not match interfaces"
                ));
            }
            "-p" | "--protocol" => {
                if let Some(v) = need_value(&mut r) {
                    r.proto = Some(v);
                }
            }
            "-m" | "--match" => {
                if let Some(m) = need_value(&mut r) {
                    if KNOWN_MODULES.contains(&m.as_str()) {
                        foreign_module = None;
                    } else {
                        r.problem(module_reason(&m));
                        foreign_module = Some(m.clone());
                    }
                    r.modules.push(m);
                }
            }
            "--dport" | "--destination-port" => {
                if let Some(v) = need_value(&mut r) {
                    r.ports.push((w.to_string(), v));
                }
            }
            "--dports" | "--destination-ports" => {
                if let Some(v) = need_value(&mut r) {
                    if !r.modules.iter().any(|m| m == "multiport") {
                        r.problem(format!("`{w}` without `-m multiport`"));
                    }
                    r.ports.push((w.to_string(), v));
                }
            }
            "--sport" | "--source-port" | "--sports" | "--source-ports" | "--ports" => {
                let v = need_value(&mut r).unwrap_or_default();
                let what = if w == "--ports" {
                    "source or destination port"
                } else {
                    "source port"
                };
                r.problem(format!(
                    "{what} match `{w} {v}`: rvs rules match destination ports only"
                ));
            }
            "--comment" => {
                let _ = need_value(&mut r);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if let Some(t) = need_value(&mut r) {
                    r.target = Some((t, matches!(w, "-g" | "--goto")));
                    foreign_module = None;
                }
            }
            "--set-xmark" | "--set-mark" => {
                if let Some(v) = need_value(&mut r) {
                    r.mark = Some((w.to_string(), v));
                }
            }
            "--and-mark" | "--or-mark" | "--xor-mark" => {
                let v = need_value(&mut r).unwrap_or_default();
                r.problem(format!(
                    "`{w} {v}` changes only some bits of the packet's mark: rvs rules set the whole mark"
                ));
            }
            "-c" | "--set-counters" => {
                // `-S -v` prints `-c PACKETS BYTES`.
                i += 2;
            }
            "-f" | "--fragment" => r.problem(
                "fragment match `-f`: rvs rules match every packet of the destination".into(),
            ),
            _ => {
                // An option of a module or target rvs does not know: skip its
                // values. Options of a foreign module were reported with it.
                if foreign_module.is_none()
                    && !matches!(r.target.as_ref(), Some((t, _)) if t != "MARK")
                {
                    r.problem(format!("option `{w}` is not translated"));
                }
                while words
                    .get(i + 1)
                    .is_some_and(|n| !n.starts_with('-') && n != "!")
                {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    Ok(r)
}

fn module_reason(m: &str) -> String {
    let why = match m {
        "state" | "conntrack" => "connection state",
        "mark" | "connmark" => "a mark set earlier",
        "set" => "an ipset",
        "iprange" => "an address range",
        "addrtype" => "the address type",
        "physdev" | "mac" => "the link layer",
        "limit" | "hashlimit" | "connlimit" | "recent" | "statistic" => "rates or counts",
        _ => "",
    };
    if why.is_empty() {
        format!(
            "match module `{m}`: rvs rules match protocol, destination and destination ports only"
        )
    } else {
        format!(
            "match module `{m}` (matches on {why}): rvs rules match protocol, destination and destination ports only"
        )
    }
}

/// Terminating targets: the packets they match leave PREROUTING there.
const TERMINATING: &[&str] = &["ACCEPT", "DROP", "RETURN", "REJECT"];

/// The rvs rules for one parsed `-A` line, with a note; or why there are none.
fn translate_rule(
    r: &RuleLine,
    family: Option<Family>,
    user_chains: &[String],
) -> Result<(Vec<MarkRule>, Option<String>), String> {
    let target = r.target.as_ref().map(|(t, _)| t.as_str());
    if r.chain != "PREROUTING" {
        return Err(match target {
            Some("MARK") => {
                let whose = match r.chain.as_str() {
                    "OUTPUT" => " (OUTPUT marks packets this host sends)",
                    "INPUT" | "FORWARD" | "POSTROUTING" => {
                        " (it marks packets after the routing decision, too late for IPVS)"
                    }
                    _ => " (a user chain: reached by a jump, which is not followed either)",
                };
                format!(
                    "MARK in chain {}{whose}: rvs classifies packets as they arrive for a virtual address, which is what PREROUTING sees; only PREROUTING's MARK rules are translated",
                    r.chain
                )
            }
            Some(t) => format!(
                "chain {}, target {t}: not a MARK rule of PREROUTING, nothing to translate",
                r.chain
            ),
            None => format!(
                "chain {}, no target: not a MARK rule of PREROUTING, nothing to translate",
                r.chain
            ),
        });
    }
    match r.target.as_ref() {
        None => {
            return Err("no target (a counting rule): nothing to translate".into());
        }
        Some((t, goto)) if user_chains.contains(t) => {
            let how = if *goto { "goes to" } else { "jumps to" };
            return Err(format!(
                "{how} user chain {t}: rvs does not follow chains; put the chain's MARK rules in PREROUTING to translate them"
            ));
        }
        Some((t, _)) if TERMINATING.contains(&t.as_str()) => {
            return Err(format!(
                "target {t} ends PREROUTING for the packets it matches, so iptables' MARK rules after it do not mark them; rvs rules cannot express that (rules translated from later lines mark those packets too)"
            ));
        }
        Some((t, _)) if t == "CONNMARK" => {
            return Err(
                "target CONNMARK copies marks between connections and packets: rvs rules mark by protocol, destination and port only"
                    .into(),
            );
        }
        Some((t, _)) if t != "MARK" => {
            return Err(format!(
                "target {t} in PREROUTING is not translated (only MARK is)"
            ));
        }
        Some(_) => {}
    }
    if !r.problems.is_empty() {
        return Err(r.problems.join("; "));
    }
    let Some((option, value)) = &r.mark else {
        return Err("MARK without --set-xmark or --set-mark".into());
    };
    let mark = mark_value(option, value)?;
    let dest = match &r.dest {
        Some(d) => Some(parse_destination(d)?),
        None => None,
    };
    if let (Some(d), Some(f)) = (dest, family) {
        if d.family() != f {
            return Err(format!(
                "destination {d} is not of the dump's family ({})",
                family_name(f)
            ));
        }
    }
    let dest = match (dest, family) {
        (Some(d), _) => d,
        (None, Some(Family::V4)) => Prefix::new(IpAddr::from([0u8; 4]), 0).map_err(|e| e.to_string())?,
        (None, Some(Family::V6)) => Prefix::new(IpAddr::from([0u8; 16]), 0).map_err(|e| e.to_string())?,
        (None, None) => {
            return Err(
                "no -d and the dump does not say whether it is IPv4 or IPv6 (no ip6tables-save header, no addresses): give the family"
                    .into(),
            )
        }
    };
    if r.ports.len() > 1 {
        return Err(
            "two port matches (iptables matches their intersection): not translated".into(),
        );
    }
    let ports = match r.ports.first() {
        None => Vec::new(),
        Some((opt, v)) => parse_ports(v).map_err(|e| format!("`{opt} {v}`: {e}"))?,
    };
    let protos: Vec<Protocol> = match r.proto.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("all" | "0") => {
            if !r.ports.is_empty() {
                return Err(
                    "ports without -p: iptables itself refuses this (ports need -p tcp, udp or sctp)"
                        .into(),
                );
            }
            vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        }
        Some("tcp" | "6") => vec![Protocol::Tcp],
        Some("udp" | "17") => vec![Protocol::Udp],
        Some("sctp" | "132") => vec![Protocol::Sctp],
        Some(_) => {
            return Err(format!(
                "protocol {}: rvs classifies tcp, udp and sctp only",
                r.proto.as_deref().unwrap_or_default()
            ))
        }
    };
    let note = (protos.len() > 1).then(|| {
        "no -p: iptables marks every protocol; translated to tcp, udp and sctp on every port (the protocols rvs classifies; ICMP and others stay unmarked)".to_string()
    });
    let rules = protos
        .into_iter()
        .map(|p| MarkRule::new(mark, p, dest, ports.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((rules, note))
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// A 32-bit number, decimal or `0x` hex, as iptables writes marks and masks.
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The mark of `--set-xmark V[/M]` / `--set-mark V[/M]` when it sets the whole
/// mark (`M` 0xffffffff, the default).
fn mark_value(option: &str, value: &str) -> Result<u32, String> {
    let (v, m) = match value.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (value, None),
    };
    let bad = || format!("`{option} {value}`: cannot read the mark");
    let mark = number(v).ok_or_else(bad)?;
    let mask = match m {
        None => u32::MAX,
        Some(m) => number(m).ok_or_else(bad)?,
    };
    if mask != u32::MAX {
        return Err(format!(
            "`{option} {value}` sets only the bits of mask {mask:#x}, so the result depends on the mark the packet already had; rvs rules set the whole mark (mask 0xffffffff)"
        ));
    }
    if mark == 0 {
        return Err(format!(
            "`{option} {value}` sets mark 0, which means unmarked: rvs has no rule for that; drop the line (and keep other rules from covering its packets)"
        ));
    }
    Ok(mark)
}

/// `ADDR`, `ADDR/LEN` or `ADDR/DOTTED-MASK` (iptables prints a mask that is
/// not a prefix in full).
fn parse_destination(d: &str) -> Result<Prefix, String> {
    let bad = |why: String| format!("destination `{d}`: {why}");
    if let Some((addr, mask)) = d.split_once('/') {
        if let Ok(mask) = mask.parse::<IpAddr>() {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad("cannot parse the address".into()))?;
            let (bits, ones, width) = match mask {
                IpAddr::V4(m) => (u128::from(u32::from(m)), u32::from(m).leading_ones(), 32),
                IpAddr::V6(m) => (u128::from(m), u128::from(m).leading_ones(), 128),
            };
            let contiguous = bits.count_ones() == ones;
            if !contiguous || (width == 32) != addr.is_ipv4() {
                return Err(bad(format!(
                    "mask {mask} is not a prefix: rvs rules match prefixes"
                )));
            }
            let len = u8::try_from(ones).map_err(|_| bad("bad mask".into()))?;
            return Prefix::new(addr, len).map_err(|e| bad(e.to_string()));
        }
    }
    d.parse::<Prefix>().map_err(|e| bad(e.to_string()))
}
