//! JSON with comments and trailing commas (JSONC), edited in place.
//!
//! The text is parsed by the `jsonc-parser` crate into a concrete syntax
//! tree that keeps every byte (comments, whitespace, line ends); the crate
//! places, separates and removes members, and this module fixes up what it
//! writes where its layout differs from the rules below. After each change
//! the text is printed and parsed again, so that every change starts from
//! a tree of real text.
//!
//! # Reading
//!
//! - `//` and `/* */` comments and trailing commas are accepted; nothing
//!   else beyond JSON is (no single quotes, unquoted names, hexadecimal
//!   numbers, missing commas, …). A control character inside a string (a
//!   raw NUL, say) is accepted as written; outside a string it is an error.
//! - A UTF-8 byte order mark at the very start is set aside before parsing
//!   and written back in front of the result.
//! - Text that is empty or only JSON whitespace (space, tab, CR, LF) is an
//!   empty document. Text of only comments and whitespace has no value yet:
//!   the root object is written after it (on a line of its own, the file
//!   then ends with a line end).
//! - The root must be an object; the servers key is one literal top-level
//!   name (`amp.mcpServers` is one name with a dot in it) and its value must
//!   be an object. When a name appears several times, the last one counts
//!   (for the servers key and for the servers in it).
//! - Nesting deeper than 512 arrays/objects is refused by the crate with a
//!   parse error ("Maximum nesting depth exceeded"); nothing here recurses
//!   over the user's input.
//!
//! # Writing
//!
//! Everything not named here stays byte for byte: comments, the user's
//! servers and other settings, key order, line ends, indentation, the byte
//! order mark, trailing commas, and whether the file ends with a line end.
//!
//! *Depth* counts from the root object: its members are at depth 1, the
//! servers (members of the servers object) at depth 2, the fields of a
//! server at depth 3. A line that berth writes at depth `d` starts with `d`
//! indent units. The closing brace of an object whose members are at depth
//! `d` is at depth `d - 1`.
//!
//! - **Line end**: CRLF when the file's first line end is CRLF, else LF
//!   (also for a file with no line end at all).
//! - **Indent unit**: the whitespace in front of the root object's first
//!   member when that member starts a line and is indented; else two
//!   spaces.
//! - **Trailing commas**: the file *uses trailing commas* when any object or
//!   array in it has a comma after its last member.
//! - **A value berth writes** (a server's entry, or `{}` for a new servers
//!   object) is an object of `"name": value` lines: `{`, then each field on
//!   its own line at the next depth, `"name": ` and the value, a comma after
//!   every field but the last, and after the last too when the file uses
//!   trailing commas; then the closing `}` on its own line. An empty object
//!   is `{}`. Strings are written as `serde_json` writes them (`"` and `\`
//!   escaped, control characters as `\n`, `\t`, … or `\u00xx`, all other
//!   characters as they are). Fields keep the entry's order.
//! - **Adding a server that exists**: its value is replaced where it is
//!   (the name, its comma and any comment around it stay). If the name
//!   appears several times, the last one is replaced and the others are
//!   removed as below.
//! - **Adding a server that does not exist**: it is appended as the last
//!   member of the servers object, on a new line at depth 2:
//!   - if the object had members, the old last member gets a comma right
//!     after its value when it had none (before a comment on its line), and
//!     the new member goes on the line after the old last member's line
//!     (after that line's comments); it ends with a comma when the old last
//!     member had one;
//!   - if the object had no members, the new member goes on a new line
//!     after the `{` and after any comments inside the object, the
//!     whitespace that was before the `}` follows it, and it ends with a
//!     comma when the file uses trailing commas;
//!   - an object that was written on one line (such as `{}`) is first
//!     spread over lines: each existing member on its own line at depth 2,
//!     the closing `}` on a line of its own at depth 1;
//!   - a multi-line object keeps the text between its `{` and its first
//!     member or comment, and between its last member or comment and its
//!     `}`, blank lines included.
//! - **Creating the servers key** (adding to a file without it): appended
//!   as the last member of the root object by the same rules at depth 1,
//!   as `"<key>": {}`; then the servers are added to it. A root object on
//!   one line is spread over lines the same way (its `}` at depth 0).
//! - **Created from nothing** (empty text): the root object `{`, the
//!   servers key and the servers by the rules above, `}`, and one line end.
//! - **Removing a server** removes its member, the indentation in front of
//!   it, its comma (or, for the last member, the comma before it), a
//!   comment after it on its line, and its line end (in an object on one
//!   line, the space after a removed member's comma stays: removing `a`
//!   from `{"a": 1, "b": 2}` gives `{ "b": 2}`). A missing server is
//!   not an error. A servers object left without members is kept, written
//!   `{}`. When no change applies (nothing to remove), the text is returned
//!   as it was.

