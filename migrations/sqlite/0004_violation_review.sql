-- A reviewer acknowledges a violation (POST /v1/violations/{id}/ack).
ALTER TABLE violations ADD COLUMN acknowledged_by TEXT;
ALTER TABLE violations ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE violations ADD COLUMN comment TEXT;
CREATE INDEX violations_status_id ON violations(status, id);
