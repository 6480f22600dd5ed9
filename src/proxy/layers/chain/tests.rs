//! The chain layer over a stand-in upstream: refusals, rewrites and result
//! hooks on single messages, batches, JSON and SSE answers, and legacy SSE
//! streams.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt};

use super::ChainLayer;
use crate::proxy::layers::parse::{ParseLayer, Reading};
use crate::proxy::layers::rescue::RequestError;
use crate::proxy::middleware::{Chain, Decision, McpRequest, Middleware, MiddlewareFailure};

/// Refuses `tools/call` of `bad`, rewrites a call of `rewrite`, hides the
/// tool `secret` from `tools/list`; records what it sees.
#[derive(Default)]
struct Guard {
    seen: Mutex<Vec<McpRequest>>,
}

#[async_trait]
impl Middleware for Guard {
    fn name(&self) -> &str {
        "guard"
    }
    async fn wants_request(&self, _: &str) -> Result<bool, MiddlewareFailure> {
        Ok(true)
    }
    async fn wants_response(&self, method: &str) -> Result<bool, MiddlewareFailure> {
        Ok(method == "tools/list")
    }
    async fn on_request(&self, req: &McpRequest) -> Result<Decision, MiddlewareFailure> {
        self.seen.lock().unwrap().push(req.clone());
        Ok(match req.params.as_ref().and_then(|p| p["name"].as_str()) {
            Some("bad") => Decision::Deny {
                status: 403,
                message: "bad is not allowed".into(),
            },
            Some("rewrite") => Decision::Rewrite(json!({"name": "rewritten"})),
            _ => Decision::Allow,
        })
    }
    async fn on_response(
        &self,
        _: &McpRequest,
        result: &Value,
    ) -> Result<Option<Value>, MiddlewareFailure> {
        let mut result = result.clone();
        if let Some(tools) = result["tools"].as_array_mut() {
            tools.retain(|t| t["name"] != "secret");
        }
        Ok(Some(result))
    }
}

/// What the stand-in upstream answers.
type Answer = Arc<dyn Fn(&Method, &str, &Bytes) -> Response + Send + Sync>;

/// The stand-in upstream: records each request (method, path and query,
/// body) and answers with `answer`; a GET of `/sse` gets the stream fed
/// by the returned sender.
struct Upstream {
    seen: Arc<Mutex<Vec<(Method, String, Bytes)>>>,
    stream: mpsc::UnboundedSender<Bytes>,
    guard: Arc<Guard>,
    service: BoxCloneService<Request, Response, RequestError>,
}

fn upstream(answer: Answer) -> Upstream {
    upstream_with(answer, None)
}

/// The stand-in upstream behind the guard and then berth's `policy`.
fn upstream_with(answer: Answer, policy: Option<Arc<crate::proxy::Policy>>) -> Upstream {
    let seen: Arc<Mutex<Vec<(Method, String, Bytes)>>> = Arc::default();
    let (stream, events) = mpsc::unbounded_channel::<Bytes>();
    let events = Arc::new(Mutex::new(Some(events)));
    let recorded = seen.clone();
    let inner = tower::service_fn(move |req: Request| {
        let (seen, answer, events) = (recorded.clone(), answer.clone(), events.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            let target = parts.uri.path_and_query().expect("path").to_string();
            seen.lock()
                .unwrap()
                .push((parts.method.clone(), target.clone(), body.clone()));
            if parts.method == Method::GET && parts.uri.path() == "/sse" {
                let rx = events.lock().unwrap().take().expect("one stream");
                let body = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
                });
                return Ok::<_, RequestError>(
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::from_stream(body),
                    )
                        .into_response(),
                );
            }
            Ok(answer(&parts.method, &target, &body))
        }
    });
    let guard = Arc::new(Guard::default());
    let chain: Chain = Arc::from(vec![guard.clone() as Arc<dyn Middleware>]);
    let stack = ParseLayer::new(Reading::Http, 1 << 20)
        .layer(ChainLayer::new("w", chain, policy).layer(inner));
    Upstream {
        seen,
        stream,
        guard,
        service: BoxCloneService::new(stack),
    }
}

impl Upstream {
    async fn send(&mut self, method: Method, uri: &str, body: &str) -> Response {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header("mcp-session-id", "s1")
            .body(Body::from(body.to_owned()))
            .expect("request");
        self.call(req).await
    }

    async fn call(&mut self, req: Request) -> Response {
        self.service
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }

