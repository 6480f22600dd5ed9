//! Bearer-token validation for berth as an OAuth 2.1 resource server: each
//! workload's proxy (its `oidc` options) and the management API
//! (`[api] auth = "oidc"`) accept the access tokens of one issuer.
//!
//! A JWT is checked against the issuer's published keys (its JWK set, found
//! by OIDC discovery unless configured): an asymmetric algorithm that its
//! key allows, a valid signature, then `iss`, `aud`, `exp`, `nbf`, `iat`
//! (with [`LEEWAY`] for clock skew) and `sub`. A token that is not a JWT
//! (an opaque one) is asked about at the RFC 7662 introspection endpoint
//! when one is configured, and refused otherwise.
//!
//! Invariants:
//!
//! - A failure never lets a token through: keys (or an introspection
//!   answer) that cannot be had give [`AuthnError::Unavailable`] (503).
//! - No token, client secret nor whole JWT appears in an error, a log line
//!   or a `Debug` output.
//! - Keys come only from the configured (or discovered) JWK set URL, never
//!   from the token (its `jku`, `jwk`, `x5u` and `x5c` headers are ignored).
//! - The JWK set is fetched on first use and cached. A token naming an
//!   unknown `kid` triggers a refetch (rotated keys are picked up); all
//!   fetches of one validator are serialised, concurrent validations share
//!   the one in flight, and a validator fetches at most once per
//!   [`REFETCH_INTERVAL`]. A cache older than [`MAX_KEY_AGE`] is refreshed
//!   in the background while the cached keys go on serving.
//! - Every request goes through berth's guarded [`Fetcher`]. Private
//!   addresses are allowed (identity providers often live on the internal
//!   network, and these URLs are the operator's), but plain `http` only to
//!   a loopback host: checked on the configured URLs, the discovered
//!   `jwks_uri` and the final URL of every answer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::auth::Identity;
use crate::registry::fetch::{FetchOptions, Fetcher, PrivatePolicy};

mod introspect;
mod jwks;
#[cfg(test)]
mod tests;

use jwks::{KeyCache, Pick, Timing};

/// The clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// How long a JWT, once verified, is accepted again without checking its
/// signature (while it has not expired): a client sends the same token on
/// every request, and a signature check costs far more than the request.
pub const ACCEPTED_FOR: Duration = Duration::from_secs(300);
/// Verified JWTs remembered (by SHA-256 digest, never the token itself);
/// past it the memory starts afresh.
const MAX_ACCEPTED: usize = 4096;

/// The least time between two fetches of the JWK set by one validator.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// The age after which cached keys are refreshed in the background.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// The longest token looked at; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// The signing algorithms accepted, by their JOSE names: asymmetric only.
const ACCEPTED: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// How tokens are validated: built from a workload's `oidc` options or
/// berth.toml's `[api.oidc]`. Its `Debug` hides the client secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OidcSettings {
    /// The issuer, compared exactly (surrounding whitespace trimmed) with
    /// a token's `iss`; required.
    pub issuer: String,
    /// This resource's name, which a token's `aud` (a string or an array)
    /// must contain; required.
    pub audience: String,
    /// The issuer's JWK set; empty means OIDC discovery
    /// (`<issuer>/.well-known/openid-configuration`, its `jwks_uri`).
    pub jwks_url: String,
    /// An RFC 7662 introspection endpoint, asked about tokens that are not
    /// JWTs; empty means such tokens are refused.
    pub introspection_url: String,
    /// The client id berth authenticates with at the introspection
    /// endpoint (HTTP Basic, with `client_secret`).
    pub client_id: String,
    /// The secret of `client_id`; never logged nor shown.
    pub client_secret: String,
    /// The scopes advertised in the protected resource metadata (RFC 9728);
    /// not checked.
    pub scopes: Vec<String>,
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.client_secret.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &secret)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl OidcSettings {
    /// Checks the settings: an issuer that is an absolute URL, an audience,
    /// and every URL `https`, except plain `http` to a loopback host
    /// (127.0.0.0/8, `::1`, `localhost`: tests and local identity
    /// providers).
    pub fn validate(&self) -> Result<(), OidcConfigError> {
        if self.issuer.trim().is_empty() {
            return Err(OidcConfigError::Missing { field: "issuer" });
        }
        let issuer = check_url("issuer", &self.issuer)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(OidcConfigError::InvalidUrl {
                field: "issuer",
                reason: "an issuer has no query nor fragment".into(),
            });
        }
        if self.audience.trim().is_empty() {
            return Err(OidcConfigError::Missing { field: "audience" });
        }
        for (field, value) in [
            ("jwks_url", &self.jwks_url),
            ("introspection_url", &self.introspection_url),
        ] {
            if !value.trim().is_empty() {
                check_url(field, value)?;
            }
        }
        if self.client_id.trim().is_empty() && !self.client_secret.is_empty() {
            return Err(OidcConfigError::Missing { field: "client_id" });
        }
        Ok(())
    }
}

