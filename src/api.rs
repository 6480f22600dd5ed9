//! The REST API: axum routers that translate HTTP to service calls.
//!
//! Only this module knows HTTP. Handlers hold no business rules; the one
//! place that picks status codes is [`error`].

mod clients;
pub mod error;
mod groups;
mod json;
mod openapi;
mod plugins;
mod registry;
mod secrets;
mod system;
mod workloads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{ApiToken, BrowserGuard};
use error::ApiError;

pub use openapi::ApiDoc;

/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler can reach: the whole berth (see [`crate::app`]).
pub type AppState = Arc<crate::app::App>;

/// Who may call the API.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Refuses what a web page could send; `None` on a Unix socket, which
    /// no browser can reach.
    pub guard: Option<Arc<BrowserGuard>>,
    /// The bearer token every route but `/health` requires, if any.
    pub token: Option<ApiToken>,
    /// The validator of the access tokens every route but `/health`
    /// requires (`[api] auth = "oidc"`), if any.
    pub oidc: Option<crate::auth::oidc::Validator>,
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    Router::new()
        .merge(system::routes())
        .nest("/api/v1beta/workloads", workloads::routes())
        .nest("/api/v1beta/groups", groups::routes())
        .nest("/api/v1beta/x/berth/plugins", plugins::routes())
        .nest(
            "/api/v1beta/x/berth/workloads",
            workloads::extension_routes(),
        )
        .nest("/api/v1beta/registry", registry::routes())
        .nest("/api/v1beta/secrets", secrets::routes())
        .nest("/api/v1beta/clients", clients::routes())
        .nest("/api/v1beta/discovery", clients::discovery_routes())
        .nest("/registry", registry::v01_routes())
        .nest(
            "/api/v1beta/x/berth/registries",
            registry::official_routes(),
        )
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Before any handler, routing included: a refused request changes
        // nothing and learns nothing.
        .layer(axum::middleware::from_fn_with_state(access, check_access))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http())
        // Outermost: no trace line at any level shows these values.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// `/metrics` alone, for the separate listener of `[metrics] listen`:
/// behind the API's checks (browser guard, token or access token), or
/// without any when `public`.
pub fn metrics_router(state: AppState, public: bool) -> Router {
    let access = state.access.clone();
    let router = Router::new()
        .route("/metrics", axum::routing::get(system::metrics))
        .with_state(state);
    let router = if public {
        router
    } else {
        router.layer(axum::middleware::from_fn_with_state(access, check_access))
    };
    router
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// `/metrics` of `berth bridge` (`[metrics] listen`): what `scrape` reads
/// at each request, behind `guard` (no web page reads it; the bridge has no
/// token).
pub fn bridge_metrics_router<F>(scrape: F, guard: BrowserGuard) -> Router
where
    F: Fn() -> crate::telemetry::Scrape + Clone + Send + Sync + 'static,
{
    let access = Access {
        guard: Some(Arc::new(guard)),
        token: None,
        oidc: None,
    };
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let scrape = scrape.clone();
                async move { system::render(scrape(), &headers) }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(access, check_access))
}

/// The browser guard, then the token, then the declared body length.
/// Checks an API request's access token (`[api] auth = "oidc"`).
async fn check_oidc(
    validator: &crate::auth::oidc::Validator,
    authorization: Option<String>,
) -> Result<(), Response> {
    use crate::auth::oidc::AuthnError;
    let refuse = |error: &str, why: &str| {
        let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
        let challenge = format!(
            "Bearer realm=\"berth\", error=\"{error}\", error_description=\"{}\"",
            why.chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                .collect::<String>()
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    };
    let token = authorization.as_deref().and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    });
    let Some(token) = token else {
        return Err(refuse(
            "invalid_request",
            "an access token is required: `Authorization: Bearer <token>`",
        ));
    };
    match validator.validate(token).await {
        Ok(identity) => {
            tracing::debug!(subject = %crate::logging::escape_controls(&identity.subject), "API caller authenticated.");
            Ok(())
        }
        Err(AuthnError::Invalid(why)) => {
            tracing::info!(reason = %why, "Refused an API request with an unacceptable access token.");
            Err(refuse("invalid_token", &why))
        }
        Err(AuthnError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "Cannot check API access tokens: the issuer's keys are unavailable; requests are refused with 503 until they are.");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the access token cannot be checked now: the issuer's keys are unavailable",
            )
            .into_response())
        }
    }
}

async fn check_access(State(access): State<Access>, req: Request, next: Next) -> Response {
    if let Some(guard) = &access.guard
        && let Err(why) = guard.check(req.headers())
    {
        tracing::warn!(reason = %why, path = ?req.uri().path(), "Refused a request a web page could have sent.");
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    if let Some(token) = &access.token
        && req.uri().path() != "/health"
    {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| token.verify(v.as_bytes()));
        if !ok {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid API token is required: `Authorization: Bearer <token>`",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth\""),
            );
            return resp;
        }
    }
    if let Some(validator) = &access.oidc
        && req.uri().path() != "/health"
    {
        // One header, owned: the request is not held across the check.
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let authorization = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().map(str::to_owned),
            _ => None,
        };
        if let Err(resp) = check_oidc(validator, authorization).await {
            return resp;
        }
    }
    // A declared length past the limit is refused before any of the body
    // is read (the body limit would otherwise wait for the bytes).
    if crate::listener::declares_more_than(req.headers(), MAX_BODY_BYTES) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}
