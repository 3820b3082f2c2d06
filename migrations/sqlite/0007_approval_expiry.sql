-- Whether approval.expired has been announced for a lapsed approval (once, by one replica).
ALTER TABLE approvals ADD COLUMN expiry_notified BIGINT NOT NULL DEFAULT 0;
