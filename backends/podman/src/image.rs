//! Images: the workload's own, pulled when absent, and package images
//! (`npx://`, `uvx://`), built through libpod's `/build` from the
//! in-memory context of a [`Recipe`] by berth-container's
//! [`PackageImages`](berth_container::PackageImages) flow.

use std::collections::BTreeMap;
use std::ops::Deref;

use async_trait::async_trait;
use berth_container::{BuildFailure, ImageEngine, ImageFacts, Recipe, Scheme};
use berth_runtime_api::{BoxError, Progress, RuntimeError, WorkloadName, WorkloadSpec};
use futures::TryStreamExt;
use podman_api::opts::PullOpts;
use serde::Deserialize;
use tracing::info;

use crate::PodmanBackend;
use crate::engine::query_value;
use crate::error::{ApiFailure, PodmanError};

/// What berth reads of `GET /libpod/images/{name}/json`.
#[derive(Debug, Deserialize)]
struct ImageData {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl PodmanBackend {
    /// The image to run for `spec`: its own, pulled when absent, or for a
    /// package scheme the package's image, built unless a build of the
    /// same inputs exists.
    pub(crate) async fn prepare_image(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        self.packages
            .prepare(&Images(self), &self.config.container, spec)
            .await
    }

    /// Makes sure `image` is present, pulling it when it is not;
    /// `base_of` names the package scheme when it is a base image.
    async fn ensure_image(
        &self,
        name: &WorkloadName,
        image: &str,
        base_of: Option<Scheme>,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        let images = self.podman.images();
        let exists = images
            .get(image)
            .exists()
            .await
            .map_err(|err| self.fail(name, "looking up the image of", err))?;
        if exists {
            return Ok(());
        }
        info!(workload = %name, image, "Pulling the image.");
        progress.report(&format!("pulling image {image}"));
        let opts = PullOpts::builder().reference(image).quiet(true).build();
        let pulled = async {
            let mut reports = images.pull(&opts);
            let mut pulled = false;
            while let Some(report) = reports.try_next().await? {
                if let Some(err) = report.error.filter(|e| !e.is_empty()) {
                    return Err(podman_api::Error::StringError(err));
                }
                pulled |= report.id.is_some_and(|id| !id.is_empty());
            }
            if pulled {
                Ok(())
            } else {
                Err(podman_api::Error::StringError(
                    "the pull reported no image".to_owned(),
                ))
            }
        }
        .await;
        if pulled.is_ok() {
            progress.report(&format!("pulled image {image}"));
        }
        pulled.map_err(|err| {
            if err.is_unreachable() {
                return self.fail(name, "pulling the image of", err);
            }
            if let Some(scheme) = base_of {
                let why = match err {
                    podman_api::Error::StringError(msg) => msg,
                    other => other.to_string(),
                };
                return RuntimeError::InvalidSpec(format!(
                    "base image {image} for {scheme} is not available locally and cannot be pulled: {why}"
                ));
            }
            let source = match err {
                podman_api::Error::StringError(msg) => PodmanError::Pull(msg).into(),
                other => Box::new(other) as berth_runtime_api::BoxError,
            };
            RuntimeError::backend(
                format!("image `{image}` is not present locally and could not be pulled"),
                source,
            )
        })
    }
}

/// The backend in the role of berth-container's [`ImageEngine`]: a view,
/// so that the trait stays out of the backend's public API.
struct Images<'a>(&'a PodmanBackend);

impl Deref for Images<'_> {
    type Target = PodmanBackend;

    fn deref(&self) -> &PodmanBackend {
        self.0
    }
}

#[async_trait]
impl ImageEngine for Images<'_> {
    async fn image(
        &self,
        name: &WorkloadName,
        reference: &str,
    ) -> Result<Option<ImageFacts>, RuntimeError> {
        let path = format!("/libpod/images/{reference}/json");
        match self.libpod.get::<ImageData>(&path).await {
            Ok(found) => Ok(Some(ImageFacts {
                id: Some(found.id),
                labels: found.labels.unwrap_or_default(),
            })),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(self.fail(name, "looking up the package image of", err)),
        }
    }

    async fn ensure_image(
        &self,
        name: &WorkloadName,
        image: &str,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        self.0.ensure_image(name, image, None, progress).await
    }

    async fn ensure_base_image(
        &self,
        name: &WorkloadName,
        image: &str,
        scheme: Scheme,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        self.0
            .ensure_image(name, image, Some(scheme), progress)
            .await
    }

    async fn build(
        &self,
        name: &WorkloadName,
        recipe: &Recipe,
        progress: &Progress,
    ) -> Result<(), BuildFailure> {
        let labels = serde_json::to_string(&recipe.labels()).expect("labels serialize");
        let query = format!(
            "/libpod/build?dockerfile=Dockerfile&t={}&labels={}&rm=true&forcerm=true",
            query_value(&recipe.image),
            query_value(&labels),
        );
        let mut refused = None;
        let built = self
            .libpod
            .post_tar_streaming(&query, recipe.context_tar(), |item| {
                if let Some(text) = item.get("stream").and_then(|s| s.as_str()) {
                    text.lines().for_each(|l| progress.report(l));
                }
                let error = item
                    .get("errorDetail")
                    .and_then(|d| d.get("message"))
                    .or_else(|| item.get("error"))
                    .and_then(|e| e.as_str());
                if let Some(error) = error.filter(|e| !e.is_empty()) {
                    progress.report(error);
                    refused.get_or_insert_with(|| error.to_owned());
                }
            })
            .await;
        match built {
            Err(err) if err.is_unreachable() => Err(BuildFailure::Runtime(self.fail(
                name,
                "building the package image of",
                err,
            ))),
            Err(err) => Err(BuildFailure::Failed(err.to_string())),
            Ok(()) => refused.map_or(Ok(()), |why| Err(BuildFailure::Failed(why))),
        }
    }

    async fn remove_image(&self, id: &str) -> Result<(), BoxError> {
        self.libpod.delete(&format!("/libpod/images/{id}")).await?;
        Ok(())
    }
}
