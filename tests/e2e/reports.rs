//! Weekly behaviour reports over HTTP, on a clock the test moves across New Year: a generated
//! fortnight with known counts (2026-W53 and 2027-W01), the previous-week comparison across
//! the year boundary, an empty week, scopes, formats, bad input, and the schedule that keeps
//! and announces each finished week's reports once. The pages, in headless Chromium.

use std::sync::Arc;

use serde_json::{Value, json};
use warden::clock::{Clock as _, ManualClock, format_micros, parse_micros};
use warden::config::EventType;

use crate::both_backends;
use crate::browser::Browser;
use crate::support::{Backend, TestDb, TestServer, assert_error, unanswered_hook};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

both_backends!(a_week_with_known_counts);

/// The fortnight: a tier-4 deployer (team payments), a tier-1 helper (team web), an approver,
/// and the humans alice (payments) and bob (web) working beside them.
struct Fortnight {
    s: TestServer,
    clock: ManualClock,
    deployer: String,
    helper: String,
    carol: String,
}

impl Fortnight {
    async fn start(backend: Backend) -> Fortnight {
        let clock = ManualClock::at(parse_micros("2026-12-28T09:00:00Z").unwrap());
        let db = TestDb::new(backend).await;
        let mut config = db.config();
        config.webhooks = vec![unanswered_hook("ops", vec![EventType::ReportReady])];
        let s = TestServer::start_clocked(db, config, Arc::new(clock.clone())).await;
        let deployer = s.agent("deployer", 4, json!({})).await;
        let helper = s
            .agent("helper", 1, json!({"team": "web", "ceiling": 2}))
            .await;
        for agent in ["deployer", "helper"] {
            s.lift_quotas(agent).await;
        }
        let carol = s.approver("carol").await;
        Fortnight {
            s,
            clock,
            deployer,
            helper,
            carol,
        }
    }

    /// Asks for an action and checks the verdict; returns the answer.
    async fn ask(&self, token: &str, class: &str, env: &str, verdict: &str, extra: Value) -> Value {
        self.clock.advance(10 * MINUTE);
        let mut body =
            json!({"action": {"class": class, "environment": env, "service": "payments"}});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let (status, answer) = self.s.post("/v1/decisions", token, body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["verdict"], verdict, "{class} in {env}: {answer}");
        answer
    }

    async fn outcome(&self, token: &str, answer: &Value, status: &str) {
        let path = format!(
            "/v1/decisions/{}/outcome",
            answer["decision_id"].as_str().unwrap()
        );
        let (code, body) = self.s.post(&path, token, json!({"status": status})).await;
        assert_eq!(code, 200, "{body}");
    }

