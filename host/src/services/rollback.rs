//! Automatic rollback (DESIGN.md, "After the action"): metric samples for an allowed action
//! (`POST /v1/decisions/{id}/signals`) are judged, with every sample received so far, by the
//! rollback-trigger plugins that see its class. A `failed` judgement requests a rollback once:
//! the decision is marked and `rollback.requested` goes to the webhooks in the same
//! transaction. `inconclusive` holds for a human; `error` (missing telemetry) never rolls back.
//! For a guarded action, the watch moves on with each judgement ([`crate::services::guards`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{Actor, AuditRecord};
use crate::decision::DecisionRequest;
use crate::error::{Error, Kind, Result};
use crate::identity::{Caller, Role};
use crate::plugin::{JudgementVerdict, MetricWindow, PluginAction, PluginReport};
use crate::plugins::PluginHost;
use crate::policy::CompiledPolicy;
use crate::records::{Event, EventAction, EventData};
use crate::services::notify::Outbox;
use crate::store::{Change, Conflict, OutcomeWrite, Store, Write};

/// `POST /v1/decisions/{id}/signals`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// One window per metric measured this time.
    pub windows: Vec<MetricWindow>,
}

/// The judgement after a batch of signals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignalsAnswer {
    /// The decision.
    pub decision_id: String,
    /// The worst of the triggers' verdicts.
    pub verdict: JudgementVerdict,
    /// Why, per trigger and metric.
    pub reasons: Vec<String>,
    /// Whether a rollback is (now or already) requested.
    pub rollback_requested: bool,
    /// Measurements judged: this batch's windows and the latest earlier ones within the sample budget.
    pub measurements: usize,
    /// Each trigger that ran.
    pub plugins: Vec<PluginReport>,
}

/// Samples judged at once, all batches together: about 200 KiB of plugin input, under the
/// default plugin limit, so a long watch keeps judging its latest measurements.
const JUDGED_SAMPLES: usize = 24_000;

/// Batches one decision may receive.
const MAX_BATCHES: i64 = 1_000;

fn samples(windows: &[MetricWindow]) -> usize {
    windows
        .iter()
        .map(|w| w.canary.len() + w.baseline.len())
        .sum()
}

fn check(signals: &Signals) -> Result<()> {
    if signals.windows.is_empty() || signals.windows.len() > 64 {
        return Err(Error::field("windows", "send 1 to 64 windows"));
    }
    if samples(&signals.windows) > JUDGED_SAMPLES {
        return Err(Error::field(
            "windows",
            format!(
                "{} samples in one batch, over the limit of {JUDGED_SAMPLES}",
                samples(&signals.windows)
            ),
        ));
    }
    for (i, w) in signals.windows.iter().enumerate() {
        let field = |f: &str| format!("windows[{i}].{f}");
        if w.name.is_empty() || w.name.len() > 128 {
            return Err(Error::field(field("name"), "must be 1 to 128 bytes"));
        }
        for (f, samples) in [("canary", &w.canary), ("baseline", &w.baseline)] {
            if samples.iter().any(|v| !v.is_finite()) {
                return Err(Error::field(field(f), "samples must be finite numbers"));
            }
        }
        if w.canary_errors > w.canary_total {
            return Err(Error::field(
                field("canary_errors"),
                "more errors than requests",
            ));
        }
        if w.baseline_errors > w.baseline_total {
            return Err(Error::field(
                field("baseline_errors"),
                "more errors than requests",
            ));
        }
    }
    Ok(())
}

/// What the signals endpoint needs.
pub struct Context<'a> {
    /// The store.
    pub store: &'a Store,
    /// The policy (for the plugins' view of the action).
    pub policy: &'a CompiledPolicy,
    /// The loaded plugins.
    pub plugins: &'a PluginHost,
    /// The outbox.
    pub outbox: &'a Outbox,
    /// The watch over guarded actions, which moves on with each judgement.
    pub watch: crate::services::guards::Watch<'a>,
    /// Now, Unix microseconds.
    pub now: i64,
}

