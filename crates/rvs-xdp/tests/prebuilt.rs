//! The committed objects in bpf/prebuilt/ are what the committed sources compile
//! to: with clang-14 present, build.rs compiles bpf/*.c with the flags of
//! bpf/build-prebuilt.sh, and the result must equal the committed object (a
//! machine without clang builds from those objects, so a stale one would run old
//! code there). Without clang-14 build.rs copies the objects and this is trivially
//! true, so the check is only meaningful where clang is installed (CI installs it).

#[test]
fn prebuilt_objects_match_the_sources() {
    let have_clang = std::process::Command::new("clang-14")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_clang {
        eprintln!("SKIP: prebuilt_objects_match_the_sources needs clang-14");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/prebuilt");
    for (name, built) in [
        ("rvs_xdp", rvs_xdp::XDP_OBJECT),
        ("rvs_bench", rvs_xdp::BENCH_OBJECT),
    ] {
        let committed = std::fs::read(format!("{dir}/{name}.o")).unwrap_or_default();
        assert!(
            committed == built,
            "bpf/prebuilt/{name}.o is stale: run crates/rvs-xdp/bpf/build-prebuilt.sh"
        );
    }
}
