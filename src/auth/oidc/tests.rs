//! The validator against a test issuer of its own: keys generated here, a
//! JWK set, discovery document and introspection endpoint served by a small
//! axum server on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::jwks::Timing;
use super::*;

const AUD: &str = "https://berth.example/mcp";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("seconds")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// === test keys ===

/// A signing key of the test issuer and its public JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

impl TestKey {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65);
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
            }),
            public_pem: pair.public_key_pem(),
        }
    }

    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key_raw())}),
            public_pem: pair.public_key_pem(),
        }
    }

    /// `claims` signed by this key, its `kid` in the header.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// `claims` signed by this key, no `kid` in the header.
    fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).expect("sign")
    }
}

fn key_set(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A token put together by hand: `header` and `claims` encoded, then
/// `signature` as is.
fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

// === test issuer ===

/// What the test issuer serves, and what it saw.
#[derive(Default)]
struct Served {
    jwks: Mutex<Value>,
    /// When false, the JWK set answers 500.
    down: AtomicBool,
    jwks_hits: AtomicUsize,
    discovery: Mutex<Option<Value>>,
    discovery_hits: AtomicUsize,
    /// The `Authorization` header and body of each introspection request.
    introspected: Mutex<Vec<(Option<String>, String)>>,
}

struct TestIssuer {
    url: String,
    served: Arc<Served>,
}

impl TestIssuer {
    async fn start(jwks: Value) -> Self {
        let served = Arc::new(Served {
            jwks: Mutex::new(jwks),
            ..Served::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let app = axum::Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .route("/introspect", post(serve_introspection))
            .route("/broken", post(|| async { StatusCode::BAD_GATEWAY }))
            .with_state((served.clone(), url.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, served }
    }

    fn settings(&self) -> OidcSettings {
        OidcSettings {
            issuer: self.url.clone(),
            audience: AUD.to_owned(),
            jwks_url: format!("{}/jwks", self.url),
            ..OidcSettings::default()
        }
    }

    fn validator(&self) -> Validator {
        Validator::new(self.settings(), Fetcher::new().expect("fetcher")).expect("validator")
    }

    fn validator_with(&self, settings: OidcSettings, timing: Timing) -> Validator {
        Validator::with_timing(settings, Fetcher::new().expect("fetcher"), timing)
            .expect("validator")
    }

    /// Claims this issuer would put in a token for `AUD`.
    fn claims(&self) -> Value {
        json!({
            "iss": self.url, "aud": AUD, "sub": "alice", "groups": ["dev"],
            "iat": now(), "exp": now() + 300,
        })
    }

    fn serve_keys(&self, jwks: Value) {
        *self.served.jwks.lock().expect("jwks") = jwks;
    }

    fn jwks_hits(&self) -> usize {
        self.served.jwks_hits.load(Ordering::SeqCst)
    }
}

type ServerState = (Arc<Served>, String);

async fn serve_jwks(State((served, _)): State<ServerState>) -> Response {
    served.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if served.down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = served.jwks.lock().expect("jwks").clone();
    axum::Json(body).into_response()
}

async fn serve_discovery(State((served, url)): State<ServerState>) -> Response {
    served.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let doc = served
        .discovery
        .lock()
        .expect("discovery")
        .clone()
        .unwrap_or_else(|| json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}));
    axum::Json(doc).into_response()
}

async fn serve_introspection(
    State((served, url)): State<ServerState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    served
        .introspected
        .lock()
        .expect("log")
        .push((auth, body.clone()));
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let active = json!({
        "active": true, "sub": "svc-1", "scope": "tools:read", "client_id": "agent",
        "iss": url, "aud": [AUD, "other"], "exp": now() + 300,
    });
    let answer = match token.as_str() {
        "opaque active" => active,
        "opaque-other-audience" => json!({"active": true, "sub": "svc-1", "aud": "other"}),
        "opaque-no-subject" => json!({"active": true, "aud": AUD}),
        "opaque-expired" => json!({"active": true, "sub": "svc-1", "exp": now() - 120}),
        _ => json!({"active": false}),
    };
    axum::Json(answer).into_response()
}

/// A local address nothing listens on.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Asserts that `token` is refused as invalid with a reason containing
/// `reason`, and that the reason does not contain the token.
async fn refused(validator: &Validator, token: &str, reason: &str) {
    match validator.validate(token).await {
        Err(AuthnError::Invalid(why)) => {
            assert!(why.contains(reason), "expected `{reason}`, got `{why}`");
            if token.len() > 8 {
                assert!(!why.contains(token), "the reason shows the token: {why}");
            }
        }
        other => panic!("expected Invalid({reason}), got {other:?}"),
    }
}

/// Asserts that `token` is refused as unavailable, and returns the message.
async fn unavailable(validator: &Validator, token: &str) -> String {
    match validator.validate(token).await {
        Err(AuthnError::Unavailable(why)) => {
            assert!(!why.contains(token), "the message shows the token: {why}");
            why
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Polls `check` for up to 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn timing(min_refetch: Duration, max_age: Duration) -> Timing {
    Timing {
        min_refetch,
        max_age,
    }
}

// === valid tokens ===

#[tokio::test]
async fn a_valid_token_gives_its_subject_and_claims() {
    let (ec, ed) = (TestKey::es256("ec-1"), TestKey::ed25519("ed-1"));
    let issuer = TestIssuer::start(key_set(&[&ec, &ed])).await;
    let validator = issuer.validator();
    for key in [&ec, &ed] {
        let identity = validator
            .validate(&key.sign(&issuer.claims()))
            .await
            .expect("valid token");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.claims["groups"], json!(["dev"]));
        assert_eq!(identity.claims["iss"], json!(issuer.url));
        assert_eq!(identity.claims["aud"], json!(AUD));
    }
    // An array audience that contains this resource.
    let mut claims = issuer.claims();
    claims["aud"] = json!(["other", AUD]);
    validator
        .validate(&ec.sign(&claims))
        .await
        .expect("array audience");
    assert_eq!(issuer.jwks_hits(), 1, "the keys are cached");
}

#[tokio::test]
async fn a_verified_token_is_remembered_by_digest_and_never_for_another() {
    let ec = TestKey::es256("ec-1");
    let issuer = TestIssuer::start(key_set(&[&ec])).await;
    let validator = issuer.validator();
    let alice = ec.sign(&issuer.claims());
    assert_eq!(
        validator.validate(&alice).await.expect("valid").subject,
        "alice"
    );
    // Again: from memory, the same caller.
    assert_eq!(
        validator.validate(&alice).await.expect("valid").subject,
        "alice"
    );
    // Another token is checked on its own, even with alice's signature.
    let mut claims = issuer.claims();
    claims["sub"] = json!("mallory");
    let mut forged_parts: Vec<String> = alice.split('.').map(str::to_owned).collect();
    forged_parts[1] = b64(claims.to_string().as_bytes());
    refused(&validator, &forged_parts.join("."), "signature").await;
    let bob = {
        claims["sub"] = json!("bob");
        ec.sign(&claims)
    };
    assert_eq!(
        validator.validate(&bob).await.expect("valid").subject,
        "bob"
    );
    // An expired token is never taken from memory.
    let mut old = issuer.claims();
    old["exp"] = json!(now() - 59);
    let late = ec.sign(&old);
    validator.validate(&late).await.expect("within the leeway");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(&validator, &late, "expired").await;
}

#[tokio::test]
async fn the_issuer_is_trimmed_then_compared_exactly() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let mut settings = issuer.settings();
    settings.issuer = format!("  {}\n", issuer.url);
    let validator = issuer.validator_with(settings, timing(REFETCH_INTERVAL, MAX_KEY_AGE));
    validator
        .validate(&key.sign(&issuer.claims()))
        .await
        .expect("trimmed issuer");
    for iss in [
        json!(format!("{}/", issuer.url)),
        json!("https://evil.example"),
        json!([issuer.url]),
    ] {
        let mut claims = issuer.claims();
        claims["iss"] = iss;
        refused(
            &validator,
            &key.sign(&claims),
            "issuer is not the expected one",
        )
        .await;
    }
}

// === claims ===

#[tokio::test]
async fn time_claims_allow_sixty_seconds_of_skew() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let validator = issuer.validator();
    let with = |name: &str, value: i64| {
        let mut claims = issuer.claims();
        claims[name] = json!(value);
        key.sign(&claims)
    };
    for (name, offset) in [("exp", -30), ("nbf", 30), ("iat", 30), ("nbf", -600)] {
        validator
            .validate(&with(name, now() + offset))
            .await
            .unwrap_or_else(|e| panic!("{name} {offset:+}: {e}"));
    }
    refused(&validator, &with("exp", now() - 90), "has expired").await;
    refused(&validator, &with("exp", now() - 86_400), "has expired").await;
    refused(&validator, &with("nbf", now() + 90), "not valid yet").await;
    refused(&validator, &with("iat", now() + 90), "issued in the future").await;

    let mut claims = issuer.claims();
    claims["exp"] = json!("tomorrow");
    refused(&validator, &key.sign(&claims), "`exp` is not a number").await;
}

#[tokio::test]
async fn required_claims_and_audience() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let validator = issuer.validator();
    for (claim, reason) in [
        ("exp", "no expiry"),
        ("sub", "no subject"),
        ("iss", "no issuer"),
        ("aud", "no audience"),
    ] {
        let mut claims = issuer.claims();
        claims
            .as_object_mut()
            .expect("object")
            .remove(claim)
            .expect("claim");
        refused(&validator, &key.sign(&claims), reason).await;
    }
    for (sub, aud) in [
        (json!(""), json!(AUD)),
        (json!(42), json!(AUD)),
        (json!("alice"), json!("https://other.example/mcp")),
        (json!("alice"), json!(["https://other.example/mcp"])),
        (json!("alice"), json!([])),
        (json!("alice"), json!(format!("{AUD}/"))),
    ] {
        let mut claims = issuer.claims();
        claims["sub"] = sub;
        claims["aud"] = aud;
        let reason = if claims["sub"] == json!("alice") {
            "audience is not this resource"
        } else {
            "no subject"
        };
        refused(&validator, &key.sign(&claims), reason).await;
    }
}

// === algorithms and malformed tokens ===

#[tokio::test]
async fn unsigned_and_symmetric_tokens_are_refused() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let validator = issuer.validator();
    let claims = issuer.claims();
    for alg in ["none", "None", "NONE"] {
        let token = forged(&json!({"alg": alg, "kid": "k1"}), &claims, "");
        refused(&validator, &token, "alg none").await;
        let token = forged(&json!({"alg": alg}), &claims, "");
        refused(&validator, &token, "alg none").await;
    }
    // The classic attack: HS256 keyed with the public key the issuer
    // publishes.
    for secret in [key.public_pem.as_bytes(), key.jwk.to_string().as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret).expect("secret"),
        )
        .expect("sign");
        refused(&validator, &token, "shared secret").await;
    }
    // The same claims properly signed pass: the refusals were the
    // algorithm's.
    validator
        .validate(&key.sign(&claims))
        .await
        .expect("signed token");
}