/// Records a batch of signals for decision `id` and judges all received so far.
pub async fn receive(
    cx: Context<'_>,
    caller: &Caller,
    id: &str,
    signals: Signals,
) -> Result<SignalsAnswer> {
    caller.require(&[Role::Agent, Role::Service, Role::Admin])?;
    check(&signals)?;
    let unknown = || Error::not_found("unknown_decision", format!("no decision `{id}`"));
    let (agent_id, verdict, request, already) = cx
        .store
        .decision_for_signals(id)
        .await?
        .ok_or_else(unknown)?;
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(agent_id.as_str()) {
        return Err(unknown());
    }
    if verdict != "allow" {
        return Err(Error::new(
            Kind::Unprocessable,
            "decision_not_allowed",
            format!("decision `{id}` was `{verdict}`: nothing was done to watch"),
        ));
    }
    let request: DecisionRequest = serde_json::from_str(&request).map_err(Error::internal)?;
    let agent = cx.store.agent(&agent_id).await?.ok_or_else(|| {
        Error::internal(format!("agent `{agent_id}` of decision `{id}` is missing"))
    })?;
    let action = &request.action;
    let breaking = action.change.as_ref().is_some_and(|c| c.breaking);
    let table = cx
        .policy
        .table_risk(&action.class, &action.environment, breaking);
    // Rollback triggers judge metrics, not the hour: UTC is as good as any zone here.
    let plugin_view = PluginAction::new(action, &agent, table, cx.now, &jiff::tz::TimeZone::UTC);

    let batch = serde_json::to_string(&signals.windows).map_err(Error::internal)?;
    // The measurements judged: this batch and the latest earlier ones that fit the sample budget,
    // in the order they came (like an analysis run's most recent measurements).
    let (earlier, batches) = cx.store.signal_windows(id, 64).await?;
    if batches >= MAX_BATCHES {
        return Err(Error::new(
            Kind::Unprocessable,
            "signals_limit",
            format!("decision `{id}` has received {batches} batches of signals, the most one may"),
        ));
    }
    let mut budget = JUDGED_SAMPLES - samples(&signals.windows);
    let mut kept: Vec<Vec<MetricWindow>> = Vec::new();
    for json in earlier {
        let ws: Vec<MetricWindow> = serde_json::from_str(&json).map_err(Error::internal)?;
        let n = samples(&ws);
        if n > budget {
            break;
        }
        budget -= n;
        kept.push(ws);
    }
    let mut windows: Vec<MetricWindow> = kept.into_iter().rev().flatten().collect();
    windows.extend(signals.windows);
    let measurements = windows.len();
    let judged = cx
        .plugins
        .judge(&action.class, plugin_view, windows)
        .await
        .ok_or_else(|| {
            Error::new(
                Kind::Unprocessable,
                "no_rollback_trigger",
                format!(
                    "no rollback-trigger plugin judges `{}`; load one (docs/plugins.md)",
                    action.class
                ),
            )
        })?;

    let signal = Write::Outcome(OutcomeWrite::InsertSignal {
        id: uuid::Uuid::now_v7().to_string(),
        decision_id: id.to_string(),
        at: cx.now,
        windows: batch,
        verdict: judged.verdict.as_str().to_string(),
    });
    cx.store
        .commit(Change {
            writes: vec![signal],
            audit: vec![],
        })
        .await?;
    // Requesting the rollback is a change of its own, whose first write succeeds only once
    // (another batch may request it at the same moment): the batch above is kept either way.
    let mut request_now = false;
    if judged.verdict == JudgementVerdict::Failed && !already {
        let event = Event::new(
            cx.now,
            EventData::RollbackRequested {
                action: EventAction {
                    decision_id: id.to_string(),
                    agent: agent_id.clone(),
                    class: action.class.clone(),
                    environment: action.environment.clone(),
                    service: action.service.clone(),
                },
                reasons: judged.reasons.clone(),
            },
        );
        let mut writes = vec![Write::Outcome(OutcomeWrite::RequestRollback {
            decision_id: id.to_string(),
            at: cx.now,
        })];
        writes.extend(cx.outbox.writes(&event, cx.now));
        let actor = Actor::warden();
        let record = AuditRecord {
            agent: Some(agent_id.clone()),
            decision_id: Some(id.to_string()),
            action_class: Some(action.class.clone()),
            environment: Some(action.environment.clone()),
            outcome: Some("rollback_requested".into()),
            ..AuditRecord::change(
                actor,
                "rollback.requested",
                format!("service:{}", action.service),
                event.data.to_value(),
                cx.now,
            )
        };
        match cx
            .store
            .commit(Change {
                writes,
                audit: vec![record],
            })
            .await
        {
            Ok(()) => request_now = true,
            Err(e) if e.conflict() == Some(Conflict::RollbackRequested) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if request_now {
        cx.outbox.notify();
    }
    // The batch is stored and judged: the answer stands whatever the watch does next (its
    // sweep catches up on what fails here).
    if let Err(e) = cx.watch.judged(id, judged.verdict, &judged.reasons).await {
        tracing::warn!(decision = %id, error = %e.message, "the watch could not move on after a judgement");
    }
    Ok(SignalsAnswer {
        decision_id: id.to_string(),
        verdict: judged.verdict,
        reasons: judged.reasons,
        rollback_requested: already || judged.verdict == JudgementVerdict::Failed,
        measurements,
        plugins: judged.reports,
    })
}
