//! JSON-RPC 2.0 message shapes as the proxy sees them, and MCP constants.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The stateless MCP revision: no handshake, per-request `_meta`.
pub(crate) const MODERN_VERSION: &str = "2026-07-28";
/// Handshake-era revisions the proxy speaks with clients.
pub(crate) const HANDSHAKE_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The revision the proxy offers when it initializes a server itself.
pub(crate) const LATEST_HANDSHAKE_VERSION: &str = "2025-11-25";
/// `_meta` key carrying the revision of a stateless request.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's capabilities on a stateless request.
pub(crate) const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key stamped on stateless results with the server's identity.
pub(crate) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Invalid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// Method not found.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid params.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// Parse error.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// Request timed out (MCP's `REQUEST_TIMEOUT`); also "session not found" on HTTP 404.
pub(crate) const REQUEST_TIMEOUT: i64 = -32001;
/// The session is unknown.
pub(crate) const SESSION_NOT_FOUND: i64 = -32001;
/// The request was cancelled (LSP's code, used by MCP SDKs).
pub(crate) const REQUEST_CANCELLED: i64 = -32800;
/// The `MCP-Protocol-Version` header contradicts the request's `_meta`.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// A stateless request lacks the client's capabilities.
pub(crate) const MISSING_CAPABILITIES: i64 = -32021;
/// Unsupported protocol revision.
pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// What kind of JSON-RPC message a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
    /// None of these.
    Invalid,
}

/// Classifies a decoded message.
pub(crate) fn kind(msg: &Value) -> Kind {
    let Some(obj) = msg.as_object() else {
        return Kind::Invalid;
    };
    let has_id = obj
        .get("id")
        .is_some_and(|id| id.is_string() || id.is_number());
    match (obj.get("method").and_then(Value::as_str), has_id) {
        (Some(_), true) => Kind::Request,
        (Some(_), false) if !obj.contains_key("id") => Kind::Notification,
        (None, true) if obj.contains_key("result") || obj.contains_key("error") => Kind::Response,
        _ => Kind::Invalid,
    }
}

/// Refuses a client message that does not say `"jsonrpc": "2.0"`.
pub(crate) fn check_version(msg: &Value) -> Result<(), &'static str> {
    match msg.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => Ok(()),
        _ if !msg.is_object() => Ok(()), // not a message at all: `kind` says so
        _ => Err("`jsonrpc` must be \"2.0\""),
    }
}

/// The `id` of a message if it is a valid one (string or number), else null.
pub(crate) fn id_of(msg: &Value) -> Value {
    msg.get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null)
}

/// The `id` of a client message exactly as the client wrote it, if `body`
/// is one JSON object with an `id`.
///
/// A [`Value`] keeps integers only up to 64 bits (larger ones become
/// floats, which do not print as they were written); this text goes back in
/// the answer instead, so every id is echoed byte for byte.
///
/// Only an id that a [`Value`] cannot hold exactly (a number parsed as a
/// float) needs it; every other message skips this second reading of the
/// body, so the hot path parses each request once.
pub(crate) fn raw_id_of(body: &[u8], msg: &Value) -> Option<Box<RawValue>> {
    match msg.get("id") {
        Some(Value::Number(n)) if n.is_f64() => raw_id(body),
        _ => None,
    }
}

/// The `id` of `body` as the client wrote it, whatever its type (see
/// [`raw_id_of`]).
pub(crate) fn raw_id(body: &[u8]) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Box<RawValue>>,
    }
    serde_json::from_slice::<IdOnly>(body).ok()?.id
}

/// The `id`s of the messages of a batch `body` as the client wrote them
/// (see [`raw_id_of`]): all `None` unless one of `msgs` has an id a
/// [`Value`] cannot hold exactly.
pub(crate) fn raw_ids_of(body: &[u8], msgs: &[Value]) -> Vec<Option<Box<RawValue>>> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Box<RawValue>>,
    }
    let inexact = msgs
        .iter()
        .any(|m| matches!(m.get("id"), Some(Value::Number(n)) if n.is_f64()));
    let read = || serde_json::from_slice::<Vec<IdOnly>>(body).ok();
    match inexact.then(read).flatten() {
        Some(ids) if ids.len() == msgs.len() => ids.into_iter().map(|i| i.id).collect(),
        _ => msgs.iter().map(|_| None).collect(),
    }
}

/// A JSON array of messages each already encoded (see [`encode`]).
pub(crate) fn join(encoded: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    out.push(b'[');
    for (i, e) in encoded.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.push(b']');
    out
}

/// The key of a message id, unique among the ids of one client: strings
/// and numbers never collide.
pub(crate) fn id_key(id: &Value) -> String {
    match id {
        Value::String(s) => format!("s:{s}"),
        other => format!("n:{other}"),
    }
}

/// `msg` as JSON; a numeric `id` is written as `raw` (the client's own
/// text of it, see [`raw_id`]) when that is a number too.
pub(crate) fn encode(msg: &Value, raw: Option<&RawValue>) -> Vec<u8> {
    /// A message whose `id` is written from raw text.
    struct WithId<'a>(&'a Map<String, Value>, &'a RawValue);

    impl Serialize for WithId<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                if k == "id" {
                    map.serialize_entry(k, self.1)?;
                } else {
                    map.serialize_entry(k, v)?;
                }
            }
            map.end()
        }
    }

    let numeric = |t: &str| t.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let encoded = match (msg.as_object(), raw) {
        (Some(obj), Some(raw))
            if obj.get("id").is_some_and(Value::is_number) && numeric(raw.get()) =>
        {
            serde_json::to_vec(&WithId(obj, raw))
        }
        _ => serde_json::to_vec(msg),
    };
    // A `Value` with string keys always encodes; the raw id is valid JSON.
    encoded.unwrap_or_default()
}

