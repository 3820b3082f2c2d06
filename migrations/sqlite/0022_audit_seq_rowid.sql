-- `seq BIGINT PRIMARY KEY` is not SQLite's rowid: the table had a rowid of its own and a unique
-- index from seq to it, so every audit record wrote one B-tree more than it needed and every
-- read by seq went through that index first. `INTEGER PRIMARY KEY` makes seq the rowid. SQLite
-- cannot change a primary key in place, so the table is rebuilt once: its records are copied
-- in seq order (the same rows, the same columns in the same order), then its indexes and the
-- append-only triggers are made again as 0001 and 0017 left them. Nothing references the table
-- by a foreign key, and no view reads it. On an existing trail this takes a while and needs
-- free disk for a second copy (docs/audit.md, "Upgrading").
CREATE TABLE audit_events_rowid (
    seq           INTEGER PRIMARY KEY,
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
    hash          TEXT NOT NULL,
    service       TEXT,
    team          TEXT,
    verdict       TEXT,
    outcome       TEXT,
    risk          TEXT,
    on_behalf_of  TEXT
);
INSERT INTO audit_events_rowid (seq, at, event_type, actor_kind, actor_id, agent_id, environment,
    action_class, decision_id, record, prev_hash, hash, service, team, verdict, outcome, risk,
    on_behalf_of)
SELECT seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class,
    decision_id, record, prev_hash, hash, service, team, verdict, outcome, risk, on_behalf_of
FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_rowid RENAME TO audit_events;

CREATE INDEX audit_decision ON audit_events(decision_id);
CREATE INDEX audit_at ON audit_events(at, seq);
CREATE INDEX audit_agent ON audit_events(agent_id, at, seq);
CREATE INDEX audit_actor_kind ON audit_events(actor_kind, at, seq);
CREATE INDEX audit_environment ON audit_events(environment, at, seq);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT through_seq FROM audit_retention WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
