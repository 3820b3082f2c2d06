//! Test servers on real databases: a fresh SQLite file, or a fresh PostgreSQL schema, per test.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{AnyPool, Executor as _};
use warden::audit::Actor;
use warden::clock::{SharedClock, SystemClock};
use warden::config::{Config, EventType, WebhookConfig, WebhookFormat};
use warden::identity::Role;
use warden::server::Warden;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use (trust auth); each test makes its own schema in it.
pub(crate) fn postgres_base_url() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// An isolated database: a temp dir for SQLite, a schema for PostgreSQL (dropped on drop).
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDb {
    /// A database someone else made (and will drop): a PostgreSQL `url`, beside `dir`.
    pub(crate) fn at(url: String, dir: tempfile::TempDir) -> TestDb {
        TestDb {
            backend: Backend::Postgres,
            url,
            _dir: Some(dir),
            schema: None,
        }
    }

    pub(crate) async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("warden.db").display()
                );
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    schema: None,
                }
            }
            Backend::Postgres => {
                let schema = format!("warden_t_{}", uuid::Uuid::now_v7().simple());
                let admin = admin_pool().await;
                admin
                    .execute(format!("CREATE SCHEMA {schema}").as_str())
                    .await
                    .expect("PostgreSQL at WARDEN_TEST_POSTGRES_URL must be reachable");
                admin.close().await;
                let base = postgres_base_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!(
                    "{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
                );
                TestDb {
                    backend,
                    url,
                    // Files beside the database (the audit signing key) go here.
                    _dir: Some(tempfile::tempdir().unwrap()),
                    schema: Some(schema),
                }
            }
        }
    }

    /// A direct connection pool to the test database (for tampering and fault injection).
    pub(crate) async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap()
    }

    /// The directory beside the database (the data directory of its servers).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self._dir
            .as_ref()
            .expect("every test database has a directory")
            .path()
    }

    /// The PostgreSQL schema, if this is PostgreSQL.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub(crate) fn config(&self) -> Config {
        let mut config = Config::default();
        config.storage.database_url = self.url.clone();
        config.storage.data_dir = self.dir().to_path_buf();
        config.storage.max_connections = 4;
        // Each test loads the plugins it is about; the built-in reference ones have their own.
        config.plugins.reference = false;
        config
    }
}

/// A pool on the shared test database itself, outside any test's schema.
pub(crate) async fn admin_pool() -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_base_url())
        .await
        .expect("PostgreSQL at WARDEN_TEST_POSTGRES_URL must be reachable")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Drop runs inside the test's runtime, so clean up on a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let admin = admin_pool().await;
                    for name in [schema.clone(), format!("{schema}_gone")] {
                        let _ = admin
                            .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                            .await;
                    }
                    admin.close().await;
                });
            })
            .join();
        }
    }
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Warden HTTP server on a random port.
pub(crate) struct TestServer {
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub warden: Warden,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

impl TestServer {
    pub(crate) async fn start(backend: Backend) -> TestServer {
        let db = TestDb::new(backend).await;
        let config = db.config();
        TestServer::start_with(db, config).await
    }

    pub(crate) async fn start_with(db: TestDb, config: Config) -> TestServer {
        TestServer::start_clocked(db, config, Arc::new(SystemClock)).await
    }

    /// A server whose time is `clock` (a `ManualClock` lets a test move through months).
    pub(crate) async fn start_clocked(
        db: TestDb,
        config: Config,
        clock: SharedClock,
    ) -> TestServer {
        let warden = Warden::open(config, clock).await.unwrap();
        let actor = Actor {
            kind: "admin".into(),
            id: "test".into(),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        };
        let now = warden.state.clock.now_micros();
        let admin = warden::services::tokens::issue(
            &warden.state.store,
            actor,
            Role::Admin,
            Some("root".into()),
            String::new(),
            None,
            now,
        )
        .await
        .unwrap()
        .secret;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(warden.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            base,
            admin,
            client: reqwest::Client::new(),
            warden,
            shutdown: Some(tx),
            task: Some(task),
            db,
        }
    }

    /// Stops the server and starts a new one on the same database with `config`.
    pub(crate) async fn restart(self, config: Config) -> TestServer {
        self.restart_clocked(config, Arc::new(SystemClock)).await
    }

    /// Stops the server and starts a new one on the same database with `config` and `clock`.
    pub(crate) async fn restart_clocked(
        mut self,
        config: Config,
        clock: SharedClock,
    ) -> TestServer {
        self.halt().await;
        let placeholder = TestDb {
            backend: self.db.backend,
            url: String::new(),
            _dir: None,
            schema: None,
        };
        let db = std::mem::replace(&mut self.db, placeholder);
        TestServer::start_clocked(db, config, clock).await
    }

