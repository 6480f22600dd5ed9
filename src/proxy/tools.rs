//! A workload's tool filter and overrides (`tools`, `tools_override`):
//! which of the server's tools a client sees, under which name and
//! description.
//!
//! Invariants:
//! - names given by the client are the *shown* names; what reaches the
//!   server is the server's own name ([`ToolView::resolve`]);
//! - a tool renamed away is not callable by its old name, and a server
//!   tool whose own name is taken by a rename is hidden and not callable
//!   (the shown name always means the renamed tool);
//! - the filter lists shown names; without a filter every tool is shown.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

/// A tool's replacement name and description (both optional).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Override {
    /// The name shown instead of the server's.
    pub name: Option<String>,
    /// The description shown instead of the server's.
    pub description: Option<String>,
}

/// Why a filter and overrides cannot be used together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolViewError(pub String);

/// The filter and the overrides of one workload.
#[derive(Debug, Clone, Default)]
pub struct ToolView {
    /// Shown names that are visible; `None` shows all.
    filter: Option<HashSet<String>>,
    /// Overrides by the server's name.
    by_server: HashMap<String, Override>,
    /// The server's name of each renamed tool, by shown name.
    by_shown: HashMap<String, String>,
}

impl ToolView {
    /// The view of `filter` (shown names) and `overrides` (by the
    /// server's tool name). Refuses empty names, two tools renamed to one
    /// name, and an override that changes nothing.
    pub fn new(
        filter: Option<&[String]>,
        overrides: &BTreeMap<String, Override>,
    ) -> Result<Self, ToolViewError> {
        let mut by_shown = HashMap::new();
        for (server, o) in overrides {
            if server.is_empty() {
                return Err(ToolViewError(
                    "tools_override has an empty tool name".into(),
                ));
            }
            if o.name.is_none() && o.description.is_none() {
                return Err(ToolViewError(format!(
                    "tools_override `{}` sets neither `name` nor `description`",
                    crate::logging::escape_controls(server)
                )));
            }
            if let Some(name) = &o.name {
                if name.is_empty() {
                    return Err(ToolViewError(format!(
                        "tools_override `{}` has an empty `name`",
                        crate::logging::escape_controls(server)
                    )));
                }
                if let Some(other) = by_shown.insert(name.clone(), server.clone()) {
                    return Err(ToolViewError(format!(
                        "tools_override renames both `{}` and `{}` to `{}`",
                        crate::logging::escape_controls(&other),
                        crate::logging::escape_controls(server),
                        crate::logging::escape_controls(name)
                    )));
                }
            }
        }
        if let Some(names) = filter
            && names.iter().any(String::is_empty)
        {
            return Err(ToolViewError("tools has an empty tool name".into()));
        }
        Ok(Self {
            filter: filter.map(|f| f.iter().cloned().collect()),
            by_server: overrides.clone().into_iter().collect(),
            by_shown,
        })
    }

    /// Whether the view changes anything.
    pub fn is_identity(&self) -> bool {
        self.filter.is_none() && self.by_server.is_empty()
    }

    /// The server's name of the tool a client calls `shown`, or `None`
    /// when no visible tool has that name.
    pub fn resolve(&self, shown: &str) -> Option<String> {
        if let Some(filter) = &self.filter
            && !filter.contains(shown)
        {
            return None;
        }
        if let Some(server) = self.by_shown.get(shown) {
            return Some(server.clone());
        }
        match self.by_server.get(shown) {
            // Renamed away: its old name is not callable.
            Some(Override { name: Some(_), .. }) => None,
            _ => Some(shown.to_owned()),
        }
    }

    /// A tool of the server's list as the client sees it, or `None` when
    /// it is hidden.
    pub fn show(&self, mut tool: Value) -> Option<Value> {
        let server = tool.get("name")?.as_str()?.to_owned();
        let shown = match self.by_server.get(&server) {
            Some(o) => {
                if let Some(d) = &o.description {
                    tool["description"] = Value::String(d.clone());
                }
                match &o.name {
                    Some(n) => {
                        tool["name"] = Value::String(n.clone());
                        n.clone()
                    }
                    None => server,
                }
            }
            None => {
                if self.by_shown.contains_key(&server) {
                    // A rename took this name: the server's own tool of
                    // that name is not reachable, so not shown.
                    return None;
                }
                server
            }
        };
        if let Some(filter) = &self.filter
            && !filter.contains(&shown)
        {
            return None;
        }
        Some(tool)
    }

