//! berth: runs MCP servers on Docker, Podman or native processes, fronts each
//! with an MCP proxy, and manages them through a ToolHive-compatible REST API.
//!
//! The binary (`main.rs`) loads the configuration; [`app`] wires these
//! modules into one `App`: [`api`] (the REST API) → [`workloads`] and
//! [`groups`] (the rules) → [`state`] (durable files) and the
//! [`runtimes`]; [`proxy`] fronts every workload; [`egress`] runs the
//! outbound proxies of workloads with an allowlist.

pub mod api;
pub mod app;
pub mod auth;
pub mod clients;
pub mod config;
pub mod egress;
pub mod groups;
pub mod listener;
pub mod logging;
mod net;
pub mod plugins;
pub mod proxy;
pub mod registry;
pub mod runtimes;
pub mod secrets;
pub mod state;
pub mod telemetry;
mod tls;
pub mod workloads;
