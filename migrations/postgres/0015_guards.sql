-- The watch over guarded actions: armed with the decision, judged by the rollback triggers as
-- signals arrive, closed once (clean, kept by a human, or rolled back) at or before its deadline.
CREATE TABLE guards (
    decision_id   TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    class         TEXT NOT NULL,
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    armed_at      BIGINT NOT NULL,
    deadline      BIGINT NOT NULL,
    status        TEXT NOT NULL,
    signals       BIGINT NOT NULL DEFAULT 0,
    errors        BIGINT NOT NULL DEFAULT 0,
    last_verdict  TEXT,
    review_id     TEXT,
    paged_at      BIGINT,
    closed_at     BIGINT
);
CREATE INDEX guards_due ON guards(status, deadline);
CREATE INDEX guards_review ON guards(review_id);
