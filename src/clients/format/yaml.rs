//! YAML, a mapping of servers (`<key>: {<name>: entry}`, Goose) or a list
//! of servers matched by `name` (`<key>: [entry, …]`, Continue).
//!
//! Two crates, each for what it is good at:
//!
//! - `serde_norway` (the maintained fork of `serde_yaml`, on libyaml) reads
//!   the file strictly: it is what decides whether the text is valid YAML
//!   (with the line and column of an error), what the servers are
//!   (`entries`), and it bounds aliases (an alias bomb fails with
//!   "repetition limit exceeded") and nesting (128 levels).
//! - `yaml-edit` (a lossless rowan tree) makes the edit, so comments, blank
//!   lines, quoting, flow or block style, anchors and aliases, CRLF line
//!   ends and everything else outside the entries berth writes stay as they
//!   are. It recovers from errors, which is why it only ever sees text that
//!   `serde_norway` accepted; a panic inside it is caught and reported as a
//!   parse error.
//!
//! After the edit the new text is read again with `serde_norway` and must
//! hold exactly the old data with the changes applied; otherwise the edit
//! is refused (`FormatError::Shape`) and the file is left alone rather than
//! damaged.
//!
//! # What berth writes
//!
//! A server is a block mapping of the entry's fields, in the entry's order,
//! one `field: value` per line; for the list layout it is a `- ` item whose
//! first field (`name`) follows the dash:
//!
//! ```yaml
//! extensions:
//!   fetch:
//!     name: fetch
//!     uri: http://127.0.0.1:23456/mcp
//!     type: streamable_http
//!     enabled: true
//!     timeout: 60
//!     description: ''
//! ```
//!
//! ```yaml
//! mcpServers:
//!   - name: fetch
//!     url: http://127.0.0.1:23456/mcp
//!     type: streamable-http
//! ```
//!
//! - Scalars are plain when they read back as the same string; otherwise
//!   in single quotes (the empty string is `''`), or double quotes when the
//!   value has a `'` or needs an escape. `http://127.0.0.1:1/sse#x` is
//!   plain (a `#` not after a space is no comment). Integers and booleans
//!   plain.
//! - A new server goes after the last entry of the servers key, at that
//!   entry's indentation (and, in a list, with the dash where the other
//!   items have theirs: `- ` at the key's column for an indentless list);
//!   the fields of a new mapping are indented two spaces more than its key,
//!   and those of a list item line up after `- `.
//! - When the servers key is missing (or `null`), it is added at the end of
//!   the top-level mapping, at column 0, its entries indented by two
//!   spaces; an empty file or one with only comments gets `<key>:` on a
//!   new line after them.
//! - A flow collection (`extensions: {a: {…}}`) stays a flow collection:
//!   the new entry is written in flow style inside it.
//! - A server that is there already is replaced where it is (comments
//!   above it stay; comments inside the old entry go with it); removing a
//!   server removes its lines. Removing the last server leaves an empty
//!   collection (`extensions: {}` / `mcpServers: []`), never removes the
//!   key.
//! - Line ends follow the file (CRLF files get CRLF).
//!
//! Everything else is kept byte for byte (`YAML_LOSSLESS` is `true`):
//! adding servers and removing them again gives back the same file.
//!
//! # What berth refuses
//!
//! Parse errors (`FormatError::Parse`): invalid YAML (tabs for
//! indentation, unclosed flow collections, duplicate keys, …), more than
//! one document, alias bombs and nesting deeper than 128.
//! Shape errors: a root that is not a mapping, a servers key that holds
//! anything else than a mapping (map layout) or a sequence (list layout),
//! a servers collection written as an alias or with a tag, and an edit
//! that did not give the expected data.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;

use serde_json::{Map, Value};
use serde_norway::Value as Yaml;

use super::{Change, Entry, FormatError};

pub(super) fn entries(
    text: &str,
    key: &str,
    list: bool,
) -> Result<BTreeMap<String, Value>, FormatError> {
    let data = read(text)?;
    let mut found = BTreeMap::new();
    match servers(&data, key, list)? {
        Servers::None => {}
        Servers::Map(m) => {
            for (name, entry) in m {
                if let Yaml::String(name) = name {
                    found.insert(name.clone(), json(entry));
                }
            }
        }
        Servers::List(items) => {
            for item in items {
                if let Some(name) = item_name(item) {
                    found.entry(name.to_owned()).or_insert_with(|| json(item));
                }
            }
        }
    }
    Ok(found)
}

pub(super) fn apply(
    text: &str,
    key: &str,
    changes: &[Change],
    list: bool,
) -> Result<String, FormatError> {
    let mut want = read(text)?;
    // Shape checks before anything is edited.
    servers(&want, key, list)?;
    if changes
        .iter()
        .all(|(name, entry)| entry.is_none() && !has_server(&want, key, list, name))
    {
        return Ok(text.to_owned());
    }
    let edited = catch_unwind(AssertUnwindSafe(|| {
        edit(text, key, changes, list, &mut want)
    }))
    .map_err(|_| FormatError::Parse {
        format: "YAML",
        message: "the YAML editor failed on this file".into(),
    })??;
    let got = read(&edited).map_err(|e| {
        FormatError::Shape(format!(
            "berth's YAML edit did not give valid YAML ({e}); the file is left as it is"
        ))
    })?;
    if got != want {
        return Err(FormatError::Shape(
            "berth could not edit this YAML file without changing other content; the file is left as it is"
                .into(),
        ));
    }
    Ok(edited)
}

