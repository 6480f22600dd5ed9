//! The stateless MCP revision (2026-07-28) in front of a handshake-era
//! stdio server: berth translates between the protocol eras here, next to
//! the transport that uses it. `server/discover` is answered from the
//! server's cached handshake; other requests go to the server with the
//! per-request envelope stripped, and their results are tagged the way
//! stateless clients expect.

use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{StdioState, forward, header_str, reply};
use crate::proxy::jsonrpc;
use crate::proxy::layers::rescue::{Envelope, RequestError};

/// Methods whose 2026-07-28 results carry caching directives.
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// A stateless-revision request: no session; `server/discover` is answered
/// by berth from the server's handshake.
pub(super) async fn serve(
    s: &StdioState,
    headers: &HeaderMap,
    mut msg: Value,
    raw: Option<&RawValue>,
) -> Result<Response, RequestError> {
    let id = msg["id"].clone();
    let envelope = |code: i64, message: String, data: Option<Value>| {
        RequestError::Envelope(Box::new(Envelope {
            id: id.clone(),
            raw: raw.map(ToOwned::to_owned),
            code,
            message,
            data,
        }))
    };
    let meta = jsonrpc::meta(&msg);
    let version = meta
        .and_then(|m| m.get(jsonrpc::META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    let header = header_str(headers, "mcp-protocol-version");
    if let (Some(h), Some(v)) = (header, version)
        && h != v
    {
        return Err(envelope(
            jsonrpc::HEADER_MISMATCH,
            format!(
                "MCP-Protocol-Version header {h} does not match the request's _meta version {v}"
            ),
            None,
        ));
    }
    let Some(version) = version else {
        return Err(envelope(
            jsonrpc::INVALID_PARAMS,
            "a 2026-07-28 request needs `io.modelcontextprotocol/protocolVersion` in params._meta"
                .into(),
            None,
        ));
    };
    if version != jsonrpc::MODERN_VERSION {
        return Err(envelope(
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            format!("unsupported protocol version {version}"),
            Some(json!({"supported": [jsonrpc::MODERN_VERSION], "requested": version})),
        ));
    }
    if meta.is_none_or(|m| !m.contains_key(jsonrpc::META_CLIENT_CAPABILITIES)) {
        return Err(envelope(
            jsonrpc::MISSING_CAPABILITIES,
            "a 2026-07-28 request needs `io.modelcontextprotocol/clientCapabilities` in params._meta"
                .into(),
            None,
        ));
    }
    let init = s
        .mux
        .init_result()
        .await
        .map_err(|why| RequestError::NotReady {
            id: id.clone(),
            raw: raw.map(ToOwned::to_owned),
            why,
        })?;
    let server_info = init.get("serverInfo").cloned();
    if jsonrpc::method(&msg) == "server/discover" {
        let mut result = json!({
            "resultType": "complete",
            "ttlMs": 0,
            "cacheScope": "private",
            "supportedVersions": [jsonrpc::MODERN_VERSION],
            "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        });
        if let Some(instructions) = init.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        if let Some(info) = &server_info {
            result["serverInfo"] = info.clone();
            result["_meta"] = json!({jsonrpc::META_SERVER_INFO: info});
        }
        return Ok(reply(StatusCode::OK, &jsonrpc::result(id, result), raw));
    }
    strip_envelope(&mut msg);
    Ok(forward(
        s,
        None,
        msg,
        raw,
        headers,
        Some(server_info.unwrap_or(Value::Null)),
    )
    .await)
}

/// Turns a stateless-revision request into a handshake-era one for a
/// server berth initialized: the per-request envelope keys
/// (`io.modelcontextprotocol/*` in `params._meta`) are removed, since a
/// handshake-era connection refuses them.
fn strip_envelope(msg: &mut Value) {
    let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else {
        return;
    };
    let empty = match params.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            meta.is_empty()
        }
        None => false,
    };
    if empty {
        params.remove("_meta");
    }
}

/// Adds what stateless-revision clients expect on a result a handshake-era
/// server produced: `resultType`, caching directives on cacheable methods
/// (immediately stale and private: berth cannot know better), and the
/// server-identity stamp.
pub(super) fn modernize(answer: &mut Value, method: &str, server_info: Option<&Value>) {
    if let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if CACHEABLE.contains(&method) {
            result.entry("ttlMs").or_insert_with(|| Value::from(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
        if let Some(info) = server_info {
            let meta = result
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.entry(jsonrpc::META_SERVER_INFO)
                    .or_insert_with(|| info.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::jsonrpc::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, MODERN_VERSION};

    #[test]
    fn stripping_the_envelope() {
        let mut m = json!({"id":1,"method":"tools/list","params":{"_meta":{META_PROTOCOL_VERSION: MODERN_VERSION}}});
        strip_envelope(&mut m);
        assert_eq!(m, json!({"id":1,"method":"tools/list","params":{}}));
        let mut m = json!({"id":1,"method":"x","params":{"_meta":{"progressToken":3, META_CLIENT_CAPABILITIES:{}}}});
        strip_envelope(&mut m);
        assert_eq!(m["params"]["_meta"], json!({"progressToken":3}));
    }

    #[test]
    fn results_are_tagged_for_stateless_clients() {
        let info = json!({"name": "s", "version": "1"});
        let mut a = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}});
        modernize(&mut a, "tools/list", Some(&info));
        assert_eq!(a["result"]["resultType"], "complete");
        assert_eq!(a["result"]["ttlMs"], 0);
        assert_eq!(a["result"]["cacheScope"], "private");
        assert_eq!(a["result"]["_meta"][jsonrpc::META_SERVER_INFO], info);
        let mut c = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        modernize(&mut c, "tools/call", None);
        assert_eq!(c["result"]["resultType"], "complete");
        assert!(c["result"].get("ttlMs").is_none(), "not a cacheable method");
        let mut e = json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}});
        let before = e.clone();
        modernize(&mut e, "tools/list", Some(&info));
        assert_eq!(e, before, "errors are left alone");
    }
}
