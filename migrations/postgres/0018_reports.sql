-- Weekly behaviour reports: the week-long reads a report makes, by time, and the reports kept
-- once made (one per ISO week and scope; the first replica to keep one announces it).
CREATE INDEX decisions_at ON decisions(at);
CREATE INDEX approvals_created ON approvals(created_at);
CREATE INDEX violations_at ON violations(at);
CREATE INDEX tier_changes_at ON tier_changes(at);
CREATE INDEX trust_daily_day ON trust_daily(day);

CREATE TABLE weekly_reports (
    week          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    generated_at  BIGINT NOT NULL,
    report        TEXT NOT NULL,
    PRIMARY KEY (week, scope)
);
