//! The real `warden` binary: bootstrap token, CLI, graceful shutdown without losing anything
//! that was acknowledged.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use warden::clock::Clock as _;

use crate::both_backends;
use crate::support::{Backend, TestDb, free_port};

both_backends!(
    binary_serves_and_shuts_down_without_loss,
    kill_nine_under_load_loses_nothing_acknowledged
);

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// `warden config` prints what `serve` would use: the file, then the variables and flags over it.
#[test]
fn config_shows_the_variables_and_flags_serve_would_apply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("warden.toml"),
        "[server]\nlisten = \"127.0.0.1:7000\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let config = |envs: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .env_remove("WARDEN_CONFIG")
            .env_remove("WARDEN_LISTEN")
            .env_remove("WARDEN_LOG_FORMAT")
            .envs(envs.iter().copied())
            .arg("config")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let shown: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
        (
            shown["server"]["listen"].as_str().unwrap().to_string(),
            shown["log"]["format"].as_str().unwrap().to_string(),
        )
    };
    let pair = |l: &str, f: &str| (l.to_string(), f.to_string());
    assert_eq!(config(&[], &[]), pair("127.0.0.1:7000", "json"));
    assert_eq!(
        config(
            &[
                ("WARDEN_LISTEN", "0.0.0.0:9000"),
                ("WARDEN_LOG_FORMAT", "text")
            ],
            &[]
        ),
        pair("0.0.0.0:9000", "text")
    );
    assert_eq!(
        config(
            &[("WARDEN_LISTEN", "0.0.0.0:9000")],
            &["--listen", "127.0.0.1:9100"]
        ),
        pair("127.0.0.1:9100", "json")
    );
}