#[tokio::test]
async fn the_algorithm_must_match_the_key() {
    let ec = TestKey::es256("ec-1");
    let ed = TestKey::ed25519("ed-1");
    let issuer = TestIssuer::start(key_set(&[&ec, &ed])).await;
    let validator = issuer.validator();
    let good = ec.sign(&issuer.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let payload = parts[1];
    let signature = parts[2];
    for (alg, kid) in [
        ("ES384", "ec-1"),
        ("RS256", "ec-1"),
        ("PS256", "ec-1"),
        ("EdDSA", "ec-1"),
        ("ES256", "ed-1"),
    ] {
        let header = b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes());
        let token = format!("{header}.{payload}.{signature}");
        refused(&validator, &token, "does not match its key").await;
    }
    // A key whose JWK names an algorithm signs with that one only.
    let mut jwk = ec.jwk.clone();
    jwk["alg"] = json!("ES384");
    let pinned = TestIssuer::start(json!({"keys": [jwk, ed.jwk]})).await;
    let ec_token = ec.sign(&pinned.claims());
    let validator = pinned.validator();
    refused(&validator, &ec_token, "not known").await; // ES384 on P-256: the key is skipped
    validator
        .validate(&ed.sign(&pinned.claims()))
        .await
        .expect("the other key still works");
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let validator = issuer.validator();
    let good = key.sign(&issuer.claims());
    let (head, rest) = good.split_once('.').expect("dots");
    let (payload, signature) = rest.split_once('.').expect("dots");
    let other =
        key.sign(&json!({"sub": "mallory", "aud": AUD, "iss": issuer.url, "exp": now() + 300}));
    let other_payload = other.split('.').nth(1).expect("payload");
    let cases = [
        (String::new(), "empty"),
        ("a.b".to_owned(), "not a JWT"),
        ("a.b.c.d".to_owned(), "not a JWT"),
        ("!!!.???.***".to_owned(), "not a JWT"),
        ("abc.def.ghi".to_owned(), "header is malformed"),
        (
            format!("{}.{payload}.{signature}", b64(b"not json")),
            "header is malformed",
        ),
        (
            format!("{}.{payload}.{signature}", b64(b"{}")),
            "names no algorithm",
        ),
        (
            format!(
                "{}.{payload}.{signature}",
                b64(br#"{"alg":"ES512","kid":"k1"}"#)
            ),
            "not supported",
        ),
        (
            format!("{head}.{other_payload}.{signature}"),
            "signature is invalid",
        ),
        (
            format!("{head}.{payload}.{}", b64(&[7; 64])),
            "signature is invalid",
        ),
        (format!("{head}.{payload}.AAAA"), "signature is invalid"),
        (
            format!("{head}.{}.{signature}", b64(b"[1,2]")),
            "signature is invalid",
        ),
        ("x".repeat(40_000), "too long"),
    ];
    for (token, reason) in &cases {
        refused(&validator, token, reason).await;
    }
    let critical = forged(
        &json!({"alg": "ES256", "kid": "k1", "crit": ["b64"], "b64": false}),
        &issuer.claims(),
        signature,
    );
    refused(&validator, &critical, "critical extensions").await;
    validator.validate(&good).await.expect("the good one");
}

#[tokio::test]
async fn a_kid_is_required_when_the_issuer_has_several_keys() {
    let (one, two) = (TestKey::es256("k1"), TestKey::es256("k2"));
    let issuer = TestIssuer::start(key_set(&[&one, &two])).await;
    let validator = issuer.validator();
    refused(
        &validator,
        &one.sign_without_kid(&issuer.claims()),
        "names no key",
    )
    .await;
    validator
        .validate(&two.sign(&issuer.claims()))
        .await
        .expect("with its kid");

    let single = TestIssuer::start(key_set(&[&one])).await;
    single
        .validator()
        .validate(&one.sign_without_kid(&single.claims()))
        .await
        .expect("the only key");
}

// === the JWK set ===

#[test]
fn unusable_keys_are_skipped() {
    let good = TestKey::es256("good");
    let short_ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": b64(&[1; 16])});
    let entries = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": b64(b"secret"), "alg": "HS256"},
        {"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"},
        {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": b64(&[0xc5; 256]), "e": "AQAB"},
        {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": b64(&[0xc5; 256]), "e": "AQAB"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[1; 66])},
        {"kty": "EC", "kid": "short-ec", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])},
        short_ed,
        {"kty": "OKP", "kid": "x448", "crv": "Ed448", "x": b64(&[1; 57])},
        "not an object",
        {"kid": "no-kty"},
        good.jwk,
        {"kty": "RSA", "kid": "rsa", "use": "sig", "key_ops": ["verify"], "alg": "PS256",
         "n": b64(&[0xc5; 256]), "e": "AQAB"},
    ]});
    let keys = jwks::parse_key_set(entries.to_string().as_bytes()).expect("parsed");
    let set = jwks::KeySet::new(keys);
    assert_eq!(set.len(), 2);
    for kid in [
        "hmac", "small", "enc", "oaep", "ops", "p521", "short-ec", "short", "x448",
    ] {
        assert!(
            matches!(set.pick(Some(kid), Algorithm::ES256), Pick::Unknown),
            "{kid}"
        );
    }
    assert!(matches!(
        set.pick(Some("good"), Algorithm::ES256),
        Pick::Key(_)
    ));
    assert!(matches!(
        set.pick(Some("rsa"), Algorithm::PS256),
        Pick::Key(_)
    ));
    assert!(matches!(
        set.pick(Some("rsa"), Algorithm::RS256),
        Pick::Mismatch
    ));

    for body in [
        "{}",
        "[]",
        "not json",
        r#"{"keys": {}}"#,
        r#"{"keys": []}"#,
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
    ] {
        assert!(jwks::parse_key_set(body.as_bytes()).is_err(), "{body}");
    }
}

