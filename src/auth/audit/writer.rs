//! The audit writer: each workload's events go to its own JSON-lines file,
//! `<dir>/<workload>.audit.jsonl`, and to the operator's global sink if
//! one is configured. One background task writes, so that no request waits
//! for the disk; events wait in a bounded queue.
//!
//! Files are created with mode 0600 in a directory created 0700, opened
//! append-only and without following a symlink (one planted in place of a
//! file is refused, its target untouched), and must be regular files with
//! a single link. A workload's file is rotated at 10 MiB to
//! `<workload>.audit.jsonl.1` (one old file kept); the sink is not rotated
//! (it is reopened for every batch, so an external logrotate works).
//!
//! A lost event is never silent: a full queue or a failed write is counted
//! ([`AuditLog::failures`]) and logged at most once per 10 s with the count.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Size at which a workload's audit file is rotated.
const ROTATE_AT: u64 = 10 * 1024 * 1024;

/// Events that may wait for the writer.
pub(super) const QUEUE: usize = 4096;

/// Bytes of events that may wait for the writer (bodies can be large).
const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Events written with one opening of each file, at most.
const BATCH: usize = 512;

/// Bytes written with one opening of each file, at most (about).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Lost events are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What names a workload's file.
const SUFFIX: &str = ".audit.jsonl";

/// Where audit lines go: each workload's own audit log file and,
/// optionally, a global sink file.
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

enum Msg {
    Line {
        workload: String,
        line: String,
    },
    /// Every line queued before this one is written.
    Flush(oneshot::Sender<()>),
    /// The last lines of a workload's files.
    Tail {
        workload: String,
        n: usize,
        done: oneshot::Sender<io::Result<String>>,
    },
    /// Deletes a workload's files.
    Remove(String, oneshot::Sender<()>),
}

/// What the callers and the writer share.
struct Shared {
    failures: Failures,
    /// Bytes of the lines in the queue.
    queued: AtomicUsize,
}

impl AuditLog {
    /// `dir`: directory for per-workload files `<dir>/<workload>.audit.jsonl`
    /// (created 0700 if missing; files created 0600, append-only,
    /// `O_NOFOLLOW`: a symlink planted in place of a file is refused);
    /// `sink`: optional path of a global JSON-lines file (same rules; it is
    /// configured by the operator in berth.toml, not by API callers),
    /// opened once here so that a bad path fails now.
    ///
    /// Starts the writer task: must be called inside a tokio runtime (an
    /// error otherwise).
    pub fn new(dir: PathBuf, sink: Option<PathBuf>) -> Result<Self, io::Error> {
        Self::start(dir, sink, ROTATE_AT)
    }

