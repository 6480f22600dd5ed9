//! Tests of package specs, recipes, their Dockerfiles and build contexts.

use super::*;

fn parse(image: &str) -> Package {
    Package::parse(image)
        .unwrap_or_else(|| panic!("{image} has a package scheme"))
        .unwrap_or_else(|e| panic!("{image} refused: {e}"))
}

fn refused(image: &str) -> String {
    match Package::parse(image) {
        Some(Err(e)) => e.to_string(),
        other => panic!("{image} accepted: {other:?}"),
    }
}

#[test]
fn npm_specs_and_versions() {
    let p = parse("npx://@scope/pkg@1.2.3");
    assert_eq!((p.scheme, p.name.as_str()), (Scheme::Npx, "@scope/pkg"));
    assert_eq!(p.version.as_deref(), Some("1.2.3"));
    assert_eq!(p.install_spec(), "@scope/pkg@1.2.3");
    assert_eq!(p.spec(), "npx://@scope/pkg@1.2.3");

    let p = parse("npx://@scope/pkg");
    assert_eq!(
        (p.name.as_str(), p.version.as_deref()),
        ("@scope/pkg", None)
    );
    let p = parse("npx://pkg@latest");
    assert_eq!((p.name.as_str(), p.version.as_deref()), ("pkg", None));
    assert_eq!(p, parse("npx://pkg"), "`@latest` is the latest release");
    let p = parse("npx://pkg@next");
    assert_eq!(p.version.as_deref(), Some("next"));
    let p = parse("npx://pkg@1.0.0-beta.1+build.5");
    assert_eq!(p.tag(), "1.0.0-beta.1_build.5");
    assert_eq!(parse("npx://JSONStream").name, "JSONStream");
}

#[test]
fn pypi_specs_and_versions() {
    let p = parse("uvx://mcp-server-time==2025.1.0");
    assert_eq!(
        (p.scheme, p.name.as_str()),
        (Scheme::Uvx, "mcp-server-time")
    );
    assert_eq!(p.version.as_deref(), Some("2025.1.0"));
    assert_eq!(p.install_spec(), "mcp-server-time==2025.1.0");
    assert_eq!(p, parse("uvx://mcp-server-time@2025.1.0"));
    assert_eq!(parse("uvx://pkg@latest"), parse("uvx://pkg"));
    assert_eq!(parse("uvx://pkg").install_spec(), "pkg");
    assert_eq!(parse("uvx://pkg==1!2.0").tag(), "1_2.0");
    assert_eq!(parse("uvx://Some_Pkg.x").name, "Some_Pkg.x");
}

#[test]
fn other_images_are_not_packages() {
    for image in [
        "alpine",
        "ghcr.io/x/y:1",
        "exec:///bin/cat",
        "go://example.com/x",
    ] {
        assert!(Package::parse(image).is_none(), "{image}");
    }
}

#[test]
fn invalid_specs_are_refused() {
    assert_eq!(refused("npx://"), "image `npx://` names no package");
    assert_eq!(refused("uvx://"), "image `uvx://` names no package");
    for image in [
        "npx://-y",
        "npx://--registry=http://evil",
        "npx://pkg@^1.2",
        "npx://pkg@>=1",
        "npx://pkg@1.0 || 2.0",
        "npx://pkg@",
        "npx://@scope",
        "npx://@/pkg",
        "npx://@scope/",
        "npx://a/b",
        "npx://../pkg",
        "npx://pkg;rm -rf /",
        "npx://pkg$(id)",
        "npx://pkg`id`",
        "npx://pkg name",
        "npx://pkg\nRUN x",
        "npx://\"pkg\"",
        "npx://git+https://github.com/x/y",
        "npx://./local",
        "uvx://pkg>=1",
        "uvx://pkg[extra]",
        "uvx://pkg==",
        "uvx://pkg==1.0;x",
        "uvx://-pkg",
        "uvx://pkg-",
        "uvx://pkg@1@2",
        "uvx://pkg==1 2",
        "uvx://https://x",
        "uvx://pkg\\x",
    ] {
        let why = refused(image);
        assert!(why.starts_with("invalid "), "{image}: {why}");
    }
    assert!(refused("npx://pkg@^1.2").contains("not a range"));
    let long = format!("npx://{}", "a".repeat(MAX_NAME_LEN + 1));
    assert!(refused(&long).contains("invalid npm package"));
    let long = format!("npx://a@{}", "1".repeat(MAX_VERSION_LEN + 1));
    assert!(refused(&long).contains("invalid version"));
}

#[test]
fn image_names_are_valid_references() {
    for (image, want) in [
        ("npx://pkg", "localhost/berth-npx/pkg:latest"),
        ("npx://pkg@1.2.3", "localhost/berth-npx/pkg:1.2.3"),
        (
            "npx://@modelcontextprotocol/server-everything",
            "localhost/berth-npx/modelcontextprotocol/server-everything:latest",
        ),
        ("npx://JSONStream@1.0", "localhost/berth-npx/jsonstream:1.0"),
        ("npx://a..b~c_@2", "localhost/berth-npx/a-b-c:2"),
        ("npx://x_.@1", "localhost/berth-npx/x:1"),
        (
            "uvx://Some_Pkg.x==2.0",
            "localhost/berth-uvx/some-pkg-x:2.0",
        ),
        (
            "uvx://mcp-server-time",
            "localhost/berth-uvx/mcp-server-time:latest",
        ),
    ] {
        let recipe = Recipe::new(&parse(image), DEFAULT_NODE_BASE_IMAGE).expect("recipe");
        assert_eq!(recipe.image, want, "{image}");
        // The reference grammar: lower-case path components of letters and
        // digits joined by `-`, a tag of word characters, `.` and `-`.
        let (repo, tag) = recipe.image.rsplit_once(':').expect("tag");
        for part in repo.split('/') {
            assert!(
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && part.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{image}: {part}"
            );
        }
        assert!(
            tag.len() <= 128 && word(tag, &['.', '-', '_']),
            "{image}: {tag}"
        );
    }
}

