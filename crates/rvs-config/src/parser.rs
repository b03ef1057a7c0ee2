//! Generic block structure and value readers. Builds a tree of keyword nodes from the
//! lexer's lines (brace balance is checked here, with keepalived's messages from
//! `lib/parser.c`), and offers the number/timer/boolean readers that the keyword
//! modules share. Invariant: every `Node` has a keyword token; `block` is `Some` exactly
//! when a `{` directly followed the keyword line.

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostics::{Diagnostic, Severity};
use crate::lexer::{Line, Token};
use crate::model::Span;

/// A keyword line and the block that follows it, if any.
#[derive(Clone, Debug)]
pub struct Node {
    pub file: PathBuf,
    pub line: u32,
    pub keyword: Token,
    pub args: Vec<Token>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn span(&self) -> Span {
        Span {
            file: self.file.clone(),
            line: self.line,
            column: self.keyword.column,
        }
    }
    pub fn name(&self) -> &str {
        &self.keyword.text
    }
    pub fn arg(&self, index: usize) -> Option<&str> {
        self.args.get(index).map(|t| t.text.as_str())
    }
    /// All arguments joined by one space (a script command as written).
    pub fn rest(&self) -> String {
        self.args
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Builds the node tree, reporting extra or missing braces.
pub fn build_tree(lines: Vec<Line>, diags: &mut Vec<Diagnostic>) -> Vec<Node> {
    let mut iter = lines.into_iter().peekable();
    let mut last_position = (PathBuf::new(), 0);
    let mut missing = 0u32;
    let mut top = Vec::new();
    loop {
        top.extend(build_level(
            &mut iter,
            0,
            diags,
            &mut last_position,
            &mut missing,
        ));
        if iter.peek().is_none() {
            break;
        }
    }
    if missing > 0 {
        diags.push(Diagnostic {
            severity: Severity::Error,
            file: last_position.0,
            line: last_position.1,
            column: 1,
            message: format!("There are {missing} missing '}}'s or extra '{{'s"),
        });
    }
    top
}

fn build_level(
    iter: &mut std::iter::Peekable<std::vec::IntoIter<Line>>,
    depth: u32,
    diags: &mut Vec<Diagnostic>,
    last_position: &mut (PathBuf, u32),
    missing: &mut u32,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut previous_was_keyword = false;
    while let Some(line) = iter.next() {
        *last_position = (line.file.clone(), line.line);
        if line.is("}") {
            if depth == 0 {
                diags.push(at_line(&line, Severity::Error, "Extra '}' found".into()));
                previous_was_keyword = false;
                continue;
            }
            return nodes;
        }
        if line.is("{") {
            let children = build_level(iter, depth + 1, diags, last_position, missing);
            match nodes.last_mut() {
                Some(node) if previous_was_keyword => node.block = Some(children),
                _ => diags.push(at_line(
                    &line,
                    Severity::Error,
                    "Unexpected '{' - ignoring".into(),
                )),
            }
            previous_was_keyword = false;
            continue;
        }
        let mut tokens = line.tokens.into_iter();
        let Some(keyword) = tokens.next() else {
            continue;
        };
        nodes.push(Node {
            file: line.file,
            line: line.line,
            keyword,
            args: tokens.collect(),
            block: None,
        });
        previous_was_keyword = true;
    }
    if depth > 0 && *missing == 0 {
        *missing = depth;
    }
    nodes
}

fn at_line(line: &Line, severity: Severity, message: String) -> Diagnostic {
    let column = line.tokens.first().map_or(1, |t| t.column);
    Diagnostic {
        severity,
        file: line.file.clone(),
        line: line.line,
        column,
        message,
    }
}

/// What a keyword of a block is, for blocks rvs only checks and does not model.
#[derive(Clone, Copy)]
pub enum Kw {
    /// A keyword with values on its line.
    Leaf,
    /// A block of keywords, described by the table.
    Block(&'static [(&'static str, Kw)]),
    /// A block of value lines (addresses, names...), not keywords.
    Values,
    /// A keyword whose `{` block is optional (a leaf or a value block).
    LeafOrValues,
}

