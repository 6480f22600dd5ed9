//! Status bookkeeping and berth's own log of each workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_runtime_api::WorkloadName;
use time::OffsetDateTime;
use tracing::warn;

use super::types::{Desired, StatusRecord, WorkloadStatus, rfc3339};
use super::*;
use crate::state::{Kind, Store};
use tokio::sync::{mpsc, oneshot};

/// Size at which berth's own per-workload log is rotated.
pub(super) const WORKLOAD_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;

impl Workloads {
    pub(super) fn bump_generation(&self, name: &WorkloadName) -> u64 {
        let mut table = self.table();
        match table.get_mut(name) {
            Some(e) => {
                e.generation += 1;
                e.since = Some(std::time::Instant::now());
                e.generation
            }
            None => 0,
        }
    }

    pub(super) fn update(&self, name: &WorkloadName, f: impl FnOnce(&mut StatusRecord)) {
        let mut table = self.table();
        let Some(e) = table.get_mut(name) else { return };
        let mut next = e.status.clone();
        f(&mut next);
        next.updated_at = now();
        if let Err(err) = self.inner.store.write(Kind::Status, name.as_str(), &next) {
            tracing::error!(workload = %name, error = %error_chain(&err), "Cannot persist a workload status.");
        }
        e.status = next;
        drop(table);
        self.changed();
    }

    pub(super) fn set_status(
        &self,
        name: &WorkloadName,
        status: WorkloadStatus,
        context: String,
        started_at: Option<OffsetDateTime>,
    ) {
        self.update(name, |s| {
            s.status = status;
            s.status_context = context;
            if started_at.is_some() || status != WorkloadStatus::Running {
                s.started_at = started_at;
            }
        });
    }

    pub(super) fn set_context(&self, name: &WorkloadName, context: String) {
        self.update(name, |s| s.status_context = context);
    }

    pub(super) fn set_desired(&self, name: &WorkloadName, desired: Desired) {
        self.update(name, |s| s.desired = desired);
    }

    /// Appends a line to berth's own log of the workload (never blocks:
    /// the journal writes in the background).
    pub(super) fn wlog(&self, name: &WorkloadName, line: &str) {
        self.inner.journal.append(name, line);
    }
}

/// berth's own log of each workload: lifecycle events and proxy messages,
/// one line each, written by one background task so that no caller waits
/// for the disk. Lines wait in a bounded queue; when it is full a line is
/// dropped and the next written line says how many were.
pub(super) struct Journal {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Line(WorkloadName, String),
    /// Every line queued before this one is written.
    Flush(oneshot::Sender<()>),
    /// Deletes the workload's log files.
    Remove(WorkloadName, oneshot::Sender<()>),
}

/// Lines that may wait for the writer.
const QUEUE: usize = 8192;

impl Journal {
    /// Starts the writer; files live where `store` says.
    pub(super) fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, rx, dropped.clone()));
        Self { tx, dropped }
    }

    fn append(&self, name: &WorkloadName, line: &str) {
        // One event, one line, whatever the event quotes; stamped now, not
        // when it is written.
        let line = format!(
            "{} {}",
            rfc3339(Some(now())),
            crate::logging::escape_controls(line)
        );
        if self.tx.try_send(Msg::Line(name.clone(), line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every line appended so far is on disk.
    pub(super) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Deletes a workload's log, after the lines queued for it.
    pub(super) async fn remove(&self, name: &WorkloadName) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Remove(name.clone(), done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) {
    // The workload last written to: a note about dropped lines goes there.
    let mut last: Option<WorkloadName> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Line(name, line) => {
                if let Err(err) = append_line(&store, &name, &line).await {
                    warn!(workload = %name, error = %err, "Cannot write the workload log.");
                }
                last = Some(name);
                // Caught up: say what could not be queued meanwhile.
                if rx.is_empty() {
                    note_dropped(&store, last.as_ref(), &dropped).await;
                }
            }
            Msg::Flush(done) => {
                note_dropped(&store, last.as_ref(), &dropped).await;
                let _ = done.send(());
            }
            Msg::Remove(name, done) => {
                let log = store.workload_log(name.as_str());
                let _ = tokio::fs::remove_file(log.with_extension("log.1")).await;
                let _ = tokio::fs::remove_file(log).await;
                if last.as_ref() == Some(&name) {
                    last = None;
                }
                let _ = done.send(());
            }
        }
    }
}

async fn note_dropped(store: &Store, last: Option<&WorkloadName>, dropped: &AtomicU64) {
    let Some(name) = last else { return };
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let note = format!(
            "{} ({lost} log lines of berth's workloads were dropped: the journal could not keep up)",
            rfc3339(Some(now()))
        );
        let _ = append_line(store, name, &note).await;
    }
}

async fn append_line(store: &Store, name: &WorkloadName, line: &str) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let path = store.workload_log(name.as_str());
    if tokio::fs::metadata(&path)
        .await
        .is_ok_and(|m| m.len() > WORKLOAD_LOG_MAX_BYTES)
    {
        tokio::fs::rename(&path, path.with_extension("log.1")).await?;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await?;
    f.write_all(format!("{line}\n").as_bytes()).await?;
    // A tokio file writes in the background: done means on the file.
    f.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> WorkloadName {
        WorkloadName::parse(n).expect("name")
    }

    // One thread: the writer runs only when the test awaits, so the queue
    // fills deterministically.
    #[tokio::test(flavor = "current_thread")]
    async fn lines_keep_their_order_and_an_overflow_is_counted_not_blocked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let journal = Journal::start(store.clone());
        let w = name("w");
        for i in 0..QUEUE + 5 {
            journal.append(&w, &format!("line {i}"));
        }
        journal.append(&w, "evil\nINJECTED");
        journal.flush().await;
        journal.append(&w, "after");
        journal.flush().await;
        let text = std::fs::read_to_string(store.workload_log("w")).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            QUEUE + 2,
            "the queue's lines, the note, `after`: {:?}",
            &lines[lines.len().saturating_sub(3)..]
        );
        assert!(lines[0].ends_with(" line 0"), "{}", lines[0]);
        assert!(lines[QUEUE - 1].ends_with(&format!(" line {}", QUEUE - 1)));
        // The writer says what it dropped once it has caught up.
        assert!(lines[QUEUE].contains("6 log lines"), "{}", lines[QUEUE]);
        assert!(lines[QUEUE + 1].ends_with(" after"));
        assert!(!text.contains("\nINJECTED"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn remove_deletes_after_the_queued_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let journal = Journal::start(store.clone());
        journal.append(&name("w"), "one");
        journal.remove(&name("w")).await;
        assert!(!store.workload_log("w").exists());
        journal.append(&name("w"), "new life");
        journal.flush().await;
        let text = std::fs::read_to_string(store.workload_log("w")).expect("log");
        assert_eq!(text.lines().count(), 1, "{text:?}");
    }
}
