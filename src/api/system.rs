//! `/health`, `/api/v1beta/version`, `/api/openapi.json` and `/api/doc`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::ApiError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1beta/version", get(version))
        .route("/api/v1beta/x/berth/runtimes", get(list_runtimes))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/doc", get(doc))
}

/// `GET /api/v1beta/version` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::versionResponse)]
pub(super) struct VersionResponse {
    /// berth's version.
    pub(super) version: String,
    /// The active runtime (berth extension).
    pub(super) runtime: String,
    /// The active runtime's version (berth extension).
    pub(super) runtime_version: String,
    /// Every runtime this berth runs workloads on, the default first
    /// (berth extension).
    pub(super) runtimes: Vec<RuntimeInfo>,
}

/// A runtime and whether it answers (berth extension).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = berth::RuntimeInfo)]
pub(super) struct RuntimeInfo {
    /// `docker`, `podman` or `process`.
    pub(super) name: String,
    /// Whether workloads that name no runtime run here.
    pub(super) default: bool,
    /// Whether it answers now.
    pub(super) healthy: bool,
    /// Its version (engine version, kernel release) when it answers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) version: String,
    /// Why it does not answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) error: String,
}

impl From<crate::runtimes::RuntimeStatus> for RuntimeInfo {
    fn from(s: crate::runtimes::RuntimeStatus) -> Self {
        Self {
            name: s.name,
            default: s.default,
            healthy: s.healthy,
            version: s.version,
            error: s.error,
        }
    }
}

/// `GET /api/v1beta/x/berth/runtimes` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = berth::RuntimeListResponse)]
pub(super) struct RuntimeListResponse {
    /// Every runtime, the default first.
    pub(super) runtimes: Vec<RuntimeInfo>,
}

/// The runtimes this berth runs workloads on and whether each answers
/// (berth extension). A workload names one in its `runtime` field.
#[utoipa::path(get, path = "/api/v1beta/x/berth/runtimes", tag = "runtimes",
    responses((status = 200, description = "OK", body = RuntimeListResponse)))]
pub(super) async fn list_runtimes(State(state): State<AppState>) -> Json<RuntimeListResponse> {
    Json(RuntimeListResponse {
        runtimes: state
            .runtimes
            .status()
            .await
            .into_iter()
            .map(RuntimeInfo::from)
            .collect(),
    })
}

/// Health check: 204 when the runtime answers, 503 with the reason otherwise.
#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 204, description = "No Content"), (status = 503, description = "Runtime unavailable", body = String)))]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    match state.runtimes.default().health().await {
        Ok(_) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&state.nonce) {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-berth-nonce"), v);
            }
            resp
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// berth's version and the active runtime.
#[utoipa::path(get, path = "/api/v1beta/version", tag = "version",
    responses((status = 200, description = "OK", body = VersionResponse)))]
pub(super) async fn version(State(state): State<AppState>) -> Json<VersionResponse> {
    let runtimes = state.runtimes.status().await;
    let default = runtimes.iter().find(|r| r.default);
    Json(VersionResponse {
        version: format!("v{}", env!("CARGO_PKG_VERSION")),
        runtime: default.map(|r| r.name.clone()).unwrap_or_default(),
        runtime_version: match default {
            Some(r) if r.healthy => r.version.clone(),
            _ => "unavailable".to_owned(),
        },
        runtimes: runtimes.into_iter().map(RuntimeInfo::from).collect(),
    })
}

/// berth's OpenAPI 3.1 document, generated from its code.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI specification", body = Object)))]
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}

/// A self-contained HTML reference of the API (works offline).
#[utoipa::path(get, path = "/api/doc", tag = "system",
    responses((status = 200, description = "HTML API reference", content_type = "text/html")))]
pub(super) async fn doc() -> Html<String> {
    Html(super::openapi::render_html(&super::ApiDoc::openapi()))
}

/// Prometheus metrics: every workload's proxy traffic (requests by method
/// and outcome, latency by method and by listed tool, refusals, sessions),
/// status, restarts and — native workloads — the memory and CPU of their
/// whole process tree; plugin calls, traps and latency; berth's own
/// process; the trace exporter. The Prometheus text format, or OpenMetrics
/// when the scraper asks for it (`Accept: application/openmetrics-text`).
/// Behind the API's authentication when it has one.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are off (`[metrics] enabled = false`)", body = String)))]
pub(super) async fn metrics(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if s.telemetry.metrics.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are off: `[metrics] enabled = false` in berth's configuration",
        ));
    }
    Ok(render(s.scrape().await, &headers))
}

/// `scrape` in the format the scraper asks for: OpenMetrics when its
/// `Accept` names it, else the Prometheus text format.
pub(super) fn render(
    scrape: crate::telemetry::Scrape,
    headers: &axum::http::HeaderMap,
) -> Response {
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = scrape.encode(openmetrics);
    let content_type = if openmetrics {
        crate::telemetry::expose::OPENMETRICS_TEXT
    } else {
        crate::telemetry::expose::PROMETHEUS_TEXT
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}
