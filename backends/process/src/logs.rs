//! Workload logs: each workload's stderr is appended to `<name>.log`, which is
//! rotated by size to `<name>.log.1` … `<name>.log.N`; [`tail`] reads the last
//! lines back across the rotated files.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use berth_runtime_api::last_lines;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tracing::warn;

/// The path of a workload's log file: `index` 0 is the current file, `i` is
/// `<name>.log.i`.
pub(crate) fn log_path(dir: &Path, name: &str, index: u32) -> PathBuf {
    if index == 0 {
        dir.join(format!("{name}.log"))
    } else {
        dir.join(format!("{name}.log.{index}"))
    }
}

/// An append-only log file that rotates itself by size.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    dir: PathBuf,
    name: String,
    max_bytes: u64,
    keep: u32,
    file: Option<tokio::fs::File>,
    size: u64,
}

impl RotatingLog {
    /// A log for workload `name` in `dir`; nothing is opened before the first
    /// write. `max_bytes` 0 never rotates; `keep` is the number of rotated
    /// files kept.
    pub(crate) fn new(dir: PathBuf, name: String, max_bytes: u64, keep: u32) -> Self {
        Self {
            dir,
            name,
            max_bytes,
            keep,
            file: None,
            size: 0,
        }
    }

    /// Appends `buf`, rotating first whenever it would not fit.
    ///
    /// A write is split at the last line break that fits, so that lines stay
    /// whole unless one line alone is longer than `max_bytes`.
    pub(crate) async fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.open().await?;
            let space =
                usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if self.max_bytes == 0 || buf.len() <= space {
                return self.append(buf).await;
            }
            match buf[..space].iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&buf[..=i]).await?;
                    buf = &buf[i + 1..];
                }
                None if self.size == 0 => {
                    self.append(&buf[..space]).await?;
                    buf = &buf[space..];
                }
                None => {}
            }
            self.rotate().await?;
        }
        Ok(())
    }

    async fn open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let path = log_path(&self.dir, &self.name, 0);
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            self.size = file.metadata().await?.len();
            self.file = Some(file);
        }
        Ok(())
    }

    async fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("opened before appending");
        file.write_all(buf).await?;
        file.flush().await?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Shifts `.i` to `.i+1` (dropping the oldest) and the current file to
    /// `.1`; with `keep` 0 the current file is deleted.
    async fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        self.size = 0;
        let current = log_path(&self.dir, &self.name, 0);
        if self.keep == 0 {
            return ignore_not_found(tokio::fs::remove_file(&current).await);
        }
        for i in (1..self.keep).rev() {
            let from = log_path(&self.dir, &self.name, i);
            let to = log_path(&self.dir, &self.name, i + 1);
            ignore_not_found(tokio::fs::rename(&from, &to).await)?;
        }
        ignore_not_found(tokio::fs::rename(&current, log_path(&self.dir, &self.name, 1)).await)
    }
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Copies everything `reader` yields into `log` until end of file.
///
/// A failing write is reported once and the rest is read and dropped, so that
/// the workload never blocks on a full pipe.
pub(crate) async fn pump(mut reader: impl AsyncRead + Unpin, mut log: RotatingLog) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut failed = false;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(err) => {
                warn!(workload = %log.name, error = %err, "Reading workload stderr failed.");
                return;
            }
        };
        if failed {
            continue;
        }
        if let Err(err) = log.write(&buf[..n]).await {
            warn!(workload = %log.name, error = %err, "Writing workload log failed; dropping the rest.");
            failed = true;
        }
    }
}

/// Returns the last `lines` lines of workload `name`'s log, oldest file first
/// (`.keep` … `.1`, then the current one); `""` when nothing was logged.
pub(crate) fn tail(dir: &Path, name: &str, keep: u32, lines: usize) -> io::Result<String> {
    if lines == 0 {
        return Ok(String::new());
    }
    // Chunks read from the end backwards, newest first.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    'files: for index in 0..=keep {
        let mut file = match std::fs::File::open(log_path(dir, name, index)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let mut pos = file.metadata()?.len();
        while pos > 0 {
            let len = pos.min(64 * 1024);
            pos -= len;
            let mut chunk = vec![0u8; usize::try_from(len).expect("chunk fits in memory")];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut chunk)?;
            newlines += chunk.iter().filter(|&&b| b == b'\n').count();
            chunks.push(chunk);
            // One more line break than lines asked for bounds the first line.
            if newlines > lines {
                break 'files;
            }
        }
    }
    let all: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    Ok(String::from_utf8_lossy(last_lines(&all, lines)).into_owned())
}

