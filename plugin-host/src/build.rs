//! `warden plugin build`: turn a plugin crate's core Wasm module into a component.
//!
//! A plugin built for `wasm32-unknown-unknown` has no WASI imports at all; wit-component wraps
//! it into a component from the type information wit-bindgen embedded, and strips what the
//! host does not need. Such a component needs nothing but the `log` import.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Wraps a core module (with wit-bindgen's embedded component type) into a component.
pub fn componentize(core_module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core_module)
        .context(
            "the module carries no component type: was it built with warden-sdk's export macro?",
        )?
        .validate(true)
        .encode()
        .context("cannot encode the component")
}

/// Builds the plugin crate in `dir` for `wasm32-unknown-unknown` in release mode and writes
/// `<crate>.component.wasm` next to the core module; returns its path.
pub fn build_crate(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let manifest_path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("no Cargo.toml in {}", dir.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest_path.display()))?;
    let name = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("Cargo.toml has no package name")?
        .replace('-', "_");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--release",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--manifest-path",
    ])
    .arg(&manifest_path);
    // Small components: no debug info. (`strip` would also drop the component type.)
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    // A 64 KiB shadow stack instead of 1 MiB: a fresh instance has less memory to map and reset.
    cmd.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        "-C link-arg=-zstack-size=65536",
    );
    if let Some(t) = target_dir {
        cmd.arg("--target-dir").arg(t);
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed for {} (is the target installed? `rustup target add wasm32-unknown-unknown`)",
            dir.display()
        );
    }
    let target = match target_dir {
        Some(t) => t.to_path_buf(),
        None => {
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--no-deps",
                    "--manifest-path",
                ])
                .arg(&manifest_path)
                .output()?;
            let meta: serde_json::Value =
                serde_json::from_slice(&out.stdout).context("cannot read cargo metadata")?;
            PathBuf::from(
                meta["target_directory"]
                    .as_str()
                    .context("no target directory")?,
            )
        }
    };
    let core = target
        .join("wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = componentize(&bytes)?;
    let out = core.with_extension("component.wasm");
    // Written whole or not at all: another build of the same crate (another test process, a
    // second `warden plugin build`) may be reading it.
    let partial = core.with_extension(format!("component.wasm.{}", std::process::id()));
    std::fs::write(&partial, component)?;
    std::fs::rename(&partial, &out)?;
    Ok(out)
}
