//! `/api/v1beta/groups*`: group routes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use crate::groups::Group;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_groups).post(create_group))
        .route("/{name}", get(get_group).delete(delete_group))
}

/// `GET /groups` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::groupListResponse)]
pub(super) struct GroupListResponse {
    /// Groups, by name.
    pub(super) groups: Vec<Group>,
}

/// `POST /groups` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createGroupRequest)]
pub(super) struct CreateGroupRequest {
    /// Name of the group to create.
    #[serde(default)]
    pub(super) name: String,
}

/// `POST /groups` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createGroupResponse)]
pub(super) struct CreateGroupResponse {
    /// Name of the created group.
    pub(super) name: String,
}

/// Query of the delete call.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// `true` deletes the group's workloads too; otherwise they move to `default`.
    #[serde(rename = "with-workloads")]
    #[param(rename = "with-workloads")]
    with_workloads: Option<String>,
}

/// List groups, by name.
#[utoipa::path(get, path = "/api/v1beta/groups", tag = "groups",
    responses((status = 200, description = "OK", body = GroupListResponse),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn list_groups(
    State(s): State<AppState>,
) -> Result<Json<GroupListResponse>, ApiError> {
    Ok(Json(GroupListResponse {
        groups: s.groups.list()?,
    }))
}

/// Create a group.
#[utoipa::path(post, path = "/api/v1beta/groups", tag = "groups", request_body = CreateGroupRequest,
    responses((status = 201, description = "Created", body = CreateGroupResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 409, description = "Conflict", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn create_group(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateGroupRequest>,
) -> Result<(StatusCode, Json<CreateGroupResponse>), ApiError> {
    let group = s.groups.create(&req.name)?;
    Ok((
        StatusCode::CREATED,
        Json(CreateGroupResponse { name: group.name }),
    ))
}

/// One group.
#[utoipa::path(get, path = "/api/v1beta/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses((status = 200, description = "OK", body = Group),
        (status = 400, description = "Invalid name", body = String),
        (status = 404, description = "Not Found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn get_group(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(s.groups.get(&name)?))
}

/// Delete a group; its workloads move to `default`, or are deleted with
/// `with-workloads=true`.
#[utoipa::path(delete, path = "/api/v1beta/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name"), DeleteQuery),
    responses((status = 204, description = "No Content"),
        (status = 400, description = "Invalid name, or the default group", body = String),
        (status = 404, description = "Not Found", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn delete_group(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let with_workloads = q.with_workloads.as_deref() == Some("true");
    s.workloads.delete_group(&name, with_workloads).await?;
    Ok(StatusCode::NO_CONTENT)
}
