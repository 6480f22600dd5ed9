//! What berth's container backends share.
//!
//! The Docker and Podman backends differ in how they talk to their engine
//! (bollard; libpod through podman-api and a small hyper client) and agree
//! on everything else, which lives here once:
//!
//! - package images for `npx://` and `uvx://` workloads: [`Package`] and
//!   [`Recipe`] (a generated Dockerfile, its build context and cache key).
//!
//! Nothing here talks to an engine.
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

mod package;

pub use package::{
    DEFAULT_NODE_BASE_IMAGE, DEFAULT_PYTHON_BASE_IMAGE, InvalidPackage, LABEL_BASE, LABEL_HASH,
    LABEL_PACKAGE, Package, Recipe, Scheme, check_base_image, check_base_images,
};