/// Runs a command that must succeed, and gives its output.
fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn warden(db: &TestDb, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("WARDEN_DATABASE_URL", &db.url)
        .env_remove("WARDEN_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

async fn binary_serves_and_shuts_down_without_loss(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let bootstrap = "bootstrap-secret-for-tests-0123456789abcdef";
    let child = warden(&db, dir.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("WARDEN_BOOTSTRAP_ADMIN_TOKEN", bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client
            .get(format!("{server}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server did not become ready");

    // The CLI talks to the server with the bootstrap token.
    succeeds(
        warden(&db, dir.path())
            .args([
                "agents",
                "create",
                "--server",
                &server,
                "--id",
                "bot",
                "--tool",
                "t",
                "--model",
                "m",
                "--team",
                "core",
                "--sponsor",
                "s",
                "--tier",
                "2",
            ])
            .env("WARDEN_TOKEN", bootstrap),
    );
    let out = warden(&db, dir.path())
        .args([
            "decide",
            "--server",
            &server,
            "--agent",
            "bot",
            "--class",
            "deploy",
            "--environment",
            "production",
            "--service",
            "payments",
        ])
        .env("WARDEN_TOKEN", bootstrap)
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["verdict"], "require_approval");

    // The README's approval path through the CLI: a human approver, approve, re-submit.
    let cli = |args: &[&str], token: &str| {
        let out = warden(&db, dir.path())
            .args(args)
            .env("WARDEN_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    cli(
        &[
            "humans",
            "create",
            "--server",
            &server,
            "--id",
            "alice",
            "--team",
            "core",
            "--grant",
            "*:*:*:critical",
        ],
        bootstrap,
    );
    let approver = String::from_utf8(cli(
        &[
            "token",
            "create",
            "--role",
            "approver",
            "--subject",
            "alice",
        ],
        "",
    ))
    .unwrap()
    .trim()
    .to_string();
    let pending: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "approvals",
            "list",
            "--server",
            &server,
            "--status",
            "pending",
        ],
        bootstrap,
    ))
    .unwrap();
    let id = pending["approvals"][0]["id"].as_str().unwrap().to_string();
    let approved: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "approvals",
            "approve",
            "--server",
            &server,
            &id,
            "--comment",
            "ok",
        ],
        &approver,
    ))
    .unwrap();
    assert_eq!(approved["status"], "approved");
    // Alice lets the agent act for her, sees it, and takes it back: with her own token.
    let given: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "delegations",
            "give",
            "--server",
            &server,
            "bot",
            "--class",
            "deploy",
            "--environment",
            "Staging",
            "--hours",
            "2",
        ],
        &approver,
    ))
    .unwrap();
    assert_eq!(
        (given["human"].as_str(), given["environments"][0].as_str()),
        (Some("alice"), Some("staging")),
        "{given}"
    );
    let live: serde_json::Value = serde_json::from_slice(&cli(
        &["delegations", "list", "--server", &server, "--live"],
        &approver,
    ))
    .unwrap();
    assert_eq!(live[0]["id"], given["id"]);
    let revoked: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "delegations",
            "revoke",
            "--server",
            &server,
            given["id"].as_str().unwrap(),
        ],
        &approver,
    ))
    .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let live: serde_json::Value = serde_json::from_slice(&cli(
        &["delegations", "list", "--server", &server, "--live"],
        &approver,
    ))
    .unwrap();
    assert_eq!(live, serde_json::json!([]));
    let args = [
        "decide",
        "--server",
        &server,
        "--agent",
        "bot",
        "--class",
        "deploy",
        "--environment",
        "production",
        "--service",
        "payments",
        "--approval-id",
        &id,
    ];
    let allowed: serde_json::Value = serde_json::from_slice(&cli(&args, bootstrap)).unwrap();
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    let trust: serde_json::Value = serde_json::from_slice(&cli(
        &["trust", "show", "--server", &server, "bot"],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(trust["score"], 0.0, "no outcome reported yet: {trust}");
    let decision = allowed["decision_id"].as_str().unwrap();
    let reported: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "outcome",
            "--server",
            &server,
            decision,
            "--status",
            "succeeded",
            "--detail",
            "done",
        ],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(reported["outcome"], "succeeded", "{reported}");
    let trust: serde_json::Value = serde_json::from_slice(&cli(
        &["trust", "show", "--server", &server, "bot"],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(trust["evidence"]["successes"], 1, "{trust}");
    assert_eq!(
        trust["next_promotion"]["tier"],
        trust["tier"].as_u64().unwrap() + 1,
        "{trust}"
    );
    let history: serde_json::Value = serde_json::from_slice(&cli(
        &["trust", "history", "--server", &server, "bot"],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(
        history["daily"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    // What-if, on the database directly: the approved deploy is watched work under a proposed
    // policy too; nothing moves on one success.
    std::fs::write(
        dir.path().join("proposed.toml"),
        "[policy.tiering]\nviolation_hold_days = 30.0\n",
    )
    .unwrap();
    let replayed: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "trust",
            "replay",
            "--config",
            "proposed.toml",
            "--since",
            "1d",
            "--agent",
            "bot",
            "--json",
        ],
        "",
    ))
    .unwrap();
    let bot = &replayed["agents"][0];
    assert_eq!(
        (
            bot["agent"].as_str(),
            bot["from_tier"].as_u64(),
            bot["tier"].as_u64()
        ),
        (Some("bot"), Some(2), Some(2)),
        "{replayed}"
    );
    let watched = bot["next_promotion"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "watched_successes")
        .unwrap();
    assert_eq!(watched["has"], "1", "{replayed}");
    let table = String::from_utf8(cli(
        &[
            "trust",
            "replay",
            "--config",
            "proposed.toml",
            "--since",
            "1d",
        ],
        "",
    ))
    .unwrap();
    assert!(table.lines().any(|l| l.starts_with("bot ")), "{table}");
    let out = warden(&db, dir.path())
        .args(["trust", "replay", "--since", "yesterday"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--since `yesterday`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: serde_json::Value = serde_json::from_slice(&cli(
        &[
            "quotas",
            "set",
            "--server",
            &server,
            "bot",
            "--limit",
            "cost_per_day=250",
            "--limit",
            "calls_per_minute=50",
        ],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(
        set["overrides"],
        json!({"calls_per_minute": 50.0, "cost_per_day": 250.0}),
        "{set}"
    );
    let shown: serde_json::Value = serde_json::from_slice(&cli(
        &["quotas", "show", "--server", &server, "bot"],
        bootstrap,
    ))
    .unwrap();
    let deploys = shown["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "deploys_per_hour_per_service")
        .unwrap();
    assert_eq!(
        deploys["usage"][0]["used"], 1.0,
        "the approved production deploy: {shown}"
    );
    let team: serde_json::Value = serde_json::from_slice(&cli(
        &["trust", "list", "--server", &server, "--team", "core"],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(team[0]["agent"], "bot");
    let violations: serde_json::Value = serde_json::from_slice(&cli(
        &["violations", "list", "--server", &server],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(violations["violations"], json!([]));
    let out = warden(&db, dir.path())
        .args([
            "decide",
            "--server",
            &server,
            "--class",
            "deploy",
            "--environment",
            "dev",
            "--service",
            "x",
        ])
        .env("WARDEN_TOKEN", bootstrap)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("field `agent`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // "Show me all production changes made by AI in the last 30 days", as a table and as CSV.
    let table = String::from_utf8(cli(
        &[
            "audit",
            "query",
            "--server",
            &server,
            "--actor-kind",
            "agent",
            "--environment",
            "production",
            "--since",
            "30d",
        ],
        bootstrap,
    ))
    .unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("SEQ") && lines[0].contains("APPROVED BY"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent:bot") && l.contains("production")),
        "{table}"
    );
    assert!(
        lines.iter().skip(1).all(|l| !l.contains("staging")),
        "{table}"
    );
    let csv = String::from_utf8(cli(
        &[
            "audit",
            "query",
            "--server",
            &server,
            "--actor-kind",
            "agent",
            "--since",
            "30d",
            "--format",
            "csv",
            "--limit",
            "2",
        ],
        bootstrap,
    ))
    .unwrap();
    assert_eq!(
        csv.lines().count(),
        3,
        "a header and two rows, across pages: {csv}"
    );
    let out = warden(&db, dir.path())
        .args(["audit", "query", "--server", &server, "--since", "a while"])
        .env("WARDEN_TOKEN", bootstrap)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("since"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Load, then SIGTERM in the middle of it: everything acknowledged must be durable.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (client, server) = (client.clone(), server.clone());
        tasks.push(tokio::spawn(async move {
            if i > 100 {
                tokio::time::sleep(Duration::from_micros(200 * (i - 100))).await;
            }
            let resp = client
                .post(format!("{server}/v1/decisions"))
                .bearer_auth(bootstrap)
                .json(&json!({"agent": "bot", "action": {"class": "deploy", "environment": "staging", "service": "payments"}}))
                .send()
                .await
                .ok()?;
            if resp.status() != 200 {
                return None;
            }
            resp.json::<serde_json::Value>().await.ok().map(|v| v["decision_id"].as_str().unwrap().to_string())
        }));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        status.status.success(),
        "exit: {:?}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("\"message\":\"stopped\""),
        "JSON logs with a clean stop"
    );
    assert!(
        !acked.is_empty(),
        "some decisions were acknowledged before shutdown"
    );

    // Offline: every acknowledged decision is there, and the chain is intact.
    succeeds(warden(&db, dir.path()).args(["audit", "verify"]));
    // Export with proofs and verify it with the public key alone (no database).
    let out = warden(&db, dir.path())
        .args(["audit", "public-key"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("warden-audit+"), "{key}");
    succeeds(warden(&db, dir.path()).args([
        "audit",
        "export",
        "--format",
        "ocsf",
        "--output",
        "ai.ocsf.jsonl",
        "--actor-kind",
        "agent",
        "--since",
        "30d",
    ]));
    let verify = |file: &str| {
        Command::new(BIN)
            .current_dir(dir.path())
            .env("WARDEN_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .args(["audit", "verify", "--file", file, "--public-key", &key])
            .output()
            .unwrap()
    };
    let out = verify("ai.ocsf.jsonl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("export intact"));
    let exported = std::fs::read_to_string(dir.path().join("ai.ocsf.jsonl")).unwrap();
    std::fs::write(
        dir.path().join("edited.ocsf.jsonl"),
        exported.replacen("payments", "billing", 1),
    )
    .unwrap();
    std::fs::copy(
        dir.path().join("ai.ocsf.jsonl.checkpoint"),
        dir.path().join("edited.ocsf.jsonl.checkpoint"),
    )
    .unwrap();
    let out = verify("edited.ocsf.jsonl");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("export broken"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = warden(&db, dir.path())
        .args(["audit", "export", "--output", "/nonexistent/audit.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/audit.jsonl"));
    // An offline export refuses the filter values the API refuses, naming the flag, rather than
    // signing an empty file; an empty `--q` filters nothing, as the API's empty `q`.
    for (flag, value, said) in [
        (
            "--risk",
            "High",
            "`High` is not one of low, medium, high, critical",
        ),
        (
            "--actor-kind",
            "bot",
            "`bot` is not one of agent, human, service, admin",
        ),
        (
            "--since",
            "yesterday",
            "`yesterday` is neither an RFC 3339 time",
        ),
    ] {
        let out = warden(&db, dir.path())
            .args(["audit", "export", "--output", "refused.jsonl", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("{flag}: {said}")), "{stderr}");
        assert!(!dir.path().join("refused.jsonl").exists());
    }
    succeeds(warden(&db, dir.path()).args([
        "audit",
        "export",
        "--output",
        "empty-q.jsonl",
        "--q",
        "",
    ]));
    // Records without reasoning are kept: the agent's creation, and the export above.
    let kept = std::fs::read_to_string(dir.path().join("empty-q.jsonl")).unwrap();
    assert!(
        kept.contains("agent.created") && kept.contains("audit.exported"),
        "{} lines",
        kept.lines().count()
    );
    // This week's report from the database: every table as CSV, and the JSON counting every
    // decision made above.
    let week = warden::report::IsoWeek::at(
        warden::clock::SystemClock.now_micros(),
        &jiff::tz::TimeZone::UTC,
    )
    .to_string();
    succeeds(warden(&db, dir.path()).args([
        "report", "weekly", "--week", &week, "--format", "csv", "--out", "reports",
    ]));
    let written = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .count();
    assert_eq!(written, 16, "one CSV per table");
    let out = succeeds(
        warden(&db, dir.path()).args(["report", "weekly", "--week", &week, "--format", "json"]),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool = db.pool().await;
    let decided: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let counted = &report["verdicts"]["decisions"];
    assert_eq!(
        counted["this_week"].as_i64().unwrap() + counted["last_week"].as_i64().unwrap(),
        decided,
        "{counted}"
    );
    // A week whose report the schedule kept is given as it was kept and announced, as the API
    // gives it, not made again.
    let mut config = db.config();
    config.storage.data_dir = dir.path().join("warden-data");
    let keeper =
        warden::server::Warden::open(config, std::sync::Arc::new(warden::clock::SystemClock))
            .await
            .unwrap();
    let last_week = warden::report::IsoWeek::parse(&week).unwrap().previous();
    let organisation = warden::report::Scope::Organisation;
    assert!(
        keeper
            .state
            .reports
            .keep(last_week, &organisation)
            .await
            .unwrap()
    );
    let kept = keeper
        .state
        .reports
        .stored(last_week, &organisation)
        .await
        .unwrap()
        .unwrap();
    keeper.state.store.close().await;
    let out = succeeds(warden(&db, dir.path()).args([
        "report",
        "weekly",
        "--week",
        &last_week.to_string(),
        "--format",
        "json",
    ]));
    let served: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        served["generated_at"].as_str(),
        Some(kept.generated_at.as_str())
    );
    for (args, says) in [
        (vec!["report", "weekly", "--format", "csv"], "--out"),
        (vec!["report", "weekly", "--week", "2026-W99"], "--week"),
        (
            vec!["report", "weekly", "--team", "a", "--agent", "b"],
            "--agent",
        ),
    ] {
        let out = warden(&db, dir.path()).args(&args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for id in &acked {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "acknowledged decision {id} was lost");
    }
    // Offline token commands.
    let out = warden(&db, dir.path())
        .args(["token", "create", "--role", "agent", "--subject", "bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with("wdn_")
    );
    let out = warden(&db, dir.path())
        .args(["token", "create", "--role", "wizard"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = warden(&db, dir.path())
        .args(["token", "list"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        3,
        "the bootstrap token, alice's approver token and the agent's: {list}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("wdn_"),
        "secrets are never listed"
    );
}

/// Starts `warden serve` on `port` and waits until it is ready.
async fn serve(
    db: &TestDb,
    dir: &std::path::Path,
    port: u16,
    bootstrap: &str,
) -> std::process::Child {
    let mut child = warden(db, dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("WARDEN_BOOTSTRAP_ADMIN_TOKEN", bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..400 {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not become ready");
}

/// SIGKILL in the middle of a stream of decisions: every decision answered before the kill is
/// there after a restart, and the audit chain still verifies.
async fn kill_nine_under_load_loses_nothing_acknowledged(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = "bootstrap-secret-for-tests-0123456789abcdef";
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve(&db, dir.path(), port, bootstrap).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/v1/agents"))
        .bearer_auth(bootstrap)
        .json(&serde_json::json!({"id": "bot", "tool": "t", "model": "m", "team": "core", "sponsor": "s", "tier": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let lift = serde_json::json!({"limits": {"deploys_per_hour_per_service": 100000, "calls_per_minute": 100000}});
    let lifted = client
        .put(format!("{base}/v1/agents/bot/quotas"))
        .bearer_auth(bootstrap)
        .json(&lift)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    // Eight streams of decisions; each keeps the ids it was answered.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let streams: Vec<_> = (0..8)
        .map(|i| {
            let (client, base, acks) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let body = serde_json::json!({"agent": "bot", "action": {"class": "deploy", "environment": "staging", "service": format!("svc-{i}-{}", n % 5)}});
                    let Ok(resp) = client.post(format!("{base}/v1/decisions")).bearer_auth(bootstrap).json(&body).send().await else {
                        return;
                    };
                    let Ok(answer) = resp.json::<serde_json::Value>().await else {
                        return;
                    };
                    if let Some(id) = answer["decision_id"].as_str() {
                        acks.lock().unwrap().push(id.to_string());
                    }
                }
            })
        })
        .collect();
    // Kill once a few hundred are answered, mid-stream.
    for _ in 0..600 {
        if acknowledged.lock().unwrap().len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `Child::kill` is SIGKILL on Unix: no shutdown, no draining.
    child.kill().unwrap();
    let _ = child.wait();
    for s in streams {
        let _ = s.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300,
        "{} answered before the kill",
        acknowledged.len()
    );

    let mut child = serve(&db, dir.path(), port, bootstrap).await;
    for id in &acknowledged {
        let found = client
            .get(format!("{base}/v1/decisions/{id}"))
            .bearer_auth(bootstrap)
            .send()
            .await
            .unwrap();
        assert_eq!(found.status(), 200, "decision {id} was answered, then lost");
    }
    let verified: serde_json::Value = client
        .get(format!("{base}/v1/audit/verify"))
        .bearer_auth(bootstrap)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["intact"], true, "{verified}");
    let _ = child.kill();
    let _ = child.wait();
}
