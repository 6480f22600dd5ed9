//! A parsed registry document: its entries sorted by name, searchable and
//! paged.
//!
//! Accepted shapes (ToolHive's registry format, and a plain list):
//!
//! ```json
//! {"version": "1.0.0", "last_updated": "…",
//!  "servers": {"fetch": {"image": "…", "description": "…", "tags": ["web"]}},
//!  "remote_servers": {"notion": {"url": "https://…", "transport": "streamable-http"}}}
//! ```
//!
//! `servers` and `remote_servers` may also be arrays of entries with a
//! `name`, and the whole document may be such an array. Each entry is
//! passed on as it is, with a `name` field added when it has none.

use serde_json::{Map, Value};

/// One server entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's name (its key in the document).
    pub name: String,
    /// The entry as JSON text.
    pub json: String,
    /// Name, description and tags, lowercased, for queries.
    haystack: String,
}

/// All entries of one document, sorted by name, names unique.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
}

/// Entries returned when a list request asks for 0.
pub const DEFAULT_LIMIT: usize = 50;
/// The most entries one page holds.
pub const MAX_LIMIT: usize = 500;

/// A page of entries.
#[derive(Debug)]
pub struct Page<'a> {
    /// The entries, sorted by name.
    pub entries: Vec<&'a Entry>,
    /// Present when more matching entries follow.
    pub next_cursor: Option<String>,
}

impl Catalog {
    /// Parses a registry document. Returns the catalog and warnings about
    /// skipped entries (for the log); fails when the document is not JSON
    /// or has no server list at all.
    pub fn parse(document: &[u8]) -> Result<(Catalog, Vec<String>), String> {
        let doc: Value = serde_json::from_slice(document)
            .map_err(|e| format!("the registry document is not valid JSON: {e}"))?;
        let mut raw: Vec<(String, Map<String, Value>)> = Vec::new();
        let mut warnings = Vec::new();
        match doc {
            Value::Array(items) => collect_list("the document", items, &mut raw, &mut warnings),
            Value::Object(mut doc) => {
                let servers = doc.remove("servers");
                let remote = doc.remove("remote_servers");
                if servers.is_none() && remote.is_none() {
                    return Err(
                        "the registry document has neither `servers` nor `remote_servers`"
                            .to_owned(),
                    );
                }
                for (key, section) in [("servers", servers), ("remote_servers", remote)] {
                    match section {
                        None | Some(Value::Null) => {}
                        Some(Value::Object(map)) => {
                            for (name, entry) in map {
                                match entry {
                                    Value::Object(entry) => raw.push((name, entry)),
                                    _ => warnings
                                        .push(format!("{key}.{name} is not an object; skipped")),
                                }
                            }
                        }
                        Some(Value::Array(items)) => {
                            collect_list(key, items, &mut raw, &mut warnings)
                        }
                        Some(_) => {
                            return Err(format!(
                                "`{key}` in the registry document is neither an object nor an array"
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err("the registry document is neither an object nor an array".to_owned());
            }
        }

        // Stable sort: for duplicate names the first one (servers before
        // remote_servers) stays.
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        for (name, mut entry) in raw {
            if entries.last().is_some_and(|last| last.name == name) {
                warnings.push(format!(
                    "duplicate server name `{name}`; the first one is used"
                ));
                continue;
            }
            let haystack = haystack(&name, &entry);
            if !entry.contains_key("name") {
                entry.shift_insert(0, "name".to_owned(), Value::String(name.clone()));
            }
            let json = Value::Object(entry).to_string();
            entries.push(Entry {
                name,
                json,
                haystack,
            });
        }
        Ok((Catalog { entries }, warnings))
    }

    /// How many entries the catalog has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// One page of the entries matching `query` (case-insensitive substring
    /// of name, description or a tag; `None` or empty matches all), after
    /// `cursor` (the last name of the previous page), at most `limit` (0
    /// means [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`]).
    pub fn list(&self, query: Option<&str>, cursor: Option<&str>, limit: u32) -> Page<'_> {
        let limit = match usize::try_from(limit).unwrap_or(MAX_LIMIT) {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let query = query
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        let start = match cursor.filter(|c| !c.is_empty()) {
            Some(after) => self.entries.partition_point(|e| e.name.as_str() <= after),
            None => 0,
        };
        let mut matching = self.entries[start..]
            .iter()
            .filter(|e| query.as_deref().is_none_or(|q| e.haystack.contains(q)));
        let entries: Vec<&Entry> = matching.by_ref().take(limit).collect();
        let next_cursor = match (entries.last(), matching.next()) {
            (Some(last), Some(_)) => Some(last.name.clone()),
            _ => None,
        };
        Page {
            entries,
            next_cursor,
        }
    }
}

/// Adds the entries of a list (each an object with a string `name`).
fn collect_list(
    what: &str,
    items: Vec<Value>,
    raw: &mut Vec<(String, Map<String, Value>)>,
    warnings: &mut Vec<String>,
) {
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(entry) => match entry.get("name").and_then(Value::as_str) {
                Some(name) if !name.is_empty() => raw.push((name.to_owned(), entry)),
                _ => warnings.push(format!("entry {i} of {what} has no `name`; skipped")),
            },
            _ => warnings.push(format!("entry {i} of {what} is not an object; skipped")),
        }
    }
}

/// The lowercased text a query is matched against.
fn haystack(name: &str, entry: &Map<String, Value>) -> String {
    let mut text = name.to_lowercase();
    if let Some(desc) = entry.get("description").and_then(Value::as_str) {
        text.push('\n');
        text.push_str(&desc.to_lowercase());
    }
    if let Some(tags) = entry.get("tags").and_then(Value::as_array) {
        for tag in tags.iter().filter_map(Value::as_str) {
            text.push('\n');
            text.push_str(&tag.to_lowercase());
        }
    }
    text
}

#[cfg(test)]
mod tests;
