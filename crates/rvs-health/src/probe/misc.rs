//! MISC_CHECK (keepalived/check/check_misc.c, lib/notify.c `system_call_script`).
//!
//! The script runs as `argv` with no shell, in its own process group, with keepalived's
//! environment and no standard input or output. Its exit status decides:
//! - 0 passes (with misc_dynamic too: the weight goes back to the configured one);
//! - with misc_dynamic, 2-255 passes with weight = status − 2;
//! - anything else fails (1 always; any non-zero status without misc_dynamic), and so
//!   does death by a signal.
//!
//! At the timeout the process group gets SIGTERM, then SIGKILL after 2 s more, and the
//! check fails as "timed out"; a script that dies of the SIGTERM has its group killed
//! too, as keepalived's `misc_check_child_thread` does.
//!
//! Not copied: a script that cannot be executed. keepalived refuses such scripts when
//! it loads the configuration (and a child whose execve fails exits 0); here the
//! spawn error fails the check with its reason.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::MiscProbe;
use crate::Outcome;

/// How long keepalived waits after SIGTERM before it sends SIGKILL, and again after it.
const TERMINATION_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn check(probe: &MiscProbe) -> Outcome {
    let Some((program, args)) = probe.argv.split_first() else {
        return fail("MISC_CHECK has no script path".to_owned());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = probe.user {
        command.uid(uid).gid(gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return fail(format!("cannot run {program}: {e}")),
    };
    match tokio::time::timeout(probe.timeout, child.wait()).await {
        Ok(Ok(status)) => judge(status, probe.dynamic),
        Ok(Err(e)) => fail(format!("cannot wait for {program}: {e}")),
        Err(_) => {
            terminate(&mut child).await;
            fail(format!("{program} timed out after {:?}", probe.timeout))
        }
    }
}

fn judge(status: ExitStatus, dynamic: bool) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) => Outcome::Pass { weight: None },
        Some(code @ 2..=255) if dynamic => Outcome::Pass {
            weight: u32::try_from(code - 2).ok(),
        },
        Some(code) => fail(format!("script exited with status {code}")),
        None => fail(format!(
            "script failed due to signal {}",
            status.signal().unwrap_or_default()
        )),
    }
}

/// SIGTERM to the process group, SIGKILL if it is still there after the grace time.
async fn terminate(child: &mut Child) {
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        return;
    };
    let _ = killpg(group, Signal::SIGTERM);
    if let Ok(Ok(_)) = tokio::time::timeout(TERMINATION_GRACE, child.wait()).await {
        // Children the script left behind share its group.
        let _ = killpg(group, Signal::SIGKILL);
        return;
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = tokio::time::timeout(TERMINATION_GRACE, child.wait()).await;
}

fn fail(reason: String) -> Outcome {
    Outcome::Fail { reason }
}

/// Splits a `misc_path` value into argv as keepalived's parser does
/// (lib/parser.c `alloc_strvec_quoted_escaped`): white space separates words; single
/// or double quotes group (and are removed); a backslash escapes, with `\a \b \E \f
/// \n \r \t \v`, `\xHH…`, `\cX` (control character) and up to three octal digits.
pub fn split_misc_path(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, ' ' | '\t') => break,
                (None, '\'' | '"') => quote = Some(c),
                (Some(open), _) if c == open => quote = None,
                (_, '\\') => {
                    word.push(unescape(&mut chars).ok_or_else(|| {
                        format!("missing escaped character at the end of '{text}'")
                    })?)
                }
                _ => word.push(c),
            }
        }
        if let Some(open) = quote {
            return Err(format!("'{text}': missing terminating {open}"));
        }
        words.push(word);
    }
}

/// The character a backslash escape stands for (the backslash already taken).
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let first = chars.next()?;
    let escaped = match first {
        'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
            let mut value = 0u8;
            while let Some(digit) = chars.next_if(char::is_ascii_hexdigit) {
                value = (value << 4)
                    | digit
                        .to_digit(16)
                        .and_then(|d| u8::try_from(d).ok())
                        .unwrap_or(0);
            }
            char::from(value)
        }
        'c' if chars.peek().is_some() => {
            let control = chars.next().map(|c| u32::from(c) & 0x1f).unwrap_or(0);
            char::from_u32(control).unwrap_or('\0')
        }
        '0'..='7' => {
            let mut value = first.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.next_if(|c| ('0'..='7').contains(c)) {
                    Some(digit) => value = (value << 3) + digit.to_digit(8).unwrap_or(0),
                    None => break,
                }
            }
            char::from(u8::try_from(value & 0xff).unwrap_or(0))
        }
        'a' => '\u{7}',
        'b' => '\u{8}',
        'E' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    };
    Some(escaped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn split_handles_quotes_and_escapes() {
        assert_eq!(
            split_misc_path(r#"/bin/check "two words" 'x y'  a\ b \x41\101\n"#).unwrap(),
            vec!["/bin/check", "two words", "x y", "a b", "AA\n"]
        );
        assert!(split_misc_path("/bin/check \"open").is_err());
        assert!(split_misc_path("/bin/check \\").is_err());
        assert_eq!(split_misc_path("  ").unwrap(), Vec::<String>::new());
    }
}
