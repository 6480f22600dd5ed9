//! Golden files: for every client, the four servers of [`servers`] written
//! into an empty file and into a file of the user's own
//! (`tests/golden/clients/<client>/`). The expected files are written by
//! hand from the client table of spec 5.8 and the formatting rules of the
//! writers, never captured from berth's output.
//!
//! - `empty.expected`: the file berth creates when there was none.
//! - `user.input`: the user's file (comments, servers of their own, CRLF
//!   line ends, odd indentation); `user.expected`: the same file with the
//!   four servers added. Removing them again gives back `user.input`
//!   byte for byte where the format's writer is lossless.

use std::path::PathBuf;

use super::format::{Change, Layout};
use super::table::{CLIENTS, ClientDef, Mode, Server};

/// The fixed workloads: a stdio server (proxied as streamable HTTP), an
/// SSE server, a streamable-HTTP server and a remote one, by name.
pub(super) fn servers() -> Vec<Server> {
    let s = |name: &str, url: &str, mode| Server {
        name: name.into(),
        url: url.into(),
        mode,
    };
    vec![
        s(
            "docs-remote",
            "http://127.0.0.1:23459/v1/mcp",
            Mode::Streamable,
        ),
        s("events", "http://127.0.0.1:23457/sse#events", Mode::Sse),
        s("fetch", "http://127.0.0.1:23456/mcp", Mode::Streamable),
        s("notes", "http://127.0.0.1:23458/mcp", Mode::Streamable),
    ]
}

fn dir(client: &ClientDef) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/clients")
        .join(client.id)
}

fn adds(client: &ClientDef) -> Vec<Change> {
    servers()
        .iter()
        .filter_map(|s| client.entry(s).ok().map(|e| (s.name.clone(), Some(e))))
        .collect()
}

fn removals() -> Vec<Change> {
    servers().into_iter().map(|s| (s.name, None)).collect()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether removing what was added restores the user's file exactly.
fn lossless(layout: Layout) -> bool {
    !matches!(layout, Layout::YamlMap | Layout::YamlList) || super::format::YAML_LOSSLESS
}

/// The user's file and its expectation with CRLF line ends (when they
/// have LF ones), and with a comment line first (after a BOM).
fn variants(
    client: &ClientDef,
    input: &str,
    expected: &str,
) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if !input.contains('\r') {
        let crlf = |t: &str| t.replace('\n', "\r\n");
        out.push(("user, CRLF", crlf(input), crlf(expected)));
    }
    let nl = if input.contains("\r\n") { "\r\n" } else { "\n" };
    let marker = match client.layout {
        Layout::JsonMap => "//",
        _ => "#",
    };
    let comment = |t: &str| match t.strip_prefix('\u{feff}') {
        Some(rest) => format!("\u{feff}{marker} kept by berth{nl}{rest}"),
        None => format!("{marker} kept by berth{nl}{t}"),
    };
    out.push(("user, comment first", comment(input), comment(expected)));
    out
}

#[test]
fn every_client_writes_its_golden_files() {
    let mut failures = Vec::new();
    for client in CLIENTS {
        // One client's panic is reported with the others' results.
        let one = std::panic::catch_unwind(|| check_client(client));
        match one {
            Ok(mut f) => failures.append(&mut f),
            Err(_) => failures.push(format!("{}: panicked", client.id)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check_client(client: &ClientDef) -> Vec<String> {
    let mut failures = Vec::new();
    {
        let dir = dir(client);
        let key = client.servers_key;
        let check = |what: &str, got: Result<String, _>, want: &str, failures: &mut Vec<String>| {
            match got {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{} {what}: differs\n--- want\n{want}\n--- got\n{got}",
                    client.id
                )),
                Err(e) => failures.push(format!("{} {what}: {e}", client.id)),
            }
        };
        let empty = client.layout.apply("", key, &adds(client));
        check(
            "empty",
            empty,
            &read(dir.join("empty.expected")),
            &mut failures,
        );
        let input = read(dir.join("user.input"));
        let expected = read(dir.join("user.expected"));
        check(
            "user",
            client.layout.apply(&input, key, &adds(client)),
            &expected,
            &mut failures,
        );
        // Variants of the hand-written pair, made by the same mechanical
        // change on both sides: every client's file also with CRLF line
        // ends and with a comment line of the user's at the top.
        for (what, input, expected) in variants(client, &input, &expected) {
            check(
                what,
                client.layout.apply(&input, key, &adds(client)),
                &expected,
                &mut failures,
            );
        }
        // A file without the servers key keeps the (empty) key berth added.
        let had_key = client
            .layout
            .entries(&input, key)
            .is_ok_and(|e| !e.is_empty())
            || input.contains(key);
        if lossless(client.layout) && had_key {
            check(
                "user, removed again",
                client.layout.apply(&expected, key, &removals()),
                &input,
                &mut failures,
            );
        }
        // What berth reads back is what it wrote.
        match client.layout.entries(&expected, key) {
            Ok(found) => {
                for (name, entry) in adds(client) {
                    let want = serde_json::Value::Object(entry.expect("added"));
                    if found.get(&name) != Some(&want) {
                        failures.push(format!(
                            "{} reads back {name} as {:?}, wrote {want}",
                            client.id,
                            found.get(&name)
                        ));
                    }
                }
            }
            Err(e) => failures.push(format!("{} entries: {e}", client.id)),
        }
    }
    failures
}
