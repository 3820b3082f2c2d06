-- Human approvals, each bound to the SHA-256 of the exact action it allows and usable once.
CREATE TABLE approvals (
    id                  TEXT PRIMARY KEY,
    decision_id         TEXT NOT NULL,
    agent_id            TEXT NOT NULL,
    on_behalf_of        TEXT,
    class               TEXT NOT NULL,
    environment         TEXT NOT NULL,
    service             TEXT NOT NULL,
    action_hash         TEXT NOT NULL,
    summary             TEXT NOT NULL,
    status              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    decided_by          TEXT,
    decided_at          BIGINT,
    comment             TEXT,
    consumed_by         TEXT,
    consumed_at         BIGINT
);
CREATE INDEX approvals_status_id ON approvals(status, id);
CREATE INDEX approvals_agent_id ON approvals(agent_id, id);
