//! Who may talk to berth: the browser guard shared by the management API
//! and every proxy, the management API's bearer token, the validation of
//! OIDC access tokens (proxies and the API as OAuth resource servers),
//! Cedar authorization (`cedar`), and what callers did: the audit events
//! of MCP requests (`audit`).
//!
//! The guard answers "could a web page have sent this?" from the request's
//! headers alone; the token and the OIDC validator answer "is this caller
//! allowed in, and who is it?". None of them answers HTTP (the OIDC
//! validator only fetches its issuer's keys): the axum layers that turn a
//! refusal into a response live with their routers (`src/api.rs`,
//! `src/proxy.rs`).

pub mod audit;
pub mod browser;
pub mod cedar;
pub mod identity;
pub mod oidc;
pub mod token;

pub use browser::{BrowserGuard, GuardError, WebOrigin};
pub use identity::Identity;
pub use oidc::{AuthnError, OidcConfigError, OidcSettings, Validator};
pub use token::{ApiAuth, ApiToken, TokenError, TokenSource};

/// JSON-RPC error code of a request berth refused on a caller's behalf (a
/// middleware's denial, an authorization policy's).
pub const DENIED: i64 = -32003;
