-- Activity done outside Warden by humans and agents (POST /v1/events, imports, the GitHub and
-- Kubernetes receivers): stored once per (source, source_id), so redeliveries are no-ops.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    team         TEXT NOT NULL,
    class        TEXT NOT NULL,
    environment  TEXT NOT NULL,
    service      TEXT NOT NULL,
    targets      TEXT NOT NULL,
    change_size  BIGINT,
    at           BIGINT NOT NULL,
    outcome      TEXT,
    decision_id  TEXT,
    received_at  BIGINT NOT NULL,
    UNIQUE (source, source_id)
);
-- Baselines read humans' events by time; an agent's recent activity reads its own.
CREATE INDEX events_kind_at ON events(actor_kind, at);
CREATE INDEX events_actor_kind ON events(actor_id, class, environment, service, at);
CREATE INDEX events_decision ON events(decision_id);

-- Baselines are versioned: every recompute is a run with its time range and row counts, and
-- its baselines per team, service and class (the per-environment table had no writer).
DROP TABLE baselines;
CREATE TABLE baseline_runs (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    computed_at  BIGINT NOT NULL,
    range_from   BIGINT NOT NULL,
    range_to     BIGINT NOT NULL,
    events       BIGINT NOT NULL,
    baselines    BIGINT NOT NULL,
    time_zone    TEXT NOT NULL
);
CREATE TABLE baselines (
    version      BIGINT NOT NULL,
    team         TEXT NOT NULL,
    service      TEXT NOT NULL,
    class        TEXT NOT NULL,
    record       TEXT NOT NULL,
    PRIMARY KEY (version, team, service, class)
);

-- Each agent's drift from its team's humans, one row per agent and day.
CREATE TABLE drift (
    agent_id     TEXT NOT NULL,
    day          TEXT NOT NULL,
    record       TEXT NOT NULL,
    computed_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, day)
);

-- What the platform said about an allowed action's outcome: `confirmed` (the same as the
-- agent's report, or the platform's own report) or `contradicted`, and which delivery said it.
ALTER TABLE decisions ADD COLUMN outcome_confirmation TEXT;
ALTER TABLE decisions ADD COLUMN outcome_confirmed_by TEXT;
ALTER TABLE decisions ADD COLUMN outcome_confirmed_at BIGINT;

-- When a severe anomaly was confirmed (a human marked its finding real, or the action failed):
-- it is trust evidence once.
ALTER TABLE decisions ADD COLUMN anomaly_confirmed_at BIGINT;
