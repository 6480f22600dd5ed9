//! The first-party and test plugins under `plugins/`, built once per test
//! process with `plugins/build.sh` (cargo serializes concurrent builds).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The `.wasm` file of plugin crate `berth-plugin-<name>`.
pub fn wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BUILT.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root.join("plugins/build.sh"))
            // The plugins build into plugins/target, where this looks,
            // whatever target directory the tests themselves use.
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "plugins/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let file = root.join(format!(
        "plugins/target/wasm32-wasip2/release/berth_plugin_{}.wasm",
        name.replace('-', "_")
    ));
    assert!(file.is_file(), "{} was not built", file.display());
    file
}
