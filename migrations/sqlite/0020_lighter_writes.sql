-- Decisions that owe no outcome (denials, reads, approvals pending) are no longer entries of the
-- sweeper's index: one index entry fewer for each of them on the writer's path. The sweeper's
-- `outcome_due_at <= $1` implies the column is not null, so it still uses the index.
DROP INDEX decisions_outcome_due;
CREATE INDEX decisions_outcome_due ON decisions(outcome_due_at) WHERE outcome IS NULL AND outcome_due_at IS NOT NULL;
