//! Package images (`npx://`, `uvx://`): built through libpod's `/build`
//! from the in-memory context of a [`Recipe`], cached by its hash.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_container::{Package, Recipe};
use berth_runtime_api::{Progress, RuntimeError, WorkloadName};
use serde::Deserialize;
use tracing::{info, warn};

use crate::PodmanBackend;
use crate::error::ApiFailure;
use crate::libpod::query_value;

/// What berth reads of `GET /libpod/images/{name}/json`.
#[derive(Debug, Deserialize)]
struct ImageData {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl PodmanBackend {
    /// The image of `package`: the cached build of the same recipe, or a
    /// new build on the configured base image.
    pub(crate) async fn package_image(
        &self,
        name: &WorkloadName,
        package: &Package,
        progress: &Progress,
    ) -> Result<String, RuntimeError> {
        let base = package
            .scheme
            .base_image(&self.config.node_base_image, &self.config.python_base_image);
        let recipe =
            Recipe::new(package, base).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let _building = self.building.lock().await;

        let path = format!("/libpod/images/{}/json", recipe.image);
        let previous = match self.libpod.get::<ImageData>(&path).await {
            Ok(found) => {
                let labels = found.labels.iter().flatten();
                if recipe.is_built(labels.map(|(k, v)| (k.as_str(), v.as_str()))) {
                    progress.report(&format!(
                        "using cached image {} for {package}",
                        recipe.image
                    ));
                    return Ok(recipe.image);
                }
                Some(found.id)
            }
            Err(err) if err.status() == Some(404) => None,
            Err(err) => return Err(self.fail(name, "looking up the package image of", err)),
        };

        self.ensure_image(name, base, Some(package.scheme), progress)
            .await?;
        progress.report(&format!(
            "building image {} for {package} on {base}",
            recipe.image
        ));
        info!(workload = %name, image = %recipe.image, package = %package, base = %base, "Building a package image.");
        let labels = serde_json::to_string(&recipe.labels()).expect("labels serialize");
        let query = format!(
            "/libpod/build?dockerfile=Dockerfile&t={}&labels={}&rm=true&forcerm=true",
            query_value(&recipe.image),
            query_value(&labels),
        );
        let mut refused = None;
        let limit = Duration::from_secs(self.config.build_timeout_secs);
        let built = tokio::time::timeout(
            limit,
            self.libpod
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
                }),
        )
        .await;
        let failed = |why: String| {
            RuntimeError::InvalidSpec(format!(
                "building image {} for {package} failed: {why}",
                recipe.image
            ))
        };
        match built {
            Err(_) => {
                return Err(failed(format!(
                    "the build took longer than {} s",
                    limit.as_secs()
                )));
            }
            Ok(Err(err)) if err.is_unreachable() => {
                return Err(self.fail(name, "building the package image of", err));
            }
            Ok(Err(err)) => return Err(failed(err.to_string())),
            Ok(Ok(())) => {}
        }
        if let Some(why) = refused {
            return Err(failed(why));
        }
        // The stream ended without an error; the image must now exist.
        match self.libpod.get::<ImageData>(&path).await {
            Ok(found) if found.id.is_empty() || Some(&found.id) == previous.as_ref() => {
                return Err(failed("the build produced no new image".to_owned()));
            }
            Ok(_) => {}
            Err(err) => return Err(self.fail(name, "looking up the package image of", err)),
        }
        progress.report(&format!("built image {} for {package}", recipe.image));
        info!(workload = %name, image = %recipe.image, "Package image built.");

        // The tag moved to the new build; drop the old image unless a
        // container still uses it.
        if let Some(old) = previous
            && let Err(err) = self.libpod.delete(&format!("/libpod/images/{old}")).await
        {
            warn!(image = %old, error = %err, "The previous package image was kept.");
        }
        Ok(recipe.image)
    }
}
