//! Builds `relay/main.rs`, the stdio relay that runs inside stdio
//! containers, as a static executable for the target, with rustc alone (the
//! standard library is its only dependency). The backend embeds it.

// A build script learns everything from cargo's environment.
#![allow(clippy::disallowed_methods)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "relay/main.rs";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("berth-stdio-relay");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("TARGET");
    let status = Command::new(rustc)
        .args([
            source,
            "--crate-name",
            "berth_stdio_relay",
            "--edition",
            "2024",
            "--target",
            &target,
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
            "-D",
            "warnings",
            "-o",
        ])
        .arg(&out)
        .status()
        .expect("running rustc for the stdio relay");
    assert!(
        status.success(),
        "building the stdio relay ({source}) failed; a static build needs the C library's static archive (Debian: libc6-dev)"
    );
}
