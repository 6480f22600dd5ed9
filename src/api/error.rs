//! `ApiError`: the one mapping from domain errors to HTTP status codes.
//!
//! Bodies are plain text (`message\n`), as ToolHive's, so existing clients
//! show them unchanged; every 4xx names what was wrong. 5xx details are
//! logged, not returned, except for 503 which says what is unavailable.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_runtime_api::RuntimeError;

use crate::clients::ClientError;
use crate::groups::GroupError;
use crate::plugins::PluginError;
use crate::registry::RegistryError;
use crate::secrets::SecretsError;
use crate::workloads::WorkloadError;
use crate::workloads::upgrade::UpgradeError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// A machine code: the body is then ToolHive's registry error object
    /// `{"code", "message"}` (JSON) instead of text.
    code: Option<&'static str>,
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// A registry error object (`{"code", "message"}`).
    pub fn registry_code(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            message,
            code: Some(code),
        }
    }

    /// A registry error in the JSON style of the v0.1 routes.
    pub fn registry_json(err: RegistryError) -> Self {
        let (status, code) = registry_status(&err);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %err, "Registry request failed.");
            return Self::registry_code(status, "internal_error", "Internal Server Error".into());
        }
        Self::registry_code(status, code, registry_message(&err))
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn internal(err: &dyn std::error::Error) -> Self {
        let mut chain = err.to_string();
        let mut cur = err.source();
        while let Some(e) = cur {
            chain.push_str(": ");
            chain.push_str(&e.to_string());
            cur = e.source();
        }
        tracing::error!(error = %chain, "Request failed.");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        let status = match &err {
            RuntimeError::NotFound(_) => StatusCode::NOT_FOUND,
            RuntimeError::AlreadyExists(_)
            | RuntimeError::NotRunning(_)
            | RuntimeError::AlreadyAttached(_) => StatusCode::CONFLICT,
            RuntimeError::InvalidSpec(_) => StatusCode::BAD_REQUEST,
            RuntimeError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => return Self::internal(&err),
        };
        let mut message = err.to_string();
        if let RuntimeError::Unavailable { source, .. } = &err {
            message = format!("{message}: {source}");
        }
        Self::new(status, message)
    }
}

impl From<GroupError> for ApiError {
    fn from(err: GroupError) -> Self {
        let status = match &err {
            GroupError::InvalidName(_) | GroupError::DeleteDefault => StatusCode::BAD_REQUEST,
            GroupError::NotFound(_) => StatusCode::NOT_FOUND,
            GroupError::AlreadyExists(_) => StatusCode::CONFLICT,
            _ => return Self::internal(&err),
        };
        Self::new(status, err.to_string())
    }
}

impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        let status = match err {
            ClientError::Unsupported { .. }
            | ClientError::Invalid(_)
            | ClientError::File { .. } => StatusCode::BAD_REQUEST,
            ClientError::NoHome => StatusCode::SERVICE_UNAVAILABLE,
            ClientError::Group(g) => return g.into(),
        };
        Self::new(status, err.to_string())
    }
}

impl From<WorkloadError> for ApiError {
    fn from(err: WorkloadError) -> Self {
        let status = match err {
            WorkloadError::InvalidName(_)
            | WorkloadError::InvalidNameIn { .. }
            | WorkloadError::Invalid(_)
            | WorkloadError::Unsupported(_)
            | WorkloadError::PortUnavailable(_) => StatusCode::BAD_REQUEST,
            WorkloadError::NotFound(_) | WorkloadError::NoServerLogs(_) => StatusCode::NOT_FOUND,
            WorkloadError::AlreadyExists(_) => StatusCode::CONFLICT,
            WorkloadError::NoFreePort(..) => StatusCode::SERVICE_UNAVAILABLE,
            WorkloadError::Group(e) => return e.into(),
            WorkloadError::Runtime(e) => return e.into(),
            _ => return Self::internal(&err),
        };
        Self::new(status, err.to_string())
    }
}

impl From<UpgradeError> for ApiError {
    fn from(err: UpgradeError) -> Self {
        match err {
            UpgradeError::Workload(e) => e.into(),
            e @ UpgradeError::Unprocessable { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            e @ UpgradeError::RolledBack { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            e => Self::internal(&e),
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(err: PluginError) -> Self {
        let status = match err {
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::WrongKind { .. } | PluginError::Config(_) => StatusCode::BAD_REQUEST,
            PluginError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            _ => return Self::internal(&err),
        };
        Self::new(status, err.to_string())
    }
}

impl From<SecretsError> for ApiError {
    /// Every message names what was wrong and never carries a value.
    fn from(err: SecretsError) -> Self {
        let status = match &err {
            SecretsError::NotFound(_) | SecretsError::NotSetUp => StatusCode::NOT_FOUND,
            SecretsError::Invalid(_) => StatusCode::BAD_REQUEST,
            SecretsError::Denied(_) => StatusCode::FORBIDDEN,
            SecretsError::Exists => StatusCode::CONFLICT,
            SecretsError::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            SecretsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SecretsError::Failed(_) => StatusCode::BAD_GATEWAY,
        };
        Self::new(status, err.to_string())
    }
}

/// The one status (and machine code) of each registry error.
fn registry_status(err: &RegistryError) -> (StatusCode, &'static str) {
    match err {
        RegistryError::UnknownRegistry(_) | RegistryError::NotFound(_) => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        RegistryError::Ambiguous { .. }
        | RegistryError::Invalid(_)
        | RegistryError::DeleteDefault => (StatusCode::BAD_REQUEST, "bad_request"),
        RegistryError::Exists(_) | RegistryError::ReadOnly(_) => (StatusCode::CONFLICT, "conflict"),
        RegistryError::Unreachable(_) => (StatusCode::GATEWAY_TIMEOUT, "registry_unreachable"),
        RegistryError::ValidationFailed(_)
        | RegistryError::Denied(_)
        | RegistryError::Failed(_) => (StatusCode::BAD_GATEWAY, "registry_invalid"),
        RegistryError::LegacyFormat(_) => (StatusCode::BAD_GATEWAY, "registry_legacy_format"),
        RegistryError::LoginFailed(_) => (StatusCode::BAD_GATEWAY, "registry_login_failed"),
        RegistryError::AuthRequired(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "registry_auth_required")
        }
        RegistryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

fn registry_message(err: &RegistryError) -> String {
    match err {
        RegistryError::AuthRequired(why) => format!(
            "Registry authentication required ({why}). POST to /api/v1beta/registry/auth/login to authenticate."
        ),
        other => other.to_string(),
    }
}

impl From<RegistryError> for ApiError {
    /// Text, except the source states ToolHive answers with its registry
    /// error object (auth required, unavailable, legacy format).
    fn from(err: RegistryError) -> Self {
        let (status, code) = registry_status(&err);
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => Self::internal(&err),
            StatusCode::SERVICE_UNAVAILABLE => Self::registry_json(err),
            _ if code == "registry_legacy_format" => Self::registry_json(err),
            _ => Self::new(status, registry_message(&err)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(code) = self.code {
            let body = serde_json::json!({"code": code, "message": self.message});
            return (self.status, axum::Json(body)).into_response();
        }
        let mut body = self.message;
        body.push('\n');
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}