#[test]
fn npm_dockerfile() {
    let recipe =
        Recipe::new(&parse("npx://@scope/pkg@1.2.3"), "localhost/base/node:22").expect("recipe");
    let want = r#"# Generated by berth for npx://@scope/pkg@1.2.3: the package is installed at build time.
FROM localhost/base/node:22
WORKDIR /opt/berth/app
RUN ["npm","install","--omit=dev","--no-audit","--no-fund","@scope/pkg@1.2.3"]
ENV HOME=/tmp npm_config_cache=/tmp/.npm npm_config_offline=true npm_config_update_notifier=false
USER 65534:65534
ENTRYPOINT ["npx","--no","@scope/pkg"]
CMD []
"#;
    assert_eq!(recipe.dockerfile, want);
}

#[test]
fn uv_dockerfile() {
    let recipe =
        Recipe::new(&parse("uvx://mcp-server-time@1.0"), "python:3.12-slim").expect("recipe");
    let want = r#"# Generated by berth for uvx://mcp-server-time==1.0: the package is installed at build time.
FROM python:3.12-slim
ENV UV_TOOL_DIR=/opt/berth/uv/tools UV_TOOL_BIN_DIR=/opt/berth/uv/bin UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
RUN ["pip","install","--no-cache-dir","uv"]
RUN ["uv","tool","install","mcp-server-time==1.0"]
ENV HOME=/tmp
USER 65534:65534
ENTRYPOINT ["/opt/berth/uv/bin/mcp-server-time"]
CMD []
"#;
    assert_eq!(recipe.dockerfile, want);
}

#[test]
fn every_instruction_argument_is_exec_form_json() {
    for image in ["npx://@a/b@1.0.0-rc.1", "uvx://x_y==1!2.0+local"] {
        let recipe = Recipe::new(&parse(image), "node").expect("recipe");
        for line in recipe.dockerfile.lines() {
            if let Some(rest) = ["RUN ", "ENTRYPOINT ", "CMD "]
                .iter()
                .find_map(|i| line.strip_prefix(i))
            {
                let args: Vec<String> = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{line}: not a JSON array: {e}"));
                assert!(
                    args.iter()
                        .all(|a| !a.contains(['$', '`', ';', '\n', '"', '\\']))
                );
            }
        }
    }
}

#[test]
fn hash_changes_with_every_input_and_labels_match() {
    let base = "docker.io/library/node:22-alpine";
    let a = Recipe::new(&parse("npx://pkg@1.0"), base).expect("recipe");
    assert_eq!(
        a,
        Recipe::new(&parse("npx://pkg@1.0"), base).expect("recipe")
    );
    assert_eq!(a.hash.len(), 64);
    for other in [
        Recipe::new(&parse("npx://pkg@1.1"), base),
        Recipe::new(&parse("npx://pkg@1.0"), "localhost/other:1"),
        Recipe::new(&parse("uvx://pkg==1.0"), base),
    ] {
        assert_ne!(a.hash, other.expect("recipe").hash);
    }
    let labels = a.labels();
    assert_eq!(labels[LABEL_PACKAGE], "npx://pkg@1.0");
    assert_eq!(labels[LABEL_BASE], base);
    assert!(a.is_built(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    assert!(!a.is_built([(LABEL_HASH, "0")].into_iter()));
    assert!(!a.is_built(std::iter::empty()));
}

#[test]
fn base_images_are_checked() {
    for ok in [
        DEFAULT_NODE_BASE_IMAGE,
        DEFAULT_PYTHON_BASE_IMAGE,
        "localhost/berth-test/fake-node:latest",
        "node@sha256:0123abcd",
        "registry.example:5000/x/y:1",
    ] {
        assert!(check_base_image(ok).is_ok(), "{ok}");
    }
    for bad in ["", " node", "node\nRUN id", "node AS x", "$BASE", "-node"] {
        let err = Recipe::new(&parse("npx://p"), bad).expect_err(bad);
        assert!(err.to_string().contains("invalid base image"), "{err}");
    }
}

#[test]
fn the_context_is_a_tar_with_only_the_dockerfile() {
    let recipe = Recipe::new(&parse("npx://pkg"), "node").expect("recipe");
    let tar = recipe.context_tar();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = archive.entries().expect("entries");
    let mut entry = entries.next().expect("one entry").expect("entry");
    assert_eq!(entry.path().expect("path").to_str(), Some("Dockerfile"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
    assert_eq!(text, recipe.dockerfile);
    drop(entry);
    assert!(entries.next().is_none());
    assert_eq!(tar, recipe.context_tar(), "the context is reproducible");
}
