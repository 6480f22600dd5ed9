//! `/api/v1beta/workloads*`: workload routes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::json::{ApiJson, OptionalJson};
use crate::secrets::SecretsError;
use crate::workloads::BulkOp;
use crate::workloads::types::{
    BulkOperationRequest, CreateRequest, CreateWorkloadResponse, RunConfig, SecretParameter,
    WorkloadListResponse, WorkloadStatusResponse,
};
use crate::workloads::upgrade::CheckResult;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_workloads).post(create_workload))
        .route("/stop", post(bulk_stop))
        .route("/restart", post(bulk_restart))
        .route("/delete", post(bulk_delete))
        .route("/upgrade-check", get(upgrade_check_all))
        .route("/{name}", get(get_workload).delete(delete_workload))
        .route("/{name}/edit", post(edit_workload))
        .route("/{name}/stop", post(stop_workload))
        .route("/{name}/restart", post(restart_workload))
        .route("/{name}/status", get(workload_status))
        .route("/{name}/logs", get(workload_logs))
        .route("/{name}/proxy-logs", get(workload_proxy_logs))
        .route("/{name}/export", get(export_workload))
        .route("/{name}/upgrade-check", get(upgrade_check))
        .route("/{name}/upgrade", post(upgrade_workload))
}

/// berth's extension routes of one workload (`/api/v1beta/x/berth/workloads`).
pub(super) fn extension_routes() -> Router<AppState> {
    Router::new()
        .route("/{name}/tools/approve", post(approve_tools))
        .route("/{name}/stats", axum::routing::get(workload_stats))
}

/// One workload's numbers (berth extension): status, restarts, open
/// sessions, what its processes use (native workloads), and its proxy's
/// requests by method, outcome and tool with their latency — the values
/// `/metrics` shows, for a UI without Prometheus.
#[utoipa::path(get, path = "/api/v1beta/x/berth/workloads/{name}/stats", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "OK", body = crate::telemetry::WorkloadStats),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn workload_stats(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<crate::telemetry::WorkloadStats>> {
    Ok(Json(s.workload_stats(&name).await?))
}

/// Body of the approve call.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveRequest {
    /// The tools (the server's names) whose current definitions become
    /// the approved ones; every changed tool when absent.
    #[serde(default)]
    tools: Option<Vec<String>>,
}

/// Response of the approve call.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApproveResponse {
    /// The tools approved.
    approved: Vec<String>,
}

/// Approve changed tool definitions (`tool_drift`): they become the
/// baseline, and a tool hidden by `tool_pinning: block` is usable again.
#[utoipa::path(post, path = "/api/v1beta/x/berth/workloads/{name}/tools/approve", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    request_body(content = Option<ApproveRequest>),
    responses((status = 200, description = "Approved", body = ApproveResponse),
        (status = 400, description = "Invalid name, or a tool without a change", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn approve_tools(
    State(s): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(req): OptionalJson<ApproveRequest>,
) -> ApiResult<Json<ApproveResponse>> {
    let approved = s
        .workloads
        .approve_tools(&name, req.tools.as_deref())
        .await?;
    Ok(Json(ApproveResponse { approved }))
}

/// Query of the proxy-logs call.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ProxyLogsQuery {
    /// `true`: the workload's audit log (one JSON line per MCP request)
    /// instead of berth's log of it (berth extension).
    audit: Option<String>,
}

/// Query of the list call.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `true` lists every workload, not only running ones.
    all: Option<String>,
    /// Only workloads of this group.
    group: Option<String>,
}

type ApiResult<T> = Result<T, ApiError>;

fn text(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// List workloads, by name.
#[utoipa::path(get, path = "/api/v1beta/workloads", tag = "workloads", params(ListQuery),
    responses((status = 200, description = "OK", body = WorkloadListResponse),
        (status = 400, description = "Invalid group name", body = String),
        (status = 404, description = "Group not found", body = String)))]
pub(super) async fn list_workloads(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<WorkloadListResponse>> {
    let all = q.all.as_deref() == Some("true");
    let group = q.group.as_deref().filter(|g| !g.is_empty());
    Ok(Json(WorkloadListResponse {
        workloads: s.workloads.list(all, group)?,
    }))
}

/// Create a workload; it starts in the background.
#[utoipa::path(post, path = "/api/v1beta/workloads", tag = "workloads", request_body = CreateRequest,
    responses((status = 201, description = "Created", body = CreateWorkloadResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 409, description = "Conflict", body = String),
        (status = 413, description = "Request body too large", body = String)))]
pub(super) async fn create_workload(
    State(s): State<AppState>,
    ApiJson(mut req): ApiJson<CreateRequest>,
) -> ApiResult<(StatusCode, Json<CreateWorkloadResponse>)> {
    resolve_server(&s, &mut req).await?;
    check_request_secrets(&s, &req).await?;
    Ok((StatusCode::CREATED, Json(s.workloads.create(req).await?)))
}

