//! Package images (`npx://`, `uvx://`): built through the engine's build
//! API from the in-memory context of a [`Recipe`], cached by its hash.

use std::collections::HashMap;
use std::time::Duration;

use berth_container::{Package, Recipe};
use berth_runtime_api::{Progress, RuntimeError};
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use futures::StreamExt;
use tracing::{info, warn};

use crate::DockerBackend;
use crate::error::{self, Class, classify};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error(transparent)]
    Engine(bollard::errors::Error),
    #[error("{0}")]
    Refused(String),
    #[error("the build took longer than {0} s")]
    Timeout(u64),
}

impl DockerBackend {
    /// The image of `package`: the cached build of the same recipe, or a
    /// new build on the configured base image.
    pub(crate) async fn package_image(
        &self,
        package: &Package,
        progress: &Progress,
    ) -> Result<String, RuntimeError> {
        let base = package
            .scheme
            .base_image(&self.config.node_base_image, &self.config.python_base_image);
        let recipe =
            Recipe::new(package, base).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let _building = self.building.lock().await;

        let previous = match self.docker.inspect_image(&recipe.image).await {
            Ok(found) => {
                let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
                let labels = labels.into_iter().flatten();
                if recipe.is_built(labels.map(|(k, v)| (k.as_str(), v.as_str()))) {
                    progress.report(&format!(
                        "using cached image {} for {package}",
                        recipe.image
                    ));
                    return Ok(recipe.image);
                }
                found.id
            }
            Err(err) if classify(&err) == Class::NotFound => None,
            Err(err) => {
                return Err(error::other(
                    self.config.socket(),
                    err,
                    format!("looking up image `{}`", recipe.image),
                ));
            }
        };

        self.ensure_image(base, Some(package.scheme), progress)
            .await?;
        progress.report(&format!(
            "building image {} for {package} on {base}",
            recipe.image
        ));
        info!(image = %recipe.image, package = %package, base = %base, "Building a package image.");
        match self.build(&recipe, progress).await {
            Ok(()) => {}
            Err(BuildError::Engine(err)) if classify(&err) == Class::Unreachable => {
                return Err(error::unreachable(self.config.socket(), err));
            }
            Err(err) => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "building image {} for {package} failed: {err}",
                    recipe.image
                )));
            }
        }
        progress.report(&format!("built image {} for {package}", recipe.image));
        info!(image = %recipe.image, package = %package, "Package image built.");

        // The tag moved to the new build; drop the old image unless a
        // container still uses it.
        if let Some(old) = previous {
            let opts = RemoveImageOptionsBuilder::new().build();
            if let Err(err) = self.docker.remove_image(&old, Some(opts), None).await {
                warn!(image = %old, error = %err, "The previous package image was kept.");
            }
        }
        Ok(recipe.image)
    }

    /// Runs the build of `recipe`, reporting the engine's output lines.
    async fn build(&self, recipe: &Recipe, progress: &Progress) -> Result<(), BuildError> {
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
        let limit = Duration::from_secs(self.config.build_timeout_secs);
        let built = tokio::time::timeout(limit, async {
            while let Some(item) = output.next().await {
                let item = match item {
                    Ok(item) => item,
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        return Err(BuildError::Refused(error));
                    }
                    Err(err) => return Err(BuildError::Engine(err)),
                };
                for line in item.stream.iter().flat_map(|s| s.lines()) {
                    progress.report(line);
                }
                if let Some(status) = item.status {
                    progress.report(&status);
                }
            }
            Ok(())
        })
        .await;
        match built {
            Ok(result) => result,
            Err(_) => Err(BuildError::Timeout(limit.as_secs())),
        }
    }
}
