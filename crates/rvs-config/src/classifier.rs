//! The rvs-only `fwmark_classifier` block: the firewall-mark classifier rules
//! rvs applies in place of iptables' MARK target (issue 10). keepalived has no
//! such keyword (`keepalived -t` reports it as unknown and ignores the block).
//!
//! ```text
//! fwmark_classifier {
//!     rule 6666 tcp 192.0.2.10 80,443
//!     rule 8 tcp 192.0.2.20            # every port (or the word `all`)
//! }
//! ```
//!
//! Invariants: each `rule` takes the words `MARK PROTO PREFIX [PORTS]` exactly as
//! `rvs_core::mark::parse_rule_words` reads them (the text rvsadm takes); rules
//! accumulate over every block in file order; the rules kept never overlap (a
//! rule overlapping an earlier one is an error naming that rule and its line).
//! Everything wrong in the block is an error, never a warning: the block is rvs's
//! own, so there is no keepalived behaviour to stay lenient for.

use rvs_core::mark::{parse_rule_words, MarkError};

use crate::diagnostics::{Diagnostic, Severity};
use crate::model::ClassifierRule;
use crate::parser::{Ctx, Node};

/// The block's keyword.
pub const KEYWORD: &str = "fwmark_classifier";

/// Parses one `fwmark_classifier` block, appending its good rules to `rules`.
pub fn parse_classifier(ctx: &mut Ctx, node: &Node, rules: &mut Vec<ClassifierRule>) {
    if !node.args.is_empty() {
        ctx.error(
            node,
            format!("{KEYWORD} takes no arguments (got '{}')", node.rest()),
        );
    }
    for line in ctx.block(node).to_vec() {
        if line.name() != "rule" {
            ctx.error(
                &line,
                format!(
                    "Unknown keyword '{}' in {KEYWORD} (only `rule MARK PROTO PREFIX [PORTS]`)",
                    line.name()
                ),
            );
            continue;
        }
        if line.block.is_some() {
            ctx.error(&line, "Unexpected '{' - ignoring");
            continue;
        }
        let words: Vec<&str> = line.args.iter().map(|t| t.text.as_str()).collect();
        let rule = match parse_rule_words(&words) {
            Ok(rule) => rule,
            Err(e) => {
                let column = word_at_fault(&e)
                    .and_then(|i| line.args.get(i))
                    .map_or(line.keyword.column, |t| t.column);
                ctx.diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: line.file.clone(),
                    line: line.line,
                    column,
                    message: format!("{KEYWORD} rule `{}`: {e}", words.join(" ")),
                });
                continue;
            }
        };
        if let Some(earlier) = rules.iter().find(|r| r.rule.overlaps(&rule)) {
            let place = if earlier.span.file == line.file {
                format!("line {}", earlier.span.line)
            } else {
                format!("{}:{}", earlier.span.file.display(), earlier.span.line)
            };
            let message = if earlier.rule == rule {
                format!(
                    "{KEYWORD} rule `{rule}` is the rule of {place} again (`{}`)",
                    earlier.rule
                )
            } else {
                format!(
                    "{KEYWORD} rule `{rule}` overlaps rule `{}` of {place}: \
                     a packet may match only one rule",
                    earlier.rule
                )
            };
            ctx.error(&line, message);
            continue;
        }
        rules.push(ClassifierRule {
            rule,
            span: line.span(),
        });
    }
}

/// Which word of `MARK PROTO PREFIX [PORTS]` an error is about.
fn word_at_fault(e: &MarkError) -> Option<usize> {
    match e {
        MarkError::ZeroMark => Some(0),
        MarkError::PrefixTooLong { .. } => Some(2),
        MarkError::ZeroPort | MarkError::InvertedRange { .. } => Some(3),
        MarkError::Syntax { what, .. } => match *what {
            "firewall mark" => Some(0),
            "protocol (tcp, udp or sctp)" => Some(1),
            "address or prefix" => Some(2),
            "port or port range" => Some(3),
            _ => None,
        },
        MarkError::Overlap { .. } | MarkError::Exists(_) | MarkError::NoRule(_) => None,
    }
}
