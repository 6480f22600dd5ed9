//! The one place that names concrete backends: configuration → `Arc<dyn Backend>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_backend_process::ProcessBackend;
use berth_runtime_api::{Backend, RuntimeError};

use crate::config::{Config, RuntimeKind};

/// Builds the backend `config.runtime` selects. `auto` picks the first
/// runtime that answers; today that is always the process backend.
/// `base_env` is what native children inherit (PATH, HOME, locale).
pub async fn build(
    config: &Config,
    state_dir: &Path,
    base_env: BTreeMap<String, String>,
) -> Result<Arc<dyn Backend>, RuntimeError> {
    match config.runtime {
        RuntimeKind::Auto | RuntimeKind::Process => {
            let backend =
                ProcessBackend::new(config.process.clone(), state_dir.join("process"), base_env)
                    .await?;
            Ok(Arc::new(backend))
        }
    }
}
