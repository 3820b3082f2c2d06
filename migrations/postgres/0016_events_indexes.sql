-- Indexes on events cost every import: keep only what is asked of them.
-- Most events carry no decision id: index only those that do (`decision_id = $1` implies it is
-- not null, so lookups still use it).
DROP INDEX events_decision;
CREATE INDEX events_decision ON events(decision_id) WHERE decision_id IS NOT NULL;
-- An agent's recent activity of one kind is asked for at each decision; humans' events are only
-- ever scanned by time. The wide index was 40% of an import's insert time.
DROP INDEX events_actor_kind;
CREATE INDEX events_actor_kind ON events(actor_id, class, environment, service, at) WHERE actor_kind = 'agent';
-- Scans read chunks of seq; this bounds them to the period's seq (cheaper to keep than
-- (actor_kind, at), which nothing asks for any more).
DROP INDEX events_kind_at;
CREATE INDEX events_at ON events(at, seq);
