//! OAuth 2.0 Token Introspection (RFC 7662) of tokens that are not JWTs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use url::form_urlencoded;

use super::{AuthnError, Validator, fetch_options, invalid, shown, subject};
use crate::auth::Identity;

/// The largest introspection answer accepted.
const MAX_BYTES: usize = 64 * 1024;

impl Validator {
    /// Asks the introspection endpoint `url` about `token`: it must be
    /// `active`, then its `iss`, `aud`, `exp`, `nbf` and `iat` are checked
    /// when present, and `sub` is required.
    pub(super) async fn introspect(&self, url: &str, token: &str) -> Result<Identity, AuthnError> {
        let settings = &self.inner.settings;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut opts = fetch_options(MAX_BYTES);
        let client_id = settings.client_id.trim();
        if !client_id.is_empty() && !settings.client_secret.is_empty() {
            // RFC 6749 2.3.1: both form-encoded, then Basic.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!("{}:{}", encode(client_id), encode(&settings.client_secret));
            opts.headers.push((
                "Authorization".into(),
                format!("Basic {}", STANDARD.encode(credentials)),
            ));
        }
        let unavailable = |message: String| {
            tracing::warn!(url = %shown(url), error = %message, "Cannot introspect a token; it is refused with 503.");
            AuthnError::Unavailable(message)
        };
        let answer = self
            .inner
            .fetcher
            .post(
                url,
                "application/x-www-form-urlencoded",
                body.into_bytes(),
                &opts,
            )
            .await
            .map_err(|e| unavailable(format!("POST {}: {e}", shown(url))))?;
        if !(200..300).contains(&answer.status) {
            return Err(unavailable(format!(
                "the introspection endpoint {} answered HTTP {}",
                shown(url),
                answer.status
            )));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&answer.body).map_err(|_| {
            unavailable(format!(
                "the introspection endpoint {} answered something other than a JSON object",
                shown(url)
            ))
        })?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(invalid("the token is not active"));
        }
        self.check_claims(&claims, false)?;
        let subject = subject(&claims)?;
        Ok(Identity::with_claims(subject, claims))
    }
}
