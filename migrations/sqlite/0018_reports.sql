-- Weekly behaviour reports: the week-long reads a report makes, by time, and the reports kept
-- once made (one per ISO week and scope; the first replica to keep one announces it).
CREATE INDEX decisions_at ON decisions(at);

-- Decisions whose answer holds what a report lists (an anomaly finding, a failed plugin call, a
-- quota denial): the report reads only their answers. Older rows are marked by their text once.
ALTER TABLE decisions ADD COLUMN notable BIGINT NOT NULL DEFAULT 0;
UPDATE decisions SET notable = 1
WHERE answer LIKE '%"failure_policy"%' OR answer LIKE '%"findings":[{%' OR answer LIKE '%"code":"quota_exceeded"%';
CREATE INDEX decisions_notable ON decisions(at) WHERE notable <> 0;
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
