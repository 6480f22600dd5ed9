//! A throwaway OAuth token issuer for benchmarks and manual tests: an
//! ECDSA P-256 key generated at start, its JWKS served on loopback, and one
//! signed access token printed. Never for production use.
//!
//! ```sh
//! cargo run --release --example test_issuer -- <audience> <subject> [<seconds valid>]
//! ```
//! prints `ISSUER=<url>`, `JWKS=<url>` and `TOKEN=<jwt>` lines, then serves
//! until killed.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let audience = args.next().unwrap_or_else(|| "berth-bench".into());
    let subject = args.next().unwrap_or_else(|| "bench".into());
    let valid: i64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(86_400);
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = key.public_key_raw().to_vec();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65]),
    }]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"iss": url, "sub": subject, "aud": audience, "iat": now, "exp": now + valid}),
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .expect("sign");
    println!("ISSUER={url}");
    println!("JWKS={url}/jwks");
    println!("TOKEN={token}");
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    axum::serve(listener, app).await.expect("serve");
}
