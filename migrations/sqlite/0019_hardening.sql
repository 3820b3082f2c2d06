-- Approvals taken out of every reader's way by an admin: a stored approval that no longer reads
-- back (or one an admin wants gone), kept here as its raw columns with who moved it and why.
CREATE TABLE quarantined_approvals (
    id              TEXT PRIMARY KEY,
    raw             TEXT NOT NULL,
    reason          TEXT NOT NULL,
    quarantined_by  TEXT NOT NULL,
    quarantined_at  BIGINT NOT NULL
);

-- Idempotent requests: per caller, route and Idempotency-Key, the hash of the first request and,
-- once answered, its answer; a retry within the window gets that answer and writes nothing.
-- status 0 is a request still in flight (a claim, taken over once stale).
CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    route         TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT NOT NULL DEFAULT 0,
    response      TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (principal, route, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys(expires_at);

-- Delegations: a human lets an agent act on their behalf, within a scope (JSON lists of
-- patterns; empty for all) and until a time, or until revoked.
CREATE TABLE delegations (
    id            TEXT PRIMARY KEY,
    human_id      TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    classes       TEXT NOT NULL,
    environments  TEXT NOT NULL,
    services      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT
);
CREATE INDEX delegations_human_agent ON delegations(human_id, agent_id, expires_at);
CREATE INDEX delegations_agent ON delegations(agent_id, expires_at);

-- The web UI's sessions: the cookie holds a random id, this its SHA-256; a session ends at its
-- expiry, on sign-out, or with the token it was opened with.
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,
    token_id    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX ui_sessions_expires ON ui_sessions(expires_at);
