//! The runtime conformance suite run against the process backend.

use std::collections::BTreeMap;
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
        timeout: Duration::from_secs(10),
    };
    run_all(&backend, &fx).await;
}
