//! Permission profiles and volumes (ToolHive's shapes) turned into what
//! berth enforces: mounts and network access. The one place that maps the
//! API's profile onto the runtime spec.
//!
//! Rules, in ToolHive's terms:
//! - No profile is the built-in `network` profile. A profile named `none`
//!   or `stdio` without a `network` section has no network; any other
//!   profile without one has unrestricted outbound access (as ToolHive's).
//! - `network.mode`: empty, `bridge` or `default` follow `outbound`; `none`
//!   is no network. `host` and custom networks are refused: berth never
//!   shares the host's network namespace.
//! - `outbound.insecure_allow_all` is unrestricted. Otherwise `allow_host`
//!   and `allow_port` form an allowlist enforced by berth's egress proxy:
//!   hosts only = those hosts on any port, ports only = any host on those
//!   ports, both = both must match, neither (or no `outbound`) = no network.
//! - `read` and `write` entries are `host[:container]` (the same path inside
//!   when there is no container part); `volumes` are `host:container[:ro]`.
//!   A write entry for a target that is also read makes it read-write;
//!   a second entry for a target with another source is refused.
//! - `privileged: true` is refused: berth never runs a workload privileged.
//!
//! berth enforces the profile whatever `network_isolation` says; ToolHive
//! applies network rules only with isolation on.

use std::path::{Component, Path, PathBuf};

use berth_runtime_api::{Mount, NetworkAccess};

use super::types::PermissionProfile;
use crate::egress::EgressPolicy;

/// What a workload may touch, as berth enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Host paths bound into the workload.
    pub mounts: Vec<Mount>,
    /// Its network.
    pub network: Network,
}

/// A workload's network, as berth enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Unrestricted outbound access.
    Full,
    /// No network at all.
    None,
    /// Only what the egress proxy lets through.
    Allowlist(EgressPolicy),
}

impl Network {
    /// What the backend provides for this network.
    pub fn access(&self) -> NetworkAccess {
        match self {
            Self::Full => NetworkAccess::Full,
            Self::None => NetworkAccess::None,
            Self::Allowlist(_) => NetworkAccess::Isolated,
        }
    }
}

/// Resolves a profile (none = the built-in `network` profile) and the
/// request's volumes. Pure: whether the sources exist is
/// [`check_sources`]'s business.
pub fn resolve(profile: Option<&PermissionProfile>, volumes: &[String]) -> Result<Access, String> {
    let builtin;
    let profile = match profile {
        Some(p) => p,
        None => {
            builtin = PermissionProfile::network();
            &builtin
        }
    };
    if profile.privileged {
        return Err(
            "permission_profile.privileged: berth never runs a workload privileged (it drops every capability and sets no-new-privileges)"
                .to_owned(),
        );
    }
    let mut mounts: Vec<Mount> = Vec::new();
    for (entries, read_only, field) in [
        (&profile.read, true, "permission_profile.read"),
        (&profile.write, false, "permission_profile.write"),
    ] {
        for entry in entries {
            let mount = parse_entry(entry, read_only).map_err(|why| format!("{field}: {why}"))?;
            add_mount(&mut mounts, mount).map_err(|why| format!("{field}: {why}"))?;
        }
    }
    for entry in volumes {
        let mount = parse_volume(entry).map_err(|why| format!("volumes: {why}"))?;
        add_mount(&mut mounts, mount).map_err(|why| format!("volumes: {why}"))?;
    }
    Ok(Access {
        mounts,
        network: network_of(profile)?,
    })
}

/// Checks that every mount source exists on this host now.
pub fn check_sources(access: &Access) -> Result<(), String> {
    for m in &access.mounts {
        if !m.source.exists() {
            return Err(format!(
                "mount source `{}` does not exist on the host",
                m.source.display()
            ));
        }
    }
    Ok(())
}

