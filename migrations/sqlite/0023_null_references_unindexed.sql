-- An approval request is created unconsumed, and a watch is armed before any human review of
-- it: each was an entry of these indexes at their NULL end, away from the other new entries,
-- so one more index page written a batch for entries no read ever looks up. Readers ask
-- `consumed_by = ...` and `review_id = $1`, which imply NOT NULL, so they still use the indexes.
-- A row enters them once it is consumed or reviewed.
DROP INDEX approvals_consumed_by;
CREATE INDEX approvals_consumed_by ON approvals(consumed_by) WHERE consumed_by IS NOT NULL;
DROP INDEX guards_review;
CREATE INDEX guards_review ON guards(review_id) WHERE review_id IS NOT NULL;
