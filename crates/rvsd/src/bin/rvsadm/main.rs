//! `rvsadm`: the ipvsadm 1.31-compatible CLI of rvs. It parses and prints exactly as
//! ipvsadm does (crate rvs-ipvsadm) and talks to rvsd over the admin socket
//! (`RVS_SOCKET`, else the default path). Invoked through a link named `ipvsadm`,
//! `ipvsadm-save` or `ipvsadm-restore` it behaves as that program.
//!
//! Deliberate differences from ipvsadm, each an improvement an operator asked for:
//! `-R` applies all lines or none (ipvsadm stops half-way), and names the failing
//! line; without a daemon it prints one line naming the socket and exits 2.

mod marks;
mod resolve;

use std::io::{Read, Write};
use std::process::ExitCode;

use rvs_api::{Applied, Command, CommandBatch, ConnView, DaemonsView, TableView};
use rvs_ipvsadm::{
    error_message, parse_args, parse_args_ext, personality, render_conns, render_daemons,
    render_list_all, render_list_service, render_timeout, restore_lines, restore_script_input,
    save_script_args, Action, Format, Op, Output, Personality,
};
use rvsd::client::{Client, ClientError};
use rvsd::paths;

use resolve::Glibc;

/// What ipvsadm prints from the table alone (`-L`, `-L SVC`, `-S`, `--timeout`),
/// with `table` fetched only for those; `None` for other actions.
/// Err is a failure to get the table, Ok an ipvsadm answer (which may be an error,
/// such as a missing service).
fn listing(
    action: &Action,
    table: impl FnOnce() -> Result<TableView, Output>,
) -> Option<Result<Output, Output>> {
    if !matches!(
        action,
        Action::ListAll(_) | Action::Save(_) | Action::ListService(..) | Action::ListTimeout
    ) {
        return None;
    }
    let r = Glibc;
    Some(table().map(|t| match action {
        Action::ListAll(f) | Action::Save(f) => Output::stdout(render_list_all(&t, *f, &r), 0),
        Action::ListService(s, f) => {
            render_list_service(&t, s, *f, &r).map_or_else(|o| o, |text| Output::stdout(text, 0))
        }
        Action::ListTimeout => Output::stdout(render_timeout(&t.timeouts), 0),
        _ => Output::default(),
    }))
}

struct Cli {
    program: String,
    client: Client,
}

impl Cli {
    fn unreachable(&self, e: ClientError) -> Output {
        Output::stderr(format!("{}: {e}\n", self.program), 2)
    }

