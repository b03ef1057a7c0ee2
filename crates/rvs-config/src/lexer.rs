//! Lexer: turns keepalived.conf text into logical lines of tokens, the way
//! `lib/parser.c` (read_line, decomment, alloc_strvec_r) does. It owns comments (`#`,
//! `!`), quoting, `include GLOB` (relative to the including file's directory), `@id`
//! line prefixes, and simple `$NAME=value` definitions. Invariant: every `{` and `}`
//! outside quotes becomes a line of its own, as keepalived splits lines at braces.
//!
//! Not supported (reported as errors): multi-line `$NAME=...\` definitions and
//! `~SEQ`/`~LST` expansions.

use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Severity};

/// Includes nested deeper than this are reported instead of followed (loop guard).
const MAX_INCLUDE_DEPTH: usize = 32;

/// One word of a line (quotes removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    /// 1-based column of the token's first character in the source line.
    pub column: u32,
}

/// A logical line: at least one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub file: PathBuf,
    pub line: u32,
    pub tokens: Vec<Token>,
}

impl Line {
    /// True when the line is a lone `{` or `}` equal to `brace`.
    pub fn is(&self, brace: &str) -> bool {
        self.tokens.len() == 1 && self.tokens[0].text == brace
    }
}

/// Reads text (and the files it includes) into lines.
pub struct Lexer {
    pub lines: Vec<Line>,
    pub diagnostics: Vec<Diagnostic>,
    definitions: Vec<(String, String)>,
    config_id: Option<String>,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new()
    }
}

impl Lexer {
    pub fn new() -> Self {
        Lexer {
            lines: Vec::new(),
            diagnostics: Vec::new(),
            definitions: Vec::new(),
            config_id: host_config_id(),
        }
    }

    /// Same as `new` but with an explicit config id for `@id` lines (tests).
    pub fn with_config_id(config_id: Option<String>) -> Self {
        Lexer {
            config_id,
            ..Self::new()
        }
    }

