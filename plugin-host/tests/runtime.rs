//! The plugin runtime with real components built from the SDK: the reference plugins, and
//! hostile plugins that must never stall or crash the host, each call in a fresh instance.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use warden_core::decision::ChangeSummary;
use warden_core::plugin::{
    AnomalyContext, JudgementVerdict, MetricWindow, PluginAction, RecentActivity,
};
use warden_core::policy::RiskLevel;
use warden_core::records::Baseline;
use warden_plugin_host::manifest::Manifest;
use warden_plugin_host::{MemoryReset, PluginHost};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a plugin crate into a component once per test process (cargo serialises concurrent builds).
fn component(krate: &str) -> Vec<u8> {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
        OnceLock::new();
    let cache = BUILT.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(krate.to_string())
        .or_insert_with(|| {
            let path = warden_plugin_host::build::build_crate(
                &workspace().join(krate),
                Some(&plugin_target()),
            )
            .unwrap();
            std::fs::read(path).unwrap()
        })
        .clone()
}

/// Where plugins are built: beside the workspace's other builds.
fn plugin_target() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"))
        .join("plugins")
}

fn manifest(toml_text: &str) -> Manifest {
    toml::from_str(toml_text).unwrap()
}

#[tokio::test]
async fn bad_components_are_refused_with_the_reason() {
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let classifier = component("plugins/action-classifier");
    let m = |extra: &str| {
        manifest(&format!(
            "name = \"p\"\nversion = \"1.0.0\"\nkind = \"classifier\"\n{extra}"
        ))
    };
    assert!(rt.load(m(""), &classifier).is_ok());
    // The wrong world.
    let err = rt
        .load(
            manifest("name = \"p\"\nversion = \"1.0.0\"\nkind = \"anomaly_detector\""),
            &classifier,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("p@1.0.0") && err.contains("anomaly-detector") && err.contains("detect"),
        "{err}"
    );
    // Not a component at all, and a bare core module.
    let err = rt
        .load(m(""), b"definitely not wasm")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a WebAssembly component"), "{err}");
    let core = std::fs::read(
        std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target"))
            .join("plugins/wasm32-unknown-unknown/release/action_classifier.wasm"),
    )
    .unwrap();
    let err = rt.load(m(""), &core).unwrap_err().to_string();
    assert!(err.contains("not a WebAssembly component"), "{err}");
    // Over its module size limit.
    let err = rt
        .load(m("[limits]\nmodule_bytes = 1000\n"), &classifier)
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.module_bytes"), "{err}");
    // Built against a contract this host does not serve.
    let err = rt
        .load(m("contract = \"0.3.0\"\n"), &classifier)
        .unwrap_err()
        .to_string();
    assert!(err.contains("warden:plugin@0.3.0"), "{err}");
}

/// The plugins' view of an agent's deploy of `payments`, Tuesday 10:00 UTC, low table risk.
fn deploy(agent: &str, environment: &str) -> PluginAction {
    PluginAction {
        agent: agent.into(),
        team: "payments".into(),
        class: "deploy".into(),
        environment: environment.into(),
        service: "payments".into(),
        resources: vec![],
        change: None,
        estimated_cost_usd: None,
        reasoning: None,
        labels: vec![],
        hour_of_week: 34,
        table_risk: RiskLevel::Low,
    }
}

