//! The upgrade check: a workload's configuration against its registry
//! entry today, in ToolHive's `CheckResult` shape (the comparison itself
//! is in `compare.rs`).

use std::sync::Arc;

use berth_runtime_api::WorkloadName;
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;

use super::compare::{Verdict, compare, compare_versions};
use crate::registry::model::{Kind as EntryKind, Server};
use crate::registry::run::image_for;
use crate::registry::{Registries, RegistryError};
use crate::workloads::model::Workload;
use crate::workloads::types::redact_url;
use crate::workloads::{WorkloadError, Workloads};

/// The outcome of an upgrade check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::UpgradeStatus)]
pub enum UpgradeStatus {
    /// The workload runs the entry's version (or a newer one).
    UpToDate,
    /// The entry is newer.
    UpgradeAvailable,
    /// The workload was not created from a registry entry.
    NotRegistrySourced,
    /// Its registry or its entry is gone.
    ServerNotFound,
    /// Cannot tell; `reason` says why.
    Unknown,
}

/// An environment variable the candidate declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::EnvVarInfo)]
pub struct EnvVarInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether the candidate needs it.
    pub required: bool,
    /// Whether it holds a secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Its default; never shown for a secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
}

/// Environment variables that differ between the workload and the
/// candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::EnvVarDrift)]
pub struct EnvVarDrift {
    /// Declared by the candidate, not supplied by the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<EnvVarInfo>,
    /// Supplied by the workload and declared by its entry's recorded
    /// version, no longer by the candidate. berth keeps no copy of the
    /// recorded version's entry, so this stays empty (as ToolHive's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<EnvVarInfo>,
}

/// A value that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::StringChange)]
pub struct StringChange {
    /// The workload's.
    pub from: String,
    /// The candidate's.
    pub to: String,
}

/// Posture differences between the workload and the candidate (kept by
/// an upgrade: it changes neither).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::ConfigDrift)]
pub struct ConfigDrift {
    /// The transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<StringChange>,
    /// The permission profile's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<StringChange>,
}

/// An upgrade check of one workload: metadata only, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_workloads_upgrade::CheckResult)]
pub struct CheckResult {
    /// The workload.
    pub workload_name: String,
    /// The registry entry it was created from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_server: String,
    /// The outcome.
    pub status: UpgradeStatus,
    /// What the workload runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_image: String,
    /// What the entry runs today on the workload's runtime.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub candidate_image: String,
    /// Why, mainly for `unknown`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Environment differences (with `upgrade-available`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var_drift: Option<EnvVarDrift>,
    /// Transport and permission profile differences (with
    /// `upgrade-available`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_drift: Option<ConfigDrift>,
    /// berth extension: the registry the entry is in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// berth extension: the entry's version the workload was created
    /// from (or last upgraded to).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_version: String,
    /// berth extension: the entry's version today.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub candidate_version: String,
    /// berth extension: the remote URL the workload proxies (credentials
    /// redacted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_url: String,
    /// berth extension: the remote URL of the entry today (credentials
    /// redacted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub candidate_url: String,
}

impl CheckResult {
    pub(super) fn new(name: &WorkloadName, status: UpgradeStatus) -> Self {
        Self {
            workload_name: name.to_string(),
            registry_server: String::new(),
            status,
            current_image: String::new(),
            candidate_image: String::new(),
            reason: String::new(),
            env_var_drift: None,
            config_drift: None,
            registry: String::new(),
            current_version: String::new(),
            candidate_version: String::new(),
            current_url: String::new(),
            candidate_url: String::new(),
        }
    }
}