    /// A human's change, as the platform reports it, now.
    async fn human(
        &self,
        id: &str,
        actor: &str,
        team: &str,
        class: &str,
        env: &str,
        outcome: &str,
    ) {
        self.clock.advance(5 * MINUTE);
        let event = json!({
            "source": "pipeline", "source_id": id, "actor_kind": "human", "actor_id": actor,
            "team": team, "class": class, "environment": env, "service": "payments",
            "targets": ["deployment/payments"], "change_size": 40,
            "time": format_micros(self.clock.now_micros()), "outcome": outcome,
        });
        let (status, body) = self
            .s
            .post("/v1/events", &self.s.admin, json!({"events": [event]}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 1, "{body}");
    }

    fn to(&self, at: &str) {
        let target = parse_micros(at).unwrap();
        assert!(
            target >= self.clock.now_micros(),
            "the clock only moves forward: {at}"
        );
        self.clock.advance(target - self.clock.now_micros());
    }

    async fn report(&self, query: &str) -> Value {
        let (status, body) = self
            .s
            .get(&format!("/v1/reports/weekly?{query}"), &self.s.admin)
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        body
    }

    /// Plays the fortnight.
    async fn play(&self) {
        let (d, h) = (&self.deployer, &self.helper);
        // 2026-W53 (Monday 28 December): two production deploys, one failed; alice's four,
        // one rolled back.
        for status in ["succeeded", "failed"] {
            let a = self
                .ask(d, "deploy", "production", "allow", json!({}))
                .await;
            self.outcome(d, &a, status).await;
        }
        for (i, status) in ["succeeded", "succeeded", "succeeded", "rolled_back"]
            .iter()
            .enumerate()
        {
            self.human(
                &format!("w53-{i}"),
                "alice",
                "payments",
                "deploy",
                "production",
                status,
            )
            .await;
        }

        // 2027-W01, Monday 4 January: three production deploys (one rolled back), and a
        // migration approved after 10 minutes, then done.
        self.to("2027-01-04T09:00:00Z");
        for status in ["succeeded", "succeeded", "rolled_back"] {
            let a = self
                .ask(d, "deploy", "production", "allow", json!({}))
                .await;
            self.outcome(d, &a, status).await;
        }
        let asked = self
            .ask(
                d,
                "db_migration",
                "production",
                "require_approval",
                json!({}),
            )
            .await;
        let id = asked["approval"]["id"].as_str().unwrap().to_string();
        self.clock.advance(10 * MINUTE);
        let (status, body) = self
            .s
            .post(
                &format!("/v1/approvals/{id}/approve"),
                &self.carol,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        // The re-submission is the decision the approval allowed (the clock moves 10 minutes).
        let done = self
            .ask(
                d,
                "db_migration",
                "production",
                "allow",
                json!({"approval_id": id}),
            )
            .await;
        self.outcome(d, &done, "succeeded").await;

        // Tuesday: another migration, rejected after 30 minutes.
        self.to("2027-01-05T10:00:00Z");
        let asked = self
            .ask(
                d,
                "db_migration",
                "production",
                "require_approval",
                json!({}),
            )
            .await;
        let id = asked["approval"]["id"].as_str().unwrap().to_string();
        self.clock.advance(30 * MINUTE);
        let (status, body) = self
            .s
            .post(
                &format!("/v1/approvals/{id}/reject"),
                &self.carol,
                json!({"comment": "not this week"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");

        // Wednesday: the tier-1 helper tries production twice and is denied.
        self.to("2027-01-06T11:00:00Z");
        for _ in 0..2 {
            self.ask(h, "deploy", "production", "deny", json!({})).await;
        }
        // Thursday: an admin raises the helper to tier 2.
        self.to("2027-01-07T12:00:00Z");
        let (status, body) = self
            .s
            .patch("/v1/agents/helper", &self.s.admin, json!({"tier": 2}))
            .await;
        assert_eq!(status, 200, "{body}");
        // Friday: alice's two production deploys (one failed), bob's production config change
        // and a staging deploy.
        self.to("2027-01-08T14:00:00Z");
        self.human(
            "w01-0",
            "alice",
            "payments",
            "deploy",
            "production",
            "succeeded",
        )
        .await;
        self.human(
            "w01-1",
            "alice",
            "payments",
            "deploy",
            "production",
            "failed",
        )
        .await;
        self.human(
            "w01-2",
            "bob",
            "web",
            "config_change",
            "production",
            "succeeded",
        )
        .await;
        self.human("w01-3", "bob", "web", "deploy", "staging", "succeeded")
            .await;
    }
}

fn count(v: &Value, this: u64, last: u64) {
    assert_eq!(
        (v["this_week"].as_u64(), v["last_week"].as_u64()),
        (Some(this), Some(last)),
        "{v}"
    );
}

fn rate(v: &Value, this: Option<f64>, last: Option<f64>) {
    let close = |a: &Value, b: Option<f64>| match (a.as_f64(), b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => a.is_null(),
        _ => false,
    };
    assert!(
        close(&v["this_week"], this) && close(&v["last_week"], last),
        "{v} ≠ {this:?} / {last:?}"
    );
}

fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows}"))
}

async fn a_week_with_known_counts(backend: Backend) {
    let f = Fortnight::start(backend).await;
    f.play().await;
    f.to("2027-01-10T20:00:00Z");

    let r = f.report("week=2027-W01").await;
    assert_eq!(r["schema"], "warden.weekly-report/1");
    assert_eq!(r["week"], "2027-W01");
    assert_eq!(
        r["previous_week"], "2026-W53",
        "the week before week 1 is the old year's 53rd"
    );
    assert_eq!(r["from"], "2027-01-04T00:00:00.000000Z");
    assert_eq!(r["until"], "2027-01-11T00:00:00.000000Z");
    assert_eq!(r["scope"], json!({"kind": "organisation"}));
    assert_eq!(r["activity"], true);

    // The headline: agents' 3 deploys + 1 migration, one rolled back, against 2 deploys with one
    // failure; the humans' 3 production changes (one failed) against alice's 4 (one rolled back).
    let agents = &r["headline"]["agents"];
    count(&agents["changes"], 4, 2);
    count(&agents["failed"], 0, 1);
    count(&agents["rolled_back"], 1, 0);
    rate(&agents["failure_rate"], Some(0.25), Some(0.5));
    let humans = &r["headline"]["humans"];
    count(&humans["changes"], 3, 4);
    count(&humans["failed"], 1, 0);
    count(&humans["rolled_back"], 0, 1);
    rate(&humans["failure_rate"], Some(1.0 / 3.0), Some(0.25));
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.contains("4 production changes (failure rate 25.0%)"),
        "{summary}"
    );
    assert!(
        summary.contains("humans made 3 (failure rate 33.3%)"),
        "{summary}"
    );

    let v = &r["verdicts"];
    count(&v["decisions"], 8, 2);
    count(&v["allowed"], 4, 2);
    count(&v["approval_required"], 2, 0);
    count(&v["denied"], 2, 0);
    count(&v["shadow_would_deny"], 0, 0);
    count(
        &row(&r["actions"], "class", "db_migration")["actions"],
        3,
        0,
    );
    let deploys: Vec<&Value> = r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["class"] == "deploy")
        .collect();
    assert_eq!(deploys.len(), 1, "{}", r["actions"]);
    count(&deploys[0]["actions"], 5, 2);
    let days: Vec<(u64, u64, u64)> = r["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let n = |k: &str| d[k].as_u64().unwrap();
            (n("allowed"), n("approval_required"), n("denied"))
        })
        .collect();
    assert_eq!(
        days,
        [
            (4, 1, 0),
            (0, 1, 0),
            (0, 0, 2),
            (0, 0, 0),
            (0, 0, 0),
            (0, 0, 0),
            (0, 0, 0)
        ]
    );
    assert_eq!(r["days"][0]["day"], "2027-01-04");