/// The reference anomaly detector as a component in the real runtime.
#[tokio::test]
async fn baseline_anomaly_component_flags_a_burst() {
    use warden_plugin_host::runtime::CallOutcome;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "baseline-anomaly", "anomaly_detector");
    assert_eq!(
        plugin.manifest.failure_policy(),
        warden_plugin_host::manifest::FailurePolicy::FailClosed
    );
    let mut counts = vec![0u32; 168];
    counts[24 + 10] = 40;
    let baseline = Baseline {
        team: "payments".into(),
        service: "payments".into(),
        class: "deploy".into(),
        environment: "staging".into(),
        sample_size: 400,
        warm: true,
        rate_per_hour: 2.0,
        change_size_median: 80.0,
        change_size_mad: 40.0,
        hour_of_week_counts: counts,
        seen_combinations: vec!["deploy/staging/payments".into()],
        targets_tracked: false,
        targets_seen: vec![],
        humans: 6,
        organisation: false,
        updated_at: 0,
    };
    let action = |hour| PluginAction {
        hour_of_week: hour,
        ..deploy("bot", "staging")
    };
    let calm = RecentActivity {
        actions_last_hour: 2,
        seen_combinations: vec![],
    };
    let call = rt
        .calls()
        .detect(
            &plugin,
            &action(34),
            &AnomalyContext {
                baseline: baseline.clone(),
                activity: calm,
            },
            0,
        )
        .await;
    let CallOutcome::Ok(findings) = call.outcome else {
        panic!("{:?}", call.outcome)
    };
    assert!(findings.is_empty(), "{findings:?}");
    let burst = RecentActivity {
        actions_last_hour: 40,
        seen_combinations: vec![],
    };
    let call = rt
        .calls()
        .detect(
            &plugin,
            &action(34),
            &AnomalyContext {
                baseline,
                activity: burst,
            },
            0,
        )
        .await;
    let CallOutcome::Ok(findings) = call.outcome else {
        panic!("{:?}", call.outcome)
    };
    let detectors: Vec<&str> = findings.iter().map(|f| f.detector.as_str()).collect();
    assert_eq!(detectors, vec!["burst_rate", "combined"]);
    assert!(findings[0].severity >= 90);
    assert!(call.fuel_used > 0);
}

/// An input larger than the SDK's arena spills into grown memory and is judged whole; the next
/// call, on the same store, starts again from the plugin's initial two pages.
#[tokio::test]
async fn an_input_larger_than_the_arena_is_judged_whole() {
    use warden_plugin_host::runtime::CallOutcome;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "action-classifier", "classifier");
    let mut paths: Vec<String> = (0..1000)
        .map(|i| format!("services/payments/src/handlers/module_{i:04}.rs"))
        .collect();
    paths.push("db/migrations/9999_drop_ledger.sql".into());
    let bytes: usize = paths.iter().map(String::len).sum();
    assert!(bytes > 40 << 10, "{bytes} bytes of paths");
    let big = PluginAction {
        change: Some(ChangeSummary {
            files_changed: paths.len() as u32,
            lines_added: 10,
            lines_deleted: 0,
            paths,
            breaking: false,
        }),
        ..deploy("bot", "staging")
    };
    let mut calls = rt.calls();
    let call = calls.classify(&plugin, &big, bytes).await;
    let CallOutcome::Ok(c) = call.outcome else {
        panic!("{:?}", call.outcome)
    };
    assert_eq!(c.level, RiskLevel::High, "{c:?}");
    assert!(
        c.categories
            .contains(&"sensitive_path:migrations".to_string()),
        "{c:?}"
    );
    assert!(
        call.peak_memory > 128 << 10,
        "peak memory {}",
        call.peak_memory
    );
    let call = calls.classify(&plugin, &deploy("bot", "staging"), 0).await;
    let CallOutcome::Ok(c) = call.outcome else {
        panic!("{:?}", call.outcome)
    };
    assert_eq!(c.level, RiskLevel::Low, "{c:?}");
    assert_eq!(
        call.peak_memory,
        128 << 10,
        "a fresh instance has its initial memory only"
    );
}

