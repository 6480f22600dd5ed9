//! `/api/v1beta/workloads*`: workload routes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use crate::workloads::BulkOp;
use crate::workloads::types::{
    BulkOperationRequest, CreateRequest, CreateWorkloadResponse, RunConfig, WorkloadListResponse,
    WorkloadStatusResponse,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_workloads).post(create_workload))
        .route("/stop", post(bulk_stop))
        .route("/restart", post(bulk_restart))
        .route("/delete", post(bulk_delete))
        .route("/{name}", get(get_workload).delete(delete_workload))
        .route("/{name}/edit", post(edit_workload))
        .route("/{name}/stop", post(stop_workload))
        .route("/{name}/restart", post(restart_workload))
        .route("/{name}/status", get(workload_status))
        .route("/{name}/logs", get(workload_logs))
        .route("/{name}/proxy-logs", get(workload_proxy_logs))
        .route("/{name}/export", get(export_workload))
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
    Ok((StatusCode::CREATED, Json(s.workloads.create(req).await?)))
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

/// The last 1000 lines of berth's own log of the workload.
#[utoipa::path(get, path = "/api/v1beta/workloads/{name}/proxy-logs", tag = "logs",
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "Proxy logs", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn workload_proxy_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
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
