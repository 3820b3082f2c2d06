-- The audit trail's query columns, each derived from the hashed record alone (the verifier
-- checks every stored copy against it).
ALTER TABLE audit_events ADD COLUMN service TEXT;
ALTER TABLE audit_events ADD COLUMN team TEXT;
ALTER TABLE audit_events ADD COLUMN verdict TEXT;
ALTER TABLE audit_events ADD COLUMN outcome TEXT;
ALTER TABLE audit_events ADD COLUMN risk TEXT;
ALTER TABLE audit_events ADD COLUMN on_behalf_of TEXT;

DROP TRIGGER audit_no_update;
UPDATE audit_events SET
    service = COALESCE(json_extract(record, '$.service'),
        CASE WHEN substr(json_extract(record, '$.target'), 1, 8) = 'service:'
             THEN substr(json_extract(record, '$.target'), 9) END),
    team = json_extract(record, '$.team'),
    verdict = CASE WHEN event_type = 'decision' THEN json_extract(record, '$.outcome') END,
    outcome = CASE WHEN event_type <> 'decision' THEN json_extract(record, '$.outcome') END,
    risk = json_extract(record, '$.risk'),
    on_behalf_of = json_extract(record, '$.on_behalf_of');
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Every human a record names (acting, acted for, authorising, approving): `human=` and an
-- approver's view read this.
CREATE TABLE audit_people (
    human TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (human, seq)
);
INSERT OR IGNORE INTO audit_people (human, seq)
    SELECT actor_id, seq FROM audit_events WHERE actor_kind IN ('human', 'admin')
    UNION SELECT on_behalf_of, seq FROM audit_events WHERE on_behalf_of IS NOT NULL
    UNION SELECT json_extract(record, '$.authorizing_human'), seq FROM audit_events
        WHERE json_extract(record, '$.authorizing_human') IS NOT NULL
    UNION SELECT j.value, a.seq FROM audit_events a, json_each(a.record, '$.approvers') j
        WHERE json_extract(a.record, '$.approvers') IS NOT NULL;

-- Pages run newest first (or oldest first) by (at, seq) within a time range: each index a
-- filter can lead with ends in (at, seq) so a page is a walk, not a sort.
DROP INDEX audit_at;
DROP INDEX audit_agent;
DROP INDEX audit_actor_kind;
CREATE INDEX audit_at ON audit_events(at, seq);
CREATE INDEX audit_agent ON audit_events(agent_id, at, seq);
CREATE INDEX audit_actor_kind ON audit_events(actor_kind, at, seq);
CREATE INDEX audit_environment ON audit_events(environment, at, seq);

-- The Merkle tree over the chain (leaf i = record i+1): signed checkpoints, each with the
-- tree's right edge so the next one starts from it, and the roots of its perfect subtrees
-- of 256 leaves and more, so proofs need at most 256 records read.
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    root       TEXT NOT NULL,
    chain_hash TEXT NOT NULL,
    frontier   TEXT NOT NULL,
    note       TEXT NOT NULL
);
-- The public key the checkpoints are signed with: the first replica's, which every other
-- replica's must equal (they share the key file).
CREATE TABLE audit_key (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    public_key TEXT NOT NULL
);
CREATE TABLE audit_nodes (
    size  BIGINT NOT NULL,
    start BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    PRIMARY KEY (size, start)
);
CREATE TRIGGER audit_checkpoints_fixed BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_kept BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_nodes_fixed BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END;
CREATE TRIGGER audit_nodes_kept BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END;

-- Retention: records up to `through_seq` were archived (with the checkpoint at that size)
-- and may be deleted; nothing after them may.
CREATE TABLE audit_retention (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    through_seq BIGINT NOT NULL,
    through_hash TEXT NOT NULL
);
INSERT INTO audit_retention (id, through_seq, through_hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT through_seq FROM audit_retention WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
