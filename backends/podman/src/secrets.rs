//! Secret environment variables ([`WorkloadSpec::secret_env`]) as Podman
//! secrets.
//!
//! Each non-empty secret value is stored as a Podman secret (driver
//! `file`) and mounted into the container (`type=mount`, at
//! `/run/secrets/<secret>`); berth's relay, the container's entrypoint
//! then, reads the file into the server's environment before it starts the
//! server (see `relay/main.rs`, `--env NAME=FILE`). The container's
//! configuration names the secret and the file, never the value, so
//! `podman inspect` shows none.
//!
//! Not `type=env` (libpod's `secret_env`): Podman writes the value of such
//! a secret into the container's `Config.Env` when it starts, where
//! `podman inspect` shows it (seen on Debian's Podman 4.3.1; reported as
//! containers/podman#23788 and masked by later Podman releases). A mounted secret is copied into the
//! container when it is created, so a later change of the stored secret
//! reaches a container only when berth creates it anew (every deploy
//! does). An empty value is not stored (Podman refuses empty secrets): it
//! is a plain variable with an empty value.
//!
//! **Names.** Podman 4 takes secret names of at most 64 characters of
//! `[A-Za-z0-9_.-]` that begin and end with a letter or digit, too short
//! for a workload name (up to 100 characters) and a variable. The secret
//! of variable `T` of workload `w` is `berth-env-<h>-<T>`, where `<h>` is
//! 12 hex digits of the SHA-256 of berth's instance and the workload name:
//! every secret of a workload shares the prefix `berth-env-<h>-`, which no
//! other workload's (nor another berth instance's) has, so the set left by
//! a crashed berth is found by it. A variable name that is not
//! `[A-Za-z0-9_]{1,41}` ending in a letter or digit is shortened to its
//! first 24 characters (others replaced by `_`) and followed by `.` and 16
//! hex digits of its SHA-256, so distinct variables never share a secret.
//! The secrets are labelled `berth.managed=true`, `berth.workload=<w>`
//! (and `berth.instance`) and `berth.secret-env=<T>`: `podman secret
//! inspect` tells whose they are.
//!
//! **Lifetime.** A deploy deletes every secret of the workload's prefix,
//! then creates those of its spec, and deletes them again when the deploy
//! fails; `remove` deletes them with the container, also when the
//! container is already gone.

use std::collections::BTreeMap;

use berth_container::labels::own_labels;
use berth_runtime_api::{RuntimeError, WorkloadName, WorkloadSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::PodmanBackend;
use crate::engine::query_value;
use crate::error::ApiFailure;

/// The prefix of every secret name berth creates.
pub(crate) const SECRET_PREFIX: &str = "berth-env-";
/// Label of a secret: the environment variable it holds.
pub(crate) const LABEL_SECRET_ENV: &str = "berth.secret-env";
/// Where Podman mounts secret `s` in a container: `<MOUNT_DIR>/s`.
const MOUNT_DIR: &str = "/run/secrets";
/// The mounted file's mode: readable by the server whatever user the image
/// runs it as (the container holds no other program).
const MOUNT_MODE: u32 = 0o444;

/// A secret variable of a container: the variable, and the Podman secret
/// holding its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvSecret {
    /// The environment variable.
    pub(crate) target: String,
    /// The Podman secret's name.
    pub(crate) secret: String,
}

impl EnvSecret {
    /// Where the secret's file is in the container.
    pub(crate) fn path(&self) -> String {
        format!("{MOUNT_DIR}/{}", self.secret)
    }

    /// The entry of the create body's `secrets` that mounts it.
    pub(crate) fn mount(&self) -> SecretMount {
        SecretMount {
            source: self.secret.clone(),
            target: self.secret.clone(),
            mode: MOUNT_MODE,
        }
    }
}

