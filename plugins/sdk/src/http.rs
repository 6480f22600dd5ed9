//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! One request at a time, the whole response body read into memory (up to a
//! limit). berth's host decides which hosts a plugin may reach; a refusal
//! comes back as an [`Error`] with [`Error::denied`] set.

use std::fmt;
use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme as WasiScheme,
};
use wasi::io::streams::StreamError;

use crate::url::{Scheme, Url};

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's name, e.g. `GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn to_wasi(self) -> WasiMethod {
        match self {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Where to send it.
    pub url: &'a Url,
    /// Extra headers (name, value).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, if any.
    pub body: Option<&'a [u8]>,
    /// Applied to connecting, to the first response byte and between body
    /// bytes (the host may enforce shorter limits).
    pub timeout: Duration,
    /// A longer response body is an error.
    pub max_body: usize,
}

/// A response: the status and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request failed: no response, or an unreadable one.
#[derive(Debug, Clone)]
pub struct Error {
    /// The host refused the request (the plugin's permissions do not allow
    /// this destination).
    pub denied: bool,
    /// What went wrong, without header values or bodies.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    fn msg(message: impl Into<String>) -> Error {
        Error {
            denied: false,
            message: message.into(),
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        let denied = matches!(
            code,
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited
        );
        Error {
            denied,
            message: describe(&code),
        }
    }
}

/// A short, lowercase description of a wasi:http error code.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "request denied by berth (not in the plugin's allow_http permissions)".to_owned()
        }
        ErrorCode::DestinationIpProhibited => {
            "destination address prohibited by berth (private addresses need allow_private)"
                .to_owned()
        }
        ErrorCode::DnsTimeout => "dns timeout".to_owned(),
        ErrorCode::DnsError(e) => format!(
            "dns error{}",
            e.rcode
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        ErrorCode::DestinationNotFound => "destination not found".to_owned(),
        ErrorCode::DestinationUnavailable => "destination unavailable".to_owned(),
        ErrorCode::DestinationIpUnroutable => "destination unroutable".to_owned(),
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::ConnectionTerminated => "connection terminated".to_owned(),
        ErrorCode::ConnectionTimeout => "connection timeout".to_owned(),
        ErrorCode::ConnectionReadTimeout => "read timeout".to_owned(),
        ErrorCode::ConnectionWriteTimeout => "write timeout".to_owned(),
        ErrorCode::HttpResponseTimeout => "response timeout".to_owned(),
        ErrorCode::TlsProtocolError => "tls protocol error".to_owned(),
        ErrorCode::TlsCertificateError => "tls certificate error".to_owned(),
        ErrorCode::InternalError(Some(m)) => format!("internal error: {m}"),
        other => {
            // `ErrorCode::HttpProtocolError` -> `http protocol error`.
            let name = format!("{other:?}");
            let name = name.trim_start_matches("ErrorCode::");
            let name = name.split('(').next().unwrap_or(name);
            let mut out = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        }
    }
}

/// Sends `req` and waits for the whole response.
pub fn send(req: &Request<'_>) -> Result<Response, Error> {
    let headers = Fields::new();
    for (name, value) in req.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| Error::msg(format!("header `{name}` refused: {e:?}")))?;
    }
    if let Some(body) = req.body {
        headers
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| Error::msg(format!("header `content-length` refused: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let bad = |what: &str| Error::msg(format!("the request's {what} was refused"));
    outgoing
        .set_method(&req.method.to_wasi())
        .map_err(|()| bad("method"))?;
    let scheme = match req.url.scheme {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| bad("scheme"))?;
    outgoing
        .set_authority(Some(&req.url.authority))
        .map_err(|()| bad("authority"))?;
    outgoing
        .set_path_with_query(Some(&req.url.path_and_query))
        .map_err(|()| bad("path"))?;
    let body = outgoing.body().map_err(|()| bad("body"))?;

    let options = RequestOptions::new();
    let nanos = u64::try_from(req.timeout.as_nanos()).unwrap_or(u64::MAX);
    // A host that does not support a timeout refuses it; the request still
    // goes out.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let future = outgoing_handler::handle(outgoing, Some(options))?;

    if let Some(bytes) = req.body {
        let stream = body.write().map_err(|()| bad("body"))?;
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| stream_error("writing the request body", e))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(body, None)?;

    let response = loop {
        match future.get() {
            Some(Ok(result)) => break result?,
            Some(Err(())) => return Err(Error::msg("the response was already taken")),
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| Error::msg("the response body was already taken"))?;
    let stream = incoming
        .stream()
        .map_err(|()| Error::msg("the response body stream was already taken"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > req.max_body {
                    return Err(Error::msg(format!(
                        "the response body is larger than {} bytes",
                        req.max_body
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(e) => return Err(stream_error("reading the response body", e)),
        }
    }
    drop(stream);
    // Children before parents: the trailers future outlives nothing.
    drop(IncomingBody::finish(incoming));
    drop(response);
    Ok(Response { status, body: out })
}

fn stream_error(doing: &str, err: StreamError) -> Error {
    match err {
        StreamError::Closed => Error::msg(format!("{doing}: stream closed")),
        StreamError::LastOperationFailed(e) => match wasi::http::types::http_error_code(&e) {
            Some(code) => {
                let mut err = Error::from(code);
                err.message = format!("{doing}: {}", err.message);
                err
            }
            None => Error::msg(format!("{doing}: {}", e.to_debug_string())),
        },
    }
}
