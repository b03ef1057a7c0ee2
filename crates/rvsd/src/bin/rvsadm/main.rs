//! `rvsadm`: the ipvsadm 1.31-compatible CLI of rvs. It parses and prints exactly as
//! ipvsadm does (crate rvs-ipvsadm) and talks to rvsd over the admin socket
//! (`RVS_SOCKET`, else the default path). Invoked through a link named `ipvsadm`,
//! `ipvsadm-save` or `ipvsadm-restore` it behaves as that program.
//!
//! Deliberate differences from ipvsadm, each an improvement an operator asked for:
//! `-R` applies all lines or none (ipvsadm stops half-way), and names the failing
//! line; without a daemon it prints one line naming the socket and exits 2.

mod resolve;

use std::io::{Read, Write};
use std::process::ExitCode;

use rvs_api::{Applied, Command, CommandBatch, ConnView, TableView};
use rvs_ipvsadm::{
    error_message, parse_args, personality, render_conns, render_list_all, render_list_service,
    render_timeout, restore_lines, save_script_args, Action, Format, Op, Output, Personality,
};
use rvsd::client::{Client, ClientError};
use rvsd::paths;

use resolve::Glibc;

fn ok(stdout: String) -> Output {
    Output {
        stdout,
        stderr: String::new(),
        code: 0,
    }
}

fn failed(stderr: String, code: i32) -> Output {
    Output {
        stdout: String::new(),
        stderr,
        code,
    }
}

struct Cli {
    program: String,
    client: Client,
}

impl Cli {
    fn unreachable(&self, e: ClientError) -> Output {
        failed(format!("{}: {e}\n", self.program), 2)
    }

    fn table(&self) -> Result<TableView, Output> {
        match self.client.get::<TableView>("/v1/table") {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(failed(format!("{}\n", e.message), 1)),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn apply(&self, commands: Vec<Command>) -> Result<Result<usize, rvs_api::ApiError>, Output> {
        match self
            .client
            .post::<_, Applied>("/v1/commands", &CommandBatch { commands })
        {
            Ok(r) => Ok(r.map(|a| a.applied)),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn run(&self, action: Action) -> Output {
        let r = Glibc;
        let result = match action {
            Action::Exit(o) => Ok(o),
            Action::Apply { op, command } => self.apply(vec![command]).map(|res| match res {
                Ok(_) => ok(String::new()),
                Err(e) => failed(format!("{}\n", error_message(op, &e)), 255),
            }),
            Action::ListAll(f) | Action::Save(f) => {
                self.table().map(|t| ok(render_list_all(&t, f, &r)))
            }
            Action::ListService(s, f) => self
                .table()
                .map(|t| render_list_service(&t, &s, f, &r).unwrap_or_else(|o| o)),
            Action::ListConns(f) => match self.client.get::<Vec<ConnView>>("/v1/connections") {
                Ok(Ok(c)) => Ok(ok(render_conns(&c, f, &r))),
                Ok(Err(e)) => Ok(failed(format!("{}\n", e.message), 1)),
                Err(e) => Err(self.unreachable(e)),
            },
            Action::ListTimeout => self.table().map(|t| ok(render_timeout(&t.timeouts))),
            // No sync daemon runs yet (connection sync is a later issue), and ipvsadm
            // prints nothing when none runs.
            Action::ListDaemon => self.table().map(|_| ok(String::new())),
            // No sync daemon can run yet, so stopping one gets the kernel's answer
            // for "none running" (ESRCH) and starting one says why it cannot.
            Action::StopDaemon(_) => Ok(failed("No daemon is running\n".into(), 255)),
            Action::StartDaemon(_) => Ok(failed(
                "Connection synchronization is not implemented in this rvs version\n".into(),
                255,
            )),
            Action::Restore => self.restore(false),
        };
        result.unwrap_or_else(|o| o)
    }

    /// `-R` (and ipvsadm-restore, which clears first): every line becomes one
    /// command of a single batch, so the table changes all at once or not at all.
    fn restore(&self, clear_first: bool) -> Output {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            return failed(format!("{}: cannot read stdin: {e}\n", self.program), 1);
        }
        if clear_first {
            // ipvsadm-restore drops comment lines before it restores.
            input = input
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        let r = Glibc;
        let mut ops: Vec<(usize, String, Op)> = Vec::new();
        let mut commands = Vec::new();
        if clear_first {
            commands.push(Command::Clear {});
            ops.push((0, "-C".into(), Op::Clear));
        }
        for (line, argv) in restore_lines(&self.program, &input) {
            let text = argv[1..].join(" ");
            match parse_args(&argv, true, &r) {
                Action::Apply { op, command } => {
                    commands.push(command);
                    ops.push((line, text, op));
                }
                Action::Exit(mut o) => {
                    o.stderr.push_str(&format!(
                        "{}: restore: line {line} ({text}) refused; nothing was restored\n",
                        self.program
                    ));
                    return o;
                }
                _ => {
                    return failed(
                        format!(
                            "{}: restore: line {line} ({text}) is not a rule change; nothing was restored\n",
                            self.program
                        ),
                        255,
                    )
                }
            }
        }
        if commands.is_empty() {
            return ok(String::new());
        }
        match self.apply(commands) {
            Err(o) => o,
            Ok(Ok(_)) => ok(String::new()),
            Ok(Err(e)) => {
                let (line, text, op) = e.index.and_then(|i| ops.get(i).cloned()).unwrap_or((
                    0,
                    String::new(),
                    Op::AddService,
                ));
                failed(
                    format!(
                        "{}\n{}: restore: line {line} ({text}) failed; nothing was restored\n",
                        error_message(op, &e),
                        self.program
                    ),
                    255,
                )
            }
        }
    }
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
        Personality::Ipvsadm => cli.run(parse_args(&argv, false, &Glibc)),
    };
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(u8::try_from(out.code & 0xff).unwrap_or(255))
}