/// Checks that every secret a request references, as environment
/// (`secrets`) or as a remote workload's header values
/// (`header_forward.add_headers_from_secret`), exists now (each is read
/// again at every start; the value is dropped here).
async fn check_request_secrets(s: &AppState, req: &CreateRequest) -> ApiResult<()> {
    check_secrets(s, &req.secrets).await?;
    // A local workload's header references are refused by validation.
    let Some(forward) = req.header_forward.as_ref().filter(|_| !req.url.is_empty()) else {
        return Ok(());
    };
    crate::workloads::check_secret_headers(forward)?;
    for (header, name) in &forward.add_headers_from_secret {
        let header = crate::logging::escape_controls(header);
        check_secret_exists(s, name, &format!("header {header}")).await?;
    }
    Ok(())
}

/// Checks that every secret reference exists now.
async fn check_secrets(s: &AppState, refs: &[SecretParameter]) -> ApiResult<()> {
    for r in refs {
        crate::secrets::check_reference(&r.name)?;
        check_secret_exists(s, &r.name, &crate::logging::escape_controls(&r.target)).await?;
    }
    Ok(())
}

/// A 400 naming secret `name` (used `what_for`) if it cannot be found.
async fn check_secret_exists(s: &AppState, name: &str, what_for: &str) -> ApiResult<()> {
    let shown = crate::logging::escape_controls(name);
    match s.secrets.resolve(name).await {
        Ok(_) => Ok(()),
        Err(SecretsError::NotFound(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("secret `{shown}` (for {what_for}) does not exist in the secrets provider"),
        )),
        Err(SecretsError::NotSetUp) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "secret `{shown}` cannot be read: no secrets provider is set up \
                 (POST /api/v1beta/secrets)"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Fills a request naming a registry `server` from its entry (run by
/// name); the fields the request gives win.
async fn resolve_server(s: &AppState, req: &mut CreateRequest) -> ApiResult<()> {
    if req.server.is_empty() {
        if !req.registry.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "'registry' names where to find 'server': give 'server' too",
            ));
        }
        return Ok(());
    }
    let registry = if req.registry.is_empty() {
        crate::registry::DEFAULT_REGISTRY.to_owned()
    } else {
        req.registry.clone()
    };
    let (_, server) = s.registries.server(&registry, &req.server).await?;
    let available = s.runtimes.names();
    crate::registry::run::apply(&server, &registry, &available, req)?;
    Ok(())
}

/// A workload's configuration, in the create request's shape.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "OK", body = CreateRequest),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn get_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<CreateRequest>> {
    Ok(Json(s.workloads.get(&name)?))
}

/// Replace a workload's configuration and restart it with it.
#[utoipa::path(post, path = "/api/v1beta/workloads/{name}/edit", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")), request_body = CreateRequest,
    responses((status = 200, description = "OK", body = CreateWorkloadResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn edit_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(mut req): ApiJson<CreateRequest>,
) -> ApiResult<Json<CreateWorkloadResponse>> {
    resolve_server(&s, &mut req).await?;
    check_request_secrets(&s, &req).await?;
    Ok(Json(s.workloads.edit(&name, req).await?))
}

/// Stop a workload (in the background).
#[utoipa::path(post, path = "/api/v1beta/workloads/{name}/stop", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn stop_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.workloads.stop(&name)?;
    Ok(StatusCode::ACCEPTED)
}

/// Restart a workload (in the background): stop it if it runs, start it.
#[utoipa::path(post, path = "/api/v1beta/workloads/{name}/restart", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn restart_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.workloads.restart(&name)?;
    Ok(StatusCode::ACCEPTED)
}

/// Delete a workload (in the background).
#[utoipa::path(delete, path = "/api/v1beta/workloads/{name}", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn delete_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.workloads.delete(&name)?;
    Ok(StatusCode::ACCEPTED)
}

/// A workload's status.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/status", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "OK", body = WorkloadStatusResponse),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn workload_status(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkloadStatusResponse>> {
    Ok(Json(WorkloadStatusResponse {
        status: s.workloads.workload(&name)?.status,
    }))
}

/// The last 1000 lines the workload's server logged.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/logs", tag = "logs",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "Logs", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn workload_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(text(s.workloads.logs(&name).await?))
}

/// The last 1000 lines of berth's own log of the workload (or, with
/// `audit=true`, of its audit log).
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/proxy-logs", tag = "logs",
    params(("name" = String, Path, description = "Workload name"), ProxyLogsQuery),
    responses((status = 200, description = "Proxy logs", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn workload_proxy_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ProxyLogsQuery>,
) -> ApiResult<impl IntoResponse> {
    if q.audit.as_deref() == Some("true") {
        return Ok(text(s.workloads.audit_logs(&name).await?));
    }
    Ok(text(s.workloads.proxy_logs(&name).await?))
}

/// A workload's run configuration.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/export", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "OK", body = RunConfig),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn export_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<RunConfig>> {
    Ok(Json(s.workloads.export(&name)?))
}

