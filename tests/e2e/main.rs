//! End-to-end tests: the `berth` binary with the native process backend,
//! driven over real sockets. Run with `--features e2e`.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod client_config;
mod clients;
#[cfg(any(feature = "docker-tests", feature = "podman-tests"))]
mod confinement;
#[cfg(any(feature = "docker-tests", feature = "podman-tests"))]
mod containers;
#[cfg(any(feature = "docker-tests", feature = "podman-tests"))]
mod engine_restart;
#[cfg(any(feature = "docker-tests", feature = "podman-tests"))]
mod packages;
mod plugins;
mod proxy;
mod real_clients;
mod secrets;
mod security;
mod serve;
mod telemetry;
mod upgrade;