#[tokio::test]
async fn an_unknown_kid_fetches_rotated_keys() {
    let (old, new) = (TestKey::es256("2025"), TestKey::es256("2026"));
    let issuer = TestIssuer::start(key_set(&[&old])).await;
    let settings = issuer.settings();
    let validator = issuer.validator_with(settings, timing(Duration::ZERO, MAX_KEY_AGE));
    validator
        .validate(&old.sign(&issuer.claims()))
        .await
        .expect("old key");
    assert_eq!(issuer.jwks_hits(), 1);

    issuer.serve_keys(key_set(&[&new]));
    validator
        .validate(&new.sign(&issuer.claims()))
        .await
        .expect("the rotated key is fetched");
    assert_eq!(issuer.jwks_hits(), 2);
    validator
        .validate(&new.sign(&issuer.claims()))
        .await
        .expect("cached");
    assert_eq!(issuer.jwks_hits(), 2);
    // The retired key is gone with its set.
    refused(&validator, &old.sign(&issuer.claims()), "not known").await;
    assert_eq!(issuer.jwks_hits(), 3);
}

#[tokio::test]
async fn refetches_are_rate_limited() {
    let (known, unknown) = (TestKey::es256("known"), TestKey::es256("unknown"));
    let issuer = TestIssuer::start(key_set(&[&known])).await;
    let validator = issuer.validator();
    for _ in 0..5 {
        refused(&validator, &unknown.sign(&issuer.claims()), "not known").await;
    }
    assert_eq!(issuer.jwks_hits(), 1, "one fetch per 10 s");
    // Not even the rotated key is fetched within the interval.
    issuer.serve_keys(key_set(&[&known, &unknown]));
    refused(&validator, &unknown.sign(&issuer.claims()), "not known").await;
    assert_eq!(issuer.jwks_hits(), 1);
    validator
        .validate(&known.sign(&issuer.claims()))
        .await
        .expect("known key");
}

