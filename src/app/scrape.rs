//! What `/metrics` and the per-workload stats read: the workloads, their
//! proxies, runtimes and plugins, gathered at one moment.

use crate::telemetry::expose::{OwnProcess, Scrape, WorkloadSample};
use crate::telemetry::{UsageView, WorkloadStats};
use crate::workloads::WorkloadError;
use crate::workloads::types::{WorkloadStatus, WorkloadView};

use super::App;

impl App {
    /// Everything `/metrics` shows, read now.
    pub async fn scrape(&self) -> Scrape {
        let views = self.workloads.list(true, None).unwrap_or_default();
        let metrics = self.telemetry.metrics.as_ref();
        // A workload deleted since the last scrape is forgotten.
        if let Some(m) = metrics {
            m.retain(|name| views.iter().any(|v| v.name == name));
        }
        let mut workloads = Vec::with_capacity(views.len());
        for v in views {
            workloads.push(self.sample(v).await);
        }
        let process = tokio::task::spawn_blocking(OwnProcess::read)
            .await
            .ok()
            .flatten();
        Scrape {
            workloads,
            plugins: self
                .plugins
                .as_ref()
                .map(|p| p.samples())
                .unwrap_or_default(),
            process,
            traces: self.telemetry.tracer.as_ref().map(|t| t.stats()),
        }
    }

    /// One workload's numbers.
    pub async fn workload_stats(&self, name: &str) -> Result<WorkloadStats, WorkloadError> {
        let view = self.workloads.workload(name)?;
        let s = self.sample(view).await;
        Ok(WorkloadStats {
            restart_count: u32::try_from(s.restarts).unwrap_or(u32::MAX),
            status: s.status.to_owned(),
            sessions: s.sessions,
            usage: s.usage.map(UsageView::from),
            proxy: s.metrics.map(|m| m.snapshot()),
            name: s.name,
        })
    }

    async fn sample(&self, v: WorkloadView) -> WorkloadSample {
        let metrics = self.telemetry.metrics.as_ref().and_then(|m| m.get(&v.name));
        let running = v.status == WorkloadStatus::Running;
        let sessions = match self.proxies.mux(&v.name) {
            Some(mux) => Some(mux.session_count()),
            None => metrics.as_ref().map(|m| m.http_sessions()),
        };
        let usage = if running {
            self.workloads.usage(&v.name).await.ok().flatten()
        } else {
            None
        };
        WorkloadSample {
            status: v.status.as_str(),
            restarts: u64::from(v.restart_count),
            sessions: if running { sessions } else { None },
            usage,
            metrics,
            name: v.name,
        }
    }
}
