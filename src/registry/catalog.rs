//! A parsed registry: its entries sorted by name (stable listings,
//! unlike ToolHive's map order), looked up by full or short name,
//! searched and paged.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::model::{Server, ServerJson};

/// The most entries one catalog holds; the rest of a larger source is
/// dropped with a warning (bounded memory for hostile sources).
pub const MAX_SERVERS: usize = 10_000;

/// Why a document is not a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// ToolHive's old format.
    #[error(
        "the registry document is in the legacy ToolHive format (top-level `servers`/`remote_servers`); convert it to the upstream MCP registry format (`data.servers`)"
    )]
    Legacy,
    /// Not JSON or not the expected shape.
    #[error("the registry document is not valid: {0}")]
    Invalid(String),
    /// No usable entry.
    #[error("the registry document has no usable server entry")]
    Empty,
}

/// One registry's entries.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The document's version.
    pub version: String,
    /// When its data last changed (RFC 3339), as the document says.
    pub last_updated: String,
    servers: Vec<Arc<Server>>,
    by_name: HashMap<String, usize>,
    haystacks: Vec<String>,
    /// Entries skipped, and why (logged; counted in the registry view).
    pub warnings: Vec<String>,
}

/// A lookup that found nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No entry by that name.
    NotFound,
    /// A short name several entries end with: their full names.
    Ambiguous(Vec<String>),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    version: String,
    #[serde(default)]
    meta: Meta,
    data: Data,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    last_updated: String,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    servers: Vec<Value>,
}

