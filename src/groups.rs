//! Groups: named sets of workloads, persisted as `groups/<name>.json`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::{Kind, StateError, Store};

/// The group that always exists and takes workloads without a group.
pub const DEFAULT_GROUP: &str = "default";

/// The longest group name accepted, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 100;

/// A group as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = groups::Group)]
pub struct Group {
    /// Name of the group.
    pub name: String,
    /// MCP clients registered with the group.
    #[serde(default)]
    pub registered_clients: Vec<String>,
    /// Skills of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// Plugins of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
}

impl Group {
    fn empty(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            registered_clients: Vec::new(),
            skills: Vec::new(),
            plugins: Vec::new(),
        }
    }
}

/// What went wrong with a group operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The name breaks the naming rules.
    #[error("invalid group name: {0}")]
    InvalidName(String),
    /// No such group.
    #[error("group not found: {0}")]
    NotFound(String),
    /// The group exists already.
    #[error("group already exists: {0}")]
    AlreadyExists(String),
    /// The `default` group cannot be deleted.
    #[error("cannot delete the default group")]
    DeleteDefault,
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Checks a group name: lower-case letters, digits, `_`, `-`, and single
/// spaces between words; at most 100 bytes.
pub fn validate_name(name: &str) -> Result<(), GroupError> {
    let fail = |why: String| Err(GroupError::InvalidName(why));
    if name.trim().is_empty() {
        return fail("group name cannot be empty or consist only of whitespace".into());
    }
    if name.contains('\0') {
        return fail("group name cannot contain null bytes".into());
    }
    if name.to_lowercase() != name {
        return fail("group name must be lowercase".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b' '))
    {
        return fail(format!(
            "group name can only contain lowercase alphanumeric characters, underscores, dashes, and spaces: {name:?}"
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return fail(format!(
            "group name cannot have leading or trailing whitespace: {name:?}"
        ));
    }
    if name.contains("  ") {
        return fail(format!(
            "group name cannot contain consecutive spaces: {name:?}"
        ));
    }
    if name.len() > MAX_GROUP_NAME_LEN {
        return fail(format!(
            "group name too long (max {MAX_GROUP_NAME_LEN} characters)"
        ));
    }
    Ok(())
}

/// The group store. Creation and removal are serialized so that exactly one
/// of two concurrent creators wins.
#[derive(Debug)]
pub struct Groups {
    store: Store,
    lock: Mutex<()>,
}

impl Groups {
    /// Opens the group store and creates the `default` group if it is missing.
    pub fn open(store: Store) -> Result<Self, GroupError> {
        let groups = Self {
            store,
            lock: Mutex::new(()),
        };
        if !groups.exists(DEFAULT_GROUP)? {
            groups.create(DEFAULT_GROUP)?;
        }
        Ok(groups)
    }

    /// Whether group `name` exists (an invalid name is an error).
    pub fn exists(&self, name: &str) -> Result<bool, GroupError> {
        validate_name(name)?;
        Ok(self.read(name)?.is_some())
    }

    /// Reads group `name`. A file that cannot be parsed (truncated,
    /// hand-edited) never stops berth: the group still exists, with
    /// nothing registered, and the file is kept until the group is next
    /// written.
    fn read(&self, name: &str) -> Result<Option<Group>, GroupError> {
        match self.store.read::<Group>(Kind::Group, name) {
            Err(err @ StateError::Corrupt { .. }) => {
                tracing::error!(group = %name, error = %err, "A stored group cannot be read; it is served empty.");
                Ok(Some(Group::empty(name)))
            }
            other => Ok(other?),
        }
    }

    /// Creates group `name`.
    pub fn create(&self, name: &str) -> Result<Group, GroupError> {
        validate_name(name)?;
        let _guard = self.lock.lock().expect("group lock");
        if self.read(name)?.is_some() {
            return Err(GroupError::AlreadyExists(name.to_owned()));
        }
        let group = Group::empty(name);
        self.store.write(Kind::Group, name, &group)?;
        Ok(group)
    }

    /// Group `name`.
    pub fn get(&self, name: &str) -> Result<Group, GroupError> {
        validate_name(name)?;
        self.read(name)?
            .ok_or_else(|| GroupError::NotFound(name.to_owned()))
    }

    /// All groups, by name.
    pub fn list(&self) -> Result<Vec<Group>, GroupError> {
        let mut out = Vec::new();
        for name in self.store.list(Kind::Group)? {
            if let Some(group) = self.read(&name)? {
                out.push(group);
            }
        }
        Ok(out)
    }

    /// Adds `client` to group `name`'s registered clients (once). Returns
    /// whether it was added.
    pub fn register_client(&self, name: &str, client: &str) -> Result<bool, GroupError> {
        self.change_clients(name, |clients| {
            if clients.iter().any(|c| c == client) {
                false
            } else {
                clients.push(client.to_owned());
                clients.sort();
                true
            }
        })
    }

    /// Removes `client` from group `name`'s registered clients. Returns
    /// whether it was there.
    pub fn unregister_client(&self, name: &str, client: &str) -> Result<bool, GroupError> {
        self.change_clients(name, |clients| {
            let before = clients.len();
            clients.retain(|c| c != client);
            clients.len() != before
        })
    }

    fn change_clients(
        &self,
        name: &str,
        f: impl FnOnce(&mut Vec<String>) -> bool,
    ) -> Result<bool, GroupError> {
        validate_name(name)?;
        let _guard = self.lock.lock().expect("group lock");
        let mut group = self
            .read(name)?
            .ok_or_else(|| GroupError::NotFound(name.to_owned()))?;
        let changed = f(&mut group.registered_clients);
        if changed {
            self.store.write(Kind::Group, name, &group)?;
        }
        Ok(changed)
    }

    /// Removes group `name`'s record; its workloads must have been dealt
    /// with by the caller.
    pub fn remove(&self, name: &str) -> Result<(), GroupError> {
        validate_name(name)?;
        if name == DEFAULT_GROUP {
            return Err(GroupError::DeleteDefault);
        }
        let _guard = self.lock.lock().expect("group lock");
        if self.read(name)?.is_none() {
            return Err(GroupError::NotFound(name.to_owned()));
        }
        self.store.remove(Kind::Group, name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expect: Result<(), &str>) {
        let got = validate_name(name).map_err(|e| e.to_string());
        match expect {
            Ok(()) => assert!(got.is_ok(), "{name:?}: {got:?}"),
            Err(want) => {
                let got = got.expect_err(name);
                assert!(got.contains(want), "{name:?}: {got}");
            }
        }
    }

    #[test]
    fn names() {
        check("team-x", Ok(()));
        check("my group_2", Ok(()));
        check("", Err("cannot be empty"));
        check("  ", Err("cannot be empty"));
        check("Team", Err("must be lowercase"));
        check("a/b", Err("can only contain"));
        check("a\tb", Err("can only contain"));
        check(" a", Err("leading or trailing"));
        check("a  b", Err("consecutive spaces"));
        check(&"a".repeat(101), Err("too long"));
    }

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let groups = Groups::open(Store::open(dir.path()).expect("store")).expect("open");
        assert!(groups.exists(DEFAULT_GROUP).expect("exists"));
        groups.create("b").expect("create");
        assert!(matches!(
            groups.create("b"),
            Err(GroupError::AlreadyExists(_))
        ));
        let names: Vec<_> = groups
            .list()
            .expect("list")
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, ["b", "default"]);
        assert!(matches!(
            groups.remove(DEFAULT_GROUP),
            Err(GroupError::DeleteDefault)
        ));
        assert!(groups.register_client("b", "vscode").expect("register"));
        assert!(!groups.register_client("b", "vscode").expect("again"));
        assert!(groups.register_client("b", "cursor").expect("register"));
        assert_eq!(
            groups.get("b").expect("get").registered_clients,
            ["cursor", "vscode"]
        );
        assert!(groups.unregister_client("b", "vscode").expect("unregister"));
        assert!(!groups.unregister_client("b", "vscode").expect("again"));
        assert!(matches!(
            groups.register_client("nope", "vscode"),
            Err(GroupError::NotFound(_))
        ));
        groups.remove("b").expect("remove");
        assert!(matches!(groups.get("b"), Err(GroupError::NotFound(_))));
    }

    #[test]
    fn truncated_group_files_do_not_stop_berth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        Groups::open(store.clone())
            .expect("open")
            .create("t")
            .expect("create");
        for name in ["default", "t"] {
            std::fs::write(
                dir.path().join(format!("groups/{name}.json")),
                b"{\"name\": \"de",
            )
            .expect("truncate");
        }
        let groups = Groups::open(store).expect("opens with truncated files");
        assert!(groups.exists(DEFAULT_GROUP).expect("exists"));
        assert_eq!(groups.get("t").expect("get").name, "t");
        assert_eq!(groups.list().expect("list").len(), 2);
        assert!(matches!(
            groups.create("t"),
            Err(GroupError::AlreadyExists(_))
        ));
        groups
            .remove("t")
            .expect("a truncated group can be removed");
    }
}
