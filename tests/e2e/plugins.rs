//! WebAssembly plugins in the real runtime: the reference classifier in the pipeline, and
//! hostile plugins that must never stall or crash the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;
use warden::plugins::PluginHost;
use warden::plugins::manifest::Manifest;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer};

both_backends!(reference_classifier_raises_risk, hostile_plugins_follow_their_failure_policy, a_severe_anomaly_caps_the_tier);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Builds a plugin crate into a component once per test process (cargo serialises concurrent builds).
pub(crate) fn component(krate: &str) -> Vec<u8> {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = BUILT.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(krate.to_string())
        .or_insert_with(|| {
            let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target")).join("plugins");
            let path = warden::plugins::build::build_crate(&workspace().join(krate), Some(&target)).unwrap();
            std::fs::read(path).unwrap()
        })
        .clone()
}

fn manifest(toml_text: &str) -> Manifest {
    toml::from_str(toml_text).unwrap()
}

/// Writes `<dir>/<name>/plugin.toml` and `plugin.wasm`.
fn install(dir: &Path, name: &str, manifest_toml: &str, wasm: &[u8]) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("plugin.toml"), manifest_toml).unwrap();
    std::fs::write(d.join("plugin.wasm"), wasm).unwrap();
}

async fn server_with_plugins(backend: Backend, plugins: &Path) -> TestServer {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.plugins.dir = Some(plugins.to_path_buf());
    TestServer::start_with(db, config).await
}

