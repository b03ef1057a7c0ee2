//! ipvsadm argv parsing and restore tokenizing never panic: the input is split at
//! NUL bytes into an argv (argv[0] = "ipvsadm"), parsed as a command line and as a
//! restore line, and also fed whole to the restore tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_ipvsadm::{parse_args, restore_lines, NoResolver};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut argv = vec!["ipvsadm".to_string()];
    argv.extend(text.split('\0').map(str::to_string));
    let _ = parse_args(&argv, false, &NoResolver);
    let _ = parse_args(&argv, true, &NoResolver);
    for (_, line) in restore_lines("ipvsadm", &text) {
        let _ = parse_args(&line, true, &NoResolver);
    }
});
