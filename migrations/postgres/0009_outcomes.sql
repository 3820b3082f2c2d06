-- What happened after an allowed action (POST /v1/decisions/{id}/outcome) and when it was due;
-- an outcome not reported by its deadline is recorded as `unknown`.
ALTER TABLE decisions ADD COLUMN outcome_due_at BIGINT;
ALTER TABLE decisions ADD COLUMN outcome TEXT;
ALTER TABLE decisions ADD COLUMN outcome_at BIGINT;
ALTER TABLE decisions ADD COLUMN outcome_by TEXT;
ALTER TABLE decisions ADD COLUMN outcome_detail TEXT;
ALTER TABLE decisions ADD COLUMN actual_cost_usd DOUBLE PRECISION;
CREATE INDEX decisions_outcome_due ON decisions(outcome_due_at) WHERE outcome IS NULL;
