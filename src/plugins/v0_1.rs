//! Bindings of `berth:plugin@0.1.0` (frozen under `wit/deps/`), one module
//! per world. Generated types stay in `src/plugins/`; the kind adapters
//! convert them to berth's own types.

/// The middleware world.
pub(crate) mod middleware {
    wasmtime::component::bindgen!({
        path: "wit/deps/berth-plugin@0.1.0",
        world: "middleware-plugin",
        imports: { default: trappable },
        exports: { default: async },
    });
}

/// The registry-source world.
pub(crate) mod registry {
    wasmtime::component::bindgen!({
        path: "wit/deps/berth-plugin@0.1.0",
        world: "registry-source-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "berth:plugin/host": super::middleware::berth::plugin::host,
            "berth:plugin/types": super::middleware::berth::plugin::types,
        },
    });
}

/// The secrets-provider world.
pub(crate) mod secrets {
    wasmtime::component::bindgen!({
        path: "wit/deps/berth-plugin@0.1.0",
        world: "secrets-provider-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "berth:plugin/host": super::middleware::berth::plugin::host,
            "berth:plugin/types": super::middleware::berth::plugin::types,
        },
    });
}

/// The interfaces each world exports, by kind: what a component must
/// export to be loaded as that kind.
pub(crate) const MIDDLEWARE_EXPORT: &str = "berth:plugin/middleware@0.1.0";
/// See [`MIDDLEWARE_EXPORT`].
pub(crate) const REGISTRY_EXPORT: &str = "berth:plugin/registry-source@0.1.0";
/// See [`MIDDLEWARE_EXPORT`].
pub(crate) const SECRETS_EXPORT: &str = "berth:plugin/secrets-provider@0.1.0";
/// The version of the package.
pub(crate) const VERSION: &str = "0.1.0";
