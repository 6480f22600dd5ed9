//! A minimal `http(s)://` URL splitter for wasi:http requests.
//!
//! It does not normalise or decode anything: it only finds the scheme, the
//! authority (`host[:port]`) and the path with its query, which is what an
//! `outgoing-request` is built from. URLs with user information
//! (`user:pass@host`) are refused: credentials belong in headers.

use std::fmt;

/// The scheme of a [`Url`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// A URL split into the parts of a wasi:http request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host` or `host:port`, as written.
    pub authority: String,
    /// The path and query, starting with `/` (a URL without a path gets
    /// `/`). The fragment is dropped.
    pub path_and_query: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl Url {
    /// Splits `url`; only `http` and `https` are accepted.
    pub fn parse(url: &str) -> Result<Url, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError(format!("`{url}` is not an absolute http(s) URL")))?;
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(UrlError(format!(
                "unsupported URL scheme `{scheme}` (use http or https)"
            )));
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(UrlError("the URL has no host".to_owned()));
        }
        if authority.contains('@') {
            return Err(UrlError(
                "the URL must not contain credentials (user@host); use headers".to_owned(),
            ));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
            || path.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(UrlError(
                "the URL contains spaces or control characters".to_owned(),
            ));
        }
        let path_and_query = match path.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'?') => format!("/{path}"),
            Some(_) => path.to_owned(),
        };
        Ok(Url {
            scheme,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// This URL with `suffix` appended to its path: a base like
    /// `http://vault:8200` or `http://vault:8200/` joined with `/v1/x`.
    /// A base with a query keeps the query out of the way: it is dropped.
    pub fn join_path(&self, suffix: &str) -> Url {
        let base = self
            .path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p);
        let base = base.trim_end_matches('/');
        let suffix = suffix.trim_start_matches('/');
        Url {
            scheme: self.scheme,
            authority: self.authority.clone(),
            path_and_query: format!("{base}/{suffix}"),
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::{Scheme, Url};

    fn check(input: &str, expect: Result<(Scheme, &str, &str), &str>) {
        let got = Url::parse(input);
        match (got, expect) {
            (Ok(url), Ok((scheme, authority, pq))) => {
                assert_eq!(
                    (
                        url.scheme,
                        url.authority.as_str(),
                        url.path_and_query.as_str()
                    ),
                    (scheme, authority, pq),
                    "{input}"
                );
            }
            (Err(err), Err(want)) => assert!(err.to_string().contains(want), "{input}: {err}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses() {
        check(
            "http://127.0.0.1:8200",
            Ok((Scheme::Http, "127.0.0.1:8200", "/")),
        );
        check(
            "https://reg.example/registry.json",
            Ok((Scheme::Https, "reg.example", "/registry.json")),
        );
        check("HTTP://h/a/b?x=1#frag", Ok((Scheme::Http, "h", "/a/b?x=1")));
        check("http://h?x=1", Ok((Scheme::Http, "h", "/?x=1")));
        check(
            "http://[::1]:8080/p",
            Ok((Scheme::Http, "[::1]:8080", "/p")),
        );
    }

    #[test]
    fn refuses() {
        check("ftp://h/x", Err("unsupported URL scheme `ftp`"));
        check("/relative", Err("not an absolute"));
        check("http:///x", Err("no host"));
        check("http://u:p@h/", Err("credentials"));
        check("http://h/a b", Err("spaces"));
    }

    #[test]
    fn joins() {
        let base = Url::parse("http://vault:8200").unwrap();
        assert_eq!(
            base.join_path("/v1/secret/data/x").to_string(),
            "http://vault:8200/v1/secret/data/x"
        );
        let base = Url::parse("http://vault:8200/prefix/").unwrap();
        assert_eq!(
            base.join_path("v1/x").to_string(),
            "http://vault:8200/prefix/v1/x"
        );
    }
}