/// The strict reading of `text`; empty text and text of only comments are
/// `null`.
fn read(text: &str) -> Result<Yaml, FormatError> {
    let parsed =
        catch_unwind(|| serde_norway::from_str::<Yaml>(text)).map_err(|_| FormatError::Parse {
            format: "YAML",
            message: "the YAML reader failed on this file".into(),
        })?;
    parsed.map_err(|e| FormatError::Parse {
        format: "YAML",
        message: e.to_string(),
    })
}

enum Servers<'a> {
    None,
    Map(&'a serde_norway::Mapping),
    List(&'a [Yaml]),
}

fn describe(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn servers<'a>(data: &'a Yaml, key: &str, list: bool) -> Result<Servers<'a>, FormatError> {
    let root = match data {
        Yaml::Null => return Ok(Servers::None),
        Yaml::Mapping(m) => m,
        other => {
            return Err(FormatError::Shape(format!(
                "the file holds {}, where berth expects a mapping at the top",
                describe(other)
            )));
        }
    };
    match (root.get(key), list) {
        (None | Some(Yaml::Null), _) => Ok(Servers::None),
        (Some(Yaml::Mapping(m)), false) => Ok(Servers::Map(m)),
        (Some(Yaml::Sequence(s)), true) => Ok(Servers::List(s)),
        (Some(other), _) => Err(FormatError::Shape(format!(
            "`{key}` holds {}, where berth expects {}",
            describe(other),
            if list {
                "a list of servers"
            } else {
                "a mapping of servers"
            }
        ))),
    }
}

fn item_name(item: &Yaml) -> Option<&str> {
    match item {
        Yaml::Mapping(m) => m.get("name").and_then(Yaml::as_str),
        _ => None,
    }
}

fn has_server(data: &Yaml, key: &str, list: bool, name: &str) -> bool {
    match servers(data, key, list) {
        Ok(Servers::Map(m)) => m.contains_key(name),
        Ok(Servers::List(items)) => items.iter().any(|i| item_name(i) == Some(name)),
        _ => false,
    }
}

