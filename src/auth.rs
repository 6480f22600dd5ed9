//! Who may talk to berth: the browser guard shared by the management API
//! and every proxy, and the management API's bearer token; and what they
//! did: the audit events of MCP requests (`audit`).
//!
//! The guard answers "could a web page have sent this?" from the request's
//! headers alone; the token answers "is this caller allowed to drive the
//! API?". Both are pure checks: the axum layers that turn a refusal into a
//! response live with their routers (`src/api.rs`, `src/proxy.rs`).

pub mod audit;
pub mod browser;
pub mod token;

pub use browser::{BrowserGuard, GuardError, WebOrigin};
pub use token::{ApiAuth, ApiToken, TokenError, TokenSource};