/// An entry of libpod's `secrets` (a `specgen.Secret`, which Go spells in
/// its own case): a secret mounted as a file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SecretMount {
    #[serde(rename = "Source")]
    source: String,
    /// Relative: the file is `/run/secrets/<target>`.
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "Mode")]
    mode: u32,
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest secret name Podman 4 takes.
const MAX_NAME_LEN: usize = 64;

/// The prefix of the secret names of workload `name` of berth instance
/// `instance`: `berth-env-<h>-`.
pub(crate) fn secret_prefix(name: &WorkloadName, instance: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(instance.unwrap_or_default().as_bytes());
    hash.update([0]);
    hash.update(name.as_str().as_bytes());
    format!("{SECRET_PREFIX}{}-", hex(&hash.finalize()[..6]))
}

/// The secret name of variable `target` of workload `name` (see the module
/// docs): at most 64 characters of `[A-Za-z0-9_.-]`, beginning and ending
/// with a letter or a digit, as Podman wants.
pub(crate) fn secret_name(name: &WorkloadName, instance: Option<&str>, target: &str) -> String {
    let prefix = secret_prefix(name, instance);
    let room = MAX_NAME_LEN - prefix.len();
    let plain = !target.is_empty()
        && target.len() <= room
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && target
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let part = if plain {
        target.to_owned()
    } else {
        let short: String = target
            .chars()
            .take(room - 17)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{short}.{}", hex(&Sha256::digest(target.as_bytes())[..8]))
    };
    format!("{prefix}{part}")
}

/// Whether `spec` has a secret value to store (a non-empty one), so that
/// its container needs the relay.
pub(crate) fn has_stored_secrets(spec: &WorkloadSpec) -> bool {
    spec.secret_env.values().any(|v| !v.expose().is_empty())
}

/// What berth reads of `GET /libpod/secrets/json`.
#[derive(Debug, Deserialize)]
struct ListedSecret {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Spec")]
    spec: ListedSpec,
}

#[derive(Debug, Deserialize)]
struct ListedSpec {
    #[serde(rename = "Name")]
    name: String,
}

impl PodmanBackend {
    /// Stores the non-empty secret values of `spec` as Podman secrets, in
    /// place of every secret the workload had, and returns them. When one
    /// cannot be stored, those stored are deleted again.
    pub(crate) async fn store_secrets(
        &self,
        spec: &WorkloadSpec,
    ) -> Result<Vec<EnvSecret>, RuntimeError> {
        let name = &spec.name;
        let instance = self.config.instance.as_deref();
        self.remove_secrets(name).await?;
        let mut stored = Vec::new();
        for (target, value) in &spec.secret_env {
            if value.expose().is_empty() {
                continue;
            }
            let secret = EnvSecret {
                target: target.clone(),
                secret: secret_name(name, instance, target),
            };
            let mut labels: BTreeMap<String, String> =
                own_labels(name, instance).into_iter().collect();
            labels.insert(LABEL_SECRET_ENV.to_owned(), target.clone());
            let labels = serde_json::to_string(&labels).expect("a map of strings serializes");
            let path = format!(
                "/libpod/secrets/create?name={}&driver=file&labels={}",
                query_value(&secret.secret),
                query_value(&labels)
            );
            let created = self
                .libpod
                .post_bytes::<serde_json::Value>(&path, value.expose().as_bytes().to_vec())
                .await;
            if let Err(err) = created {
                let err = self.fail(
                    name,
                    &format!("storing secret variable `{target}` as a Podman secret for"),
                    err,
                );
                self.discard_secrets(name).await;
                return Err(err);
            }
            stored.push(secret);
        }
        if !stored.is_empty() {
            info!(workload = %name, count = stored.len(), "Secrets stored in Podman.");
        }
        Ok(stored)
    }