/// Why OIDC settings are unusable. The messages name the field, never a
/// secret nor a whole URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcConfigError {
    /// A required field is empty.
    #[error("the OIDC setting `{field}` is required")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A URL that does not parse, is not `http(s)`, has no host or carries
    /// credentials.
    #[error("the OIDC setting `{field}` is not a usable URL: {reason}")]
    InvalidUrl {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Plain `http` to a host that is not loopback.
    #[error("the OIDC setting `{field}` must be an https URL (plain http only to a loopback host)")]
    Insecure {
        /// The field.
        field: &'static str,
    },
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// The token is not acceptable: answered 401 `invalid_token`. The text
    /// is a short reason, safe to show the caller (e.g. "the token has
    /// expired"); it never contains the token.
    #[error("{0}")]
    Invalid(String),
    /// The issuer's keys (or the introspection endpoint) cannot be had:
    /// answered 503, never treated as valid. The text is for berth's log:
    /// it names the URL (without its query), never the token.
    #[error("{0}")]
    Unavailable(String),
}

fn invalid(reason: &str) -> AuthnError {
    AuthnError::Invalid(reason.to_owned())
}

// === impl Validator ===

/// Validates the bearer tokens of one issuer for one resource; cheap to
/// clone, shared by all the requests of a proxy (or of the API).
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    /// The issuer, trimmed.
    issuer: String,
    /// The audience, trimmed.
    audience: String,
    /// The introspection endpoint, trimmed, when configured.
    introspection_url: Option<String>,
    fetcher: Fetcher,
    keys: KeyCache,
    /// JWTs verified lately, by SHA-256 digest: who, until when (`exp`,
    /// seconds since the epoch), since when, and with which key set (a
    /// token is verified again once the issuer's keys were fetched anew: a
    /// retired key's tokens stop at once).
    accepted: std::sync::Mutex<std::collections::HashMap<[u8; 32], Accepted>>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("jwks_url", &self.inner.settings.jwks_url)
            .field("introspection_url", &self.inner.introspection_url)
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// A validator for `settings` (checked with [`OidcSettings::validate`])
    /// fetching keys through `fetcher`. Nothing is fetched yet.
    pub fn new(settings: OidcSettings, fetcher: Fetcher) -> Result<Self, OidcConfigError> {
        Self::with_timing(
            settings,
            fetcher,
            Timing {
                min_refetch: REFETCH_INTERVAL,
                max_age: MAX_KEY_AGE,
            },
        )
    }

    fn with_timing(
        settings: OidcSettings,
        fetcher: Fetcher,
        timing: Timing,
    ) -> Result<Self, OidcConfigError> {
        settings.validate()?;
        let issuer = settings.issuer.trim().to_owned();
        let jwks_url = Some(settings.jwks_url.trim().to_owned()).filter(|u| !u.is_empty());
        let introspection_url =
            Some(settings.introspection_url.trim().to_owned()).filter(|u| !u.is_empty());
        let keys = KeyCache::new(issuer.clone(), jwks_url, fetcher.clone(), timing);
        Ok(Self {
            inner: Arc::new(Inner {
                audience: settings.audience.trim().to_owned(),
                issuer,
                introspection_url,
                fetcher,
                keys,
                settings,
                accepted: std::sync::Mutex::default(),
            }),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &OidcSettings {
        &self.inner.settings
    }

    /// Validates `token`, the value of an `Authorization: Bearer` header
    /// without the `Bearer ` prefix, and returns who presented it: the
    /// `sub` claim and every verified claim.
    pub async fn validate(&self, token: &str) -> Result<Identity, AuthnError> {
        if token.is_empty() {
            return Err(invalid("the token is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is too long"));
        }
        if looks_like_jwt(token) {
            use sha2::Digest;
            let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            let now = now_secs();
            let current = self.inner.keys.snapshot().keys;
            let same_keys = |a: &Option<Arc<jwks::KeySet>>| match (a, &current) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if let Some(hit) = self
                .inner
                .accepted
                .lock()
                .expect("accepted tokens lock")
                .get(&digest)
                && now < hit.exp + LEEWAY.as_secs_f64()
                && hit.at.elapsed() < ACCEPTED_FOR
                && same_keys(&hit.keys)
            {
                return Ok(hit.identity.clone());
            }
            let identity = self.validate_jwt(token).await?;
            if let Some(exp) = identity.claims.get("exp").and_then(Value::as_f64) {
                let keys = self.inner.keys.snapshot().keys;
                let mut accepted = self.inner.accepted.lock().expect("accepted tokens lock");
                if accepted.len() >= MAX_ACCEPTED {
                    accepted.clear();
                }
                accepted.insert(
                    digest,
                    Accepted {
                        identity: identity.clone(),
                        exp,
                        at: std::time::Instant::now(),
                        keys,
                    },
                );
            }
            return Ok(identity);
        }
        match &self.inner.introspection_url {
            Some(url) => self.introspect(url, token).await,
            None => Err(invalid(
                "the token is not a JWT and this resource does not introspect tokens",
            )),
        }
    }

    /// The OAuth 2.0 Protected Resource Metadata (RFC 9728) of `resource`
    /// (the resource's URL) protected by this validator's issuer.
    pub fn protected_resource_metadata(&self, resource: &str) -> Value {
        let mut doc = Map::new();
        doc.insert("resource".into(), resource.into());
        doc.insert(
            "authorization_servers".into(),
            Value::Array(vec![self.inner.issuer.clone().into()]),
        );
        doc.insert(
            "bearer_methods_supported".into(),
            Value::Array(vec!["header".into()]),
        );
        let scopes = &self.inner.settings.scopes;
        if !scopes.is_empty() {
            doc.insert("scopes_supported".into(), scopes.clone().into());
        }
        Value::Object(doc)
    }

    async fn validate_jwt(&self, token: &str) -> Result<Identity, AuthnError> {
        let alg = header_algorithm(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token's header is malformed"))?;
        if header.crit.as_ref().is_some_and(|crit| !crit.is_empty()) {
            return Err(invalid(
                "the token's header has critical extensions this resource does not understand",
            ));
        }
        let kid = header.kid.as_deref();
        let key = self.key_for(kid, alg).await?;

        let mut validation = Validation::new(alg);
        // The claims are checked below, the same way as an introspection
        // answer's; the library checks the signature only.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| decode_error(&e))?;
        let claims = data.claims;
        self.check_claims(&claims, true)?;
        let subject = subject(&claims)?;
        Ok(Identity::with_claims(subject, claims))
    }

    /// The key that checks a token signed with `alg` by key `kid`.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<jwks::Key, AuthnError> {
        let cache = &self.inner.keys;
        let mut snapshot = cache.snapshot();
        if snapshot.keys.is_none() {
            snapshot = cache.refresh(snapshot.generation).await;
        }
        let Some(keys) = snapshot.keys.clone() else {
            return Err(AuthnError::Unavailable(snapshot.unavailable()));
        };
        if cache.is_stale(&keys) {
            self.refresh_in_background(snapshot.generation);
        }
        let keys = if matches!(keys.pick(kid, alg), Pick::Unknown) {
            // Rotated keys: fetch again (unless fetched just now).
            cache
                .refresh(snapshot.generation)
                .await
                .keys
                .unwrap_or(keys)
        } else {
            keys
        };
        match keys.pick(kid, alg) {
            Pick::Key(key) => Ok(key.clone()),
            Pick::Unknown => Err(invalid("the token's signing key is not known")),
            Pick::NoKid => Err(invalid(
                "the token names no key (kid) and the issuer has several",
            )),
            Pick::Mismatch => Err(invalid("the token's algorithm does not match its key")),
        }
    }

    fn refresh_in_background(&self, generation: u64) {
        if !self.inner.keys.start_background() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.inner.keys.refresh(generation).await;
            this.inner.keys.end_background();
        });
    }

    /// Checks `iss`, `aud`, `exp`, `nbf` and `iat`. A JWT must carry `iss`,
    /// `aud` and `exp`; an introspection answer is checked on those it
    /// carries.
    fn check_claims(&self, claims: &Map<String, Value>, jwt: bool) -> Result<(), AuthnError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let leeway = LEEWAY.as_secs_f64();
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.inner.issuer => {}
            None if !jwt => {}
            None => return Err(invalid("the token has no issuer (iss)")),
            Some(_) => return Err(invalid("the token's issuer is not the expected one")),
        }
        match claims.get("aud") {
            Some(aud) if audience_contains(aud, &self.inner.audience) => {}
            None if !jwt => {}
            None => return Err(invalid("the token has no audience (aud)")),
            Some(_) => return Err(invalid("the token's audience is not this resource")),
        }
        match claims.get("exp") {
            Some(exp) if now >= numeric_date(exp, "exp")? + leeway => {
                return Err(invalid("the token has expired"));
            }
            Some(_) => {}
            None if !jwt => {}
            None => return Err(invalid("the token has no expiry (exp)")),
        }
        if let Some(nbf) = claims.get("nbf")
            && numeric_date(nbf, "nbf")? > now + leeway
        {
            return Err(invalid("the token is not valid yet (nbf)"));
        }
        if let Some(iat) = claims.get("iat")
            && numeric_date(iat, "iat")? > now + leeway
        {
            return Err(invalid("the token was issued in the future (iat)"));
        }
        Ok(())
    }
}

