//! The `environment` provider: read-only secrets from berth's own
//! environment, `BERTH_SECRET_<name>` (or ToolHive's
//! `TOOLHIVE_SECRET_<name>`, so a ToolHive setup keeps working). It never
//! lists: enumerating berth's environment would show every variable that
//! happens to match.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Capabilities, SecretsError, SecretsProvider};

/// berth's prefix.
pub const PREFIX: &str = "BERTH_SECRET_";
/// ToolHive's prefix, read when berth's is absent.
pub const TOOLHIVE_PREFIX: &str = "TOOLHIVE_SECRET_";

/// Whether an environment variable holds a secret for this provider (and
/// so is never inherited by a workload).
pub fn is_secret_variable(name: &str) -> bool {
    name.starts_with(PREFIX) || name.starts_with(TOOLHIVE_PREFIX)
}

/// Secrets from environment variables, as `src/main.rs` hands them down
/// (only `main` reads the environment).
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").finish_non_exhaustive()
    }
}

impl Environment {
    /// The provider over berth's environment: the variables whose names
    /// start with [`PREFIX`] or [`TOOLHIVE_PREFIX`] are kept, the others
    /// dropped.
    pub fn new(environment: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: environment
                .into_iter()
                .filter(|(k, _)| is_secret_variable(k))
                .collect(),
        }
    }

    fn var(&self, key: &str) -> Option<String> {
        self.vars.get(key).cloned()
    }
}

/// Whether `name` can be part of an environment variable name.
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[async_trait]
impl SecretsProvider for Environment {
    async fn capabilities(&self) -> Result<Capabilities, SecretsError> {
        Ok(Capabilities {
            read: true,
            ..Capabilities::default()
        })
    }

    async fn get(&self, name: &str) -> Result<String, SecretsError> {
        if !valid(name) {
            return Err(SecretsError::Invalid(format!(
                "`{}`: the environment provider reads names of letters, digits and `_`",
                crate::logging::escape_controls(name)
            )));
        }
        [PREFIX, TOOLHIVE_PREFIX]
            .iter()
            .find_map(|p| self.var(&format!("{p}{name}")).filter(|v| !v.is_empty()))
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }

    async fn set(&self, _name: &str, _value: &str) -> Result<(), SecretsError> {
        Err(SecretsError::Unsupported(
            "writing (the environment provider is read-only)",
        ))
    }

    async fn delete(&self, _name: &str) -> Result<(), SecretsError> {
        Err(SecretsError::Unsupported(
            "deleting (the environment provider is read-only)",
        ))
    }

    async fn list(&self) -> Result<Vec<String>, SecretsError> {
        Err(SecretsError::Unsupported(
            "listing (the environment provider never enumerates berth's environment)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::new(BTreeMap::from([
            ("BERTH_SECRET_GITHUB".to_owned(), "from-berth".to_owned()),
            (
                "TOOLHIVE_SECRET_GITHUB".to_owned(),
                "from-toolhive".to_owned(),
            ),
            ("TOOLHIVE_SECRET_SLACK".to_owned(), "t-slack".to_owned()),
            ("BERTH_SECRET_EMPTY".to_owned(), String::new()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]))
    }

    #[tokio::test]
    async fn reads_berth_then_toolhive_names_and_nothing_else() {
        let e = env();
        assert_eq!(e.get("GITHUB").await.expect("github"), "from-berth");
        assert_eq!(e.get("SLACK").await.expect("slack"), "t-slack");
        assert_eq!(
            e.get("EMPTY").await.unwrap_err(),
            SecretsError::NotFound("EMPTY".into())
        );
        assert!(matches!(
            e.get("HOME").await,
            Err(SecretsError::NotFound(_))
        ));
        for bad in ["", "A/B", "A=B", "A\nB", "../X"] {
            assert!(
                matches!(e.get(bad).await, Err(SecretsError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn is_read_only_and_never_lists() {
        let e = env();
        let caps = e.capabilities().await.expect("caps");
        assert!(caps.read && !caps.write && !caps.delete && !caps.list);
        assert!(matches!(
            e.set("X", "v").await,
            Err(SecretsError::Unsupported(_))
        ));
        assert!(matches!(
            e.delete("GITHUB").await,
            Err(SecretsError::Unsupported(_))
        ));
        assert!(matches!(e.list().await, Err(SecretsError::Unsupported(_))));
        assert!(!format!("{e:?}").contains("from-berth"));
    }
}
