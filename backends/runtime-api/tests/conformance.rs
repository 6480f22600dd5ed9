//! The conformance suite run against the in-memory fake backend.

use std::time::Duration;

use berth_runtime_api::conformance::{Fixture, run_all};
use berth_runtime_api::fake::FakeBackend;

#[tokio::test]
async fn fake_backend_conforms() {
    let fx = Fixture {
        prefix: "conf".into(),
        stdio: ("fake://echo".into(), vec![]),
        exits_with_3: ("fake://exit".into(), vec!["3".into()]),
        // The fake runs no programs: it cannot ask a server what it got.
        mcp_echo: None,
        timeout: Duration::from_secs(5),
    };
    run_all(&FakeBackend::new(), &fx).await;
}
