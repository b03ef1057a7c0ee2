//! The part of popt 1.19's `poptGetNextOpt`/`poptGetArg`/`poptBadOption` that
//! ipvsadm's option table exercises, and that table itself. This module owns how an
//! argv becomes a stream of (option, argument) pairs plus leftovers: short clusters,
//! `--long=value`, optional arguments, `--`, and the errors popt reports.
//!
//! Facts carried over from popt 1.19 (popt.c):
//! * an argv element that does not start with `-`, or is exactly `-`, or follows
//!   `--`, is a leftover, wherever it stands;
//! * `--name[=value]` must match a long name exactly (no abbreviations);
//! * `-xyz` is a cluster of short options (ipvsadm has no single-dash long names); an
//!   option taking an argument takes the rest of the cluster (one leading `=`
//!   skipped), else the next argv element whatever it looks like; an optional
//!   argument (`-p`) takes the next element only if it does not start with `-`;
//! * `=value` given to an option without argument is `POPT_ERROR_UNWANTEDARG`;
//! * an argument containing `!#:+` has that sequence replaced by the next argv
//!   element not starting with `-`, which is then skipped as an option or leftover
//!   (popt's `expandNextArg`/`findNextArg`);
//! * `poptBadOption` names the argv element before the scan position.

/// How an option takes its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgKind {
    None,
    Required,
    Optional,
}

pub(crate) struct OptDef {
    pub long: &'static str,
    pub short: u8,
    pub kind: ArgKind,
    pub val: i32,
}

// The `val`s ipvsadm gives its long-only options (an enum starting at 128).
pub(crate) const TAG_SET: i32 = 128;
pub(crate) const TAG_START_DAEMON: i32 = 129;
pub(crate) const TAG_STOP_DAEMON: i32 = 130;
pub(crate) const TAG_MCAST_INTERFACE: i32 = 131;
pub(crate) const TAG_TIMEOUT: i32 = 132;
pub(crate) const TAG_DAEMON: i32 = 133;
pub(crate) const TAG_STATS: i32 = 134;
pub(crate) const TAG_RATE: i32 = 135;
pub(crate) const TAG_THRESHOLDS: i32 = 136;
pub(crate) const TAG_PERSISTENTCONN: i32 = 137;
pub(crate) const TAG_SORT: i32 = 138;
pub(crate) const TAG_NO_SORT: i32 = 139;
pub(crate) const TAG_PERSISTENCE_ENGINE: i32 = 140;
pub(crate) const TAG_SCTP_SERVICE: i32 = 141;
pub(crate) const TAG_MCAST_GROUP: i32 = 142;
pub(crate) const TAG_MCAST_PORT: i32 = 143;
pub(crate) const TAG_MCAST_TTL: i32 = 144;
pub(crate) const TAG_SYNC_MAXLEN: i32 = 145;
pub(crate) const TAG_TUN_INFO: i32 = 146;
pub(crate) const TAG_TUN_TYPE: i32 = 147;
pub(crate) const TAG_TUN_PORT: i32 = 148;
pub(crate) const TAG_TUN_NOCSUM: i32 = 149;
pub(crate) const TAG_TUN_CSUM: i32 = 150;
pub(crate) const TAG_TUN_REMCSUM: i32 = 151;
/// rvs extension (not in ipvsadm): `--fullnat`, source and destination NAT.
pub(crate) const TAG_FULLNAT: i32 = 160;

const fn o(long: &'static str, short: u8, kind: ArgKind, val: i32) -> OptDef {
    OptDef {
        long,
        short,
        kind,
        val,
    }
}

const N: ArgKind = ArgKind::None;
const S: ArgKind = ArgKind::Required;

