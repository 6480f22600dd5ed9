//! Images for `npx://` and `uvx://` workloads on container engines.
//!
//! A container engine cannot run a package spec; it runs an image. This
//! module turns `npx://<pkg>[@version]` and `uvx://<pkg>[==version]` into a
//! [`Recipe`]: the name of a local image (`localhost/berth-npx/<pkg>:<version>`),
//! a generated Dockerfile that installs the package **at build time** on a
//! configurable base image, the build context (a tar holding only that
//! Dockerfile), and the labels that make the image a cache entry. The Docker
//! and Podman backends build recipes through their engine APIs; nothing in
//! this module talks to an engine.
//!
//! **Why install at build time.** The image is built once per package and
//! version and reused by every workload that names them; a start (or an
//! automatic restart) needs no registry, and a workload with no network at
//! all still starts. At run time `npx --no <pkg>` runs the package installed
//! in the image's project directory with npm in offline mode; uvx packages
//! run as the executable `uv tool install` put into `/opt/berth/uv/bin`.
//! Packages run as user `65534:65534` (nobody) with `HOME=/tmp`.
//!
//! **Safety.** Specs are validated strictly (names and versions from small
//! character sets, no option-like names), and every argument reaches the
//! Dockerfile only inside exec-form JSON arrays (`RUN ["npm", …]`,
//! `ENTRYPOINT [...]`), never through a shell: no shell is needed in the
//! base image for the build, and none interprets the spec.
//!
//! **Caching.** An image is reused when its label [`LABEL_HASH`] equals the
//! recipe's [`hash`](Recipe::hash), a digest of everything the build
//! depends on (the Dockerfile, which names the base image and the package,
//! and the recipe version). A changed base image or recipe makes a
//! new build under the same name. Unversioned specs and `@latest` are
//! resolved once, at build time: remove the image to pick up a newer
//! release.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// Label with the canonical package spec an image was built for.
pub const LABEL_PACKAGE: &str = "berth.package";
/// Label with the [`Recipe::hash`] of the build inputs.
pub const LABEL_HASH: &str = "berth.package.hash";
/// Label with the base image the package was installed on.
pub const LABEL_BASE: &str = "berth.package.base";

/// Default base image of `npx://` packages.
pub const DEFAULT_NODE_BASE_IMAGE: &str = "docker.io/library/node:22-alpine";
/// Default base image of `uvx://` packages (it needs `pip`).
pub const DEFAULT_PYTHON_BASE_IMAGE: &str = "docker.io/library/python:3.12-slim";

/// Bumped whenever the generated Dockerfiles change meaning, so that
/// images of an older recipe are rebuilt. It names the crate this module
/// came from (`berth-package-image`); being part of every image's hash, it
/// keeps that name so that images built before the move stay valid.
const RECIPE_VERSION: &str = "berth-package-image/1";
/// The npm project directory inside `npx://` images.
const NPM_PROJECT_DIR: &str = "/opt/berth/app";
/// Where `uv tool install` puts tools and their executables.
const UV_TOOL_DIR: &str = "/opt/berth/uv/tools";
const UV_BIN_DIR: &str = "/opt/berth/uv/bin";
/// The user packages run as: nobody.
const RUN_AS: &str = "65534:65534";
/// Longest package name accepted (npm's own limit).
const MAX_NAME_LEN: usize = 214;
/// Longest version accepted (image tags stop at 128 characters).
const MAX_VERSION_LEN: usize = 100;

/// A package manager scheme that becomes a built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `npx://`: an npm package, run with `npx`.
    Npx,
    /// `uvx://`: a Python package, run as the executable `uv tool install`
    /// creates.
    Uvx,
}

impl Scheme {
    /// The scheme as written in an image, without `://`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Npx => "npx",
            Self::Uvx => "uvx",
        }
    }
}

impl Scheme {
    /// Of a backend's two base images, the one packages of this scheme are
    /// installed on: `node` for `npx://`, `python` for `uvx://`.
    pub fn base_image<'a>(self, node: &'a str, python: &'a str) -> &'a str {
        match self {
            Self::Npx => node,
            Self::Uvx => python,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.as_str())
    }
}

/// Why a package spec or base image is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPackage(String);

/// A validated `npx://` or `uvx://` package spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Package {
    /// The package manager.
    pub scheme: Scheme,
    /// The package name: `pkg` or `@scope/pkg` (npm), `pkg` (PyPI).
    pub name: String,
    /// An exact version or (npm) a dist-tag; `None` for the latest
    /// release (an explicit `latest` is the same).
    pub version: Option<String>,
}

