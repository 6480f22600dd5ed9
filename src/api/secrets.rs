//! `/api/v1beta/secrets*`: the default secrets provider and its keys
//! (spec 2.3). Values go in, never out: no route returns one.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;
use super::json::ApiJson;
use crate::secrets::{SecretsError, is_reserved};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(setup))
        .route("/default", get(provider))
        .route("/default/keys", get(list_keys).post(create_key))
        .route("/default/keys/{key}", put(update_key).delete(delete_key))
}

type ApiResult<T> = Result<T, ApiError>;

/// `POST /secrets` body.
#[derive(Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::setupSecretsRequest)]
pub(super) struct SetupRequest {
    /// `encrypted`, `environment`, `none` or `plugin:<name>`.
    #[serde(default)]
    provider_type: String,
    /// For `encrypted`, when `BERTH_SECRETS_PASSWORD` is unset: the
    /// store's password (kept in the key file if there is none yet).
    #[serde(default)]
    password: Option<String>,
}

/// `POST /secrets` answer.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::setupSecretsResponse)]
pub(super) struct SetupResponse {
    /// The provider set up.
    provider_type: String,
    /// What happened.
    message: String,
}

/// What a provider can do.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::providerCapabilitiesResponse)]
pub(super) struct CapabilitiesResponse {
    /// Secrets can be read.
    can_read: bool,
    /// Secrets can be created and updated.
    can_write: bool,
    /// Secrets can be deleted.
    can_delete: bool,
    /// Secret names can be listed.
    can_list: bool,
    /// All secrets can be removed at once.
    can_cleanup: bool,
}

/// `GET /secrets/default` answer.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::getSecretsProviderResponse)]
pub(super) struct ProviderResponse {
    /// Always `default`.
    name: String,
    /// `encrypted`, `environment` or `plugin:<name>`.
    provider_type: String,
    /// What it can do.
    capabilities: CapabilitiesResponse,
}

/// One secret's name.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::secretKeyResponse)]
pub(super) struct KeyResponse {
    /// The name.
    key: String,
    /// A description, when the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// `GET /secrets/default/keys` answer.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::listSecretsResponse)]
pub(super) struct ListResponse {
    /// In name order; berth's own (`__berth_*`) never appear.
    keys: Vec<KeyResponse>,
}

/// `POST /secrets/default/keys` body.
#[derive(Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createSecretRequest)]
pub(super) struct CreateRequest {
    /// The name.
    #[serde(default)]
    key: String,
    /// The value.
    #[serde(default)]
    value: String,
}

/// `PUT /secrets/default/keys/{key}` body.
#[derive(Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::updateSecretRequest)]
pub(super) struct UpdateRequest {
    /// The new value.
    #[serde(default)]
    value: String,
}

/// Answer of create and update.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createSecretResponse)]
pub(super) struct KeyChanged {
    /// The name.
    key: String,
    /// What happened.
    message: String,
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("secrets provider does not support {what}"),
    )
}

fn reserved(key: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "secret name `{}` is reserved for berth's own use",
            crate::logging::escape_controls(key)
        ),
    )
}

