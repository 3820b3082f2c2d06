-- The trust engine's running totals: per agent, environment, risk and kind of evidence, the
-- exponentially forgotten amount as of `as_of` and the raw count. Kept up to date in the
-- transaction that records the evidence, so reading a score costs a few rows however long the
-- history. `trust_meta` holds the half-life they were computed with: when it is missing or
-- differs from the configured one, Warden rebuilds the totals from the evidence at start.
CREATE TABLE trust_totals (
    agent_id     TEXT NOT NULL,
    environment  TEXT NOT NULL,
    risk_level   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    amount       DOUBLE PRECISION NOT NULL,
    as_of        BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (agent_id, environment, risk_level, kind)
);
CREATE TABLE trust_meta (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    half_life_us  DOUBLE PRECISION NOT NULL
);

-- The tier controller's state on the agent: pinned by an admin, in its tier since, its last
-- score (for decision answers), no promotion before (cool-down), and its last hard trigger.
ALTER TABLE agents ADD COLUMN pinned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN tier_since BIGINT;
ALTER TABLE agents ADD COLUMN trust_score DOUBLE PRECISION;
ALTER TABLE agents ADD COLUMN hold_until BIGINT;
ALTER TABLE agents ADD COLUMN last_hard_at BIGINT;

-- Every tier change (and suspension by the controller), with its reason and evidence.
CREATE TABLE tier_changes (
    id         TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    from_tier  BIGINT NOT NULL,
    to_tier    BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    text       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    score      DOUBLE PRECISION,
    evidence   TEXT NOT NULL
);
CREATE INDEX tier_changes_agent ON tier_changes(agent_id, at);

-- An agent's score and tier, the last of each day (trust history).
CREATE TABLE trust_daily (
    agent_id  TEXT NOT NULL,
    day       BIGINT NOT NULL,
    score     DOUBLE PRECISION NOT NULL,
    tier      BIGINT NOT NULL,
    PRIMARY KEY (agent_id, day)
);

-- Recent outcomes per agent (error budget, spread of successes).
CREATE INDEX decisions_agent_outcome ON decisions(agent_id, outcome_at) WHERE outcome IS NOT NULL;