/// ipvsadm.c `parse_options`' option table, in its order (popt takes the first match,
/// so `--list` is `-L`, not `-l`).
pub(crate) static OPTIONS: &[OptDef] = &[
    o("add-service", b'A', N, b'A' as i32),
    o("edit-service", b'E', N, b'E' as i32),
    o("delete-service", b'D', N, b'D' as i32),
    o("clear", b'C', N, b'C' as i32),
    o("list", b'L', N, b'L' as i32),
    o("list", b'l', N, b'l' as i32),
    o("zero", b'Z', N, b'Z' as i32),
    o("add-server", b'a', N, b'a' as i32),
    o("edit-server", b'e', N, b'e' as i32),
    o("delete-server", b'd', N, b'd' as i32),
    o("set", 0, N, TAG_SET),
    o("help", b'h', N, b'h' as i32),
    o("version", b'v', N, b'v' as i32),
    o("restore", b'R', N, b'R' as i32),
    o("save", b'S', N, b'S' as i32),
    o("start-daemon", 0, S, TAG_START_DAEMON),
    o("stop-daemon", 0, S, TAG_STOP_DAEMON),
    o("tcp-service", b't', S, b't' as i32),
    o("udp-service", b'u', S, b'u' as i32),
    o("sctp-service", 0, S, TAG_SCTP_SERVICE),
    o("fwmark-service", b'f', S, b'f' as i32),
    o("scheduler", b's', S, b's' as i32),
    o("persistent", b'p', ArgKind::Optional, b'p' as i32),
    o("netmask", b'M', S, b'M' as i32),
    o("real-server", b'r', S, b'r' as i32),
    o("masquerading", b'm', N, b'm' as i32),
    o("ipip", b'i', N, b'i' as i32),
    o("gatewaying", b'g', N, b'g' as i32),
    o("fullnat", 0, N, TAG_FULLNAT),
    o("weight", b'w', S, b'w' as i32),
    o("u-threshold", b'x', S, b'x' as i32),
    o("l-threshold", b'y', S, b'y' as i32),
    o("numeric", b'n', N, b'n' as i32),
    o("connection", b'c', N, b'c' as i32),
    o("mcast-interface", 0, S, TAG_MCAST_INTERFACE),
    o("syncid", 0, S, b'I' as i32),
    o("timeout", 0, N, TAG_TIMEOUT),
    o("daemon", 0, N, TAG_DAEMON),
    o("stats", 0, N, TAG_STATS),
    o("rate", 0, N, TAG_RATE),
    o("thresholds", 0, N, TAG_THRESHOLDS),
    o("persistent-conn", 0, N, TAG_PERSISTENTCONN),
    o("nosort", 0, N, TAG_NO_SORT),
    o("sort", 0, N, TAG_SORT),
    o("exact", b'X', N, b'X' as i32),
    o("ipv6", b'6', N, b'6' as i32),
    o("ops", b'o', N, b'o' as i32),
    o("pe", 0, S, TAG_PERSISTENCE_ENGINE),
    o("sched-flags", b'b', S, b'b' as i32),
    o("mcast-group", 0, S, TAG_MCAST_GROUP),
    o("mcast-port", 0, S, TAG_MCAST_PORT),
    o("mcast-ttl", 0, S, TAG_MCAST_TTL),
    o("sync-maxlen", 0, S, TAG_SYNC_MAXLEN),
    o("tun-info", 0, N, TAG_TUN_INFO),
    o("tun-type", 0, S, TAG_TUN_TYPE),
    o("tun-port", 0, S, TAG_TUN_PORT),
    o("tun-nocsum", 0, N, TAG_TUN_NOCSUM),
    o("tun-csum", 0, N, TAG_TUN_CSUM),
    o("tun-remcsum", 0, N, TAG_TUN_REMCSUM),
];

/// A popt error code, with `poptStrerror`'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoptError {
    /// `POPT_ERROR_NOARG`
    NoArg,
    /// `POPT_ERROR_BADOPT`
    BadOpt,
    /// `POPT_ERROR_UNWANTEDARG`
    UnwantedArg,
}