    fn report(&mut self, severity: Severity, file: &Path, line: u32, column: u32, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    /// Lexes the file at `path`, following its includes.
    pub fn lex_path(&mut self, path: &Path, depth: usize) {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                self.lex_text(&text, path, depth);
            }
            Err(err) => {
                self.report(
                    Severity::Error,
                    path,
                    0,
                    0,
                    format!(
                        "Unable to read configuration file {}: {err}",
                        path.display()
                    ),
                );
            }
        }
    }

    /// Lexes `text` as if it were the content of `origin`.
    pub fn lex_text(&mut self, text: &str, origin: &Path, depth: usize) {
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let raw = raw.trim_end_matches(['\r', '\n']);
            self.lex_line(raw, origin, line_no, depth);
        }
    }

    fn lex_line(&mut self, raw: &str, origin: &Path, line_no: u32, depth: usize) {
        let chars: Vec<(char, u32)> = raw.chars().zip(1u32..).collect();
        let mut chars = self.decomment(chars, origin, line_no);
        if chars.is_empty() {
            return;
        }
        // `@id` / `@^id` prefixes: keep the line only when the id matches (or, with `^`,
        // does not match) the config id, which keepalived takes from the host name.
        if chars[0].0 == '@' {
            let reverse = chars.get(1).map(|c| c.0) == Some('^');
            let start = if reverse { 2 } else { 1 };
            let Some(end) = chars
                .iter()
                .skip(start)
                .position(|c| c.0 == ' ' || c.0 == '\t')
                .map(|p| p + start)
            else {
                return;
            };
            let id: String = chars[start..end].iter().map(|c| c.0).collect();
            let matches = self.config_id.as_deref() == Some(id.as_str());
            if matches == reverse {
                return;
            }
            let rest = chars[end..]
                .iter()
                .position(|c| c.0 != ' ' && c.0 != '\t')
                .map_or(chars.len(), |p| p + end);
            chars.drain(..rest);
            if chars.is_empty() {
                return;
            }
        }
        let text: String = chars.iter().map(|c| c.0).collect();
        if text.starts_with('$') {
            if let Some((name, value)) = parse_definition(&text) {
                if value.ends_with('\\') {
                    self.report(
                        Severity::Error,
                        origin,
                        line_no,
                        chars[0].1,
                        format!("multi-line definition ${name} is not supported by rvs"),
                    );
                    return;
                }
                if let Some(slot) = self.definitions.iter_mut().find(|d| d.0 == name) {
                    slot.1 = value;
                } else {
                    self.definitions.push((name, value));
                }
                return;
            }
        }
        if text.starts_with("~SEQ") || text.starts_with("~LST") {
            self.report(
                Severity::Error,
                origin,
                line_no,
                chars[0].1,
                format!("{} expansion is not supported by rvs", &text[..4]),
            );
            return;
        }
        if let Some(pattern) = include_pattern(&text) {
            self.include(pattern.trim(), origin, line_no, chars[0].1, depth);
            return;
        }
        if !self.definitions.is_empty() && text.contains('$') {
            chars = self.substitute(&chars);
            chars = self.decomment(chars, origin, line_no);
            if chars.is_empty() {
                return;
            }
        }
        self.tokenize(&chars, origin, line_no);
    }

    /// Removes leading/trailing blanks and comments; `\#` and `\!` outside quotes are
    /// literal `#`/`!`. Reports an unterminated quote.
    fn decomment(
        &mut self,
        chars: Vec<(char, u32)>,
        origin: &Path,
        line_no: u32,
    ) -> Vec<(char, u32)> {
        let mut out = Vec::with_capacity(chars.len());
        let mut in_quote = false;
        let mut iter = chars
            .into_iter()
            .skip_while(|c| c.0 == ' ' || c.0 == '\t')
            .peekable();
        while let Some((ch, col)) = iter.next() {
            match ch {
                '"' => {
                    in_quote = !in_quote;
                    out.push((ch, col));
                }
                '\\' => match iter.peek().copied() {
                    Some((next, next_col)) => {
                        iter.next();
                        if !in_quote && (next == '#' || next == '!') {
                            out.push((next, next_col));
                        } else {
                            out.push((ch, col));
                            out.push((next, next_col));
                        }
                    }
                    None => break,
                },
                '#' | '!' if !in_quote => break,
                _ => out.push((ch, col)),
            }
        }
        if in_quote {
            let text: String = out.iter().map(|c| c.0).collect();
            let column = out.first().map_or(1, |c| c.1);
            self.report(
                Severity::Error,
                origin,
                line_no,
                column,
                format!("Unterminated quote '{text}'"),
            );
        }
        while out.last().is_some_and(|c| c.0 == ' ' || c.0 == '\t') {
            out.pop();
        }
        out
    }

    /// Replaces `$NAME` and `${NAME}` by the definition's value.
    fn substitute(&self, chars: &[(char, u32)]) -> Vec<(char, u32)> {
        let mut out = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let (ch, col) = chars[i];
            if ch == '$' {
                let braced = chars.get(i + 1).map(|c| c.0) == Some('{');
                let start = if braced { i + 2 } else { i + 1 };
                let end = chars[start.min(chars.len())..]
                    .iter()
                    .position(|c| !(c.0.is_ascii_alphanumeric() || c.0 == '_'))
                    .map_or(chars.len(), |p| p + start);
                let name: String = chars[start.min(end)..end].iter().map(|c| c.0).collect();
                let closed = !braced || chars.get(end).map(|c| c.0) == Some('}');
                if let Some(def) = self
                    .definitions
                    .iter()
                    .find(|d| d.0 == name)
                    .filter(|_| closed && !name.is_empty())
                {
                    out.extend(def.1.chars().map(|c| (c, col)));
                    i = if braced { end + 1 } else { end };
                    continue;
                }
            }
            out.push((ch, col));
            i += 1;
        }
        out
    }

    fn tokenize(&mut self, chars: &[(char, u32)], origin: &Path, line_no: u32) {
        let mut tokens: Vec<Token> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let (ch, col) = chars[i];
            if ch == ' ' || ch == '\t' {
                i += 1;
            } else if ch == '{' || ch == '}' {
                if !tokens.is_empty() {
                    self.push_line(origin, line_no, std::mem::take(&mut tokens));
                }
                self.push_line(
                    origin,
                    line_no,
                    vec![Token {
                        text: ch.to_string(),
                        column: col,
                    }],
                );
                i += 1;
            } else if ch == '"' {
                let Some(close) = chars[i + 1..]
                    .iter()
                    .position(|c| c.0 == '"')
                    .map(|p| p + i + 1)
                else {
                    let text: String = chars.iter().map(|c| c.0).collect();
                    self.report(
                        Severity::Error,
                        origin,
                        line_no,
                        col,
                        format!("Unmatched quote: '{text}'"),
                    );
                    break;
                };
                tokens.push(Token {
                    text: chars[i + 1..close].iter().map(|c| c.0).collect(),
                    column: col,
                });
                i = close + 1;
            } else {
                let end = chars[i..]
                    .iter()
                    .position(|c| matches!(c.0, ' ' | '\t' | '"' | '{' | '}'))
                    .map_or(chars.len(), |p| p + i);
                tokens.push(Token {
                    text: chars[i..end].iter().map(|c| c.0).collect(),
                    column: col,
                });
                i = end;
            }
        }
        if !tokens.is_empty() {
            self.push_line(origin, line_no, tokens);
        }
    }

    fn push_line(&mut self, origin: &Path, line_no: u32, tokens: Vec<Token>) {
        self.lines.push(Line {
            file: origin.to_path_buf(),
            line: line_no,
            tokens,
        });
    }

    fn include(&mut self, pattern: &str, origin: &Path, line_no: u32, column: u32, depth: usize) {
        if depth >= MAX_INCLUDE_DEPTH {
            self.report(
                Severity::Error,
                origin,
                line_no,
                column,
                format!("include of '{pattern}' nested too deeply (loop?)"),
            );
            return;
        }
        let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        // keepalived only logs "Config files missing" when nothing matches; `-t` stays clean.
        for file in glob(&full) {
            self.lex_path(&file, depth + 1);
        }
    }
}

