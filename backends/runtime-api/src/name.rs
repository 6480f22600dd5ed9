//! Workload names: validated once, when parsed.

use std::fmt;

/// The longest workload name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// A valid workload name.
///
/// The rules are ToolHive's (`[A-Za-z0-9._-]`, 1–100 bytes, no path tricks)
/// plus one more that every runtime needs: the first character is a letter or
/// a digit, so a name is also a valid container name, file name and URL path
/// segment. `upgrade-check` is reserved because it is a route of its own.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct WorkloadName(String);

/// Why a string is not a valid workload name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(&'static str);

impl WorkloadName {
    /// Parses and validates a workload name.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let fail = |why| Err(InvalidName(why));
        if name.is_empty() {
            return fail("workload name cannot be empty");
        }
        if name.contains('\0') {
            return fail("workload name contains null bytes");
        }
        if name.starts_with("..") || name.contains('/') || name.contains('\\') {
            return fail("workload name contains path traversal");
        }
        if name
            .chars()
            .any(|c| matches!(c, '$' | '&' | ';' | '|' | '`'))
        {
            return fail("workload name contains potentially dangerous characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return fail(
                "workload name can only contain alphanumeric characters, dots, hyphens, and underscores",
            );
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return fail("workload name must start with a letter or a digit");
        }
        if name.len() > MAX_NAME_LEN {
            return fail("workload name too long (max 100 characters)");
        }
        if name == "upgrade-check" {
            return fail("workload name `upgrade-check` is reserved");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for WorkloadName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for WorkloadName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(), &str>) {
        let got = WorkloadName::parse(input).map(|_| ()).map_err(|e| e.0);
        assert_eq!(got, expect, "input {input:?}");
    }

    #[test]
    fn names() {
        check("fetch", Ok(()));
        check("A.b_c-9", Ok(()));
        check("a", Ok(()));
        check(&"x".repeat(100), Ok(()));
        check("", Err("workload name cannot be empty"));
        check("a\0b", Err("workload name contains null bytes"));
        check("../x", Err("workload name contains path traversal"));
        check("..foo", Err("workload name contains path traversal"));
        check("a/b", Err("workload name contains path traversal"));
        check(
            "a$b",
            Err("workload name contains potentially dangerous characters"),
        );
        check(
            "a b",
            Err(
                "workload name can only contain alphanumeric characters, dots, hyphens, and underscores",
            ),
        );
        check(
            "é",
            Err(
                "workload name can only contain alphanumeric characters, dots, hyphens, and underscores",
            ),
        );
        check(
            ".x",
            Err("workload name must start with a letter or a digit"),
        );
        check(
            "-x",
            Err("workload name must start with a letter or a digit"),
        );
        check(
            &"x".repeat(101),
            Err("workload name too long (max 100 characters)"),
        );
        check(
            "upgrade-check",
            Err("workload name `upgrade-check` is reserved"),
        );
    }
}
