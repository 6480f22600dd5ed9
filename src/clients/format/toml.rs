//! TOML, a table per server (`[<key>.<name>]`, Codex) or an array of
//! tables matched by `name` (`[[<key>]]`, Mistral Vibe).
//!
//! The file is parsed with `toml_edit` only to find where things are (the
//! byte spans of table headers and of the comments above them); the edit
//! itself splices text into the original, so every byte berth does not
//! write is kept: comments, blank lines, CRLF line ends, a missing final
//! newline, the order and spelling of everything else. The result is parsed
//! again and checked to hold exactly the servers asked for before it is
//! returned.
//!
//! # What berth writes
//!
//! One server is one block of lines:
//!
//! ```toml
//! [mcp_servers.fetch]
//! url = "http://127.0.0.1:23456/mcp"
//! ```
//!
//! or, for the array layout, `[[mcp_servers]]` and then the entry's fields,
//! `name` first:
//!
//! ```toml
//! [[mcp_servers]]
//! name = "fetch"
//! url = "http://127.0.0.1:23456/mcp"
//! transport = "streamable-http"
//! ```
//!
//! - The header, then one `field = value` line per field of the entry, in
//!   the entry's order; no indentation, one space either side of `=`.
//! - The server's name in a header and a field name are bare when made only
//!   of ASCII letters, digits, `-` and `_` (and not empty), else written as
//!   a basic string (`[mcp_servers."my server"]`).
//! - Strings are basic strings in double quotes; `"` and `\` are escaped
//!   with a backslash, `\b \t \n \f \r` by name, other control characters as
//!   `\uXXXX`; everything else is written as it is. Integers in decimal,
//!   booleans `true`/`false`.
//! - Line ends are CRLF when the file's first line ends in CRLF, LF
//!   otherwise (and for a new file).
//! - A new server is added after the last existing server of that key
//!   (after its sub-tables too), or at the end of the file when there is
//!   none. It is preceded by one empty line, except at the very start of an
//!   empty file. When the file does not end with a line end, the new block
//!   is put after a line end and the file still does not end with one.
//! - The parent table is never written: `[mcp_servers]` stays implicit when
//!   berth creates it.
//! - A server that is already there is replaced where it is: its header
//!   line and body (up to the comments above the next header) become the
//!   new block; the empty lines and comments above its header stay. Its
//!   sub-tables (`[mcp_servers.fetch.env]`) are removed with it.
//! - A removed server takes its header, its body, its sub-tables and the
//!   empty lines and comments above each of those headers with it. When it
//!   was the last thing in a file without a final line end, the line end
//!   before it goes too. So adding a server and removing it gives the file
//!   back byte for byte.
//!
//! # What berth refuses (`FormatError::Shape`, the file is left alone)
//!
//! - The key holding something else than tables: a string, a number, an
//!   array of values, or tables where an array of tables is expected (and
//!   the reverse).
//! - A server berth has to change that is written as an inline table
//!   (`fetch = { url = "…" }`, or all servers as
//!   `mcp_servers = { fetch = { … } }`) or with dotted keys
//!   (`fetch.url = "…"`): rewriting those would mean reformatting the
//!   user's lines. They are read by `entries` all the same, and servers
//!   berth does not touch may be written that way. Adding a new server when
//!   the whole key is an inline table is refused too (a header cannot add to
//!   an inline table).

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value};
use toml_edit::{ImDocument, Item, Table};

use super::{Change, Entry, FormatError};

pub(super) fn entries(
    text: &str,
    key: &str,
    array: bool,
) -> Result<BTreeMap<String, Value>, FormatError> {
    let doc = parse(text)?;
    let mut found = BTreeMap::new();
    match doc.as_table().get(key) {
        None => {}
        Some(item) => match servers(item, key, array)? {
            Servers::Tables(t) => {
                for (name, item) in t.iter() {
                    found.insert(name.to_owned(), item_json(item));
                }
            }
            Servers::Inline(t) => {
                for (name, v) in t.iter() {
                    found.insert(name.to_owned(), value_json(v));
                }
            }
            Servers::Array(items) => {
                for t in items {
                    if let Some(name) = t.get("name").and_then(Item::as_str) {
                        found
                            .entry(name.to_owned())
                            .or_insert_with(|| table_json(t));
                    }
                }
            }
            Servers::InlineArray(a) => {
                for v in a.iter() {
                    if let Some(t) = v.as_inline_table()
                        && let Some(name) = t.get("name").and_then(|v| v.as_str())
                    {
                        found
                            .entry(name.to_owned())
                            .or_insert_with(|| value_json(v));
                    }
                }
            }
        },
    }
    Ok(found)
}

