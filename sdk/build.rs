//! Embeds the WIT contract (`../wit/warden-plugin.wit`, the single source) into a macro, so the
//! export macros can generate a plugin's bindings inside the plugin's own crate.

use std::path::Path;

fn main() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/warden-plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    assert!(
        !text.contains("\"###"),
        "the WIT text must not contain the raw-string delimiter"
    );
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("wit_macro.rs");
    let source = format!(
        r####"/// Generates the bindings of one world of `warden:plugin` in the calling crate.
#[doc(hidden)]
#[macro_export]
macro_rules! __warden_bindings {{
    ($world:literal) => {{
        $crate::__private::wit_bindgen::generate!({{
            inline: r###"{text}"###,
            world: $world,
            runtime_path: "::warden_sdk::__private::wit_bindgen::rt",
            with: {{
                "warden:plugin/types@0.1.0/risk-level": ::warden_sdk::RiskLevel,
                "warden:plugin/types@0.1.0/change-summary": ::warden_sdk::ChangeSummary,
                "warden:plugin/types@0.1.0/action": ::warden_sdk::Action,
                "warden:plugin/types@0.1.0/classification": ::warden_sdk::Classification,
                "warden:plugin/types@0.1.0/baseline": ::warden_sdk::Baseline,
                "warden:plugin/types@0.1.0/activity": ::warden_sdk::Activity,
                "warden:plugin/types@0.1.0/finding": ::warden_sdk::Finding,
                "warden:plugin/types@0.1.0/metric-window": ::warden_sdk::MetricWindow,
                "warden:plugin/types@0.1.0/judgement-verdict": ::warden_sdk::JudgementVerdict,
                "warden:plugin/types@0.1.0/judgement": ::warden_sdk::Judgement,
                "warden:plugin/types@0.1.0/plugin-error": ::warden_sdk::PluginError,
                "warden:plugin/log@0.1.0": ::warden_sdk::__private::log_interface,
            }},
        }});
    }};
}}
"####
    );
    std::fs::write(out, source).unwrap();
}
