//! Reading rules back and the two wrapper scripts: config_stream.c
//! `config_stream_read` (how `ipvsadm -R` splits standard input into argvs), and the
//! `ipvsadm-save`/`ipvsadm-restore` shell scripts (their argument handling, help text
//! and input filtering), plus which of the three a binary is by its name.

use crate::clib::c_str;
use crate::Output;

/// config_stream.c `MAX_LINE_LENGTH`: the longest token fscanf reads at once.
const MAX_TOKEN: usize = 4096;

fn is_sep(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// One `config_stream_read` call at `*pos`: `None` ends the stream.
fn read_line(b: &[u8], pos: &mut usize, program: &str) -> Option<Vec<String>> {
    let mut args = vec![program.to_string()];
    let mut ntoken = 0;
    loop {
        if *pos >= b.len() {
            // fscanf hit end of input before a token.
            return (ntoken > 0).then_some(args);
        }
        if is_sep(b[*pos]) {
            // The token conversion fails; blanks are eaten one by one.
            loop {
                let Some(&c) = b.get(*pos) else {
                    // End of input inside blanks: the partial line is dropped.
                    return None;
                };
                *pos += 1;
                match c {
                    b'\n' => return Some(args),
                    b' ' | b'\t' | b'\r' => {}
                    _ => {
                        *pos -= 1;
                        break;
                    }
                }
            }
            continue;
        }
        let start = *pos;
        while *pos < b.len() && !is_sep(b[*pos]) && *pos - start < MAX_TOKEN {
            *pos += 1;
        }
        let token = c_str(&b[start..*pos]);
        let tail = match b.get(*pos) {
            Some(&c) if is_sep(c) => {
                *pos += 1;
                Some(c)
            }
            _ => None,
        };
        // The word "ipvsadm" is dropped wherever it stands. ('#' is not special
        // here: the comment test looks at the separator, which is never '#'.)
        if token != b"ipvsadm" {
            ntoken += 1;
            args.push(String::from_utf8_lossy(token).into_owned());
        }
        if tail == Some(b'\n') {
            return Some(args);
        }
    }
}

/// How `ipvsadm -R` reads standard input (config.stream.c `config_stream_read`,
/// driven by ipvsadm.c `restore_table`): words separated by blanks, tabs and CRs, one
/// argv per line, `program` as `argv[0]` and the word `ipvsadm` dropped wherever it
/// appears. Returns the argvs restore_table runs (those with at least one word) with
/// their 1-based line numbers. Quirks kept: `#` starts no comment (the
/// ipvsadm-restore script filters `#` lines itself); a last line that ends in
/// blanks without a newline is lost; words longer than 4096 bytes are split.
pub fn restore_lines(program: &str, input: &str) -> Vec<(usize, Vec<String>)> {
    let b = input.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    let mut line = 1;
    loop {
        let start = pos;
        let result = read_line(b, &mut pos, program);
        let this_line = line;
        line += b[start..pos].iter().filter(|c| **c == b'\n').count();
        match result {
            Some(argv) => {
                if argv.len() > 1 {
                    out.push((this_line, argv));
                }
            }
            None => return out,
        }
    }
}

/// What the `ipvsadm-restore` script feeds `ipvsadm -R` (after running `ipvsadm -C`):
/// `INPUT="$(grep -v '^#')"; echo "$INPUT"`: lines starting with `#` removed,
/// trailing newlines removed, one newline added. (bash also drops NUL bytes there.)
pub fn restore_script_input(input: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let body = input.strip_suffix('\n').unwrap_or(input);
    if !input.is_empty() {
        for line in body.split('\n') {
            if !line.starts_with('#') {
                kept.push(line);
            }
        }
    }
    let mut s: String = kept.join("\n").chars().filter(|c| *c != '\0').collect();
    while s.ends_with('\n') {
        s.pop();
    }
    s.push('\n');
    s
}

/// Which program a binary is, by the basename it was invoked as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    /// Anything else: ipvsadm itself.
    Ipvsadm,
    /// `ipvsadm-save`: the script that runs `ipvsadm -S [-n]`.
    Save,
    /// `ipvsadm-restore`: the script that runs `ipvsadm -C`, then `ipvsadm -R` on
    /// [`restore_script_input`] (both with `argv[0]` = `ipvsadm`). It ignores its
    /// arguments and exits with `ipvsadm -R`'s status.
    Restore,
}

/// The shell's `basename`.
fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" };
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// [`Personality`] from `argv[0]`.
pub fn personality(argv0: &str) -> Personality {
    match basename(argv0) {
        "ipvsadm-save" => Personality::Save,
        "ipvsadm-restore" => Personality::Restore,
        _ => Personality::Ipvsadm,
    }
}

