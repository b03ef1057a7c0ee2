//! `rvsadm --marks ...`: the rvs extension that lists and changes the
//! firewall-mark classifier (ipvsadm has no such option; iptables' MARK target
//! did this job). Rules are written `MARK PROTO PREFIX [PORTS]`, the form the
//! listing prints, so a listed line can be given back to `add` or `delete`.
//!
//! Invariant: a rule is parsed and checked here before anything is sent, and
//! the daemon applies each request all or nothing, so a refused rule changes
//! nothing.

use rvs_api::{Command, MarkRuleSpec};
use rvs_ipvsadm::Output;

use crate::Cli;

/// What `rvsadm --marks` accepts.
pub const USAGE: &str = "\
Usage:
  rvsadm --marks [list]                          list the classifier's rules
  rvsadm --marks add MARK PROTO PREFIX [PORTS]   add a rule
  rvsadm --marks delete MARK PROTO PREFIX [PORTS]
  rvsadm --marks clear                           delete every rule
  rvsadm --marks import [-4|-6] [--apply|--keepalived] [FILE]
      read `iptables-save` or `iptables -t mangle -S` output (FILE, or stdin)
      and print the equivalent `rvsadm --marks add` lines (--keepalived: a
      fwmark_classifier block), or --apply them all at once; the lines that
      cannot be translated are listed with the reason, and --apply then
      applies nothing
MARK is decimal or 0x hex; PROTO tcp, udp or sctp; PREFIX an address or ADDR/LEN;
PORTS a list of ports and ranges (80,443,8000-8010), `all` or absent for every port.
A rule that overlaps one in force is refused, naming that rule.
";

fn usage_error(program: &str, why: &str) -> Output {
    Output::stderr(format!("{program}: --marks: {why}\n{USAGE}"), 2)
}

/// The text to import: `file`, or stdin when absent or `-`.
fn read_input(file: Option<&str>) -> std::io::Result<String> {
    use std::io::Read;
    match file {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(s)
        }
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{f}: {e}"))),
    }
}

/// The text of one rule, as listed and as `add` takes it.
pub fn rule_line(r: &MarkRuleSpec) -> String {
    format!(
        "{} {} {} {}",
        r.mark,
        r.protocol,
        r.destination,
        r.ports.as_deref().unwrap_or("all")
    )
}

/// The canonical spec of the rule in `words`, or a usage error.
fn parse_rule(program: &str, words: &[String]) -> Result<MarkRuleSpec, Output> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    rvs_core::mark::parse_rule_words(&words)
        .map(|r| MarkRuleSpec::of(&r))
        .map_err(|e| usage_error(program, &e.to_string()))
}

impl Cli {
    /// `args` are the words after `--marks`.
    pub fn marks(&self, args: &[String]) -> Output {
        let program = self.program.as_str();
        let (verb, rest) = match args.split_first() {
            None => ("list", &[][..]),
            Some((v, rest)) => (v.as_str(), rest),
        };
        match verb {
            "list" | "-L" | "--list" if rest.is_empty() => self.list_marks(),
            "add" | "delete" | "del" => {
                let rule = match parse_rule(program, rest) {
                    Ok(r) => r,
                    Err(o) => return o,
                };
                let cmd = if verb == "add" {
                    Command::AddMarkRule { rule }
                } else {
                    Command::DeleteMarkRule { rule }
                };
                self.apply_marks(vec![cmd])
            }
            "clear" if rest.is_empty() => self.apply_marks(vec![Command::ClearMarkRules {}]),
            "import" => self.import(rest),
            "-h" | "--help" | "help" => Output::stdout(USAGE.to_string(), 0),
            _ => usage_error(program, &format!("unknown request `{}`", args.join(" "))),
        }
    }

    /// `--marks import`: iptables MARK rules to rvs rules.
    fn import(&self, args: &[String]) -> Output {
        let program = self.program.as_str();
        let mut family = None;
        let (mut apply, mut keepalived) = (false, false);
        let mut file: Option<&str> = None;
        for a in args {
            match a.as_str() {
                "-4" => family = Some(rvs_core::Family::V4),
                "-6" => family = Some(rvs_core::Family::V6),
                "--apply" => apply = true,
                "--keepalived" => keepalived = true,
                f if file.is_none() && (f == "-" || !f.starts_with('-')) => file = Some(f),
                other => return usage_error(program, &format!("import: unexpected `{other}`")),
            }
        }
        if apply && keepalived {
            return usage_error(
                program,
                "import: --apply and --keepalived exclude each other",
            );
        }
        let text = match read_input(file) {
            Ok(t) => t,
            Err(e) => return Output::stderr(format!("{program}: --marks import: {e}\n"), 1),
        };
        let t = rvs_config::iptables::translate_iptables_as(&text, family);
        let mut report = String::new();
        for s in &t.skipped {
            report.push_str(&format!(
                "{program}: line {}: not translated: {}\n    {}\n",
                s.line, s.reason, s.text
            ));
        }
        for o in &t.other_tables {
            report.push_str(&format!(
                "{program}: line {}: table {} ({} rules) has no MARK rules for rvs; skipped\n",
                o.line, o.name, o.rules
            ));
        }
        let code = if t.is_complete() { 0 } else { 1 };
        if apply {
            if !t.is_complete() {
                report.push_str(&format!(
                    "{program}: {} line(s) could not be translated; nothing was applied\n",
                    t.skipped.len()
                ));
                return Output::stderr(report, 1);
            }
            let commands = t
                .rules
                .iter()
                .map(|r| Command::AddMarkRule {
                    rule: MarkRuleSpec::of(&r.rule),
                })
                .collect();
            let mut out = self.apply_marks(commands);
            out.stderr.insert_str(0, &report);
            return out;
        }
        let stdout = if keepalived {
            t.classifier_block()
        } else {
            let mut s = String::new();
            for r in &t.rules {
                s.push_str(&format!("# line {}: {}\n", r.line, r.text));
                if let Some(note) = &r.note {
                    s.push_str(&format!("# note: {note}\n"));
                }
                s.push_str(&rvs_config::iptables::rvsadm_command(&r.rule));
                s.push('\n');
            }
            s
        };
        Output {
            stdout,
            stderr: report,
            code,
        }
    }

    fn list_marks(&self) -> Output {
        match self.client.get::<Vec<MarkRuleSpec>>("/v1/marks") {
            Ok(Ok(rules)) => Output::stdout(rules.iter().map(|r| rule_line(r) + "\n").collect(), 0),
            Ok(Err(e)) => Output::stderr(format!("{}\n", e.message), 1),
            Err(e) => self.unreachable(e),
        }
    }

    /// Sends `commands` as one batch; the daemon's refusal is printed as is.
    pub fn apply_marks(&self, commands: Vec<Command>) -> Output {
        match self.apply(commands) {
            Ok(Ok(_)) => Output::default(),
            Ok(Err(e)) => Output::stderr(format!("{}: {}\n", self.program, e.message), 255),
            Err(o) => o,
        }
    }
}
