//! The writers: one per file format, each editing only the entries it is
//! given and keeping the rest of the file (see each module for what is
//! kept byte for byte).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

mod json;
mod toml;
mod yaml;

/// Whether the YAML writer keeps comments and formatting (see `yaml.rs`).
#[cfg(test)]
pub(crate) const YAML_LOSSLESS: bool = true;

/// How a client's file holds its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// JSON (comments and trailing commas allowed): an object under a
    /// top-level key, one property per server.
    JsonMap,
    /// YAML: a mapping under a top-level key, one key per server.
    YamlMap,
    /// YAML: a sequence under a top-level key, items matched by `name`.
    YamlList,
    /// TOML: a table per server, `[<key>.<name>]`.
    TomlTables,
    /// TOML: an array of tables, `[[<key>]]`, matched by `name`.
    TomlArray,
}

/// One server entry: field names and values (strings, booleans, integers),
/// in the order they are written. For the list layouts it holds `name`.
pub(crate) type Entry = Map<String, Value>;

/// One change to a file: `Some(entry)` adds or replaces the server
/// `name`, `None` removes it.
pub(crate) type Change = (String, Option<Entry>);

/// Why a file cannot be edited. The file is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// The text is not valid JSON/YAML/TOML.
    #[error("not valid {format}: {message}")]
    Parse {
        /// `JSON`, `YAML` or `TOML`.
        format: &'static str,
        /// The parser's words, with a line and column where it has them.
        message: String,
    },
    /// The file parses but is not shaped as the client expects (the root
    /// is not a map, the servers key holds a string, …).
    #[error("{0}")]
    Shape(String),
}

impl Layout {
    /// The servers currently in `text` under `key`, by name, as JSON values.
    /// Empty text has none. For the list layouts, items without a string
    /// `name` are not servers and are skipped.
    pub(crate) fn entries(
        self,
        text: &str,
        key: &str,
    ) -> Result<BTreeMap<String, Value>, FormatError> {
        match self {
            Self::JsonMap => json::entries(text, key),
            Self::YamlMap => yaml::entries(text, key, false),
            Self::YamlList => yaml::entries(text, key, true),
            Self::TomlTables => toml::entries(text, key, false),
            Self::TomlArray => toml::entries(text, key, true),
        }
    }

    /// `text` with `changes` applied in order; empty text is an empty
    /// document. Everything else in the file is kept.
    pub(crate) fn apply(
        self,
        text: &str,
        key: &str,
        changes: &[Change],
    ) -> Result<String, FormatError> {
        match self {
            Self::JsonMap => json::apply(text, key, changes),
            Self::YamlMap => yaml::apply(text, key, changes, false),
            Self::YamlList => yaml::apply(text, key, changes, true),
            Self::TomlTables => toml::apply(text, key, changes, false),
            Self::TomlArray => toml::apply(text, key, changes, true),
        }
    }
}