/// The `ipvsadm-save` script's arguments: `Ok(numeric)` (`-n` anywhere; words not
/// starting with `-` are ignored), or, for any other `-` word, its help on stderr
/// with exit status 1. The script then runs `ipvsadm -S [-n]` (`argv[0]` =
/// `ipvsadm`) and exits with its status.
pub fn save_script_args(argv: &[String]) -> Result<bool, Output> {
    let mut numeric = false;
    for arg in argv.iter().skip(1) {
        if arg == "-n" {
            numeric = true;
        } else if arg.starts_with('-') {
            // `echo \`basename $0\`: ...`: the unquoted name is split into words.
            let name: Vec<&str> = argv
                .first()
                .map(|a| basename(a))
                .unwrap_or("")
                .split_ascii_whitespace()
                .collect();
            let text = format!(
                "{}: Script to save the IPVS table to stdout.\n   With the -n option, prints out the table in numeric format.\n",
                name.join(" ")
            );
            return Err(Output::stderr(text, 1));
        }
    }
    Ok(numeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn lines_words_and_the_ipvsadm_word() {
        let input =
            "-A -t 10.0.0.1:80 -s rr\n\n  ipvsadm  -a\t-t 10.0.0.1:80 -r 10.0.0.2 \r\nipvsadm\n-C";
        let got = restore_lines("./ipvsadm", input);
        assert_eq!(
            got,
            vec![
                (
                    1,
                    argv(&["./ipvsadm", "-A", "-t", "10.0.0.1:80", "-s", "rr"])
                ),
                (
                    3,
                    argv(&["./ipvsadm", "-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2"])
                ),
                (5, argv(&["./ipvsadm", "-C"])),
            ]
        );
    }

    #[test]
    fn hash_is_an_ordinary_word() {
        let got = restore_lines("ipvsadm", "-C # flush\n# note\n");
        assert_eq!(
            got,
            vec![
                (1, argv(&["ipvsadm", "-C", "#", "flush"])),
                (2, argv(&["ipvsadm", "#", "note"])),
            ]
        );
    }

    #[test]
    fn a_last_line_ending_in_blanks_is_lost() {
        assert_eq!(restore_lines("ipvsadm", "-C \n-Z  ").len(), 1);
        assert_eq!(restore_lines("ipvsadm", "-C \n-Z ").len(), 2);
        assert_eq!(restore_lines("ipvsadm", "-C \n-Z").len(), 2);
        // Everything after the lost line is gone too (there is nothing after it).
        assert!(restore_lines("ipvsadm", "  ").is_empty());
        assert!(restore_lines("ipvsadm", "").is_empty());
    }

    #[test]
    fn long_words_split_and_nul_ends_a_word() {
        let long = "x".repeat(4100);
        let got = restore_lines("p", &format!("-A {long}\n"));
        assert_eq!(got[0].1.len(), 4);
        assert_eq!(got[0].1[2].len(), 4096);
        assert_eq!(got[0].1[3].len(), 4);
        let got = restore_lines("p", "-A a\0b\n");
        assert_eq!(got[0].1, argv(&["p", "-A", "a"]));
    }

    #[test]
    fn restore_script_filters_comments() {
        assert_eq!(restore_script_input("# x\n-C\n#y\n-A\n\n\n"), "-C\n-A\n");
        assert_eq!(restore_script_input(""), "\n");
        assert_eq!(restore_script_input("-C"), "-C\n");
        assert_eq!(
            restore_script_input(" # not a comment\n"),
            " # not a comment\n"
        );
    }

    #[test]
    fn personalities() {
        assert_eq!(personality("/usr/sbin/ipvsadm-save"), Personality::Save);
        assert_eq!(personality("ipvsadm-restore"), Personality::Restore);
        assert_eq!(personality("ipvsadm"), Personality::Ipvsadm);
        assert_eq!(personality("rvsadm"), Personality::Ipvsadm);
        assert_eq!(personality("./ipvsadm-save/"), Personality::Save);
    }

    #[test]
    fn save_script() {
        assert_eq!(save_script_args(&argv(&["ipvsadm-save"])), Ok(false));
        assert_eq!(
            save_script_args(&argv(&["ipvsadm-save", "x", "-n", "-n"])),
            Ok(true)
        );
        let e = save_script_args(&argv(&["/sbin/ipvsadm-save", "-n", "-x"])).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.stdout, "");
        assert_eq!(
            e.stderr,
            "ipvsadm-save: Script to save the IPVS table to stdout.\n   With the -n option, prints out the table in numeric format.\n"
        );
        assert!(save_script_args(&argv(&["ipvsadm-save", "-"])).is_err());
        assert!(save_script_args(&argv(&["ipvsadm-save", "--"])).is_err());
    }
}
