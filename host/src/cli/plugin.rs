//! `warden plugin`: a plugin author's path (scaffold, build, test against a fixture).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use clap::builder::TypedValueParser as _;
use serde_json::json;

use crate::plugins::manifest::PluginKind;

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Scaffold a standalone plugin crate that depends on warden-sdk.
    #[command(
        after_help = "Example:\n  warden plugin new risky-paths --kind classifier && cd risky-paths && cargo test"
    )]
    New {
        /// Crate name (a-z, 0-9, -).
        name: String,
        /// Which world the plugin implements.
        #[arg(long, default_value = "classifier", value_parser = kind_parser())]
        kind: PluginKind,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to warden-sdk (default: the SDK this binary was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build a plugin crate into a component (wasm32-unknown-unknown, then componentized: no WASI).
    #[command(after_help = "Example:\n  warden plugin build ./risky-paths")]
    Build {
        /// The plugin crate's directory.
        dir: PathBuf,
        /// Cargo target directory.
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Run a built component against a JSON fixture in the real runtime and report verdict, fuel, memory, size, time and logs.
    #[command(
        after_help = "Example:\n  warden plugin test target/wasm32-unknown-unknown/release/risky_paths.component.wasm --manifest plugin.toml --fixture fixtures/example.json"
    )]
    Test {
        /// The component.
        component: PathBuf,
        /// The plugin's manifest (plugin.toml).
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
        /// The fixture: {"action": {...}, "config"?, "baseline"?, "activity"?, "windows"?}.
        #[arg(long)]
        fixture: PathBuf,
    },
}

/// The plugin kinds' wire names, listed by `--help` and checked by clap.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = PluginKind> {
    clap::builder::PossibleValuesParser::new(["classifier", "anomaly_detector", "rollback_trigger"])
        .try_map(|name| serde_json::from_value(json!(name)))
}

pub(super) async fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    use crate::plugins::{build, fixture, manifest::Manifest, scaffold};
    match cmd {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk_path,
        } => {
            let root = scaffold::new_plugin(
                &dir,
                &name,
                kind,
                &sdk_path.unwrap_or_else(scaffold::default_sdk_path),
            )?;
            println!(
                "created {}\n  cd {0} && cargo test && warden plugin build .",
                root.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir, target_dir } => {
            let out = tokio::task::spawn_blocking(move || {
                build::build_crate(&dir, target_dir.as_deref())
            })
            .await??;
            let bytes = std::fs::read(&out)?;
            use sha2::Digest as _;
            println!(
                "{}\n  size {} bytes, sha256 {}",
                out.display(),
                bytes.len(),
                hex::encode(sha2::Sha256::digest(&bytes))
            );
            Ok(())
        }
        PluginCommand::Test {
            component,
            manifest,
            fixture: fixture_path,
        } => {
            let manifest: Manifest = toml::from_str(
                &std::fs::read_to_string(&manifest)
                    .with_context(|| format!("cannot read {}", manifest.display()))?,
            )
            .with_context(|| format!("invalid {}", manifest.display()))?;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let fx: fixture::Fixture =
                serde_json::from_str(&std::fs::read_to_string(&fixture_path)?)
                    .with_context(|| format!("invalid fixture {}", fixture_path.display()))?;
            let host = crate::plugins::PluginHost::new()?;
            let report = fixture::run(host.runtime(), manifest, &bytes, fx).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.verdict.get("failed").is_some() {
                bail!("the plugin failed");
            }
            if report.expected == Some(false) {
                bail!("the verdict does not hold the fixture's `expect`");
            }
            Ok(())
        }
    }
}
