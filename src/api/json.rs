//! `ApiJson`: a JSON body extractor whose every failure is an `ApiError`.
//!
//! Without an `Origin` header it reads the body whatever its content type
//! (as ToolHive does: curl's `-d` says form content). A request that
//! carries an `Origin` comes from a web page; its body must say it is JSON
//! (415 otherwise), so that no HTML form or "simple" cross-site request can
//! pass as an API call even from an allowed origin. 413 past the body
//! limit, 400 with the decoder's message otherwise. Unknown fields are
//! accepted (ToolHive clients send fields berth may not know) and logged
//! at WARN once per field name; the types of security-relevant objects
//! refuse unknown keys themselves (`deny_unknown_fields`).

use std::collections::HashSet;
use std::sync::Mutex;

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub T);

/// Whether a `Content-Type` value names JSON (`application/json`,
/// `application/*+json`, any parameters).
fn is_json(content_type: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Field names already warned about, so that a client sending the same
/// unknown field on every call does not fill the log. Bounded: a hostile
/// client cannot grow it past this.
const MAX_WARNED: usize = 256;
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn warn_unknown(path: &str) {
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    let warned = warned.get_or_insert_with(HashSet::new);
    if warned.len() >= MAX_WARNED || warned.contains(path) {
        return;
    }
    warned.insert(path.to_owned());
    // `?`: a field name from the request is shown escaped, never as raw
    // text that could forge a log line.
    tracing::warn!(field = ?path, "Ignored an unknown field in a request body.");
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        decode(&bytes).map(ApiJson)
    }
}

/// A JSON request body that may be left out: an empty body reads as
/// `T::default()` (ToolHive's optional bodies, e.g. an upgrade's).
#[derive(Debug)]
pub(super) struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        decode(&bytes).map(OptionalJson)
    }
}

/// The body of `req`, refused as `ApiJson` says.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if req.headers().contains_key(header::ORIGIN)
        && !req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_json(v.as_bytes()))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request from a web page must send its body as `Content-Type: application/json`",
        ));
    }
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
    Ok(bytes)
}

/// `bytes` as a `T`; unknown fields are logged.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_ignored::deserialize(&mut de, |path| warn_unknown(&path.to_string()))
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("failed to decode request: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for (ct, want) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain;charset=UTF-8", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("text/json", false),
            ("application/jsonx", false),
            ("", false),
        ] {
            assert_eq!(is_json(ct.as_bytes()), want, "{ct}");
        }
    }
}