    /// [`AuditLog::new`] with the rotation size given (tests).
    pub(super) fn start(dir: PathBuf, sink: Option<PathBuf>, rotate_at: u64) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        if let Some(sink) = &sink {
            open_append(sink)?;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            failures: Failures::default(),
            queued: AtomicUsize::new(0),
        });
        let files = Arc::new(Files {
            dir,
            sink,
            rotate_at,
        });
        runtime.spawn(write_loop(files, rx, shared.clone()));
        Ok(Self { tx, shared })
    }

    /// Queues one event line for workload `workload` (never blocks the
    /// request). A full queue, a name that could leave the directory
    /// (containing `/`, starting with `.`) or a write that fails later is
    /// counted in [`AuditLog::failures`] and logged.
    pub fn write(&self, workload: &str, event: &Value) {
        if !valid_name(workload) {
            self.shared
                .failures
                .record(1, "invalid workload name".into());
            return;
        }
        let line = match serde_json::to_string(event) {
            Ok(line) => line,
            Err(err) => {
                self.shared.failures.record(1, err.to_string());
                return;
            }
        };
        let len = line.len();
        if self.shared.queued.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            self.shared
                .failures
                .record(1, "the audit queue is full".into());
            return;
        }
        let msg = Msg::Line {
            workload: workload.to_owned(),
            line,
        };
        if let Err(err) = self.tx.try_send(msg) {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            let why = match err {
                mpsc::error::TrySendError::Full(_) => "the audit queue is full",
                mpsc::error::TrySendError::Closed(_) => "the audit writer stopped",
            };
            self.shared.failures.record(1, why.into());
        }
    }

    /// Events lost so far: refused by [`AuditLog::write`], or not written
    /// to a file they were meant for (one count per event and file).
    pub fn failures(&self) -> u64 {
        self.shared.failures.total.load(Ordering::Relaxed)
    }

    /// The last `n` lines of the workload's audit file (and of its rotated
    /// predecessor), oldest first, each ending with a newline; "" if none.
    /// Lines queued before the call are included.
    pub async fn tail(&self, workload: &str, n: usize) -> io::Result<String> {
        if !valid_name(workload) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid workload name",
            ));
        }
        let (done, wait) = oneshot::channel();
        let msg = Msg::Tail {
            workload: workload.to_owned(),
            n,
            done,
        };
        self.tx.send(msg).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }

    /// Waits until every line queued so far is written (tests, shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Deletes a workload's audit files (when the workload is deleted),
    /// after the lines queued for it.
    pub async fn remove(&self, workload: &str) {
        if !valid_name(workload) {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Msg::Remove(workload.to_owned(), done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the audit writer stopped")
}

/// Whether `name` can name a file inside the directory.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0'])
}

// === impl Failures ===

/// Lost events: a total, and the count not yet logged.
#[derive(Default)]
pub(super) struct Failures {
    total: AtomicU64,
    unreported: AtomicU64,
    /// When the last warning was logged, and the last reason seen.
    state: Mutex<(Option<Instant>, String)>,
}

impl Failures {
    fn record(&self, n: u64, why: String) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.unreported.fetch_add(n, Ordering::Relaxed);
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = why;
        self.warn_if_due(Instant::now());
    }

    fn warn_if_due(&self, now: Instant) {
        if let Some((count, why)) = self.due(now) {
            tracing::warn!(count, error = %why, "Audit events were lost.");
        }
    }

    /// The count to log now and the last reason, if any is unlogged and
    /// the last warning is [`WARN_EVERY`] old.
    pub(super) fn due(&self, now: Instant) -> Option<(u64, String)> {
        if self.unreported.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .0
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            return None;
        }
        state.0 = Some(now);
        let count = self.unreported.swap(0, Ordering::Relaxed);
        (count > 0).then(|| (count, state.1.clone()))
    }

    /// How long until unlogged failures may be logged; `None` if there are
    /// none.
    fn wait(&self, now: Instant) -> Option<Duration> {
        if self.unreported.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Some(state.0.map_or(Duration::ZERO, |t| {
            WARN_EVERY.saturating_sub(now.saturating_duration_since(t))
        }))
    }

    #[cfg(test)]
    pub(super) fn record_quietly(&self, n: u64, why: &str) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.unreported.fetch_add(n, Ordering::Relaxed);
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = why.to_owned();
    }
}

// === The writer task ===

