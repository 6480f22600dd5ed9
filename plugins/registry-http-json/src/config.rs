//! The plugin's configuration (`host::config()`).

use std::collections::BTreeMap;

use berth_plugin_sdk::url::Url;
use serde::Deserialize;

/// The configuration as written in `berth.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_cache_secs")]
    cache_secs: u64,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
}

fn default_cache_secs() -> u64 {
    300
}

fn default_timeout_secs() -> u64 {
    30
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the registry document is.
    pub url: Url,
    /// Extra request headers (e.g. `Authorization`); never logged.
    pub headers: Vec<(String, String)>,
    /// How long a fetched document is used before it is fetched again;
    /// 0 fetches on every call.
    pub cache_secs: u64,
    /// The HTTP timeout in seconds (connect, first byte, between bytes).
    pub timeout_secs: u64,
}

impl Config {
    /// Parses and checks the configuration JSON.
    pub fn from_json(json: &str) -> Result<Config, String> {
        let raw: RawConfig =
            serde_json::from_str(json).map_err(|e| format!("invalid configuration: {e}"))?;
        let url = Url::parse(&raw.url).map_err(|e| format!("invalid configuration: url: {e}"))?;
        if raw.timeout_secs == 0 {
            return Err("invalid configuration: timeout_secs must be at least 1".to_owned());
        }
        Ok(Config {
            url,
            headers: raw.headers.into_iter().collect(),
            cache_secs: raw.cache_secs,
            timeout_secs: raw.timeout_secs,
        })
    }
}

/// Whether a document fetched at `fetched_ns` (monotonic clock) may still be
/// used at `now_ns`.
pub fn is_fresh(fetched_ns: u64, now_ns: u64, cache_secs: u64) -> bool {
    now_ns.saturating_sub(fetched_ns) < cache_secs.saturating_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::{Config, is_fresh};

    #[test]
    fn parses() {
        let c = Config::from_json(r#"{"url": "https://r.example/registry.json"}"#).unwrap();
        assert_eq!(c.url.to_string(), "https://r.example/registry.json");
        assert_eq!((c.cache_secs, c.timeout_secs), (300, 30));
        assert!(c.headers.is_empty());
        let c = Config::from_json(
            r#"{"url": "http://h:8080/r.json", "headers": {"Authorization": "Bearer t"}, "cache_secs": 0}"#,
        )
        .unwrap();
        assert_eq!(
            c.headers,
            vec![("Authorization".to_owned(), "Bearer t".to_owned())]
        );
        assert_eq!(c.cache_secs, 0);
    }

    #[test]
    fn refuses() {
        let check = |json: &str, expect: &str| {
            let err = Config::from_json(json).unwrap_err();
            assert!(err.contains(expect), "{json}: {err}");
        };
        check("{}", "missing field `url`");
        check(
            r#"{"url": "ftp://x/r.json"}"#,
            "url: unsupported URL scheme",
        );
        check(
            r#"{"url": "http://x/", "cache": 1}"#,
            "unknown field `cache`",
        );
        check(r#"{"url": "http://x/", "timeout_secs": 0}"#, "timeout_secs");
    }

    #[test]
    fn freshness() {
        let s = 1_000_000_000;
        assert!(is_fresh(10 * s, 10 * s, 300));
        assert!(is_fresh(10 * s, 309 * s, 300));
        assert!(!is_fresh(10 * s, 310 * s, 300));
        assert!(!is_fresh(10 * s, 10 * s, 0));
        // A huge cache_secs does not overflow.
        assert!(is_fresh(5, 1 << 62, u64::MAX));
    }
}
