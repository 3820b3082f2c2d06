//! Embeds the WIT contract (`../wit/warden-plugin.wit`, the single source) into a macro, so the
//! export macros can generate a plugin's bindings inside the plugin's own crate.

use std::path::Path;

fn main() {
    // Read when the script runs, not baked in when it is compiled: the same compiled script is
    // reused by clones at other paths that share a target directory (CI's fresh clones).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit = Path::new(&dir).join("../wit/warden-plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    assert!(
        !text.contains("\"###"),
        "the WIT text must not contain the raw-string delimiter"
    );
    // The contract's version is written once, in the WIT package line.
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package warden:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("the WIT text names its package `warden:plugin@<version>`");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("wit_macro.rs");
    let source = format!(
        r####"/// The contract version this SDK builds plugins against (from the WIT package line).
pub const CONTRACT_VERSION: &str = "{version}";

/// Generates the bindings of one world of `warden:plugin` in the calling crate.
#[doc(hidden)]
#[macro_export]
macro_rules! __warden_bindings {{
    ($world:literal) => {{
        $crate::__private::wit_bindgen::generate!({{
            inline: r###"{text}"###,
            world: $world,
            runtime_path: "::warden_sdk::__private::wit_bindgen::rt",
            with: {{
                "warden:plugin/types@{version}/risk-level": ::warden_sdk::RiskLevel,
                "warden:plugin/types@{version}/change-summary": ::warden_sdk::ChangeSummary,
                "warden:plugin/types@{version}/action": ::warden_sdk::Action,
                "warden:plugin/types@{version}/classification": ::warden_sdk::Classification,
                "warden:plugin/types@{version}/baseline": ::warden_sdk::Baseline,
                "warden:plugin/types@{version}/activity": ::warden_sdk::Activity,
                "warden:plugin/types@{version}/finding": ::warden_sdk::Finding,
                "warden:plugin/types@{version}/metric-window": ::warden_sdk::MetricWindow,
                "warden:plugin/types@{version}/judgement-verdict": ::warden_sdk::JudgementVerdict,
                "warden:plugin/types@{version}/judgement": ::warden_sdk::Judgement,
                "warden:plugin/types@{version}/plugin-error": ::warden_sdk::PluginError,
                "warden:plugin/log@{version}": ::warden_sdk::__private::log_interface,
            }},
        }});
    }};
}}
"####
    );
    std::fs::write(out, source).unwrap();
}
