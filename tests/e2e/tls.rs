//! TLS, with certificates of a private CA made for the test: Warden on a PostgreSQL cluster
//! that refuses any connection without TLS (`sslmode` and `sslrootcert` in the URL), and the
//! CLI on an HTTPS server (`--ca-cert`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestDb, TestServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_warden");

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let path = |name: &str| dir.join(name);
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    run(openssl().args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=warden-test-ca",
    ]));
    run(openssl().args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]));
    std::fs::write(
        path("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(openssl().args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]));
    Pki {
        ca: path("ca.pem"),
        cert: path("server.pem"),
        key: path("server.key"),
    }
}

/// A PostgreSQL cluster of its own, on a free port, that takes TLS connections only.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(dir: &Path, pki: &Pki) -> Cluster {
        let out = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config");
        let bin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let data = dir.join("pgdata");
        let port = free_port();
        // PostgreSQL runs as its own user, never as root.
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir));
        let as_postgres = |program: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        };
        run(as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        for (from, to) in [(&pki.cert, "server.pem"), (&pki.key, "server.key")] {
            std::fs::copy(from, data.join(to)).unwrap();
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(data.join(to)));
            run(Command::new("chmod").arg("0600").arg(data.join(to)));
        }
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\nfsync = off\n",
            dir.display()
        );
        let mut postgresql = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        postgresql.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), postgresql).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        run(as_postgres("pg_ctl")
            .args(["-w", "-l"])
            .arg(dir.join("pg.log"))
            .arg("-D")
            .arg(&data)
            .arg("start"));
        Cluster { bin, data, port }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_on_a_postgresql_that_requires_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let cluster = Cluster::start(dir.path(), &pki);
    let base = format!("postgres://postgres@localhost:{}/postgres", cluster.port);
    let open = |url: String| {
        let mut config = warden::config::Config::default();
        config.storage.database_url = url;
        config.storage.data_dir = dir.path().join("warden");
        warden::server::Warden::open_default(config)
    };
    // Without TLS the cluster refuses; with TLS but an unknown CA, Warden does.
    let refused = open(format!("{base}?sslmode=disable")).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("no encryption"),
        "{refused:#}"
    );
    let untrusted = open(format!("{base}?sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(
        format!("{untrusted:#}")
            .to_lowercase()
            .contains("certificate"),
        "{untrusted:#}"
    );

    // Verified against the private CA: the whole server works over it.
    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        pki.ca.display()
    );
    let mut config = warden::config::Config::default();
    config.storage.database_url = url.clone();
    let keep = tempfile::tempdir().unwrap();
    config.storage.data_dir = keep.path().to_path_buf();
    let s = TestServer::start_with(TestDb::at(url, keep), config).await;
    let bot = s.agent("bot", 2, json!({})).await;
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "allow");
    let (_, verified) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(verified["intact"], true, "{verified}");
    s.stop().await;
    drop(cluster);
}

/// `openssl s_server -WWW` serves files over TLS: the CLI reads `/v1/policy` from it.
#[tokio::test]
async fn the_cli_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("v1")).unwrap();
    std::fs::write(root.join("v1/policy"), r#"{"version": "p-over-tls"}"#).unwrap();
    let port = free_port();
    let mut server: Child = Command::new("openssl")
        .current_dir(&root)
        .args(["s_server", "-WWW", "-quiet", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(&pki.cert)
        .arg("-key")
        .arg(&pki.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cli = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["policy", "--server", &format!("https://localhost:{port}")])
            .env("WARDEN_TOKEN", "wdn_test")
            .env_remove("WARDEN_CA_CERT");
        if let Some(ca) = ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        cmd.output().unwrap()
    };
    let trusted = cli(Some(&pki.ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let policy: serde_json::Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert_eq!(policy["version"], "p-over-tls");
    let untrusted = cli(None);
    assert!(!untrusted.status.success());
    let _ = server.kill();
    let _ = server.wait();
}