async fn reference_classifier_raises_risk(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "action-classifier",
        "name = \"action-classifier\"\nversion = \"0.1.0\"\nkind = \"classifier\"\n",
        &component("plugins/action-classifier"),
    );
    let s = server_with_plugins(backend, dir.path()).await;
    let bot = s.agent("bot", 2, json!({})).await;
    // The table alone says a staging deploy is low risk; a migration path makes it high.
    let (_, plain) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!((plain["verdict"].as_str(), plain["risk"]["level"].as_str()), (Some("allow"), Some("low")), "{plain}");
    let report = &plain["plugins"][0];
    assert_eq!(report["plugin"], "action-classifier@0.1.0");
    assert_eq!(report["outcome"], "ok");
    assert!(report["fuel_used"].as_u64().unwrap() > 0);
    let change = json!({"files_changed": 1, "lines_added": 12, "lines_deleted": 0, "paths": ["db/migrations/0042_index.sql"]});
    let (_, risky) =
        s.decide(&bot, "deploy", "staging", json!({"action": {"class": "deploy", "environment": "staging", "service": "payments", "change": change}})).await;
    assert_eq!((risky["verdict"].as_str(), risky["risk"]["level"].as_str()), (Some("require_approval"), Some("high")), "{risky}");
    assert!(risky["risk"]["categories"].as_array().unwrap().iter().any(|c| c == "sensitive_path:migrations"));
    assert!(risky["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "plugin_risk"));
    // The audit record names the plugin, its verdict and its cost.
    let (_, page) = s.get("/v1/audit?event_type=decision", &s.admin).await;
    let plugins = &page["records"][1]["details"]["plugins"][0];
    assert_eq!((plugins["plugin"].as_str(), plugins["level"].as_str()), (Some("action-classifier@0.1.0"), Some("high")));
    assert!(plugins["duration_us"].as_u64().is_some());
    // `/metrics` counts where the two calls found their instances.
    let (_, metrics) = s.call(reqwest::Method::GET, "/metrics", None, None).await;
    let count = |name: &str| -> u64 {
        let line = metrics.as_str().unwrap().lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(count("warden_plugin_spare_instances_total") + count("warden_plugin_on_demand_instances_total"), 2, "{metrics}");
}

/// The reference anomaly detector in the pipeline: quiet against a cold baseline, and a burst
/// far above the team's human rate caps the agent's tier so production waits for a human.
async fn a_severe_anomaly_caps_the_tier(backend: Backend) {
    use warden::store::{Baseline, Change, Write};
    let dir = tempfile::tempdir().unwrap();
    let manifest = "name = \"baseline-anomaly\"\nversion = \"0.1.0\"\nkind = \"anomaly_detector\"\nclasses = [\"deploy\"]\n";
    install(dir.path(), "baseline-anomaly", manifest, &component("plugins/baseline-anomaly"));
    let s = server_with_plugins(backend, dir.path()).await;
    let bot = s.agent("bot", 3, json!({})).await;

    // No baseline yet: the detector runs, finds nothing, and the trusted agent deploys.
    let (_, cold) = s.decide(&bot, "deploy", "production", json!({})).await;
    assert_eq!(cold["verdict"], "allow", "{cold}");
    assert_eq!(cold["anomaly"], json!({"severity": 0, "findings": []}), "{cold}");
    assert_eq!(cold["plugins"][0]["plugin"], "baseline-anomaly@0.1.0");
    // Classes the manifest does not name never reach the detector.
    let (_, docs) = s.decide(&bot, "docs_update", "production", json!({})).await;
    assert!(docs.get("anomaly").is_none() && docs["plugins"] == json!([]), "{docs}");

    // Humans of the team deploy payments to production about once in ten hours, at any hour.
    let baseline = Baseline {
        team: "payments".into(),
        service: "payments".into(),
        class: "deploy".into(),
        environment: "production".into(),
        sample_size: 500,
        warm: true,
        rate_per_hour: 0.1,
        change_size_median: 100.0,
        change_size_mad: 50.0,
        hour_of_week_counts: vec![3; 168],
        seen_combinations: vec!["deploy/production/payments".into()],
        updated_at: 0,
    };
    s.warden.state.store.commit(Change { writes: vec![Write::UpsertBaseline(baseline)], audit: vec![] }).await.unwrap();

    // The agent keeps deploying: within a few actions the burst is severe and caps it at tier 2.
    let mut capped = None;
    for n in 2..=6 {
        let (_, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
        if answer["verdict"] == "require_approval" {
            capped = Some((n, answer));
            break;
        }
        assert_eq!(answer["verdict"], "allow", "{answer}");
    }
    let (n, answer) = capped.expect("a burst of production deploys is never capped");
    assert!(n <= 4, "capped only at action {n}");
    assert_eq!((answer["tier"].as_u64(), answer["agent_tier"].as_u64()), (Some(2), Some(3)), "{answer}");
    let severity = answer["anomaly"]["severity"].as_u64().unwrap();
    assert!(severity >= 70, "{answer}");
    let detectors: Vec<&str> = answer["anomaly"]["findings"].as_array().unwrap().iter().map(|f| f["detector"].as_str().unwrap()).collect();
    assert!(detectors.contains(&"burst_rate"), "{answer}");
    assert!(answer["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "anomaly_cap"), "{answer}");
    // The audit record keeps the findings.
    let (_, page) = s.get("/v1/audit?event_type=decision", &s.admin).await;
    let last = page["records"].as_array().unwrap().last().unwrap();
    assert_eq!(last["details"]["anomaly"]["severity"].as_u64(), Some(severity), "{last}");

    // A human lets it through; it fails: the anomaly is confirmed, a hard trigger.
    let grants = json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
    assert_eq!(s.post("/v1/humans", &s.admin, json!({"id": "carol", "team": "platform", "grants": grants})).await.0, 201);
    let carol = s.token("approver", Some("carol")).await;
    let approval = answer["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(s.post(&format!("/v1/approvals/{approval}/approve"), &carol, json!({})).await.0, 200);
    let (_, allowed) = s.decide(&bot, "deploy", "production", json!({"approval_id": approval})).await;
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    assert!(allowed["anomaly"]["severity"].as_u64().unwrap() >= 70, "{allowed}");
    let path = format!("/v1/decisions/{}/outcome", allowed["decision_id"].as_str().unwrap());
    assert_eq!(s.post(&path, &bot, json!({"status": "failed"})).await.0, 200);
    let (_, agent) = s.get("/v1/agents/bot", &s.admin).await;
    assert_eq!(agent["tier"], 1, "{agent}");
    let (_, history) = s.get("/v1/agents/bot/trust/history", &s.admin).await;
    assert_eq!(history["changes"][0]["reason"], "confirmed_severe_anomaly", "{history}");
}

async fn hostile_plugins_follow_their_failure_policy(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = component("tests/plugins/hostile");
    // Each misbehaviour watches one action class, so each request meets exactly one of them.
    for (mode, class, extra) in [
        ("loop", "infra_delete", ""),
        ("grow", "infra_create", "[limits]\nmemory_bytes = 4194304\n"),
        ("panic", "api_call", ""),
        ("huge_output", "config_change", ""),
        ("error", "docs_update", "failure_policy = \"fail_open\"\n"),
        ("ok", "db_migration", ""),
    ] {
        let name = format!("hostile-{}", mode.replace('_', "-"));
        let toml_text = format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"classifier\"\nclasses = [\"{class}\"]\n{extra}[config]\nmode = \"{mode}\"\n");
        install(dir.path(), &name, &toml_text, &wasm);
    }
    let s = server_with_plugins(backend, dir.path()).await;
    let bot = s.agent("bot", 2, json!({})).await;

    // Infinite loops run concurrently with ordinary requests, which keep being answered.
    let mut loops = Vec::new();
    for _ in 0..6 {
        let (client, base, bot) = (s.client.clone(), s.base.clone(), bot.clone());
        loops.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{base}/v1/decisions"))
                .bearer_auth(bot)
                .json(&json!({"action": {"class": "infra_delete", "environment": "dev", "service": "x"}}))
                .send()
                .await
                .unwrap();
            resp.json::<serde_json::Value>().await.unwrap()
        }));
    }
    for _ in 0..5 {
        assert_eq!(s.verdict(&bot, "read", "dev").await, "allow");
    }
    for l in loops {
        let a = l.await.unwrap();
        // fail_closed: treated as critical. Tier 2 may act alone in dev up to high only, so approval is needed.
        assert_eq!((a["verdict"].as_str(), a["risk"]["level"].as_str()), (Some("require_approval"), Some("critical")), "{a}");
        let report = &a["plugins"][0];
        assert_eq!((report["error"].as_str(), report["failure_policy"].as_str()), (Some("fuel"), Some("fail_closed")));
        assert!(report["message"].as_str().unwrap().contains("hostile-loop@1.0.0") && report["message"].as_str().unwrap().contains("limits.fuel"), "{report}");
    }
    for (class, error, limit_text) in
        [("infra_create", "memory", "limits.memory_bytes"), ("api_call", "trap", "trapped"), ("config_change", "output", "limits.output_bytes")]
    {
        let (_, a) = s.decide(&bot, class, "dev", json!({})).await;
        assert_eq!(a["risk"]["level"], "critical", "{class}: {a}");
        assert_eq!(a["verdict"], "require_approval", "{class}: {a}");
        let report = &a["plugins"][0];
        assert_eq!(report["error"], error, "{class}: {report}");
        assert!(report["message"].as_str().unwrap().contains(limit_text), "{class}: {report}");
        assert!(a["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "plugin_failed"));
    }
    // fail_open: the failure is recorded and ignored.
    let (_, a) = s.decide(&bot, "docs_update", "dev", json!({})).await;
    assert_eq!(
        (a["verdict"].as_str(), a["plugins"][0]["outcome"].as_str(), a["plugins"][0]["error"].as_str()),
        (Some("allow"), Some("plugin_error"), Some("refused")),
        "{a}"
    );
    assert_eq!(a["plugins"][0]["logs"][0], "info: mode error");
    // A classifier cannot lower the table's risk.
    let (_, a) = s.decide(&bot, "db_migration", "production", json!({})).await;
    assert_eq!((a["risk"]["level"].as_str(), a["plugins"][0]["level"].as_str()), (Some("high"), Some("low")), "{a}");
    // The server is still healthy.
    assert_eq!(s.call(reqwest::Method::GET, "/readyz", None, None).await.0, 200);
}

#[tokio::test]
async fn bad_components_are_refused_with_the_reason() {
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let classifier = component("plugins/action-classifier");
    let m = |extra: &str| manifest(&format!("name = \"p\"\nversion = \"1.0.0\"\nkind = \"classifier\"\n{extra}"));
    assert!(rt.load(m(""), &classifier).is_ok());
    // The wrong world.
    let err = rt.load(manifest("name = \"p\"\nversion = \"1.0.0\"\nkind = \"anomaly_detector\""), &classifier).unwrap_err().to_string();
    assert!(err.contains("p@1.0.0") && err.contains("anomaly-detector") && err.contains("detect"), "{err}");
    // Not a component at all, and a bare core module.
    let err = rt.load(m(""), b"definitely not wasm").unwrap_err().to_string();
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
    let err = rt.load(m("[limits]\nmodule_bytes = 1000\n"), &classifier).unwrap_err().to_string();
    assert!(err.contains("limits.module_bytes"), "{err}");
    // Built against a contract this host does not serve.
    let err = rt.load(m("contract = \"0.2.0\"\n"), &classifier).unwrap_err().to_string();
    assert!(err.contains("warden:plugin@0.2.0"), "{err}");
}

both_backends!(plugins_through_the_admin_api, replicas_pick_up_plugin_changes);

fn upload(name: &str, version: &str, wasm: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    json!({"manifest": {"name": name, "version": version, "kind": "classifier"}, "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}

async fn plugins_through_the_admin_api(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let wasm = component("plugins/action-classifier");
    let (status, loaded) = s.post("/v1/plugins", &s.admin, upload("classify", "1.0.0", &wasm)).await;
    assert_eq!((status.as_u16(), loaded["changed"].as_bool()), (201, Some(true)), "{loaded}");
    // Loading the same thing again changes nothing.
    assert_eq!(s.post("/v1/plugins", &s.admin, upload("classify", "1.0.0", &wasm)).await.1["changed"], false);
    let (_, list) = s.get("/v1/plugins", &s.admin).await;
    use sha2::Digest as _;
    assert_eq!(list[0]["sha256"], hex::encode(sha2::Sha256::digest(&wasm)));
    assert_eq!(list[0]["failure_policy"], "fail_closed");
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"][0]["plugin"], "classify@1.0.0");
    // A new version swaps in without a restart.
    assert_eq!(s.post("/v1/plugins", &s.admin, upload("classify", "1.1.0", &wasm)).await.0, 201);
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"][0]["plugin"], "classify@1.1.0");
    // Removal.
    assert_eq!(s.call(reqwest::Method::DELETE, "/v1/plugins/classify", Some(&s.admin), None).await.0, 204);
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"].as_array().unwrap().len(), 0);
    crate::support::assert_error(&s.call(reqwest::Method::DELETE, "/v1/plugins/classify", Some(&s.admin), None).await, 404, "unknown_plugin");
    // Every load, swap and removal is audited.
    let (_, page) = s.get("/v1/audit?limit=1000", &s.admin).await;
    let events: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["event_type"].as_str().unwrap()).filter(|e| e.starts_with("plugin.")).collect();
    assert_eq!(events, vec!["plugin.loaded", "plugin.replaced", "plugin.removed"]);
    // Bad uploads are 400s that say why; only admins may load.
    let mut bad = upload("classify", "1.0.0", &wasm);
    bad["component_base64"] = json!("%%%");
    assert_eq!(crate::support::assert_error(&s.post("/v1/plugins", &s.admin, bad).await, 400, "invalid_field").as_deref(), Some("component_base64"));
    let err = s.post("/v1/plugins", &s.admin, upload("junk", "1.0.0", b"not a component")).await;
    crate::support::assert_error(&err, 400, "invalid_plugin");
    assert!(err.1["error"]["message"].as_str().unwrap().contains("not a WebAssembly component"));
    let mut bad_manifest = upload("classify", "1.0.0", &wasm);
    bad_manifest["manifest"]["limits"] = json!({"fuel": 0});
    assert_eq!(
        crate::support::assert_error(&s.post("/v1/plugins", &s.admin, bad_manifest).await, 400, "invalid_field").as_deref(),
        Some("manifest.limits.fuel")
    );
    crate::support::assert_error(&s.post("/v1/plugins", &bot, upload("classify", "1.0.0", &wasm)).await, 403, "forbidden_role");
}

async fn replicas_pick_up_plugin_changes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.plugins.sync_interval_ms = 100;
    let replica_config = config.clone();
    let s = TestServer::start_with(db, config).await;
    // A second replica on the same database.
    let replica = crate::support::Replica::start(replica_config).await;
    let base2 = replica.base.clone();
    let listed = |base: String| {
        let (client, admin) = (s.client.clone(), s.admin.clone());
        async move { client.get(format!("{base}/v1/plugins")).bearer_auth(admin).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let wait_for = |want: usize| {
        let base2 = base2.clone();
        async move {
            for _ in 0..100 {
                if listed(base2.clone()).await.as_array().unwrap().len() == want {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(s.post("/v1/plugins", &s.admin, upload("classify", "1.0.0", &component("plugins/action-classifier"))).await.0.is_success());
    assert!(wait_for(1).await, "the other replica never loaded the plugin");
    assert_eq!(listed(base2.clone()).await[0]["version"], "1.0.0");
    assert_eq!(s.call(reqwest::Method::DELETE, "/v1/plugins/classify", Some(&s.admin), None).await.0, 204);
    assert!(wait_for(0).await, "the other replica never unloaded the plugin");
    replica.stop().await;
}

/// The plugin author's path through the real binary: scaffold, build, test against a fixture.
#[tokio::test]
async fn author_path_new_build_test() {
    let bin = env!("CARGO_BIN_EXE_warden");
    let dir = tempfile::tempdir().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target")).join("plugins");
    let run = |args: &[&str], cwd: &Path| std::process::Command::new(bin).args(args).current_dir(cwd).output().unwrap();
    let out = run(&["plugin", "new", "watch-payments", "--kind", "classifier"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let krate = dir.path().join("watch-payments");
    let out = run(&["plugin", "build", ".", "--target-dir", target.to_str().unwrap()], &krate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let component = target.join("wasm32-unknown-unknown/release/watch_payments.component.wasm");
    let out = run(&["plugin", "test", component.to_str().unwrap(), "--fixture", "fixtures/example.json"], &krate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["plugin"], "watch-payments@0.1.0");
    assert_eq!(report["verdict"]["level"], "high", "{report}");
    assert!(report["fuel_used"].as_u64().unwrap() > 0);
    assert!(report["module_size"].as_u64().unwrap() > 0);
    assert_eq!(report["logs"][0], "debug: payments -> High");
    // A fixture that names no service it watches stays at the table's risk.
    let quiet = krate.join("fixtures/quiet.json");
    std::fs::write(
        &quiet,
        r#"{"action": {"agent": "a", "team": "t", "class": "deploy", "environment": "production", "service": "docs", "table_risk": "medium"}}"#,
    )
    .unwrap();
    let out = run(&["plugin", "test", component.to_str().unwrap(), "--fixture", quiet.to_str().unwrap()], &krate);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["level"], "medium", "{report}");
}

/// The plugins' view of an agent's deploy of `payments`, Tuesday 10:00 UTC, low table risk.
fn deploy(agent: &str, environment: &str) -> warden::plugins::runtime::bindings::types::Action {
    warden::plugins::runtime::bindings::types::Action {
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
        table_risk: warden::plugins::runtime::bindings::types::RiskLevel::Low,
    }
}

/// The reference anomaly detector as a component in the real runtime.
#[tokio::test]
async fn baseline_anomaly_component_flags_a_burst() {
    use warden::plugins::runtime::CallOutcome;
    use warden::plugins::runtime::bindings::types as wit;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "baseline-anomaly", "anomaly_detector");
    assert_eq!(plugin.manifest.failure_policy(), warden::plugins::manifest::FailurePolicy::FailClosed);
    let mut counts = vec![0u32; 168];
    counts[24 + 10] = 40;
    let baseline = wit::Baseline {
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
    };
    let action = |hour| wit::Action { hour_of_week: hour, ..deploy("bot", "staging") };
    let calm = wit::Activity { actions_last_hour: 2, seen_combinations: vec![] };
    let call = rt.calls().detect(&plugin, &action(34), &baseline, &calm, 0).await;
    let CallOutcome::Ok(findings) = call.outcome else { panic!("{:?}", call.outcome) };
    assert!(findings.is_empty(), "{findings:?}");
    let burst = wit::Activity { actions_last_hour: 40, seen_combinations: vec![] };
    let call = rt.calls().detect(&plugin, &action(34), &baseline, &burst, 0).await;
    let CallOutcome::Ok(findings) = call.outcome else { panic!("{:?}", call.outcome) };
    let detectors: Vec<&str> = findings.iter().map(|f| f.detector.as_str()).collect();
    assert_eq!(detectors, vec!["burst_rate", "combined"]);
    assert!(findings[0].severity >= 90);
    assert!(call.fuel_used > 0);
}

/// An input larger than the SDK's arena spills into grown memory and is judged whole; the next
/// call, on the same store, starts again from the plugin's initial two pages.
#[tokio::test]
async fn an_input_larger_than_the_arena_is_judged_whole() {
    use warden::plugins::runtime::CallOutcome;
    use warden::plugins::runtime::bindings::types as wit;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "action-classifier", "classifier");
    let mut paths: Vec<String> = (0..1000).map(|i| format!("services/payments/src/handlers/module_{i:04}.rs")).collect();
    paths.push("db/migrations/9999_drop_ledger.sql".into());
    let bytes: usize = paths.iter().map(String::len).sum();
    assert!(bytes > 40 << 10, "{bytes} bytes of paths");
    let big = wit::Action {
        change: Some(wit::ChangeSummary { files_changed: paths.len() as u32, lines_added: 10, lines_deleted: 0, paths, breaking: false }),
        ..deploy("bot", "staging")
    };
    let mut calls = rt.calls();
    let call = calls.classify(&plugin, &big, bytes).await;
    let CallOutcome::Ok(c) = call.outcome else { panic!("{:?}", call.outcome) };
    assert_eq!(c.level, wit::RiskLevel::High, "{c:?}");
    assert!(c.categories.contains(&"sensitive_path:migrations".to_string()), "{c:?}");
    assert!(call.peak_memory > 128 << 10, "peak memory {}", call.peak_memory);
    let call = calls.classify(&plugin, &deploy("bot", "staging"), 0).await;
    let CallOutcome::Ok(c) = call.outcome else { panic!("{:?}", call.outcome) };
    assert_eq!(c.level, wit::RiskLevel::Low, "{c:?}");
    assert_eq!(call.peak_memory, 128 << 10, "a fresh instance has its initial memory only");
}

/// A reference plugin of `plugins/`, built and loaded as `<krate>@0.1.0`.
fn reference(rt: &warden::plugins::runtime::Runtime, krate: &str, kind: &str) -> warden::plugins::runtime::LoadedPlugin {
    let toml_text = format!("name = \"{krate}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"");
    rt.load(manifest(&toml_text), &component(&format!("plugins/{krate}"))).unwrap()
}

/// The hostile test classifier, loaded as `<mode>@0.1.0` with `mode` in its config.
fn hostile_classifier(rt: &warden::plugins::runtime::Runtime, mode: &str) -> warden::plugins::runtime::LoadedPlugin {
    let toml_text = format!("name = \"{mode}\"\nversion = \"0.1.0\"\nkind = \"classifier\"\n[config]\nmode = \"{mode}\"\n");
    rt.load(manifest(&toml_text), &component("tests/plugins/hostile")).unwrap()
}

/// Every call starts from the component's initial state: a plugin that keeps a call counter
/// and the previous caller in statics sees neither, whether its instances are spares made
/// ahead of need, have stores of their own or share one (as a decision's calls do), and
/// however fast the calls come.
#[tokio::test]
async fn no_call_sees_another() {
    use warden::plugins::runtime::{CallOutcome, Runtime};
    for per_plugin in [2, 0] {
        let rt = Runtime::with_spares(per_plugin).unwrap();
        let plugin = hostile_classifier(&rt, "remember");
        let mut shared = rt.calls();
        let mut spares_used = 0;
        for round in 0..3 {
            spares_ready(&plugin, per_plugin).await;
            for agent in ["alice-bot", "mallory-bot", "bob-bot", "carol-bot"] {
                let action = deploy(agent, "production");
                for call in [rt.calls().classify(&plugin, &action, 0).await, shared.classify(&plugin, &action, 0).await] {
                    spares_used += usize::from(call.spare);
                    let CallOutcome::Ok(c) = call.outcome else { panic!("{:?}", call.outcome) };
                    assert_eq!(c.reasons, vec!["call 1".to_string(), "previous agent: \"\"".to_string()], "round {round}, agent {agent}");
                }
            }
        }
        // Each round starts with `per_plugin` spares ready, and uses them first.
        assert!(spares_used >= 3 * per_plugin, "{spares_used} calls ran in spares with {per_plugin} per plugin");
        assert!(per_plugin > 0 || spares_used == 0);
    }
}

/// Waits (up to ten seconds) until `plugin` has `n` spare instances ready.
async fn spares_ready(plugin: &warden::plugins::runtime::LoadedPlugin, n: usize) {
    for _ in 0..1000 {
        if plugin.spares_ready() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} has {} spares ready, not {n}", plugin.manifest.id(), plugin.spares_ready());
}

/// A spare instance answers exactly as one instantiated for the call: the same verdict and the
/// same fuel (its instantiation's is charged to the call). Spares are made again after use.
#[tokio::test]
async fn a_spare_answers_as_a_fresh_instance() {
    use warden::plugins::runtime::{CallOutcome, Runtime};
    let with = Runtime::with_spares(2).unwrap();
    let without = Runtime::with_spares(0).unwrap();
    let (spared, plain) = (reference(&with, "action-classifier", "classifier"), reference(&without, "action-classifier", "classifier"));
    let change = warden::plugins::runtime::bindings::types::ChangeSummary {
        files_changed: 2,
        lines_added: 40,
        lines_deleted: 3,
        paths: vec!["db/migrations/0042_index.sql".into(), ".github/workflows/deploy.yml".into()],
        breaking: false,
    };
    let action = warden::plugins::runtime::bindings::types::Action { change: Some(change), ..deploy("bot", "production") };
    for round in 0..2 {
        spares_ready(&spared, 2).await;
        assert_eq!(plain.spares_ready(), 0);
        for _ in 0..2 {
            let (a, b) = (with.calls().classify(&spared, &action, 0).await, without.calls().classify(&plain, &action, 0).await);
            assert!(a.spare && !b.spare, "round {round}: spare {} / {}", a.spare, b.spare);
            let (CallOutcome::Ok(x), CallOutcome::Ok(y)) = (a.outcome, b.outcome) else { panic!("round {round}") };
            assert_eq!((x.level, x.score, &x.categories, &x.reasons), (y.level, y.score, &y.categories, &y.reasons));
            assert!(x.categories.contains(&"sensitive_path:migrations".to_string()), "{x:?}");
            assert_eq!((a.fuel_used, a.peak_memory), (b.fuel_used, b.peak_memory));
        }
    }
}

/// A plugin that traps, or runs out of fuel on the fast path, leaves nothing behind for the
/// next plugin of the same decision, whether in a spare or in the store the calls share.
#[tokio::test]
async fn a_trap_does_not_harm_the_next_call() {
    use warden::plugins::runtime::{CallOutcome, Runtime};
    for per_plugin in [0, 2] {
        let rt = Runtime::with_spares(per_plugin).unwrap();
        let good = hostile_classifier(&rt, "ok");
        let action = deploy("bot", "production");
        for mode in ["panic", "loop", "busy", "grow"] {
            let bad = hostile_classifier(&rt, mode);
            spares_ready(&bad, per_plugin).await;
            spares_ready(&good, per_plugin).await;
            let mut calls = rt.calls();
            let first = calls.classify(&bad, &action, 0).await;
            let after = calls.classify(&good, &action, 0).await;
            assert!(matches!(after.outcome, CallOutcome::Ok(_)), "after {mode} ({:?}): {:?}", first.outcome, after.outcome);
            assert_eq!(after.spare, per_plugin > 0, "after {mode}, the next plugin's call runs in its spare");
            // (A call that runs out of the fast path's fuel is run again in a store of its own.)
            if mode == "panic" {
                assert_eq!(first.spare, per_plugin > 0, "a panic traps in the spare it ran in");
            }
        }
    }
}

/// The hostile classifier (mode `ok`) with a start function added to its core module: `body`
/// runs in every instantiation, before any call. (Rust plugins have no start function, so the
/// test writes one in.)
fn hostile_with_start(rt: &warden::plugins::runtime::Runtime, name: &str, body: &wasm_encoder::Function) -> warden::plugins::runtime::LoadedPlugin {
    use wasmparser::{Parser, Payload};
    component("tests/plugins/hostile");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target"));
    let core = std::fs::read(target.join("plugins/wasm32-unknown-unknown/release/hostile_plugin.wasm")).unwrap();
    let (mut imported, mut defined, mut unit) = (0, 0, None);
    let mut module = wasm_encoder::Module::new();
    let mut code = wasm_encoder::CodeSection::new();
    for payload in Parser::new(0).parse_all(&core) {
        let payload = payload.unwrap();
        match &payload {
            Payload::TypeSection(r) => {
                unit = r.clone().into_iter_err_on_gc_types().position(|t| t.as_ref().is_ok_and(|t| t.params().is_empty() && t.results().is_empty()));
            }
            Payload::ImportSection(r) => {
                imported = r.clone().into_imports().filter(|i| matches!(i.as_ref().unwrap().ty, wasmparser::TypeRef::Func(_))).count() as u32;
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
            module.section(&wasm_encoder::RawSection { id, data: &core[range] });
        }
        if matches!(payload, Payload::ExportSection(_)) {
            module.section(&wasm_encoder::StartSection { function_index: imported + defined });
        }
    }
    assert!(code.is_empty(), "the code section was written");
    let bytes = warden::plugins::build::componentize(&module.finish()).unwrap();
    rt.load(manifest(&format!("name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"classifier\"\n[config]\nmode = \"ok\"\n")), &bytes).unwrap()
}

/// A start function that counts to `n` (`None`: forever).
fn counting_start(n: Option<i32>) -> wasm_encoder::Function {
    use wasm_encoder::{BlockType, Instruction as I};
    let mut f = wasm_encoder::Function::new([(1, wasm_encoder::ValType::I32)]);
    f.instructions().loop_(BlockType::Empty);
    match n {
        Some(n) => f.instructions().local_get(0).i32_const(1).i32_add().local_tee(0).i32_const(n).i32_lt_u().br_if(0),
        None => f.instructions().br(0),
    };
    f.instruction(&I::End).instruction(&I::End);
    f
}

/// A start function runs in every fresh instance: in a spare, on the spare thread, its fuel is
/// still charged to the call that takes it, exactly as when the call instantiates.
#[tokio::test]
async fn a_start_function_is_charged_to_the_call() {
    use warden::plugins::runtime::{CallOutcome, Runtime};
    let (with, without) = (Runtime::with_spares(2).unwrap(), Runtime::with_spares(0).unwrap());
    let (spared, plain) =
        (hostile_with_start(&with, "starts", &counting_start(Some(5_000))), hostile_with_start(&without, "starts", &counting_start(Some(5_000))));
    let bare = hostile_classifier(&without, "ok");
    let action = deploy("bot", "production");
    spares_ready(&spared, 2).await;
    let (a, b, c) = (
        with.calls().classify(&spared, &action, 0).await,
        without.calls().classify(&plain, &action, 0).await,
        without.calls().classify(&bare, &action, 0).await,
    );
    assert!(a.spare && !b.spare);
    assert!(matches!((&a.outcome, &b.outcome), (CallOutcome::Ok(_), CallOutcome::Ok(_))), "{:?} {:?}", a.outcome, b.outcome);
    assert_eq!(a.fuel_used, b.fuel_used);
    assert!(a.fuel_used > c.fuel_used + 5_000, "with start {}, without {}", a.fuel_used, c.fuel_used);
}

/// A plugin whose start function never ends gets no spares (the spare thread gives up within the
/// fast path's fuel and goes on serving the other plugins); its calls fail on fuel and follow
/// its failure policy.
#[tokio::test]
async fn a_start_that_never_ends_gets_no_spares() {
    use warden::plugins::runtime::{CallOutcome, Runtime};
    let rt = Runtime::with_spares(2).unwrap();
    let stuck = hostile_with_start(&rt, "stuck", &counting_start(None));
    let good = hostile_classifier(&rt, "ok");
    spares_ready(&good, 2).await;
    let action = deploy("bot", "production");
    for _ in 0..2 {
        let call = rt.calls().classify(&stuck, &action, 0).await;
        assert!(!call.spare);
        let CallOutcome::Failed { limit, message } = call.outcome else { panic!("{:?}", call.outcome) };
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
    use warden::plugins::runtime::{CallOutcome, FAST_FUEL};
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = hostile_classifier(rt, "busy");
    let action = deploy("busy-bot", "production");
    let call = rt.calls().classify(&plugin, &action, 0).await;
    let CallOutcome::Ok(c) = call.outcome else { panic!("{:?}", call.outcome) };
    let mut x = u64::from(action.hour_of_week);
    for _ in 0..300_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    assert_eq!(c.reasons, vec![format!("busy {x}")]);
    assert!(call.fuel_used > FAST_FUEL && call.fuel_used < 20_000_000, "fuel used {}", call.fuel_used);
    assert_eq!(call.logs, vec!["info: mode busy".to_string()], "the logs of the run that answered, once");
}

/// The reference rollback trigger as a component in the real runtime.
#[tokio::test]
async fn canary_rollback_component_judges_windows() {
    use warden::plugins::runtime::CallOutcome;
    use warden::plugins::runtime::bindings::types as wit;
    let host = PluginHost::new().unwrap();
    let rt = host.runtime();
    let plugin = reference(rt, "canary-rollback", "rollback_trigger");
    let action = wit::Action { table_risk: wit::RiskLevel::High, ..deploy("bot", "production") };
    let baseline: Vec<f64> = (0..300).map(|i| 100.0 + f64::from(i % 30)).collect();
    let window = |canary: Vec<f64>, canary_errors: u64| wit::MetricWindow {
        name: "latency_ms".into(),
        canary,
        baseline: baseline.clone(),
        canary_errors,
        canary_total: 5000,
        baseline_errors: 50,
        baseline_total: 5000,
        dry_run: false,
    };
    let judge = async |windows: Vec<wit::MetricWindow>| {
        let call = rt.calls().judge(&plugin, &action, &windows, 0).await;
        let CallOutcome::Ok(judgement) = call.outcome else { panic!("{:?}", call.outcome) };
        judgement
    };
    let healthy = judge(vec![window(baseline.clone(), 52)]).await;
    assert_eq!(healthy.verdict, wit::JudgementVerdict::Successful, "{:?}", healthy.reasons);
    let slow = judge(vec![window(baseline.iter().map(|v| v * 1.5).collect(), 52)]).await;
    assert_eq!(slow.verdict, wit::JudgementVerdict::Failed, "{:?}", slow.reasons);
    let erroring = judge(vec![window(baseline.clone(), 150)]).await;
    assert_eq!(erroring.verdict, wit::JudgementVerdict::Failed, "{:?}", erroring.reasons);
    assert!(erroring.reasons[0].contains("150/5000 errors"), "{:?}", erroring.reasons);
    let few = judge(vec![window(vec![400.0; 5], 52)]).await;
    assert_eq!(few.verdict, wit::JudgementVerdict::Inconclusive, "{:?}", few.reasons);
}
