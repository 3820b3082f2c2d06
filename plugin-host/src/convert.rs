//! Conversions between Warden's types (`warden_core`) and the WIT contract's generated ones,
//! in one place: the generated types never leave this crate.

use warden_core::decision::ChangeSummary;
use warden_core::plugin::{
    Classification, Finding, Judgement, JudgementVerdict, MetricWindow, PluginAction,
    RecentActivity,
};
use warden_core::policy::RiskLevel;
use warden_core::records::Baseline;

use warden_sdk as sdk;

use crate::runtime::bindings::types as wit;

impl From<RiskLevel> for wit::RiskLevel {
    fn from(l: RiskLevel) -> wit::RiskLevel {
        match l {
            RiskLevel::Low => wit::RiskLevel::Low,
            RiskLevel::Medium => wit::RiskLevel::Medium,
            RiskLevel::High => wit::RiskLevel::High,
            RiskLevel::Critical => wit::RiskLevel::Critical,
        }
    }
}

impl From<wit::RiskLevel> for RiskLevel {
    fn from(l: wit::RiskLevel) -> RiskLevel {
        match l {
            wit::RiskLevel::Low => RiskLevel::Low,
            wit::RiskLevel::Medium => RiskLevel::Medium,
            wit::RiskLevel::High => RiskLevel::High,
            wit::RiskLevel::Critical => RiskLevel::Critical,
        }
    }
}

impl From<ChangeSummary> for wit::ChangeSummary {
    fn from(c: ChangeSummary) -> wit::ChangeSummary {
        wit::ChangeSummary {
            files_changed: c.files_changed,
            lines_added: c.lines_added,
            lines_deleted: c.lines_deleted,
            paths: c.paths,
            breaking: c.breaking,
        }
    }
}

impl From<PluginAction> for wit::Action {
    fn from(a: PluginAction) -> wit::Action {
        wit::Action {
            agent: a.agent,
            team: a.team,
            class: a.class,
            environment: a.environment,
            service: a.service,
            resources: a.resources,
            change: a.change.map(Into::into),
            estimated_cost_usd: a.estimated_cost_usd,
            reasoning: a.reasoning,
            labels: a.labels,
            hour_of_week: a.hour_of_week,
            table_risk: a.table_risk.into(),
        }
    }
}

impl From<Baseline> for wit::Baseline {
    fn from(b: Baseline) -> wit::Baseline {
        wit::Baseline {
            team: b.team,
            service: b.service,
            class: b.class,
            environment: b.environment,
            sample_size: b.sample_size,
            warm: b.warm,
            rate_per_hour: b.rate_per_hour,
            change_size_median: b.change_size_median,
            change_size_mad: b.change_size_mad,
            hour_of_week_counts: b.hour_of_week_counts,
            seen_combinations: b.seen_combinations,
            targets_tracked: b.targets_tracked,
            targets_seen: b.targets_seen,
            humans: b.humans,
            organisation: b.organisation,
        }
    }
}

impl From<RecentActivity> for wit::Activity {
    fn from(a: RecentActivity) -> wit::Activity {
        wit::Activity {
            actions_last_hour: a.actions_last_hour,
            seen_combinations: a.seen_combinations,
        }
    }
}

impl From<MetricWindow> for wit::MetricWindow {
    fn from(w: MetricWindow) -> wit::MetricWindow {
        wit::MetricWindow {
            name: w.name,
            canary: w.canary,
            baseline: w.baseline,
            canary_errors: w.canary_errors,
            canary_total: w.canary_total,
            baseline_errors: w.baseline_errors,
            baseline_total: w.baseline_total,
            dry_run: w.dry_run,
        }
    }
}

impl From<wit::Classification> for Classification {
    fn from(c: wit::Classification) -> Classification {
        Classification {
            level: c.level.into(),
            score: c.score,
            categories: c.categories,
            reasons: c.reasons,
        }
    }
}

impl From<wit::Finding> for Finding {
    fn from(f: wit::Finding) -> Finding {
        Finding {
            detector: f.detector,
            severity: f.severity,
            p_value: f.p_value,
            message: f.message,
        }
    }
}

impl From<wit::JudgementVerdict> for JudgementVerdict {
    fn from(v: wit::JudgementVerdict) -> JudgementVerdict {
        match v {
            wit::JudgementVerdict::Successful => JudgementVerdict::Successful,
            wit::JudgementVerdict::Failed => JudgementVerdict::Failed,
            wit::JudgementVerdict::Inconclusive => JudgementVerdict::Inconclusive,
            wit::JudgementVerdict::Error => JudgementVerdict::Error,
        }
    }
}

impl From<wit::Judgement> for Judgement {
    fn from(j: wit::Judgement) -> Judgement {
        Judgement {
            verdict: j.verdict.into(),
            reasons: j.reasons,
        }
    }
}

// A fixture is written in the SDK's types: they become the contract's for `warden plugin test`.

impl From<sdk::RiskLevel> for wit::RiskLevel {
    fn from(l: sdk::RiskLevel) -> wit::RiskLevel {
        match l {
            sdk::RiskLevel::Low => wit::RiskLevel::Low,
            sdk::RiskLevel::Medium => wit::RiskLevel::Medium,
            sdk::RiskLevel::High => wit::RiskLevel::High,
            sdk::RiskLevel::Critical => wit::RiskLevel::Critical,
        }
    }
}

impl From<sdk::Action> for wit::Action {
    fn from(a: sdk::Action) -> wit::Action {
        let change = a.change.map(|c| ChangeSummary {
            files_changed: c.files_changed,
            lines_added: c.lines_added,
            lines_deleted: c.lines_deleted,
            paths: c.paths,
            breaking: c.breaking,
        });
        wit::Action {
            agent: a.agent,
            team: a.team,
            class: a.class,
            environment: a.environment,
            service: a.service,
            resources: a.resources,
            change: change.map(Into::into),
            estimated_cost_usd: a.estimated_cost_usd,
            reasoning: a.reasoning,
            labels: a.labels,
            hour_of_week: a.hour_of_week,
            table_risk: a.table_risk.into(),
        }
    }
}

impl From<sdk::Baseline> for wit::Baseline {
    fn from(b: sdk::Baseline) -> wit::Baseline {
        let b = Baseline {
            team: b.team,
            service: b.service,
            class: b.class,
            environment: b.environment,
            sample_size: b.sample_size,
            warm: b.warm,
            rate_per_hour: b.rate_per_hour,
            change_size_median: b.change_size_median,
            change_size_mad: b.change_size_mad,
            hour_of_week_counts: b.hour_of_week_counts,
            seen_combinations: b.seen_combinations,
            targets_tracked: b.targets_tracked,
            targets_seen: b.targets_seen,
            humans: b.humans,
            organisation: b.organisation,
            updated_at: 0,
        };
        b.into()
    }
}

impl From<sdk::Activity> for wit::Activity {
    fn from(a: sdk::Activity) -> wit::Activity {
        RecentActivity {
            actions_last_hour: a.actions_last_hour,
            seen_combinations: a.seen_combinations,
        }
        .into()
    }
}

impl From<sdk::MetricWindow> for wit::MetricWindow {
    fn from(w: sdk::MetricWindow) -> wit::MetricWindow {
        let w = MetricWindow {
            name: w.name,
            canary: w.canary,
            baseline: w.baseline,
            canary_errors: w.canary_errors,
            canary_total: w.canary_total,
            baseline_errors: w.baseline_errors,
            baseline_total: w.baseline_total,
            dry_run: w.dry_run,
        };
        w.into()
    }
}