use std::collections::BTreeMap;

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{
    CstContainerNode, CstInputValue, CstLeafNode, CstNewlineKind, CstNode, CstObject,
    CstObjectProp, CstRootNode, ObjectPropName,
};
use serde_json::{Map, Value};

use super::{Change, FormatError};

const BOM: &str = "\u{feff}";

/// JSON plus comments and trailing commas; nothing else of JSON5.
fn options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

fn parse(text: &str) -> Result<CstRootNode, FormatError> {
    CstRootNode::parse(text, &options()).map_err(|e| FormatError::Parse {
        format: "JSON",
        message: e.to_string(),
    })
}

fn split_bom(text: &str) -> (&'static str, &str) {
    match text.strip_prefix(BOM) {
        Some(body) => (BOM, body),
        None => ("", text),
    }
}

fn is_blank(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// What a node holds, for error messages.
fn kind(node: &CstNode) -> &'static str {
    match node {
        CstNode::Container(CstContainerNode::Array(_)) => "an array",
        CstNode::Container(CstContainerNode::Object(_)) => "an object",
        CstNode::Leaf(CstLeafNode::StringLit(_)) => "a string",
        CstNode::Leaf(CstLeafNode::NumberLit(_)) => "a number",
        CstNode::Leaf(CstLeafNode::BooleanLit(_)) => "a boolean",
        CstNode::Leaf(CstLeafNode::NullKeyword(_)) => "null",
        _ => "something else",
    }
}

/// The root object; `None` when the text holds no value (only comments).
fn root_object(root: &CstRootNode) -> Result<Option<CstObject>, FormatError> {
    match root.value() {
        None => Ok(None),
        Some(value) => value.as_object().map(Some).ok_or_else(|| {
            FormatError::Shape(format!(
                "the file holds {} at the top, not an object",
                kind(&value)
            ))
        }),
    }
}

fn named(object: &CstObject, name: &str) -> Vec<CstObjectProp> {
    object
        .properties()
        .into_iter()
        .filter(|p| p.decoded_name().as_deref() == Some(name))
        .collect()
}

/// The servers object under `key` (the last such key), if there is one.
fn servers(root: &CstObject, key: &str) -> Result<Option<CstObject>, FormatError> {
    let Some(prop) = named(root, key).pop() else {
        return Ok(None);
    };
    match prop.value() {
        Some(value) => value.as_object().map(Some).ok_or_else(|| {
            FormatError::Shape(format!("`{key}` holds {}, not an object", kind(&value)))
        }),
        None => Err(FormatError::Shape(format!("`{key}` has no value"))),
    }
}

pub(super) fn entries(text: &str, key: &str) -> Result<BTreeMap<String, Value>, FormatError> {
    let (_, body) = split_bom(text);
    let mut found = BTreeMap::new();
    if is_blank(body) {
        return Ok(found);
    }
    let root = parse(body)?;
    let Some(object) = root_object(&root)? else {
        return Ok(found);
    };
    let Some(servers) = servers(&object, key)? else {
        return Ok(found);
    };
    for prop in servers.properties() {
        if let (Some(name), Some(value)) = (prop.decoded_name(), prop.to_serde_value()) {
            // A later duplicate replaces an earlier one.
            found.insert(name, value);
        }
    }
    Ok(found)
}

pub(super) fn apply(text: &str, key: &str, changes: &[Change]) -> Result<String, FormatError> {
    let (bom, body) = split_bom(text);
    let blank = is_blank(body);
    let style = if blank {
        Style::of(None, body)
    } else {
        let root = parse(body)?;
        if let Some(object) = root_object(&root)? {
            servers(&object, key)?;
        }
        Style::of(Some(&root), body)
    };
    let mut current = if blank {
        String::new()
    } else {
        body.to_owned()
    };
    let mut changed = false;
    for (name, entry) in changes {
        if let Some(next) = apply_one(&current, key, name, entry.as_ref(), &style)? {
            current = next;
            changed = true;
        }
    }
    if !changed {
        return Ok(text.to_owned());
    }
    Ok(format!("{bom}{current}"))
}

/// The file's conventions for what berth writes (see the module's doc).
struct Style {
    newline: &'static str,
    kind: CstNewlineKind,
    unit: String,
    trailing_commas: bool,
}