impl Package {
    /// Reads `image` as a package spec: `None` when it has no package
    /// scheme, `Some(Err(_))` when it has one and the spec is invalid.
    ///
    /// Accepted: `npx://pkg`, `npx://pkg@1.2.3`, `npx://@scope/pkg@next`,
    /// `uvx://pkg`, `uvx://pkg==1.0`, `uvx://pkg@1.0`, and `@latest` for
    /// both. Version ranges, extras, URLs, paths and anything that could be
    /// read as an option are refused.
    pub fn parse(image: &str) -> Option<Result<Self, InvalidPackage>> {
        if let Some(spec) = image.strip_prefix("npx://") {
            Some(parse_npm(spec))
        } else {
            image.strip_prefix("uvx://").map(parse_pypi)
        }
    }

    /// The canonical spec, e.g. `npx://@scope/pkg@1.2.3` or `uvx://pkg==1.0`.
    pub fn spec(&self) -> String {
        format!("{}{}", self.scheme, self.install_spec())
    }

    /// What the package manager installs: `pkg@1.2.3` (npm), `pkg==1.0`
    /// (uv), or the bare name for the latest release.
    pub fn install_spec(&self) -> String {
        match (&self.version, self.scheme) {
            (None, _) => self.name.clone(),
            (Some(v), Scheme::Npx) => format!("{}@{v}", self.name),
            (Some(v), Scheme::Uvx) => format!("{}=={v}", self.name),
        }
    }

    /// The image repository (without tag): `localhost/berth-npx/<name>`,
    /// the name lower-cased, an npm scope a path component of its own, and
    /// every other character outside `[a-z0-9]` a `-`.
    pub fn repository(&self) -> String {
        let name = self.name.strip_prefix('@').unwrap_or(&self.name);
        let path: Vec<String> = name.split('/').map(path_component).collect();
        format!(
            "localhost/berth-{}/{}",
            self.scheme.as_str(),
            path.join("/")
        )
    }

    /// The image tag: the version with characters a tag cannot hold
    /// (`+`, `!`) turned into `_`, or `latest`.
    pub fn tag(&self) -> String {
        match &self.version {
            None => "latest".to_owned(),
            Some(v) => v
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        }
    }
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

/// One component of an image path: lower-case ASCII letters and digits
/// separated by single `-`, never empty.
fn path_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("pkg");
    }
    out
}

fn invalid(msg: String) -> InvalidPackage {
    InvalidPackage(msg)
}

/// Whether `s` starts with an ASCII letter or digit and continues with
/// letters, digits or `extra`.
fn word(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

fn check_version(scheme: Scheme, spec: &str, version: &str) -> Result<(), InvalidPackage> {
    let extra: &[char] = match scheme {
        Scheme::Npx => &['.', '-', '_', '+'],
        Scheme::Uvx => &['.', '-', '_', '+', '!'],
    };
    if version.len() > MAX_VERSION_LEN || !word(version, extra) {
        return Err(invalid(format!(
            "invalid version `{version}` in `{scheme}{spec}`: give an exact version{} \
             (letters, digits and . - _ +), not a range",
            if scheme == Scheme::Npx {
                " or a dist-tag"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

fn no_package(scheme: Scheme) -> InvalidPackage {
    invalid(format!("image `{scheme}` names no package"))
}

/// The version part, `None` for an absent or `latest` one.
fn version_of(version: Option<&str>) -> Option<String> {
    version.filter(|v| *v != "latest").map(str::to_owned)
}

fn parse_npm(spec: &str) -> Result<Package, InvalidPackage> {
    let scheme = Scheme::Npx;
    if spec.is_empty() {
        return Err(no_package(scheme));
    }
    // The version separator is the last `@` that does not start a scope.
    let (name, version) = match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], Some(&spec[at + 1..])),
        _ => (spec, None),
    };
    let name_chars = &['.', '-', '_', '~'];
    let valid_name = match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, pkg)| word(scope, name_chars) && word(pkg, name_chars)),
        None => word(name, name_chars),
    };
    if !valid_name || name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "invalid npm package `{name}` in `{scheme}{spec}`: expected `name` or `@scope/name` \
             (letters, digits and . - _ ~, starting with a letter or digit), optionally followed \
             by `@version`"
        )));
    }
    if let Some(v) = version {
        check_version(scheme, spec, v)?;
    }
    Ok(Package {
        scheme,
        name: name.to_owned(),
        version: version_of(version),
    })
}

fn parse_pypi(spec: &str) -> Result<Package, InvalidPackage> {
    let scheme = Scheme::Uvx;
    if spec.is_empty() {
        return Err(no_package(scheme));
    }
    let (name, version) = match spec.split_once("==") {
        Some((name, version)) => (name, Some(version)),
        None => match spec.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (spec, None),
        },
    };
    let valid_name = word(name, &['.', '-', '_'])
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN;
    if !valid_name {
        return Err(invalid(format!(
            "invalid Python package `{name}` in `{scheme}{spec}`: expected a name of letters, \
             digits and . - _ (starting and ending with a letter or digit), optionally followed \
             by `==version` or `@version`"
        )));
    }
    if let Some(v) = version {
        check_version(scheme, spec, v)?;
    }
    Ok(Package {
        scheme,
        name: name.to_owned(),
        version: version_of(version),
    })
}

