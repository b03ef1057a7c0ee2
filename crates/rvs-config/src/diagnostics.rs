//! Diagnostics: what rvs reports about a configuration, with the file, line and column
//! it concerns. Invariant: any diagnostic at all means `keepalived -t` would exit non-zero.

use std::fmt;
use std::path::PathBuf;

/// How bad a diagnostic is for rvs (keepalived itself treats both as "not clean").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// keepalived reports it, but the model is still what keepalived would run.
    Warning,
    /// rvs cannot build a faithful model (keepalived rejects or ignores a value).
    Error,
}

/// One reported problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            kind,
            self.message
        )
    }
}
