//! JSON with comments and trailing commas (JSONC), edited in place.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Change, FormatError};

pub(super) fn entries(_text: &str, _key: &str) -> Result<BTreeMap<String, Value>, FormatError> {
    todo!("json entries")
}

pub(super) fn apply(_text: &str, _key: &str, _changes: &[Change]) -> Result<String, FormatError> {
    todo!("json apply")
}