    let a = &r["approvals"];
    count(&a["requested"], 2, 0);
    count(&a["approved"], 1, 0);
    count(&a["rejected"], 1, 0);
    count(&a["expired"], 0, 0);
    rate(&a["median_minutes"], Some(20.0), None);
    rate(&a["p90_minutes"], Some(28.0), None);
    assert_eq!(
        a["top_approvers"],
        json!([{"human": "carol", "decided": 2}])
    );
    count(
        &row(&a["time_to_decision"], "label", "5–15 min")["decided"],
        1,
        0,
    );
    count(
        &row(&a["time_to_decision"], "label", "15–60 min")["decided"],
        1,
        0,
    );

    let deploy = row(&r["outcomes"], "class", "deploy");
    count(&deploy["expected"], 3, 2);
    count(&deploy["succeeded"], 2, 1);
    count(&deploy["failed"], 0, 1);
    count(&deploy["rolled_back"], 1, 0);
    count(&deploy["unreported"], 0, 0);
    rate(&deploy["rollback_rate"], Some(1.0 / 3.0), Some(0.0));
    // The humans' deploys of any environment: alice's two and bob's staging one.
    count(&deploy["human_changes"], 3, 4);
    rate(&deploy["human_failure_rate"], Some(1.0 / 3.0), Some(0.25));
    let migration = row(&r["outcomes"], "class", "db_migration");
    count(&migration["expected"], 1, 0);
    rate(&migration["human_failure_rate"], None, None);

