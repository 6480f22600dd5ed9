//! The headless OAuth login of a registry: OIDC discovery of its issuer,
//! the device authorization grant (RFC 8628) and the refresh grant
//! (RFC 6749 section 6), with the `oauth2` crate over berth's guarded
//! [`Fetcher`]. See [`super`] for the invariants.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AsyncHttpClient, ClientId, DeviceAuthorizationUrl, ErrorResponse, HttpRequest, HttpResponse,
    RefreshToken, RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};
use serde::Deserialize;
use time::OffsetDateTime;
use url::{Host, Url};

use super::{Token, TokenStore};
use crate::registry::AuthConfig;
use crate::registry::fetch::{FetchOptions, Fetcher, PrivatePolicy};

/// The scopes asked for when a registry's `auth` names none.
pub const DEFAULT_SCOPES: [&str; 2] = ["openid", "offline_access"];
/// An access token expiring within this is refreshed before use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// The bound of each request to the identity provider (discovery, device
/// authorization, one token request).
const IDP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the identity provider.
const IDP_MAX_BYTES: usize = 1024 * 1024;
/// The longest a device flow polls, whatever the provider says.
const MAX_FLOW: Duration = Duration::from_secs(3600);
/// The shortest wait between two polls, whatever the provider says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The answer to a login: what the user needs to approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLogin {
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// The code the user types.
    pub user_code: String,
    /// Seconds left before the code expires.
    pub expires_in: u64,
    /// Seconds between two polls of the token endpoint.
    pub interval: u64,
}

/// A wait between two polls; tests replace it.
pub type Sleep = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// The endpoints an issuer's discovery document names, and the address
/// policy they are reached with.
#[derive(Debug, Clone)]
struct Endpoints {
    token: Url,
    token_policy: PrivatePolicy,
    device: Url,
    device_policy: PrivatePolicy,
}

/// A device flow in progress.
#[derive(Debug)]
struct Flow {
    id: u64,
    login: DeviceLogin,
    deadline: Instant,
    task: tokio::task::AbortHandle,
}

/// OIDC discovery, device logins and token refreshes of the registries.
pub struct OAuth {
    fetcher: Fetcher,
    tokens: Arc<TokenStore>,
    /// Discovered endpoints by issuer.
    endpoints: Mutex<HashMap<String, Arc<Endpoints>>>,
    /// The device flow of each registry.
    flows: Mutex<HashMap<String, Flow>>,
    /// Serialises the start of a login per registry (one flow each).
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_flow: AtomicU64,
    sleep: RwLock<Sleep>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flows: Vec<String> = self
            .flows
            .lock()
            .expect("flows lock")
            .keys()
            .cloned()
            .collect();
        f.debug_struct("OAuth")
            .field("pending", &flows)
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// Logins over `fetcher`, storing tokens in `tokens`.
    pub fn new(fetcher: Fetcher, tokens: Arc<TokenStore>) -> Self {
        Self {
            fetcher,
            tokens,
            endpoints: Mutex::default(),
            flows: Mutex::default(),
            gates: Mutex::default(),
            next_flow: AtomicU64::new(1),
            sleep: RwLock::new(Arc::new(|d| Box::pin(tokio::time::sleep(d)))),
        }
    }

    /// Replaces the wait between two polls of a device flow (tests: record
    /// the intervals asked for and wait less).
    pub fn set_sleep(&self, sleep: Sleep) {
        *self.sleep.write().expect("sleep lock") = sleep;
    }