impl PoptError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            PoptError::NoArg => "missing argument",
            PoptError::BadOpt => "unknown option",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// One step of `poptGetNextOpt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// An option's `val` and its argument (`None` for no argument, or an optional
    /// argument not given).
    Opt {
        val: i32,
        arg: Option<Vec<u8>>,
    },
    /// -1: no more options.
    End,
    Err(PoptError),
    /// `!#:+` with no argument left to substitute while argv elements remain: popt
    /// 1.19's `findNextArg` loops forever there.
    Hang,
}

/// The scan state of a popt context over one argv.
pub(crate) struct Popt {
    argv: Vec<Vec<u8>>,
    next: usize,
    /// Rest of a short-option cluster: (argv index, byte offset).
    next_char: Option<(usize, usize)>,
    rest_leftover: bool,
    posix: bool,
    leftovers: Vec<Vec<u8>>,
    next_leftover: usize,
    /// Elements taken by `!#:+` (popt's `argb`).
    taken: Vec<bool>,
}

impl Popt {
    /// A context over `argv` (element 0, the program, is skipped). `posixly_correct`:
    /// `POSIXLY_CORRECT` or `POSIX_ME_HARDER` is set, so the first leftover ends the
    /// options.
    pub(crate) fn new(argv: Vec<Vec<u8>>, posixly_correct: bool) -> Self {
        let n = argv.len();
        Popt {
            argv,
            next: 1,
            next_char: None,
            rest_leftover: false,
            posix: posixly_correct,
            leftovers: Vec::new(),
            next_leftover: 0,
            taken: vec![false; n],
        }
    }

    fn argc(&self) -> usize {
        self.argv.len()
    }

    /// `poptGetArg`: the next leftover.
    pub(crate) fn get_arg(&mut self) -> Option<Vec<u8>> {
        let a = self.leftovers.get(self.next_leftover).cloned();
        if a.is_some() {
            self.next_leftover += 1;
        }
        a
    }

    /// `poptBadOption(con, POPT_BADOPTION_NOALIAS)`.
    pub(crate) fn bad_option(&self) -> Vec<u8> {
        self.next
            .checked_sub(1)
            .and_then(|i| self.argv.get(i))
            .cloned()
            .unwrap_or_default()
    }

    /// `poptGetNextOpt`.
    pub(crate) fn next_opt(&mut self) -> Next {
        loop {
            if self.next_char.is_none() && self.next >= self.argc() {
                return Next::End;
            }
            let mut opt: Option<&'static OptDef> = None;
            let mut long_arg: Option<Vec<u8>> = None;
            if self.next_char.is_none() {
                let idx = self.next;
                if self.taken[idx] {
                    self.next += 1;
                    continue;
                }
                self.next += 1;
                let s = &self.argv[idx];
                if self.rest_leftover || s.first() != Some(&b'-') || s.len() == 1 {
                    if self.posix {
                        self.rest_leftover = true;
                    }
                    self.leftovers.push(s.clone());
                    continue;
                }
                if s.as_slice() == b"--" {
                    self.rest_leftover = true;
                    continue;
                }
                let double = s.get(1) == Some(&b'-');
                let body = if double { &s[2..] } else { &s[1..] };
                let (name, value) = match body.iter().position(|b| *b == b'=') {
                    Some(p) => (&body[..p], Some(body[p + 1..].to_vec())),
                    None => (body, None),
                };
                if double {
                    match OPTIONS.iter().find(|d| d.long.as_bytes() == name) {
                        Some(d) => {
                            opt = Some(d);
                            long_arg = value;
                        }
                        None => return Next::Err(PoptError::BadOpt),
                    }
                } else {
                    // No ipvsadm option is a single-dash long one: read a cluster.
                    self.next_char = Some((idx, 1));
                }
            }
            if let Some((idx, off)) = self.next_char.take() {
                let c = self.argv[idx][off];
                match OPTIONS.iter().find(|d| d.short != 0 && d.short == c) {
                    Some(d) => opt = Some(d),
                    None => return Next::Err(PoptError::BadOpt),
                }
                if off + 1 < self.argv[idx].len() {
                    self.next_char = Some((idx, off + 1));
                }
            }
            let Some(opt) = opt else {
                return Next::Err(PoptError::BadOpt);
            };
            if opt.kind == ArgKind::None {
                let eq_follows = self
                    .next_char
                    .is_some_and(|(i, off)| self.argv[i][off] == b'=');
                if long_arg.is_some() || eq_follows {
                    return Next::Err(PoptError::UnwantedArg);
                }
                return Next::Opt {
                    val: opt.val,
                    arg: None,
                };
            }
            let raw = if let Some(v) = long_arg {
                Some(v)
            } else if let Some((i, off)) = self.next_char.take() {
                let rest = &self.argv[i][off..];
                let rest = rest.strip_prefix(b"=").unwrap_or(rest);
                Some(rest.to_vec())
            } else if self.next >= self.argc() {
                if opt.kind == ArgKind::Required {
                    return Next::Err(PoptError::NoArg);
                }
                None
            } else if opt.kind == ArgKind::Optional && self.argv[self.next].first() == Some(&b'-') {
                None
            } else {
                let a = self.argv[self.next].clone();
                self.next += 1;
                Some(a)
            };
            let arg = match raw {
                Some(r) => match self.expand(&r) {
                    Some(e) => Some(e),
                    None => return Next::Hang,
                },
                None => None,
            };
            return Next::Opt { val: opt.val, arg };
        }
    }