impl Catalog {
    /// Parses an upstream registry document (`{version, meta, data:
    /// {servers: [...]}}`). Entries that are not usable are skipped with a
    /// warning; a document with none is [`CatalogError::Empty`] when
    /// `require_entries`.
    pub fn parse(bytes: &[u8], require_entries: bool) -> Result<Self, CatalogError> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| CatalogError::Invalid(format!("not JSON: {e}")))?;
        let Some(obj) = doc.as_object() else {
            return Err(CatalogError::Invalid("not a JSON object".into()));
        };
        let upstream = obj.get("data").is_some_and(Value::is_object);
        if !upstream {
            if ["servers", "remote_servers", "groups"]
                .iter()
                .any(|k| obj.contains_key(*k))
            {
                return Err(CatalogError::Legacy);
            }
            return Err(CatalogError::Invalid(
                "no `data` object (expected the upstream MCP registry format)".into(),
            ));
        }
        let env: Envelope =
            serde_json::from_value(doc).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        let mut warnings = Vec::new();
        let servers = env
            .data
            .servers
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| match serde_json::from_value::<ServerJson>(v) {
                Ok(s) => Some(s),
                Err(e) => {
                    warnings.push(format!("entry {i}: {e}"));
                    None
                }
            });
        let servers: Vec<ServerJson> = servers.collect();
        let mut catalog = Self::from_entries(servers, &mut warnings);
        catalog.version = env.version;
        catalog.last_updated = env.meta.last_updated;
        catalog.warnings = warnings;
        if require_entries && catalog.is_empty() {
            return Err(CatalogError::Empty);
        }
        Ok(catalog)
    }

    /// A catalog of entries; unusable ones and duplicates (the first one
    /// wins) are skipped with a warning.
    pub fn from_entries(
        entries: impl IntoIterator<Item = ServerJson>,
        warnings: &mut Vec<String>,
    ) -> Self {
        let mut servers: Vec<Arc<Server>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for json in entries {
            if servers.len() >= MAX_SERVERS {
                warnings.push(format!(
                    "more than {MAX_SERVERS} entries: the rest are ignored"
                ));
                break;
            }
            match Server::new(json) {
                Ok(s) => {
                    if seen.insert(s.name().to_owned()) {
                        servers.push(Arc::new(s));
                    } else {
                        warnings.push(format!("{}: duplicate entry ignored", s.name()));
                    }
                }
                Err(why) => warnings.push(why),
            }
        }
        servers.sort_by(|a, b| a.name().cmp(b.name()));
        let by_name = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name().to_owned(), i))
            .collect();
        let haystacks = servers.iter().map(|s| s.haystack()).collect();
        Self {
            version: "1.0.0".into(),
            last_updated: String::new(),
            servers,
            by_name,
            haystacks,
            warnings: Vec::new(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Every entry, by name.
    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    /// An entry by full name, or by short name (the last segment) when
    /// exactly one entry has it.
    pub fn lookup(&self, name: &str) -> Result<&Arc<Server>, Miss> {
        if let Some(&i) = self.by_name.get(name) {
            return Ok(&self.servers[i]);
        }
        if name.contains('/') {
            return Err(Miss::NotFound);
        }
        let matches: Vec<&Arc<Server>> = self
            .servers
            .iter()
            .filter(|s| s.short_name() == name)
            .collect();
        match matches.as_slice() {
            [] => Err(Miss::NotFound),
            [one] => Ok(one),
            many => Err(Miss::Ambiguous(
                many.iter().map(|s| s.name().to_owned()).collect(),
            )),
        }
    }

    /// The entries whose name, title, description or a tag contains `q`
    /// (case-insensitive); all of them for an empty `q`.
    pub fn search<'a>(&'a self, q: &str) -> impl Iterator<Item = &'a Arc<Server>> + 'a {
        let q = q.to_lowercase();
        self.servers
            .iter()
            .zip(&self.haystacks)
            .filter(move |(_, h)| q.is_empty() || h.contains(&q))
            .map(|(s, _)| s)
    }

    /// The entries after `cursor` (a full name; entries are sorted), at
    /// most `limit`, and the cursor of the next page.
    pub fn page_after<'a>(
        &'a self,
        q: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<&'a Arc<Server>>, Option<String>) {
        let mut items: Vec<&Arc<Server>> = self
            .search(q)
            .filter(|s| cursor.is_none_or(|c| s.name() > c))
            .take(limit + 1)
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|s| s.name().to_owned())
        } else {
            None
        };
        (items, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(servers: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"version": "1.0.0", "meta": {"last_updated": "2026-01-01T00:00:00Z"},
            "data": {"servers": servers}}),
        )
        .expect("json")
    }

    fn oci(name: &str) -> Value {
        json!({"name": name, "description": format!("about {name}"),
            "packages": [{"registryType": "oci", "identifier": format!("img/{name}:1"), "transport": {"type": "stdio"}}]})
    }

    #[test]
    fn formats() {
        assert_eq!(
            Catalog::parse(br#"{"servers": {}}"#, true).unwrap_err(),
            CatalogError::Legacy
        );
        assert!(matches!(
            Catalog::parse(b"[1]", true),
            Err(CatalogError::Invalid(_))
        ));
        assert!(matches!(
            Catalog::parse(b"{\"data\": 3}", true),
            Err(CatalogError::Invalid(_))
        ));
        assert_eq!(
            Catalog::parse(&doc(json!([])), true).unwrap_err(),
            CatalogError::Empty
        );
        // Deep nesting is refused by the parser's recursion limit.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Catalog::parse(deep.as_bytes(), true).is_err());
    }

    #[test]
    fn sorted_deduplicated_and_looked_up() {
        let c = Catalog::parse(
            &doc(
                json!([oci("z.y/fetch"), oci("a.b/time"), oci("a.b/fetch"), oci("a.b/time"),
                {"name": "bad"}, 3]),
            ),
            true,
        )
        .expect("parses");
        let names: Vec<_> = c.servers().iter().map(|s| s.name()).collect();
        assert_eq!(names, ["a.b/fetch", "a.b/time", "z.y/fetch"]);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert_eq!(c.lookup("time").expect("short").name(), "a.b/time");
        assert_eq!(c.lookup("z.y/fetch").expect("full").name(), "z.y/fetch");
        assert_eq!(
            c.lookup("fetch").unwrap_err(),
            Miss::Ambiguous(vec!["a.b/fetch".into(), "z.y/fetch".into()])
        );
        assert_eq!(c.lookup("nope").unwrap_err(), Miss::NotFound);
        assert_eq!(c.lookup("x/time").unwrap_err(), Miss::NotFound);
        assert_eq!(c.search("ABOUT a.b").count(), 2);
        let (p1, next) = c.page_after("", None, 2);
        assert_eq!(p1.len(), 2);
        let (p2, end) = c.page_after("", next.as_deref(), 2);
        assert_eq!(p2[0].name(), "z.y/fetch");
        assert!(end.is_none());
    }
}
