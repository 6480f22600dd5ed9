//! The package-image build flow both engines run (`npx://`, `uvx://`): a
//! cached build of the same recipe is reused; otherwise the base image is
//! made present, the recipe built within `build_timeout_secs`, the result
//! checked, and the previous build of the tag removed. The engine's part
//! is an [`ImageEngine`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime_api::{BoxError, Progress, RuntimeError, WorkloadName};
use tracing::{info, warn};

use crate::{ContainerConfig, Package, Recipe, Scheme};

/// What the flow reads of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// The image's id, as the engine reports it.
    pub id: Option<String>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
}

/// Why an engine's build of a recipe failed.
#[derive(Debug)]
pub enum BuildFailure {
    /// The engine refused or failed the build (a step failed, a bad base
    /// image): the deploy's spec cannot run. The message says why.
    Failed(String),
    /// Another error, passed on as is (the engine is unreachable).
    Runtime(RuntimeError),
}

/// An engine's part of the package-image flow.
#[async_trait]
pub trait ImageEngine: Send + Sync {
    /// The image `reference`, `None` when the engine has no image of that
    /// name. `name` is the workload the image is for.
    async fn image(
        &self,
        name: &WorkloadName,
        reference: &str,
    ) -> Result<Option<ImageFacts>, RuntimeError>;

    /// Makes sure the engine has `image`, the image a workload runs,
    /// pulling it as the engine's settings say.
    async fn ensure_image(
        &self,
        name: &WorkloadName,
        image: &str,
        progress: &Progress,
    ) -> Result<(), RuntimeError>;

    /// Makes sure the engine has the base image `image` of `scheme`,
    /// pulling it as the engine's settings say; a base image that is absent
    /// and cannot be pulled is [`RuntimeError::InvalidSpec`], `base image
    /// {image} for {scheme} is not available locally and cannot be pulled:
    /// {why}`.
    async fn ensure_base_image(
        &self,
        name: &WorkloadName,
        image: &str,
        scheme: Scheme,
        progress: &Progress,
    ) -> Result<(), RuntimeError>;

    /// Builds `recipe`: its [`context_tar`](Recipe::context_tar), tagged
    /// [`image`](Recipe::image), labelled [`labels`](Recipe::labels),
    /// intermediate containers removed; each line of the engine's output
    /// goes to `progress`. Returns when the build has ended.
    async fn build(
        &self,
        name: &WorkloadName,
        recipe: &Recipe,
        progress: &Progress,
    ) -> Result<(), BuildFailure>;

    /// Removes image `id`; fails when a container still uses it.
    async fn remove_image(&self, id: &str) -> Result<(), BoxError>;
}

/// Builds package images, one build at a time per backend, so that two
/// workloads of one package build it once.
#[derive(Debug, Default)]
pub struct PackageImages {
    building: tokio::sync::Mutex<()>,
}

impl PackageImages {
    /// No build running.
    pub fn new() -> Self {
        Self::default()
    }

    /// The image to run for `spec`: its own (pulled as the engine's
    /// settings say), or for a package scheme the package's image, built
    /// unless a build of the same inputs exists.
    pub async fn prepare(
        &self,
        engine: &impl ImageEngine,
        config: &ContainerConfig,
        spec: &berth_runtime_api::WorkloadSpec,
    ) -> Result<String, RuntimeError> {
        match Package::parse(&spec.image) {
            None => {
                engine
                    .ensure_image(&spec.name, &spec.image, &spec.progress)
                    .await?;
                Ok(spec.image.clone())
            }
            Some(Err(why)) => Err(RuntimeError::InvalidSpec(why.to_string())),
            Some(Ok(package)) => {
                self.image(engine, config, &spec.name, &package, &spec.progress)
                    .await
            }
        }
    }

    /// The image of `package` for workload `name`: the cached build of the
    /// same recipe, or a new build on the configured base image.
    pub async fn image(
        &self,
        engine: &impl ImageEngine,
        config: &ContainerConfig,
        name: &WorkloadName,
        package: &Package,
        progress: &Progress,
    ) -> Result<String, RuntimeError> {
        let base = package
            .scheme
            .base_image(&config.node_base_image, &config.python_base_image);
        let recipe =
            Recipe::new(package, base).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let _building = self.building.lock().await;

        let previous = match engine.image(name, &recipe.image).await? {
            Some(found) => {
                let labels = found.labels.iter();
                if recipe.is_built(labels.map(|(k, v)| (k.as_str(), v.as_str()))) {
                    progress.report(&format!(
                        "using cached image {} for {package}",
                        recipe.image
                    ));
                    return Ok(recipe.image);
                }
                found.id
            }
            None => None,
        };

        engine
            .ensure_base_image(name, base, package.scheme, progress)
            .await?;
        progress.report(&format!(
            "building image {} for {package} on {base}",
            recipe.image
        ));
        info!(workload = %name, image = %recipe.image, package = %package, base = %base, "Building a package image.");
        let failed = |why: String| {
            RuntimeError::InvalidSpec(format!(
                "building image {} for {package} failed: {why}",
                recipe.image
            ))
        };
        let limit = Duration::from_secs(config.build_timeout_secs);
        match tokio::time::timeout(limit, engine.build(name, &recipe, progress)).await {
            Err(_) => {
                return Err(failed(format!(
                    "the build took longer than {} s",
                    limit.as_secs()
                )));
            }
            Ok(Err(BuildFailure::Runtime(err))) => return Err(err),
            Ok(Err(BuildFailure::Failed(why))) => return Err(failed(why)),
            Ok(Ok(())) => {}
        }
        // The build ended without an error; the tag must now name a new
        // image.
        match engine.image(name, &recipe.image).await? {
            Some(ImageFacts { id: Some(id), .. })
                if !id.is_empty() && previous.as_ref() != Some(&id) => {}
            _ => return Err(failed("the build produced no new image".to_owned())),
        }
        progress.report(&format!("built image {} for {package}", recipe.image));
        info!(workload = %name, image = %recipe.image, package = %package, "Package image built.");

        // The tag moved to the new build; drop the old image unless a
        // container still uses it.
        if let Some(old) = previous
            && let Err(err) = engine.remove_image(&old).await
        {
            warn!(image = %old, error = %err, "The previous package image was kept.");
        }
        Ok(recipe.image)
    }
}

#[cfg(test)]
mod tests;