/// Whether `token` has a JWS compact shape: three base64url segments, the
/// first two non-empty (the third is empty in an unsigned token, which is
/// then refused as a JWT rather than sent to introspection).
fn looks_like_jwt(token: &str) -> bool {
    let segments: Vec<&str> = token.split('.').collect();
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(segments.as_slice(), [h, p, s]
        if !h.is_empty() && !p.is_empty() && base64url(h) && base64url(p) && base64url(s))
}

/// The token's `alg`, when it is one berth accepts.
fn header_algorithm(token: &str) -> Result<Algorithm, AuthnError> {
    use base64::Engine as _;
    let malformed = || invalid("the token's header is malformed");
    let segment = token.split('.').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed())?;
    let header: Map<String, Value> = serde_json::from_slice(&raw).map_err(|_| malformed())?;
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(invalid("the token's header names no algorithm"));
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(invalid("unsigned tokens (alg none) are not accepted"));
    }
    if alg.starts_with("HS") {
        return Err(invalid(
            "tokens signed with a shared secret (HS256, HS384, HS512) are not accepted",
        ));
    }
    ACCEPTED
        .iter()
        .find(|(name, _)| *name == alg)
        .map(|(_, alg)| *alg)
        .ok_or_else(|| invalid("the token's signing algorithm is not supported"))
}