    // The helper's two denials are its two violations, as the violations API lists them.
    let (_, listed) = f.s.get("/v1/violations?agent=helper", &f.s.admin).await;
    let listed = listed["violations"]
        .as_array()
        .or(listed.as_array())
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let reason = listed[0]["reason"].as_str().unwrap();
    let violations = r["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(
        (
            violations[0]["reason"].as_str(),
            violations[0]["mode"].as_str()
        ),
        (Some(reason), Some("block"))
    );
    count(&violations[0]["violations"], 2, 0);

    let deployer = row(&r["agents"], "agent", "deployer");
    count(&deployer["decisions"], 6, 2);
    count(&deployer["production_changes"], 4, 2);
    rate(&deployer["failure_rate"], Some(0.25), Some(0.5));
    assert_eq!(deployer["trust"].as_array().unwrap().len(), 7);
    let helper = row(&r["agents"], "agent", "helper");
    count(&helper["denied"], 2, 0);
    count(&helper["violations"], 2, 0);
    assert_eq!(
        (helper["tier_start"].as_u64(), helper["tier_end"].as_u64()),
        (Some(1), Some(2))
    );
    let changes = r["tier_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (
            changes[0]["agent"].as_str(),
            changes[0]["from"].as_u64(),
            changes[0]["to"].as_u64()
        ),
        (Some("helper"), Some(1), Some(2))
    );

    let payments = row(&r["teams"], "team", "payments");
    count(&payments["production_changes"], 4, 2);
    count(&payments["human_changes"], 2, 4);
    let web = row(&r["teams"], "team", "web");
    count(&web["decisions"], 2, 0);
    count(&web["human_changes"], 1, 0);
    rate(&web["human_failure_rate"], Some(0.0), None);

    // The week before, on its own, agrees with this report's comparison, across New Year.
    let w53 = f.report("week=2026-W53").await;
    assert_eq!(w53["previous_week"], "2026-W52");
    count(&w53["headline"]["agents"]["changes"], 2, 0);
    count(&w53["headline"]["humans"]["changes"], 4, 0);
    count(&w53["verdicts"]["decisions"], 2, 0);

    // One team's report: its agents beside its own humans.
    let web = f.report("week=2027-W01&team=web").await;
    assert_eq!(web["scope"], json!({"kind": "team", "id": "web"}));
    count(&web["verdicts"]["decisions"], 2, 0);
    count(&web["headline"]["humans"]["changes"], 1, 0);
    assert_eq!(web["agents"].as_array().unwrap().len(), 1);
    let one = f.report("week=2027-W01&agent=deployer").await;
    count(&one["headline"]["humans"]["changes"], 2, 4);
    count(&one["approvals"]["requested"], 2, 0);

    // An empty week is a valid report that says so.
    let empty = f.report("week=2026-W40").await;
    assert_eq!(empty["activity"], false);
    assert!(
        empty["summary"]
            .as_str()
            .unwrap()
            .starts_with("No activity in 2026-W40"),
        "{}",
        empty["summary"]
    );
    count(&empty["verdicts"]["decisions"], 0, 0);
    rate(&empty["headline"]["agents"]["failure_rate"], None, None);
    assert_eq!(empty["outcomes"], json!([]));

    // A stored answer that no longer reads back costs the report its details, not the report.
    let pool = f.s.db.pool().await;
    sqlx::query("UPDATE decisions SET answer = '{\"reasons\": 7}' WHERE agent_id = 'helper'")
        .execute(&pool)
        .await
        .unwrap();
    let again = f.report("week=2027-W01&agent=helper").await;
    count(&again["verdicts"]["denied"], 2, 0);

    // Formats.
    let text = |query: &str| {
        let url = format!("{}/v1/reports/weekly?{query}", f.s.base);
        let client = f.s.client.clone();
        let token = f.s.admin.clone();
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status();
            let kind = r.headers()["content-type"].to_str().unwrap().to_string();
            (status, kind, r.text().await.unwrap())
        }
    };
    let (status, kind, html) = text("week=2027-W01&format=html").await;
    assert_eq!(
        (status.as_u16(), kind.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(html.contains("chart-trust") && !html.to_lowercase().contains("<script"));
    let (_, kind, md) = text("week=2027-W01&format=md").await;
    assert!(kind.starts_with("text/markdown"));
    assert!(md.starts_with("# Warden weekly report · 2027-W01"), "{md}");
    let (_, kind, csv) = text("week=2027-W01&format=csv&table=agents").await;
    assert!(kind.starts_with("text/csv"));
    assert_eq!(csv.lines().count(), 3, "a header and two agents: {csv}");

    // Bad input names the parameter; roles hold.
    for (query, field) in [
        ("week=2027-W54", "week"),
        ("week=last", "week"),
        ("format=pdf", "format"),
        ("format=csv", "table"),
        ("format=csv&table=nope", "table"),
        ("team=web&agent=helper", "agent"),
        ("colour=red", "colour"),
    ] {
        let answer =
            f.s.get(&format!("/v1/reports/weekly?{query}"), &f.s.admin)
                .await;
        assert_error(&answer, 400, "invalid_field");
        assert_eq!(answer.1["error"]["field"], field, "{query}: {}", answer.1);
    }
    let answer = f.s.get("/v1/reports/weekly?agent=ghost", &f.s.admin).await;
    assert_error(&answer, 404, "unknown_agent");
    let (status, body) = f.s.get("/v1/reports/weekly", &f.deployer).await;
    assert_eq!(status, 403, "{body}");

    // The schedule: nothing before Monday 08:00 after the week; then the organisation's and
    // each team's report, kept and announced once, however often the step runs.
    let reports = f.s.warden.state.reports.clone();
    f.to("2027-01-11T07:59:00Z");
    reports.scheduled().await.unwrap();
    let (_, kept) = f.s.get("/v1/reports", &f.s.admin).await;
    assert_eq!(kept, json!([]));
    f.to("2027-01-11T08:01:00Z");
    reports.scheduled().await.unwrap();
    reports.scheduled().await.unwrap();
    let (_, kept) = f.s.get("/v1/reports", &f.s.admin).await;
    let scopes: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        ["organisation", "team:payments", "team:web"],
        "{kept}"
    );
    assert!(
        kept.as_array()
            .unwrap()
            .iter()
            .all(|k| k["week"] == "2027-W01")
    );
    let (_, ready) =
        f.s.get("/v1/audit?event_type=report.ready", &f.s.admin)
            .await;
    assert_eq!(ready["records"].as_array().unwrap().len(), 3, "{ready}");
    let announced = f.s.documented_deliveries("ops").await;
    let mut weeks: Vec<(&str, &str)> = announced
        .iter()
        .map(|e| {
            (
                e["data"]["week"].as_str().unwrap(),
                e["data"]["scope"].as_str().unwrap(),
            )
        })
        .collect();
    weeks.sort_unstable();
    assert_eq!(
        weeks,
        [
            ("2027-W01", "organisation"),
            ("2027-W01", "team:payments"),
            ("2027-W01", "team:web")
        ]
    );
    // The kept report is the one served, as it was announced.
    f.clock.advance(DAY);
    let served = f.report("week=2027-W01").await;
    assert_eq!(served["generated_at"], kept[0]["generated_at"]);
    f.s.stop().await;
}