/// Collects diagnostics while the keyword modules walk the tree.
#[derive(Default)]
pub struct Ctx {
    pub diags: Vec<Diagnostic>,
}

impl Ctx {
    pub fn report(&mut self, node: &Node, severity: Severity, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity,
            file: node.file.clone(),
            line: node.line,
            column: node.keyword.column,
            message: message.into(),
        });
    }
    pub fn error(&mut self, node: &Node, message: impl Into<String>) {
        self.report(node, Severity::Error, message);
    }
    pub fn warn(&mut self, node: &Node, message: impl Into<String>) {
        self.report(node, Severity::Warning, message);
    }

    pub fn unknown(&mut self, node: &Node) {
        let message = format!("Unknown keyword '{}'", node.name());
        self.warn(node, message);
    }

    /// The argument at `index`, or an error like keepalived's missing-parameter report.
    pub fn arg<'a>(&mut self, node: &'a Node, index: usize) -> Option<&'a str> {
        let value = node.arg(index);
        if value.is_none() {
            let message = format!(
                "Configuration line starting `{}` is missing a parameter at word position {}",
                node.name(),
                index + 2
            );
            self.error(node, message);
        }
        value
    }

    /// Checks that a leaf keyword has no block (keepalived: "Unexpected '{'").
    pub fn leaf(&mut self, node: &Node) {
        if node.block.is_some() {
            self.error(node, "Unexpected '{' - ignoring");
        }
    }

    /// The block of a block keyword (keepalived: "Missing '{' at beginning of configuration block").
    pub fn block<'a>(&mut self, node: &'a Node) -> &'a [Node] {
        match &node.block {
            Some(children) => children,
            None => {
                self.error(node, "Missing '{' at beginning of configuration block");
                &[]
            }
        }
    }

    /// Walks a block that rvs does not model, reporting unknown keywords.
    pub fn check_table(&mut self, nodes: &[Node], table: &'static [(&'static str, Kw)]) {
        for node in nodes {
            match table.iter().find(|(name, _)| *name == node.name()) {
                None => {
                    self.unknown(node);
                    if let Some(children) = &node.block {
                        self.error(node, "Unexpected '{' - ignoring");
                        let _ = children;
                    }
                }
                Some((_, kind)) => self.check_kw(node, *kind),
            }
        }
    }

    pub fn check_kw(&mut self, node: &Node, kind: Kw) {
        match kind {
            Kw::Leaf => self.leaf(node),
            Kw::Block(table) => {
                let children = self.block(node);
                self.check_table(children, table);
            }
            Kw::Values => {
                let _ = self.block(node);
            }
            Kw::LeafOrValues => {}
        }
    }

    /// Unsigned integer in `[min, max]` (read_unsigned_func in lib/parser.c).
    pub fn unsigned(&mut self, node: &Node, index: usize, min: u64, max: u64) -> Option<u64> {
        let text = self.arg(node, index)?;
        let value = parse_unsigned(text);
        match value {
            Some(v) if v >= min && v <= max => Some(v),
            Some(_) => {
                self.error(
                    node,
                    format!("number '{text}' outside range [{min}, {max}]"),
                );
                None
            }
            None => {
                self.error(node, format!("invalid number '{text}'"));
                None
            }
        }
    }

    /// Signed integer in `[min, max]` (read_int_func).
    pub fn int(&mut self, node: &Node, index: usize, min: i64, max: i64) -> Option<i64> {
        let text = self.arg(node, index)?;
        match text.trim_start().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Some(v),
            Ok(_) => {
                self.error(
                    node,
                    format!("number '{text}' outside range [{min}, {max}]"),
                );
                None
            }
            Err(_) => {
                self.error(node, format!("invalid number '{text}'"));
                None
            }
        }
    }

    /// Seconds with up to 6 decimals, in `[min, max]` microseconds (read_timer);
    /// `max == 0` means keepalived's TIMER_MAXIMUM.
    pub fn timer(
        &mut self,
        node: &Node,
        index: usize,
        min_us: u64,
        max_us: u64,
    ) -> Option<Duration> {
        let text = self.arg(node, index)?;
        let max_us = if max_us == 0 {
            TIMER_MAXIMUM_US
        } else {
            max_us
        };
        match parse_decimal_micros(text) {
            Ok(us) if us >= min_us && us <= max_us => Some(Duration::from_micros(us)),
            Ok(_) => {
                self.error(node, format!("number '{text}' outside range"));
                None
            }
            Err(message) => {
                self.error(node, message);
                None
            }
        }
    }

    /// A keyword with an optional on/off argument (check_true_false): absent means true.
    pub fn flag(&mut self, node: &Node) -> Option<bool> {
        self.leaf(node);
        match node.arg(0) {
            None => Some(true),
            Some(text) => match true_false(text) {
                Some(v) => Some(v),
                None => {
                    self.error(node, format!("Invalid {} parameter {}", node.name(), text));
                    None
                }
            },
        }
    }
}