#[tokio::test]
async fn concurrent_validations_share_one_fetch() {
    let key = TestKey::es256("k1");
    let stranger = TestKey::es256("stranger");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let settings = issuer.settings();
    // No rate limit: only the sharing keeps the fetches down.
    let validator = issuer.validator_with(settings, timing(Duration::ZERO, MAX_KEY_AGE));
    let token = key.sign(&issuer.claims());
    let results = futures::future::join_all((0..8).map(|_| {
        let (validator, token) = (validator.clone(), token.clone());
        tokio::spawn(async move { validator.validate(&token).await })
    }))
    .await;
    for result in results {
        result.expect("task").expect("valid");
    }
    assert_eq!(issuer.jwks_hits(), 1);

    let unknown = stranger.sign(&issuer.claims());
    let results = futures::future::join_all((0..8).map(|_| {
        let (validator, token) = (validator.clone(), unknown.clone());
        tokio::spawn(async move { validator.validate(&token).await })
    }))
    .await;
    for result in results {
        assert!(matches!(result.expect("task"), Err(AuthnError::Invalid(_))));
    }
    // The eight unknown kids share refetches: with the attempts serialised
    // and each later waiter reusing the attempt that ended while it waited,
    // far fewer than eight happen.
    let hits = issuer.jwks_hits();
    assert!((2..=3).contains(&hits), "{hits} fetches");
}

