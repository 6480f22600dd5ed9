//! Images: the workload's own, pulled as the pull policy says, and package
//! images (`npx://`, `uvx://`), built through the engine's build API from
//! the in-memory context of a [`Recipe`] by berth-container's
//! [`PackageImages`](berth_container::PackageImages) flow.

use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use async_trait::async_trait;
use berth_container::{BuildFailure, ImageEngine, ImageFacts, Recipe, Scheme};
use berth_runtime_api::{BoxError, Progress, RuntimeError, WorkloadName, WorkloadSpec};
use bollard::errors::Error as EngineError;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::error::{self, Class, classify};
use crate::{DockerBackend, PullPolicy};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error(transparent)]
    Engine(EngineError),
    #[error("{0}")]
    Refused(String),
    #[error("the pull took longer than {0} s")]
    Timeout(u64),
}

impl DockerBackend {
    /// The image to run for `spec`: its own, pulled as the pull policy
    /// says, or for a package scheme the package's image, built unless a
    /// build of the same inputs exists.
    pub(crate) async fn prepare_image(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        self.packages
            .prepare(&Images(self), &self.config.container, spec)
            .await
    }

    /// Makes sure the engine has `image`, pulling it as the pull policy
    /// says; `base_of` names the package scheme when it is a base image.
    async fn ensure_image(
        &self,
        image: &str,
        base_of: Option<Scheme>,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(err) if classify(&err) == Class::NotFound => false,
            Err(err) => {
                return Err(error::other(
                    self.config.socket(),
                    err,
                    format!("looking up image `{image}`"),
                ));
            }
        };
        match (self.config.pull, present) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, true) => return Ok(()),
            (PullPolicy::Never, false) => {
                return Err(RuntimeError::InvalidSpec(match base_of {
                    None => format!(
                        "image `{image}` is not present locally and pulling is disabled (docker pull policy `never`)"
                    ),
                    Some(scheme) => format!(
                        "base image {image} for {scheme} is not available locally and cannot be pulled: pulling is disabled (docker pull policy `never`)"
                    ),
                }));
            }
            (PullPolicy::Always | PullPolicy::IfNotPresent, _) => {}
        }
        match self.pull(image, progress).await {
            Ok(()) => Ok(()),
            Err(PullError::Engine(err)) if classify(&err) == Class::Unreachable => {
                Err(error::unreachable(self.config.socket(), err))
            }
            Err(err) if present => {
                warn!(image, error = %err, "Pulling the image failed; using the local copy.");
                Ok(())
            }
            Err(err) => Err(RuntimeError::InvalidSpec(match base_of {
                None => {
                    format!("image `{image}` is not present locally and could not be pulled: {err}")
                }
                Some(scheme) => format!(
                    "base image {image} for {scheme} is not available locally and cannot be pulled: {err}"
                ),
            })),
        }
    }

    /// Pulls `image`, reporting the engine's progress.
    async fn pull(&self, image: &str, progress: &Progress) -> Result<(), PullError> {
        let reference = pull_reference(image);
        info!(image = %reference, "Pulling image.");
        progress.report(&format!("pulling image {reference}"));
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut items = self.docker.create_image(Some(opts), None, None);
        let limit = Duration::from_secs(self.config.pull_timeout_secs);
        let pulled = tokio::time::timeout(limit, async {
            let mut last: Option<(Option<String>, Option<String>)> = None;
            while let Some(item) = items.next().await {
                let item = item.map_err(PullError::Engine)?;
                if let Some(message) = item.error_detail.and_then(|d| d.message) {
                    return Err(PullError::Refused(message));
                }
                let step = (item.id, item.status);
                if last.as_ref() != Some(&step) {
                    if let (Some(layer), Some(status)) = &step {
                        progress.report(&format!("{layer}: {status}"));
                    } else if let (None, Some(status)) = &step {
                        progress.report(status);
                    }
                    debug!(
                        image = %reference,
                        layer = step.0.as_deref().unwrap_or(""),
                        status = step.1.as_deref().unwrap_or(""),
                        "Pull progress."
                    );
                    last = Some(step);
                }
            }
            Ok(())
        })
        .await;
        match pulled {
            Ok(Ok(())) => {
                info!(image = %reference, "Image pulled.");
                progress.report(&format!("pulled image {reference}"));
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(PullError::Timeout(limit.as_secs())),
        }
    }
}

/// The backend in the role of berth-container's [`ImageEngine`]: a view,
/// so that the trait stays out of the backend's public API.
struct Images<'a>(&'a DockerBackend);

impl Deref for Images<'_> {
    type Target = DockerBackend;

    fn deref(&self) -> &DockerBackend {
        self.0
    }
}

#[async_trait]
impl ImageEngine for Images<'_> {
    async fn image(
        &self,
        _: &WorkloadName,
        reference: &str,
    ) -> Result<Option<ImageFacts>, RuntimeError> {
        match self.docker.inspect_image(reference).await {
            Ok(found) => Ok(Some(ImageFacts {
                id: found.id,
                labels: found
                    .config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })),
            Err(err) if classify(&err) == Class::NotFound => Ok(None),
            Err(err) => Err(error::other(
                self.config.socket(),
                err,
                format!("looking up image `{reference}`"),
            )),
        }
    }

    async fn ensure_image(
        &self,
        _: &WorkloadName,
        image: &str,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        self.0.ensure_image(image, None, progress).await
    }

    async fn ensure_base_image(
        &self,
        _: &WorkloadName,
        image: &str,
        scheme: Scheme,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        self.0.ensure_image(image, Some(scheme), progress).await
    }

    async fn build(
        &self,
        _: &WorkloadName,
        recipe: &Recipe,
        progress: &Progress,
    ) -> Result<(), BuildFailure> {
        let labels: HashMap<String, String> = recipe.labels().into_iter().collect();
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(&recipe.image)
            .labels(&labels)
            .rm(true)
            .forcerm(true)
            .build();
        let context = bollard::body_full(recipe.context_tar().into());
        let mut output = self.docker.build_image(opts, None, Some(context));
        while let Some(item) = output.next().await {
            let item = match item {
                Ok(item) => item,
                Err(EngineError::DockerStreamError { error }) => {
                    return Err(BuildFailure::Failed(error));
                }
                Err(err) if classify(&err) == Class::Unreachable => {
                    return Err(BuildFailure::Runtime(error::unreachable(
                        self.config.socket(),
                        err,
                    )));
                }
                Err(err) => return Err(BuildFailure::Failed(err.to_string())),
            };
            for line in item.stream.iter().flat_map(|s| s.lines()) {
                progress.report(line);
            }
            if let Some(status) = item.status {
                progress.report(&status);
            }
        }
        Ok(())
    }

    async fn remove_image(&self, id: &str) -> Result<(), BoxError> {
        let opts = RemoveImageOptionsBuilder::new().build();
        self.docker.remove_image(id, Some(opts), None).await?;
        Ok(())
    }
}

/// The reference to pull for `image`: with `:latest` when it names neither a
/// tag nor a digest, since the engine pulls *every* tag of a bare name.
fn pull_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_references() {
        for (image, want) in [
            ("alpine", "alpine:latest"),
            ("alpine:3", "alpine:3"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:v1", "localhost:5000/x:v1"),
            ("ghcr.io/a/b@sha256:00", "ghcr.io/a/b@sha256:00"),
        ] {
            assert_eq!(pull_reference(image), want, "{image}");
        }
    }
}
