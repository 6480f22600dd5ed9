//! Registry routes: ToolHive's `/api/v1beta/registry*` and
//! `/registry/{registryName}/v0.1/*`, and berth's MCP Registry API view
//! of each registry (`/api/v1beta/x/berth/registries/{name}/v0.1/*`).
//!
//! Better than ToolHive on purpose: several named registries (`POST`),
//! `{registryName}` honoured in the v0.1 paths, name-ordered listings, no
//! remembered source errors, each registry's age and staleness shown.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use crate::registry::model::Server;
use crate::registry::source::Snapshot;
use crate::registry::{
    AuthConfig, DEFAULT_REGISTRY, Origin, Registry, RegistryError, SourceRequest,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list_registries).post(add_registry))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route(
            "/{name}",
            get(get_registry)
                .put(update_registry)
                .delete(remove_registry),
        )
        .route("/{name}/refresh", post(refresh_registry))
        .route("/{name}/servers", get(list_servers))
        .route("/{name}/servers/{server}", get(get_server))
}

/// `/registry/{registryName}/v0.1/*` (ToolHive's shape).
pub(super) fn v01_routes() -> Router<AppState> {
    Router::new()
        .route("/{registry}/v0.1/servers", get(v01_list))
        .route(
            "/{registry}/v0.1/servers/{server}/versions/latest",
            get(v01_get),
        )
        .route("/{registry}/v0.1/x/dev.toolhive/skills", get(v01_skills))
        .route(
            "/{registry}/v0.1/x/dev.toolhive/skills/{namespace}/{name}",
            get(v01_skill),
        )
        .route("/{registry}/v0.1/x/dev.toolhive/plugins", get(v01_plugins))
        .route(
            "/{registry}/v0.1/x/dev.toolhive/plugins/{namespace}/{name}",
            get(v01_plugin),
        )
}

/// `/api/v1beta/x/berth/registries/{name}/v0.1/*`: the official MCP
/// Registry API wire format.
pub(super) fn official_routes() -> Router<AppState> {
    Router::new()
        .route("/{registry}/v0.1/servers", get(official_list))
        .route(
            "/{registry}/v0.1/servers/{server}/versions/latest",
            get(official_get),
        )
}

type ApiResult<T> = Result<T, ApiError>;

/// OAuth settings shown for a registry (no secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_registry::OAuthPublicConfig)]
pub(super) struct OAuthPublicConfig {
    /// The OIDC issuer.
    issuer: String,
    /// The client id.
    client_id: String,
    /// The audience.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    audience: String,
    /// The scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
}

/// One registry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::registryInfo)]
pub(super) struct RegistryInfo {
    /// Its name.
    name: String,
    /// The document's version.
    version: String,
    /// When its data last changed (RFC 3339).
    last_updated: String,
    /// Local (container or package) servers.
    server_count: usize,
    /// `default`, `file`, `url`, `api` or `plugin` (berth).
    #[serde(rename = "type")]
    kind: String,
    /// URL, path or plugin; empty for the embedded catalogue.
    source: String,
    /// `none`, `configured` or `authenticated`.
    auth_status: String,
    /// `oauth`, `bearer` or empty.
    auth_type: String,
    /// OAuth settings, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_config: Option<OAuthPublicConfig>,
    /// berth: remote servers.
    remote_server_count: usize,
    /// berth: declared in berth.toml (read-only here) or built in.
    read_only: bool,
    /// berth: when the data served was fetched (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    fetched_at: String,
    /// berth: seconds since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    age_seconds: Option<i64>,
    /// berth: why the last refresh failed, when an older copy is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
    /// berth: why the registry cannot be read now (no copy to serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// berth: entries of the source that were skipped as unusable.
    skipped_entries: usize,
}

/// `GET /registry` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::registryListResponse)]
pub(super) struct RegistryListResponse {
    /// The registries, by name.
    registries: Vec<RegistryInfo>,
}