    /// Checks `auth` and its issuer (OIDC discovery, which must name a
    /// token and a device authorization endpoint) and returns it with the
    /// default scopes filled in.
    pub async fn configure(&self, auth: AuthConfig) -> Result<AuthConfig, String> {
        let mut auth = AuthConfig {
            issuer: auth.issuer.trim().to_owned(),
            client_id: auth.client_id.trim().to_owned(),
            audience: auth.audience.trim().to_owned(),
            scopes: auth
                .scopes
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        if auth.scopes.is_empty() {
            auth.scopes = DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        }
        if let Some(bad) = auth.scopes.iter().find(|s| {
            s.bytes()
                .any(|b| !(0x21..0x7f).contains(&b) || b == b'"' || b == b'\\')
        }) {
            return Err(format!(
                "invalid scope `{}`",
                crate::logging::escape_controls(bad)
            ));
        }
        self.discover(&auth.issuer).await?;
        Ok(auth)
    }

    /// The issuer's endpoints, discovered once per issuer.
    async fn endpoints(&self, issuer: &str) -> Result<Arc<Endpoints>, String> {
        let known = self
            .endpoints
            .lock()
            .expect("endpoints lock")
            .get(issuer)
            .cloned();
        match known {
            Some(e) => Ok(e),
            None => self.discover(issuer).await,
        }
    }

    /// Reads `<issuer>/.well-known/openid-configuration` (10 s).
    async fn discover(&self, issuer: &str) -> Result<Arc<Endpoints>, String> {
        let url = check_issuer(issuer)?;
        let loopback = is_loopback(&url);
        let doc_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let opts = idp_options(policy_for(&url, loopback)?);
        let fetched = self
            .fetcher
            .get(&doc_url, &opts)
            .await
            .map_err(|e| format!("OIDC discovery failed: {e}"))?;
        if fetched.status != 200 {
            return Err(format!(
                "OIDC discovery at {doc_url} answered status {}",
                fetched.status
            ));
        }
        #[derive(Deserialize)]
        struct Discovery {
            #[serde(default)]
            issuer: Option<String>,
            #[serde(default)]
            token_endpoint: Option<String>,
            #[serde(default)]
            device_authorization_endpoint: Option<String>,
        }
        let doc: Discovery = serde_json::from_slice(&fetched.body).map_err(|e| {
            format!("OIDC discovery at {doc_url} answered something that is not a discovery document: {e}")
        })?;
        if let Some(named) = &doc.issuer
            && named.trim_end_matches('/') != issuer.trim_end_matches('/')
        {
            return Err(format!(
                "the discovery document names another issuer: `{}`",
                crate::logging::escape_controls(named)
            ));
        }
        let endpoint =
            |name: &str, value: Option<String>| -> Result<(Url, PrivatePolicy), String> {
                let value = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("the issuer's discovery document names no {name}"))?;
                let parsed = Url::parse(&value)
                    .map_err(|e| format!("the issuer's {name} is not a URL: {e}"))?;
                let policy = policy_for(&parsed, loopback).map_err(|e| format!("{name}: {e}"))?;
                Ok((parsed, policy))
            };
        let (token, token_policy) = endpoint("token_endpoint", doc.token_endpoint)?;
        let (device, device_policy) = endpoint(
            "device_authorization_endpoint (a login without a browser needs the device authorization grant)",
            doc.device_authorization_endpoint,
        )?;
        let found = Arc::new(Endpoints {
            token,
            token_policy,
            device,
            device_policy,
        });
        self.endpoints
            .lock()
            .expect("endpoints lock")
            .insert(issuer.to_owned(), found.clone());
        Ok(found)
    }