/// Checks workload configuration `w` against its registry entry; the
/// entry too when the check reached it.
pub(super) async fn check(
    w: &Workload,
    registries: &Registries,
) -> (CheckResult, Option<Arc<Server>>) {
    let Some(from) = &w.registry else {
        return (
            CheckResult::new(&w.name, UpgradeStatus::NotRegistrySourced),
            None,
        );
    };
    let mut r = CheckResult::new(&w.name, UpgradeStatus::Unknown);
    r.registry_server.clone_from(&from.server);
    r.registry.clone_from(&from.registry);
    r.current_version.clone_from(&from.version);
    if w.is_remote() {
        r.current_url = redact_url(w.remote_url());
    } else {
        r.current_image.clone_from(&w.image);
    }
    let server = match registries.server(&from.registry, &from.server).await {
        Ok((_, server)) => server,
        Err(RegistryError::UnknownRegistry(_)) => {
            r.status = UpgradeStatus::ServerNotFound;
            r.reason = format!("registry `{}` no longer exists", from.registry);
            return (r, None);
        }
        Err(RegistryError::NotFound(_)) => {
            r.status = UpgradeStatus::ServerNotFound;
            r.reason = format!(
                "registry `{}` has no entry `{}` any more",
                from.registry, from.server
            );
            return (r, None);
        }
        Err(err) => {
            warn!(workload = %w.name, registry = %from.registry, error = %err, "Upgrade check: registry lookup failed.");
            r.reason = format!("registry lookup failed: {err}");
            return (r, None);
        }
    };
    r.candidate_version = server.version().to_owned();
    let verdict = match (server.kind, w.is_remote()) {
        (EntryKind::Remote, true) => {
            let url = &server.json.remotes[0].url;
            r.candidate_url = redact_url(url);
            remote_verdict(url == w.remote_url(), &from.version, server.version())
        }
        (EntryKind::Remote, false) => Verdict::Unknown(
            "the entry is a remote server now, and the workload runs one locally: create a new workload from it".into(),
        ),
        (EntryKind::Local, true) => Verdict::Unknown(
            "the entry runs locally now, and the workload proxies a remote server: create a new workload from it".into(),
        ),
        (EntryKind::Local, false) => match image_for(&server, &w.runtime) {
            Some(image) => {
                let v = compare(&w.image, &from.version, &image, server.version());
                r.candidate_image = image;
                v
            }
            None => Verdict::Unknown(format!(
                "the entry has nothing the `{}` runtime can run",
                w.runtime
            )),
        },
    };
    match verdict {
        Verdict::Newer { note } => {
            r.status = UpgradeStatus::UpgradeAvailable;
            r.reason = note.unwrap_or_default();
            let (env, config) = drift(w, &server);
            r.env_var_drift = env;
            r.config_drift = config;
        }
        Verdict::Same => r.status = UpgradeStatus::UpToDate,
        Verdict::Unknown(why) => r.reason = why,
    }
    (r, Some(server))
}

/// A remote workload: the same URL is up to date; another one is an
/// upgrade when the entry's version is newer.
pub(super) fn remote_verdict(same_url: bool, recorded: &str, entry: &str) -> Verdict {
    if same_url {
        return Verdict::Same;
    }
    match compare_versions(recorded, entry) {
        Some(std::cmp::Ordering::Less) => Verdict::Newer {
            note: Some(format!("the entry's URL changed with version {entry}")),
        },
        Some(_) => Verdict::Same,
        None => Verdict::Unknown(format!(
            "the workload's URL differs from the entry's, and versions {recorded:?} and {entry:?} are not comparable"
        )),
    }
}

/// What the candidate declares that the workload does not supply, and
/// how their transport and permission profile differ.
pub(super) fn drift(w: &Workload, server: &Server) -> (Option<EnvVarDrift>, Option<ConfigDrift>) {
    let env = if w.is_remote() {
        None
    } else {
        let added: Vec<EnvVarInfo> = server
            .env_vars()
            .into_iter()
            .filter(|v| !w.env.contains_key(&v.name))
            .map(|v| EnvVarInfo {
                default: if v.secret { String::new() } else { v.default },
                name: v.name,
                description: v.description,
                required: v.required,
                secret: v.secret,
            })
            .collect();
        (!added.is_empty()).then(|| EnvVarDrift {
            added,
            removed: Vec::new(),
        })
    };
    let change = |from: &str, to: &str| {
        (!from.is_empty() && !to.is_empty() && from != to).then(|| StringChange {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    };
    let transport = change(w.transport.as_str(), server.transport());
    let permission_profile = if w.is_remote() {
        None
    } else {
        // Without a profile of its own an entry runs with the built-in
        // `network` one, as a create from it would.
        let theirs = match &server.ext.permissions {
            None => "network",
            Some(p) => p.get("name").and_then(|n| n.as_str()).unwrap_or(""),
        };
        let ours = w
            .permission_profile
            .as_ref()
            .map_or("network", |p| p.name.as_str());
        change(ours, theirs)
    };
    let config = (transport.is_some() || permission_profile.is_some()).then_some(ConfigDrift {
        transport,
        permission_profile,
    });
    (env, config)
}

impl Workloads {
    /// Checks workload `name` against its registry entry (offline).
    pub async fn upgrade_check(
        &self,
        name: &str,
        registries: &Registries,
    ) -> Result<CheckResult, WorkloadError> {
        let config = self.config(name)?;
        Ok(check(&config, registries).await.0)
    }

    /// Checks the workloads `list(all, group)` shows, by name; one deleted
    /// meanwhile is left out.
    pub async fn upgrade_checks(
        &self,
        all: bool,
        group: Option<&str>,
        registries: &Registries,
    ) -> Result<Vec<CheckResult>, WorkloadError> {
        let names: Vec<String> = self.list(all, group)?.into_iter().map(|v| v.name).collect();
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            match self.config(&name) {
                Ok(config) => results.push(check(&config, registries).await.0),
                Err(WorkloadError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(results)
    }
}
