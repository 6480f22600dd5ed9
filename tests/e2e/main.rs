//! End-to-end tests: the `berth` binary with the native process backend,
//! driven over real sockets. Run with `--features e2e`.

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod proxy;
mod serve;