    /// popt `expandNextArg`: `!#:+` becomes the next free non-option argv element
    /// (looked up once, reused for later occurrences). `None`: popt would hang.
    fn expand(&mut self, s: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len());
        let mut found: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            i += 1;
            if c == b'!' && s[i..].starts_with(b"#:+") {
                if found.is_none() {
                    found = self.find_next_arg()?;
                }
                if let Some(a) = &found {
                    out.extend_from_slice(a);
                    i += 3;
                    continue;
                }
            }
            out.push(c);
        }
        Some(out)
    }

    /// popt `findNextArg(con, 1, 1)`: `Some(None)` when no element is left at all,
    /// `None` when elements remain but none qualifies (popt spins forever there).
    fn find_next_arg(&mut self) -> Option<Option<Vec<u8>>> {
        if self.next >= self.argc() {
            return Some(None);
        }
        for i in self.next..self.argc() {
            if self.taken[i] || self.argv[i].first() == Some(&b'-') {
                continue;
            }
            self.taken[i] = true;
            return Some(Some(self.argv[i].clone()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(args: &[&str]) -> Popt {
        let mut v = vec![b"ipvsadm".to_vec()];
        v.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        Popt::new(v, false)
    }

    fn opt(val: u8, arg: Option<&str>) -> Next {
        Next::Opt {
            val: i32::from(val),
            arg: arg.map(|a| a.as_bytes().to_vec()),
        }
    }

    #[test]
    fn clusters_and_arguments() {
        let mut p = ctx(&["-Lnc"]);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), opt(b'n', None));
        assert_eq!(p.next_opt(), opt(b'c', None));
        assert_eq!(p.next_opt(), Next::End);

        let mut p = ctx(&[
            "-mw",
            "2",
            "-srr",
            "-s=wlc",
            "--weight=3",
            "--scheduler",
            "sh",
        ]);
        assert_eq!(p.next_opt(), opt(b'm', None));
        assert_eq!(p.next_opt(), opt(b'w', Some("2")));
        assert_eq!(p.next_opt(), opt(b's', Some("rr")));
        assert_eq!(p.next_opt(), opt(b's', Some("wlc")));
        assert_eq!(p.next_opt(), opt(b'w', Some("3")));
        assert_eq!(p.next_opt(), opt(b's', Some("sh")));
        assert_eq!(p.next_opt(), Next::End);
    }

    #[test]
    fn required_argument_takes_a_dash_word_optional_does_not() {
        let mut p = ctx(&["-t", "-L", "-p", "-n", "-p", "7", "-p"]);
        assert_eq!(p.next_opt(), opt(b't', Some("-L")));
        assert_eq!(p.next_opt(), opt(b'p', None));
        assert_eq!(p.next_opt(), opt(b'n', None));
        assert_eq!(p.next_opt(), opt(b'p', Some("7")));
        assert_eq!(p.next_opt(), opt(b'p', None));
        assert_eq!(p.next_opt(), Next::End);
    }

    #[test]
    fn leftovers_and_double_dash() {
        let mut p = ctx(&["a", "-L", "-", "b", "--", "-n", "--"]);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), Next::End);
        let left: Vec<_> = std::iter::from_fn(|| p.get_arg()).collect();
        assert_eq!(
            left,
            vec![
                b"a".to_vec(),
                b"-".to_vec(),
                b"b".to_vec(),
                b"-n".to_vec(),
                b"--".to_vec()
            ]
        );
    }

    #[test]
    fn posixly_correct_stops_at_the_first_leftover() {
        let mut v = vec![b"ipvsadm".to_vec(), b"-L".to_vec(), b"x".to_vec()];
        v.push(b"-n".to_vec());
        let mut p = Popt::new(v, true);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), Next::End);
        assert_eq!(p.get_arg(), Some(b"x".to_vec()));
        assert_eq!(p.get_arg(), Some(b"-n".to_vec()));
    }

    #[test]
    fn errors_and_bad_option() {
        let mut p = ctx(&["-Lq"]);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), Next::Err(PoptError::BadOpt));
        assert_eq!(p.bad_option(), b"-Lq".to_vec());

        let mut p = ctx(&["--lis"]);
        assert_eq!(p.next_opt(), Next::Err(PoptError::BadOpt));
        assert_eq!(p.bad_option(), b"--lis".to_vec());

        let mut p = ctx(&["--numeric=1"]);
        assert_eq!(p.next_opt(), Next::Err(PoptError::UnwantedArg));
        let mut p = ctx(&["--numeric="]);
        assert_eq!(p.next_opt(), Next::Err(PoptError::UnwantedArg));
        let mut p = ctx(&["-n="]);
        assert_eq!(p.next_opt(), Next::Err(PoptError::UnwantedArg));
        assert_eq!(p.bad_option(), b"-n=".to_vec());

        let mut p = ctx(&["-L", "-t"]);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), Next::Err(PoptError::NoArg));
        assert_eq!(p.bad_option(), b"-t".to_vec());

        // `--list` is the first table entry with that name: -L.
        let mut p = ctx(&["--list", "--=x", "-list"]);
        assert_eq!(p.next_opt(), opt(b'L', None));
        assert_eq!(p.next_opt(), Next::Err(PoptError::BadOpt));
        // A single-dash word is a cluster: -l -i -s "t".
        assert_eq!(p.next_opt(), opt(b'l', None));
        assert_eq!(p.next_opt(), opt(b'i', None));
        assert_eq!(p.next_opt(), opt(b's', Some("t")));
    }

    #[test]
    fn next_arg_substitution() {
        let mut p = ctx(&["-t", "x!#:+y!#:+", "-s", "rr", "z"]);
        assert_eq!(p.next_opt(), opt(b't', Some("xrryrr")));
        // The taken element is still read as -s's argument (popt does not check
        // there), but never as a leftover.
        assert_eq!(p.next_opt(), opt(b's', Some("rr")));
        assert_eq!(p.next_opt(), Next::End);
        assert_eq!(p.get_arg(), Some(b"z".to_vec()));
        assert_eq!(p.get_arg(), None);

        let mut p = ctx(&["-t", "a!#:+", "b"]);
        assert_eq!(p.next_opt(), opt(b't', Some("ab")));
        assert_eq!(p.next_opt(), Next::End);
        assert_eq!(p.get_arg(), None);

        let mut p = ctx(&["-t", "a!#:+"]);
        assert_eq!(p.next_opt(), opt(b't', Some("a!#:+")));

        let mut p = ctx(&["-t", "a!#:+", "-n"]);
        assert_eq!(p.next_opt(), Next::Hang);
    }
}
