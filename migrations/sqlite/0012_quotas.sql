-- Quotas: each agent's count per quota, scope (`*` or a service) and fixed window, charged in
-- the decision's transaction with a compare-and-set on the limit; old windows are pruned.
CREATE TABLE quota_usage (
    agent_id      TEXT NOT NULL,
    quota         TEXT NOT NULL,
    scope         TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    used          BIGINT NOT NULL,
    PRIMARY KEY (agent_id, quota, scope, window_start)
);
CREATE INDEX quota_usage_window ON quota_usage(window_start);

-- An admin's per-agent limits (quota name → limit), over the tier's and the team's.
ALTER TABLE agents ADD COLUMN quota_overrides TEXT NOT NULL DEFAULT '{}';
