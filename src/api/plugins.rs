//! `/api/v1beta/x/berth/plugins*`: berth's extension routes for its
//! WebAssembly plugins.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::plugins::{PluginError, PluginInfo};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_plugins))
        .route("/{name}", get(get_plugin))
        .route("/{name}/reload", post(reload_plugin))
}

/// `GET /x/berth/plugins` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct PluginListResponse {
    /// The configured plugins, by name.
    pub(super) plugins: Vec<PluginInfo>,
}

/// List the configured plugins, with their state and call statistics.
#[utoipa::path(get, path = "/api/v1beta/x/berth/plugins", tag = "plugins",
    responses((status = 200, description = "OK", body = PluginListResponse)))]
pub(super) async fn list_plugins(State(s): State<AppState>) -> Json<PluginListResponse> {
    Json(PluginListResponse {
        plugins: s.plugins.as_ref().map(|p| p.list()).unwrap_or_default(),
    })
}

fn not_configured(name: &str) -> ApiError {
    PluginError::NotFound(name.to_owned()).into()
}

/// One plugin.
#[utoipa::path(get, path = "/api/v1beta/x/berth/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, description = "OK", body = PluginInfo),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn get_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    let plugins = s.plugins.as_ref().ok_or_else(|| not_configured(&name))?;
    Ok(Json(plugins.info(&name)?))
}

/// Re-read and recompile a plugin from its file. Calls in flight finish on
/// the old code. A plugin that fails to load is reported with state
/// `failed` and its error (the answer is still 200).
#[utoipa::path(post, path = "/api/v1beta/x/berth/plugins/{name}/reload", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, description = "Reloaded (see `state`)", body = PluginInfo),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn reload_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    let plugins = s.plugins.clone().ok_or_else(|| not_configured(&name))?;
    let info = tokio::task::spawn_blocking(move || plugins.reload(&name))
        .await
        .map_err(|e| ApiError::from(PluginError::Engine(format!("reload failed: {e}"))))??;
    Ok(Json(info))
}