/// keepalived's TIMER_MAXIMUM (ULONG_MAX / TIMER_HZ - 1 seconds, in microseconds) is
/// effectively unbounded; rvs caps it where a Duration cannot overflow.
const TIMER_MAXIMUM_US: u64 = u64::MAX / 2;

/// `true`/`on`/`yes` and `false`/`off`/`no`.
pub fn true_false(text: &str) -> Option<bool> {
    match text {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// strtoul-like: optional blanks and `+`, decimal digits, nothing after.
pub fn parse_unsigned(text: &str) -> Option<u64> {
    let body = text.trim_start();
    let body = body.strip_prefix('+').unwrap_or(body);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    body.parse().ok()
}

/// Decimal seconds with at most 6 decimals -> microseconds (read_decimal_unsigned_long_func).
pub fn parse_decimal_micros(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err(format!("negative number '{text}'"));
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 6 {
        return Err(format!("number '{text}' has too many decimal places"));
    }
    let digits = format!("{whole}{frac:0<6}");
    parse_unsigned(&digits).ok_or_else(|| format!("invalid number '{text}'"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::lexer::Lexer;
    use std::path::Path;

    fn tree(text: &str) -> (Vec<Node>, Vec<Diagnostic>) {
        let mut lexer = Lexer::with_config_id(None);
        lexer.lex_text(text, Path::new("/x/k.conf"), 0);
        let mut diags = lexer.diagnostics;
        let nodes = build_tree(lexer.lines, &mut diags);
        (nodes, diags)
    }

    #[test]
    fn nested_blocks_and_brace_errors() {
        let (nodes, diags) = tree("a {\n b 1 { c }\n}\nd\n");
        assert!(diags.is_empty());
        assert_eq!(nodes.len(), 2);
        let inner = nodes[0].block.as_ref().unwrap();
        assert_eq!(inner[0].name(), "b");
        assert_eq!(inner[0].block.as_ref().unwrap()[0].name(), "c");

        let (_, diags) = tree("a {\n b {\n");
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("There are 2 missing"));
        let (_, diags) = tree("a\n}\n");
        assert_eq!(
            (diags[0].line, diags[0].message.as_str()),
            (2, "Extra '}' found")
        );
    }

    #[test]
    fn numbers_and_timers() {
        assert_eq!(parse_unsigned("+12"), Some(12));
        assert_eq!(parse_unsigned("1x"), None);
        assert_eq!(parse_decimal_micros("1.5"), Ok(1_500_000));
        assert!(parse_decimal_micros("1.0000001").is_err());
        assert!(parse_decimal_micros("-1").is_err());
    }
}