/// `GET /registry/{name}` response: the registry and its data.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::getRegistryResponse)]
pub(super) struct GetRegistryResponse {
    /// Its name.
    name: String,
    /// The document's version.
    version: String,
    /// When its data last changed (RFC 3339).
    last_updated: String,
    /// Local (container or package) servers.
    server_count: usize,
    /// `default`, `file`, `url`, `api` or `plugin` (berth).
    #[serde(rename = "type")]
    kind: String,
    /// URL, path or plugin; empty for the embedded catalogue.
    source: String,
    /// `none`, `configured` or `authenticated`.
    auth_status: String,
    /// `oauth`, `bearer` or empty.
    auth_type: String,
    /// OAuth settings, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_config: Option<OAuthPublicConfig>,
    /// berth: the other facts of the registry list (`read_only`,
    /// `fetched_at`, `age_seconds`, `stale`, …), as in `registryInfo`.
    #[serde(flatten)]
    #[schema(ignore)]
    extra: serde_json::Map<String, Value>,
    /// The data in ToolHive's shape (servers keyed by full name).
    #[schema(value_type = Object)]
    registry: Value,
}

/// `/registry/{name}/v0.1/servers` response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::serversV01Response)]
pub(super) struct ServersV01Response<'a> {
    /// Bare `server.json` entries.
    #[schema(value_type = Vec<Object>)]
    servers: Vec<&'a crate::registry::model::ServerJson>,
    /// Paging facts.
    metadata: PaginationV01Metadata,
}

/// Paging facts of the v0.1 listings.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::paginationV01Metadata)]
pub(super) struct PaginationV01Metadata {
    /// Matching entries in all.
    total: usize,
    /// This page (1-based).
    page: usize,
    /// Page size.
    limit: usize,
}

/// Registry error object.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = pkg_api_v1::registryErrorResponse)]
pub(super) struct RegistryErrorResponse {
    /// Machine code (`not_found`, `registry_auth_required`, …).
    code: String,
    /// What went wrong.
    message: String,
}

/// `GET /registry/{name}/servers` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::listServersResponse)]
pub(super) struct ListServersResponse {
    /// Local servers (`ImageMetadata`), by name.
    #[schema(value_type = Vec<Object>)]
    servers: Vec<Value>,
    /// Remote servers (`RemoteServerMetadata`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    remote_servers: Vec<Value>,
}

/// `GET /registry/{name}/servers/{serverName}` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::getServerResponse)]
pub(super) struct GetServerResponse {
    /// The local server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    server: Option<Value>,
    /// The remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    remote_server: Option<Value>,
    /// Whether it is remote.
    is_remote: bool,
}

/// OAuth part of a registry update.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::UpdateRegistryAuthRequest)]
pub(super) struct UpdateRegistryAuthRequest {
    /// OIDC issuer URL.
    #[serde(default)]
    issuer: String,
    /// OAuth client id.
    #[serde(default)]
    client_id: String,
    /// OAuth audience.
    #[serde(default)]
    audience: String,
    /// OAuth scopes.
    #[serde(default)]
    scopes: Vec<String>,
}

/// `PUT /registry/{name}` body (`POST /registry` adds `name`). Exactly
/// one of `url`, `api_url`, `local_path`, `plugin`; none resets
/// `default` to the embedded catalogue.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::UpdateRegistryRequest)]
pub(super) struct UpdateRegistryRequest {
    /// berth: the new registry's name (`POST` only).
    #[serde(default)]
    name: Option<String>,
    /// A registry document URL (an MCP Registry API base URL is detected).
    #[serde(default)]
    url: Option<String>,
    /// An MCP Registry API base URL.
    #[serde(default)]
    api_url: Option<String>,
    /// An absolute path of a local `.json` file (or `file://…`).
    #[serde(default)]
    local_path: Option<String>,
    /// berth: a registry-source plugin of `[[plugins]]`.
    #[serde(default)]
    plugin: Option<String>,
    /// Allow private addresses and plain HTTP for `url` / `api_url`.
    #[serde(default)]
    allow_private_ip: Option<bool>,
    /// OAuth settings.
    #[serde(default)]
    auth: Option<UpdateRegistryAuthRequest>,
}

