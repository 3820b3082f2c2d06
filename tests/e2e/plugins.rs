//! WebAssembly plugins in the real runtime: the reference classifier in the pipeline, and
//! hostile plugins that must never stall or crash the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer};

both_backends!(
    reference_classifier_raises_risk,
    hostile_plugins_follow_their_failure_policy,
    a_severe_anomaly_caps_the_tier
);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a plugin crate into a component once per test process (cargo serialises concurrent builds).
pub(crate) fn component(krate: &str) -> Vec<u8> {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
        OnceLock::new();
    let cache = BUILT.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(krate.to_string())
        .or_insert_with(|| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| workspace().join("target"))
                .join("plugins");
            let path = warden::plugins::build::build_crate(&workspace().join(krate), Some(&target))
                .unwrap();
            std::fs::read(path).unwrap()
        })
        .clone()
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
    assert_eq!(
        (plain["verdict"].as_str(), plain["risk"]["level"].as_str()),
        (Some("allow"), Some("low")),
        "{plain}"
    );
    let report = &plain["plugins"][0];
    assert_eq!(report["plugin"], "action-classifier@0.1.0");
    assert_eq!(report["outcome"], "ok");
    assert!(report["fuel_used"].as_u64().unwrap() > 0);
    let change = json!({"files_changed": 1, "lines_added": 12, "lines_deleted": 0, "paths": ["db/migrations/0042_index.sql"]});
    let (_, risky) =
        s.decide(&bot, "deploy", "staging", json!({"action": {"class": "deploy", "environment": "staging", "service": "payments", "change": change}})).await;
    assert_eq!(
        (risky["verdict"].as_str(), risky["risk"]["level"].as_str()),
        (Some("require_approval"), Some("high")),
        "{risky}"
    );
    assert!(
        risky["risk"]["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "sensitive_path:migrations")
    );
    assert!(
        risky["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "plugin_risk")
    );
    // The audit record names the plugin, its verdict and its cost.
    let (_, page) = s.get("/v1/audit?event_type=decision", &s.admin).await;
    let plugins = &page["records"][1]["details"]["plugins"][0];
    assert_eq!(
        (plugins["plugin"].as_str(), plugins["level"].as_str()),
        (Some("action-classifier@0.1.0"), Some("high"))
    );
    assert!(plugins["duration_us"].as_u64().is_some());
    // `/metrics` counts where the two calls found their instances.
    let (_, metrics) = s.call(reqwest::Method::GET, "/metrics", None, None).await;
    let count = |name: &str| -> u64 {
        let line = metrics
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The server's default keeps no spares: both calls instantiated their plugin on the spot.
    assert_eq!(
        (
            count("warden_plugin_spare_instances_total"),
            count("warden_plugin_on_demand_instances_total")
        ),
        (0, 2),
        "{metrics}"
    );
}

/// The reference anomaly detector in the pipeline: quiet against a cold baseline, and a burst
/// far above the team's human rate caps the agent's tier so production waits for a human.
async fn a_severe_anomaly_caps_the_tier(backend: Backend) {
    use warden::clock::Clock as _;
    let dir = tempfile::tempdir().unwrap();
    let manifest = "name = \"baseline-anomaly\"\nversion = \"0.1.0\"\nkind = \"anomaly_detector\"\nclasses = [\"deploy\"]\n";
    install(
        dir.path(),
        "baseline-anomaly",
        manifest,
        &component("plugins/baseline-anomaly"),
    );
    let s = server_with_plugins(backend, dir.path()).await;
    let bot = s.agent("bot", 3, json!({})).await;
    s.lift_quotas("bot").await;

    // No baseline yet: the detector is not asked, the answer says so, and the agent deploys.
    let (_, cold) = s.decide(&bot, "deploy", "production", json!({})).await;
    assert_eq!(cold["verdict"], "allow", "{cold}");
    assert_eq!(cold["anomaly"]["status"], "not_computed", "{cold}");
    assert_eq!(cold["anomaly"]["severity"], json!(null), "{cold}");
    assert!(
        cold["anomaly"]["reason"]
            .as_str()
            .unwrap()
            .contains("baseline"),
        "{cold}"
    );
    assert_eq!(cold["plugins"], json!([]), "{cold}");
    // Classes the manifest does not name never reach the detector: not computed either.
    let (_, docs) = s.decide(&bot, "docs_update", "production", json!({})).await;
    assert_eq!(docs["anomaly"]["status"], "not_computed", "{docs}");
    assert!(
        docs["anomaly"]["reason"]
            .as_str()
            .unwrap()
            .contains("detector"),
        "{docs}"
    );
    assert_eq!(docs["plugins"], json!([]), "{docs}");

    // Six humans of the team deploy payments to production about once in ten hours, at any
    // hour of the week, over the last four weeks; the baselines are recomputed from them.
    let now = warden::clock::parse_micros(cold["decided_at"].as_str().unwrap_or_default())
        .unwrap_or_else(|| warden::clock::SystemClock.now_micros());
    let events: Vec<serde_json::Value> = (0..67)
        .map(|i| {
            let at = now - (i64::from(i) * 10 + 1) * 3_600_000_000;
            json!({
                "source": "pipeline", "source_id": format!("run-{i}"), "actor_kind": "human",
                "actor_id": format!("human-{}", i % 6), "team": "payments", "class": "deploy",
                "environment": "production", "service": "payments", "change_size": 100,
                "time": warden::clock::format_micros(at),
            })
        })
        .collect();
    let (status, stored) = s
        .post("/v1/events", &s.admin, json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["accepted"], 67, "{stored}");
    let (status, run) = s.post("/v1/baselines/recompute", &s.admin, json!({})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["events"], 67, "{run}");

    // The agent keeps deploying: within a few actions the burst is severe and caps it at tier 2.
    let mut capped = None;
    for n in 2..=12 {
        let (_, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
        if answer["verdict"] == "require_approval" {
            capped = Some((n, answer));
            break;
        }
        assert_eq!(answer["verdict"], "allow", "{answer}");
    }
    let (n, answer) = capped.expect("a burst of production deploys is never capped");
    assert!(n <= 9, "capped only at action {n}");
    assert_eq!(
        (answer["tier"].as_u64(), answer["agent_tier"].as_u64()),
        (Some(2), Some(3)),
        "{answer}"
    );
    let severity = answer["anomaly"]["severity"].as_u64().unwrap();
    assert!(severity >= 70, "{answer}");
    let detectors: Vec<&str> = answer["anomaly"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert!(detectors.contains(&"burst_rate"), "{answer}");
    assert!(
        answer["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "anomaly_cap"),
        "{answer}"
    );
    // The audit record keeps the findings.
    let (_, page) = s.get("/v1/audit?event_type=decision", &s.admin).await;
    let last = page["records"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last["details"]["anomaly"]["severity"].as_u64(),
        Some(severity),
        "{last}"
    );

    // A human lets it through; it fails: the anomaly is confirmed, a hard trigger.
    let grants =
        json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
    assert_eq!(
        s.post(
            "/v1/humans",
            &s.admin,
            json!({"id": "carol", "team": "platform", "grants": grants})
        )
        .await
        .0,
        201
    );
    let carol = s.token("approver", Some("carol")).await;
    let approval = answer["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.post(
            &format!("/v1/approvals/{approval}/approve"),
            &carol,
            json!({})
        )
        .await
        .0,
        200
    );
    let (_, allowed) = s
        .decide(
            &bot,
            "deploy",
            "production",
            json!({"approval_id": approval}),
        )
        .await;
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    assert!(
        allowed["anomaly"]["severity"].as_u64().unwrap() >= 70,
        "{allowed}"
    );
    let path = format!(
        "/v1/decisions/{}/outcome",
        allowed["decision_id"].as_str().unwrap()
    );
    assert_eq!(
        s.post(&path, &bot, json!({"status": "failed"})).await.0,
        200
    );
    let (_, agent) = s.get("/v1/agents/bot", &s.admin).await;
    assert_eq!(agent["tier"], 1, "{agent}");
    let (_, history) = s.get("/v1/agents/bot/trust/history", &s.admin).await;
    assert_eq!(
        history["changes"][0]["reason"], "confirmed_severe_anomaly",
        "{history}"
    );
    // The confirmed anomaly is evidence of its own, besides the failure.
    let (_, trust) = s.get("/v1/agents/bot/trust", &s.admin).await;
    assert_eq!(trust["evidence"]["confirmed_anomalies"], 1, "{trust}");
    assert_eq!(trust["evidence"]["failures"], 1, "{trust}");
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
        let toml_text = format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"classifier\"\nclasses = [\"{class}\"]\n{extra}[config]\nmode = \"{mode}\"\n"
        );
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
        assert_eq!(
            (a["verdict"].as_str(), a["risk"]["level"].as_str()),
            (Some("require_approval"), Some("critical")),
            "{a}"
        );
        let report = &a["plugins"][0];
        assert_eq!(
            (report["error"].as_str(), report["failure_policy"].as_str()),
            (Some("fuel"), Some("fail_closed"))
        );
        assert!(
            report["message"]
                .as_str()
                .unwrap()
                .contains("hostile-loop@1.0.0")
                && report["message"].as_str().unwrap().contains("limits.fuel"),
            "{report}"
        );
    }
    for (class, error, limit_text) in [
        ("infra_create", "memory", "limits.memory_bytes"),
        ("api_call", "trap", "trapped"),
        ("config_change", "output", "limits.output_bytes"),
    ] {
        let (_, a) = s.decide(&bot, class, "dev", json!({})).await;
        assert_eq!(a["risk"]["level"], "critical", "{class}: {a}");
        assert_eq!(a["verdict"], "require_approval", "{class}: {a}");
        let report = &a["plugins"][0];
        assert_eq!(report["error"], error, "{class}: {report}");
        assert!(
            report["message"].as_str().unwrap().contains(limit_text),
            "{class}: {report}"
        );
        assert!(
            a["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["code"] == "plugin_failed")
        );
    }
    // fail_open: the failure is recorded and ignored.
    let (_, a) = s.decide(&bot, "docs_update", "dev", json!({})).await;
    assert_eq!(
        (
            a["verdict"].as_str(),
            a["plugins"][0]["outcome"].as_str(),
            a["plugins"][0]["error"].as_str()
        ),
        (Some("allow"), Some("plugin_error"), Some("refused")),
        "{a}"
    );
    assert_eq!(a["plugins"][0]["logs"][0], "info: mode error");
    // A classifier cannot lower the table's risk.
    let (_, a) = s
        .decide(&bot, "db_migration", "production", json!({}))
        .await;
    assert_eq!(
        (
            a["risk"]["level"].as_str(),
            a["plugins"][0]["level"].as_str()
        ),
        (Some("high"), Some("low")),
        "{a}"
    );
    // The server is still healthy.
    assert_eq!(
        s.call(reqwest::Method::GET, "/readyz", None, None).await.0,
        200
    );
}

both_backends!(
    plugins_through_the_admin_api,
    replicas_pick_up_plugin_changes
);

fn upload(name: &str, version: &str, wasm: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    json!({"manifest": {"name": name, "version": version, "kind": "classifier"}, "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}

async fn plugins_through_the_admin_api(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let wasm = component("plugins/action-classifier");
    let (status, loaded) = s
        .post("/v1/plugins", &s.admin, upload("classify", "1.0.0", &wasm))
        .await;
    assert_eq!(
        (status.as_u16(), loaded["changed"].as_bool()),
        (201, Some(true)),
        "{loaded}"
    );
    // Loading the same thing again changes nothing.
    assert_eq!(
        s.post("/v1/plugins", &s.admin, upload("classify", "1.0.0", &wasm))
            .await
            .1["changed"],
        false
    );
    let (_, list) = s.get("/v1/plugins", &s.admin).await;
    use sha2::Digest as _;
    assert_eq!(list[0]["sha256"], hex::encode(sha2::Sha256::digest(&wasm)));
    assert_eq!(list[0]["failure_policy"], "fail_closed");
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"][0]["plugin"], "classify@1.0.0");
    // A new version swaps in without a restart.
    assert_eq!(
        s.post("/v1/plugins", &s.admin, upload("classify", "1.1.0", &wasm))
            .await
            .0,
        201
    );
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"][0]["plugin"], "classify@1.1.0");
    // Removal.
    assert_eq!(
        s.call(
            reqwest::Method::DELETE,
            "/v1/plugins/classify",
            Some(&s.admin),
            None
        )
        .await
        .0,
        204
    );
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_eq!(a["plugins"].as_array().unwrap().len(), 0);
    crate::support::assert_error(
        &s.call(
            reqwest::Method::DELETE,
            "/v1/plugins/classify",
            Some(&s.admin),
            None,
        )
        .await,
        404,
        "unknown_plugin",
    );
    // Every load, swap and removal is audited.
    let (_, page) = s.get("/v1/audit?limit=1000", &s.admin).await;
    let events: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .filter(|e| e.starts_with("plugin."))
        .collect();
    assert_eq!(
        events,
        vec!["plugin.loaded", "plugin.replaced", "plugin.removed"]
    );
    // Bad uploads are 400s that say why; only admins may load.
    let mut bad = upload("classify", "1.0.0", &wasm);
    bad["component_base64"] = json!("%%%");
    assert_eq!(
        crate::support::assert_error(
            &s.post("/v1/plugins", &s.admin, bad).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("component_base64")
    );
    let err = s
        .post(
            "/v1/plugins",
            &s.admin,
            upload("junk", "1.0.0", b"not a component"),
        )
        .await;
    crate::support::assert_error(&err, 400, "invalid_plugin");
    assert!(
        err.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component")
    );
    let mut bad_manifest = upload("classify", "1.0.0", &wasm);
    bad_manifest["manifest"]["limits"] = json!({"fuel": 0});
    assert_eq!(
        crate::support::assert_error(
            &s.post("/v1/plugins", &s.admin, bad_manifest).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("manifest.limits.fuel")
    );
    crate::support::assert_error(
        &s.post("/v1/plugins", &bot, upload("classify", "1.0.0", &wasm))
            .await,
        403,
        "forbidden_role",
    );
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
        async move {
            client
                .get(format!("{base}/v1/plugins"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
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
    assert!(
        s.post(
            "/v1/plugins",
            &s.admin,
            upload("classify", "1.0.0", &component("plugins/action-classifier"))
        )
        .await
        .0
        .is_success()
    );
    assert!(
        wait_for(1).await,
        "the other replica never loaded the plugin"
    );
    assert_eq!(listed(base2.clone()).await[0]["version"], "1.0.0");
    assert_eq!(
        s.call(
            reqwest::Method::DELETE,
            "/v1/plugins/classify",
            Some(&s.admin),
            None
        )
        .await
        .0,
        204
    );
    assert!(
        wait_for(0).await,
        "the other replica never unloaded the plugin"
    );
    replica.stop().await;
}

/// The plugin author's path through the real binary: scaffold, build, test against a fixture.
#[tokio::test]
async fn author_path_new_build_test() {
    let bin = env!("CARGO_BIN_EXE_warden");
    let dir = tempfile::tempdir().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"))
        .join("plugins");
    let run = |args: &[&str], cwd: &Path| {
        std::process::Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    let out = run(
        &["plugin", "new", "watch-payments", "--kind", "classifier"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.path().join("watch-payments");
    let out = run(
        &[
            "plugin",
            "build",
            ".",
            "--target-dir",
            target.to_str().unwrap(),
        ],
        &krate,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let component = target.join("wasm32-unknown-unknown/release/watch_payments.component.wasm");
    let out = run(
        &[
            "plugin",
            "test",
            component.to_str().unwrap(),
            "--fixture",
            "fixtures/example.json",
        ],
        &krate,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = run(
        &[
            "plugin",
            "test",
            component.to_str().unwrap(),
            "--fixture",
            quiet.to_str().unwrap(),
        ],
        &krate,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["level"], "medium", "{report}");
}
