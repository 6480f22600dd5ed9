//! The stateless MCP revision (2026-07-28) in front of a handshake-era
//! stdio server: berth translates between the protocol eras here, next to
//! the transport that uses it.

use serde_json::{Map, Value};

use crate::proxy::jsonrpc;

/// Methods whose 2026-07-28 results carry caching directives.
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

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
    use serde_json::json;

    use super::*;

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