/// The `method` of a message, or "".
pub(crate) fn method(msg: &Value) -> &str {
    msg.get("method").and_then(Value::as_str).unwrap_or("")
}

/// A JSON-RPC error response.
pub(crate) fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// A JSON-RPC success response.
pub(crate) fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// `params._meta` of a message, if it is an object.
pub(crate) fn meta(msg: &Value) -> Option<&Map<String, Value>> {
    msg.get("params")?.get("_meta")?.as_object()
}

/// Whether a request belongs to the stateless revision: by its header or by
/// the revision key in its `_meta`.
pub(crate) fn is_modern(msg: &Value, header_version: Option<&str>) -> bool {
    if method(msg) == "initialize" {
        return false;
    }
    header_version == Some(MODERN_VERSION)
        || meta(msg)
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .is_some_and(|v| v.as_str() == Some(MODERN_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let check = |v: Value, k: Kind| assert_eq!(kind(&v), k, "{v}");
        check(
            json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
            Kind::Request,
        );
        check(
            json!({"jsonrpc":"2.0","id":"a","method":"ping"}),
            Kind::Request,
        );
        check(
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            Kind::Notification,
        );
        check(json!({"jsonrpc":"2.0","id":1,"result":{}}), Kind::Response);
        check(
            json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}),
            Kind::Response,
        );
        check(
            json!({"jsonrpc":"2.0","id":null,"method":"x"}),
            Kind::Invalid,
        );
        check(json!([1]), Kind::Invalid);
        check(json!({"jsonrpc":"2.0","id":1}), Kind::Invalid);
    }

    #[test]
    fn versions() {
        assert!(check_version(&json!({"jsonrpc": "2.0", "id": 1, "method": "x"})).is_ok());
        for bad in [
            json!({"id": 1, "method": "x"}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "x"}),
            json!({"jsonrpc": 2.0, "id": 1, "method": "x"}),
        ] {
            assert!(check_version(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_go_back_as_written() {
        let check = |body: &str, expected_id: &str| {
            let msg: Value = serde_json::from_str(body).unwrap();
            let raw = raw_id(body.as_bytes());
            let answer = result(msg["id"].clone(), json!({}));
            let out = String::from_utf8(encode(&answer, raw.as_deref())).unwrap();
            assert_eq!(
                out,
                format!(r#"{{"jsonrpc":"2.0","id":{expected_id},"result":{{}}}}"#),
                "{body}"
            );
        };
        for id in [
            "12345678901234567890123",
            "9007199254740993",
            "-98765432109876543210",
            "1",
            "1.5",
            "\"s\"",
        ] {
            check(
                &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x"}}"#),
                id,
            );
        }
        // A Value alone would have printed a float.
        let v: Value = serde_json::from_str("12345678901234567890123").unwrap();
        assert_ne!(v.to_string(), "12345678901234567890123");
        // No raw id, or a message without a numeric id: plain encoding.
        assert_eq!(encode(&json!({"id": 1}), None), br#"{"id":1}"#);
        let raw = raw_id(br#"{"id":7}"#);
        assert_eq!(
            encode(&json!({"id": "x"}), raw.as_deref()),
            br#"{"id":"x"}"#
        );
    }

    #[test]
    fn batch_ids_go_back_as_written() {
        let body = r#"[{"jsonrpc":"2.0","id":12345678901234567890123,"method":"x"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"a","method":"y"}]"#;
        let msgs: Vec<Value> = serde_json::from_str(body).unwrap();
        let raws = raw_ids_of(body.as_bytes(), &msgs);
        let answers: Vec<Vec<u8>> = msgs
            .iter()
            .zip(&raws)
            .filter(|(m, _)| m.get("id").is_some())
            .map(|(m, raw)| encode(&result(m["id"].clone(), json!(1)), raw.as_deref()))
            .collect();
        assert_eq!(
            String::from_utf8(join(&answers)).unwrap(),
            r#"[{"jsonrpc":"2.0","id":12345678901234567890123,"result":1},{"jsonrpc":"2.0","id":"a","result":1}]"#
        );
        // Exact ids: the body is not read again.
        let plain: Vec<Value> = serde_json::from_str(r#"[{"id":1},{"id":"b"}]"#).unwrap();
        assert!(
            raw_ids_of(b"not even json", &plain)
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(join(&[]), b"[]");
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
    }

    #[test]
    fn modern_detection() {
        let m = json!({"id":1,"method":"tools/list","params":{"_meta":{META_PROTOCOL_VERSION: MODERN_VERSION}}});
        assert!(is_modern(&m, None));
        let l = json!({"id":1,"method":"tools/list","params":{}});
        assert!(!is_modern(&l, None));
        assert!(is_modern(&l, Some(MODERN_VERSION)));
        let i = json!({"id":1,"method":"initialize","params":{}});
        assert!(!is_modern(&i, Some(MODERN_VERSION)));
    }
}
