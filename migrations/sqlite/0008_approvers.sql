-- Several distinct approvers for the classes the policy names (approvers_required).
ALTER TABLE approvals ADD COLUMN approvals_needed BIGINT NOT NULL DEFAULT 1;
ALTER TABLE approvals ADD COLUMN approved_by TEXT NOT NULL DEFAULT '[]';