impl Style {
    fn of(root: Option<&CstRootNode>, text: &str) -> Self {
        let crlf = text.find('\n').is_some_and(|at| text[..at].ends_with('\r'));
        let unit = root
            .and_then(CstRootNode::single_indent_text)
            .filter(|unit| !unit.is_empty())
            .unwrap_or_else(|| "  ".to_owned());
        Self {
            newline: if crlf { "\r\n" } else { "\n" },
            kind: if crlf {
                CstNewlineKind::CarriageReturnLineFeed
            } else {
                CstNewlineKind::LineFeed
            },
            unit,
            trailing_commas: root.is_some_and(uses_trailing_commas),
        }
    }

    fn indent(&self, depth: usize) -> String {
        self.unit.repeat(depth)
    }

    /// `value` as berth writes it for a member at `depth`.
    fn render(&self, value: &Value, depth: usize) -> String {
        let mut out = String::new();
        self.render_into(&mut out, value, depth);
        out
    }

    fn render_into(&self, out: &mut String, value: &Value, depth: usize) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                self.render_items(
                    out,
                    ('{', '}'),
                    map.iter().map(|(k, v)| (Some(k), v)),
                    depth,
                );
            }
            Value::Array(items) if !items.is_empty() => {
                self.render_items(out, ('[', ']'), items.iter().map(|v| (None, v)), depth);
            }
            other => out.push_str(&json_text(other)),
        }
    }

    fn render_items<'a>(
        &self,
        out: &mut String,
        (open, close): (char, char),
        items: impl ExactSizeIterator<Item = (Option<&'a String>, &'a Value)>,
        depth: usize,
    ) {
        let len = items.len();
        out.push(open);
        for (i, (name, value)) in items.enumerate() {
            out.push_str(self.newline);
            out.push_str(&self.indent(depth + 1));
            if let Some(name) = name {
                out.push_str(&json_text(&Value::String(name.clone())));
                out.push_str(": ");
            }
            self.render_into(out, value, depth + 1);
            if i + 1 < len || self.trailing_commas {
                out.push(',');
            }
        }
        out.push_str(self.newline);
        out.push_str(&self.indent(depth));
        out.push(close);
    }
}

fn json_text(value: &Value) -> String {
    // Serialising a `Value` cannot fail (its map keys are strings).
    serde_json::to_string(value).unwrap_or_default()
}

/// Whether any object or array in the file has a comma after its last
/// member. Walks the tree with a stack of its own.
fn uses_trailing_commas(root: &CstRootNode) -> bool {
    let mut pending: Vec<CstContainerNode> = vec![root.clone().into()];
    while let Some(node) = pending.pop() {
        let last: Option<CstNode> = match &node {
            CstContainerNode::Object(o) => o.properties().pop().map(Into::into),
            CstContainerNode::Array(a) => a.elements().pop(),
            _ => None,
        };
        if last.is_some_and(|last| last.trailing_comma().is_some()) {
            return true;
        }
        pending.extend(node.children().into_iter().filter_map(|c| match c {
            CstNode::Container(c) => Some(c),
            CstNode::Leaf(_) => None,
        }));
    }
    false
}

/// One change to `text`; `None` when it changes nothing.
fn apply_one(
    text: &str,
    key: &str,
    name: &str,
    entry: Option<&Map<String, Value>>,
    style: &Style,
) -> Result<Option<String>, FormatError> {
    // The root node must outlive every node taken from it.
    let root = parse(text)?;
    let object = match root_object(&root)? {
        Some(object) => object,
        None if entry.is_none() => return Ok(None),
        None => {
            root.set_value(CstInputValue::Object(Vec::new()));
            root.object_value()
                .ok_or_else(|| FormatError::Shape("cannot create the root object".into()))?
        }
    };
    let Some(servers) = servers(&object, key)? else {
        if entry.is_none() {
            return Ok(None);
        }
        append_member(&object, 1, key, "{}".to_owned(), style);
        // Start again from the text with the servers key in it.
        let with_key = root.to_string();
        return apply_one(&with_key, key, name, entry, style);
    };
    let mut same = named(&servers, name);
    match entry {
        None if same.is_empty() => return Ok(None),
        None => same.into_iter().for_each(CstObjectProp::remove),
        Some(entry) => {
            let rendered = style.render(&Value::Object(entry.clone()), 2);
            match same.pop() {
                Some(last) => {
                    same.into_iter().for_each(CstObjectProp::remove);
                    last.set_value(CstInputValue::String(String::new()));
                    if let Some(CstNode::Leaf(CstLeafNode::StringLit(lit))) = last.value() {
                        lit.set_raw_value(rendered);
                    }
                }
                None => append_member(&servers, 2, name, rendered, style),
            }
        }
    }
    Ok(Some(root.to_string()))
}

