//! The REST API: axum routers that translate HTTP to service calls.
//!
//! Only this module knows HTTP. Handlers hold no business rules; the one
//! place that picks status codes is [`error`].

pub mod error;
mod groups;
mod json;
mod openapi;
mod plugins;
mod system;
mod workloads;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::workloads::Workloads;

pub use openapi::ApiDoc;

/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The workload service.
    pub workloads: Workloads,
    /// Random per-process nonce sent on `/health`, so that a client can tell
    /// it talks to the server it started.
    pub nonce: Arc<str>,
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .nest("/api/v1beta/workloads", workloads::routes())
        .nest("/api/v1beta/groups", groups::routes())
        .nest("/api/v1beta/x/berth/plugins", plugins::routes())
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http())
}
