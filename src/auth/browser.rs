//! The browser guard: refuses what a web page could send to a berth
//! listener on TCP — a cross-site request (CSRF) or a request for a foreign
//! host name (DNS rebinding).
//!
//! One implementation serves the management API and the proxies; they
//! differ only in [`BrowserGuard`]'s settings: the API allows no web origin
//! unless configured, the proxies allow loopback origins (browser MCP
//! clients such as the MCP Inspector run on localhost).
//!
//! Rules, in order (the first that matches refuses):
//! 1. more than one `Host` or `Origin` header;
//! 2. a `Host` that is a domain name other than `localhost` and not one of
//!    the configured host names (IP literals are fine: a rebinding page
//!    always sends its own domain);
//! 3. an `Origin` that is `null`, unparsable, or not an allowed origin —
//!    compared exactly by scheme, host and port, never by prefix;
//! 4. `Sec-Fetch-Site: cross-site` without an allowed `Origin`.
//!
//! A request without `Origin` and `Sec-Fetch-Site` (curl, SDKs, ToolHive
//! clients) passes rules 3 and 4.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// A web origin: scheme, host and port (the default port filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    scheme: String,
    host: url::Host<String>,
    port: u16,
}

/// Why a configured origin is not one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// Not `http(s)://host[:port]`.
    #[error("`{0}` is not a web origin (expected `http://host[:port]` or `https://host[:port]`)")]
    BadOrigin(String),
    /// A host name that is not a valid DNS name.
    #[error("`{0}` is not a host name")]
    BadHost(String),
}

impl std::str::FromStr for WebOrigin {
    type Err = GuardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GuardError::BadOrigin(s.to_owned());
        let url = url::Url::parse(s).map_err(|_| bad())?;
        // An origin is scheme://host[:port] and nothing else.
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(bad());
        }
        match url.origin() {
            url::Origin::Tuple(scheme, host, port) => Ok(Self { scheme, host, port }),
            url::Origin::Opaque(_) => Err(bad()),
        }
    }
}

impl std::fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl WebOrigin {
    /// Whether the origin's host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        }
    }
}

/// The guard's settings for one listener.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    origins: Vec<WebOrigin>,
    hosts: Vec<String>,
    loopback_origins: bool,
}

