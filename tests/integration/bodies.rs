//! Request bodies a hostile or careless client sends: the wrong content
//! type from a web page, arrays for objects, unknown keys in
//! security-relevant objects, workload hosts beyond loopback.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use berth::api::Access;
use berth::auth::BrowserGuard;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{harness, harness_with};

const UI: &str = "https://ui.example.com";

/// Sends `body` with these headers through a router that allows the web
/// origin [`UI`].
async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_web_page_must_send_json() {
    let h = harness_with(Access {
        guard: Some(Arc::new(
            BrowserGuard::new(&[UI.to_owned()], &[], false).expect("guard"),
        )),
        token: None,
        oidc: None,
    })
    .await;
    let app = h.app.clone();
    let create = json!({"name": "w", "image": "fake://echo"}).to_string();
    let group = json!({"name": "g"}).to_string();
    let bulk = json!({"names": ["w"]}).to_string();
    for (uri, body) in [
        ("/api/v1beta/workloads", &create),
        ("/api/v1beta/workloads/w/edit", &create),
        ("/api/v1beta/groups", &group),
        ("/api/v1beta/workloads/stop", &bulk),
        ("/api/v1beta/workloads/delete", &bulk),
    ] {
        for ct in [
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let mut headers = vec![("origin", UI)];
            headers.extend(ct.map(|c| ("content-type", c)));
            let (status, text) = send(&app, Method::POST, uri, &headers, body).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{uri} {ct:?}: {text}"
            );
        }
    }
    assert!(h.workloads.list(true, None).expect("list").is_empty());
    // The same page sending JSON is served.
    let json_headers = [("origin", UI), ("content-type", "application/json")];
    let (status, text) = send(
        &app,
        Method::POST,
        "/api/v1beta/workloads",
        &json_headers,
        &create,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    // Without `Origin` (curl's `-d`), the content type does not matter.
    let (status, text) = send(
        &app,
        Method::POST,
        "/api/v1beta/groups",
        &[("content-type", "application/x-www-form-urlencoded")],
        &group,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn arrays_and_unknown_security_keys_are_refused() {
    let h = harness().await;
    let valid = json!({"name": "w", "image": "fake://echo"});
    for (uri, body) in [
        ("/api/v1beta/workloads", json!([valid])),
        ("/api/v1beta/workloads/w/edit", json!([valid])),
        ("/api/v1beta/groups", json!([{"name": "g"}])),
        ("/api/v1beta/workloads/stop", json!([{"names": ["w"]}])),
        ("/api/v1beta/workloads", json!("w")),
        ("/api/v1beta/workloads", json!(null)),
    ] {
        let r = h.post(uri, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{uri} {body}: {}",
            r.text
        );
    }
    let with = |key: &str, value: Value| {
        let mut b = valid.clone();
        b[key] = value;
        b
    };
    for (body, key) in [
        (
            with("permission_profile", json!({"netwrok": {}})),
            "netwrok",
        ),
        (
            with(
                "permission_profile",
                json!({"network": {"outbund": {"insecure_allow_all": false}}}),
            ),
            "outbund",
        ),
        (
            with(
                "permission_profile",
                json!({"network": {"outbound": {"allow_hosts": ["a"]}}}),
            ),
            "allow_hosts",
        ),
        (
            with(
                "permission_profile",
                json!({"network": {"inbound": {"allow": ["a"]}}}),
            ),
            "allow",
        ),
        (
            with("oidc", json!({"issuer_url": "https://idp.example"})),
            "issuer_url",
        ),
        (
            with(
                "header_forward",
                json!({"add_plaintext_header": {"X": "y"}}),
            ),
            "add_plaintext_header",
        ),
    ] {
        let r = h.create(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(r.text.contains(key), "the error names `{key}`: {}", r.text);
    }
    assert!(h.workloads.list(true, None).expect("list").is_empty());
    // Unknown top-level fields are accepted (newer ToolHive clients send
    // fields berth may not know).
    let r = h.create(with("some_future_field", json!({"x": 1}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn workload_hosts_stay_on_loopback() {
    let h = harness().await;
    for host in ["0.0.0.0", "::", "192.0.2.10", "8.8.8.8", "::ffff:127.0.0.1"] {
        let r = h
            .create(json!({"name": "w", "image": "fake://echo", "host": host}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}: {}", r.text);
        assert!(r.text.contains("loopback"), "{host}: {}", r.text);
    }
    for host in ["127.0.0.1", "127.0.0.2"] {
        let name = format!("w{}", host.replace('.', ""));
        let r = h
            .create(json!({"name": name, "image": "fake://echo", "host": host}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{host}: {}", r.text);
        let shown = h.get(&format!("/api/v1beta/workloads/{name}")).await;
        assert_eq!(shown.json()["host"], host, "{}", shown.text);
    }
    // An edit cannot move a workload off loopback either.
    let r = h
        .post(
            "/api/v1beta/workloads/w127002/edit",
            json!({"image": "fake://echo", "host": "0.0.0.0"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn names_of_routes_cannot_name_workloads() {
    let h = harness().await;
    for name in berth::workloads::RESERVED_NAMES {
        let r = h
            .create(json!({"name": name, "image": "fake://echo"}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert!(r.text.contains("reserved"), "{name}: {}", r.text);
    }
    // Every literal segment under /workloads/ that berth serves is listed
    // (a route added later must be added to the list).
    let doc = h.get("/api/openapi.json").await.json();
    let mut literal = Vec::new();
    for path in doc["paths"].as_object().expect("paths").keys() {
        if let Some(rest) = path.strip_prefix("/api/v1beta/workloads/") {
            let segment = rest.split('/').next().expect("segment");
            if !segment.starts_with('{') {
                literal.push(segment.to_owned());
            }
        }
    }
    assert!(!literal.is_empty(), "the bulk routes are documented");
    for segment in literal {
        assert!(
            berth::workloads::RESERVED_NAMES.contains(&segment.as_str()),
            "`{segment}` is a route but not a reserved name"
        );
    }
    assert!(h.workloads.list(true, None).expect("list").is_empty());
}

#[tokio::test]
async fn package_specs_are_strict_on_every_runtime() {
    let h = harness().await;
    for image in [
        "npx://https://evil.example/pkg.tgz",
        "npx://git+https://github.com/x/y",
        "npx://github:x/y",
        "npx://../../etc/passwd",
        "npx:///abs/path",
        "npx://-y",
        "npx://--foo",
        "npx://pkg@>=1.0",
        "npx://pkg name",
        "uvx://git+https://github.com/x/y",
        "uvx://./local",
        "uvx://pkg[extra]",
        "uvx://pkg>=1",
        "uvx://--with=evil",
        "uvx://https://evil.example/x.whl",
    ] {
        let r = h.create(json!({"name": "p", "image": image})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{image}: {}", r.text);
    }
    assert!(h.workloads.list(true, None).expect("list").is_empty());
}

#[tokio::test]
async fn no_field_can_put_a_newline_into_a_log_line() {
    let h = harness().await;
    let forged = "\n2026-01-01T00:00:00Z ERROR forged line";
    for (field, value) in [
        ("image", json!(format!("fake://echo{forged}"))),
        ("group", json!(format!("default{forged}"))),
        ("transport", json!(format!("stdio{forged}"))),
        ("env_vars", json!({format!("KEY{forged}"): "v"})),
    ] {
        let mut body = json!({"name": "n", "image": "fake://echo"});
        body[field] = value;
        let r = h.create(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text);
    }
    assert!(h.workloads.list(true, None).expect("list").is_empty());
    // A value that may hold newlines (an environment value) is stored, and
    // berth's log of the workload keeps one event per line.
    let r = h
        .create(json!({"name": "n", "image": "fake://echo", "env_vars": {"PEM": "a\nb"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("n", "running").await;
    let log = h.get("/api/v1beta/workloads/n/proxy-logs").await;
    assert!(
        log.text.lines().all(|l| l.starts_with("20")),
        "every line of the workload log is a dated event: {}",
        log.text
    );
}