pub(super) fn apply(
    text: &str,
    key: &str,
    changes: &[Change],
    array: bool,
) -> Result<String, FormatError> {
    let mut out = text.to_owned();
    let eol = if first_line_end_is_crlf(text) {
        "\r\n"
    } else {
        "\n"
    };
    for (name, entry) in changes {
        out = apply_one(&out, key, name, entry.as_ref(), array, eol)?;
    }
    // Check the result: the servers are those asked for, the rest as before.
    let before = entries(text, key, array)?;
    let mut want = before;
    for (name, entry) in changes {
        match entry {
            Some(e) => {
                want.insert(name.clone(), Value::Object(e.clone()));
            }
            None => {
                want.remove(name);
            }
        }
    }
    let got = entries(&out, key, array)
        .map_err(|e| FormatError::Shape(format!("berth's TOML edit went wrong ({e})")))?;
    if got != want {
        return Err(FormatError::Shape(
            "berth's TOML edit did not give the servers it should; the file is left as it is"
                .into(),
        ));
    }
    Ok(out)
}

fn parse(text: &str) -> Result<ImDocument<&str>, FormatError> {
    ImDocument::parse(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let (line, column) = line_column(text, at);
        FormatError::Parse {
            format: "TOML",
            message: format!(
                "line {line}, column {column}: {}",
                e.message().trim_end().replace('\n', "; ")
            ),
        }
    })
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn first_line_end_is_crlf(text: &str) -> bool {
    text.find('\n')
        .is_some_and(|i| i > 0 && text.as_bytes()[i - 1] == b'\r')
}

/// The servers key's content, by how it is written.
enum Servers<'a> {
    /// `[key.name]` tables (or dotted keys) under a table `key`.
    Tables(&'a Table),
    /// `key = { name = { … } }`.
    Inline(&'a toml_edit::InlineTable),
    /// `[[key]]`.
    Array(Vec<&'a Table>),
    /// `key = [{ … }, …]`.
    InlineArray(&'a toml_edit::Array),
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            toml_edit::Value::String(_) => "a string",
            toml_edit::Value::Integer(_) => "an integer",
            toml_edit::Value::Float(_) => "a float",
            toml_edit::Value::Boolean(_) => "a boolean",
            toml_edit::Value::Datetime(_) => "a date-time",
            toml_edit::Value::Array(_) => "an array",
            toml_edit::Value::InlineTable(_) => "an inline table",
        },
    }
}

fn servers<'a>(item: &'a Item, key: &str, array: bool) -> Result<Servers<'a>, FormatError> {
    let wrong = |want: &str| {
        FormatError::Shape(format!(
            "`{key}` holds {}, where berth expects {want}",
            kind(item)
        ))
    };
    if array {
        match item {
            Item::ArrayOfTables(a) => Ok(Servers::Array(a.iter().collect())),
            Item::Value(toml_edit::Value::Array(a)) => {
                if a.iter().all(|v| v.is_inline_table()) {
                    Ok(Servers::InlineArray(a))
                } else {
                    Err(FormatError::Shape(format!(
                        "`{key}` is an array of values that are not tables, where berth expects an array of tables (`[[{key}]]`)"
                    )))
                }
            }
            _ => Err(wrong(&format!("an array of tables (`[[{key}]]`)"))),
        }
    } else {
        match item {
            Item::Table(t) => {
                for (name, v) in t.iter() {
                    if !(v.is_table() || v.is_inline_table()) {
                        return Err(FormatError::Shape(format!(
                            "`{key}.{name}` holds {}, where berth expects a table per server",
                            kind(v)
                        )));
                    }
                }
                Ok(Servers::Tables(t))
            }
            Item::Value(toml_edit::Value::InlineTable(t)) => Ok(Servers::Inline(t)),
            _ => Err(wrong(&format!("a table per server (`[{key}.<name>]`)"))),
        }
    }
}

/// One table header's place in the text: the start of the empty lines and
/// comments above it, the start of the header, the end of its body.
#[derive(Debug, Clone)]
struct Section {
    above: usize,
    header: usize,
    end: usize,
}

