//! Who may talk to berth: the browser guard shared by the management API
//! and every proxy, the management API's bearer token, and the Cedar
//! policies that decide which MCP operations a proxy's caller may perform.
//!
//! The guard answers "could a web page have sent this?" from the request's
//! headers alone; the token answers "is this caller allowed to drive the
//! API?". Both are pure checks: the axum layers that turn a refusal into a
//! response live with their routers (`src/api.rs`, `src/proxy.rs`).

pub mod browser;
pub mod cedar;
pub mod token;

pub use browser::{BrowserGuard, GuardError, WebOrigin};
pub use token::{ApiAuth, ApiToken, TokenError, TokenSource};
