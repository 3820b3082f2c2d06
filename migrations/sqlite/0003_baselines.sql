-- Human baselines per team, service, action class and environment: the anomaly detectors'
-- reference, computed from human activity and read when an anomaly detector sees a decision.
CREATE TABLE baselines (
    team         TEXT NOT NULL,
    service      TEXT NOT NULL,
    class        TEXT NOT NULL,
    environment  TEXT NOT NULL,
    record       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (team, service, class, environment)
);

-- The agent's own recent activity of one kind (actions in the last hour, done before).
CREATE INDEX decisions_agent_kind_at ON decisions(agent_id, class, environment, service, at);