fn is_space(node: &CstNode) -> bool {
    node.is_whitespace() || node.is_newline()
}

fn text_of(nodes: &[CstNode]) -> String {
    nodes.iter().map(ToString::to_string).collect()
}

/// The whitespace between an object's `{` and its first member or
/// comment, and between its last member or comment and its `}`, as index
/// ranges into `children` (which start with `{` and end with `}`).
fn runs(children: &[CstNode]) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let inner = &children[1..children.len() - 1];
    let lead = inner.iter().take_while(|n| is_space(n)).count();
    // With nothing but whitespace inside, both are all of it.
    let trail = inner.iter().rev().take_while(|n| is_space(n)).count();
    (1..1 + lead, children.len() - 1 - trail..children.len() - 1)
}

/// Puts `text` in front of what `node` prints; whether it could.
fn prepend(node: &CstNode, text: &str) -> bool {
    match node {
        CstNode::Leaf(CstLeafNode::Whitespace(w)) => w.set_value(format!("{text}{}", w.value())),
        CstNode::Leaf(CstLeafNode::Comment(c)) => c.set_raw_value(format!("{text}{c}")),
        CstNode::Container(CstContainerNode::ObjectProp(p)) => match p.name() {
            Some(ObjectPropName::String(s)) => s.set_raw_value(format!("{text}{s}")),
            Some(ObjectPropName::Word(w)) => w.set_raw_value(format!("{text}{w}")),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// Appends `"name": <raw>` to `object`, whose members are at `depth`, by
/// the rules of the module's doc. `raw` is the value's text as written.
fn append_member(object: &CstObject, depth: usize, name: &str, raw: String, style: &Style) {
    let before = object.children();
    let had_newline = before.iter().any(CstNode::is_newline);
    let (lead, trail) = runs(&before);
    let lead_text = text_of(&before[lead]);
    let want_trail = if had_newline {
        text_of(&before[trail])
    } else {
        format!("{}{}", style.newline, style.indent(depth - 1))
    };
    let comma = match object.properties().last() {
        Some(last) => last.trailing_comma().is_some(),
        None => style.trailing_commas,
    };

    // The crate places the member, adds the old last member's comma and
    // spreads a one-line object over lines; it also drops blank lines at
    // the object's start and end, and picks indentation, line ends and
    // trailing commas its own way. What follows puts those to the rules.
    let prop = object.append(name, CstInputValue::String(String::new()));
    if let Some(c) = prop.trailing_comma() {
        c.remove();
    }
    if let Some(ObjectPropName::String(lit)) = prop.name() {
        lit.set_raw_value(json_text(&Value::String(name.to_owned())));
    }
    let indent = style.indent(depth);
    let mut value_text = raw;
    if comma {
        value_text.push(',');
    }

    // The new member's line: a line end, then the indentation.
    match prop.previous_sibling() {
        Some(CstNode::Leaf(CstLeafNode::Whitespace(w))) => {
            w.set_value(indent.clone());
            if let Some(CstNode::Leaf(CstLeafNode::Newline(nl))) = w.previous_sibling() {
                nl.set_kind(style.kind);
            }
        }
        Some(CstNode::Leaf(CstLeafNode::Newline(nl))) => {
            nl.set_kind(style.kind);
            prepend(&prop.clone().into(), &indent);
        }
        _ => {}
    }

    // The end: from the last member or comment to the `}`.
    let children = object.children();
    let (_, trail) = runs(&children);
    if text_of(&children[trail.clone()]) != want_trail {
        let carrier = &children[trail.start - 1];
        let carried = if trail.start - 1 == prop.child_index() {
            value_text.push_str(&want_trail);
            true
        } else if let Some(c) = carrier.as_comment() {
            c.set_raw_value(format!("{c}{want_trail}"));
            true
        } else {
            false
        };
        if carried {
            for node in children[trail].iter().rev() {
                node.clone().remove();
            }
        }
    }
    if let Some(CstNode::Leaf(CstLeafNode::StringLit(lit))) = prop.value() {
        lit.set_raw_value(value_text);
    }

    let children = object.children();
    let (lead, trail) = runs(&children);
    let at = prop.child_index();
    if had_newline {
        // The start: from the `{` to the first member or comment, unless
        // the new member is that (the object held no member nor comment).
        if lead.end != at && text_of(&children[lead.clone()]) != lead_text {
            let first = children[lead.end].clone();
            for node in children[lead].iter().rev() {
                node.clone().remove();
            }
            prepend(&first, &lead_text);
        }
    } else {
        // Every line break in what was a one-line object is the crate's.
        for j in 1..trail.start {
            if let CstNode::Leaf(CstLeafNode::Newline(nl)) = &children[j] {
                nl.set_kind(style.kind);
                match &children[j + 1] {
                    CstNode::Leaf(CstLeafNode::Whitespace(w)) => w.set_value(indent.clone()),
                    next if j + 1 != at => {
                        prepend(next, &indent);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("url".into(), url.into());
        m.insert("type".into(), "http".into());
        m
    }

    fn add(text: &str, name: &str) -> Result<String, FormatError> {
        apply(
            text,
            "mcpServers",
            &[(name.into(), Some(entry("http://x/mcp")))],
        )
    }

    fn remove(text: &str, name: &str) -> Result<String, FormatError> {
        apply(text, "mcpServers", &[(name.into(), None)])
    }

    fn entries_of(text: &str) -> BTreeMap<String, Value> {
        entries(text, "mcpServers").expect("entries")
    }

    /// Adding `new` and removing it again gives back `text`.
    fn round_trip(text: &str) -> String {
        let added = add(text, "new").expect("add");
        assert_eq!(
            remove(&added, "new").expect("remove"),
            text,
            "after\n{added}"
        );
        added
    }

    const NEW_2: &str =
        "    \"new\": {\n      \"url\": \"http://x/mcp\",\n      \"type\": \"http\"\n    }";

    #[test]
    fn created_from_empty_text() {
        let want = format!("{{\n  \"mcpServers\": {{\n{NEW_2}\n  }}\n}}\n");
        assert_eq!(add("", "new").unwrap(), want);
        assert_eq!(add(" \n\t\r\n", "new").unwrap(), want, "whitespace only");
        assert_eq!(add("\u{feff}", "new").unwrap(), format!("\u{feff}{want}"));
        // Nothing to remove from nothing: the text stays as it is.
        assert_eq!(remove("", "new").unwrap(), "");
        assert_eq!(remove(" \n", "new").unwrap(), " \n");
        assert!(entries_of("").is_empty());
        assert!(entries_of("  \n").is_empty());
    }

    #[test]
    fn several_servers_in_one_go() {
        let changes = [
            ("a".to_owned(), Some(entry("http://a"))),
            ("b".to_owned(), Some(entry("http://b"))),
            ("a".to_owned(), None),
        ];
        let out = apply("{}", "mcpServers", &changes).unwrap();
        assert_eq!(
            out,
            "{\n  \"mcpServers\": {\n    \"b\": {\n      \"url\": \"http://b\",\n      \"type\": \"http\"\n    }\n  }\n}"
        );
    }

    #[test]
    fn servers_key_is_created_at_the_end_of_the_root() {
        let text = "{\n  // settings\n  \"theme\": \"dark\"\n}";
        let out = add(text, "new").unwrap();
        assert_eq!(
            out,
            format!(
                "{{\n  // settings\n  \"theme\": \"dark\",\n  \"mcpServers\": {{\n{NEW_2}\n  }}\n}}"
            )
        );
        // Removing the server keeps the (now empty) servers object.
        assert_eq!(
            remove(&out, "new").unwrap(),
            "{\n  // settings\n  \"theme\": \"dark\",\n  \"mcpServers\": {}\n}"
        );
    }

    #[test]
    fn one_line_objects_are_spread_over_lines() {
        assert_eq!(
            add("{\"mcpServers\": {\"x\": 1, \"y\": 2}}", "new").unwrap(),
            format!("{{\"mcpServers\": {{\n    \"x\": 1,\n    \"y\": 2,\n{NEW_2}\n  }}}}")
        );
        assert_eq!(
            add("{\"a\": true}\n", "new").unwrap(),
            format!("{{\n  \"a\": true,\n  \"mcpServers\": {{\n{NEW_2}\n  }}\n}}\n")
        );
    }

    #[test]
    fn key_with_a_dot_is_one_literal_key() {
        let text = "{\n  \"amp\": {\"mcpServers\": {\"old\": {}}},\n  \"amp.mcpServers\": {\n    \"x\": {}\n  }\n}\n";
        let found = entries(text, "amp.mcpServers").unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["x"]);
        let out = apply(
            text,
            "amp.mcpServers",
            &[("new".into(), Some(entry("http://x/mcp")))],
        )
        .unwrap();
        assert_eq!(
            out,
            format!(
                "{{\n  \"amp\": {{\"mcpServers\": {{\"old\": {{}}}}}},\n  \"amp.mcpServers\": {{\n    \"x\": {{}},\n{NEW_2}\n  }}\n}}\n"
            )
        );
    }

    #[test]
    fn crlf_files_get_crlf() {
        let text = "{\r\n  \"mcpServers\": {\r\n    \"x\": 1\r\n  }\r\n}\r\n";
        let out = round_trip(text);
        assert_eq!(
            out,
            format!(
                "{{\r\n  \"mcpServers\": {{\r\n    \"x\": 1,\r\n{}\r\n  }}\r\n}}\r\n",
                NEW_2.replace('\n', "\r\n")
            )
        );
        // The first line end decides.
        let mixed = "{\n  \"mcpServers\": {\r\n  }\r\n}";
        assert!(add(mixed, "new").unwrap().contains("\"new\": {\n"));
        let out = add("{\"mcpServers\": {}}", "new").unwrap();
        assert!(!out.contains('\r'), "no line end at all: LF");
    }

    #[test]
    fn indentation_follows_the_first_root_member() {
        for unit in ["\t", "   ", "    ", "  "] {
            let text = format!("{{\n{unit}\"a\": 1\n}}\n");
            let out = add(&text, "new").unwrap();
            let u = |n: usize| unit.repeat(n);
            let want = format!(
                "{{\n{}\"a\": 1,\n{}\"mcpServers\": {{\n{}\"new\": {{\n{}\"url\": \"http://x/mcp\",\n{}\"type\": \"http\"\n{}}}\n{}}}\n}}\n",
                u(1),
                u(1),
                u(2),
                u(3),
                u(3),
                u(2),
                u(1)
            );
            assert_eq!(out, want, "unit {unit:?}");
        }
        // The first member on the `{` line: two spaces.
        let out = add("{\"a\": 1,\n\"b\": 2\n}", "new").unwrap();
        assert!(
            out.contains("\n  \"mcpServers\": {\n    \"new\": {\n      \"url\""),
            "{out}"
        );
    }

    #[test]
    fn trailing_commas_follow_the_file() {
        // A trailing comma anywhere: new objects end their fields with one.
        let text = "{\n  \"editor\": [1, 2,],\n  \"mcpServers\": {\n    \"x\": 1\n  }\n}\n";
        let out = round_trip(text);
        assert_eq!(
            out,
            "{\n  \"editor\": [1, 2,],\n  \"mcpServers\": {\n    \"x\": 1,\n    \"new\": {\n      \"url\": \"http://x/mcp\",\n      \"type\": \"http\",\n    }\n  }\n}\n"
        );
        // The old last server had one: so does the new one.
        let text = "{\n  \"mcpServers\": {\n    \"x\": 1,\n  },\n}\n";
        let out = round_trip(text);
        assert!(out.contains("\"x\": 1,\n    \"new\": {"), "{out}");
        assert!(
            out.contains("\"type\": \"http\",\n    },\n  },\n}"),
            "{out}"
        );
        // Into an empty servers object of a trailing-comma file.
        let out = add("{\n  \"a\": 1,\n  \"mcpServers\": {},\n}", "new").unwrap();
        assert!(out.contains("\"mcpServers\": {\n    \"new\": {"), "{out}");
        assert!(
            out.ends_with("\"type\": \"http\",\n    },\n  },\n}"),
            "{out}"
        );
    }

    #[test]
    fn comments_and_blank_lines_stay() {
        let text = "// top\n{\n  /* a */ \"mcpServers\": {\n\n    // mine\n    \"x\": {\"url\": \"u\"}, // note\n    \"y\": 2 // last\n    // end\n\n  } /* after */\n}\n// bottom";
        let out = round_trip(text);
        assert_eq!(
            out,
            format!(
                "// top\n{{\n  /* a */ \"mcpServers\": {{\n\n    // mine\n    \"x\": {{\"url\": \"u\"}}, // note\n    \"y\": 2, // last\n{NEW_2}\n    // end\n\n  }} /* after */\n}}\n// bottom"
            )
        );
        // Blank lines right inside the braces.
        let text = "{\n  \"mcpServers\": {\n\n\n    \"x\": 1\n\n  }\n}";
        let out = round_trip(text);
        assert_eq!(
            out,
            format!("{{\n  \"mcpServers\": {{\n\n\n    \"x\": 1,\n{NEW_2}\n\n  }}\n}}")
        );
    }

    #[test]
    fn into_an_object_of_only_comments_or_blank_lines() {
        let text = "{\n  \"mcpServers\": {\n    // none yet\n  }\n}\n";
        assert_eq!(
            round_trip(text),
            format!("{{\n  \"mcpServers\": {{\n    // none yet\n{NEW_2}\n  }}\n}}\n")
        );
        let text = "{\n  \"mcpServers\": {\n\n  }\n}\n";
        assert_eq!(
            add(text, "new").unwrap(),
            format!("{{\n  \"mcpServers\": {{\n{NEW_2}\n\n  }}\n}}\n")
        );
    }

    #[test]
    fn no_final_newline_stays_so() {
        let out = round_trip("{\n  \"mcpServers\": {\n    \"x\": 1\n  }\n}");
        assert!(out.ends_with("\n  }\n}"));
        let out = round_trip("{\n  \"mcpServers\": {\n    \"x\": 1\n  }\n}\n\n");
        assert!(out.ends_with("\n  }\n}\n\n"));
    }

    #[test]
    fn bom_is_kept() {
        let text = "\u{feff}{\n  \"mcpServers\": {\n    \"x\": 1\n  }\n}\n";
        let out = round_trip(text);
        assert!(out.starts_with("\u{feff}{\n"));
        assert_eq!(out.matches('\u{feff}').count(), 1);
        assert_eq!(entries_of(text).len(), 1);
    }

    #[test]
    fn existing_server_is_replaced_in_place() {
        let text =
            "{\n  \"mcpServers\": {\n    \"new\": \"old\", // keep me\n    \"x\": 1\n  }\n}\n";
        let out = add(text, "new").unwrap();
        assert_eq!(
            out,
            format!("{{\n  \"mcpServers\": {{\n{NEW_2}, // keep me\n    \"x\": 1\n  }}\n}}\n")
        );
        // Written twice: the last one is replaced, the first removed.
        let text =
            "{\n  \"mcpServers\": {\n    \"new\": 1,\n    \"x\": 2,\n    \"new\": 3\n  }\n}\n";
        let out = add(text, "new").unwrap();
        assert_eq!(
            out,
            format!("{{\n  \"mcpServers\": {{\n    \"x\": 2,\n{NEW_2}\n  }}\n}}\n")
        );
        // The same entry again changes nothing.
        assert_eq!(add(&out, "new").unwrap(), out);
    }

    #[test]
    fn removal() {
        let text =
            "{\n  \"mcpServers\": {\n    \"a\": 1, // a\n    \"b\": 2,\n    \"c\": 3\n  }\n}\n";
        assert_eq!(
            remove(text, "a").unwrap(),
            "{\n  \"mcpServers\": {\n    \"b\": 2,\n    \"c\": 3\n  }\n}\n"
        );
        assert_eq!(
            remove(text, "c").unwrap(),
            "{\n  \"mcpServers\": {\n    \"a\": 1, // a\n    \"b\": 2\n  }\n}\n"
        );
        // Missing: not an error, not a change (odd spacing kept).
        let odd = "{ \"mcpServers\" :{ \"a\":1 } }";
        assert_eq!(remove(odd, "zz").unwrap(), odd);
        assert_eq!(remove("{\"other\": 1}", "zz").unwrap(), "{\"other\": 1}");
        // The last one: the servers object stays, empty.
        assert_eq!(
            remove("{\n  \"mcpServers\": {\n    \"a\": 1\n  }\n}", "a").unwrap(),
            "{\n  \"mcpServers\": {}\n}"
        );
        // Duplicates all go (on one line, the space after a removed
        // member's comma stays).
        assert_eq!(
            remove("{\"mcpServers\": {\"a\": 1, \"b\": 2, \"a\": 3}}", "a").unwrap(),
            "{\"mcpServers\": { \"b\": 2}}"
        );
    }

    #[test]
    fn names_are_escaped_and_decoded() {
        let name = "we\"ird\\na\u{1}me é";
        let out = add("", name).unwrap();
        assert!(out.contains(r#""we\"ird\\na\u0001me é": {"#), "{out}");
        assert!(entries_of(&out).contains_key(name));
        let found = entries_of("{\"mcpServers\": {\"fe\\u0074ch\": {\"url\": \"u\"}}}");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["fetch"]);
        // And an escaped name is found for replacing and removing.
        let text = "{\"mcpServers\": {\"n\\u0065w\": 1}}";
        assert_eq!(remove(text, "new").unwrap(), "{\"mcpServers\": {}}");
    }

    #[test]
    fn entries_read_jsonc() {
        let text = "/* c */ {\n  // c\n  \"mcpServers\": {\n    \"a\": {\"url\": \"u\", \"type\": \"http\",}, // c\n    \"b\": {\"url\": \"first\"},\n    \"b\": {\"url\": \"last\"},\n  },\n}\n";
        let found = entries_of(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found["a"], serde_json::json!({"url": "u", "type": "http"}));
        assert_eq!(found["b"], serde_json::json!({"url": "last"}));
        assert!(entries_of("{\"other\": {}}").is_empty());
        assert!(entries_of("// only a comment\n").is_empty());
        // The last servers key counts.
        let two = "{\"mcpServers\": {\"a\": 1}, \"mcpServers\": {\"b\": 2}}";
        assert_eq!(entries_of(two).keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn comment_only_file_gets_the_object_after_it() {
        let out = add("// nothing yet", "new").unwrap();
        assert_eq!(
            out,
            format!("// nothing yet\n{{\n  \"mcpServers\": {{\n{NEW_2}\n  }}\n}}\n")
        );
        assert_eq!(remove("// nothing yet", "new").unwrap(), "// nothing yet");
    }

    #[test]
    fn shape_errors() {
        let shape = |text: &str| match entries(text, "mcpServers") {
            Err(FormatError::Shape(m)) => {
                assert_eq!(add(text, "x"), Err(FormatError::Shape(m.clone())));
                assert_eq!(remove(text, "x"), Err(FormatError::Shape(m.clone())));
                m
            }
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            shape("{\"mcpServers\": []}"),
            "`mcpServers` holds an array, not an object"
        );
        assert_eq!(
            shape("{\"mcpServers\": \"x\"}"),
            "`mcpServers` holds a string, not an object"
        );
        assert_eq!(
            shape("{\"mcpServers\": null}"),
            "`mcpServers` holds null, not an object"
        );
        assert_eq!(
            shape("[1]"),
            "the file holds an array at the top, not an object"
        );
        assert_eq!(
            shape("42"),
            "the file holds a number at the top, not an object"
        );
    }

    fn parse_error(text: &str) -> String {
        match entries(text, "mcpServers") {
            Err(FormatError::Parse { format, message }) => {
                assert_eq!(format, "JSON");
                assert!(matches!(add(text, "x"), Err(FormatError::Parse { .. })));
                message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let m = parse_error("{\n  \"a\": 1\n  \"b\": 2\n}");
        assert!(m.contains("line 2 column 9"), "{m}");
        for text in [
            "{'a': 1}",
            "{a: 1}",
            "{\"a\": 0x10}",
            "{\"a\": +1}",
            "{\"a\": NaN}",
            "{\"a\": 1,,}",
            "{\"a\": 1} {}",
            "{\"a\": ",
            "{\"a\": \"\\x41\"}",
        ] {
            parse_error(text);
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let deep = "[".repeat(100_000);
        assert!(parse_error(&deep).contains("nesting"));
        let deep = format!("{{\"mcpServers\": {}", "{\"a\": ".repeat(100_000));
        assert!(parse_error(&deep).contains("nesting"));
        // The deepest the crate takes still works on a test thread's stack.
        let depth = 500;
        let text = format!(
            "{{\"mcpServers\": {{\n\"x\": {}1{}\n}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(entries_of(&text).len(), 1);
        let out = round_trip(&text);
        assert_eq!(entries_of(&out).len(), 2);
    }

    #[test]
    fn nul_and_long_strings() {
        // A raw NUL in a string is taken as written; outside one it is an error.
        let text = "{\"mcpServers\": {\n  \"x\": \"a\u{0}b\"\n}}";
        assert_eq!(entries_of(text)["x"], Value::String("a\u{0}b".into()));
        round_trip(text);
        parse_error("{\"mcpServers\": {}}\u{0}");
        // Very long strings in the file and in an entry.
        let long = "é".repeat(2_000_000);
        let text = format!("{{\"big\": \"{long}\", \"mcpServers\": {{}}}}");
        let out = apply(&text, "mcpServers", &[("new".into(), Some(entry(&long)))]).unwrap();
        assert_eq!(entries_of(&out)["new"]["url"], Value::String(long.clone()));
        assert!(out.starts_with(&format!("{{\"big\": \"{long}\", \"mcpServers\": {{\n")));
    }
}
