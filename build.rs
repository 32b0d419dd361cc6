//! Builds `bpf/steer.bpf.c` and `bpf/impair.bpf.c` into libbpf-rs skeletons
//! at compile time; nothing prebuilt is checked in.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/steer.bpf.c";
const IMPAIR_SRC: &str = "bpf/impair.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch_include = format!("-I/usr/include/{}-linux-gnu", env::consts::ARCH);
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([arch_include.as_str(), "-Ibpf", "-Wall", "-O2"])
        .build_and_generate(out.join("steer.skel.rs"))
        .expect("building bpf/steer.bpf.c (needs clang; run scripts/install-deps.sh)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=bpf/steer.h");

    // The impairment program for the veth tests (src/xdp/impair.rs).
    SkeletonBuilder::new()
        .source(IMPAIR_SRC)
        .clang_args([arch_include.as_str(), "-Ibpf", "-Wall", "-O2"])
        .build_and_generate(out.join("impair.skel.rs"))
        .expect("building bpf/impair.bpf.c (needs clang; run scripts/install-deps.sh)");
    println!("cargo:rerun-if-changed={IMPAIR_SRC}");
    println!("cargo:rerun-if-changed=bpf/impair.h");
}
