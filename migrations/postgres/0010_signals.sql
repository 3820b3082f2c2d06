-- Metric samples for allowed actions (POST /v1/decisions/{id}/signals), judged by the
-- rollback-trigger plugins; a failed judgement requests a rollback once.
CREATE TABLE signals (
    id           TEXT PRIMARY KEY,
    decision_id  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    windows      TEXT NOT NULL,
    verdict      TEXT NOT NULL
);
CREATE INDEX signals_decision ON signals(decision_id, id);
ALTER TABLE decisions ADD COLUMN rollback_requested_at BIGINT;
