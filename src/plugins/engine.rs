//! The wasmtime engine shared by all plugins: component model, pooling
//! allocator, epoch interruption driven by a ticker thread, and an on-disk
//! cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;

/// How often the epoch advances: the granularity of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and its ticker.
pub(crate) struct PluginEngine {
    pub(crate) engine: Engine,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A `std::hash::Hasher` that feeds SHA-256, for hashing the engine's
/// compatibility key into the cache key.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read from the inner state
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl PluginEngine {
    /// An engine whose instances may use up to `max_memory` bytes of linear
    /// memory each, with at most `max_instances` alive at once.
    pub(crate) fn new(
        max_memory: usize,
        max_instances: u32,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 4)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(max_memory);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Reserve only what a memory may grow to (plus guards), not the
            // default 4 GiB per memory.
            .memory_reservation(max_memory as u64)
            .memory_guard_size(64 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| PluginError::Engine(format!("cannot create the wasm engine: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("berth-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "Plugin cache directory unusable; compiling without it.");
        }
        Ok(Self {
            engine,
            cache_dir,
            stop,
        })
    }

    /// The cache file of a component: keyed by its content, the wasmtime
    /// version and this engine's settings.
    fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = ShaHasher(Sha256::new());
        h.write(bytes);
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let digest = h.0.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}.cwasm")))
    }

    /// Compiles the component at `path`, or loads its cached compilation.
    /// Returns the component and whether the cache was used.
    pub(crate) fn load(&self, path: &Path) -> Result<(Component, bool), PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Read {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        let cached = self.cache_path(&bytes);
        if let Some(file) = &cached
            && file.is_file()
        {
            match deserialize(&self.engine, file) {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "Cached plugin compilation refused; recompiling.");
                    let _ = std::fs::remove_file(file);
                }
            }
        }
        let component = Component::new(&self.engine, &bytes).map_err(|e| PluginError::Invalid {
            path: path.to_owned(),
            why: format!("{e:#}"),
        })?;
        if let Some(file) = cached {
            match component.serialize() {
                Ok(blob) => {
                    if let Err(e) = crate::state::write_atomic(&file, &blob) {
                        tracing::warn!(file = %file.display(), error = %e, "Cannot cache a plugin compilation.");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Cannot serialize a plugin compilation."),
            }
        }
        Ok((component, false))
    }
}

/// Loads a compilation from berth's own cache.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file be a compilation produced by
    // `Component::serialize` of a compatible engine and not modified since.
    // berth writes these files itself, atomically, in its state directory
    // (mode 0700, owned by berth's user), under a name that is the SHA-256
    // of the component's bytes, the berth version and the engine's
    // compatibility hash; wasmtime additionally checks the header and the
    // engine settings and refuses a mismatch. Whoever can rewrite files in
    // berth's state directory can already run code as berth.
    unsafe { Component::deserialize_file(engine, file) }
}