    fn bodies(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, ..)| m == Method::POST)
            .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

async fn text(resp: Response) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn json_answer(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Answers every request of a POST body with `{"tools": [a, secret]}`.
fn lists(_: &Method, _: &str, body: &Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return "not JSON".into_response();
    };
    let answer = |m: &Value| json!({"jsonrpc": "2.0", "id": m["id"], "result": {"tools": [{"name": "a"}, {"name": "secret"}]}});
    match msg {
        Value::Array(msgs) => json_answer(
            Value::Array(
                msgs.iter()
                    .filter(|m| m.get("id").is_some())
                    .map(answer)
                    .collect(),
            )
            .to_string(),
        ),
        one => json_answer(answer(&one).to_string()),
    }
}

#[tokio::test]
async fn a_refused_request_is_answered_by_berth_and_never_forwarded() {
    let mut up = upstream(Arc::new(lists));
    let resp = up
        .send(
            Method::POST,
            "/v1/mcp",
            r#"{"jsonrpc":"2.0","id":12345678901234567890123,"method":"tools/call","params":{"name":"bad"}}"#,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = text(resp).await;
    assert!(
        body.contains(r#""id":12345678901234567890123"#),
        "the id goes back as written: {body}"
    );
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32003);
    assert_eq!(answer["error"]["data"]["middleware"], "guard");
    assert_eq!(answer["error"]["data"]["status"], 403);
    assert!(up.bodies().is_empty(), "nothing reached the server");
    let seen = up.guard.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "tools/call");
    assert_eq!(seen[0].session.as_deref(), Some("s1"));
    assert_eq!(seen[0].workload.as_ref(), "w");
    assert_eq!(seen[0].identity, None, "no layer fills the identity yet");
}

#[tokio::test]
async fn the_handshake_is_not_shown_to_middleware() {
    let mut up = upstream(Arc::new(lists));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"name":"bad"}}"#;
    let resp = up.send(Method::POST, "/mcp", init).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        up.bodies(),
        vec![init.to_owned()],
        "forwarded byte for byte"
    );
    assert!(up.guard.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_is_checked_message_by_message() {
    let mut up = upstream(Arc::new(lists));
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"bad"}},
               {"jsonrpc":"2.0","id":2,"method":"tools/list"},
               {"jsonrpc":"2.0","method":"notifications/x"},
               {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"rewrite"}}]"#,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answers: Vec<Value> = serde_json::from_str(&text(resp).await).unwrap();
    // The server saw the allowed messages only, the rewrite applied.
    let forwarded: Vec<Value> = serde_json::from_str(&up.bodies()[0]).unwrap();
    assert_eq!(forwarded.len(), 3);
    assert_eq!(forwarded[0]["id"], 2);
    assert_eq!(forwarded[1]["method"], "notifications/x");
    assert_eq!(forwarded[2]["params"], json!({"name": "rewritten"}));
    // Its answers, checked, plus berth's refusal.
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0]["id"], 2);
    assert_eq!(
        answers[0]["result"]["tools"],
        json!([{"name": "a"}]),
        "tools/list was filtered"
    );
    assert_eq!(
        answers[1]["result"]["tools"].as_array().unwrap().len(),
        2,
        "tools/call results are not the guard's business"
    );
    assert_eq!(answers[2]["id"], 1);
    assert_eq!(answers[2]["error"]["code"], -32003);
}

#[tokio::test]
async fn answers_streamed_as_events_are_checked_event_by_event() {
    let mut up = upstream(Arc::new(|_: &Method, _: &str, body: &Bytes| {
        let msg: Value = serde_json::from_slice(body).unwrap();
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}});
        let answer = json!({"jsonrpc":"2.0","id":msg["id"],"result":{"tools":[{"name":"secret"},{"name":"b"}]}});
        let body =
            format!(": ping\r\n\r\nid: 1\r\ndata: {progress}\r\n\r\nid: 2\ndata: {answer}\n\n");
        ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
    }));
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#,
        )
        .await;
    let body = text(resp).await;
    let (head, last) = body.rsplit_once("id: 2\n").expect("the answer event");
    assert!(
        head.starts_with(": ping\r\n\r\nid: 1\r\ndata: {\"jsonrpc\""),
        "other events pass byte for byte: {head:?}"
    );
    let answer: Value =
        serde_json::from_str(last.trim().strip_prefix("data: ").expect("data")).unwrap();
    assert_eq!(answer["id"], "x");
    assert_eq!(answer["result"]["tools"], json!([{"name": "b"}]));
}

