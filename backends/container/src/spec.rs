//! What a container engine can run: the checks of
//! [`Backend::check`](berth_runtime_api::Backend::check) that every engine
//! makes.

use berth_runtime_api::{NetworkAccess, RuntimeError, Transport, WorkloadSpec};

use crate::Package;

/// Refuses what no container engine runs, before anything runs: no image;
/// an invalid `npx://` or `uvx://` spec; any other scheme (`exec://`,
/// `go://`, `foo://`: an image reference has none); an HTTP transport
/// without a target port; a restricted network for an HTTP transport
/// (berth's proxy cannot reach a published port there yet); a network
/// access the engine does not know; a mount source that is not UTF-8; a
/// secret variable an environment cannot carry (an empty name, `=` or NUL
/// in a name, NUL in a value).
///
/// `engine` names the backend in the messages (`docker`, `podman`).
pub fn check_spec(spec: &WorkloadSpec, engine: &str) -> Result<(), RuntimeError> {
    spec.check_secret_env()?;
    let invalid = |why: String| Err(RuntimeError::InvalidSpec(why));
    check_image(&spec.image, engine)?;
    if spec.transport != Transport::Stdio && spec.target_port.is_none() {
        return invalid(format!(
            "the {} transport needs a target port on the {engine} backend",
            spec.transport
        ));
    }
    match spec.network {
        NetworkAccess::Full => {}
        NetworkAccess::None | NetworkAccess::Isolated if spec.transport != Transport::Stdio => {
            return invalid(format!(
                "a {} workload with a restricted network cannot be reached by berth's proxy on the {engine} backend yet; use the stdio transport or the `network` profile",
                spec.transport
            ));
        }
        NetworkAccess::None | NetworkAccess::Isolated => {}
        other => {
            return invalid(format!(
                "the {engine} backend does not know network access {other:?}"
            ));
        }
    }
    if let Some(m) = spec.mounts.iter().find(|m| m.source.to_str().is_none()) {
        return invalid(format!(
            "mount source {:?} is not UTF-8, which the {engine} API cannot carry",
            m.source
        ));
    }
    Ok(())
}

/// Refuses images no container engine runs.
fn check_image(image: &str, engine: &str) -> Result<(), RuntimeError> {
    let image = image.trim();
    if image.is_empty() {
        return Err(RuntimeError::InvalidSpec(format!(
            "the {engine} backend needs a container image"
        )));
    }
    if let Some(parsed) = Package::parse(image) {
        return parsed
            .map(drop)
            .map_err(|why| RuntimeError::InvalidSpec(why.to_string()));
    }
    if let Some((scheme, _)) = image.split_once("://") {
        let why = match scheme {
            "go" => format!(
                "`go://` packages cannot run on {engine} yet; use an image, or an npx:// or uvx:// package"
            ),
            "exec" => "`exec://` programs run on the process backend, not in containers".to_owned(),
            _ => format!("`{scheme}://` is not an image reference {engine} can run"),
        };
        return Err(RuntimeError::InvalidSpec(why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    use berth_runtime_api::{Mount, WorkloadName};

    use super::*;

    fn spec(image: &str) -> WorkloadSpec {
        WorkloadSpec::new(WorkloadName::parse("w").expect("name"), image)
    }

    /// `Ok` or the refusal's message.
    fn check(spec: &WorkloadSpec) -> Result<(), String> {
        match check_spec(spec, "docker") {
            Ok(()) => Ok(()),
            Err(RuntimeError::InvalidSpec(why)) => Err(why),
            Err(other) => panic!("{spec:?}: not an invalid spec: {other:?}"),
        }
    }

    #[test]
    fn images() {
        fn image(image: &str, expect: Result<(), &str>) {
            match (check(&spec(image)), expect) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{image}: {got}"),
                (got, want) => panic!("{image}: got {got:?}, want {want:?}"),
            }
        }
        image("alpine", Ok(()));
        image("localhost/berth-test/echo:latest", Ok(()));
        image("ghcr.io/example/fetch@sha256:0123", Ok(()));
        image("localhost:5000/x:v1", Ok(()));
        image("", Err("needs a container image"));
        image("  ", Err("needs a container image"));
        image("npx://@modelcontextprotocol/server-everything", Ok(()));
        image(
            "npx://@modelcontextprotocol/server-everything@2.0.0",
            Ok(()),
        );
        image("uvx://mcp-server-time==2025.1.0", Ok(()));
        image("npx://pkg@^1.0", Err("invalid version"));
        image("npx://pkg@>=1", Err("invalid version"));
        image("uvx://pkg;id", Err("invalid Python package"));
        image("uvx://pkg[cli]", Err("invalid Python package"));
        image("npx://", Err("names no package"));
        image("go://example.com/x", Err("`go://`"));
        image("go://x.y/z", Err("`go://` packages cannot run on docker"));
        image(
            "exec:///bin/cat",
            Err("`exec://` programs run on the process backend"),
        );
        image(
            "fake://echo",
            Err("`fake://` is not an image reference docker can run"),
        );
        image("UVX://x", Err("`UVX://` is not an image reference"));
        image("NPX://@x/y", Err("`NPX://` is not an image reference"));
    }

    #[test]
    fn http_transports_need_a_port_and_a_reachable_network() {
        let mut http = spec("ghcr.io/x/y:1");
        http.transport = Transport::StreamableHttp;
        let why = check(&http).unwrap_err();
        assert!(why.contains("target port on the docker backend"), "{why}");
        http.target_port = Some(8080);
        assert_eq!(check(&http), Ok(()));
        for network in [NetworkAccess::None, NetworkAccess::Isolated] {
            http.network = network;
            let why = check(&http).unwrap_err();
            assert!(why.contains("restricted network"), "{why}");
            let mut stdio = spec("ghcr.io/x/y:1");
            stdio.network = network;
            assert_eq!(check(&stdio), Ok(()), "stdio on {network:?}");
        }
    }

    #[test]
    fn secret_env_must_fit_an_environment() {
        use berth_runtime_api::SecretValue;
        let mut s = spec("alpine");
        s.secret_env
            .insert("TOKEN".into(), SecretValue::new("a = b\n\"c\""));
        s.secret_env.insert("EMPTY".into(), SecretValue::new(""));
        assert_eq!(check(&s), Ok(()));
        for (key, value, want) in [
            ("", "v", "is empty or holds"),
            ("A=B", "v", "is empty or holds"),
            ("A\0B", "v", "is empty or holds"),
            ("TOKEN", "nul\0inside", "`TOKEN` holds a NUL byte"),
        ] {
            let mut s = spec("alpine");
            s.secret_env.insert(key.into(), SecretValue::new(value));
            let why = check(&s).unwrap_err();
            assert!(why.contains(want), "{key:?}: {why}");
            assert!(!why.contains("inside"), "the value is shown: {why}");
        }
    }

    #[test]
    fn mount_sources_must_be_utf8() {
        let mut s = spec("alpine");
        s.mounts.push(Mount {
            source: "/srv/in".into(),
            target: "/in".into(),
            read_only: true,
        });
        assert_eq!(check(&s), Ok(()));
        s.mounts.push(Mount {
            source: OsString::from_vec(vec![b'/', 0xff]).into(),
            target: "/out".into(),
            read_only: false,
        });
        let why = check(&s).unwrap_err();
        assert!(why.contains("not UTF-8"), "{why}");
    }
}
