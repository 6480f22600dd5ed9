//! Turns a workload's image (`npx://`, `uvx://`, `exec://`) into the argv to
//! run, and enforces `process.allowed_commands`.

use std::path::Path;

use berth_runtime_api::RuntimeError;

use crate::ProcessConfig;

/// What to execute for a workload: a program and its arguments, never a shell
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// The program: a name looked up in the child's `PATH`, or a path.
    pub(crate) program: String,
    /// Its arguments, after the program name.
    pub(crate) args: Vec<String>,
}

/// Resolves `image` and `args` to an [`Invocation`], or explains why this
/// backend cannot run them.
pub(crate) fn resolve(
    config: &ProcessConfig,
    image: &str,
    args: &[String],
) -> Result<Invocation, RuntimeError> {
    let invalid = |msg: String| Err(RuntimeError::InvalidSpec(msg));
    let (command, program, mut argv) = if let Some(package) = image.strip_prefix("npx://") {
        check_package("npx", package)?;
        let argv = vec!["-y".to_owned(), package.to_owned()];
        ("npx", config.npx_command.as_str(), argv)
    } else if let Some(package) = image.strip_prefix("uvx://") {
        check_package("uvx", package)?;
        ("uvx", config.uvx_command.as_str(), vec![package.to_owned()])
    } else if let Some(path) = image.strip_prefix("exec://") {
        if path.is_empty() {
            return invalid("image `exec://` names no program".to_owned());
        }
        if !Path::new(path).is_absolute() {
            return invalid(format!(
                "exec:// needs an absolute path, not `{path}` (write `exec:///path/to/program`)"
            ));
        }
        (path, path, Vec::new())
    } else {
        return invalid(format!(
            "the process backend runs npx://, uvx:// and exec:// images, not `{image}`"
        ));
    };

    if !config.allowed_commands.is_empty() && !config.allowed_commands.iter().any(|c| c == command)
    {
        return invalid(format!(
            "command `{command}` is not in process.allowed_commands"
        ));
    }

    if image.starts_with("exec://") {
        match std::fs::metadata(program) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return invalid(format!("`{program}` is not a file")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return invalid(format!("`{program}` does not exist"));
            }
            Err(err) => return invalid(format!("cannot use `{program}`: {err}")),
        }
    }

    argv.extend(args.iter().cloned());
    Ok(Invocation {
        program: program.to_owned(),
        args: argv,
    })
}

/// Refuses a package spec that is empty or would be read as an option.
fn check_package(scheme: &str, package: &str) -> Result<(), RuntimeError> {
    if package.is_empty() {
        return Err(RuntimeError::InvalidSpec(format!(
            "image `{scheme}://` names no package"
        )));
    }
    if package.starts_with('-') {
        return Err(RuntimeError::InvalidSpec(format!(
            "package `{package}` cannot start with `-`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `input` (`image arg arg …`) with `allowed` as the allowlist
    /// and compares with `expect`: `program arg arg …`, or `error: message`.
    fn check(allowed: &[&str], input: &str, expect: &str) {
        let config = ProcessConfig {
            allowed_commands: allowed.iter().map(|s| (*s).to_owned()).collect(),
            npx_command: "/opt/node/bin/npx".to_owned(),
            ..ProcessConfig::default()
        };
        let mut words = input.split(' ');
        let image = words.next().expect("an image");
        let args: Vec<String> = words.map(str::to_owned).collect();
        let got = match resolve(&config, image, &args) {
            Ok(inv) => std::iter::once(inv.program)
                .chain(inv.args)
                .collect::<Vec<_>>()
                .join(" "),
            Err(RuntimeError::InvalidSpec(msg)) => format!("error: {msg}"),
            Err(other) => panic!("unexpected error kind: {other:?}"),
        };
        assert_eq!(got, expect, "input {input:?}, allowed {allowed:?}");
    }

    #[test]
    fn schemes() {
        check(
            &[],
            "npx://@modelcontextprotocol/server-everything",
            "/opt/node/bin/npx -y @modelcontextprotocol/server-everything",
        );
        check(
            &[],
            "npx://pkg@1.2.3 --flag value",
            "/opt/node/bin/npx -y pkg@1.2.3 --flag value",
        );
        check(
            &[],
            "uvx://mcp-server-fetch --ignore-robots-txt",
            "uvx mcp-server-fetch --ignore-robots-txt",
        );
        check(&[], "exec:///bin/sh -c exit", "/bin/sh -c exit");
        check(&[], "exec:///bin/cat", "/bin/cat");
    }

    #[test]
    fn invalid_images() {
        check(
            &[],
            "ghcr.io/x/y:1",
            "error: the process backend runs npx://, uvx:// and exec:// images, not `ghcr.io/x/y:1`",
        );
        check(
            &[],
            "docker://x",
            "error: the process backend runs npx://, uvx:// and exec:// images, not `docker://x`",
        );
        check(&[], "npx://", "error: image `npx://` names no package");
        check(&[], "uvx://", "error: image `uvx://` names no package");
        check(
            &[],
            "npx://--registry=evil",
            "error: package `--registry=evil` cannot start with `-`",
        );
        check(&[], "exec://", "error: image `exec://` names no program");
        check(
            &[],
            "exec://bin/sh",
            "error: exec:// needs an absolute path, not `bin/sh` (write `exec:///path/to/program`)",
        );
        check(
            &[],
            "exec:///nonexistent/berth-test",
            "error: `/nonexistent/berth-test` does not exist",
        );
        check(&[], "exec:///", "error: `/` is not a file");
    }

    #[test]
    fn allowlist() {
        check(&["npx"], "npx://pkg", "/opt/node/bin/npx -y pkg");
        check(
            &["npx"],
            "uvx://pkg",
            "error: command `uvx` is not in process.allowed_commands",
        );
        check(
            &["npx"],
            "exec:///bin/cat",
            "error: command `/bin/cat` is not in process.allowed_commands",
        );
        check(&["/bin/cat"], "exec:///bin/cat", "/bin/cat");
        check(
            &["/bin/cat"],
            "exec:///bin/../bin/cat",
            "error: command `/bin/../bin/cat` is not in process.allowed_commands",
        );
        check(
            &["cat"],
            "exec:///bin/cat",
            "error: command `/bin/cat` is not in process.allowed_commands",
        );
        check(
            &["/opt/node/bin/npx"],
            "npx://pkg",
            "error: command `npx` is not in process.allowed_commands",
        );
        check(
            &["uvx"],
            "exec:///nonexistent/x",
            "error: command `/nonexistent/x` is not in process.allowed_commands",
        );
    }
}
