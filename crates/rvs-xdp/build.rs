//! Builds the BPF objects (`bpf/rvs_xdp.c`, `bpf/rvs_bench.c`) into OUT_DIR.
//!
//! With `clang-14` on PATH each object is compiled with the project's flags;
//! without it the committed `bpf/prebuilt/<name>.o` (made by
//! `bpf/build-prebuilt.sh` with the same flags) is copied, with a warning, so the
//! crate builds on machines without a BPF toolchain.

use std::env;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const OBJECTS: [&str; 2] = ["rvs_xdp", "rvs_bench"];
const CLANG: &str = "clang-14";

fn clang_available() -> bool {
    Command::new(CLANG)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn compile(bpf_dir: &Path, name: &str, out: &Path) -> Result<(), Box<dyn Error>> {
    // From inside bpf/, with paths in the debug info made relative, so that the
    // object is byte-identical to bpf/prebuilt/ (tests/prebuilt.rs checks it).
    let status = Command::new(CLANG)
        .current_dir(bpf_dir)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={}=.", bpf_dir.display()))
        .arg("-c")
        .arg(format!("{name}.c"))
        .arg("-o")
        .arg(out)
        .status()?;
    if !status.success() {
        return Err(format!("{CLANG} failed on bpf/{name}.c ({status})").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let bpf_dir = manifest.join("bpf");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=PATH");
    let clang = clang_available();
    for name in OBJECTS {
        let out = out_dir.join(format!("{name}.o"));
        if clang {
            compile(&bpf_dir, name, &out)?;
        } else {
            let prebuilt = bpf_dir.join("prebuilt").join(format!("{name}.o"));
            println!(
                "cargo:warning={CLANG} not found: using the prebuilt {}",
                prebuilt.display()
            );
            fs::copy(&prebuilt, &out)
                .map_err(|e| format!("copying {}: {e}", prebuilt.display()))?;
        }
    }
    Ok(())
}
