-- Rights earned class by class: for each tier Warden promoted an agent into, the classes among
-- the tier's new rights it may use alone (JSON: {"3": ["deploy"]}); empty when humans set it.
ALTER TABLE agents ADD COLUMN earned_classes TEXT NOT NULL DEFAULT '{}';
-- Watched work: the decisions that used a human's approval, found from the approval.
CREATE INDEX approvals_consumed_by ON approvals(consumed_by);
-- Successes now weigh by who vouches for them (platform, service, the agent itself): rebuild the
-- running totals from the recorded evidence at the next start.
DELETE FROM trust_meta;