    /// Starts a device login for `registry` (or returns the one pending):
    /// asks the device authorization endpoint for a code and polls the
    /// token endpoint in the background until the user approves, denies or
    /// the code expires. The token is then stored (kind `oauth`).
    pub async fn start_login(
        self: &Arc<Self>,
        registry: &str,
        auth: &AuthConfig,
    ) -> Result<DeviceLogin, String> {
        let gate = self
            .gates
            .lock()
            .expect("gates lock")
            .entry(registry.to_owned())
            .or_default()
            .clone();
        let _gate = gate.lock().await;
        {
            let mut flows = self.flows.lock().expect("flows lock");
            if let Some(flow) = flows.get(registry) {
                let now = Instant::now();
                if flow.deadline > now && !flow.task.is_finished() {
                    let mut login = flow.login.clone();
                    login.expires_in = (flow.deadline - now).as_secs();
                    return Ok(login);
                }
                if let Some(old) = flows.remove(registry) {
                    old.task.abort();
                }
            }
        }
        let endpoints = self.endpoints(&auth.issuer).await?;
        let client = BasicClient::new(ClientId::new(auth.client_id.clone()))
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(
                endpoints.device.clone(),
            ))
            .set_token_uri(TokenUrl::from_url(endpoints.token.clone()));
        let http = Http {
            fetcher: &self.fetcher,
            opts: idp_options(endpoints.device_policy.clone()),
        };
        let mut scopes: Vec<String> = if auth.scopes.is_empty() {
            DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            auth.scopes.clone()
        };
        if !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".to_owned());
        }
        let mut request = client
            .exchange_device_code()
            .add_scopes(scopes.into_iter().map(Scope::new));
        if !auth.audience.is_empty() {
            request = request.add_extra_param("audience", auth.audience.clone());
        }
        let details: StandardDeviceAuthorizationResponse = request
            .request_async(&http)
            .await
            .map_err(|e| format!("the device authorization request failed: {}", describe(e)))?;
        let verification_uri = details.verification_uri().url().clone();
        if !matches!(verification_uri.scheme(), "https" | "http") {
            return Err(
                "the identity provider answered a verification URI that is not http(s)".into(),
            );
        }
        let expires = details.expires_in().min(MAX_FLOW);
        let login = DeviceLogin {
            verification_uri: verification_uri.to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().clone())
                .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
            user_code: details.user_code().secret().clone(),
            expires_in: expires.as_secs(),
            interval: details.interval().max(MIN_INTERVAL).as_secs(),
        };
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        let name = registry.to_owned();
        // The task is registered before it can finish: `finish` takes the
        // same lock.
        let mut flows = self.flows.lock().expect("flows lock");
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            // Bounded whatever intervals the provider asks for.
            let outcome = tokio::time::timeout(
                expires + IDP_TIMEOUT,
                this.poll(&client, &endpoints, &details, expires),
            )
            .await
            .unwrap_or_else(|_| Err("the code expired before the login was approved".into()));
            this.finish(&name, id, outcome);
        });
        flows.insert(
            registry.to_owned(),
            Flow {
                id,
                login: login.clone(),
                deadline: Instant::now() + expires,
                task: task.abort_handle(),
            },
        );
        tracing::info!(
            registry,
            verification_uri = %login.verification_uri,
            "Registry login started; waiting for the user to approve the code."
        );
        Ok(login)
    }

    /// Polls the token endpoint until the flow ends.
    async fn poll(
        &self,
        client: &DeviceClient,
        endpoints: &Endpoints,
        details: &StandardDeviceAuthorizationResponse,
        expires: Duration,
    ) -> Result<Token, String> {
        let sleep = self.sleep.read().expect("sleep lock").clone();
        let http = Http {
            fetcher: &self.fetcher,
            opts: idp_options(endpoints.token_policy.clone()),
        };
        // RFC 8628 3.5: wait `interval` before each poll, the first too.
        sleep(details.interval().max(MIN_INTERVAL)).await;
        let answer: BasicTokenResponse = client
            .exchange_device_access_token(details)
            // After a failed request the crate doubles the wait up to this
            // (its default, 10 s, could undercut a slowed-down interval).
            .set_max_backoff_interval(Duration::from_secs(60))
            .request_async(&http, |d| sleep(d.max(MIN_INTERVAL)), Some(expires))
            .await
            .map_err(describe)?;
        token_from(&answer, None)
    }

    /// Stores the token of flow `id` unless it was cancelled or replaced.
    fn finish(&self, registry: &str, id: u64, outcome: Result<Token, String>) {
        let mut flows = self.flows.lock().expect("flows lock");
        if flows.get(registry).is_none_or(|f| f.id != id) {
            return;
        }
        flows.remove(registry);
        match outcome {
            Ok(token) => match self.tokens.put(registry, token) {
                Ok(()) => tracing::info!(registry, "Registry login completed."),
                Err(e) => {
                    tracing::error!(registry, error = %e, "Registry login completed but its token could not be saved.");
                }
            },
            Err(why) => tracing::warn!(
                registry,
                error = %why,
                "Registry login failed; the registry stays unauthenticated."
            ),
        }
    }

    /// Cancels `registry`'s pending login; whether there was one.
    pub fn cancel(&self, registry: &str) -> bool {
        match self.flows.lock().expect("flows lock").remove(registry) {
            Some(flow) => {
                flow.task.abort();
                tracing::info!(registry, "Pending registry login cancelled.");
                true
            }
            None => false,
        }
    }

    /// Whether a login of `registry` is waiting for the user.
    pub fn pending(&self, registry: &str) -> bool {
        self.flows
            .lock()
            .expect("flows lock")
            .get(registry)
            .is_some_and(|f| f.deadline > Instant::now() && !f.task.is_finished())
    }

    /// `token`, refreshed first (and stored, with a rotated refresh token)
    /// when it expires within [`EXPIRY_MARGIN`].
    pub async fn fresh(
        &self,
        registry: &str,
        auth: &AuthConfig,
        token: Token,
    ) -> Result<Token, String> {
        let Some(expires_at) = token.expires_at else {
            return Ok(token);
        };
        if expires_at - EXPIRY_MARGIN > OffsetDateTime::now_utc() {
            return Ok(token);
        }
        let Some(refresh) = token.refresh_token.clone() else {
            return Err(
                "the access token has expired and there is no refresh token; log in again".into(),
            );
        };
        let endpoints = self.endpoints(&auth.issuer).await?;
        let client = BasicClient::new(ClientId::new(auth.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(endpoints.token.clone()));
        let http = Http {
            fetcher: &self.fetcher,
            opts: idp_options(endpoints.token_policy.clone()),
        };
        let refresh = RefreshToken::new(refresh);
        let answer: BasicTokenResponse = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await
            .map_err(|e| {
                format!(
                    "the token could not be refreshed: {}; log in again",
                    describe(e)
                )
            })?;
        let fresh = token_from(&answer, token.refresh_token.clone())?;
        match self.tokens.replace(registry, &token, fresh.clone()) {
            Ok(true) => tracing::info!(registry, "Registry access token refreshed."),
            Ok(false) => {
                return Err("the login changed while its token was refreshed; try again".into());
            }
            Err(e) => {
                tracing::error!(registry, error = %e, "A refreshed registry token could not be saved.");
            }
        }
        Ok(fresh)
    }
}

