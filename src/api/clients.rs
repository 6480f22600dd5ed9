//! `/api/v1beta/clients*` and `/api/v1beta/discovery/clients`: which MCP
//! clients get berth's servers written into their configuration (spec 5
//! and 6.1). The work is in `crate::clients`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use crate::clients::{ClientAppStatus, RegisteredClient};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_clients).post(register_client))
        .route("/register", post(register_clients))
        .route("/unregister", post(unregister_clients))
        .route("/{name}", delete(unregister_client))
        .route("/{name}/groups/{group}", delete(unregister_client_group))
}

pub(super) fn discovery_routes() -> Router<AppState> {
    Router::new().route("/clients", get(discover_clients))
}

type ApiResult<T> = Result<T, ApiError>;

/// `POST /clients` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createClientRequest)]
pub(super) struct CreateClientRequest {
    /// The client type.
    #[serde(default)]
    name: String,
    /// The groups to register it with (`default` when empty).
    #[serde(default)]
    groups: Vec<String>,
}

/// `POST /clients` response, and one item of `POST /clients/register`'s.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::createClientResponse)]
pub(super) struct CreateClientResponse {
    /// The client type.
    name: String,
    /// The groups it was registered with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

/// `POST /clients/register` and `/clients/unregister` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::bulkClientRequest)]
pub(super) struct BulkClientRequest {
    /// The client types.
    #[serde(default)]
    names: Vec<String>,
    /// The groups (register: `default` when empty; unregister: every group
    /// when empty).
    #[serde(default)]
    groups: Vec<String>,
}

/// `GET /discovery/clients` response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::clientStatusResponse)]
pub(super) struct ClientStatusResponse {
    /// Every supported client, in ToolHive's order.
    clients: Vec<ClientAppStatus>,
}

/// List the registered clients, by name, with their groups and the state
/// of their configuration file (`status`, a berth extension).
#[utoipa::path(get, path = "/api/v1beta/clients", tag = "clients",
    responses((status = 200, description = "OK", body = Vec<RegisteredClient>),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn list_clients(
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<RegisteredClient>>> {
    Ok(Json(s.clients.list()?))
}

/// Register a client with groups (`default` when none is given) and write
/// their running servers into its configuration file.
#[utoipa::path(post, path = "/api/v1beta/clients", tag = "clients", request_body = CreateClientRequest,
    responses((status = 200, description = "OK", body = CreateClientResponse),
        (status = 400, description = "Invalid request, unsupported client type, or a configuration file berth cannot edit", body = String),
        (status = 404, description = "Group not found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn register_client(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateClientRequest>,
) -> ApiResult<Json<CreateClientResponse>> {
    if req.name.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "client name is required",
        ));
    }
    let groups = s
        .clients
        .register(vec![req.name.clone()], req.groups)
        .await?;
    Ok(Json(CreateClientResponse {
        name: req.name,
        groups,
    }))
}

/// Register several clients with groups (`default` when none is given).
#[utoipa::path(post, path = "/api/v1beta/clients/register", tag = "clients", request_body = BulkClientRequest,
    responses((status = 200, description = "OK", body = Vec<CreateClientResponse>),
        (status = 400, description = "Invalid request, unsupported client type, or a configuration file berth cannot edit", body = String),
        (status = 404, description = "Group not found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn register_clients(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<BulkClientRequest>,
) -> ApiResult<Json<Vec<CreateClientResponse>>> {
    s.clients.register(req.names.clone(), req.groups).await?;
    Ok(Json(
        req.names
            .into_iter()
            .map(|name| CreateClientResponse {
                name,
                groups: Vec::new(),
            })
            .collect(),
    ))
}

/// Unregister several clients from groups (from every group when none is
/// given); berth's entries leave their files.
#[utoipa::path(post, path = "/api/v1beta/clients/unregister", tag = "clients", request_body = BulkClientRequest,
    responses((status = 204, description = "No Content"),
        (status = 400, description = "Invalid request or unsupported client type", body = String),
        (status = 404, description = "Group not found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn unregister_clients(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<BulkClientRequest>,
) -> ApiResult<StatusCode> {
    let groups = (!req.groups.is_empty()).then_some(req.groups);
    s.clients.unregister(req.names, groups).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unregister a client from every group; berth's entries leave its file.
#[utoipa::path(delete, path = "/api/v1beta/clients/{name}", tag = "clients",
    params(("name" = String, Path, description = "Client type")),
    responses((status = 204, description = "No Content"),
        (status = 400, description = "Unsupported client type", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn unregister_client(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.clients.unregister(vec![name], None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unregister a client from one group.
#[utoipa::path(delete, path = "/api/v1beta/clients/{name}/groups/{group}", tag = "clients",
    params(("name" = String, Path, description = "Client type"),
        ("group" = String, Path, description = "Group name")),
    responses((status = 204, description = "No Content"),
        (status = 400, description = "Unsupported client type", body = String),
        (status = 404, description = "Group not found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn unregister_client_group(
    State(s): State<AppState>,
    Path((name, group)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.clients.unregister(vec![name], Some(vec![group])).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every supported client: whether it is installed (its configuration
/// directory exists), registered, and what it supports.
#[utoipa::path(get, path = "/api/v1beta/discovery/clients", tag = "discovery",
    responses((status = 200, description = "OK", body = ClientStatusResponse),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn discover_clients(
    State(s): State<AppState>,
) -> ApiResult<Json<ClientStatusResponse>> {
    Ok(Json(ClientStatusResponse {
        clients: s.clients.discover()?,
    }))
}
