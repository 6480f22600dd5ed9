//! Integration tests: the API router over the fake backend, without sockets.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod bodies;
mod clients;
mod openapi;
mod plugins;
mod registry;
mod registry_login;
mod registry_sources;
mod remote;
mod remote_secrets;
mod runtimes;
mod secrets;
mod secrets_vault;
mod upgrade;
