//! The OpenAPI document, held to the server it describes, property-based: for every operation,
//! requests generated from its parameters' and body's schemas (well-formed ones, and ones broken
//! on purpose, some not JSON or too large), sent with an admin's token, an agent's and none,
//! get no 5xx, a status the operation
//! documents, and a JSON body that the schema documented for that status accepts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng as _};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::support::{Backend, TestServer};

/// Cases per operation and token (an admin's, an agent's, none).
const CASES: usize = 12;

struct Doc<'a> {
    root: &'a Value,
}

impl<'a> Doc<'a> {
    /// A schema with its `$ref` followed.
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                self.resolve(&self.root["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// Where `value` breaks `schema`, if it does.
    fn check(&self, schema: &'a Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, value, at)?;
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = schema.get(key).and_then(Value::as_array)
                && !any.iter().any(|s| self.check(s, value, at).is_ok())
            {
                return Err(format!("{at}: {value} matches none of {key}"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let nullable = schema.get("nullable") == Some(&json!(true));
        if !types.is_empty() {
            let fits = types.iter().any(|t| match *t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                _ => true,
            }) || (nullable && value.is_null());
            if !fits {
                return Err(format!("{at}: {value} is not {types:?}"));
            }
        }
        if let Value::Object(map) = value {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    return Err(format!("{at}: `{required}` is required but absent"));
                }
            }
            for (k, v) in map {
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => self.check(s, v, &format!("{at}.{k}"))?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) if properties.is_some() => {
                            return Err(format!("{at}: `{k}` is not in the schema"));
                        }
                        Some(s @ Value::Object(_)) => self.check(s, v, &format!("{at}.{k}"))?,
                        _ => {}
                    },
                }
            }
        }
        if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                self.check(s, v, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }

    /// A value for `schema`: mostly well-formed, sometimes not.
    fn generate(&self, schema: &'a Value, rng: &mut StdRng, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if rng.random_ratio(1, 25) {
            return wrong(rng);
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array)
                && !options.is_empty()
            {
                let pick = &options[rng.random_range(0..options.len())];
                return self.generate(pick, rng, depth);
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.is_empty()
        {
            return allowed[rng.random_range(0..allowed.len())].clone();
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null")
                .to_string(),
            _ if schema.get("properties").is_some() => "object".into(),
            _ => "string".into(),
        };
        match ty.as_str() {
            "object" if depth < 4 => {
                let mut map = Map::new();
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for (k, s) in schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let needed = required.contains(&k.as_str());
                    if (needed && !rng.random_ratio(1, 20)) || rng.random_ratio(1, 3) {
                        map.insert(k.clone(), self.generate(s, rng, depth + 1));
                    }
                }
                if rng.random_ratio(1, 30) {
                    map.insert("unexpected".into(), json!(1));
                }
                Value::Object(map)
            }
            "array" if depth < 4 => {
                let items = schema.get("items").unwrap_or(&Value::Null);
                (0..rng.random_range(0..3))
                    .map(|_| self.generate(items, rng, depth + 1))
                    .collect()
            }
            "integer" => {
                json!([0, 1, 2, 4, 100, -1, i64::MAX, 1_000_000_000][rng.random_range(0..8)])
            }
            "number" => json!([0.0, 1.5, 1e9, -3.0, 0.01][rng.random_range(0..5)]),
            "boolean" => json!(rng.random::<bool>()),
            "null" => Value::Null,
            _ => json!(word(rng)),
        }
    }
}

/// A value of a kind no schema here asks for at that place.
fn wrong(rng: &mut StdRng) -> Value {
    [
        json!(null),
        json!(7),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
    ][rng.random_range(0..6)]
    .clone()
}

/// A string of the kinds ids, names and free text take, hostile ones among them.
fn word(rng: &mut StdRng) -> String {
    let words = [
        "bot",
        "deploy",
        "production",
        "staging",
        "payments",
        "read",
        "2026-W01",
        "*",
        "",
        "x y",
        "<script>",
        "é",
        "a/b",
        "30d",
        "'; drop table agents; --",
        "0",
        "-1",
    ];
    match rng.random_range(0..4) {
        0 => "a".repeat(rng.random_range(100..600)),
        _ => words[rng.random_range(0..words.len())].to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_one_the_document_gives() {
    let s = TestServer::start(Backend::Sqlite).await;
    let agent = s.agent("bot", 2, json!({})).await;
    s.approver("pat").await;
    let (_, root) = s.call(Method::GET, "/openapi.json", None, None).await;
    let doc = Doc { root: &root };
    let seed: u64 = std::env::var("WARDEN_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut problems = Vec::new();
    let mut sent = 0;
    for (path, item) in root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            for token in [Some(&s.admin), Some(&agent), None] {
                for _ in 0..CASES {
                    let mut url = path.clone();
                    let mut query = Vec::new();
                    for p in op["parameters"].as_array().into_iter().flatten() {
                        let name = p["name"].as_str().unwrap();
                        let value = doc.generate(&p["schema"], &mut rng, 0);
                        let text = match &value {
                            Value::String(t) => t.clone(),
                            other => other.to_string(),
                        };
                        match p["in"].as_str() {
                            Some("path") => {
                                let seg: String =
                                    form_urlencoded::byte_serialize(text.as_bytes()).collect();
                                let seg = if seg.is_empty() { "x".into() } else { seg };
                                url = url.replace(&format!("{{{name}}}"), &seg);
                            }
                            Some("query") if rng.random_ratio(1, 2) => {
                                query.push((name.to_string(), text))
                            }
                            _ => {}
                        }
                    }
                    if !query.is_empty() {
                        url.push('?');
                        url.push_str(&serde_urlencoded::to_string(&query).unwrap());
                    }
                    let body = op["requestBody"]["content"]["application/json"]["schema"]
                        .as_object()
                        .map(|_| {
                            doc.generate(
                                &op["requestBody"]["content"]["application/json"]["schema"],
                                &mut rng,
                                0,
                            )
                        });
                    let mut req = s.client.request(m.clone(), format!("{}{url}", s.base));
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    let mut oversized = false;
                    if let Some(b) = &body {
                        req = match rng.random_range(0..40) {
                            // Not JSON, or far too large.
                            0 => req.header("content-type", "text/plain").body(b.to_string()),
                            1 => {
                                oversized = true;
                                req.json(&json!({"padding": "x".repeat(40 << 20)}))
                            }
                            _ => req.json(b),
                        };
                    }
                    let resp = match req.send().await {
                        Ok(resp) => resp,
                        // Answered and closed before the client finished sending: refused early.
                        Err(e) if oversized && e.is_request() => continue,
                        Err(e) => panic!("{m} {url}: {e}"),
                    };
                    sent += 1;
                    let status = resp.status();
                    let json = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.starts_with("application/json"));
                    let text = resp.text().await.unwrap();
                    let case = format!(
                        "{} {url} {}",
                        m,
                        body.map(|b| b.to_string()).unwrap_or_default()
                    );
                    if status.is_server_error() {
                        problems.push(format!("{case}: {status} {text}"));
                        continue;
                    }
                    let Some(documented) = op["responses"].get(status.as_str()) else {
                        problems.push(format!("{case}: {status} is not documented: {text}"));
                        continue;
                    };
                    let schema = &documented["content"]["application/json"]["schema"];
                    if json && !schema.is_null() {
                        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        if let Err(e) = doc.check(schema, &value, "body") {
                            problems.push(format!("{case}: {status}: {e}"));
                        }
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "seed {seed}, {} of {sent} answers outside the document:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
    assert!(sent > 1000, "{sent}");
}
