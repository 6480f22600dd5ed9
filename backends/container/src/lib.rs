//! What berth's container backends share.
//!
//! The Docker and Podman backends differ in how they talk to their engine
//! (bollard; libpod through podman-api and a small hyper client) and agree
//! on everything else, which lives here once:
//!
//! - **names and labels** ([`labels`]): container `berth-<name>`, labels
//!   `berth.managed`, `berth.workload`, `berth.instance`, and who owns a
//!   container;
//! - **spec checks** ([`check_spec`]): what no container engine runs;
//! - **settings** ([`ContainerConfig`]): grace period, limits, base images
//!   and build timeout, flattened into `[docker]` and `[podman]`, checked
//!   into [`Limits`];
//! - **package images** for `npx://` and `uvx://` workloads: [`Package`]
//!   and [`Recipe`] (a generated Dockerfile, its build context and cache
//!   key), built by one flow ([`PackageImages`]) through each engine's
//!   [`ImageEngine`].
//!
//! No engine client: an engine comes in only through [`ImageEngine`].
//! Reading a log's last lines is [`berth_runtime_api::LogTail`], shared
//! with the process backend.
//!
//! ```
//! use berth_container::{Package, Recipe};
//!
//! let package = Package::parse("npx://@modelcontextprotocol/server-everything@2.0.0")
//!     .expect("a package scheme")
//!     .expect("a valid spec");
//! let recipe = Recipe::new(&package, "docker.io/library/node:22-alpine").unwrap();
//! assert_eq!(recipe.image, "localhost/berth-npx/modelcontextprotocol/server-everything:2.0.0");
//! assert!(recipe.dockerfile.contains(r#"ENTRYPOINT ["npx","--no","@modelcontextprotocol/server-everything"]"#));
//! ```

#![deny(missing_docs)]

mod config;
mod image;
pub mod labels;
mod package;
mod spec;

pub use config::{ContainerConfig, Limits};
pub use image::{BuildFailure, ImageEngine, ImageFacts, PackageImages};
pub use package::{
    DEFAULT_NODE_BASE_IMAGE, DEFAULT_PYTHON_BASE_IMAGE, InvalidPackage, LABEL_BASE, LABEL_HASH,
    LABEL_PACKAGE, Package, Recipe, Scheme, check_base_image, check_base_images,
};
pub use spec::check_spec;
