//! Run by name: a create request filled from a registry entry.
//!
//! Fields the user gave win; the entry fills the rest (image or package,
//! transport, target port, default arguments, environment defaults, the
//! permission profile, the remote URL). The runtime is the one asked for,
//! else the default one if it can run the entry, else the first one this
//! berth has that can; an entry none of them can run is refused, naming
//! the runtimes that could.

use serde::{Deserialize, Serialize};

use super::RegistryError;
use super::model::{Kind, Server};
use crate::workloads::types::{CreateRequest, PermissionProfile};

/// The process runtime's name.
const PROCESS: &str = "process";

/// Where a workload's configuration came from (kept in its run config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRef {
    /// The registry's name.
    pub registry: String,
    /// The entry's full name.
    pub server: String,
    /// The entry's version when it was created or last upgraded.
    pub version: String,
}

/// Whether a runtime of kind `runtime` can run `server`.
pub fn can_run(server: &Server, runtime: &str) -> bool {
    match server.kind {
        Kind::Remote => true,
        Kind::Local if runtime == PROCESS => server.native.is_some(),
        Kind::Local => server.oci.is_some() || server.native.is_some(),
    }
}

/// What `runtime` runs for `server`: the OCI image on a container engine
/// when there is one, else the package (`npx://`, `uvx://`).
pub fn image_for(server: &Server, runtime: &str) -> Option<String> {
    if runtime == PROCESS {
        return server.package_ref();
    }
    server
        .oci_package()
        .map(|p| p.identifier.clone())
        .or_else(|| server.package_ref())
}

/// Gives `req` the defaults of the entry's environment variables it does
/// not set (as a plain variable or as a secret's target); returns the
/// required ones still missing.
pub fn fill_env(server: &Server, req: &mut CreateRequest) -> Vec<super::model::EnvVar> {
    let mut missing = Vec::new();
    for var in server.env_vars() {
        if req.env_vars.contains_key(&var.name) || req.secrets.iter().any(|s| s.target == var.name)
        {
            continue;
        }
        if !var.default.is_empty() {
            req.env_vars.insert(var.name, var.default);
        } else if var.required {
            missing.push(var);
        }
    }
    missing
}

/// Fills `req` from `server` of registry `registry`. `available` are the
/// runtimes this berth has, the default first.
pub fn apply(
    server: &Server,
    registry: &str,
    available: &[&str],
    req: &mut CreateRequest,
) -> Result<(), RegistryError> {
    let name = server.name();
    if req.name.is_empty() {
        req.name = server.short_name().to_owned();
    }
    match server.kind {
        Kind::Remote => {
            if req.url.is_empty() && req.image.is_empty() {
                req.url = server.json.remotes[0].url.clone();
            }
            if req.transport.is_empty() {
                req.transport = server.transport().to_owned();
            }
        }
        Kind::Local if req.url.is_empty() => {
            if req.image.is_empty() {
                let runtime = choose_runtime(server, &req.runtime, available)?;
                req.image = image_for(server, &runtime).ok_or_else(|| {
                    RegistryError::Invalid(format!("server `{name}` has nothing {runtime} can run"))
                })?;
                if req.runtime.is_empty() && available.first() != Some(&runtime.as_str()) {
                    req.runtime = runtime;
                }
            }
            if req.transport.is_empty() {
                req.transport = server.transport().to_owned();
            }
            if req.target_port == 0
                && req.transport != "stdio"
                && let Some(port) = server.target_port()
            {
                req.target_port = port;
            }
            if req.cmd_arguments.is_empty() {
                req.cmd_arguments = server.args();
            }
            if req.permission_profile.is_none()
                && let Some(p) = &server.ext.permissions
            {
                match serde_json::from_value::<PermissionProfile>(p.clone()) {
                    Ok(p) => req.permission_profile = Some(p),
                    Err(e) => {
                        tracing::warn!(server = name, error = %e, "The registry entry's permission profile is not valid; the default one is used.");
                    }
                }
            }
        }
        Kind::Local => {}
    }
    let missing: Vec<String> = if server.kind == Kind::Local {
        fill_env(server, req)
            .into_iter()
            .map(|var| {
                if var.description.is_empty() {
                    var.name
                } else {
                    format!("{} ({})", var.name, var.description)
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    if !missing.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "server `{name}` needs environment variable{} {}: give {} in env_vars (or as the target of a secret)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "them" } else { "it" },
        )));
    }
    req.registry = registry.to_owned();
    req.server = name.to_owned();
    req.from_registry = Some(RegistryRef {
        registry: registry.to_owned(),
        server: name.to_owned(),
        version: server.version().to_owned(),
    });
    Ok(())
}

