//! The transparent reverse proxy in front of HTTP workloads (`sse` and
//! `streamable-http` transports): requests and streamed responses pass
//! through unchanged, session ids included.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Where an HTTP workload listens.
#[derive(Clone)]
pub(crate) struct ReverseState {
    client: Client<HttpConnector, Body>,
    /// `http://host:port`, no trailing slash.
    target: String,
    authority: HeaderValue,
}

impl ReverseState {
    /// A proxy to `host:port`.
    pub(crate) fn new(host: &str, port: u16) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            target: format!("http://{authority}"),
            authority: HeaderValue::from_str(&authority).expect("host:port is a valid header"),
        }
    }
}

/// Forwards any request to the workload.
pub(crate) async fn forward(State(s): State<ReverseState>, mut req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: Uri = match format!("{}{path}", s.target).parse() {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "invalid request path").into_response(),
    };
    *req.uri_mut() = uri;
    req.headers_mut().insert(header::HOST, s.authority.clone());
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
    ] {
        req.headers_mut().remove(h);
    }
    match s.client.request(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            format!("the MCP server is not reachable: {err}"),
        )
            .into_response(),
    }
}
