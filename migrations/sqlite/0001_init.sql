-- Warden schema, SQLite flavour. Times are Unix microseconds (UTC); JSON is stored as TEXT.
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tool        TEXT NOT NULL,
    model       TEXT NOT NULL,
    team        TEXT NOT NULL,
    sponsor     TEXT NOT NULL,
    tier        BIGINT NOT NULL CHECK (tier BETWEEN 0 AND 4),
    ceiling     BIGINT NOT NULL CHECK (ceiling BETWEEN 0 AND 4),
    parent      TEXT REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    shadow      BIGINT NOT NULL DEFAULT 0,
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CHECK (tier <= ceiling)
);
CREATE INDEX agents_team ON agents(team);

CREATE TABLE humans (
    id          TEXT PRIMARY KEY,
    team        TEXT NOT NULL,
    grants      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'service', 'agent')),
    subject     TEXT,
    note        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,
    at              BIGINT NOT NULL,
    agent_id        TEXT NOT NULL,
    on_behalf_of    TEXT,
    class           TEXT NOT NULL,
    environment     TEXT NOT NULL,
    service         TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    shadow_verdict  TEXT,
    risk_level      TEXT NOT NULL,
    tier            BIGINT NOT NULL,
    policy_version  TEXT NOT NULL,
    request         TEXT NOT NULL,
    answer          TEXT NOT NULL
);
CREATE INDEX decisions_agent_at ON decisions(agent_id, at);

CREATE TABLE violations (
    id           TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,
    decision_id  TEXT NOT NULL REFERENCES decisions(id),
    agent_id     TEXT NOT NULL,
    class        TEXT NOT NULL,
    environment  TEXT NOT NULL,
    service      TEXT NOT NULL,
    mode         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX violations_agent_at ON violations(agent_id, at);

-- Append-only, hash-chained. `record` is the canonical JSON the hash covers; the other columns
-- are copies for querying, and `warden audit verify` checks that they agree with it.
CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
    at            BIGINT NOT NULL,
    event_type    TEXT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    agent_id      TEXT,
    environment   TEXT,
    action_class  TEXT,
    decision_id   TEXT,
    record        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_at ON audit_events(at);
CREATE INDEX audit_agent ON audit_events(agent_id, seq);
CREATE INDEX audit_actor_kind ON audit_events(actor_kind, seq);
CREATE INDEX audit_decision ON audit_events(decision_id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- The chain's head: one row, locked by each writer batch so the chain stays linear across replicas.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