    /// Deletes every Podman secret of workload `name` (by its prefix).
    pub(crate) async fn remove_secrets(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let prefix = secret_prefix(name, self.config.instance.as_deref());
        let listed = self
            .libpod
            .get::<Vec<ListedSecret>>("/libpod/secrets/json")
            .await
            .map_err(|err| self.fail(name, "listing the Podman secrets of", err))?;
        let mut removed = 0;
        for s in listed.iter().filter(|s| s.spec.name.starts_with(&prefix)) {
            match self
                .libpod
                .delete(&format!("/libpod/secrets/{}", query_value(&s.id)))
                .await
            {
                Ok(()) => removed += 1,
                // Removed meanwhile.
                Err(err) if err.status() == Some(404) => {}
                Err(err) => return Err(self.fail(name, "removing a Podman secret of", err)),
            }
        }
        if removed > 0 {
            info!(workload = %name, count = removed, "Secrets removed from Podman.");
        }
        Ok(())
    }

    /// [`remove_secrets`](Self::remove_secrets) after a failed deploy: a
    /// failure is logged, the deploy's own error is what counts.
    pub(crate) async fn discard_secrets(&self, name: &WorkloadName) {
        if let Err(err) = self.remove_secrets(name).await {
            warn!(workload = %name, error = %err, "Could not remove the secrets of a failed deploy.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> WorkloadName {
        WorkloadName::parse(s).expect("name")
    }

    /// Podman 4's rule for secret names: "only 64 [a-zA-Z0-9-_.]
    /// characters allowed, and the start and end character must be
    /// [a-zA-Z0-9]".
    fn valid_podman_name(s: &str) -> bool {
        let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
        s.len() <= 64
            && alnum(s.as_bytes().first())
            && alnum(s.as_bytes().last())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }

    #[test]
    fn names_are_valid_and_per_workload() {
        let token = secret_name(&name("fetch"), None, "GITHUB_TOKEN");
        let prefix = secret_prefix(&name("fetch"), None);
        assert!(token.starts_with(&prefix), "{token}");
        assert!(
            token.starts_with("berth-env-") && token.ends_with("-GITHUB_TOKEN"),
            "{token}"
        );
        assert_eq!(prefix.len(), "berth-env-".len() + 12 + 1);
        assert_eq!(token, secret_name(&name("fetch"), None, "GITHUB_TOKEN"));
        assert!(valid_podman_name(&token), "{token}");

        // Another instance, or another workload, has a prefix of its own.
        for other in [
            secret_prefix(&name("fetch"), Some("i2")),
            secret_prefix(&name("fetch-GITHUB"), None),
            secret_prefix(&name("fetc"), None),
        ] {
            assert!(!token.starts_with(&other), "{token} under {other}");
        }
    }

    #[test]
    fn every_variable_name_makes_a_distinct_valid_name() {
        let w = name(&"w".repeat(100));
        let targets = [
            "A".to_owned(),
            "A-B".to_owned(),
            "A.B".to_owned(),
            "A_B".to_owned(),
            "A_".to_owned(),
            "_A".to_owned(),
            "_".to_owned(),
            "é".to_owned(),
            "x".repeat(41),
            "x".repeat(42),
            "x".repeat(400),
            "a b/c:d".to_owned(),
        ];
        let names: Vec<String> = targets
            .iter()
            .map(|t| secret_name(&w, Some("instance"), t))
            .collect();
        for (t, n) in targets.iter().zip(&names) {
            assert!(valid_podman_name(n), "{t:?} -> {n}");
        }
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(names[3].ends_with("-A_B"), "a plain name is kept");
        assert!(names[8].ends_with(&"x".repeat(41)), "up to 41 characters");
    }

    #[test]
    fn the_mount_names_no_value() {
        let s = EnvSecret {
            target: "TOKEN".into(),
            secret: "berth-env-0123456789ab-w-TOKEN".into(),
        };
        assert_eq!(s.path(), "/run/secrets/berth-env-0123456789ab-w-TOKEN");
        assert_eq!(
            serde_json::to_value(s.mount()).unwrap(),
            serde_json::json!({"Source": "berth-env-0123456789ab-w-TOKEN",
                "Target": "berth-env-0123456789ab-w-TOKEN", "Mode": 0o444})
        );
    }
}
