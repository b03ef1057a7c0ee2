//! keepalived.conf (keepalived 2.x) support for rvs: lexer, parser and typed model,
//! with keepalived 2.2.7's defaults and a diagnostic wherever `keepalived -t` would
//! report one (so `Loaded::is_clean` matches `keepalived -t`'s exit status on
//! keepalived's own syntax; the rvs extension block below is reported by
//! keepalived as unknown and not by rvs).
//!
//! Entry points: [`load`] and [`parse_str`]. The model is in [`model`].
//!
//! rvs extensions: the `fwmark_classifier` block ([`classifier`]), which
//! keepalived itself reports as an unknown keyword; and [`iptables`], which
//! translates iptables' MARK rules into classifier rules.

pub mod checkers;
pub mod classifier;
pub mod diagnostics;
pub mod global;
pub mod iptables;
pub mod lexer;
pub mod lvs;
pub mod model;
pub mod parser;
pub mod vrrp;

use std::path::Path;

pub use diagnostics::{Diagnostic, Severity};
pub use model::KeepalivedConfig;

use checkers::KnownNames;
use parser::{build_tree, Ctx, Node};

/// A parsed configuration and everything reported about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: KeepalivedConfig,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Diagnostics of severity Error (rvsd refuses to run with any).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// No diagnostic at all: what `keepalived -t` exits 0 on.
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// Reads `path`, follows includes, parses, validates and applies keepalived's defaults.
pub fn load(path: &Path) -> Loaded {
    let mut lexer = lexer::Lexer::new();
    lexer.lex_path(path, 0);
    finish(lexer)
}

/// Same as [`load`] from text; includes are resolved relative to `origin`'s directory.
pub fn parse_str(text: &str, origin: &Path) -> Loaded {
    let mut lexer = lexer::Lexer::new();
    lexer.lex_text(text, origin, 0);
    finish(lexer)
}

fn finish(lexer: lexer::Lexer) -> Loaded {
    let mut diagnostics = lexer.diagnostics;
    let nodes = build_tree(lexer.lines, &mut diagnostics);
    let mut ctx = Ctx { diags: diagnostics };
    let config = interpret(&mut ctx, &nodes);
    Loaded {
        config,
        diagnostics: ctx.diags,
    }
}

fn names_of(nodes: &[Node], keywords: &[&str]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| keywords.contains(&n.name()))
        .filter_map(|n| n.arg(0))
        .map(str::to_string)
        .collect()
}

/// Walks the top-level keywords (the root keyword set of keepalived 2.2.7).
fn interpret(ctx: &mut Ctx, nodes: &[Node]) -> KeepalivedConfig {
    let mut config = KeepalivedConfig::default();
    let known = KnownNames {
        track_files: names_of(nodes, &["track_file", "vrrp_track_file"]),
        bfd_instances: names_of(nodes, &["bfd_instance"]),
    };
    let script_names = names_of(nodes, &["vrrp_script"]);
    let instance_names = names_of(nodes, &["vrrp_instance"]);
    // Groups first: a virtual_server may name a group defined later in the file.
    for node in nodes.iter().filter(|n| n.name() == "virtual_server_group") {
        if let Some(group) = lvs::parse_vs_group(ctx, node) {
            config.vs_groups.push(group);
        }
    }
    for node in nodes {
        match node.name() {
            "global_defs" => global::parse_global_defs(ctx, node, &mut config.global),
            "virtual_server_group" => {}
            "virtual_server" => {
                if let Some(vs) = lvs::parse_virtual_server(ctx, node, &config.vs_groups, &known) {
                    config.virtual_servers.push(vs);
                }
            }
            "vrrp_instance" => {
                if let Some(vi) = vrrp::parse_instance(ctx, node, &script_names) {
                    config.vrrp_instances.push(vi);
                }
            }
            "vrrp_sync_group" => {
                if let Some(sg) = vrrp::parse_sync_group(ctx, node, &script_names, &instance_names)
                {
                    config.vrrp_sync_groups.push(sg);
                }
            }
            classifier::KEYWORD => classifier::parse_classifier(ctx, node, &mut config.mark_rules),
            "vrrp_script" => {
                if let Some(script) = vrrp::parse_vrrp_script(ctx, node) {
                    config.vrrp_scripts.push(script);
                }
            }
            name => match vrrp::OTHER_ROOTS.iter().find(|(root, _)| *root == name) {
                Some((_, kind)) => ctx.check_kw(node, *kind),
                None => {
                    ctx.unknown(node);
                    if node.block.is_some() {
                        ctx.error(node, "Unexpected '{' - ignoring");
                    }
                }
            },
        }
    }
    check_script_security(ctx, &config);
    config
}

/// keepalived refuses checker scripts (MISC_CHECK, notify_up/down, quorum_up/down) unless
/// `enable_script_security` is set, whatever the script is (check_data.c,
/// check_check_script_security; `keepalived -t` exits 6).
fn check_script_security(ctx: &mut Ctx, config: &KeepalivedConfig) {
    if config.global.enable_script_security {
        return;
    }
    for vs in &config.virtual_servers {
        let vs_scripts = vs.quorum_up.is_some() || vs.quorum_down.is_some();
        let rs_scripts = vs.real_servers.iter().any(|rs| {
            rs.notify_up.is_some()
                || rs.notify_down.is_some()
                || rs
                    .checkers
                    .iter()
                    .any(|c| matches!(c.kind, model::CheckerKind::Misc(_)))
        });
        if vs_scripts || rs_scripts {
            // keepalived still runs the scripts (as root): a warning, not a refusal.
            ctx.diags.push(Diagnostic {
                severity: Severity::Warning,
                file: vs.span.file.clone(),
                line: vs.span.line,
                column: vs.span.column,
                message: "SECURITY VIOLATION - check scripts are being executed but script_security not enabled.".into(),
            });
            return;
        }
    }
}
