//! Who sent a request: the identity a proxy's authentication establishes
//! (`proxy/layers/authn.rs`) and every check after it reads.

use std::sync::Arc;

use serde_json::Value;

/// Who sent a request, as the proxy's authentication established it.
///
/// This is the request's identity slot: the authentication layer
/// (`layers/authn.rs`) puts an `Identity` into the request's extensions,
/// and every layer below it, the middleware chain included
/// (`McpRequest::identity`), reads it from there. A proxy that does not
/// authenticate its callers leaves the slot empty. An identity never holds
/// the caller's token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The authenticated subject (a user or service name, a token's `sub`).
    pub subject: String,
    /// The verified claims of the caller's token (`sub`, `iss`, `aud`,
    /// `groups`, …), as the issuer wrote them; empty when the identity
    /// did not come from a token.
    pub claims: Arc<serde_json::Map<String, Value>>,
}

impl Identity {
    /// The identity of `subject`, without claims.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            claims: Arc::default(),
        }
    }

    /// The identity of `subject` with the verified `claims` of its token.
    pub fn with_claims(subject: impl Into<String>, claims: serde_json::Map<String, Value>) -> Self {
        Self {
            subject: subject.into(),
            claims: Arc::new(claims),
        }
    }
}