/// Every reference plugin passes its own fixtures (`plugins/<name>/fixtures/*.json`, what
/// `warden plugin test` runs) with its own `plugin.toml`, the example a team copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_plugins_pass_their_fixtures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rt = warden_plugin_host::runtime::Runtime::with_spares(0).unwrap();
    for krate in ["action-classifier", "baseline-anomaly", "canary-rollback"] {
        let dir = root.join("plugins").join(krate);
        let toml_text = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
        let component = component(&format!("plugins/{krate}"));
        let mut fixtures: Vec<_> = std::fs::read_dir(dir.join("fixtures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        fixtures.sort();
        assert!(fixtures.len() >= 2, "{krate} ships at least two fixtures");
        for path in fixtures {
            let fixture: warden_plugin_host::fixture::Fixture =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert!(
                fixture.expect.is_some(),
                "{} expects nothing",
                path.display()
            );
            let report =
                warden_plugin_host::fixture::run(&rt, manifest(&toml_text), &component, fixture)
                    .await
                    .unwrap();
            assert_eq!(
                report.expected,
                Some(true),
                "{}: {}",
                path.display(),
                report.verdict
            );
        }
    }
}

/// A reference plugin of `plugins/`, built and loaded as `<krate>@0.1.0`.
fn reference(
    rt: &warden_plugin_host::runtime::Runtime,
    krate: &str,
    kind: &str,
) -> warden_plugin_host::runtime::LoadedPlugin {
    let toml_text = format!("name = \"{krate}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"");
    rt.load(
        manifest(&toml_text),
        &component(&format!("plugins/{krate}")),
    )
    .unwrap()
}

/// The hostile test classifier, loaded as `<mode>@0.1.0` with `mode` in its config.
fn hostile_classifier(
    rt: &warden_plugin_host::runtime::Runtime,
    mode: &str,
) -> warden_plugin_host::runtime::LoadedPlugin {
    let toml_text = format!(
        "name = \"{mode}\"\nversion = \"0.1.0\"\nkind = \"classifier\"\n[config]\nmode = \"{mode}\"\n"
    );
    rt.load(manifest(&toml_text), &component("tests/plugins/hostile"))
        .unwrap()
}

/// Both ways of resetting a used memory (`[plugins] memory_reset`), where the kernel has both.
fn memory_resets() -> Vec<MemoryReset> {
    let mut ways = vec![MemoryReset::Copy];
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        ways.push(MemoryReset::Scan);
    }
    ways
}

/// Every call starts from the component's initial state: a plugin that keeps a call counter
/// and the previous caller in statics sees neither, whether its instances are spares made
/// ahead of need, have stores of their own or share one (as a decision's calls do), however
/// fast the calls come, and whichever way used memories are reset.
#[tokio::test]
async fn no_call_sees_another() {
    use warden_plugin_host::runtime::{CallOutcome, Runtime};
    for (per_plugin, reset) in memory_resets()
        .into_iter()
        .flat_map(|reset| [(2, reset), (0, reset)])
    {
        let rt = Runtime::configured(per_plugin, reset).unwrap();
        assert_eq!(rt.memory_reset(), reset);
        let plugin = hostile_classifier(&rt, "remember");
        let mut shared = rt.calls();
        let mut spares_used = 0;
        for round in 0..3 {
            spares_ready(&plugin, per_plugin).await;
            for agent in ["alice-bot", "mallory-bot", "bob-bot", "carol-bot"] {
                let action = deploy(agent, "production");
                for call in [
                    rt.calls().classify(&plugin, &action, 0).await,
                    shared.classify(&plugin, &action, 0).await,
                ] {
                    spares_used += usize::from(call.spare);
                    let CallOutcome::Ok(c) = call.outcome else {
                        panic!("{:?}", call.outcome)
                    };
                    assert_eq!(
                        c.reasons,
                        vec!["call 1".to_string(), "previous agent: \"\"".to_string()],
                        "round {round}, agent {agent}"
                    );
                }
            }
        }
        // Each round starts with `per_plugin` spares ready, and uses them first.
        assert!(
            spares_used >= 3 * per_plugin,
            "{spares_used} calls ran in spares with {per_plugin} per plugin"
        );
        assert!(per_plugin > 0 || spares_used == 0);
    }
}

/// Waits (up to ten seconds) until `plugin` has `n` spare instances ready.
async fn spares_ready(plugin: &warden_plugin_host::runtime::LoadedPlugin, n: usize) {
    for _ in 0..1000 {
        if plugin.spares_ready() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "{} has {} spares ready, not {n}",
        plugin.manifest.id(),
        plugin.spares_ready()
    );
}

/// A spare instance answers exactly as one instantiated for the call: the same verdict and the
/// same fuel (its instantiation's is charged to the call). Spares are made again after use.
#[tokio::test]
async fn a_spare_answers_as_a_fresh_instance() {
    use warden_plugin_host::runtime::{CallOutcome, Runtime};
    let with = Runtime::with_spares(2).unwrap();
    let without = Runtime::with_spares(0).unwrap();
    let (spared, plain) = (
        reference(&with, "action-classifier", "classifier"),
        reference(&without, "action-classifier", "classifier"),
    );
    let change = ChangeSummary {
        files_changed: 2,
        lines_added: 40,
        lines_deleted: 3,
        paths: vec![
            "db/migrations/0042_index.sql".into(),
            ".github/workflows/deploy.yml".into(),
        ],
        breaking: false,
    };
    let action = PluginAction {
        change: Some(change),
        ..deploy("bot", "production")
    };
    for round in 0..2 {
        spares_ready(&spared, 2).await;
        assert_eq!(plain.spares_ready(), 0);
        for _ in 0..2 {
            let (a, b) = (
                with.calls().classify(&spared, &action, 0).await,
                without.calls().classify(&plain, &action, 0).await,
            );
            assert!(
                a.spare && !b.spare,
                "round {round}: spare {} / {}",
                a.spare,
                b.spare
            );
            let (CallOutcome::Ok(x), CallOutcome::Ok(y)) = (a.outcome, b.outcome) else {
                panic!("round {round}")
            };
            assert_eq!(
                (x.level, x.score, &x.categories, &x.reasons),
                (y.level, y.score, &y.categories, &y.reasons)
            );
            assert!(
                x.categories
                    .contains(&"sensitive_path:migrations".to_string()),
                "{x:?}"
            );
            assert_eq!((a.fuel_used, a.peak_memory), (b.fuel_used, b.peak_memory));
        }
    }
}

/// A plugin that traps, or runs out of fuel on the fast path, leaves nothing behind for the
/// next plugin of the same decision, whether in a spare or in the store the calls share, and
/// whichever way used memories are reset (one of them grows its memory past every limit).
#[tokio::test]
async fn a_trap_does_not_harm_the_next_call() {
    use warden_plugin_host::runtime::{CallOutcome, Runtime};
    for (per_plugin, reset) in memory_resets()
        .into_iter()
        .flat_map(|reset| [(0, reset), (2, reset)])
    {
        let rt = Runtime::configured(per_plugin, reset).unwrap();
        let good = hostile_classifier(&rt, "ok");
        let action = deploy("bot", "production");
        for mode in ["panic", "loop", "busy", "grow"] {
            let bad = hostile_classifier(&rt, mode);
            spares_ready(&bad, per_plugin).await;
            spares_ready(&good, per_plugin).await;
            let mut calls = rt.calls();
            let first = calls.classify(&bad, &action, 0).await;
            let after = calls.classify(&good, &action, 0).await;
            assert!(
                matches!(after.outcome, CallOutcome::Ok(_)),
                "after {mode} ({:?}): {:?}",
                first.outcome,
                after.outcome
            );
            assert_eq!(
                after.spare,
                per_plugin > 0,
                "after {mode}, the next plugin's call runs in its spare"
            );
            // (A call that runs out of the fast path's fuel is run again in a store of its own.)
            if mode == "panic" {
                assert_eq!(
                    first.spare,
                    per_plugin > 0,
                    "a panic traps in the spare it ran in"
                );
            }
        }
    }
}

/// The hostile classifier (mode `ok`) with a start function added to its core module: `body`
/// runs in every instantiation, before any call. (Rust plugins have no start function, so the
/// test writes one in.)
fn hostile_with_start(
    rt: &warden_plugin_host::runtime::Runtime,
    name: &str,
    body: &wasm_encoder::Function,
) -> warden_plugin_host::runtime::LoadedPlugin {
    use wasmparser::{Parser, Payload};
    component("tests/plugins/hostile");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let core =
        std::fs::read(target.join("plugins/wasm32-unknown-unknown/release/hostile_plugin.wasm"))
            .unwrap();
    let (mut imported, mut defined, mut unit) = (0, 0, None);
    let mut module = wasm_encoder::Module::new();
    let mut code = wasm_encoder::CodeSection::new();
    for payload in Parser::new(0).parse_all(&core) {
        let payload = payload.unwrap();
        match &payload {
            Payload::TypeSection(r) => {
                unit = r.clone().into_iter_err_on_gc_types().position(|t| {
                    t.as_ref()
                        .is_ok_and(|t| t.params().is_empty() && t.results().is_empty())
                });
            }
            Payload::ImportSection(r) => {
                imported = r
                    .clone()
                    .into_imports()
                    .filter(|i| matches!(i.as_ref().unwrap().ty, wasmparser::TypeRef::Func(_)))
                    .count() as u32;
            }
            Payload::FunctionSection(r) => {
                let mut functions = wasm_encoder::FunctionSection::new();
                for ty in r.clone() {
                    functions.function(ty.unwrap());
                    defined += 1;
                }
                functions.function(unit.expect("a () -> () type") as u32);
                module.section(&functions);
                continue;
            }
            Payload::CodeSectionEntry(body) => {
                code.raw(body.as_bytes());
                continue;
            }
            Payload::CodeSectionStart { .. } => continue,
            Payload::DataSection(_) | Payload::CustomSection(_) if !code.is_empty() => {
                code.function(body);
                module.section(&code);
                code = wasm_encoder::CodeSection::new();
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            module.section(&wasm_encoder::RawSection {
                id,
                data: &core[range],
            });
        }
        if matches!(payload, Payload::ExportSection(_)) {
            module.section(&wasm_encoder::StartSection {
                function_index: imported + defined,
            });
        }
    }
    assert!(code.is_empty(), "the code section was written");
    let bytes = warden_plugin_host::build::componentize(&module.finish()).unwrap();
    rt.load(manifest(&format!("name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"classifier\"\n[config]\nmode = \"ok\"\n")), &bytes).unwrap()
}

/// A start function that counts to `n` (`None`: forever).
fn counting_start(n: Option<i32>) -> wasm_encoder::Function {
    use wasm_encoder::{BlockType, Instruction as I};
    let mut f = wasm_encoder::Function::new([(1, wasm_encoder::ValType::I32)]);
    f.instructions().loop_(BlockType::Empty);
    match n {
        Some(n) => f
            .instructions()
            .local_get(0)
            .i32_const(1)
            .i32_add()
            .local_tee(0)
            .i32_const(n)
            .i32_lt_u()
            .br_if(0),
        None => f.instructions().br(0),
    };
    f.instruction(&I::End).instruction(&I::End);
    f
}

/// A start function runs in every fresh instance: in a spare, on the spare thread, its fuel is
/// still charged to the call that takes it, exactly as when the call instantiates.
#[tokio::test]
async fn a_start_function_is_charged_to_the_call() {
    use warden_plugin_host::runtime::{CallOutcome, Runtime};
    let (with, without) = (
        Runtime::with_spares(2).unwrap(),
        Runtime::with_spares(0).unwrap(),
    );
    let (spared, plain) = (
        hostile_with_start(&with, "starts", &counting_start(Some(5_000))),
        hostile_with_start(&without, "starts", &counting_start(Some(5_000))),
    );
    let bare = hostile_classifier(&without, "ok");
    let action = deploy("bot", "production");
    spares_ready(&spared, 2).await;
    let (a, b, c) = (
        with.calls().classify(&spared, &action, 0).await,
        without.calls().classify(&plain, &action, 0).await,
        without.calls().classify(&bare, &action, 0).await,
    );
    assert!(a.spare && !b.spare);
    assert!(
        matches!(
            (&a.outcome, &b.outcome),
            (CallOutcome::Ok(_), CallOutcome::Ok(_))
        ),
        "{:?} {:?}",
        a.outcome,
        b.outcome
    );
    assert_eq!(a.fuel_used, b.fuel_used);
    assert!(
        a.fuel_used > c.fuel_used + 5_000,
        "with start {}, without {}",
        a.fuel_used,
        c.fuel_used
    );
}

/// A plugin whose start function never ends gets no spares (the spare thread gives up within the
/// fast path's fuel and goes on serving the other plugins); its calls fail on fuel and follow
/// its failure policy.
#[tokio::test]
async fn a_start_that_never_ends_gets_no_spares() {
    use warden_plugin_host::runtime::{CallOutcome, Runtime};
    let rt = Runtime::with_spares(2).unwrap();
    let stuck = hostile_with_start(&rt, "stuck", &counting_start(None));
    let good = hostile_classifier(&rt, "ok");
    spares_ready(&good, 2).await;
    let action = deploy("bot", "production");
    for _ in 0..2 {
        let call = rt.calls().classify(&stuck, &action, 0).await;
        assert!(!call.spare);
        let CallOutcome::Failed { limit, message } = call.outcome else {
            panic!("{:?}", call.outcome)
        };
        assert_eq!(limit, "fuel", "{message}");
        assert!(message.contains("stuck@0.1.0"), "{message}");
    }
    assert_eq!(stuck.spares_ready(), 0);
    // The thread still makes spares for the others.
    let call = rt.calls().classify(&good, &action, 0).await;
    assert!(call.spare && matches!(call.outcome, CallOutcome::Ok(_)));
    spares_ready(&good, 2).await;
}

/// A call that needs more fuel than the fast path allows is run again on the async path with
/// the plugin's whole budget, and answers as it would have.
#[tokio::test]
async fn a_busy_call_finishes_on_the_async_path() {
    use warden_plugin_host::runtime::{CallOutcome, FAST_FUEL};
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = hostile_classifier(rt, "busy");
    let action = deploy("busy-bot", "production");
    let call = rt.calls().classify(&plugin, &action, 0).await;
    let CallOutcome::Ok(c) = call.outcome else {
        panic!("{:?}", call.outcome)
    };
    let mut x = u64::from(action.hour_of_week);
    for _ in 0..300_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    assert_eq!(c.reasons, vec![format!("busy {x}")]);
    assert!(
        call.fuel_used > FAST_FUEL && call.fuel_used < 20_000_000,
        "fuel used {}",
        call.fuel_used
    );
    assert_eq!(
        call.logs,
        vec!["info: mode busy".to_string()],
        "the logs of the run that answered, once"
    );
}

/// The reference rollback trigger as a component in the real runtime.
#[tokio::test]
async fn canary_rollback_component_judges_windows() {
    use warden_plugin_host::runtime::CallOutcome;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "canary-rollback", "rollback_trigger");
    let action = PluginAction {
        table_risk: RiskLevel::High,
        ..deploy("bot", "production")
    };
    let baseline: Vec<f64> = (0..300).map(|i| 100.0 + f64::from(i % 30)).collect();
    let window = |canary: Vec<f64>, canary_errors: u64| MetricWindow {
        name: "latency_ms".into(),
        canary,
        baseline: baseline.clone(),
        canary_errors,
        canary_total: 5000,
        baseline_errors: 50,
        baseline_total: 5000,
        dry_run: false,
    };
    let judge = async |windows: Vec<MetricWindow>| {
        let call = rt.calls().judge(&plugin, &action, &windows, 0).await;
        let CallOutcome::Ok(judgement) = call.outcome else {
            panic!("{:?}", call.outcome)
        };
        judgement
    };
    let healthy = judge(vec![window(baseline.clone(), 52)]).await;
    assert_eq!(
        healthy.verdict,
        JudgementVerdict::Successful,
        "{:?}",
        healthy.reasons
    );
    let slow = judge(vec![window(baseline.iter().map(|v| v * 1.5).collect(), 52)]).await;
    assert_eq!(slow.verdict, JudgementVerdict::Failed, "{:?}", slow.reasons);
    let erroring = judge(vec![window(baseline.clone(), 150)]).await;
    assert_eq!(
        erroring.verdict,
        JudgementVerdict::Failed,
        "{:?}",
        erroring.reasons
    );
    assert!(
        erroring.reasons[0].contains("150/5000 errors"),
        "{:?}",
        erroring.reasons
    );
    let few = judge(vec![window(vec![400.0; 5], 52)]).await;
    assert_eq!(
        few.verdict,
        JudgementVerdict::Inconclusive,
        "{:?}",
        few.reasons
    );
}