#[tokio::test]
async fn a_refusal_among_notifications_is_the_whole_answer() {
    let mut up = upstream(Arc::new(|_: &Method, _: &str, _: &Bytes| {
        StatusCode::ACCEPTED.into_response()
    }));
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"[{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"bad"}}]"#,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answers: Vec<Value> = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["id"], 7);
    assert_eq!(
        up.bodies(),
        vec![r#"[{"jsonrpc":"2.0","method":"notifications/x"}]"#.to_owned()]
    );
}

/// Reads a response body up to and including the next event.
async fn next_event(body: &mut axum::body::BodyDataStream, buf: &mut String) -> String {
    loop {
        if let Some(i) = buf.find("\n\n") {
            let event = buf[..i + 2].to_owned();
            buf.drain(..i + 2);
            return event;
        }
        let chunk = body.next().await.expect("more events").expect("chunk");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn data(event: &str) -> Value {
    let line = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn legacy_sse_streams_get_refusals_and_checked_answers() {
    let mut up = upstream(Arc::new(|_: &Method, _: &str, _: &Bytes| {
        (StatusCode::ACCEPTED, "Accepted").into_response()
    }));
    let resp = up.send(Method::GET, "/sse", "").await;
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    up.stream
        .send(Bytes::from_static(
            b"event: endpoint\ndata: /messages/?session_id=abc\n\n",
        ))
        .unwrap();
    let endpoint = next_event(&mut stream, &mut buf).await;
    assert!(endpoint.contains("/messages/?session_id=abc"), "{endpoint}");

    // A refused request: 202, and its error comes on the stream.
    let resp = up
        .send(
            Method::POST,
            "/messages/?session_id=abc",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"bad"}}"#,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let refusal = data(&next_event(&mut stream, &mut buf).await);
    assert_eq!(refusal["id"], 1);
    assert_eq!(refusal["error"]["code"], -32003);
    assert!(up.bodies().is_empty(), "not forwarded");
    assert_eq!(
        up.guard.seen.lock().unwrap()[0].session.as_deref(),
        Some("s1"),
        "the header names the session when there is one"
    );

    // An allowed one: forwarded; its answer on the stream is checked.
    let resp = up
        .send(
            Method::POST,
            "/messages/?session_id=abc",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(up.bodies().len(), 1);
    up.stream
        .send(Bytes::from(format!(
            "event: message\ndata: {}\n\n",
            json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"},{"name":"c"}]}})
        )))
        .unwrap();
    let answer = data(&next_event(&mut stream, &mut buf).await);
    assert_eq!(answer["result"]["tools"], json!([{"name": "c"}]));

    // An answer to nothing berth saw posted (or answered twice) is
    // withheld; notifications and server requests pass.
    for msg in [
        json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"}]}}),
        json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}),
        json!({"jsonrpc":"2.0","id":"s-1","method":"roots/list"}),
    ] {
        up.stream
            .send(Bytes::from(format!("event: message\ndata: {msg}\n\n")))
            .unwrap();
        let got = data(&next_event(&mut stream, &mut buf).await);
        if msg.get("result").is_some() {
            assert!(got.get("result").is_none(), "{got}");
            assert_eq!(got["error"]["code"], -32603);
            assert_eq!(got["id"], 2);
        } else {
            assert_eq!(got, msg);
        }
    }
}

#[tokio::test]
async fn a_get_stream_never_delivers_an_unchecked_result() {
    let mut up = upstream(Arc::new(lists));
    let resp = up.send(Method::GET, "/sse", "").await;
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    // No `endpoint` event: a streamable GET stream, where an answer can
    // only be a resent one.
    for msg in [
        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
        json!({"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secret"}]}}),
        json!({"jsonrpc":"2.0","id":6,"error":{"code":-1,"message":"x"}}),
    ] {
        up.stream
            .send(Bytes::from(format!("data: {msg}\n\n")))
            .unwrap();
        let got = data(&next_event(&mut stream, &mut buf).await);
        if msg.get("result").is_some() {
            assert_eq!(got["error"]["code"], -32603, "{got}");
        } else {
            assert_eq!(got, msg);
        }
    }
}