type DeviceClient = BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// A stored token from a token endpoint's answer; `old_refresh` is kept
/// when the answer rotates none.
fn token_from(answer: &BasicTokenResponse, old_refresh: Option<String>) -> Result<Token, String> {
    let usable = |t: &str| {
        !t.is_empty() && t.len() <= 16 * 1024 && t.bytes().all(|b| (0x21..0x7f).contains(&b))
    };
    let access = answer.access_token().secret();
    if !usable(access) {
        return Err("the identity provider answered an unusable access token".into());
    }
    let refresh = answer
        .refresh_token()
        .map(|r| r.secret().clone())
        .filter(|r| usable(r))
        .or(old_refresh);
    let expires_at = answer.expires_in().map(|d| {
        OffsetDateTime::now_utc()
            + time::Duration::seconds(d.as_secs().min(i64::MAX as u64 / 2) as i64)
    });
    Ok(Token {
        access_token: access.clone(),
        refresh_token: refresh,
        expires_at,
        kind: "oauth".to_owned(),
    })
}

/// Why a request to the identity provider failed, without any token value
/// (no response body, no serde message that could quote one).
fn describe<TE: ErrorResponse>(err: RequestTokenError<HttpError, TE>) -> String {
    let text = match err {
        RequestTokenError::ServerResponse(e) => format!("the identity provider answered {e}"),
        RequestTokenError::Request(e) => format!("cannot reach the identity provider: {e}"),
        RequestTokenError::Parse(e, _body) => format!(
            "the identity provider answered something unreadable (at `{}`)",
            e.path()
        ),
        RequestTokenError::Other(e) => e,
    };
    let mut text = crate::logging::escape_controls(&text).into_owned();
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Request options for the identity provider.
fn idp_options(private: PrivatePolicy) -> FetchOptions {
    FetchOptions {
        private,
        max_bytes: IDP_MAX_BYTES,
        timeout: IDP_TIMEOUT,
        max_redirects: 3,
        ..FetchOptions::default()
    }
}

/// Checks an issuer URL: `https`, or plain `http` for a loopback issuer
/// (tests, a local identity provider); no credentials, query or fragment.
pub fn check_issuer(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer).map_err(|e| format!("the issuer is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => {
            return Err(
                "the issuer must be an https URL (plain http only for a loopback issuer)".into(),
            );
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the issuer URL must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the issuer URL must have no query or fragment".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the issuer URL has no host".into());
    }
    Ok(url)
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The address policy for an identity provider URL: public `https`
/// anywhere; loopback (and plain `http` there) only when the issuer itself
/// is a loopback one.
fn policy_for(url: &Url, issuer_loopback: bool) -> Result<PrivatePolicy, String> {
    if is_loopback(url) {
        if !issuer_loopback {
            return Err("a loopback endpoint is accepted only for a loopback issuer".into());
        }
        let ips = match url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the URL must be http(s)".into());
        }
        return Ok(PrivatePolicy::AllowOnly(ips));
    }
    if url.scheme() != "https" {
        return Err("the URL must start with https://".into());
    }
    Ok(PrivatePolicy::Deny)
}