fn network_of(profile: &PermissionProfile) -> Result<Network, String> {
    let Some(net) = &profile.network else {
        return Ok(match profile.name.as_str() {
            "none" | "stdio" => Network::None,
            _ => Network::Full,
        });
    };
    match net.mode.as_str() {
        "" | "bridge" | "default" => {}
        "none" => return Ok(Network::None),
        "host" => {
            return Err(
                "permission_profile.network.mode `host`: berth never shares the host's network namespace; use `bridge` with outbound rules"
                    .to_owned(),
            );
        }
        other => {
            return Err(format!(
                "permission_profile.network.mode `{other}`: custom networks are not supported; use `bridge` or `none`"
            ));
        }
    }
    if net
        .inbound
        .as_ref()
        .is_some_and(|i| !i.allow_host.is_empty())
    {
        return Err(
            "permission_profile.network.inbound.allow_host is not supported: berth publishes HTTP servers on 127.0.0.1 only, for its own proxy"
                .to_owned(),
        );
    }
    let Some(out) = &net.outbound else {
        return Ok(Network::None);
    };
    if out.insecure_allow_all {
        return Ok(Network::Full);
    }
    if out.allow_host.is_empty() && out.allow_port.is_empty() {
        return Ok(Network::None);
    }
    let policy = EgressPolicy::new(&out.allow_host, &out.allow_port)
        .map_err(|why| format!("permission_profile.network.outbound: {why}"))?;
    Ok(Network::Allowlist(policy))
}

/// Adds `new`, merging it with an entry for the same target.
fn add_mount(mounts: &mut Vec<Mount>, new: Mount) -> Result<(), String> {
    match mounts.iter_mut().find(|m| m.target == new.target) {
        None => mounts.push(new),
        Some(old) if old.source == new.source => old.read_only &= new.read_only,
        Some(old) => {
            return Err(format!(
                "`{}` is mounted twice, from `{}` and from `{}`",
                new.target,
                old.source.display(),
                new.source.display()
            ));
        }
    }
    Ok(())
}

/// A profile entry: `host` or `host:container`.
fn parse_entry(entry: &str, read_only: bool) -> Result<Mount, String> {
    refuse_odd(entry)?;
    let (source, target) = match entry.split(':').collect::<Vec<_>>()[..] {
        [one] => (one, one),
        [host, container] => (host, container),
        _ => return Err(format!("`{entry}`: use `host` or `host:container`")),
    };
    mount(entry, source, target, read_only)
}

/// A volume: `host:container`, `host:container:ro` (or `:rw`).
fn parse_volume(entry: &str) -> Result<Mount, String> {
    refuse_odd(entry)?;
    let (source, target, read_only) = match entry.split(':').collect::<Vec<_>>()[..] {
        [host, container] => (host, container, false),
        [host, container, "ro"] => (host, container, true),
        [host, container, "rw"] => (host, container, false),
        _ => return Err(format!("`{entry}`: use `host:container[:ro]`")),
    };
    mount(entry, source, target, read_only)
}

fn refuse_odd(entry: &str) -> Result<(), String> {
    if entry.contains("://") {
        return Err(format!(
            "`{entry}`: resource URIs are not supported; give a host path"
        ));
    }
    if entry.chars().any(char::is_control) {
        return Err(format!("`{entry:?}` contains control characters"));
    }
    Ok(())
}

fn mount(entry: &str, source: &str, target: &str, read_only: bool) -> Result<Mount, String> {
    let source = clean(source).ok_or_else(|| {
        format!("`{entry}`: the host path must be absolute and without `..` (berth is a server: relative paths have no meaning)")
    })?;
    let target = clean(target).ok_or_else(|| {
        format!("`{entry}`: the container path must be absolute and without `..`")
    })?;
    if target == Path::new("/") {
        return Err(format!("`{entry}`: cannot mount over the container's root"));
    }
    let target = target
        .to_str()
        .expect("made of a &str's components")
        .to_owned();
    Ok(Mount {
        source,
        target,
        read_only,
    })
}

/// `path` without `.` components and trailing slashes, if it is absolute
/// and has no `..`.
fn clean(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
