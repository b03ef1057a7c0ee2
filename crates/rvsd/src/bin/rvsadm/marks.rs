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
MARK is decimal or 0x hex; PROTO tcp, udp or sctp; PREFIX an address or ADDR/LEN;
PORTS a list of ports and ranges (80,443,8000-8010), `all` or absent for every port.
A rule that overlaps one in force is refused, naming that rule.
";

fn usage_error(program: &str, why: &str) -> Output {
    Output::stderr(format!("{program}: --marks: {why}\n{USAGE}"), 2)
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
            "-h" | "--help" | "help" => Output::stdout(USAGE.to_string(), 0),
            _ => usage_error(program, &format!("unknown request `{}`", args.join(" "))),
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