/// Set up or reconfigure the secrets provider.
///
/// Opens the provider and checks that it answers before keeping the
/// choice; nothing changes when that fails. Secrets are not moved between
/// providers. `encrypted` is ready without this call.
#[utoipa::path(post, path = "/api/v1beta/secrets", tag = "secrets", request_body = SetupRequest,
    responses((status = 201, description = "Created", body = SetupResponse),
        (status = 400, description = "Bad Request: unknown or empty provider type", body = String),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn setup(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<SetupResponse>)> {
    let password = req.password.map(Zeroizing::new);
    let (kind, reconfigured) = s.secrets.setup(&req.provider_type, password).await?;
    let message = if reconfigured {
        "Secrets provider reconfigured successfully"
    } else {
        "Secrets provider setup successfully"
    };
    Ok((
        StatusCode::CREATED,
        Json(SetupResponse {
            provider_type: kind.to_string(),
            message: message.into(),
        }),
    ))
}

/// Details of the default secrets provider.
#[utoipa::path(get, path = "/api/v1beta/secrets/default", tag = "secrets",
    responses((status = 200, description = "OK", body = ProviderResponse),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 404, description = "Not Found - Provider not setup", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn provider(State(s): State<AppState>) -> ApiResult<Json<ProviderResponse>> {
    let (kind, provider) = s.secrets.default_provider().await?;
    let c = provider.capabilities().await?;
    Ok(Json(ProviderResponse {
        name: "default".into(),
        provider_type: kind.to_string(),
        capabilities: CapabilitiesResponse {
            can_read: c.read,
            can_write: c.write,
            can_delete: c.delete,
            can_list: c.list,
            can_cleanup: c.write && c.delete && c.list,
        },
    }))
}

/// The names of the default provider's secrets, in name order.
#[utoipa::path(get, path = "/api/v1beta/secrets/default/keys", tag = "secrets",
    responses((status = 200, description = "OK", body = ListResponse),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 404, description = "Not Found - Provider not setup", body = String),
        (status = 405, description = "Method Not Allowed - Provider doesn't support listing", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn list_keys(State(s): State<AppState>) -> ApiResult<Json<ListResponse>> {
    let (_, provider) = s.secrets.default_provider().await?;
    if !provider.capabilities().await?.list {
        return Err(unsupported("listing keys"));
    }
    let mut names = provider.list().await?;
    names.retain(|n| !is_reserved(n));
    names.sort();
    names.dedup();
    Ok(Json(ListResponse {
        keys: names
            .into_iter()
            .map(|key| KeyResponse {
                key,
                description: None,
            })
            .collect(),
    }))
}

/// Create a secret in the default provider.
#[utoipa::path(post, path = "/api/v1beta/secrets/default/keys", tag = "secrets", request_body = CreateRequest,
    responses((status = 201, description = "Created", body = KeyChanged),
        (status = 400, description = "Bad Request: empty, reserved or invalid name, or a value too large", body = String),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 404, description = "Not Found - Provider not setup", body = String),
        (status = 405, description = "Method Not Allowed - Provider doesn't support writing", body = String),
        (status = 409, description = "Conflict - Secret already exists", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn create_key(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<(StatusCode, Json<KeyChanged>)> {
    let value = Zeroizing::new(req.value);
    if req.key.is_empty() || value.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "both 'key' and 'value' are required",
        ));
    }
    if is_reserved(&req.key) {
        return Err(reserved(&req.key));
    }
    let (_, provider) = s.secrets.default_provider().await?;
    let caps = provider.capabilities().await?;
    if !caps.write {
        return Err(unsupported("creating secrets"));
    }
    let _one = s.secrets.api_write().await;
    if caps.read {
        match provider.get(&req.key).await {
            Ok(_) => return Err(SecretsError::Exists.into()),
            Err(SecretsError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    provider.set(&req.key, &value).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyChanged {
            key: req.key,
            message: "Secret created successfully".into(),
        }),
    ))
}

/// Update a secret of the default provider.
#[utoipa::path(put, path = "/api/v1beta/secrets/default/keys/{key}", tag = "secrets",
    params(("key" = String, Path, description = "Secret key")), request_body = UpdateRequest,
    responses((status = 200, description = "OK", body = KeyChanged),
        (status = 400, description = "Bad Request", body = String),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 404, description = "Not Found - Provider not setup or secret not found", body = String),
        (status = 405, description = "Method Not Allowed - Provider doesn't support writing", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn update_key(
    State(s): State<AppState>,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> ApiResult<Json<KeyChanged>> {
    let value = Zeroizing::new(req.value);
    if value.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "value is required"));
    }
    if is_reserved(&key) {
        return Err(reserved(&key));
    }
    let (_, provider) = s.secrets.default_provider().await?;
    let caps = provider.capabilities().await?;
    if !caps.write {
        return Err(unsupported("updating secrets"));
    }
    let _one = s.secrets.api_write().await;
    if caps.read {
        provider.get(&key).await?;
    }
    provider.set(&key, &value).await?;
    Ok(Json(KeyChanged {
        key,
        message: "Secret updated successfully".into(),
    }))
}

/// Delete a secret of the default provider.
#[utoipa::path(delete, path = "/api/v1beta/secrets/default/keys/{key}", tag = "secrets",
    params(("key" = String, Path, description = "Secret key")),
    responses((status = 204, description = "No Content"),
        (status = 400, description = "Bad Request", body = String),
        (status = 403, description = "Wrong password for the encrypted store", body = String),
        (status = 404, description = "Not Found - Provider not setup or secret not found", body = String),
        (status = 405, description = "Method Not Allowed - Provider doesn't support deletion", body = String),
        (status = 503, description = "The provider cannot be opened (the reason is given)", body = String),
        (status = 500, description = "Internal Server Error", body = String)))]
pub(super) async fn delete_key(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    if is_reserved(&key) {
        return Err(reserved(&key));
    }
    let (_, provider) = s.secrets.default_provider().await?;
    if !provider.capabilities().await?.delete {
        return Err(unsupported("deleting secrets"));
    }
    let _one = s.secrets.api_write().await;
    provider.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}
