//! TOML, a table per server or an array of tables.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Change, FormatError};

pub(super) fn entries(
    _text: &str,
    _key: &str,
    _array: bool,
) -> Result<BTreeMap<String, Value>, FormatError> {
    todo!("toml entries")
}

pub(super) fn apply(
    _text: &str,
    _key: &str,
    _changes: &[Change],
    _array: bool,
) -> Result<String, FormatError> {
    todo!("toml apply")
}
