//! Status bookkeeping and berth's own log of each workload.

use std::fs;
use std::io::Write;

use berth_runtime_api::WorkloadName;
use time::OffsetDateTime;
use tracing::warn;

use super::types::{Desired, StatusRecord, WorkloadStatus, rfc3339};
use super::*;
use crate::state::Kind;

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

    /// Appends a line to berth's own log of the workload.
    pub(super) fn wlog(&self, name: &WorkloadName, line: &str) {
        let path = self.inner.store.workload_log(name.as_str());
        if fs::metadata(&path).is_ok_and(|m| m.len() > WORKLOAD_LOG_MAX_BYTES) {
            let _ = fs::rename(&path, path.with_extension("log.1"));
        }
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                // One event, one line, whatever the event quotes.
                let line = crate::logging::escape_controls(line);
                writeln!(f, "{} {line}", rfc3339(Some(now())))
            });
        if let Err(err) = written {
            warn!(workload = %name, error = %err, "Cannot write the workload log.");
        }
    }
}