/// `include PATTERN` (also `includer`, `includew`... which keepalived treats alike for
/// reading). Returns the pattern.
fn include_pattern(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("include")?;
    let mut chars = rest.chars();
    match chars.next()? {
        ' ' | '\t' => Some(rest),
        'r' | 'm' | 'w' | 'b' | 'a' if chars.next().is_some_and(|c| c == ' ' || c == '\t') => {
            Some(&rest[1..])
        }
        _ => None,
    }
}

/// `$NAME=value` (blanks allowed before `=`); NAME starts with a letter or `_`.
fn parse_definition(text: &str) -> Option<(String, String)> {
    let body = text.strip_prefix('$')?;
    let first = body.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let after = body[name_end..].trim_start_matches([' ', '\t']);
    let value = after.strip_prefix('=')?;
    Some((
        body[..name_end].to_string(),
        value.trim_start_matches([' ', '\t']).to_string(),
    ))
}

/// keepalived's default config id: the host name up to its first dot.
fn host_config_id() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let short = name.split('.').next().unwrap_or(name);
    (!short.is_empty()).then(|| short.to_string())
}

/// Expands a path pattern with `*`, `?` and `[...]` in any component, like glob(3):
/// sorted, hidden entries only when the component starts with `.`, files only.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    let components: Vec<_> = pattern.components().collect();
    for (index, component) in components.iter().enumerate() {
        let part = component.as_os_str().to_string_lossy();
        let last = index + 1 == components.len();
        let mut next = Vec::new();
        for dir in &current {
            if part.contains(['*', '?', '[']) {
                let listing = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir.as_path()
                };
                let Ok(entries) = std::fs::read_dir(listing) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    if name.starts_with('.') && !part.starts_with('.') {
                        continue;
                    }
                    if wildcard_match(part.as_bytes(), name.as_bytes()) {
                        next.push(dir.join(&name));
                    }
                }
            } else {
                next.push(dir.join(component.as_os_str()));
            }
        }
        current = next
            .into_iter()
            .filter(|p| if last { p.is_file() } else { p.is_dir() })
            .collect();
    }
    current
}

