//! The HTTP client the admin commands share: the server's address, one call with the token in
//! `WARDEN_TOKEN`, and how answers are printed.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

/// A running server to talk to.
#[derive(Debug, Args)]
pub(super) struct ServerArgs {
    /// The server's base URL (`https://…` behind TLS).
    #[arg(long, env = "WARDEN_SERVER", default_value = "http://127.0.0.1:8080")]
    pub(super) server: String,
    /// A PEM file of certificate authorities to trust besides the built-in ones (a private CA).
    #[arg(long, env = "WARDEN_CA_CERT")]
    pub(super) ca_cert: Option<std::path::PathBuf>,
}

/// `path?limit=…&k=v…` with the filters that are set.
pub(super) fn with_query<const N: usize>(
    path: &str,
    limit: i64,
    filters: [(&str, Option<String>); N],
) -> anyhow::Result<String> {
    let mut query = vec![("limit", limit.to_string())];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    Ok(format!("{path}?{}", serde_urlencoded::to_string(&query)?))
}

/// Reads `path` from the server and prints it.
pub(super) async fn show(server: &ServerArgs, path: &str) -> anyhow::Result<()> {
    print_json(call(server, reqwest::Method::GET, path, None).await?)
}

pub(super) fn print_json(v: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// Calls the server with `WARDEN_TOKEN`; a non-2xx answer becomes an error with its message.
pub(super) async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let token = std::env::var("WARDEN_TOKEN")
        .context("set WARDEN_TOKEN to an API token (create one with `warden token create`)")?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut client = reqwest::Client::builder();
    if let Some(path) = &server.ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificates in {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificates", path.display()))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let mut req = client.build()?.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let e = &value["error"];
        let field = e["field"]
            .as_str()
            .map(|f| format!(" (field `{f}`)"))
            .unwrap_or_default();
        bail!(
            "{status}: {}{field}: {}",
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or(&value.to_string())
        );
    }
    Ok(value)
}