impl BrowserGuard {
    /// A guard allowing `origins`, host names `hosts` besides `localhost`
    /// and IP literals, and — if `loopback_origins` — every origin on
    /// `localhost` or a loopback address.
    pub fn new(
        origins: &[String],
        hosts: &[String],
        loopback_origins: bool,
    ) -> Result<Self, GuardError> {
        let origins = origins
            .iter()
            .map(|o| o.parse())
            .collect::<Result<Vec<WebOrigin>, _>>()?;
        let hosts = hosts
            .iter()
            .map(|h| {
                let lower = h.to_ascii_lowercase();
                match url::Host::parse(&lower) {
                    Ok(url::Host::Domain(d)) if d == lower && !d.is_empty() => Ok(d),
                    _ => Err(GuardError::BadHost(h.clone())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origins,
            hosts,
            loopback_origins,
        })
    }

    /// Checks a request's headers; `Err` says why it is refused.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let mut hosts = headers.get_all(HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err("more than one `Host` header".into());
        }
        if let Some(host) = host {
            let host = host
                .to_str()
                .map_err(|_| "the `Host` header is not text".to_owned())?;
            if !self.host_ok(host) {
                return Err(format!("host `{}` is not allowed", host.escape_debug()));
            }
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        let origin = origins.next();
        if origins.next().is_some() {
            return Err("more than one `Origin` header".into());
        }
        let mut allowed_origin = false;
        if let Some(origin) = origin {
            let text = origin.to_str().unwrap_or("");
            if !self.origin_ok(text) {
                return Err(format!("origin `{}` is not allowed", text.escape_debug()));
            }
            allowed_origin = true;
        }
        let cross_site = headers
            .get_all("sec-fetch-site")
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site && !allowed_origin {
            return Err("cross-site requests are not allowed".into());
        }
        Ok(())
    }

    fn origin_ok(&self, origin: &str) -> bool {
        // `null` and anything unparsable are foreign.
        let Ok(origin) = origin.parse::<WebOrigin>() else {
            return false;
        };
        (self.loopback_origins && origin.is_loopback()) || self.origins.contains(&origin)
    }

    fn host_ok(&self, host: &str) -> bool {
        let name = host_of(host);
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The host part of a `Host` header value (`name`, `name:port`,
/// `[v6]:port`).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port)) if port.starts_with(':') => ip,
            // Anything else after the bracket makes it no address.
            _ => authority,
        };
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    /// `(headers, allowed?)` against a guard.
    fn check(guard: &BrowserGuard, cases: &[(&[(&str, &str)], bool)]) {
        for (pairs, ok) in cases {
            let got = guard.check(&headers(pairs));
            assert_eq!(got.is_ok(), *ok, "{pairs:?}: {got:?}");
        }
    }

    #[test]
    fn management_api_allows_no_web_origin_by_default() {
        let g = BrowserGuard::new(&[], &[], false).expect("guard");
        check(
            &g,
            &[
                (&[("host", "127.0.0.1:8080")], true),
                (&[("host", "localhost:8080")], true),
                (&[("host", "LOCALHOST")], true),
                (&[("host", "[::1]:8080")], true),
                (&[("host", "10.1.2.3:8080")], true),
                (&[], true),
                (&[("host", "rebind.evil.example:8080")], false),
                (&[("host", "localhost.evil.example")], false),
                (&[("host", "127.0.0.1.nip.io")], false),
                (&[("host", "[::1]x:80")], false),
                (&[("host", "localhost"), ("host", "evil")], false),
                (&[("origin", "http://evil.example")], false),
                (&[("origin", "http://localhost:3000")], false),
                (&[("origin", "http://127.0.0.1:8080")], false),
                (&[("origin", "null")], false),
                (&[("origin", "")], false),
                (&[("sec-fetch-site", "cross-site")], false),
                (&[("sec-fetch-site", "Cross-Site")], false),
                (&[("sec-fetch-site", "none")], true),
                (&[("sec-fetch-site", "same-origin")], true),
            ],
        );
    }

    #[test]
    fn origins_compare_exactly() {
        let g = BrowserGuard::new(
            &[
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
            &["berth.example.com".into()],
            false,
        )
        .expect("guard");
        check(
            &g,
            &[
                (&[("origin", "https://app.example.com")], true),
                (&[("origin", "https://APP.example.com:443")], true),
                (&[("origin", "https://app.example.com:444")], false),
                (&[("origin", "http://app.example.com")], false),
                (&[("origin", "https://app.example.com.evil.com")], false),
                (&[("origin", "https://app.example.co")], false),
                (&[("origin", "http://localhost:3000")], true),
                (&[("origin", "http://localhost.evil.com:3000")], false),
                (&[("origin", "http://localhost:30000")], false),
                (
                    &[
                        ("origin", "https://app.example.com"),
                        ("origin", "https://evil.example"),
                    ],
                    false,
                ),
                (
                    &[
                        ("origin", "https://app.example.com"),
                        ("sec-fetch-site", "cross-site"),
                    ],
                    true,
                ),
                (&[("host", "berth.example.com")], true),
                (&[("host", "Berth.Example.com:8080")], true),
                (&[("host", "evil.berth.example.com")], false),
            ],
        );
    }

    #[test]
    fn proxies_allow_loopback_origins() {
        let g = BrowserGuard::new(&[], &[], true).expect("guard");
        check(
            &g,
            &[
                (&[("origin", "http://localhost:6274")], true),
                (&[("origin", "http://127.0.0.1:6274")], true),
                (&[("origin", "http://[::1]:6274")], true),
                (&[("origin", "http://localhost.evil.com")], false),
                (&[("origin", "null")], false),
                (&[("origin", "file://")], false),
                (&[("origin", "chrome-extension://abcdef")], false),
            ],
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(BrowserGuard::new(&["evil.example".into()], &[], false).is_err());
        assert!(BrowserGuard::new(&["https://a.example/path".into()], &[], false).is_err());
        assert!(BrowserGuard::new(&["null".into()], &[], false).is_err());
        assert!(BrowserGuard::new(&[], &["http://a.example".into()], false).is_err());
        assert!(BrowserGuard::new(&[], &["a.example:80".into()], false).is_err());
    }
}