    fn table(&self) -> Result<TableView, Output> {
        match self.client.get::<TableView>("/v1/table") {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(Output::stderr(format!("{}\n", e.message), 1)),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn apply(&self, commands: Vec<Command>) -> Result<Result<usize, rvs_api::ApiError>, Output> {
        self.batch(commands, false).map(|r| r.map(|a| a.applied))
    }

    fn batch(
        &self,
        commands: Vec<Command>,
        dry_run: bool,
    ) -> Result<Result<Applied, rvs_api::ApiError>, Output> {
        self.client
            .post::<_, Applied>("/v1/commands", &CommandBatch { commands, dry_run })
            .map_err(|e| self.unreachable(e))
    }

    fn run(&self, action: Action) -> Output {
        if let Some(o) = listing(&action, || self.table()) {
            return o.unwrap_or_else(|o| o);
        }
        let r = Glibc;
        let result = match action {
            Action::Exit(o) | Action::Failed(o) => Ok(o),
            Action::Apply { op, command } => self.apply(vec![command]).map(|res| match res {
                Ok(_) => Output::default(),
                Err(e) => Output::stderr(format!("{}\n", error_message(op, &e)), 255),
            }),
            Action::ListConns(f) => match self.client.get::<Vec<ConnView>>("/v1/connections") {
                Ok(Ok(c)) => Ok(Output::stdout(render_conns(&c, f, &r), 0)),
                Ok(Err(e)) => Ok(Output::stderr(format!("{}\n", e.message), 1)),
                Err(e) => Err(self.unreachable(e)),
            },
            Action::ListDaemon => match self.client.get::<DaemonsView>("/v1/daemons") {
                Ok(Ok(v)) => Ok(Output::stdout(render_daemons(&v.daemons), 0)),
                // ipvsadm exits 1 when it cannot get the daemons
                Ok(Err(e)) => Ok(Output::stderr(format!("{}\n", e.message), 1)),
                Err(e) => Err(self.unreachable(e)),
            },
            Action::StartDaemon(args) => self
                .client
                .post::<_, DaemonsView>("/v1/daemons", &args.spec())
                .map(|res| daemon_answer(Op::StartDaemon, res))
                .map_err(|e| self.unreachable(e)),
            Action::StopDaemon(args) => self
                .client
                .delete::<DaemonsView>(&format!("/v1/daemons/{}", args.state().name()))
                .map(|res| daemon_answer(Op::StopDaemon, res))
                .map_err(|e| self.unreachable(e)),
            Action::Restore => Ok(self.restore(false)),
            Action::ListAll(_)
            | Action::Save(_)
            | Action::ListService(..)
            | Action::ListTimeout => {
                Ok(Output::default()) // answered by `listing` above
            }
        };
        result.unwrap_or_else(|o| o)
    }

    /// `rvsadm --vrrp`: one line per VRRP instance, keepalived's state names.
    fn vrrp(&self) -> Output {
        match self.client.get::<rvs_api::VrrpView>("/v1/vrrp") {
            Ok(Ok(v)) => Output::stdout(render_vrrp(&v), 0),
            Ok(Err(e)) => Output::stderr(format!("{}\n", e.message), 1),
            Err(e) => self.unreachable(e),
        }
    }

    /// `-R` (and ipvsadm-restore, which clears first): every rule line becomes one
    /// command of a single batch, so the table changes all at once or not at all.
    /// A listing line in the input prints the table as the lines before it would
    /// leave it (a dry run of the batch so far), as ipvsadm would have printed it.
    fn restore(&self, clear_first: bool) -> Output {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            return Output::stderr(format!("{}: cannot read stdin: {e}\n", self.program), 1);
        }
        if clear_first {
            // ipvsadm-restore drops comment lines before it restores.
            input = restore_script_input(&input);
        }
        let r = Glibc;
        let mut out = Output::default();
        let mut lines: Vec<(usize, String, Op)> = Vec::new();
        let mut commands = Vec::new();
        if clear_first {
            commands.push(Command::Clear {});
            lines.push((0, "-C".into(), Op::Clear));
        }
        let abort = |mut out: Output, o: Output, line: usize, text: &str, program: &str| {
            out.stdout.push_str(&o.stdout);
            out.stderr.push_str(&o.stderr);
            out.stderr.push_str(&format!(
                "{program}: restore: stopped at line {line} ({text}); nothing was restored\n"
            ));
            out.code = if o.code == 0 { 255 } else { o.code };
            out
        };
        for (line, argv) in restore_lines(&self.program, &input) {
            let text = argv.get(1..).unwrap_or_default().join(" ");
            let action = parse_args(&argv, true, &r);
            let action = match action {
                Action::Apply { op, command } => {
                    commands.push(command);
                    lines.push((line, text, op));
                    continue;
                }
                // ipvsadm exits here (even with -h, after the usage): rvs has
                // applied nothing yet, and stops without applying anything.
                Action::Exit(o) | Action::Failed(o) => {
                    return abort(out, o, line, &text, &self.program)
                }
                other => other,
            };
            // A listing sees the table as the rules so far would leave it.
            let dry_run = || {
                if commands.is_empty() {
                    return self.table();
                }
                match self.batch(commands.clone(), true)? {
                    Ok(Applied { table: Some(t), .. }) => Ok(t),
                    Ok(Applied { table: None, .. }) => Err(Output::stderr(
                        format!(
                            "{}: rvsd answered a dry run without a table\n",
                            self.program
                        ),
                        1,
                    )),
                    Err(e) => Err(self.batch_failed(Output::default(), &lines, &e)),
                }
            };
            let o = match listing(&action, dry_run) {
                Some(Err(failure)) => {
                    let mut failure = failure;
                    failure.stdout.insert_str(0, &out.stdout);
                    failure.stderr.insert_str(0, &out.stderr);
                    return failure;
                }
                Some(Ok(o)) => o,
                None => self.run(action),
            };
            if o.code != 0 {
                return abort(out, o, line, &text, &self.program);
            }
            out.stdout.push_str(&o.stdout);
            out.stderr.push_str(&o.stderr);
        }
        if commands.is_empty() {
            return out;
        }
        match self.apply(commands) {
            Err(o) => o,
            Ok(Ok(_)) => out,
            Ok(Err(e)) => self.batch_failed(out, &lines, &e),
        }
    }

    /// The daemon refused command `e.index` of a restore: say which line, as
    /// ipvsadm would for that command, and that nothing changed.
    fn batch_failed(
        &self,
        mut out: Output,
        lines: &[(usize, String, Op)],
        e: &rvs_api::ApiError,
    ) -> Output {
        let (line, text, op) = e.index.and_then(|i| lines.get(i).cloned()).unwrap_or((
            0,
            String::new(),
            Op::AddService,
        ));
        out.stderr.push_str(&format!(
            "{}\n{}: restore: line {line} ({text}) failed; nothing was restored\n",
            error_message(op, e),
            self.program
        ));
        out.code = 255;
        out
    }
}

/// A start or stop prints nothing when it worked, and libipvs's text for the
/// errno (status 255) when the daemon refused it, as ipvsadm does.
fn daemon_answer(op: Op, res: Result<DaemonsView, rvs_api::ApiError>) -> Output {
    match res {
        Ok(_) => Output::default(),
        Err(e) => Output::stderr(format!("{}\n", error_message(op, &e)), 255),
    }
}

/// The `--vrrp` table.
fn render_vrrp(v: &rvs_api::VrrpView) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>4} {:>3} {:>8} {:<10} {:<20} {:>7} {}\n",
        "Instance",
        "State",
        "VRID",
        "Ver",
        "Priority",
        "Interface",
        "Master",
        "Dropped",
        "Virtual addresses"
    );
    for i in &v.instances {
        let master = match (&i.master, i.master_priority) {
            (Some(a), Some(p)) => format!("{a} ({p})"),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<16} {:<7} {:>4} {:>3} {:>8} {:<10} {:<20} {:>7} {}\n",
            i.name,
            i.state,
            i.vrid,
            i.version,
            format!("{}/{}", i.effective_priority, i.base_priority),
            i.interface,
            master,
            i.counters.dropped,
            i.virtual_addresses.join(" ")
        ));
    }
    for g in &v.groups {
        out.push_str(&format!(
            "Sync group {} {}: {}\n",
            g.name,
            g.state,
            g.members.join(" ")
        ));
    }
    out
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = argv.first().cloned().unwrap_or_else(|| "rvsadm".into());
    let cli = Cli {
        program: program.clone(),
        client: Client::new(paths::socket_from_env()),
    };
    let out = match personality(&program) {
        Personality::Save => match save_script_args(&argv) {
            Ok(numeric) => cli.run(Action::Save(Format {
                rule: true,
                numeric,
                ..Format::default()
            })),
            Err(o) => o,
        },
        Personality::Restore => cli.restore(true),
        Personality::Ipvsadm if argv.len() <= 1 => cli.run(Action::ListAll(Format::default())),
        // An rvs extension (ipvsadm has no such option): the VRRP instances.
        Personality::Ipvsadm if argv.get(1).map(String::as_str) == Some("--vrrp") => cli.vrrp(),
        // An rvs extension: the firewall-mark classifier.
        Personality::Ipvsadm if argv.get(1).map(String::as_str) == Some("--marks") => {
            cli.marks(argv.get(2..).unwrap_or_default())
        }
        Personality::Ipvsadm => {
            let posix = std::env::var_os("POSIXLY_CORRECT").is_some()
                || std::env::var_os("POSIX_ME_HARDER").is_some();
            cli.run(parse_args_ext(&argv, false, posix, &Glibc))
        }
    };
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(u8::try_from(out.code & 0xff).unwrap_or(255))
}