/// The `oauth2` crate's HTTP client over berth's [`Fetcher`].
struct Http<'a> {
    fetcher: &'a Fetcher,
    opts: FetchOptions,
}

/// A failed request to the identity provider (a [`Fetcher`] error: no
/// header value, no body).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let header = |name: http::header::HeaderName| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut opts = self.opts.clone();
            if let Some(accept) = header(http::header::ACCEPT) {
                opts.headers.push(("Accept".to_owned(), accept));
            }
            let fetched = if parts.method == http::Method::POST {
                let content_type = header(http::header::CONTENT_TYPE)
                    .unwrap_or_else(|| "application/x-www-form-urlencoded".to_owned());
                self.fetcher.post(&url, &content_type, body, &opts).await
            } else {
                self.fetcher.get(&url, &opts).await
            }
            .map_err(|e| HttpError(e.to_string()))?;
            let mut response = http::Response::builder().status(fetched.status);
            if let Some(ct) = &fetched.content_type {
                response = response.header(http::header::CONTENT_TYPE, ct);
            }
            response
                .body(fetched.body.to_vec())
                .map_err(|_| HttpError("the identity provider's answer is unusable".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(access: &str, refresh: Option<&str>) -> Token {
        Token {
            access_token: access.into(),
            refresh_token: refresh.map(str::to_owned),
            expires_at: None,
            kind: "oauth".into(),
        }
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com",
            "https://idp.example.com/realms/x/",
            "http://127.0.0.1:8080",
            "http://localhost:9000/tenant",
            "http://[::1]:9000",
        ] {
            check_issuer(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://idp.example.com",
            "http://10.0.0.1",
            "ftp://idp.example.com",
            "https://user:secret@idp.example.com",
            "https://idp.example.com/?tenant=x",
            "idp.example.com",
        ] {
            let err = check_issuer(bad).expect_err(bad);
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn endpoints_stay_public_https_unless_the_issuer_is_loopback() {
        let url = |u: &str| Url::parse(u).expect("url");
        assert_eq!(
            policy_for(&url("https://idp.example.com/token"), false),
            Ok(PrivatePolicy::Deny)
        );
        assert!(policy_for(&url("http://idp.example.com/token"), false).is_err());
        assert!(policy_for(&url("http://idp.example.com/token"), true).is_err());
        assert!(policy_for(&url("http://127.0.0.1:1/token"), false).is_err());
        assert!(policy_for(&url("https://localhost/token"), false).is_err());
        assert_eq!(
            policy_for(&url("http://127.0.0.3:1/token"), true),
            Ok(PrivatePolicy::AllowOnly(vec![IpAddr::V4(Ipv4Addr::new(
                127, 0, 0, 3
            ))]))
        );
        assert!(matches!(
            policy_for(&url("http://localhost:1/token"), true),
            Ok(PrivatePolicy::AllowOnly(ips)) if ips.len() == 2
        ));
    }

    #[test]
    fn token_answers_keep_the_old_refresh_token_and_never_leak_into_errors() {
        let answer: BasicTokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "at-secret", "token_type": "Bearer", "expires_in": 60
        }))
        .expect("answer");
        let t = token_from(&answer, Some("rt-old".into())).expect("token");
        assert_eq!(t.access_token, "at-secret");
        assert_eq!(t.refresh_token.as_deref(), Some("rt-old"));
        assert_eq!(t.kind, "oauth");
        let left = t.expires_at.expect("expiry") - OffsetDateTime::now_utc();
        assert!(left > time::Duration::ZERO && left <= time::Duration::seconds(60));
        assert!(!format!("{t:?} {answer:?}").contains("secret"));

        let spaced: BasicTokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "at secret", "token_type": "Bearer"
        }))
        .expect("answer");
        let err = token_from(&spaced, None).expect_err("unusable");
        assert!(!err.contains("secret"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_token_answer_is_described_without_its_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let doc = serde_json::json!({"issuer": base, "token_endpoint": format!("{base}/token"),
            "device_authorization_endpoint": format!("{base}/device")});
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(doc) }),
            )
            .route(
                "/token",
                axum::routing::post(|| async {
                    axum::Json(serde_json::json!({"access_token": "at-secret", "token_type": 7}))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().expect("dir");
        let tokens = Arc::new(super::super::tests::opened(dir.path(), "encrypted").await);
        let oauth = OAuth::new(Fetcher::new().expect("fetcher"), tokens.clone());
        let auth = oauth
            .configure(AuthConfig {
                issuer: base.clone(),
                client_id: "c".into(),
                ..AuthConfig::default()
            })
            .await
            .expect("configured");
        assert_eq!(auth.scopes, ["openid", "offline_access"]);
        let mut old = token("at-old", Some("rt-secret"));
        old.expires_at = Some(OffsetDateTime::now_utc());
        tokens.put("corp", old.clone()).expect("put");
        let err = oauth
            .fresh("corp", &auth, old)
            .await
            .expect_err("unreadable");
        assert!(err.contains("token_type"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(tokens.get("corp").expect("kept").access_token, "at-old");
    }

    #[test]
    fn scopes_default_and_bad_ones_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let secrets = rt.block_on(super::super::tests::secrets(dir.path(), "none", "pw"));
        let oauth = OAuth::new(
            Fetcher::new().expect("fetcher"),
            Arc::new(TokenStore::new(dir.path(), secrets)),
        );
        let err = rt
            .block_on(oauth.configure(AuthConfig {
                issuer: "https://idp.example.com".into(),
                client_id: "c".into(),
                audience: String::new(),
                scopes: vec!["openid".into(), "bad scope\"".into()],
            }))
            .expect_err("bad scope");
        assert!(err.contains("invalid scope"), "{err}");
        // An issuer refused before any request.
        let err = rt
            .block_on(oauth.configure(AuthConfig {
                issuer: "http://idp.example.com".into(),
                client_id: "c".into(),
                ..AuthConfig::default()
            }))
            .expect_err("http issuer");
        assert!(err.contains("https"), "{err}");
        assert!(format!("{oauth:?}").contains("OAuth"));
    }
}