    /// Rewrites a `tools/list` result's `tools` in place; returns whether
    /// it changed.
    pub fn show_list(&self, result: &mut Value) -> bool {
        if self.is_identity() {
            return false;
        }
        let Some(Value::Array(tools)) = result.get_mut("tools") else {
            return false;
        };
        let all = std::mem::take(tools);
        *tools = all.into_iter().filter_map(|t| self.show(t)).collect();
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(filter: Option<&[&str]>, overrides: &[(&str, Option<&str>, Option<&str>)]) -> ToolView {
        let filter: Option<Vec<String>> = filter.map(|f| f.iter().map(|s| s.to_string()).collect());
        let overrides = overrides
            .iter()
            .map(|(s, n, d)| {
                (
                    s.to_string(),
                    Override {
                        name: n.map(str::to_owned),
                        description: d.map(str::to_owned),
                    },
                )
            })
            .collect();
        ToolView::new(filter.as_deref(), &overrides).unwrap()
    }

    fn names(result: &Value) -> Vec<&str> {
        result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_filter_shows_and_calls_only_listed_tools() {
        let v = view(Some(&["echo"]), &[]);
        let mut r = json!({"tools": [{"name": "echo"}, {"name": "rm"}], "nextCursor": "c"});
        assert!(v.show_list(&mut r));
        assert_eq!(names(&r), ["echo"]);
        assert_eq!(r["nextCursor"], "c");
        assert_eq!(v.resolve("echo").as_deref(), Some("echo"));
        assert_eq!(v.resolve("rm"), None);
    }

    #[test]
    fn a_rename_is_translated_both_ways_and_the_old_name_is_gone() {
        let v = view(None, &[("echo", Some("say"), Some("Says it"))]);
        let mut r = json!({"tools": [{"name": "echo", "description": "old", "inputSchema": {"type": "object"}}]});
        v.show_list(&mut r);
        assert_eq!(
            r["tools"][0],
            json!({"name": "say", "description": "Says it", "inputSchema": {"type": "object"}})
        );
        assert_eq!(v.resolve("say").as_deref(), Some("echo"));
        assert_eq!(v.resolve("echo"), None);
    }

    #[test]
    fn a_rename_onto_a_server_name_shadows_that_tool() {
        let v = view(None, &[("rm", Some("echo"), None)]);
        let mut r = json!({"tools": [{"name": "echo"}, {"name": "rm"}]});
        v.show_list(&mut r);
        assert_eq!(names(&r), ["echo"]);
        // `echo` means the renamed `rm`, never the server's own `echo`.
        assert_eq!(v.resolve("echo").as_deref(), Some("rm"));
        assert_eq!(v.resolve("rm"), None);
    }

    #[test]
    fn the_filter_uses_shown_names() {
        let v = view(Some(&["say"]), &[("echo", Some("say"), None)]);
        let mut r = json!({"tools": [{"name": "echo"}, {"name": "other"}]});
        v.show_list(&mut r);
        assert_eq!(names(&r), ["say"]);
        assert_eq!(v.resolve("say").as_deref(), Some("echo"));
        assert_eq!(v.resolve("other"), None);
    }

    #[test]
    fn a_description_override_keeps_the_name_callable() {
        let v = view(None, &[("echo", None, Some("new"))]);
        assert_eq!(v.resolve("echo").as_deref(), Some("echo"));
        let t = v
            .show(json!({"name": "echo", "description": "old"}))
            .unwrap();
        assert_eq!(t["description"], "new");
    }

    #[test]
    fn hostile_lists_and_configs() {
        let v = view(Some(&["echo"]), &[]);
        // Tools without a string name are hidden, not passed through.
        let mut r = json!({"tools": [{"name": 5}, {}, "x", {"name": "echo"}]});
        v.show_list(&mut r);
        assert_eq!(names(&r), ["echo"]);
        // A result whose `tools` is not a list is left alone.
        let mut r = json!({"tools": "echo"});
        assert!(!v.show_list(&mut r));

        let two = [
            (
                "a".to_owned(),
                Override {
                    name: Some("x".into()),
                    description: None,
                },
            ),
            (
                "b".to_owned(),
                Override {
                    name: Some("x".into()),
                    description: None,
                },
            ),
        ]
        .into_iter()
        .collect();
        assert!(ToolView::new(None, &two).is_err());
        let nothing = [("a".to_owned(), Override::default())]
            .into_iter()
            .collect();
        assert!(ToolView::new(None, &nothing).is_err());
        let empty = [(
            "a".to_owned(),
            Override {
                name: Some(String::new()),
                description: None,
            },
        )]
        .into_iter()
        .collect();
        assert!(ToolView::new(None, &empty).is_err());
        assert!(ToolView::new(Some(&[String::new()]), &BTreeMap::new()).is_err());
    }
}
