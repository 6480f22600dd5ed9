//! Deadline polling, the one wait of the test suites (the backend crates'
//! tests include this file too): no sleeps as waits, no wall-clock
//! assertions.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 25 ms until it returns `Some`, or panics after
/// `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
