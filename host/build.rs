//! Builds the reference plugins of `plugins/` as core Wasm modules, so that the `warden` binary
//! carries them (`plugins.reference`, on by default); they become components when Warden starts.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The reference plugins, by crate name.
const PLUGINS: [&str; 3] = ["action-classifier", "baseline-anomaly", "canary-rollback"];

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("..");
    for path in [
        "plugins",
        "sdk/src",
        "sdk/build.rs",
        "sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // A target directory of its own: the outer build holds the lock on the usual one.
    let target_dir = out.join("wasm");
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--release",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    for plugin in PLUGINS {
        cmd.args(["-p", plugin]);
    }
    cmd.arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // As `warden plugin build` builds them: no debug info, a 64 KiB shadow stack.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false").env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        "-C link-arg=-zstack-size=65536",
    );
    // The outer build's flags and wrappers (clippy's, coverage's) are for the host, not Wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the reference plugins");
    assert!(
        status.success(),
        "building the reference plugins failed; is the Wasm target installed? \
         (rustup target add wasm32-unknown-unknown)"
    );
    for plugin in PLUGINS {
        let module = target_dir
            .join("wasm32-unknown-unknown/release")
            .join(format!("{}.wasm", plugin.replace('-', "_")));
        std::fs::copy(&module, out.join(format!("{plugin}.wasm")))
            .unwrap_or_else(|e| panic!("{}: {e}", module.display()));
    }
}
