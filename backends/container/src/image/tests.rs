//! The build flow against an engine that records what it was asked.

use std::sync::{Arc, Mutex};

use super::*;

/// What the fake engine does when asked to build.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Tags a new image.
    Builds,
    /// Answers with a failed build.
    Fails,
    /// Cannot be reached.
    Unreachable,
    /// Ends without an error, and without an image.
    BuildsNothing,
    /// Never ends.
    Hangs,
}

struct Engine {
    outcome: Outcome,
    /// The image the engine has under the recipe's tag.
    tagged: Mutex<Option<ImageFacts>>,
    calls: Mutex<Vec<String>>,
}

impl Engine {
    fn new(outcome: Outcome, tagged: Option<ImageFacts>) -> Self {
        Self {
            outcome,
            tagged: Mutex::new(tagged),
            calls: Mutex::default(),
        }
    }

    fn call(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl ImageEngine for Engine {
    async fn image(
        &self,
        _: &WorkloadName,
        reference: &str,
    ) -> Result<Option<ImageFacts>, RuntimeError> {
        self.call(format!("image {reference}"));
        Ok(self.tagged.lock().unwrap().clone())
    }

    async fn ensure_image(
        &self,
        _: &WorkloadName,
        image: &str,
        _: &Progress,
    ) -> Result<(), RuntimeError> {
        self.call(format!("pull {image}"));
        Ok(())
    }

    async fn ensure_base_image(
        &self,
        _: &WorkloadName,
        image: &str,
        scheme: Scheme,
        _: &Progress,
    ) -> Result<(), RuntimeError> {
        self.call(format!("base {image} for {scheme}"));
        Ok(())
    }

    async fn build(
        &self,
        _: &WorkloadName,
        recipe: &Recipe,
        progress: &Progress,
    ) -> Result<(), BuildFailure> {
        self.call(format!("build {}", recipe.image));
        progress.report("Step 1/6 : FROM base");
        match self.outcome {
            Outcome::Builds => {
                *self.tagged.lock().unwrap() = Some(ImageFacts {
                    id: Some("new".into()),
                    labels: recipe.labels(),
                });
                Ok(())
            }
            Outcome::Fails => Err(BuildFailure::Failed("npm ERR! 404".into())),
            Outcome::Unreachable => Err(BuildFailure::Runtime(RuntimeError::Unavailable {
                backend: "fake",
                source: "gone".into(),
            })),
            Outcome::BuildsNothing => Ok(()),
            Outcome::Hangs => std::future::pending().await,
        }
    }

    async fn remove_image(&self, id: &str) -> Result<(), BoxError> {
        self.call(format!("remove {id}"));
        Ok(())
    }
}

const IMAGE: &str = "localhost/berth-npx/pkg:1.0.0";

fn package() -> Package {
    Package::parse("npx://pkg@1.0.0").unwrap().unwrap()
}

/// Runs the flow; returns its result, the engine's calls and the progress
/// lines.
async fn run(
    engine: &Engine,
    config: &ContainerConfig,
) -> (Result<String, RuntimeError>, Vec<String>, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let progress = Progress::new(move |l| seen.lock().unwrap().push(l.to_owned()));
    let name = WorkloadName::parse("w").unwrap();
    let result = PackageImages::new()
        .image(engine, config, &name, &package(), &progress)
        .await;
    let lines = lines.lock().unwrap().clone();
    (result, engine.calls(), lines)
}

#[tokio::test]
async fn a_new_build_replaces_an_outdated_one() {
    let outdated = ImageFacts {
        id: Some("old".into()),
        labels: BTreeMap::from([("berth.package.hash".into(), "0000".into())]),
    };
    let engine = Engine::new(Outcome::Builds, Some(outdated));
    let (result, calls, lines) = run(&engine, &ContainerConfig::default()).await;
    assert_eq!(result.unwrap(), IMAGE);
    assert_eq!(
        calls,
        [
            format!("image {IMAGE}"),
            "base docker.io/library/node:22-alpine for npx://".into(),
            format!("build {IMAGE}"),
            format!("image {IMAGE}"),
            "remove old".into(),
        ]
    );
    assert_eq!(
        lines,
        [
            format!(
                "building image {IMAGE} for npx://pkg@1.0.0 on docker.io/library/node:22-alpine"
            ),
            "Step 1/6 : FROM base".into(),
            format!("built image {IMAGE} for npx://pkg@1.0.0"),
        ]
    );
}

#[tokio::test]
async fn a_build_of_the_same_recipe_is_reused() {
    let config = ContainerConfig {
        node_base_image: "localhost/berth-test/fake-toolchain:latest".into(),
        ..ContainerConfig::default()
    };
    let recipe = Recipe::new(&package(), &config.node_base_image).unwrap();
    let cached = ImageFacts {
        id: Some("cached".into()),
        labels: recipe.labels(),
    };
    let engine = Engine::new(Outcome::Fails, Some(cached));
    let (result, calls, lines) = run(&engine, &config).await;
    assert_eq!(result.unwrap(), IMAGE);
    assert_eq!(calls, [format!("image {IMAGE}")], "no pull, no build");
    assert_eq!(
        lines,
        [format!("using cached image {IMAGE} for npx://pkg@1.0.0")]
    );
}

#[tokio::test]
async fn failed_builds_name_the_image_and_the_package() {
    for (outcome, timeout, want) in [
        (Outcome::Fails, 600, "npm ERR! 404"),
        (
            Outcome::BuildsNothing,
            600,
            "the build produced no new image",
        ),
        (Outcome::Hangs, 0, "the build took longer than 0 s"),
    ] {
        let engine = Engine::new(outcome, None);
        let config = ContainerConfig {
            build_timeout_secs: timeout,
            ..ContainerConfig::default()
        };
        match run(&engine, &config).await.0 {
            Err(RuntimeError::InvalidSpec(why)) => assert_eq!(
                why,
                format!("building image {IMAGE} for npx://pkg@1.0.0 failed: {want}"),
                "{outcome:?}"
            ),
            other => panic!("{outcome:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_engine_is_passed_on() {
    let engine = Engine::new(Outcome::Unreachable, None);
    let (result, calls, _) = run(&engine, &ContainerConfig::default()).await;
    assert!(
        matches!(result, Err(RuntimeError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("remove")), "{calls:?}");
}

#[tokio::test]
async fn an_invalid_base_image_is_an_invalid_spec() {
    let engine = Engine::new(Outcome::Builds, None);
    let config = ContainerConfig {
        node_base_image: "node AS x".into(),
        ..ContainerConfig::default()
    };
    let (result, calls, _) = run(&engine, &config).await;
    assert!(
        matches!(&result, Err(RuntimeError::InvalidSpec(why)) if why.contains("invalid base image")),
        "{result:?}"
    );
    assert!(calls.is_empty(), "{calls:?}");
}