fn choose_runtime(
    server: &Server,
    requested: &str,
    available: &[&str],
) -> Result<String, RegistryError> {
    let name = server.name();
    let could = server.runs_on().join(", ");
    if !requested.is_empty() {
        if can_run(server, requested) {
            return Ok(requested.to_owned());
        }
        return Err(RegistryError::Invalid(format!(
            "server `{name}` cannot run on runtime `{}`: it runs on {could}",
            crate::logging::escape_controls(requested)
        )));
    }
    available
        .iter()
        .find(|r| can_run(server, r))
        .map(|r| (*r).to_owned())
        .ok_or_else(|| {
            RegistryError::Invalid(format!(
                "server `{name}` runs on {could}, and this berth has {}",
                available.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::ServerJson;
    use serde_json::json;

    fn server(v: serde_json::Value) -> Server {
        Server::new(serde_json::from_value::<ServerJson>(v).expect("json")).expect("valid")
    }

    fn github() -> Server {
        server(
            json!({"name": "io.github.github/github", "description": "d", "version": "0.20.0",
            "packages": [{"registryType": "oci", "identifier": "ghcr.io/github/github-mcp-server:v0.20.0",
                "transport": {"type": "stdio"},
                "environmentVariables": [{"name": "GITHUB_PERSONAL_ACCESS_TOKEN", "description": "a token", "isRequired": true, "isSecret": true},
                    {"name": "GITHUB_TOOLSETS", "default": "all"}]}]}),
        )
    }

    fn time() -> Server {
        server(
            json!({"name": "io.github.modelcontextprotocol/time", "description": "d", "version": "2025.9.25",
            "packages": [{"registryType": "pypi", "identifier": "mcp-server-time", "version": "2025.9.25",
                "transport": {"type": "stdio"}, "packageArguments": [{"type": "named", "name": "--local-timezone", "value": "UTC"}]}]}),
        )
    }

    #[test]
    fn a_package_entry_runs_natively_or_as_a_package_image() {
        let mut req = CreateRequest::default();
        apply(&time(), "default", &["process", "docker"], &mut req).expect("applies");
        assert_eq!(req.name, "time");
        assert_eq!(req.image, "uvx://mcp-server-time@2025.9.25");
        assert_eq!(req.runtime, "");
        assert_eq!(req.transport, "stdio");
        assert_eq!(req.cmd_arguments, ["--local-timezone", "UTC"]);
        assert_eq!(req.server, "io.github.modelcontextprotocol/time");
        assert_eq!(
            req.from_registry.as_ref().map(|r| r.version.as_str()),
            Some("2025.9.25")
        );
        let mut req = CreateRequest {
            runtime: "docker".into(),
            ..CreateRequest::default()
        };
        apply(&time(), "default", &["process", "docker"], &mut req).expect("applies");
        assert_eq!(req.image, "uvx://mcp-server-time@2025.9.25");
    }

    #[test]
    fn an_image_entry_needs_a_container_engine() {
        let mut req = CreateRequest {
            env_vars: [("GITHUB_PERSONAL_ACCESS_TOKEN".to_owned(), "t".to_owned())].into(),
            ..CreateRequest::default()
        };
        apply(&github(), "default", &["process", "podman"], &mut req).expect("applies");
        assert_eq!(req.runtime, "podman", "the first runtime that can");
        assert_eq!(req.image, "ghcr.io/github/github-mcp-server:v0.20.0");
        assert_eq!(req.env_vars["GITHUB_TOOLSETS"], "all", "defaults filled");

        let mut req = CreateRequest {
            runtime: "process".into(),
            ..CreateRequest::default()
        };
        let e = apply(&github(), "default", &["process", "docker"], &mut req).unwrap_err();
        assert!(e.to_string().contains("runs on docker, podman"), "{e}");
        let mut req = CreateRequest::default();
        let e = apply(&github(), "default", &["process"], &mut req).unwrap_err();
        assert!(e.to_string().contains("this berth has process"), "{e}");
    }

    #[test]
    fn a_missing_required_variable_is_named_and_user_fields_win() {
        let mut req = CreateRequest {
            runtime: "docker".into(),
            ..CreateRequest::default()
        };
        let e = apply(&github(), "default", &["docker"], &mut req).unwrap_err();
        assert!(
            e.to_string()
                .contains("GITHUB_PERSONAL_ACCESS_TOKEN (a token)"),
            "{e}"
        );
        let mut req = CreateRequest {
            name: "mine".into(),
            image: "ghcr.io/me/fork:1".into(),
            cmd_arguments: vec!["--x".into()],
            env_vars: [
                ("GITHUB_PERSONAL_ACCESS_TOKEN".to_owned(), "t".to_owned()),
                ("GITHUB_TOOLSETS".to_owned(), "repos".to_owned()),
            ]
            .into(),
            ..CreateRequest::default()
        };
        apply(&github(), "default", &["docker"], &mut req).expect("applies");
        assert_eq!(req.name, "mine");
        assert_eq!(req.image, "ghcr.io/me/fork:1");
        assert_eq!(req.cmd_arguments, ["--x"]);
        assert_eq!(req.env_vars["GITHUB_TOOLSETS"], "repos");
    }
}
