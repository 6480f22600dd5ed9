//! The offline comparison behind an upgrade check: what a workload runs
//! against what its registry entry says today for the same runtime.
//! Nothing is pulled or installed; only references and versions are read.
//!
//! - Two image references are comparable when they name the same
//!   repository (an OCI repository, fully qualified, or an `npx://` /
//!   `uvx://` package) and each carries a version (an OCI tag, a package
//!   version). Versions are compared by semantic-version precedence when
//!   both parse (a leading `v` and a missing minor or patch are allowed),
//!   else they are equal or not comparable.
//! - An identical reference that names no version (`latest`, an untagged
//!   image, a `fake://` or `exec://` one) says nothing by itself: the
//!   entry's version recorded at creation is compared with today's.
//! - A digest, another repository, or a `latest` on one side only is
//!   undecidable (`unknown`, with the reason).

use std::cmp::Ordering;

use berth_container::Package;

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The candidate is newer.
    Newer {
        /// Why, when the reference alone does not show it.
        note: Option<String>,
    },
    /// The workload runs the candidate or something newer.
    Same,
    /// Undecidable, and why.
    Unknown(String),
}

/// An image reference read as repository and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The fully qualified repository (`docker.io/library/redis`,
    /// `npx://@scope/pkg`), or the whole reference of another scheme.
    pub(crate) repository: String,
    /// The tag or package version; `None` for none or `latest`.
    pub(crate) version: Option<String>,
    /// Pinned by digest (not comparable).
    pub(crate) digest: bool,
}

/// Reads `image` as a reference.
pub(crate) fn reference(image: &str) -> Result<Reference, String> {
    if let Some(parsed) = Package::parse(image) {
        let p = parsed.map_err(|e| format!("cannot read `{image}`: {e}"))?;
        return Ok(Reference {
            repository: format!("{}{}", p.scheme, p.name),
            version: p.version,
            digest: false,
        });
    }
    if image.contains("://") {
        // `exec://`, `fake://`: opaque, versionless.
        return Ok(Reference {
            repository: image.to_owned(),
            version: None,
            digest: false,
        });
    }
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("cannot read image reference `{image}`"));
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let (name, tag) = match name.rsplit_once(':') {
        // A `:` after the last `/` is a tag; before it, a registry port.
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    Ok(Reference {
        repository: qualify(name),
        version: tag.filter(|t| *t != "latest").map(str::to_owned),
        digest,
    })
}

/// `redis` → `docker.io/library/redis`, `me/x` → `docker.io/me/x`; a
/// first component with a `.` or `:`, or `localhost`, is a registry.
fn qualify(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some(("index.docker.io", rest)) => qualify_docker(rest),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name,
        Some(_) => format!("docker.io/{name}"),
    }
}

fn qualify_docker(rest: &str) -> String {
    if rest.contains('/') {
        format!("docker.io/{rest}")
    } else {
        format!("docker.io/library/{rest}")
    }
}

/// A version as semver: an optional leading `v`/`V`; `1` and `1.2` read
/// as `1.0.0` and `1.2.0`.
pub(crate) fn parse_version(v: &str) -> Option<semver::Version> {
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts = core.split('.').count();
    if !(1..3).contains(&parts)
        || !core
            .split('.')
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - parts));
    semver::Version::parse(&padded).ok()
}

/// How version `a` compares with `b`: by semver when both parse, else
/// `Equal` for equal strings and `None` otherwise.
pub(crate) fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => Some(a.cmp_precedence(&b)),
        _ if a == b => Some(Ordering::Equal),
        _ => None,
    }
}

/// Compares what runs (`current`, created from the entry's version
/// `recorded`) with what the entry says today (`candidate`, version
/// `entry`).
pub(crate) fn compare(current: &str, recorded: &str, candidate: &str, entry: &str) -> Verdict {
    let (cur, cand) = match (reference(current), reference(candidate)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return Verdict::Unknown(why),
    };
    if cur == cand && cur.version.is_none() && !cur.digest {
        // The reference floats: only the entry's own version can tell.
        return match compare_versions(recorded, entry) {
            Some(Ordering::Less) => Verdict::Newer {
                note: Some(format!(
                    "the entry's version went from {recorded} to {entry}; its image `{candidate}` \
                     names no version, so the upgrade recreates the workload from the same reference"
                )),
            },
            Some(_) => Verdict::Same,
            None => Verdict::Unknown(format!(
                "versions are not comparable: the workload was created from version {:?}, the entry is at {:?}, \
                 and its image `{candidate}` names no version",
                recorded, entry
            )),
        };
    }
    if cur == cand {
        return Verdict::Same;
    }
    if cur.digest || cand.digest {
        let pinned = if cur.digest { current } else { candidate };
        return Verdict::Unknown(format!(
            "image `{pinned}` is pinned by digest; digests are not comparable"
        ));
    }
    if cur.repository != cand.repository {
        return Verdict::Unknown(format!(
            "repository differs: {} vs {}",
            cur.repository, cand.repository
        ));
    }
    let (Some(a), Some(b)) = (&cur.version, &cand.version) else {
        let floating = if cur.version.is_none() {
            current
        } else {
            candidate
        };
        return Verdict::Unknown(format!(
            "image `{floating}` uses the \"latest\" version; cannot compare `{current}` with `{candidate}`"
        ));
    };
    match compare_versions(a, b) {
        Some(Ordering::Less) => Verdict::Newer { note: None },
        Some(_) => Verdict::Same,
        None => Verdict::Unknown(format!("tags are not comparable: {a} vs {b}")),
    }
}
