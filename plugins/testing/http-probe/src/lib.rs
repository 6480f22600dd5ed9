//! Test guest `test-http-probe`: a registry source whose `get(name)` treats
//! `name` as a URL and does an HTTP GET through wasi:http, for the host's
//! permission tests.
//!
//! - A response (any status) → `ok(server)` whose `entry` is
//!   `{"status": 200, "body": "…"}` (body as lossy UTF-8, at most 1 MiB).
//! - No response (refused by the host, connection refused, bad URL…) →
//!   `unavailable(message)`; a refusal by berth's permissions reads
//!   `request denied by berth …` or `destination address prohibited by berth …`.
//!
//! `list` answers an empty page.

/// The entry JSON for a response.
pub fn entry_json(status: u16, body: &[u8]) -> String {
    serde_json::json!({
        "status": status,
        "body": String::from_utf8_lossy(body),
    })
    .to_string()
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit/deps/berth-plugin@0.1.0",
        world: "registry-source-plugin",
    });

    use std::time::Duration;

    use berth::plugin::types::PluginError;
    use berth_plugin_sdk::http::{self, Method};
    use berth_plugin_sdk::url::Url;
    use exports::berth::plugin::registry_source::{Guest, ListRequest, Page, Server};

    struct HttpProbe;

    impl Guest for HttpProbe {
        fn list(_req: ListRequest) -> Result<Page, PluginError> {
            Ok(Page {
                servers: Vec::new(),
                next_cursor: None,
            })
        }

        fn get(name: String) -> Result<Server, PluginError> {
            let url = Url::parse(&name).map_err(|e| PluginError::InvalidInput(e.to_string()))?;
            let response = http::send(&http::Request {
                method: Method::Get,
                url: &url,
                headers: &[],
                body: None,
                timeout: Duration::from_secs(10),
                max_body: 1024 * 1024,
            })
            .map_err(|err| PluginError::Unavailable(format!("GET {url}: {err}")))?;
            Ok(Server {
                entry: crate::entry_json(response.status, &response.body),
                name,
            })
        }
    }

    export!(HttpProbe);
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_json() {
        assert_eq!(
            super::entry_json(503, b"down\xff"),
            r#"{"status":503,"body":"down\u{fffd}"}"#.replace("\\u{fffd}", "\u{fffd}")
        );
    }
}