async fn write_loop(files: Arc<Files>, mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>) {
    // A message taken while gathering a batch, handled next.
    let mut next: Option<Msg> = None;
    loop {
        let msg = match next.take() {
            Some(msg) => msg,
            None => {
                // Unlogged failures are logged when their time comes, even
                // if no other event arrives.
                let wait = shared.failures.wait(Instant::now());
                let received = match wait {
                    Some(wait) => match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(received) => received,
                        Err(_) => {
                            shared.failures.warn_if_due(Instant::now());
                            continue;
                        }
                    },
                    None => rx.recv().await,
                };
                match received {
                    Some(msg) => msg,
                    None => break,
                }
            }
        };
        match msg {
            Msg::Line { workload, line } => {
                let mut bytes = line.len();
                let mut batch = vec![(workload, line)];
                while batch.len() < BATCH && bytes < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(Msg::Line { workload, line }) => {
                            bytes += line.len();
                            batch.push((workload, line));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let lines = batch.len() as u64;
                let f = files.clone();
                let lost = tokio::task::spawn_blocking(move || f.write_batch(&batch))
                    .await
                    .unwrap_or_else(|err| vec![(lines, err.to_string())]);
                shared.queued.fetch_sub(bytes, Ordering::Relaxed);
                for (n, why) in lost {
                    shared.failures.record(n, why);
                }
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
            Msg::Tail { workload, n, done } => {
                let f = files.clone();
                let text = tokio::task::spawn_blocking(move || f.tail(&workload, n))
                    .await
                    .unwrap_or_else(|err| Err(io::Error::other(err)));
                let _ = done.send(text);
            }
            Msg::Remove(workload, done) => {
                let f = files.clone();
                let _ = tokio::task::spawn_blocking(move || f.remove(&workload)).await;
                let _ = done.send(());
            }
        }
    }
}

// === impl Files ===

/// The files, as the writer task sees them.
struct Files {
    dir: PathBuf,
    sink: Option<PathBuf>,
    rotate_at: u64,
}

impl Files {
    fn path(&self, workload: &str) -> PathBuf {
        self.dir.join(format!("{workload}{SUFFIX}"))
    }

    /// Writes `batch` (workload, line); returns the lines lost and why.
    fn write_batch(&self, batch: &[(String, String)]) -> Vec<(u64, String)> {
        let mut lost = Vec::new();
        let mut per_file: HashMap<&str, (u64, Vec<u8>)> = HashMap::new();
        let mut all = Vec::new();
        for (workload, line) in batch {
            let entry = per_file.entry(workload.as_str()).or_default();
            entry.0 += 1;
            entry.1.extend_from_slice(line.as_bytes());
            entry.1.push(b'\n');
            if self.sink.is_some() {
                all.extend_from_slice(line.as_bytes());
                all.push(b'\n');
            }
        }
        for (workload, (n, bytes)) in per_file {
            let written = if valid_name(workload) {
                self.append_rotating(&self.path(workload), &bytes)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "invalid workload name",
                ))
            };
            if let Err(err) = written {
                lost.push((n, format!("{workload}: {err}")));
            }
        }
        if let Some(sink) = &self.sink
            && let Err(err) = open_append(sink).and_then(|mut f| f.write_all(&all))
        {
            lost.push((batch.len() as u64, format!("sink: {err}")));
        }
        lost
    }

    fn append_rotating(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = open_append(path)?;
        if f.metadata()?.len() >= self.rotate_at {
            std::fs::rename(path, rotated(path))?;
            f = open_append(path)?;
        }
        f.write_all(bytes)
    }

    fn tail(&self, workload: &str, n: usize) -> io::Result<String> {
        let path = self.path(workload);
        let mut lines = last_lines(&path, n)?;
        if lines.len() < n {
            let mut older = last_lines(&rotated(&path), n - lines.len())?;
            older.append(&mut lines);
            lines = older;
        }
        let mut text = String::new();
        for line in lines {
            text.push_str(&String::from_utf8_lossy(&line));
            text.push('\n');
        }
        Ok(text)
    }

    fn remove(&self, workload: &str) {
        let path = self.path(workload);
        for p in [rotated(&path), path] {
            if let Err(err) = std::fs::remove_file(&p)
                && err.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(workload, error = %err, "Cannot delete a workload's audit file.");
            }
        }
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Opens `path` to append, creating it with mode 0600; refuses a symlink,
/// anything but a regular file, and a file with other links (a hard link
/// planted to another file). A file readable by others is made 0600.
fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.nlink() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the file has other links",
        ));
    }
    if meta.mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// The last `n` lines of `path` (without their newlines), read from its
/// end; none if it does not exist.
pub(super) fn last_lines(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    const CHUNK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut pos = f.metadata()?.len();
    // Chunks read, the last one first, and the newlines they hold.
    let (mut chunks, mut newlines) = (Vec::new(), 0);
    // More than `n` newlines: the last `n` lines are complete.
    while pos > 0 && newlines <= n {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0; usize::try_from(pos - start).unwrap_or(0)];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
        pos = start;
    }
    chunks.reverse();
    let buf = chunks.concat();
    let mut lines: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    // The empty piece after the last newline.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| l.to_vec()).collect())
}
