//! Log lines that a request cannot forge: every control character inside
//! one log record (a newline in an image name, an error message quoting a
//! request) is written escaped, so one record is always one line.

use std::io::{self, Write};

/// Escapes `\n`, `\r` and other control characters (tab excepted) in `text`.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.into()
}

/// Libraries that write whole request bodies at debug level: bollard
/// writes every Docker API body, a container's environment (so its
/// secrets) included.
pub const BODY_LOGGING_TARGETS: &[&str] = &["bollard", "podman_api", "containers_api"];

/// Whether a log record may be written: nothing above INFO from
/// [`BODY_LOGGING_TARGETS`], whatever `RUST_LOG` asks for.
pub fn keeps(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() <= tracing::Level::INFO
        || !BODY_LOGGING_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// A writer for `tracing_subscriber::fmt` that keeps each record on one
/// line: the formatter writes a record, ending in one newline, per
/// `write` call; newlines and other control characters before that end
/// are escaped.
#[derive(Debug)]
pub struct OneLine<W>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let text = String::from_utf8_lossy(body);
        // ANSI colour codes (ESC) are the formatter's own: keep them.
        let escaped: String = text
            .split('\u{1b}')
            .enumerate()
            .map(|(i, part)| {
                let part = escape_controls(part);
                if i == 0 {
                    part.into_owned()
                } else {
                    format!("\u{1b}{part}")
                }
            })
            .collect();
        let mut line = escaped.into_bytes();
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// An error and its sources, `outer: inner: root`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn request_bodies_of_libraries_never_reach_the_log() {
        use tracing_subscriber::prelude::*;
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(tracing_subscriber::filter::filter_fn(keeps))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "bollard::docker", "{{\"Env\":[\"T=body-secret\"]}}");
            tracing::trace!(target: "bollard", "bare-secret");
            tracing::debug!(target: "podman_api::api", "podman-secret");
            tracing::info!(target: "bollard::docker", "info-kept");
            tracing::debug!(target: "bollardish", "lookalike-kept");
            tracing::debug!(target: "berth::workloads", "berth-debug-kept");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        for gone in ["body-secret", "bare-secret", "podman-secret"] {
            assert!(!text.contains(gone), "{gone}: {text}");
        }
        for kept in ["info-kept", "lookalike-kept", "berth-debug-kept"] {
            assert!(text.contains(kept), "{kept}: {text}");
        }
    }

    #[test]
    fn a_record_stays_one_line() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO image=exec:///x\nERROR forged: yes\r\n")
            .expect("write");
        out.write_all(b"INFO next\n").expect("write");
        let text = String::from_utf8(out.0).expect("utf-8");
        assert_eq!(
            text,
            "INFO image=exec:///x\\nERROR forged: yes\\r\nINFO next\n"
        );
        assert_eq!(text.lines().count(), 2);
        assert_eq!(escape_controls("a\u{7}b\tc"), "a\\u{7}b\tc");
        assert_eq!(escape_controls("plain"), "plain");
    }
}