async fn bulk(s: AppState, op: BulkOp, req: BulkOperationRequest) -> ApiResult<StatusCode> {
    s.workloads.bulk(op, req)?;
    Ok(StatusCode::ACCEPTED)
}

/// Stop several workloads, by names or by group.
#[utoipa::path(post, path = "/api/v1beta/workloads/stop", tag = "workloads", request_body = BulkOperationRequest,
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Workload or group not found", body = String)))]
pub(super) async fn bulk_stop(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<BulkOperationRequest>,
) -> ApiResult<StatusCode> {
    bulk(s, BulkOp::Stop, req).await
}

/// Restart several workloads, by names or by group.
#[utoipa::path(post, path = "/api/v1beta/workloads/restart", tag = "workloads", request_body = BulkOperationRequest,
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Workload or group not found", body = String)))]
pub(super) async fn bulk_restart(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<BulkOperationRequest>,
) -> ApiResult<StatusCode> {
    bulk(s, BulkOp::Restart, req).await
}

/// Delete several workloads, by names or by group.
#[utoipa::path(post, path = "/api/v1beta/workloads/delete", tag = "workloads", request_body = BulkOperationRequest,
    responses((status = 202, description = "Accepted"),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Workload or group not found", body = String)))]
pub(super) async fn bulk_delete(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<BulkOperationRequest>,
) -> ApiResult<StatusCode> {
    bulk(s, BulkOp::Delete, req).await
}

// === upgrades ===

/// The upgrade check of one workload.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::upgradeCheckResponse)]
pub(super) struct UpgradeCheckResponse {
    /// The outcome.
    result: CheckResult,
}

/// The upgrade checks of several workloads.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::upgradeCheckBulkResponse)]
pub(super) struct UpgradeCheckBulkResponse {
    /// One per workload in scope, by name; `[]` when there is none.
    results: Vec<CheckResult>,
}

/// The optional body of an upgrade.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::upgradeRequest)]
pub(super) struct UpgradeRequest {
    /// Environment variables added to (or replacing) the workload's.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Secret references (`<name>,target=<env>`) added to (or replacing,
    /// by target) the workload's; each must exist.
    #[serde(default)]
    secrets: Vec<String>,
}

/// Check workloads for newer versions of their registry entries.
///
/// Offline: the workload's image and recorded entry version against the
/// entry's today; nothing is pulled. `all` and `group` select workloads
/// as the list does. Secret values are never returned.
#[utoipa::path(get, path = "/api/v1beta/workloads/upgrade-check", tag = "workloads", params(ListQuery),
    responses((status = 200, description = "OK", body = UpgradeCheckBulkResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Group not found", body = String)))]
pub(super) async fn upgrade_check_all(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<UpgradeCheckBulkResponse>> {
    let all = q.all.as_deref() == Some("true");
    let group = q.group.as_deref().filter(|g| !g.is_empty());
    Ok(Json(UpgradeCheckBulkResponse {
        results: s
            .workloads
            .upgrade_checks(all, group, &s.registries)
            .await?,
    }))
}

/// Check a workload for a newer version of its registry entry.
///
/// Offline; secret values are never returned.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/upgrade-check", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "OK", body = UpgradeCheckResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn upgrade_check(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<UpgradeCheckResponse>> {
    Ok(Json(UpgradeCheckResponse {
        result: s.workloads.upgrade_check(&name, &s.registries).await?,
    }))
}

/// Apply an available upgrade to a workload.
///
/// Checks again; when no upgrade is available, answers the check and
/// changes nothing. Otherwise replaces the workload's configuration with
/// the entry's new image (everything else kept; `env` merged over the
/// environment) and waits until the new server answers an MCP
/// `initialize` through its proxy (`upgrade_ready_timeout_secs`). If it
/// does not, the previous configuration runs again and the answer is 409.
#[utoipa::path(post, path = "/api/v1beta/workloads/{name}/upgrade", tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    request_body(content = Option<UpgradeRequest>, description = "Upgrade options"),
    responses((status = 200, description = "OK: upgraded, or the check that found nothing to do", body = UpgradeCheckResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Not Found", body = String),
        (status = 409, description = "The new version did not start or answer; the previous configuration was restored", body = String),
        (status = 422, description = "Unprocessable Entity: the new configuration cannot be built (e.g. a required variable is missing); nothing changed", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn upgrade_workload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(req): OptionalJson<UpgradeRequest>,
) -> ApiResult<Json<UpgradeCheckResponse>> {
    let secrets = req
        .secrets
        .iter()
        .map(|r| {
            crate::workloads::model::SecretRef::parse(r)
                .map(|r| SecretParameter {
                    name: r.name,
                    target: r.target,
                })
                .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, format!("secrets: {why}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_secrets(&s, &secrets).await?;
    let within = Duration::from_secs(s.config.upgrade_ready_timeout_secs);
    let result = s
        .workloads
        .upgrade(&name, req.env, secrets, s.registries.clone(), within)
        .await?;
    Ok(Json(UpgradeCheckResponse { result }))
}
