//! `ApiJson`: a JSON body extractor whose every failure is an `ApiError`.
//!
//! It reads the body whatever its content type (as ToolHive does), answers
//! 413 past the body limit, and 400 with the decoder's message otherwise.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("request body larger than {} bytes", super::MAX_BODY_BYTES),
                )
            } else {
                ApiError::new(
                    status,
                    format!("failed to read request: {}", rejection.body_text()),
                )
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("failed to decode request: {e}"),
            )
        })
    }
}
