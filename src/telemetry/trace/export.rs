//! The export side of tracing: the task that drains the span queue in
//! batches to the OTLP exporter, and the HTTP client the exporter sends
//! through (hyper + rustls, like the reverse proxy's).
//!
//! The exporter is built with retries off (its retry back-off sleeps the
//! thread without the `tokio` feature, and a failed batch is counted, not
//! retried) and without headers: [`OtlpClient`] sets the configured ones on
//! each request itself, byte for byte (the exporter would percent-decode
//! them).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, ResponseBodyTooLarge};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Counters, TraceError, TraceSettings, VERSION};

/// Largest export response read (the OTLP response is a few bytes).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// At most one warning per this long about failed exports.
const WARN_EVERY: Duration = Duration::from_secs(60);

// === impl Pump ===

/// The export task's state: spans taken from the queue, batched, exported.
/// Whatever it still holds when dropped (shutdown deadline passed, task
/// aborted) is counted as dropped.
pub(super) struct Pump {
    spans: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    counters: Arc<Counters>,
    /// The batch being collected.
    buf: Vec<SpanData>,
    /// Spans in the export request in flight.
    inflight: u64,
    batch: usize,
    interval: Duration,
    timeout: Duration,
    /// The endpoint's origin, for warnings (no path or query, no headers).
    origin: String,
    last_warn: Option<Instant>,
}

impl Pump {
    pub(super) fn new(
        settings: &TraceSettings,
        spans: mpsc::Receiver<SpanData>,
        counters: Arc<Counters>,
    ) -> Result<Self, TraceError> {
        let client = OtlpClient::new(settings)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(settings.endpoint.as_str())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .map_err(TraceError::Exporter)?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", settings.service_name.clone()),
                    KeyValue::new("service.version", VERSION),
                ])
                .build(),
        );
        Ok(Self {
            spans,
            exporter,
            counters,
            buf: Vec::new(),
            inflight: 0,
            batch: settings.batch,
            interval: settings.interval,
            timeout: settings.timeout,
            origin: settings.endpoint.origin().ascii_serialization(),
            last_warn: None,
        })
    }

    /// Exports batches of up to `batch` spans, each at most `interval` after
    /// its first span arrived, until `stop` carries a deadline (or every
    /// sender is gone); then closes the queue and exports what it holds
    /// until that deadline.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        'collect: loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break 'collect,
                n = self.spans.recv_many(&mut self.buf, self.batch) => if n == 0 { break 'collect },
            }
            let flush_at = Instant::now() + self.interval;
            while self.buf.len() < self.batch {
                let room = self.batch - self.buf.len();
                tokio::select! {
                    biased;
                    _ = stop.changed() => break 'collect,
                    n = self.spans.recv_many(&mut self.buf, room) => if n == 0 { break },
                    () = tokio::time::sleep_until(flush_at) => break,
                }
            }
            self.export(self.timeout).await;
        }
        self.spans.close();
        let deadline = (*stop.borrow()).unwrap_or_else(|| Instant::now() + self.timeout);
        loop {
            while self.buf.len() < self.batch {
                match self.spans.try_recv() {
                    Ok(span) => self.buf.push(span),
                    Err(_) => break,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.buf.is_empty() || left.is_zero() {
                break;
            }
            self.export(left.min(self.timeout)).await;
        }
    }

    /// Exports the collected batch, allowing it `limit`.
    async fn export(&mut self, limit: Duration) {
        let batch = std::mem::take(&mut self.buf);
        let n = batch.len() as u64;
        self.inflight = n;
        let result = tokio::time::timeout(limit, self.exporter.export(batch)).await;
        self.inflight = 0;
        match result {
            Ok(Ok(())) => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(err)) => self.failed(n, &err),
            Err(_) => self.failed(n, &"the export timed out"),
        }
    }

    fn failed(&mut self, n: u64, error: &dyn std::fmt::Display) {
        let failed = self.counters.failed.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            self.last_warn = Some(now);
            tracing::warn!(
                error = %error,
                endpoint = %self.origin,
                spans = n,
                failed,
                "Trace export failed; spans dropped (warned at most once a minute)."
            );
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        let lost = self.spans.len() as u64 + self.buf.len() as u64 + self.inflight;
        if lost > 0 {
            self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

// === impl OtlpClient ===

/// The exporter's HTTP client: hyper over rustls (ring, the system's roots)
/// or plain TCP, the configured headers on every request, one timeout for
/// the whole exchange.
#[derive(Clone)]
struct OtlpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: HeaderMap,
    timeout: Duration,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpClient {
    fn new(settings: &TraceSettings) -> Result<Self, TraceError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let tls = if settings.endpoint.scheme() == "https" {
            (*crate::tls::client_config()).clone()
        } else {
            crate::tls::with_roots(rustls::RootCertStore::empty())
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            headers: settings.header_map()?,
            timeout: settings.timeout,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let mut request = request.map(Full::new);
        let headers = request.headers_mut();
        for name in self.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = match Limited::new(body, MAX_RESPONSE).collect().await {
                Ok(body) => body.to_bytes(),
                Err(err) if err.is::<LengthLimitError>() => {
                    return Err(Box::new(ResponseBodyTooLarge::new()) as HttpError);
                }
                Err(err) => return Err(err),
            };
            Ok(Response::from_parts(parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err("the export request timed out".into()),
        }
    }
}
