//! The issuer's signing keys: OIDC discovery, fetching and parsing the JWK
//! set, and the cache that serialises fetches (one in flight, at most one
//! per [`Timing::min_refetch`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::{ACCEPTED, fetch_options, is_secure, shown};
use crate::registry::fetch::Fetcher;

/// The largest discovery document or JWK set accepted.
const MAX_BYTES: usize = 256 * 1024;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// How often keys may be fetched and when they are old.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// The least time between two fetches.
    pub(super) min_refetch: Duration,
    /// The age after which cached keys are refreshed in the background.
    pub(super) max_age: Duration,
}

/// The kinds of key berth verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind signs with `alg`.
    fn signs_with(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable signing key of the set.
#[derive(Clone)]
pub(super) struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when it names one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    pub(super) decoding: DecodingKey,
}

impl Key {
    fn signs_with(&self, alg: Algorithm) -> bool {
        self.kind.signs_with(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of one fetch of the JWK set.
pub(super) struct KeySet {
    keys: Vec<Key>,
    fetched_at: Instant,
}

/// Which key checks a token.
pub(super) enum Pick<'a> {
    /// This one.
    Key(&'a Key),
    /// No key has the token's `kid` (or the set is empty).
    Unknown,
    /// The token names no `kid` and the set has several keys.
    NoKid,
    /// The keys with the token's `kid` do not sign with its `alg`.
    Mismatch,
}

impl KeySet {
    /// The key for a token signed with `alg` by `kid`. Without a `kid`
    /// only a set of one key answers.
    pub(super) fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Pick<'_> {
        let candidates: Vec<&Key> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() > 1 => return Pick::NoKid,
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Pick::Unknown;
        }
        candidates
            .into_iter()
            .find(|k| k.signs_with(alg))
            .map_or(Pick::Mismatch, Pick::Key)
    }

    #[cfg(test)]
    pub(super) fn new(keys: Vec<Key>) -> Self {
        Self {
            keys,
            fetched_at: Instant::now(),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The keys as last fetched, and how the last fetch went.
#[derive(Clone, Default)]
pub(super) struct Snapshot {
    /// The keys of the last successful fetch.
    pub(super) keys: Option<Arc<KeySet>>,
    /// Counts finished fetch attempts: a caller that waited for the fetch
    /// lock sees whether another attempt ended meanwhile.
    pub(super) generation: u64,
    /// Why the last attempt failed, when it did.
    error: Option<String>,
}

impl Snapshot {
    /// The reason keys are missing, for [`super::AuthnError::Unavailable`].
    pub(super) fn unavailable(&self) -> String {
        match &self.error {
            Some(error) => format!("the OIDC issuer's signing keys cannot be had: {error}"),
            None => "the OIDC issuer's signing keys cannot be had yet".to_owned(),
        }
    }
}

/// A failed fetch of the keys (or of the discovery document before them).
struct FetchFailure {
    /// The URL that failed, without its query.
    url: String,
    message: String,
}

/// The cached keys of one issuer.
pub(super) struct KeyCache {
    issuer: String,
    /// The configured JWK set URL; `None` means discovery.
    jwks_url: Option<String>,
    fetcher: Fetcher,
    timing: Timing,
    snapshot: Mutex<Snapshot>,
    /// Held for the whole of a fetch: fetches are serialised.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Whether a background refresh is under way.
    background: AtomicBool,
}

#[derive(Default)]
struct FetchState {
    /// When the last attempt ended.
    last_attempt: Option<Instant>,
    /// The JWK set URL discovery found.
    discovered: Option<String>,
}

impl KeyCache {
    pub(super) fn new(
        issuer: String,
        jwks_url: Option<String>,
        fetcher: Fetcher,
        timing: Timing,
    ) -> Self {
        Self {
            issuer,
            jwks_url,
            fetcher,
            timing,
            snapshot: Mutex::default(),
            fetch: tokio::sync::Mutex::default(),
            background: AtomicBool::new(false),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `keys` are old enough to be refreshed.
    pub(super) fn is_stale(&self, keys: &KeySet) -> bool {
        keys.fetched_at.elapsed() >= self.timing.max_age
    }

    /// Claims the background refresh; `false` when one is under way.
    pub(super) fn start_background(&self) -> bool {
        !self.background.swap(true, Ordering::AcqRel)
    }

    pub(super) fn end_background(&self) {
        self.background.store(false, Ordering::Release);
    }

    /// Fetches the keys again unless an attempt ended since the caller's
    /// snapshot (`seen`, its generation), or less than
    /// [`Timing::min_refetch`] ago; returns the snapshot after it. The
    /// cached keys survive a failed fetch.
    pub(super) async fn refresh(&self, seen: u64) -> Snapshot {
        let mut state = self.fetch.lock().await;
        let current = self.snapshot();
        if current.generation != seen {
            return current; // another caller's attempt ended while we waited
        }
        if let Some(at) = state.last_attempt
            && at.elapsed() < self.timing.min_refetch
        {
            return current;
        }
        let outcome = self.fetch_keys(&mut state).await;
        // Recorded once the attempt ends: a cancelled one does not count.
        state.last_attempt = Some(Instant::now());
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        snapshot.generation += 1;
        match outcome {
            Ok(keys) => {
                tracing::debug!(issuer = %self.issuer, keys = keys.keys.len(), "OIDC signing keys fetched.");
                snapshot.keys = Some(keys);
                snapshot.error = None;
            }
            Err(failure) => {
                let cached = snapshot.keys.is_some();
                tracing::warn!(
                    issuer = %self.issuer,
                    url = %failure.url,
                    error = %failure.message,
                    cached,
                    "Cannot fetch the OIDC issuer's signing keys (JWKS); without cached keys its tokens are refused with 503."
                );
                snapshot.error = Some(failure.message);
            }
        }
        snapshot.clone()
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<Arc<KeySet>, FetchFailure> {
        let url = match (&self.jwks_url, &state.discovered) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover().await?;
                state.discovered = Some(url.clone());
                url
            }
        };
        let body = get(&self.fetcher, &url).await?;
        let keys = parse_key_set(&body).map_err(|message| FetchFailure {
            url: shown(&url),
            message: format!("the JWK set at {} is unusable: {message}", shown(&url)),
        })?;
        Ok(Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        }))
    }

    /// The JWK set URL of the issuer's discovery document, whose `issuer`
    /// must be the configured one.
    async fn discover(&self) -> Result<String, FetchFailure> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let fail = |message: String| FetchFailure {
            url: shown(&url),
            message,
        };
        let body = get(&self.fetcher, &url).await?;
        let doc: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            fail(format!(
                "the discovery document at {} is not a JSON object: {e}",
                shown(&url)
            ))
        })?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(fail(format!(
                "the discovery document at {} names another issuer than `{}`",
                shown(&url),
                self.issuer
            )));
        }
        let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
            return Err(fail(format!(
                "the discovery document at {} has no `jwks_uri`",
                shown(&url)
            )));
        };
        if super::check_url("jwks_uri", jwks_uri).is_err() {
            return Err(fail(format!(
                "the discovery document at {} names a `jwks_uri` that is not an https URL (plain http only to a loopback host)",
                shown(&url)
            )));
        }
        Ok(jwks_uri.trim().to_owned())
    }
}

