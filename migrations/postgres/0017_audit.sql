-- The audit trail's query columns, each derived from the hashed record alone (the verifier
-- checks every stored copy against it).
ALTER TABLE audit_events ADD COLUMN service TEXT;
ALTER TABLE audit_events ADD COLUMN team TEXT;
ALTER TABLE audit_events ADD COLUMN verdict TEXT;
ALTER TABLE audit_events ADD COLUMN outcome TEXT;
ALTER TABLE audit_events ADD COLUMN risk TEXT;
ALTER TABLE audit_events ADD COLUMN on_behalf_of TEXT;

-- jsonb refuses an escaped NUL (which an agent's free text may hold): read records without.
CREATE FUNCTION warden_record(record TEXT) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT replace(record, '\u0000', '')::jsonb $$;
ALTER TABLE audit_events DISABLE TRIGGER audit_append_only;
UPDATE audit_events SET
    service = COALESCE(warden_record(record)->>'service',
        CASE WHEN left(warden_record(record)->>'target', 8) = 'service:'
             THEN substr(warden_record(record)->>'target', 9) END),
    team = warden_record(record)->>'team',
    verdict = CASE WHEN event_type = 'decision' THEN warden_record(record)->>'outcome' END,
    outcome = CASE WHEN event_type <> 'decision' THEN warden_record(record)->>'outcome' END,
    risk = warden_record(record)->>'risk',
    on_behalf_of = warden_record(record)->>'on_behalf_of';
ALTER TABLE audit_events ENABLE TRIGGER audit_append_only;

-- Every human a record names (acting, acted for, authorising, approving): `human=` and an
-- approver's view read this.
CREATE TABLE audit_people (
    human TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (human, seq)
);
INSERT INTO audit_people (human, seq)
    SELECT actor_id, seq FROM audit_events WHERE actor_kind IN ('human', 'admin')
    UNION SELECT on_behalf_of, seq FROM audit_events WHERE on_behalf_of IS NOT NULL
    UNION SELECT warden_record(record)->>'authorizing_human', seq FROM audit_events
        WHERE warden_record(record)->>'authorizing_human' IS NOT NULL
    UNION SELECT jsonb_array_elements_text(warden_record(record)->'approvers'), seq FROM audit_events
        WHERE jsonb_typeof(warden_record(record)->'approvers') = 'array'
ON CONFLICT DO NOTHING;

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
CREATE FUNCTION warden_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION warden_append_only();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION warden_append_only();

-- Retention: records up to `through_seq` were archived (with the checkpoint at that size)
-- and may be deleted; nothing after them may.
CREATE TABLE audit_retention (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    through_seq BIGINT NOT NULL,
    through_hash TEXT NOT NULL
);
INSERT INTO audit_retention (id, through_seq, through_hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT through_seq FROM audit_retention WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END; $$;