#[tokio::test]
async fn bodies_that_hold_no_message_pass_and_bad_json_is_refused() {
    let mut up = upstream(Arc::new(lists));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    let resp = up.call(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        up.bodies(),
        vec!["grant_type=client_credentials".to_owned()]
    );
    let resp = up.send(Method::POST, "/mcp", "{\"jsonrpc\":").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        up.bodies().len(),
        1,
        "a body berth cannot read is not forwarded"
    );
}

/// berth's policy: Cedar lets anyone call `a` and read `file:///ok`; `a`
/// is shown as `alpha`.
fn policy() -> Arc<crate::proxy::Policy> {
    use crate::auth::cedar::{Authorizer, AuthzConfig};
    let config: AuthzConfig = serde_json::from_value(json!({
        "version": "1.0", "type": "cedarv1",
        "cedar": {"policies": [
            "permit(principal, action == Action::\"call_tool\", resource == Tool::\"a\");",
            "permit(principal, action == Action::\"read_resource\", resource) when { resource.uri == \"file:///ok\" };"
        ]}
    }))
    .unwrap();
    let authz = Arc::new(Authorizer::new(&config, "w").unwrap());
    let overrides = [(
        "a".to_owned(),
        crate::proxy::Override {
            name: Some("alpha".into()),
            description: None,
        },
    )]
    .into_iter()
    .collect();
    let tools = crate::proxy::ToolView::new(None, &overrides).unwrap();
    Arc::new(crate::proxy::Policy::new("w", Some(authz), tools, None, None, None).unwrap())
}

#[tokio::test]
async fn the_policy_judges_the_request_a_middleware_rewrote() {
    let mut up = upstream_with(Arc::new(lists), Some(policy()));
    // The guard rewrites the call to `rewritten`, which the policy refuses:
    // no plugin can turn an allowed call into another past the policy.
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rewrite"}}"#,
        )
        .await;
    let answer: Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert!(up.bodies().is_empty(), "nothing reached the server");
    // The shown name reaches the server as the server's own.
    up.send(
        Method::POST,
        "/mcp",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha"}}"#,
    )
    .await;
    let forwarded: Value = serde_json::from_str(&up.bodies()[0]).unwrap();
    assert_eq!(forwarded["params"]["name"], "a");
    // The old name of a renamed tool is not callable.
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a"}}"#,
        )
        .await;
    let answer: Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(up.bodies().len(), 1);
}

#[tokio::test]
async fn the_policy_filters_lists_after_every_plugin_on_every_path() {
    // In a POST's SSE answer.
    let mut up = upstream_with(
        Arc::new(|_: &Method, _: &str, body: &Bytes| {
            let msg: Value = serde_json::from_slice(body).unwrap();
            let answer = json!({"jsonrpc":"2.0","id":msg["id"],"result":{"tools":[{"name":"secret"},{"name":"a"},{"name":"b"}]}});
            (
                [(header::CONTENT_TYPE, "text/event-stream")],
                format!("data: {answer}\n\n"),
            )
                .into_response()
        }),
        Some(policy()),
    );
    let resp = up
        .send(
            Method::POST,
            "/mcp",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
    let body = text(resp).await;
    let answer: Value = serde_json::from_str(body.trim().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        answer["result"]["tools"],
        json!([{"name": "alpha"}]),
        "{body}"
    );

    // On a legacy SSE stream: the answer, and a server notification about
    // a resource the caller may not read.
    let mut up = upstream_with(
        Arc::new(|_: &Method, _: &str, _: &Bytes| {
            (StatusCode::ACCEPTED, "Accepted").into_response()
        }),
        Some(policy()),
    );
    let resp = up.send(Method::GET, "/sse", "").await;
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    up.stream
        .send(Bytes::from_static(
            b"event: endpoint\ndata: /messages?session_id=q\n\n",
        ))
        .unwrap();
    next_event(&mut stream, &mut buf).await;
    up.send(
        Method::POST,
        "/messages?session_id=q",
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    )
    .await;
    for msg in [
        json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///secret"}}),
        json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///ok"}}),
        json!({"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"b"},{"name":"a"}]}}),
    ] {
        up.stream
            .send(Bytes::from(format!("event: message\ndata: {msg}\n\n")))
            .unwrap();
    }
    let first = data(&next_event(&mut stream, &mut buf).await);
    assert_eq!(
        first["params"]["uri"], "file:///ok",
        "the denied resource's update is dropped"
    );
    let answer = data(&next_event(&mut stream, &mut buf).await);
    assert_eq!(answer["result"]["tools"], json!([{"name": "alpha"}]));
}
