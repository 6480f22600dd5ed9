//! `ApiError`: the one mapping from domain errors to HTTP status codes.
//!
//! Bodies are plain text (`message\n`), as ToolHive's, so existing clients
//! show them unchanged; every 4xx names what was wrong. 5xx details are
//! logged, not returned, except for 503 which says what is unavailable.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_runtime_api::RuntimeError;

use crate::groups::GroupError;
use crate::plugins::PluginError;
use crate::workloads::WorkloadError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
