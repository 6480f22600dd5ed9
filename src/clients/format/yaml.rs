//! YAML, a mapping or a list of servers.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Change, FormatError};

pub(super) fn entries(
    _text: &str,
    _key: &str,
    _list: bool,
) -> Result<BTreeMap<String, Value>, FormatError> {
    todo!("yaml entries")
}

pub(super) fn apply(
    _text: &str,
    _key: &str,
    _changes: &[Change],
    _list: bool,
) -> Result<String, FormatError> {
    todo!("yaml apply")
}
