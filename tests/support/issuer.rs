//! A token issuer of the tests' own: an ECDSA P-256 key generated in the
//! test, its JWKS (and an OIDC discovery document) served on loopback, and
//! tokens signed with `jsonwebtoken`. No identity product needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// A running test issuer.
pub struct Issuer {
    /// Its issuer URL (`iss`), `http://127.0.0.1:<port>`.
    pub url: String,
    key_der: Vec<u8>,
    public_pem: String,
    /// While false the JWKS answers 500 (an unavailable issuer).
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

impl Issuer {
    /// Generates a key and serves its JWKS at `<url>/jwks` and the
    /// discovery document at `<url>/.well-known/openid-configuration`.
    pub async fn start() -> Self {
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let raw = key.public_key_raw().to_vec();
        assert_eq!(raw.len(), 65, "uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "test-key",
            "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65]),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let up = Arc::new(AtomicBool::new(true));
        let jwks = json!({"keys": [jwk]});
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let up2 = up.clone();
        let app = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let (jwks, up) = (jwks.clone(), up2.clone());
                    async move {
                        if up.load(Ordering::SeqCst) {
                            (axum::http::StatusCode::OK, axum::Json(jwks))
                        } else {
                            (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                axum::Json(json!({})),
                            )
                        }
                    }
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            key_der: key.serialize_der(),
            public_pem: key.public_key_pem(),
            up,
            task,
        }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// Makes the JWKS answer 500 (`false`) or its keys again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// A token with `claims` (merged over `iss`, `exp` in an hour, `iat`
    /// now), signed with the issuer's key.
    pub fn sign(&self, claims: Value) -> String {
        let mut all = json!({"iss": self.url, "iat": now(), "exp": now() + 3600});
        for (k, v) in claims.as_object().expect("claims object") {
            all[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("test-key".into());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key_der);
        jsonwebtoken::encode(&header, &all, &key).expect("sign")
    }

    /// A token for `sub` and `aud`.
    pub fn token(&self, sub: &str, aud: &str) -> String {
        self.sign(json!({"sub": sub, "aud": aud}))
    }

    /// Tokens that must be refused for audience `aud`, by what is wrong.
    pub fn bad_tokens(&self, aud: &str) -> Vec<(&'static str, String)> {
        let header = |h: Value| B64.encode(h.to_string());
        let body = B64.encode(
            json!({"iss": self.url, "sub": "mallory", "aud": aud, "exp": now() + 3600}).to_string(),
        );
        let hs256 = {
            let head = header(json!({"alg": "HS256", "typ": "JWT", "kid": "test-key"}));
            let signing = format!("{head}.{body}");
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.public_pem.as_bytes())
                .expect("hmac key");
            mac.update(signing.as_bytes());
            format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
        };
        vec![
            (
                "expired",
                self.sign(json!({"sub": "alice", "aud": aud, "exp": now() - 600})),
            ),
            (
                "not yet valid",
                self.sign(json!({"sub": "alice", "aud": aud, "nbf": now() + 600})),
            ),
            ("wrong audience", self.token("alice", "someone-else")),
            (
                "wrong issuer",
                self.sign(json!({"sub": "alice", "aud": aud, "iss": "http://127.0.0.1:1"})),
            ),
            (
                "alg none",
                format!("{}.{body}.", header(json!({"alg": "none", "typ": "JWT"}))),
            ),
            ("HS256 with the public key", hs256),
            ("malformed", "not-a-jwt".to_owned()),
            ("tampered", {
                let t = self.token("alice", aud);
                let mut parts: Vec<&str> = t.split('.').collect();
                let forged = B64.encode(
                    json!({"iss": self.url, "sub": "admin", "aud": aud, "exp": now() + 3600})
                        .to_string(),
                );
                parts[1] = &forged;
                parts.join(".")
            }),
        ]
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