#[tokio::test]
async fn old_keys_are_refreshed_in_the_background() {
    let (first, second) = (TestKey::es256("first"), TestKey::es256("second"));
    let issuer = TestIssuer::start(key_set(&[&first])).await;
    let settings = issuer.settings();
    let validator = issuer.validator_with(settings, timing(Duration::ZERO, Duration::ZERO));
    let token = first.sign(&issuer.claims());
    validator.validate(&token).await.expect("first");
    issuer.serve_keys(key_set(&[&first, &second]));
    validator
        .validate(&token)
        .await
        .expect("served from the cache");
    eventually("the background refresh", || issuer.jwks_hits() >= 2).await;
    eventually("the refreshed keys", || {
        validator
            .inner
            .keys
            .snapshot()
            .keys
            .is_some_and(|k| k.len() == 2)
    })
    .await;
}

// === the issuer unavailable ===

#[tokio::test]
async fn unreachable_keys_are_unavailable_not_valid() {
    let key = TestKey::es256("k1");
    let dead = dead_address().await;
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let mut settings = issuer.settings();
    settings.jwks_url = format!("http://{dead}/jwks?tenant=secret-query");
    let validator = issuer.validator_with(settings, timing(Duration::ZERO, MAX_KEY_AGE));
    let token = key.sign(&issuer.claims());
    let why = unavailable(&validator, &token).await;
    assert!(why.contains(&format!("http://{dead}/jwks")), "{why}");
    assert!(!why.contains("secret-query"), "{why}");

    // Answers that are not a usable key set.
    issuer.served.down.store(true, Ordering::SeqCst);
    let why = unavailable(&issuer.validator(), &token).await;
    assert!(why.contains("HTTP 500"), "{why}");
    issuer.served.down.store(false, Ordering::SeqCst);
    for body in [
        json!({"keys": []}),
        json!(["nope"]),
        json!({"keys": [{"kty": "oct", "k": "AAAA"}]}),
    ] {
        issuer.serve_keys(body);
        let why = unavailable(&issuer.validator(), &token).await;
        assert!(why.contains("/jwks"), "{why}");
    }
}