fn eol_of(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

fn shape(message: String) -> FormatError {
    FormatError::Shape(message)
}

/// Makes the changes with yaml-edit, and the same changes to `want`.
fn edit(
    text: &str,
    key: &str,
    changes: &[Change],
    list: bool,
    want: &mut Yaml,
) -> Result<String, FormatError> {
    let eol = eol_of(text);
    let parse = |t: &str| {
        yaml_edit::YamlFile::from_str(t).map_err(|e| FormatError::Parse {
            format: "YAML",
            message: e.to_string(),
        })
    };
    let mut file = parse(text)?;
    if file.documents().next().is_none() {
        // Empty, or only comments: start the servers key on a line of its own.
        let mut t = text.to_owned();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push_str(eol);
        }
        t.push_str(key);
        t.push(':');
        t.push_str(eol);
        file = parse(&t)?;
        *want = Yaml::Mapping(serde_norway::Mapping::new());
        if let Yaml::Mapping(m) = want {
            m.insert(Yaml::String(key.into()), Yaml::Null);
        }
    }
    let doc = file
        .documents()
        .next()
        .ok_or_else(|| shape("internal: no YAML document".into()))?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| shape("berth cannot edit the top-level mapping of this file".into()))?;
    let Yaml::Mapping(want_root) = want else {
        return Err(shape("the file does not hold a mapping at the top".into()));
    };
    let yaml_key = Yaml::String(key.into());
    for (name, entry) in changes {
        let current = want_root.get(&yaml_key).cloned().unwrap_or(Yaml::Null);
        let new = entry.as_ref().map(|e| (to_yaml(e), e));
        match (current, new) {
            (Yaml::Null, None) => {}
            (Yaml::Null, Some((value, entry))) => {
                // Built with its first entry: a collection built empty
                // would be written in flow style.
                if list {
                    // A placeholder item first: a mapping built as the first
                    // item would start on the line after its dash.
                    let seq = yaml_edit::SequenceBuilder::new()
                        .item("placeholder")
                        .build_document()
                        .as_sequence()
                        .ok_or_else(|| shape("internal: no sequence".into()))?;
                    root.set(key, seq);
                    let seq = root
                        .get_sequence(key)
                        .ok_or_else(|| shape("internal: no sequence".into()))?;
                    seq.set(0, build(entry)?);
                    want_root.insert(yaml_key.clone(), Yaml::Sequence(vec![value]));
                } else {
                    let m = yaml_edit::MappingBuilder::new()
                        .insert_mapping(name.as_str(), builder(entry)?)
                        .build_document()
                        .as_mapping()
                        .ok_or_else(|| shape("internal: no mapping".into()))?;
                    root.set(key, m);
                    let mut servers = serde_norway::Mapping::new();
                    servers.insert(Yaml::String(name.clone()), value);
                    want_root.insert(yaml_key.clone(), Yaml::Mapping(servers));
                }
            }
            (Yaml::Mapping(_), new) if !list => {
                let servers = root.get_mapping(key).ok_or_else(|| {
                    shape(format!(
                        "`{key}` is written in a way berth cannot edit (an alias or a tag)"
                    ))
                })?;
                let Some(Yaml::Mapping(want_servers)) = want_root.get_mut(&yaml_key) else {
                    return Err(shape("internal: servers are not a mapping".into()));
                };
                match new {
                    Some((value, entry)) => {
                        servers.set(name.as_str(), build(entry)?);
                        want_servers.insert(Yaml::String(name.clone()), value);
                    }
                    None => {
                        if want_servers.contains_key(name.as_str()) {
                            servers.remove(name.as_str());
                            want_servers.shift_remove(name.as_str());
                        }
                    }
                }
            }
            (Yaml::Sequence(items), new) if list => {
                let seq = root.get_sequence(key).ok_or_else(|| {
                    shape(format!(
                        "`{key}` is written in a way berth cannot edit (an alias or a tag)"
                    ))
                })?;
                if seq.len() != items.len() {
                    return Err(shape(format!(
                        "berth cannot edit the list `{key}` of this file"
                    )));
                }
                let Some(Yaml::Sequence(want_items)) = want_root.get_mut(&yaml_key) else {
                    return Err(shape("internal: servers are not a list".into()));
                };
                let matching: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| item_name(i) == Some(name.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                // Later duplicates go; the first match is replaced in place.
                let (first, rest) = match (&new, matching.split_first()) {
                    (Some(_), Some((first, rest))) => (Some(*first), rest),
                    _ => (None, &matching[..]),
                };
                for &i in rest.iter().rev() {
                    seq.remove(i);
                    want_items.remove(i);
                }
                if let Some((value, entry)) = new {
                    let mapping = build(entry)?;
                    match first {
                        Some(i) => {
                            seq.set(i, mapping);
                            want_items[i] = value;
                        }
                        None => {
                            seq.push(mapping);
                            want_items.push(value);
                        }
                    }
                }
            }
            (other, _) => {
                return Err(shape(format!(
                    "`{key}` holds {}, where berth expects {}",
                    describe(&other),
                    if list {
                        "a list of servers"
                    } else {
                        "a mapping of servers"
                    }
                )));
            }
        }
    }
    Ok(file.to_string())
}

/// The entry as yaml-edit's block mapping.
fn build(entry: &Entry) -> Result<yaml_edit::Mapping, FormatError> {
    builder(entry)?
        .build_document()
        .as_mapping()
        .ok_or_else(|| shape("internal: the entry is not a mapping".into()))
}

fn builder(entry: &Entry) -> Result<yaml_edit::MappingBuilder, FormatError> {
    let mut b = yaml_edit::MappingBuilder::new();
    for (field, value) in entry {
        b = match value {
            Value::String(s) => b.pair(field.as_str(), s.as_str()),
            Value::Bool(v) => b.pair(field.as_str(), *v),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => b.pair(field.as_str(), i),
                (None, Some(u)) => b.pair(field.as_str(), u),
                _ => {
                    return Err(shape(format!(
                        "berth cannot write the field `{field}` ({n}) in YAML"
                    )));
                }
            },
            other => {
                return Err(shape(format!(
                    "berth cannot write the field `{field}` ({other}) in YAML"
                )));
            }
        };
    }
    Ok(b)
}

/// The entry as the strict reader's data.
fn to_yaml(entry: &Entry) -> Yaml {
    let mut m = serde_norway::Mapping::new();
    for (field, value) in entry {
        let v = match value {
            Value::String(s) => Yaml::String(s.clone()),
            Value::Bool(b) => Yaml::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Yaml::Number(i.into()),
                (None, Some(u)) => Yaml::Number(u.into()),
                _ => Yaml::Null,
            },
            _ => Yaml::Null,
        };
        m.insert(Yaml::String(field.clone()), v);
    }
    Yaml::Mapping(m)
}

/// YAML data as JSON, as close as JSON allows: tags are dropped, keys that
/// are not strings are written as their YAML text (or dropped when that
/// fails), non-finite floats become `null`.
fn json(v: &Yaml) -> Value {
    match v {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Sequence(s) => Value::Array(s.iter().map(json).collect()),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let k = match k {
                    Yaml::String(s) => s.clone(),
                    other => match serde_norway::to_string(other) {
                        Ok(s) => s.trim_end().to_owned(),
                        Err(_) => continue,
                    },
                };
                out.insert(k, json(v));
            }
            Value::Object(out)
        }
        Yaml::Tagged(t) => json(&t.value),
    }
}
