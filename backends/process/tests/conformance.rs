//! The runtime conformance suite run against the process backend.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_backend_process::{ProcessBackend, ProcessConfig};
use berth_runtime_api::conformance::{Fixture, run_all};

// A current-thread runtime on purpose: the suite drops its stdio handle and
// stops right after, and `cat` exits as soon as its stdin closes. With one
// thread the backend's reaper cannot record that exit before the stop has
// marked the instance as stopped by request.
#[tokio::test]
async fn process_backend_conforms() {
    let root = tempfile::tempdir().expect("tempdir");
    let base_env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
    let backend = ProcessBackend::new(ProcessConfig::default(), root.path().to_owned(), base_env)
        .await
        .expect("backend");
    let fx = Fixture {
        prefix: "proc".into(),
        stdio: ("exec:///bin/cat".into(), vec![]),
        exits_with_3: ("exec:///bin/sh".into(), vec!["-c".into(), "exit 3".into()]),
        mcp_echo: Some((mcp_echo(), vec![])),
        timeout: Duration::from_secs(10),
    };
    run_all(&backend, &fx).await;
}

/// berth's test MCP server (`tests/fixtures/mcp-echo`) as an `exec://`
/// image: built here with the profile and target directory of this test
/// (cargo puts a test at `<target dir>/<profile>/deps/<test>`, and the
/// server at `<target dir>/<profile>/mcp-echo`).
fn mcp_echo() -> String {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "berth-test-echo",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building mcp-echo (berth-test-echo) failed"
    );
    let bin = profile_dir.join("mcp-echo");
    assert!(
        bin.is_file(),
        "{} is missing after the build",
        bin.display()
    );
    format!("exec://{}", bin.display())
}