/// Every table header of the document, in text order, with its section.
fn sections(doc: &ImDocument<&str>) -> Vec<Section> {
    fn walk(t: &Table, out: &mut Vec<(usize, usize)>) {
        for (_, item) in t.iter() {
            match item {
                Item::Table(sub) => {
                    if let Some(h) = header_start(sub) {
                        out.push(h);
                    }
                    walk(sub, out);
                }
                Item::ArrayOfTables(a) => {
                    for sub in a.iter() {
                        if let Some(h) = header_start(sub) {
                            out.push(h);
                        }
                        walk(sub, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut starts = Vec::new();
    walk(doc.as_table(), &mut starts);
    starts.sort_unstable();
    let text_end = doc.trailing().span().map_or(doc.raw().len(), |s| s.start);
    let mut out = Vec::with_capacity(starts.len());
    for (i, &(above, header)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text_end, |&(next, _)| next);
        out.push(Section { above, header, end });
    }
    out
}

/// `(above, header)` for a table written with a header.
fn header_start(t: &Table) -> Option<(usize, usize)> {
    if t.is_implicit() || t.is_dotted() {
        return None;
    }
    let header = t.span()?.start;
    let above = t
        .decor()
        .prefix()
        .and_then(|p| p.span())
        .map_or(header, |s| s.start);
    Some((above, header))
}

/// The header starts of `t` and every table below it.
fn header_starts_within(t: &Table, out: &mut Vec<usize>) {
    if let Some((_, h)) = header_start(t) {
        out.push(h);
    }
    for (_, item) in t.iter() {
        match item {
            Item::Table(sub) => header_starts_within(sub, out),
            Item::ArrayOfTables(a) => a.iter().for_each(|sub| header_starts_within(sub, out)),
            _ => {}
        }
    }
}

fn find_section(all: &[Section], header: usize) -> Option<&Section> {
    all.iter().find(|s| s.header == header)
}

/// What to splice: remove `remove` ranges (sorted, disjoint) and put
/// `insert` at `at` (which is not inside a removed range, or is the start
/// of one that is kept up to that point).
struct Splice {
    remove: Vec<Range<usize>>,
    at: usize,
    insert: String,
}

fn apply_one(
    text: &str,
    key: &str,
    name: &str,
    entry: Option<&Entry>,
    array: bool,
    eol: &str,
) -> Result<String, FormatError> {
    let doc = parse(text)?;
    let all = sections(&doc);
    let current = match doc.as_table().get(key) {
        None => None,
        Some(item) => Some(servers(item, key, array)?),
    };
    let block = entry
        .map(|e| render(key, name, e, array, eol))
        .transpose()?;
    let inline_refusal = || {
        FormatError::Shape(format!(
            "the server `{name}` under `{key}` is written as an inline table or with dotted keys; berth does not rewrite those (write it as `[{key}.{}]`)",
            bare_or_quoted(name)
        ))
    };

    // The sections of the server as it is now (none when it is new), and
    // where a new one goes.
    let (server_sections, append_at): (Vec<Vec<Section>>, Option<usize>) = match current {
        None => (Vec::new(), None),
        Some(Servers::Inline(t)) => {
            if t.contains_key(name) || entry.is_some() {
                return Err(FormatError::Shape(format!(
                    "`{key}` is an inline table; berth writes one `[{key}.<name>]` table per server and does not rewrite an inline table (write the servers as tables)"
                )));
            }
            (Vec::new(), None)
        }
        Some(Servers::InlineArray(a)) => {
            let named = a.iter().any(|v| {
                v.as_inline_table()
                    .and_then(|t| t.get("name"))
                    .and_then(|v| v.as_str())
                    == Some(name)
            });
            if named || entry.is_some() {
                return Err(FormatError::Shape(format!(
                    "`{key}` is an inline array; berth writes `[[{key}]]` tables and does not rewrite an inline array (write the servers as `[[{key}]]` tables)"
                )));
            }
            (Vec::new(), None)
        }
        Some(Servers::Tables(t)) => {
            let mut every = Vec::new();
            header_starts_within(t, &mut every);
            let last = every
                .iter()
                .filter_map(|&h| find_section(&all, h))
                .map(|s| s.end)
                .max();
            let mine = match t.get(name) {
                None => Vec::new(),
                Some(Item::Table(st)) if !st.is_dotted() => {
                    let mut hs = Vec::new();
                    header_starts_within(st, &mut hs);
                    if hs.is_empty() {
                        return Err(inline_refusal());
                    }
                    vec![sections_of(&all, &hs)]
                }
                Some(_) => return Err(inline_refusal()),
            };
            (mine, last)
        }
        Some(Servers::Array(items)) => {
            let mut every = Vec::new();
            let mut mine = Vec::new();
            for t in &items {
                let mut hs = Vec::new();
                header_starts_within(t, &mut hs);
                if t.get("name").and_then(Item::as_str) == Some(name) {
                    mine.push(sections_of(&all, &hs));
                }
                every.extend(hs);
            }
            let last = every
                .iter()
                .filter_map(|&h| find_section(&all, h))
                .map(|s| s.end)
                .max();
            (mine, last)
        }
    };

    let splice = match (block, server_sections.first()) {
        // Replace: the first copy where it is, its comments above kept.
        (Some(block), Some(first)) => {
            let head = first
                .iter()
                .min_by_key(|s| s.header)
                .cloned()
                .ok_or_else(|| FormatError::Shape("internal: a server without sections".into()))?;
            let mut remove = Vec::new();
            for (i, secs) in server_sections.iter().enumerate() {
                for s in secs {
                    if i == 0 && s.header == head.header {
                        remove.push(s.header..s.end);
                    } else {
                        remove.push(s.above..s.end);
                    }
                }
            }
            let mut insert = block;
            // The body replaced ran to the end of a file without a final line end.
            if head.end == text.len() && !text.ends_with('\n') {
                trim_eol(&mut insert);
            }
            Splice {
                remove,
                at: head.header,
                insert,
            }
        }
        // Add.
        (Some(block), None) => {
            let at = append_at.unwrap_or(text.len());
            let mut insert = String::new();
            if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
                insert.push_str(eol);
                insert.push_str(eol);
                insert.push_str(&block);
                trim_eol(&mut insert);
            } else {
                if !text.is_empty() {
                    insert.push_str(eol);
                }
                insert.push_str(&block);
            }
            Splice {
                remove: Vec::new(),
                at,
                insert,
            }
        }
        // Remove.
        (None, _) => {
            let mut remove: Vec<Range<usize>> = server_sections
                .iter()
                .flatten()
                .map(|s| s.above..s.end)
                .collect();
            if remove.is_empty() {
                return Ok(text.to_owned());
            }
            remove.sort_by_key(|r| r.start);
            // Removing the last block of a file without a final line end:
            // the line end before it goes too.
            if let Some(last) = remove.last_mut()
                && last.end == text.len()
                && !text.ends_with('\n')
            {
                let before = &text[..last.start];
                if let Some(stripped) = before.strip_suffix('\n') {
                    last.start = stripped.strip_suffix('\r').unwrap_or(stripped).len();
                }
            }
            Splice {
                remove,
                at: 0,
                insert: String::new(),
            }
        }
    };
    Ok(splice_text(text, splice))
}

fn sections_of(all: &[Section], headers: &[usize]) -> Vec<Section> {
    headers
        .iter()
        .filter_map(|&h| find_section(all, h).cloned())
        .collect()
}

fn trim_eol(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
}

fn splice_text(text: &str, mut splice: Splice) -> String {
    splice.remove.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len() + splice.insert.len());
    let mut pos = 0;
    let mut inserted = splice.insert.is_empty();
    for r in &splice.remove {
        if !inserted && splice.at <= r.start {
            out.push_str(&text[pos..splice.at]);
            out.push_str(&splice.insert);
            pos = splice.at;
            inserted = true;
        }
        out.push_str(&text[pos..r.start]);
        pos = r.end;
    }
    if !inserted {
        out.push_str(&text[pos..splice.at.max(pos)]);
        out.push_str(&splice.insert);
        pos = splice.at.max(pos);
    }
    out.push_str(&text[pos..]);
    out
}

/// The lines berth writes for one server.
fn render(
    key: &str,
    name: &str,
    entry: &Entry,
    array: bool,
    eol: &str,
) -> Result<String, FormatError> {
    let mut out = if array {
        format!("[[{}]]{eol}", bare_or_quoted(key))
    } else {
        format!("[{}.{}]{eol}", bare_or_quoted(key), bare_or_quoted(name))
    };
    for (field, value) in entry {
        let v = match value {
            Value::String(s) => basic_string(s),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => {
                return Err(FormatError::Shape(format!(
                    "berth cannot write the field `{field}` ({other}) of `{name}` in TOML"
                )));
            }
        };
        out.push_str(&format!("{} = {v}{eol}", bare_or_quoted(field)));
    }
    Ok(out)
}

fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        key.to_owned()
    } else {
        basic_string(key)
    }
}

fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn item_json(item: &Item) -> Value {
    match item {
        Item::None => Value::Null,
        Item::Value(v) => value_json(v),
        Item::Table(t) => table_json(t),
        Item::ArrayOfTables(a) => Value::Array(a.iter().map(table_json).collect()),
    }
}

fn table_json(t: &Table) -> Value {
    let mut m = Map::new();
    for (k, v) in t.iter() {
        m.insert(k.to_owned(), item_json(v));
    }
    Value::Object(m)
}

fn value_json(v: &toml_edit::Value) -> Value {
    match v {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => {
            serde_json::Number::from_f64(*f.value()).map_or(Value::Null, Value::Number)
        }
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(value_json).collect()),
        toml_edit::Value::InlineTable(t) => {
            let mut m = Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_owned(), value_json(v));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, Value)]) -> Entry {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn url(u: &str) -> Entry {
        entry(&[("url", u.into())])
    }

    fn named(name: &str, u: &str) -> Entry {
        entry(&[("name", name.into()), ("url", u.into())])
    }

    fn add(name: &str, e: Entry) -> Change {
        (name.to_owned(), Some(e))
    }

    fn del(name: &str) -> Change {
        (name.to_owned(), None)
    }

    fn tables(text: &str, changes: &[Change]) -> Result<String, FormatError> {
        apply(text, "mcp_servers", changes, false)
    }

    fn array(text: &str, changes: &[Change]) -> Result<String, FormatError> {
        apply(text, "mcp_servers", changes, true)
    }

    fn is_shape(r: Result<impl std::fmt::Debug, FormatError>, words: &str) {
        match r {
            Err(FormatError::Shape(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("expected a shape error with {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn new_file_gets_implicit_parent_and_blank_lines_between() {
        let got = tables(
            "",
            &[add("a", url("http://x/1")), add("b", url("http://x/2"))],
        );
        assert_eq!(
            got.unwrap(),
            "[mcp_servers.a]\nurl = \"http://x/1\"\n\n[mcp_servers.b]\nurl = \"http://x/2\"\n"
        );
    }

    #[test]
    fn names_and_strings_are_quoted_and_escaped() {
        let e = entry(&[
            ("url", "a\"b\\c\td\u{1}é".into()),
            ("odd key", true.into()),
            ("n", 7.into()),
        ]);
        let got = tables("", &[add("my server", e.clone()), add("ünï", url("u"))]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers.\"my server\"]\nurl = \"a\\\"b\\\\c\\td\\u0001é\"\n\"odd key\" = true\nn = 7\n\n[mcp_servers.\"ünï\"]\nurl = \"u\"\n"
        );
        let back = entries(&got, "mcp_servers", false).unwrap();
        assert_eq!(back["my server"], Value::Object(e));
    }

    #[test]
    fn added_after_the_last_server_and_removed_again_byte_for_byte() {
        let input = "# top\nmodel = \"m\"\n\n[mcp_servers.mine]\ncommand = \"x\" # keep\n\n[mcp_servers.mine.env]\nK = \"v\"\n\n# about profiles\n[profiles.p]\nmodel = \"n\"\n";
        let got = tables(input, &[add("fetch", url("http://x/f"))]).unwrap();
        assert_eq!(
            got,
            "# top\nmodel = \"m\"\n\n[mcp_servers.mine]\ncommand = \"x\" # keep\n\n[mcp_servers.mine.env]\nK = \"v\"\n\n[mcp_servers.fetch]\nurl = \"http://x/f\"\n\n# about profiles\n[profiles.p]\nmodel = \"n\"\n"
        );
        assert_eq!(tables(&got, &[del("fetch")]).unwrap(), input);
        // Removing what is not there changes nothing.
        assert_eq!(tables(input, &[del("nothing")]).unwrap(), input);
    }

    #[test]
    fn explicit_parent_header_is_kept_and_servers_go_after_it() {
        let input = "[mcp_servers]\n\n[other]\nx = 1\n";
        let got = tables(input, &[add("f", url("u"))]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers]\n\n[mcp_servers.f]\nurl = \"u\"\n\n[other]\nx = 1\n"
        );
        assert_eq!(tables(&got, &[del("f")]).unwrap(), input);
    }

    #[test]
    fn replaced_in_place_with_comments_above_kept_and_subtables_gone() {
        let input = "[mcp_servers.a]\nurl = \"old\"\n\n# about b\n[mcp_servers.b]\nurl = \"old\"\nenabled = false # off\n\n[mcp_servers.b.env]\nK = \"v\"\n\n[mcp_servers.c]\nurl = \"c\"\n";
        let got = tables(input, &[add("b", url("new"))]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers.a]\nurl = \"old\"\n\n# about b\n[mcp_servers.b]\nurl = \"new\"\n\n[mcp_servers.c]\nurl = \"c\"\n"
        );
        let got = tables(input, &[del("b")]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers.a]\nurl = \"old\"\n\n[mcp_servers.c]\nurl = \"c\"\n"
        );
    }

    #[test]
    fn crlf_files_get_crlf() {
        let input = "a = 1\r\n\r\n[mcp_servers.x]\r\nurl = \"x\"\r\n";
        let got = tables(input, &[add("y", url("y")), add("x", url("x2"))]).unwrap();
        assert_eq!(
            got,
            "a = 1\r\n\r\n[mcp_servers.x]\r\nurl = \"x2\"\r\n\r\n[mcp_servers.y]\r\nurl = \"y\"\r\n"
        );
    }

    #[test]
    fn no_final_newline_stays_so() {
        let input = "a = 1";
        let got = tables(input, &[add("y", url("y"))]).unwrap();
        assert_eq!(got, "a = 1\n\n[mcp_servers.y]\nurl = \"y\"");
        assert_eq!(tables(&got, &[del("y")]).unwrap(), input);
        // Replacing the last server of such a file.
        let again = tables(&got, &[add("y", url("z"))]).unwrap();
        assert_eq!(again, "a = 1\n\n[mcp_servers.y]\nurl = \"z\"");
    }

    #[test]
    fn trailing_comments_stay_at_the_end() {
        let input = "[mcp_servers.a]\nurl = \"a\"\n\n# the end\n";
        let got = tables(input, &[add("b", url("b"))]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers.a]\nurl = \"a\"\n\n[mcp_servers.b]\nurl = \"b\"\n\n# the end\n"
        );
    }

    #[test]
    fn array_items_matched_by_name() {
        let input = "x = 1\n\n# mine\n[[mcp_servers]]\nname = \"a\"\ncommand = \"c\"\n\n# old b\n[[mcp_servers]]\nname = \"b\"\nurl = \"old\"\n\n[[mcp_servers]]\ncommand = \"nameless\"\n\n[other]\ny = 2\n";
        let got = array(
            input,
            &[add("b", named("b", "new")), add("c", named("c", "c"))],
        )
        .unwrap();
        assert_eq!(
            got,
            "x = 1\n\n# mine\n[[mcp_servers]]\nname = \"a\"\ncommand = \"c\"\n\n# old b\n[[mcp_servers]]\nname = \"b\"\nurl = \"new\"\n\n[[mcp_servers]]\ncommand = \"nameless\"\n\n[[mcp_servers]]\nname = \"c\"\nurl = \"c\"\n\n[other]\ny = 2\n"
        );
        let found = entries(&got, "mcp_servers", true).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        let back = array(&got, &[del("c")]).unwrap();
        assert_eq!(
            array(&back, &[del("b")]).unwrap(),
            "x = 1\n\n# mine\n[[mcp_servers]]\nname = \"a\"\ncommand = \"c\"\n\n[[mcp_servers]]\ncommand = \"nameless\"\n\n[other]\ny = 2\n"
        );
    }

    #[test]
    fn array_duplicates_are_folded_into_the_first() {
        let input = "[[mcp_servers]]\nname = \"a\"\nurl = \"1\"\n\n[[mcp_servers]]\nname = \"a\"\nurl = \"2\"\n";
        let got = array(input, &[add("a", named("a", "3"))]).unwrap();
        assert_eq!(got, "[[mcp_servers]]\nname = \"a\"\nurl = \"3\"\n");
        assert_eq!(array(input, &[del("a")]).unwrap(), "");
    }

    #[test]
    fn array_item_subtables_go_with_it() {
        let input = "[[mcp_servers]]\nname = \"a\"\n\n[mcp_servers.env]\nK = \"v\"\n\n[[mcp_servers]]\nname = \"b\"\n";
        let got = array(input, &[add("a", named("a", "u"))]).unwrap();
        assert_eq!(
            got,
            "[[mcp_servers]]\nname = \"a\"\nurl = \"u\"\n\n[[mcp_servers]]\nname = \"b\"\n"
        );
    }

    #[test]
    fn parse_errors_have_line_and_column() {
        let err = tables("a = 1\nb = = 2\n", &[]).unwrap_err();
        match err {
            FormatError::Parse { format, message } => {
                assert_eq!(format, "TOML");
                assert!(message.starts_with("line 2, column 5"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            entries("[a]\n[a]\n", "mcp_servers", false),
            Err(FormatError::Parse { .. })
        ));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        is_shape(
            tables("mcp_servers = \"x\"\n", &[add("a", url("u"))]),
            "a string",
        );
        is_shape(
            entries("mcp_servers = 1\n", "mcp_servers", false),
            "an integer",
        );
        is_shape(
            tables("[mcp_servers]\nfetch = \"x\"\n", &[]),
            "`mcp_servers.fetch` holds a string",
        );
        is_shape(
            array("mcp_servers = [1, 2]\n", &[add("a", named("a", "u"))]),
            "not tables",
        );
        is_shape(
            array(
                "[mcp_servers.a]\nurl = \"u\"\n",
                &[add("a", named("a", "u"))],
            ),
            "array of tables",
        );
        is_shape(
            tables("[[mcp_servers]]\nname = \"a\"\n", &[add("a", url("u"))]),
            "a table per server",
        );
        // Fields berth cannot write.
        is_shape(
            tables("", &[add("a", entry(&[("f", 1.5.into())]))]),
            "cannot write",
        );
    }

    #[test]
    fn inline_tables_are_read_but_not_rewritten() {
        let inline = "mcp_servers = { fetch = { url = \"u\" } }\n";
        let found = entries(inline, "mcp_servers", false).unwrap();
        assert_eq!(found["fetch"], Value::Object(url("u")));
        is_shape(tables(inline, &[add("new", url("n"))]), "inline table");
        is_shape(tables(inline, &[del("fetch")]), "inline table");
        // Removing a server that is not there is no change.
        assert_eq!(tables(inline, &[del("other")]).unwrap(), inline);

        // One inline server among tables: the others can be edited.
        let mixed = "[mcp_servers]\nfetch = { url = \"u\" }\n";
        is_shape(tables(mixed, &[add("fetch", url("n"))]), "inline table");
        let got = tables(mixed, &[add("b", url("b"))]).unwrap();
        assert_eq!(
            got,
            "[mcp_servers]\nfetch = { url = \"u\" }\n\n[mcp_servers.b]\nurl = \"b\"\n"
        );

        // Dotted keys.
        let dotted = "mcp_servers.fetch.url = \"u\"\n";
        assert_eq!(
            entries(dotted, "mcp_servers", false).unwrap()["fetch"],
            Value::Object(url("u"))
        );
        is_shape(tables(dotted, &[del("fetch")]), "dotted keys");

        let inline_array = "mcp_servers = [{ name = \"a\", url = \"u\" }]\n";
        assert_eq!(
            entries(inline_array, "mcp_servers", true).unwrap()["a"],
            Value::Object(named("a", "u"))
        );
        is_shape(
            array(inline_array, &[add("b", named("b", "u"))]),
            "inline array",
        );
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        // Deep nesting: an error, not a stack overflow.
        let deep = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            tables(&deep, &[add("a", url("u"))]),
            Err(FormatError::Parse { .. })
        ));
        let deep_inline = format!("a = {}1{}\n", "{b = ".repeat(50_000), "}".repeat(50_000));
        assert!(matches!(
            entries(&deep_inline, "k", false),
            Err(FormatError::Parse { .. })
        ));
        // A huge string is carried along.
        let big = format!("big = \"{}\"\n", "x".repeat(4 << 20));
        let got = tables(&big, &[add("a", url("u"))]).unwrap();
        assert!(got.starts_with(&big));
        // Not UTF-8 cannot reach here (a &str); a BOM is kept.
        let bom = "\u{feff}a = 1\n";
        assert_eq!(
            tables(bom, &[add("a", url("u"))]).unwrap(),
            "\u{feff}a = 1\n\n[mcp_servers.a]\nurl = \"u\"\n"
        );
    }
}