/// Shell wildcard match of one path component.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|skip| wildcard_match(&pattern[1..], &name[skip..])),
        Some(b'?') => !name.is_empty() && wildcard_match(&pattern[1..], &name[1..]),
        Some(b'[') => {
            let Some(close) = pattern
                .iter()
                .skip(2)
                .position(|&c| c == b']')
                .map(|p| p + 2)
            else {
                return name.first() == Some(&b'[') && wildcard_match(&pattern[1..], &name[1..]);
            };
            let Some(&ch) = name.first() else {
                return false;
            };
            let mut set = &pattern[1..close];
            let negate = matches!(set.first(), Some(b'!' | b'^'));
            if negate {
                set = &set[1..];
            }
            let mut found = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    found |= set[i] <= ch && ch <= set[i + 2];
                    i += 3;
                } else {
                    found |= set[i] == ch;
                    i += 1;
                }
            }
            found != negate && wildcard_match(&pattern[close + 1..], &name[1..])
        }
        Some(&c) => name.first() == Some(&c) && wildcard_match(&pattern[1..], &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn lex(text: &str) -> Lexer {
        let mut lexer = Lexer::with_config_id(Some("node1".into()));
        lexer.lex_text(text, Path::new("/nonexistent/k.conf"), 0);
        lexer
    }

    fn words(lexer: &Lexer) -> Vec<Vec<String>> {
        lexer
            .lines
            .iter()
            .map(|l| l.tokens.iter().map(|t| t.text.clone()).collect())
            .collect()
    }

    #[test]
    fn comments_are_removed_but_escaped_and_quoted_marks_kept() {
        let lexer = lex("a b # c\n! whole\nx \\#y \"q # r\" ! z\n");
        assert_eq!(
            words(&lexer),
            vec![vec!["a", "b"], vec!["x", "#y", "q # r"]]
        );
        assert!(lexer.diagnostics.is_empty());
    }

    #[test]
    fn braces_split_lines_on_same_or_next_line() {
        let same = lex("real_server 1.2.3.4 80 {\n weight 2 }\n");
        let next = lex("real_server 1.2.3.4 80\n{\n weight 2\n}\n");
        assert_eq!(words(&same), words(&next));
        assert_eq!(
            words(&same),
            vec![
                vec!["real_server", "1.2.3.4", "80"],
                vec!["{"],
                vec!["weight", "2"],
                vec!["}"]
            ]
        );
        assert_eq!(same.lines[1].tokens[0].column, 24);
    }

    #[test]
    fn unterminated_quote_is_reported_with_position() {
        let lexer = lex("\n  notify \"/bin/x\n");
        assert!(lexer.diagnostics[0]
            .message
            .starts_with("Unterminated quote"));
        assert_eq!(
            (lexer.diagnostics[0].line, lexer.diagnostics[0].column),
            (2, 3)
        );
    }

    #[test]
    fn definitions_and_config_id_prefixes() {
        let lexer = lex("$ALGO=rr\n$P = 80\nlb_algo $ALGO ${P}\n@node1 kept\n@other dropped\n@^other kept2\n@^node1 dropped2\n");
        assert_eq!(
            words(&lexer),
            vec![vec!["lb_algo", "rr", "80"], vec!["kept"], vec!["kept2"]]
        );
    }

    #[test]
    fn includes_follow_globs_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("rvs-config-lexer-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.conf"), "second\n").unwrap();
        std::fs::write(dir.join("sub/a.conf"), "first\n").unwrap();
        std::fs::write(dir.join("sub/c.txt"), "not matched\n").unwrap();
        let mut lexer = Lexer::with_config_id(None);
        lexer.lex_text(
            "before\ninclude sub/*.conf\ninclude nothing/*.conf\nafter\n",
            &dir.join("main.conf"),
            0,
        );
        assert_eq!(
            words(&lexer),
            vec![vec!["before"], vec!["first"], vec!["second"], vec!["after"]]
        );
        assert_eq!(lexer.lines[1].file, dir.join("sub/a.conf"));
        assert!(lexer.diagnostics.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(!wildcard_match(b"*.conf", b"a.confx"));
        assert!(wildcard_match(b"[a-c]?.c*", b"bx.conf"));
        assert!(!wildcard_match(b"[!a-c]*", b"b"));
    }
}