/// Checks a configured base image reference: a non-empty reference of the
/// characters image references use, so that it can only be a `FROM`
/// argument.
pub fn check_base_image(image: &str) -> Result<(), InvalidPackage> {
    if image.len() <= 255 && word(image, &['.', '-', '_', '/', ':', '@']) {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid base image `{image}`: expected an image reference such as `{DEFAULT_NODE_BASE_IMAGE}`"
        )))
    }
}

/// Checks a backend's `node_base_image` and `python_base_image` settings;
/// the error names the setting.
pub fn check_base_images(node: &str, python: &str) -> Result<(), String> {
    for (key, image) in [("node_base_image", node), ("python_base_image", python)] {
        check_base_image(image).map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}

/// How to build the image of one package on one base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The package.
    pub package: Package,
    /// The image the package is installed on.
    pub base_image: String,
    /// The image to build and run: `repository:tag`.
    pub image: String,
    /// The generated Dockerfile.
    pub dockerfile: String,
    /// Hex SHA-256 of the build inputs; the cache key.
    pub hash: String,
}

impl Recipe {
    /// The recipe of `package` on `base_image`; fails only for an invalid
    /// base image.
    pub fn new(package: &Package, base_image: &str) -> Result<Self, InvalidPackage> {
        check_base_image(base_image)?;
        let dockerfile = dockerfile(package, base_image);
        let mut digest = Sha256::new();
        digest.update(RECIPE_VERSION.as_bytes());
        digest.update(b"\n");
        digest.update(dockerfile.as_bytes());
        let hash = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            package: package.clone(),
            base_image: base_image.to_owned(),
            image: format!("{}:{}", package.repository(), package.tag()),
            dockerfile,
            hash,
        })
    }

    /// The labels the built image carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_PACKAGE.to_owned(), self.package.spec()),
            (LABEL_HASH.to_owned(), self.hash.clone()),
            (LABEL_BASE.to_owned(), self.base_image.clone()),
        ])
    }

    /// Whether an image with `labels` was built from this recipe.
    pub fn is_built<'a>(&self, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        labels.any(|(k, v)| k == LABEL_HASH && v == self.hash)
    }

    /// The build context: an uncompressed tar holding only `Dockerfile`.
    pub fn context_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(self.dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "Dockerfile", self.dockerfile.as_bytes())
            .expect("writing to a Vec cannot fail");
        builder.into_inner().expect("writing to a Vec cannot fail")
    }
}

/// An exec-form instruction argument list: a JSON array of strings.
fn exec_form(args: &[&str]) -> String {
    serde_json::to_string(args).expect("strings serialize")
}

fn dockerfile(package: &Package, base: &str) -> String {
    let install = package.install_spec();
    let spec = package.spec();
    let mut lines = vec![
        format!("# Generated by berth for {spec}: the package is installed at build time."),
        format!("FROM {base}"),
    ];
    match package.scheme {
        Scheme::Npx => {
            lines.push(format!("WORKDIR {NPM_PROJECT_DIR}"));
            lines.push(format!(
                "RUN {}",
                exec_form(&[
                    "npm",
                    "install",
                    "--omit=dev",
                    "--no-audit",
                    "--no-fund",
                    &install
                ])
            ));
            lines.push(
                "ENV HOME=/tmp npm_config_cache=/tmp/.npm npm_config_offline=true \
                 npm_config_update_notifier=false"
                    .to_owned(),
            );
            lines.push(format!("USER {RUN_AS}"));
            lines.push(format!(
                "ENTRYPOINT {}",
                exec_form(&["npx", "--no", &package.name])
            ));
        }
        Scheme::Uvx => {
            lines.push(format!(
                "ENV UV_TOOL_DIR={UV_TOOL_DIR} UV_TOOL_BIN_DIR={UV_BIN_DIR} \
                 UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1"
            ));
            lines.push(format!(
                "RUN {}",
                exec_form(&["pip", "install", "--no-cache-dir", "uv"])
            ));
            lines.push(format!(
                "RUN {}",
                exec_form(&["uv", "tool", "install", &install])
            ));
            lines.push("ENV HOME=/tmp".to_owned());
            lines.push(format!("USER {RUN_AS}"));
            let program = format!("{UV_BIN_DIR}/{}", package.name);
            lines.push(format!("ENTRYPOINT {}", exec_form(&[&program])));
        }
    }
    // Arguments come from the workload at run time, as the container's
    // command.
    lines.push("CMD []".to_owned());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
