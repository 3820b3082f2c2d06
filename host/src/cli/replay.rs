//! `warden trust replay`: where each agent would stand under a proposed trust and tiering
//! policy, printed as a table or JSON ([`crate::services::tiering::replay`] does the work).

use anyhow::Context as _;
use serde_json::json;

use crate::config::Config;

/// Replays the record from `since` (`<days>d` or RFC 3339) under `config`'s policy, reading the
/// database it names.
pub(super) async fn run(
    config: Config,
    since: &str,
    agent: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let proposed = crate::policy::CompiledPolicy::new(config.policy.apply())
        .context("invalid [policy] in the proposed configuration")?;
    let now = jiff::Timestamp::now().as_microsecond();
    let from = crate::clock::parse_moment(since, now).with_context(|| {
        format!("--since `{since}` is neither a span such as 90d, 12h or 15m nor an RFC 3339 time")
    })?;
    let store = crate::store::Store::open(&config.store_options()?).await?;
    let replayed = crate::services::tiering::replay(&store, &proposed, from, now, agent)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let stood: Vec<(String, u8)> = store
        .agents(None)
        .await?
        .into_iter()
        .map(|a| (a.id, a.tier))
        .collect();
    store.close().await;
    if json {
        return super::print_json(
            json!({"policy_version": proposed.version, "since": crate::clock::format_micros(from),
            "until": crate::clock::format_micros(now), "agents": replayed}),
        );
    }
    println!(
        "policy {} replayed from {} to {}",
        proposed.version,
        crate::clock::format_micros(from),
        crate::clock::format_micros(now)
    );
    println!(
        "{:<24} {:>5} {:>6} {:>9} {:>6}  why",
        "agent", "start", "now", "replayed", "score"
    );
    for r in &replayed {
        let now_tier = stood
            .iter()
            .find(|(id, _)| *id == r.agent)
            .map_or("?".to_string(), |(_, t)| t.to_string());
        let why = match r.moves.last() {
            Some(m) => format!(
                "{} move(s); last {}: {} → {} ({})",
                r.moves.len(),
                &m.at[..10],
                m.from,
                m.to,
                m.reason
            ),
            None => "no move".to_string(),
        };
        println!(
            "{:<24} {:>5} {:>6} {:>9} {:>6.3}  {why}",
            r.agent, r.from_tier, now_tier, r.tier, r.score
        );
        if let Some(next) = &r.next_promotion {
            let held: Vec<String> = next
                .gates
                .iter()
                .filter(|g| !g.met)
                .map(|g| format!("{} (needs {}, has {})", g.gate, g.needs, g.has))
                .collect();
            if !held.is_empty() {
                println!("{:<24} tier {} held by: {}", "", next.tier, held.join("; "));
            }
        }
    }
    Ok(())
}