#[tokio::test]
async fn a_failing_issuer_is_not_hammered() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    issuer.served.down.store(true, Ordering::SeqCst);
    let validator = issuer.validator();
    let token = key.sign(&issuer.claims());
    for _ in 0..3 {
        let why = unavailable(&validator, &token).await;
        assert!(why.contains("HTTP 500"), "{why}");
    }
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn cached_keys_survive_a_failed_refetch() {
    let (known, unknown) = (TestKey::es256("known"), TestKey::es256("unknown"));
    let issuer = TestIssuer::start(key_set(&[&known])).await;
    let settings = issuer.settings();
    let validator = issuer.validator_with(settings, timing(Duration::ZERO, MAX_KEY_AGE));
    validator
        .validate(&known.sign(&issuer.claims()))
        .await
        .expect("known");
    issuer.served.down.store(true, Ordering::SeqCst);
    // Unknown kid, refetch fails: the token is invalid (unknown key), not 503.
    refused(&validator, &unknown.sign(&issuer.claims()), "not known").await;
    assert_eq!(issuer.jwks_hits(), 2);
    validator
        .validate(&known.sign(&issuer.claims()))
        .await
        .expect("the cached key still works");
}

// === discovery ===

#[tokio::test]
async fn keys_are_found_by_discovery() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let mut settings = issuer.settings();
    settings.jwks_url = String::new();
    let validator = issuer.validator_with(settings.clone(), timing(Duration::ZERO, MAX_KEY_AGE));
    let token = key.sign(&issuer.claims());
    validator.validate(&token).await.expect("discovered keys");
    validator.validate(&token).await.expect("cached");
    assert_eq!(issuer.served.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits(), 1);
    // An unknown kid refetches the keys, not the discovery document.
    refused(
        &validator,
        &TestKey::es256("k2").sign(&issuer.claims()),
        "not known",
    )
    .await;
    assert_eq!(issuer.served.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits(), 2);

    for (doc, reason) in [
        (
            json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", issuer.url)}),
            "another issuer",
        ),
        (
            json!({"issuer": format!("{}/", issuer.url), "jwks_uri": format!("{}/jwks", issuer.url)}),
            "another issuer",
        ),
        (json!({"issuer": issuer.url}), "no `jwks_uri`"),
        (
            json!({"issuer": issuer.url, "jwks_uri": "http://keys.example/jwks"}),
            "not an https URL",
        ),
    ] {
        *issuer.served.discovery.lock().expect("discovery") = Some(doc);
        let validator =
            issuer.validator_with(settings.clone(), timing(Duration::ZERO, MAX_KEY_AGE));
        let why = unavailable(&validator, &token).await;
        assert!(why.contains(reason), "{why}");
        assert!(why.contains("/.well-known/openid-configuration"), "{why}");
    }
}

