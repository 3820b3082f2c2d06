-- Every second, on every replica, the expiry sweep asks for pending approvals that lapsed and
-- whose expiry is not yet announced. Along `approvals_status_id` (or the primary key, which
-- PostgreSQL's planner takes for `ORDER BY id LIMIT`) that walked every pending approval,
-- lapsed or not: under load tens of thousands a second, 12-80 ms of the database's time each,
-- for none found. This index holds only the approvals the sweep is looking for, by expiry, and
-- the sweep walks it in that order (BENCHMARKS.md, 2026-12-06). An approval leaves it when it
-- is decided or its expiry is announced.
-- SQLite's planner prefers an equality on an index's first column to a range, so `status`
-- leads here too, or it keeps to `approvals_status_id`.
CREATE INDEX approvals_lapsing ON approvals(status, expires_at, id) WHERE status = 'pending' AND expiry_notified = 0;