/// Deletes workload `name`'s log and every rotated file of it.
pub(crate) async fn remove_all(dir: &Path, name: &str) -> io::Result<()> {
    let current = format!("{name}.log");
    let rotated = format!("{name}.log.");
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    while let Some(entry) = entries.next_entry().await? {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let is_ours = file_name == current
            || file_name
                .strip_prefix(&rotated)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_ours {
            ignore_not_found(tokio::fs::remove_file(entry.path()).await)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| {
                let e = e.expect("entry");
                let text = std::fs::read_to_string(e.path()).expect("read log");
                (e.file_name().into_string().expect("utf-8 name"), text)
            })
            .collect();
        out.sort();
        out
    }

    /// Writes `writes` through a log with `max_bytes` and `keep` 2, then
    /// compares the files on disk with `expect`.
    async fn check(max_bytes: u64, writes: &[&str], expect: &[(&str, &str)]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = RotatingLog::new(dir.path().to_owned(), "w".into(), max_bytes, 2);
        for w in writes {
            log.write(w.as_bytes()).await.expect("write");
        }
        let want: Vec<_> = expect
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(
            files(dir.path()),
            want,
            "writes {writes:?}, max {max_bytes}"
        );
    }

    #[tokio::test]
    async fn rotation() {
        check(10, &["a\n"], &[("w.log", "a\n")]).await;
        check(
            0,
            &["aaaa\n", "bbbb\n", "cccc\n"],
            &[("w.log", "aaaa\nbbbb\ncccc\n")],
        )
        .await;
        check(10, &["aaaa\n", "bbbb\n"], &[("w.log", "aaaa\nbbbb\n")]).await;
        check(
            10,
            &["aaaa\n", "bbbb\n", "c\n"],
            &[("w.log", "c\n"), ("w.log.1", "aaaa\nbbbb\n")],
        )
        .await;
        // One write is split at the last line break that fits.
        check(
            10,
            &["aaaa\nbbbb\ncc\n"],
            &[("w.log", "cc\n"), ("w.log.1", "aaaa\nbbbb\n")],
        )
        .await;
        // A line longer than the limit is cut.
        check(
            4,
            &["abcdefghij"],
            &[("w.log", "ij"), ("w.log.1", "efgh"), ("w.log.2", "abcd")],
        )
        .await;
        // Only `keep` rotated files survive.
        check(
            3,
            &["1\n", "2\n", "3\n", "4\n", "5\n"],
            &[("w.log", "5\n"), ("w.log.1", "4\n"), ("w.log.2", "3\n")],
        )
        .await;
    }

    #[tokio::test]
    async fn appends_to_an_existing_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("w.log"), "old\n").expect("seed");
        let mut log = RotatingLog::new(dir.path().to_owned(), "w".into(), 8, 2);
        log.write(b"new\n").await.expect("write");
        log.write(b"more\n").await.expect("write");
        assert_eq!(
            files(dir.path()),
            vec![
                ("w.log".into(), "more\n".into()),
                ("w.log.1".into(), "old\nnew\n".into())
            ]
        );
    }

    #[test]
    fn tails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let tail = |n| tail(d, "w", 3, n).expect("tail");
        assert_eq!(tail(10), "", "nothing logged");

        std::fs::write(log_path(d, "w", 2), "one\ntw").expect("write");
        std::fs::write(log_path(d, "w", 1), "o\nthree\n").expect("write");
        std::fs::write(log_path(d, "w", 0), "four\nfive").expect("write");
        assert_eq!(tail(0), "");
        assert_eq!(tail(1), "five");
        assert_eq!(tail(2), "four\nfive");
        assert_eq!(
            tail(4),
            "two\nthree\nfour\nfive",
            "a line split across files"
        );
        assert_eq!(tail(100), "one\ntwo\nthree\nfour\nfive");

        std::fs::write(log_path(d, "w", 0), "four\nfive\n").expect("write");
        assert_eq!(tail(1), "five\n");
        assert_eq!(tail(3), "three\nfour\nfive\n");
    }

    #[test]
    fn tail_of_a_long_log_reads_only_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(log_path(dir.path(), "w", 0), text).expect("write");
        assert_eq!(
            tail(dir.path(), "w", 3, 2).expect("tail"),
            "line 49998\nline 49999\n"
        );
    }

    #[tokio::test]
    async fn remove_all_deletes_only_this_workload() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [
            "w.log", "w.log.1", "w.log.7", "w.log.x", "w2.log", "w2.log.1",
        ] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        remove_all(dir.path(), "w").await.expect("remove");
        let left: Vec<_> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(left, ["w.log.x", "w2.log", "w2.log.1"]);
    }
}