/// The weekly report (from the UI and as the standalone HTML file) and an agent's page in real
/// headless Chromium: no console errors, every chart present, no script; screenshots go to the
/// test's output directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_and_the_agent_page_in_the_browser() {
    let f = Fortnight::start(Backend::Sqlite).await;
    f.play().await;
    f.to("2027-01-10T20:00:00Z");
    let (status, html) = {
        let r =
            f.s.client
                .get(format!(
                    "{}/v1/reports/weekly?week=2027-W01&format=html",
                    f.s.base
                ))
                .bearer_auth(&f.s.admin)
                .send()
                .await
                .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reports");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("warden-2027-W01.html");
    std::fs::write(&file, &html).unwrap();

    let (base, token) = (f.s.base.clone(), f.carol.clone());
    let seen = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        let charts = "['chart-verdicts','chart-approvals','chart-failure','chart-trust'].every(id => document.getElementById(id) && document.getElementById(id).querySelector('svg'))";
        // The file on its own: nothing to fetch, nothing to run.
        b.navigate(&format!("file://{}", file.display()));
        b.wait_for(charts);
        let standalone = (
            b.eval("document.scripts.length"),
            b.eval("document.querySelector('#summary').innerText"),
            b.errors(),
        );
        b.screenshot(&out.join("report-standalone.png"));
        // Signed in, the same report under the UI's header, and the agent's page.
        b.navigate(&format!("{base}/ui/approvals"));
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval(&format!("document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit(); true", json!(token)));
        b.wait_for("document.getElementById('count')");
        b.navigate(&format!("{base}/ui/reports"));
        b.wait_for("document.querySelector('.week a')");
        let list = b.eval("Array.from(document.querySelectorAll('.week')).map(e => e.innerText).join(' / ')");
        b.navigate(&format!("{base}/ui/reports/2027-W01?scope=organisation"));
        b.wait_for(charts);
        let ui = (b.eval("document.scripts.length"), b.eval("document.querySelectorAll('figure.chart svg').length"), b.errors());
        b.screenshot(&out.join("report-ui.png"));
        b.navigate(&format!("{base}/ui/agents/deployer"));
        b.wait_for("document.getElementById('chart-trust-history') && document.getElementById('chart-tier-history')");
        let agent = (
            b.eval("document.querySelectorAll('#decisions tr.decision').length"),
            b.eval("document.getElementById('tier').innerText"),
            b.eval("!!document.querySelector('#gates')"),
            b.eval("document.scripts.length"),
            b.errors(),
        );
        b.screenshot(&out.join("agent-deployer.png"));
        b.navigate(&format!("{base}/ui/agents/helper"));
        b.wait_for("document.querySelectorAll('#violations tr.violation').length === 2");
        (standalone, list, ui, agent)
    })
    .await
    .unwrap();
    let (standalone, list, ui, agent) = seen;
    assert_eq!(standalone.0, json!(0));
    assert!(
        standalone
            .1
            .as_str()
            .unwrap()
            .contains("4 production changes"),
        "{}",
        standalone.1
    );
    assert_eq!(
        standalone.2,
        Vec::<String>::new(),
        "console errors in the standalone report"
    );
    let list = list.as_str().unwrap();
    assert!(
        list.starts_with("Last week: 2026-W53") && list.contains("This week so far: 2027-W01"),
        "{list}"
    );
    assert_eq!(ui.0, json!(0));
    assert!(ui.1.as_u64().unwrap() >= 4, "{}", ui.1);
    assert_eq!(
        ui.2,
        Vec::<String>::new(),
        "console errors in the UI's report"
    );
    assert_eq!(
        agent.0,
        json!(8),
        "the deployer's eight decisions of the fortnight are listed"
    );
    assert_eq!(agent.1, json!("4"));
    assert_eq!(agent.2, json!(true));
    assert_eq!(agent.3, json!(0));
    assert_eq!(
        agent.4,
        Vec::<String>::new(),
        "console errors on the agent page"
    );
    for png in [
        "report-standalone.png",
        "report-ui.png",
        "agent-deployer.png",
    ] {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("reports")
            .join(png);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 10_000,
            "{} is a real screenshot",
            path.display()
        );
    }
    // Without a session, the pages send the reader to sign in.
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/ui/agents/deployer", f.s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    f.s.stop().await;
}