    /// Stops the server gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Creates an agent (as admin) and returns its own token.
    pub(crate) async fn agent(&self, id: &str, tier: u8, extra: Value) -> String {
        let mut body = json!({"id": id, "tool": "claude-code", "model": "claude-opus", "team": "payments", "sponsor": "alice", "tier": tier, "ceiling": 4});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let (status, agent) = self.post("/v1/agents", &self.admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{agent}");
        self.token("agent", Some(id)).await
    }

    /// Lifts an agent's deploy and call quotas far out of the way (for tests about something else).
    pub(crate) async fn lift_quotas(&self, id: &str) {
        let limits =
            json!({"limits": {"deploys_per_hour_per_service": 100000, "calls_per_minute": 100000}});
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/agents/{id}/quotas"),
                Some(&self.admin),
                Some(limits),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub(crate) async fn token(&self, role: &str, subject: Option<&str>) -> String {
        let (status, created) = self
            .post(
                "/v1/tokens",
                &self.admin,
                json!({"role": role, "subject": subject}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["token"].as_str().unwrap().to_string()
    }

    /// Signs in to the web UI as a browser would (the form's nonce and its cookie, then the
    /// token); returns the `Cookie` header of the session.
    pub(crate) async fn sign_in(&self, token: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = client
            .get(format!("{}/ui/approvals", self.base))
            .send()
            .await
            .unwrap();
        let cookie_of = |resp: &reqwest::Response, name: &str| {
            resp.headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|c| {
                    c.strip_prefix(&format!("{name}="))
                        .map(|v| v.split(';').next().unwrap().to_string())
                })
        };
        let nonce = cookie_of(&form, "warden_login").expect("the sign-in form sets its nonce");
        let html = form.text().await.unwrap();
        assert!(
            html.contains(&format!(r#"name="login_csrf" value="{nonce}""#)),
            "{html}"
        );
        let signed = client
            .post(format!("{}/ui/login", self.base))
            .header("cookie", format!("warden_login={nonce}"))
            .form(&[("token", token), ("login_csrf", nonce.as_str())])
            .send()
            .await
            .unwrap();
        let session = cookie_of(&signed, "warden_session").expect("signed in");
        format!("warden_session={session}")
    }

    /// A human who may approve anything, and an approver token for them.
    pub(crate) async fn approver(&self, id: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/humans",
                &self.admin,
                json!({"id": id, "team": "platform", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.token("approver", Some(id)).await
    }

    /// Asks for a decision with a token; returns status and body.
    pub(crate) async fn decide(
        &self,
        token: &str,
        class: &str,
        env: &str,
        extra: Value,
    ) -> (StatusCode, Value) {
        let mut body =
            json!({"action": {"class": class, "environment": env, "service": "payments"}});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        self.post("/v1/decisions", token, body).await
    }

    /// The verdict of a decision that must succeed.
    pub(crate) async fn verdict(&self, token: &str, class: &str, env: &str) -> String {
        let (status, answer) = self.decide(token, class, env, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["verdict"].as_str().unwrap().to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Another `warden serve` replica on the same database, serving until `stop`.
pub(crate) struct Replica {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    pub(crate) async fn start(config: Config) -> Replica {
        let warden = Warden::open(config, Arc::new(SystemClock)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(warden.serve(listener, async move {
            let _ = stopped.await;
        }));
        Replica { base, stop, task }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Asserts an error's status and code; returns its `field`.
pub(crate) fn assert_error(
    result: &(StatusCode, Value),
    status: u16,
    code: &str,
) -> Option<String> {
    let (s, body) = result;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["field"].as_str().map(String::from)
}

/// Runs each named async test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// A `warden`-format endpoint named `name` that nothing answers, wanting `events`: what Warden
/// would send it stays readable as pending deliveries.
pub(crate) fn unanswered_hook(name: &str, events: Vec<EventType>) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url: "http://127.0.0.1:9/nothing-listens".into(),
        format: WebhookFormat::Warden,
        events,
        secret_env: None,
        secret: Some(format!("{name}-secret")),
    }
}

impl TestServer {
    /// The bodies of the deliveries to `endpoint` as stored (the API does not show them), each
    /// checked against the documented fields.
    pub(crate) async fn documented_deliveries(&self, endpoint: &str) -> Vec<Value> {
        let deliveries = self
            .warden
            .state
            .store
            .deliveries(None, Some(endpoint), None, 1000)
            .await
            .unwrap();
        deliveries
            .iter()
            .map(|d| {
                let body: Value = serde_json::from_str(&d.body).unwrap();
                assert_eq!(body["type"], d.event_type.as_str(), "{d:?}");
                assert_documented_event(&body);
                body
            })
            .collect()
    }
}

/// Checks a `warden`-format webhook body against the table of each event's `data` fields in
/// docs/configuration.md: the same fields, no more and no fewer, so the table stays true.
pub(crate) fn assert_documented_event(body: &Value) {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let event = body["type"].as_str().unwrap_or_else(|| panic!("{body}"));
    let row = doc
        .lines()
        .find(|l| l.starts_with(&format!("| `{event}` |")))
        .unwrap_or_else(|| panic!("docs/configuration.md has no row for {event}"));
    let mut documented: Vec<&str> = row
        .rsplit('|')
        .nth(1)
        .unwrap()
        .split(',')
        .map(|f| f.trim().trim_matches('`'))
        .collect();
    let mut sent: Vec<&str> = body["data"]
        .as_object()
        .unwrap_or_else(|| panic!("{body}"))
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    sent.sort_unstable();
    assert_eq!(
        sent, documented,
        "{event}'s data against docs/configuration.md: {body}"
    );
}