impl UpdateRegistryRequest {
    fn into_source(self) -> SourceRequest {
        SourceRequest {
            url: self.url,
            api_url: self.api_url,
            local_path: self.local_path,
            plugin: self.plugin,
            allow_private_ip: self.allow_private_ip,
            auth: self.auth.map(|a| AuthConfig {
                issuer: a.issuer,
                client_id: a.client_id,
                audience: a.audience,
                scopes: a.scopes,
            }),
        }
    }
}

/// `PUT /registry/{name}` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::UpdateRegistryResponse)]
pub(super) struct UpdateRegistryResponse {
    /// The registry's type after the update.
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /registry/auth/login` body (berth).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(super) struct LoginRequest {
    /// The registry; `default` when omitted.
    #[serde(default)]
    registry: Option<String>,
    /// A bearer token to store for it (a headless login).
    #[serde(default)]
    token: Option<String>,
}

/// `POST /registry/auth/login` answer: `202 pending` with the code the
/// user approves (device flow), or `200 authenticated` (a pasted token).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct LoginResponse {
    /// `pending` (the user has to approve the code) or `authenticated`.
    status: String,
    /// Where the user approves the login, on any device with a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verification_uri: Option<String>,
    /// The same with the code filled in, when the provider gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verification_uri_complete: Option<String>,
    /// The code the user enters there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_code: Option<String>,
    /// Seconds left before the code expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    /// Seconds between two polls of the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
}

/// A JSON body that may be absent (ToolHive's login and logout take none).
async fn optional_body(request: axum::extract::Request) -> ApiResult<LoginRequest> {
    use axum::extract::FromRequest;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(LoginRequest::default());
    }
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    let ApiJson(req) = ApiJson::<LoginRequest>::from_request(request, &()).await?;
    Ok(req)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn info(s: &AppState, r: &Registry, snap: Result<&Snapshot, &RegistryError>) -> RegistryInfo {
    let (auth_status, auth_type) = s.registries.auth_status(r);
    let mut out = RegistryInfo {
        name: r.name.clone(),
        version: String::new(),
        last_updated: String::new(),
        server_count: 0,
        kind: r.source.kind().to_owned(),
        source: r.source.location(),
        auth_status: auth_status.to_owned(),
        auth_type: auth_type.to_owned(),
        auth_config: r.auth.as_ref().map(|a| OAuthPublicConfig {
            issuer: a.issuer.clone(),
            client_id: a.client_id.clone(),
            audience: a.audience.clone(),
            scopes: a.scopes.clone(),
        }),
        remote_server_count: 0,
        read_only: r.origin == Origin::Config,
        fetched_at: String::new(),
        age_seconds: None,
        stale: None,
        error: None,
        skipped_entries: 0,
    };
    match snap {
        Ok(snap) => {
            let remote = snap
                .catalog
                .servers()
                .iter()
                .filter(|s| s.kind == crate::registry::model::Kind::Remote)
                .count();
            out.version = snap.catalog.version.clone();
            out.last_updated = snap.catalog.last_updated.clone();
            out.server_count = snap.catalog.len() - remote;
            out.remote_server_count = remote;
            out.fetched_at = rfc3339(snap.fetched_at);
            out.age_seconds = Some(
                (time::OffsetDateTime::now_utc() - snap.fetched_at)
                    .whole_seconds()
                    .max(0),
            );
            out.stale = snap.stale.clone();
            out.skipped_entries = snap.catalog.warnings.len();
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// List the registries, by name, each read on its own (one that fails
/// says why in `error`; the others are listed all the same).
#[utoipa::path(get, path = "/api/v1beta/registry", tag = "registry",
    responses((status = 200, description = "OK", body = RegistryListResponse)))]
pub(super) async fn list_registries(State(s): State<AppState>) -> Json<RegistryListResponse> {
    let all = s.registries.list();
    let reads = all.iter().map(|r| s.registries.snapshot(r));
    let snaps = futures::future::join_all(reads).await;
    let registries = all
        .iter()
        .zip(snaps)
        .map(|(r, snap)| info(&s, r, snap.as_deref()))
        .collect();
    Json(RegistryListResponse { registries })
}

/// Add a registry (berth; ToolHive answers 501): the `PUT` body plus
/// `name`. The source is checked and read first.
#[utoipa::path(post, path = "/api/v1beta/registry", tag = "registry",
    request_body = UpdateRegistryRequest,
    responses((status = 201, description = "Created", body = UpdateRegistryResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 409, description = "Exists", body = String),
        (status = 501, description = "Never (ToolHive's answer)", body = String),
        (status = 502, description = "Not a registry", body = String),
        (status = 504, description = "Unreachable", body = String)))]
pub(super) async fn add_registry(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<UpdateRegistryRequest>,
) -> ApiResult<(StatusCode, Json<UpdateRegistryResponse>)> {
    let name = req.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name is required to add a registry",
        ));
    }
    let r = s.registries.add(&name, req.into_source()).await?;
    Ok((
        StatusCode::CREATED,
        Json(UpdateRegistryResponse {
            kind: r.source.kind().to_owned(),
        }),
    ))
}

/// One registry with its data in ToolHive's shape.
#[utoipa::path(get, path = "/api/v1beta/registry/{name}", tag = "registry",
    params(("name" = String, Path, description = "Registry name")),
    responses((status = 200, description = "OK", body = GetRegistryResponse),
        (status = 404, description = "Not Found", body = String),
        (status = 502, description = "Source invalid", body = String),
        (status = 503, description = "Source unavailable", body = String)))]
pub(super) async fn get_registry(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<GetRegistryResponse>> {
    let r = s.registries.get(&name)?;
    let snap = s.registries.snapshot(&r).await?;
    let mut servers = serde_json::Map::new();
    let mut remote = serde_json::Map::new();
    for server in snap.catalog.servers() {
        let (is_remote, view) = server.toolhive_view();
        if is_remote {
            remote.insert(server.name().to_owned(), view);
        } else {
            servers.insert(server.name().to_owned(), view);
        }
    }
    let mut registry = json!({
        "version": snap.catalog.version,
        "last_updated": snap.catalog.last_updated,
        "servers": servers,
    });
    if !remote.is_empty() {
        registry["remote_servers"] = Value::Object(remote);
    }
    let info = info(&s, &r, Ok(&snap));
    let Ok(Value::Object(mut extra)) = serde_json::to_value(&info) else {
        unreachable!("a struct serializes to an object")
    };
    for known in [
        "name",
        "version",
        "last_updated",
        "server_count",
        "type",
        "source",
        "auth_status",
        "auth_type",
        "auth_config",
    ] {
        extra.remove(known);
    }
    Ok(Json(GetRegistryResponse {
        name: info.name,
        version: info.version,
        last_updated: info.last_updated,
        server_count: info.server_count,
        kind: info.kind,
        source: info.source,
        auth_status: info.auth_status,
        auth_type: info.auth_type,
        auth_config: info.auth_config,
        extra,
        registry,
    }))
}

/// Change a registry's source and auth. On any error the previous source
/// stays; registries of berth.toml are read-only here (409).
#[utoipa::path(put, path = "/api/v1beta/registry/{name}", tag = "registry",
    params(("name" = String, Path, description = "Registry name")),
    request_body = UpdateRegistryRequest,
    responses((status = 200, description = "OK", body = UpdateRegistryResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 403, description = "Forbidden", body = String),
        (status = 404, description = "Not Found", body = String),
        (status = 409, description = "Read-only", body = String),
        (status = 502, description = "Not a registry", body = String),
        (status = 504, description = "Unreachable", body = String)))]
pub(super) async fn update_registry(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateRegistryRequest>,
) -> ApiResult<Json<UpdateRegistryResponse>> {
    let r = s.registries.update(&name, req.into_source()).await?;
    Ok(Json(UpdateRegistryResponse {
        kind: r.source.kind().to_owned(),
    }))
}

/// Remove a registry added through the API.
#[utoipa::path(delete, path = "/api/v1beta/registry/{name}", tag = "registry",
    params(("name" = String, Path, description = "Registry name")),
    responses((status = 204, description = "Removed"),
        (status = 400, description = "The default registry", body = String),
        (status = 403, description = "Forbidden", body = String),
        (status = 404, description = "Not Found", body = String),
        (status = 409, description = "Read-only", body = String)))]
pub(super) async fn remove_registry(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.registries.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read the registry's source again now (every kind of source).
#[utoipa::path(post, path = "/api/v1beta/registry/{name}/refresh", tag = "registry",
    params(("name" = String, Path, description = "Registry name")),
    responses((status = 200, description = "OK", body = Object),
        (status = 404, description = "Not Found", body = String),
        (status = 500, description = "Internal Server Error", body = String),
        (status = 503, description = "Unavailable", body = String)))]
pub(super) async fn refresh_registry(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let snap = s.registries.refresh(&name).await?;
    let mut out = json!({"status": "refreshed"});
    if let Some(why) = &snap.stale {
        out["stale"] = json!(why);
    }
    Ok(Json(out))
}

/// Every server of a registry in ToolHive's shapes, by name.
#[utoipa::path(get, path = "/api/v1beta/registry/{name}/servers", tag = "registry",
    params(("name" = String, Path, description = "Registry name")),
    responses((status = 200, description = "OK", body = ListServersResponse),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn list_servers(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ListServersResponse>> {
    let r = s.registries.get(&name)?;
    let snap = s.registries.snapshot(&r).await?;
    let mut out = ListServersResponse {
        servers: Vec::new(),
        remote_servers: Vec::new(),
    };
    for server in snap.catalog.servers() {
        match server.toolhive_view() {
            (true, v) => out.remote_servers.push(v),
            (false, v) => out.servers.push(v),
        }
    }
    Ok(Json(out))
}

fn lookup_404(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Ambiguous { .. } | RegistryError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string())
        }
        other => other.into(),
    }
}

/// One server of a registry, by full name (`/` as `%2F`) or short name.
#[utoipa::path(get, path = "/api/v1beta/registry/{name}/servers/{serverName}", tag = "registry",
    params(("name" = String, Path, description = "Registry name"),
        ("serverName" = String, Path, description = "Full (`/` as `%2F`) or short server name")),
    responses((status = 200, description = "OK", body = GetServerResponse),
        (status = 404, description = "Not Found", body = String)))]
pub(super) async fn get_server(
    State(s): State<AppState>,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult<Json<GetServerResponse>> {
    let (_, found) = s
        .registries
        .server(&name, &server)
        .await
        .map_err(lookup_404)?;
    Ok(Json(match found.toolhive_view() {
        (true, v) => GetServerResponse {
            server: None,
            remote_server: Some(v),
            is_remote: true,
        },
        (false, v) => GetServerResponse {
            server: Some(v),
            remote_server: None,
            is_remote: false,
        },
    }))
}

/// Log in to a registry without a browser on the server. With OAuth
/// configured (`PUT /registry/{name}` with `auth`), starts the device
/// authorization grant (RFC 8628) and answers `202` at once with the code
/// to approve at `verification_uri` on any device; berth polls the
/// identity provider in the background and stores the token (the
/// registry's `auth_status` becomes `authenticated`). A second login while
/// one is pending answers the same code. `{"token": …}` stores a pasted
/// bearer token instead (`200`). Tokens are kept in a 0600 file of the
/// state directory, sent to the registry's `url`/`api` source, never shown.
#[utoipa::path(post, path = "/api/v1beta/registry/auth/login", tag = "registry",
    request_body = LoginRequest,
    responses((status = 200, description = "A pasted token was stored", body = LoginResponse),
        (status = 202, description = "Device login pending: approve `user_code` at `verification_uri`", body = LoginResponse),
        (status = 400, description = "Bad Request", body = String),
        (status = 404, description = "Unknown registry", body = String),
        (status = 500, description = "Internal Server Error", body = String),
        (status = 502, description = "The identity provider failed or refused the login", body = String)))]
pub(super) async fn login(
    State(s): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let req = optional_body(request).await?;
    let registry = req.registry.unwrap_or_else(|| DEFAULT_REGISTRY.to_owned());
    s.registries.get(&registry)?;
    if let Some(token) = req.token {
        s.registries.login_with_token(&registry, &token).await?;
        return Ok(Json(LoginResponse {
            status: "authenticated".into(),
            verification_uri: None,
            verification_uri_complete: None,
            user_code: None,
            expires_in: None,
            interval: None,
        })
        .into_response());
    }
    let started = s.registries.login(&registry).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(LoginResponse {
            status: "pending".into(),
            verification_uri: Some(started.verification_uri),
            verification_uri_complete: started.verification_uri_complete,
            user_code: Some(started.user_code),
            expires_in: Some(started.expires_in),
            interval: Some(started.interval),
        }),
    )
        .into_response())
}

/// Forget a registry's stored token and cancel its pending login.
#[utoipa::path(post, path = "/api/v1beta/registry/auth/logout", tag = "registry",
    request_body = LoginRequest,
    responses((status = 200, description = "OK", body = Object),
        (status = 400, description = "Bad Request", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn logout(
    State(s): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    let req = optional_body(request).await?;
    let registry = req.registry.unwrap_or_else(|| DEFAULT_REGISTRY.to_owned());
    s.registries.logout(&registry)?;
    Ok(Json(json!({"status": "logged_out"})))
}

/// `page`, `limit` and `q` of the v0.1 listings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct V01Query {
    /// Case-insensitive text in the name or description.
    q: Option<String>,
    /// 1-based page; default 1.
    page: Option<String>,
    /// Page size; default 50, at most 200.
    limit: Option<String>,
}

impl V01Query {
    /// Effective `(page, limit)`: bad values fall back to the defaults.
    fn paging(&self) -> (usize, usize) {
        let num = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        let limit = num(&self.limit).unwrap_or(50).min(200);
        let page = num(&self.page).unwrap_or(1).min(usize::MAX / 200);
        (page, limit)
    }
}

/// `{"code", "message"}` errors of the v0.1 routes.
fn v01_error(e: RegistryError) -> ApiError {
    ApiError::registry_json(e)
}

async fn v01_snapshot(s: &AppState, registry: &str) -> Result<Arc<Snapshot>, ApiError> {
    let r = s.registries.get(registry).map_err(v01_error)?;
    s.registries.snapshot(&r).await.map_err(v01_error)
}

/// Servers of a registry as bare `server.json`, paged (ToolHive's v0.1).
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/servers", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"), V01Query),
    responses((status = 200, description = "OK", body = ServersV01Response),
        (status = 404, description = "Unknown registry", body = RegistryErrorResponse),
        (status = 500, description = "Internal Server Error", body = RegistryErrorResponse),
        (status = 503, description = "Unavailable", body = RegistryErrorResponse)))]
pub(super) async fn v01_list(
    State(s): State<AppState>,
    Path(registry): Path<String>,
    Query(q): Query<V01Query>,
) -> ApiResult<Json<Value>> {
    let snap = v01_snapshot(&s, &registry).await?;
    let (page, limit) = q.paging();
    let text = q.q.as_deref().unwrap_or("").to_lowercase();
    let matches: Vec<&Arc<Server>> = snap
        .catalog
        .servers()
        .iter()
        .filter(|s| {
            text.is_empty()
                || s.name().to_lowercase().contains(&text)
                || s.json.description.to_lowercase().contains(&text)
        })
        .collect();
    let servers = matches
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|s| &s.json)
        .collect();
    let body = ServersV01Response {
        servers,
        metadata: PaginationV01Metadata {
            total: matches.len(),
            page,
            limit,
        },
    };
    Ok(Json(serde_json::to_value(&body).unwrap_or_default()))
}

/// One server of a registry as a bare `server.json`.
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/servers/{serverName}/versions/latest", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"),
        ("serverName" = String, Path, description = "Full (`/` as `%2F`) or short server name")),
    responses((status = 200, description = "OK", body = Object),
        (status = 400, description = "Bad Request", body = Object),
        (status = 404, description = "Not Found", body = Object),
        (status = 500, description = "Internal Server Error", body = Object),
        (status = 503, description = "Unavailable", body = Object)))]
pub(super) async fn v01_get(
    State(s): State<AppState>,
    Path((registry, server)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, found) = s
        .registries
        .server(&registry, &server)
        .await
        .map_err(v01_error)?;
    Ok(Json(serde_json::to_value(&found.json).unwrap_or_default()))
}

/// The skill and plugin listings: the registry must exist; berth has no
/// skills or plugins in registries yet, so the list is empty.
fn empty_listing(s: &AppState, registry: &str, q: &V01Query, key: &str) -> ApiResult<Json<Value>> {
    s.registries.get(registry).map_err(v01_error)?;
    let (page, limit) = q.paging();
    Ok(Json(
        json!({key: [], "metadata": {"total": 0, "page": page, "limit": limit}}),
    ))
}

/// A skill or plugin by name: the registry must exist; none is found.
fn no_entry(s: &AppState, registry: &str, what: &str, name: &str) -> ApiResult<Json<Value>> {
    s.registries.get(registry).map_err(v01_error)?;
    Err(ApiError::registry_code(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "{what} `{}` not found",
            crate::logging::escape_controls(name)
        ),
    ))
}

/// Skills of a registry: none until berth has skills.
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/x/dev.toolhive/skills", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"), V01Query),
    responses((status = 200, description = "OK", body = Object),
        (status = 404, description = "Unknown registry", body = Object),
        (status = 500, description = "Internal Server Error", body = Object),
        (status = 503, description = "Unavailable", body = Object)))]
pub(super) async fn v01_skills(
    State(s): State<AppState>,
    Path(registry): Path<String>,
    Query(q): Query<V01Query>,
) -> ApiResult<Json<Value>> {
    empty_listing(&s, &registry, &q, "skills")
}

/// A skill of a registry: none until berth has skills.
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/x/dev.toolhive/skills/{namespace}/{skillName}", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"),
        ("namespace" = String, Path, description = "Namespace"), ("skillName" = String, Path, description = "Name")),
    responses((status = 404, description = "Not Found", body = Object),
        (status = 500, description = "Internal Server Error", body = Object),
        (status = 503, description = "Unavailable", body = Object)))]
pub(super) async fn v01_skill(
    State(s): State<AppState>,
    Path((registry, _ns, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    no_entry(&s, &registry, "Skill", &name)
}

/// Plugins of a registry: none until berth has them.
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/x/dev.toolhive/plugins", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"), V01Query),
    responses((status = 200, description = "OK", body = Object),
        (status = 404, description = "Unknown registry", body = Object),
        (status = 500, description = "Internal Server Error", body = Object),
        (status = 503, description = "Unavailable", body = Object)))]
pub(super) async fn v01_plugins(
    State(s): State<AppState>,
    Path(registry): Path<String>,
    Query(q): Query<V01Query>,
) -> ApiResult<Json<Value>> {
    empty_listing(&s, &registry, &q, "plugins")
}

/// A plugin of a registry: none until berth has them.
#[utoipa::path(get, path = "/registry/{registryName}/v0.1/x/dev.toolhive/plugins/{namespace}/{pluginName}", tag = "registry",
    params(("registryName" = String, Path, description = "Registry name"),
        ("namespace" = String, Path, description = "Namespace"), ("pluginName" = String, Path, description = "Name")),
    responses((status = 404, description = "Not Found", body = Object),
        (status = 500, description = "Internal Server Error", body = Object),
        (status = 503, description = "Unavailable", body = Object)))]
pub(super) async fn v01_plugin(
    State(s): State<AppState>,
    Path((registry, _ns, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    no_entry(&s, &registry, "Plugin", &name)
}

/// `cursor`, `limit`, `search` of the official MCP Registry API.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OfficialQuery {
    /// Continue after this cursor (`metadata.nextCursor` of a page).
    cursor: Option<String>,
    /// Page size; default 30, at most 100.
    limit: Option<String>,
    /// Case-insensitive text in the name, title, description or tags.
    search: Option<String>,
    /// Only `latest` is served (each entry has one version).
    version: Option<String>,
}

fn official_item(s: &Server) -> Value {
    json!({
        "server": s.json,
        "_meta": {"io.modelcontextprotocol.registry/official": {"status": "active", "isLatest": true}},
    })
}

/// berth: a registry's servers in the official MCP Registry API format
/// (`{servers: [{server, _meta}], metadata: {nextCursor, count}}`), so
/// tools that consume that API can use berth's registries.
#[utoipa::path(get, path = "/api/v1beta/x/berth/registries/{name}/v0.1/servers", tag = "registry",
    params(("name" = String, Path, description = "Registry name"), OfficialQuery),
    responses((status = 200, description = "OK", body = Object),
        (status = 400, description = "Bad Request", body = Object),
        (status = 404, description = "Unknown registry", body = Object)))]
pub(super) async fn official_list(
    State(s): State<AppState>,
    Path(registry): Path<String>,
    Query(q): Query<OfficialQuery>,
) -> ApiResult<Json<Value>> {
    if q.version.as_deref().is_some_and(|v| v != "latest") {
        return Err(ApiError::registry_code(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "only version=latest is served".into(),
        ));
    }
    let snap = v01_snapshot(&s, &registry).await?;
    let limit = q
        .limit
        .as_deref()
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(30)
        .min(100);
    let (items, next) = snap.catalog.page_after(
        q.search.as_deref().unwrap_or(""),
        q.cursor.as_deref().filter(|c| !c.is_empty()),
        limit,
    );
    let mut metadata = json!({"count": items.len()});
    if let Some(next) = next {
        metadata["nextCursor"] = json!(next);
    }
    Ok(Json(json!({
        "servers": items.iter().map(|s| official_item(s)).collect::<Vec<_>>(),
        "metadata": metadata,
    })))
}

/// berth: one server in the official MCP Registry API format.
#[utoipa::path(get, path = "/api/v1beta/x/berth/registries/{name}/v0.1/servers/{serverName}/versions/latest", tag = "registry",
    params(("name" = String, Path, description = "Registry name"),
        ("serverName" = String, Path, description = "Full server name (`/` as `%2F`)")),
    responses((status = 200, description = "OK", body = Object),
        (status = 404, description = "Not Found", body = Object)))]
pub(super) async fn official_get(
    State(s): State<AppState>,
    Path((registry, server)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, found) = s
        .registries
        .server(&registry, &server)
        .await
        .map_err(v01_error)?;
    Ok(Json(official_item(&found)).into_response())
}
