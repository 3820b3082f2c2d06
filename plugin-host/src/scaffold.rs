//! `warden plugin new`: a standalone plugin crate that builds into a loadable component.
//!
//! The crate is a copy of a template in `plugin-host/templates/<kind>/`: real crates in the
//! workspace, so that the suite compiles them and runs their tests. Only the name, the type and
//! the SDK's path change in the copy.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::manifest::PluginKind;

/// The SDK this binary was built with (a path dependency for new plugins by default).
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// One template's files, as built into the binary.
struct Template {
    crate_name: &'static str,
    type_name: &'static str,
    cargo: &'static str,
    lib: &'static str,
    manifest: &'static str,
    fixture: &'static str,
}

macro_rules! template {
    ($dir:literal, $crate_name:literal, $type_name:literal) => {
        Template {
            crate_name: $crate_name,
            type_name: $type_name,
            cargo: include_str!(concat!("../templates/", $dir, "/Cargo.toml")),
            lib: include_str!(concat!("../templates/", $dir, "/src/lib.rs")),
            manifest: include_str!(concat!("../templates/", $dir, "/plugin.toml")),
            fixture: include_str!(concat!("../templates/", $dir, "/fixtures/example.json")),
        }
    };
}

fn template(kind: PluginKind) -> Template {
    match kind {
        PluginKind::Classifier => {
            template!("classifier", "template-classifier", "TemplateClassifier")
        }
        PluginKind::AnomalyDetector => {
            template!(
                "anomaly-detector",
                "template-anomaly-detector",
                "TemplateAnomalyDetector"
            )
        }
        PluginKind::RollbackTrigger => {
            template!(
                "rollback-trigger",
                "template-rollback-trigger",
                "TemplateRollbackTrigger"
            )
        }
    }
}

/// The template's SDK dependency, as the template (inside this repository) names it.
const TEMPLATE_SDK: &str = r#"warden-sdk = { path = "../../../sdk" }"#;

/// Writes a new plugin crate `name` of `kind` into `dir/name`; returns its path.
pub fn new_plugin(dir: &Path, name: &str, kind: PluginKind, sdk: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || !name.as_bytes()[0].is_ascii_lowercase()
    {
        bail!("`{name}` is not a valid plugin name: use a-z, 0-9 and -, starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let sdk = std::fs::canonicalize(sdk)
        .with_context(|| format!("cannot find warden-sdk at {}", sdk.display()))?;
    let t = template(kind);
    let ty = name
        .split('-')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect::<String>();
    let named = |text: &str| text.replace(t.crate_name, name).replace(t.type_name, &ty);
    let sdk_line = format!("warden-sdk = {{ path = {:?} }}", sdk.display().to_string());
    anyhow::ensure!(
        t.cargo.contains(TEMPLATE_SDK),
        "the {kind:?} template names its SDK differently"
    );
    // A plugin is its own workspace, even inside another repository.
    let cargo = named(&t.cargo.replace(TEMPLATE_SDK, &sdk_line)) + "\n[workspace]\n";
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::create_dir_all(root.join("fixtures"))?;
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    std::fs::write(root.join("src/lib.rs"), named(t.lib))?;
    std::fs::write(root.join("plugin.toml"), named(t.manifest))?;
    std::fs::write(root.join("fixtures/example.json"), t.fixture)?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_scaffolded_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, name, ty) in [
            (PluginKind::Classifier, "watch-payments", "WatchPayments"),
            (PluginKind::AnomalyDetector, "night-owl", "NightOwl"),
            (PluginKind::RollbackTrigger, "error-spike", "ErrorSpike"),
        ] {
            let root = new_plugin(dir.path(), name, kind, &default_sdk_path()).unwrap();
            let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
            let (cargo, lib, manifest) =
                (read("Cargo.toml"), read("src/lib.rs"), read("plugin.toml"));
            assert!(
                cargo.contains(&format!("name = \"{name}\"")) && cargo.ends_with("[workspace]\n"),
                "{cargo}"
            );
            let sdk = std::fs::canonicalize(default_sdk_path()).unwrap();
            assert!(
                cargo.contains(&format!("path = {:?}", sdk.display().to_string())),
                "{cargo}"
            );
            assert!(
                lib.contains(&format!("pub struct {ty};")) && lib.contains(&format!("!({ty});")),
                "{lib}"
            );
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "{manifest}"
            );
            let kind_name = serde_json::to_value(kind).unwrap();
            assert!(
                manifest.contains(&format!("kind = {kind_name}")),
                "{manifest}"
            );
            for text in [&cargo, &lib, &manifest] {
                assert!(
                    !text.to_lowercase().contains("template"),
                    "a placeholder is left in {name}: {text}"
                );
            }
        }
        let again = new_plugin(
            dir.path(),
            "night-owl",
            PluginKind::AnomalyDetector,
            &default_sdk_path(),
        );
        assert!(again.unwrap_err().to_string().contains("exists already"));
        assert!(
            new_plugin(
                dir.path(),
                "Bad_Name",
                PluginKind::Classifier,
                &default_sdk_path()
            )
            .is_err()
        );
    }
}