/// GETs `url`: a 2xx answer from a secure final URL.
async fn get(fetcher: &Fetcher, url: &str) -> Result<Bytes, FetchFailure> {
    let fail = |message: String| FetchFailure {
        url: shown(url),
        message,
    };
    let answer = fetcher
        .get(url, &fetch_options(MAX_BYTES))
        .await
        .map_err(|e| fail(format!("GET {}: {e}", shown(url))))?;
    if !url::Url::parse(&answer.final_url).is_ok_and(|u| is_secure(&u)) {
        return Err(fail(format!(
            "GET {} was redirected to a plain http URL",
            shown(url)
        )));
    }
    if !(200..300).contains(&answer.status) {
        return Err(fail(format!(
            "GET {} answered HTTP {}",
            shown(url),
            answer.status
        )));
    }
    Ok(answer.body)
}

/// The usable signing keys of a JWK set: `use` absent or `sig`, `key_ops`
/// absent or with `verify`, a supported key type and curve, an asymmetric
/// `alg` if any. Other keys are skipped; a set with none is an error.
pub(super) fn parse_key_set(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err("it has no `keys` array".to_owned());
    };
    let keys: Vec<Key> = entries
        .iter()
        .filter_map(|entry| entry.as_object().and_then(usable_key))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys is a usable signing key",
            entries.len()
        ));
    }
    Ok(keys)
}

fn usable_key(jwk: &Map<String, Value>) -> Option<Key> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return None;
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(alg) => {
            let alg = alg.as_str()?;
            Some(ACCEPTED.iter().find(|(name, _)| *name == alg)?.1)
        }
    };
    let decoded_len = |name: &str| URL_SAFE_NO_PAD.decode(text(name)?).ok();
    let (kind, decoding) = match text("kty")? {
        "RSA" => {
            let n = decoded_len("n")?;
            let e = decoded_len("e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_BYTES || e.is_empty() {
                return None;
            }
            let key = DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?;
            (KeyKind::Rsa, key)
        }
        "EC" => {
            let (kind, len) = match text("crv")? {
                "P-256" => (KeyKind::P256, 32),
                "P-384" => (KeyKind::P384, 48),
                _ => return None,
            };
            if decoded_len("x")?.len() != len || decoded_len("y")?.len() != len {
                return None;
            }
            let key = DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?;
            (kind, key)
        }
        "OKP" => {
            // The library slices 32 bytes off `x`: check the length first.
            if text("crv")? != "Ed25519" || decoded_len("x")?.len() != 32 {
                return None;
            }
            let key = DecodingKey::from_ed_components(text("x")?).ok()?;
            (KeyKind::Ed25519, key)
        }
        _ => return None,
    };
    if alg.is_some_and(|alg| !kind.signs_with(alg)) {
        return None;
    }
    Some(Key {
        kid: text("kid").map(str::to_owned),
        alg,
        kind,
        decoding,
    })
}