// === introspection ===

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let key = TestKey::es256("k1");
    let issuer = TestIssuer::start(key_set(&[&key])).await;
    let mut settings = issuer.settings();
    settings.introspection_url = format!("{}/introspect", issuer.url);
    settings.client_id = "berth proxy".to_owned();
    settings.client_secret = "s3cr:et&".to_owned();
    let validator = issuer.validator_with(settings.clone(), timing(REFETCH_INTERVAL, MAX_KEY_AGE));

    let identity = validator.validate("opaque active").await.expect("active");
    assert_eq!(identity.subject, "svc-1");
    assert_eq!(identity.claims["scope"], json!("tools:read"));
    assert_eq!(identity.claims["active"], json!(true));
    {
        let seen = issuer.served.introspected.lock().expect("log");
        assert_eq!(seen.len(), 1);
        let (auth, body) = &seen[0];
        let expected = format!("Basic {}", STANDARD.encode("berth+proxy:s3cr%3Aet%26"));
        assert_eq!(auth.as_deref(), Some(expected.as_str()));
        assert_eq!(body, "token=opaque+active&token_type_hint=access_token");
    }
    refused(&validator, "opaque-inactive", "not active").await;
    refused(
        &validator,
        "opaque-other-audience",
        "audience is not this resource",
    )
    .await;
    refused(&validator, "opaque-no-subject", "no subject").await;
    refused(&validator, "opaque-expired", "has expired").await;
    // JWTs are still checked locally, not introspected.
    validator
        .validate(&key.sign(&issuer.claims()))
        .await
        .expect("jwt");
    assert_eq!(issuer.served.introspected.lock().expect("log").len(), 5);

    // Without client credentials, no Authorization header.
    settings.client_secret = String::new();
    let anonymous = issuer.validator_with(settings.clone(), timing(REFETCH_INTERVAL, MAX_KEY_AGE));
    anonymous.validate("opaque active").await.expect("active");
    assert_eq!(issuer.served.introspected.lock().expect("log")[5].0, None);

    // Unreachable or failing: 503, never valid.
    for url in [
        format!("http://{}/introspect", dead_address().await),
        format!("{}/broken", issuer.url),
        format!("{}/jwks", issuer.url), // 405 for a POST
    ] {
        settings.introspection_url = url;
        let failing =
            issuer.validator_with(settings.clone(), timing(REFETCH_INTERVAL, MAX_KEY_AGE));
        let why = unavailable(&failing, "opaque active").await;
        assert!(!why.contains("s3cr"), "{why}");
    }

    // Without an introspection endpoint an opaque token is refused.
    refused(&issuer.validator(), "opaque active", "not a JWT").await;
}