/// The reason shown for a token the library refused.
fn decode_error(err: &jsonwebtoken::errors::Error) -> AuthnError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::InvalidSignature => invalid("the token's signature is invalid"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => invalid("the token's algorithm does not match its key"),
        _ => invalid("the token is malformed"),
    }
}

/// Whether `aud` (a string or an array of strings) names `audience`.
fn audience_contains(aud: &Value, audience: &str) -> bool {
    match aud {
        Value::String(one) => one == audience,
        Value::Array(many) => many.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// A NumericDate claim, in seconds since the epoch.
fn numeric_date(value: &Value, claim: &str) -> Result<f64, AuthnError> {
    value
        .as_f64()
        .ok_or_else(|| AuthnError::Invalid(format!("the token's `{claim}` is not a number")))
}

/// The `sub` claim: a non-empty string.
fn subject(claims: &Map<String, Value>) -> Result<String, AuthnError> {
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(sub.to_owned()),
        _ => Err(invalid("the token has no subject (sub)")),
    }
}

/// `value` as an absolute `http(s)` URL without credentials; plain `http`
/// only to a loopback host.
fn check_url(field: &'static str, value: &str) -> Result<Url, OidcConfigError> {
    let bad = |reason: &str| OidcConfigError::InvalidUrl {
        field,
        reason: reason.to_owned(),
    };
    let url = Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("the scheme must be https"));
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not carry credentials"));
    }
    if !is_secure(&url) {
        return Err(OidcConfigError::Insecure { field });
    }
    Ok(url)
}

/// `https`, or plain `http` to a loopback host.
fn is_secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// `url` as logs and errors show it: without query, fragment nor
/// credentials.
fn shown(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// The fetch options of every request: operator-chosen URLs (private
/// addresses allowed; `http` is limited by [`is_secure`]), 5 s to connect,
/// 10 s in all.
fn fetch_options(max_bytes: usize) -> FetchOptions {
    FetchOptions {
        private: PrivatePolicy::Allow,
        max_bytes,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        max_redirects: 3,
        headers: vec![("Accept".into(), "application/json".into())],
        ..FetchOptions::default()
    }
}

/// A JWT verified lately.
struct Accepted {
    identity: Identity,
    exp: f64,
    at: std::time::Instant,
    keys: Option<Arc<jwks::KeySet>>,
}

/// Seconds since the epoch.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