// === settings ===

#[tokio::test]
async fn settings_are_checked() {
    let good = OidcSettings {
        issuer: "https://login.example.com/realms/berth".to_owned(),
        audience: "berth".to_owned(),
        ..OidcSettings::default()
    };
    good.validate().expect("good");
    for issuer in [
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://localhost:9000/idp",
        "http://[::1]:8080",
    ] {
        OidcSettings {
            issuer: issuer.to_owned(),
            ..good.clone()
        }
        .validate()
        .unwrap_or_else(|e| panic!("{issuer}: {e}"));
    }
    let check = |settings: OidcSettings, field: &str| {
        let err = settings.validate().expect_err(field);
        assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    };
    check(
        OidcSettings {
            issuer: " ".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "login.example.com".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "/realms/berth".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "ftp://login.example.com".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "http://login.example.com".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "http://10.0.0.5".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "https://login.example.com/?tenant=1".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            issuer: "https://u:hunter2@login.example.com".into(),
            ..good.clone()
        },
        "issuer",
    );
    check(
        OidcSettings {
            audience: String::new(),
            ..good.clone()
        },
        "audience",
    );
    check(
        OidcSettings {
            jwks_url: "http://keys.example/jwks".into(),
            ..good.clone()
        },
        "jwks_url",
    );
    check(
        OidcSettings {
            jwks_url: "keys".into(),
            ..good.clone()
        },
        "jwks_url",
    );
    check(
        OidcSettings {
            introspection_url: "http://idp.example/introspect".into(),
            ..good.clone()
        },
        "introspection_url",
    );
    check(
        OidcSettings {
            client_secret: "hunter2".into(),
            ..good.clone()
        },
        "client_id",
    );
    assert!(matches!(
        OidcSettings {
            issuer: "http://idp.example".into(),
            ..good.clone()
        }
        .validate(),
        Err(OidcConfigError::Insecure { field: "issuer" })
    ));
    assert!(Validator::new(OidcSettings::default(), Fetcher::new().expect("fetcher")).is_err());
}

#[tokio::test]
async fn debug_hides_the_client_secret() {
    let settings = OidcSettings {
        issuer: "https://login.example.com".into(),
        audience: "berth".into(),
        introspection_url: "https://login.example.com/introspect".into(),
        client_id: "berth".into(),
        client_secret: "hunter2".into(),
        ..OidcSettings::default()
    };
    let text = format!("{settings:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("redacted"), "{text}");
    let validator =
        Validator::new(settings.clone(), Fetcher::new().expect("fetcher")).expect("validator");
    let text = format!("{validator:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("login.example.com"), "{text}");
    assert_eq!(validator.settings(), &settings);
}

#[tokio::test]
async fn protected_resource_metadata() {
    let mut settings = OidcSettings {
        issuer: " https://login.example.com/realms/berth ".into(),
        audience: "berth".into(),
        ..OidcSettings::default()
    };
    let fetcher = Fetcher::new().expect("fetcher");
    let validator = Validator::new(settings.clone(), fetcher.clone()).expect("validator");
    assert_eq!(
        validator.protected_resource_metadata("https://berth.example/mcp"),
        json!({
            "resource": "https://berth.example/mcp",
            "authorization_servers": ["https://login.example.com/realms/berth"],
            "bearer_methods_supported": ["header"],
        })
    );
    settings.scopes = vec!["tools:read".into(), "tools:call".into()];
    let validator = Validator::new(settings, fetcher).expect("validator");
    assert_eq!(
        validator.protected_resource_metadata("https://berth.example/mcp")["scopes_supported"],
        json!(["tools:read", "tools:call"])
    );
}
