-- Agents' records are most of the trail, so `actor_kind = 'agent'` does not narrow a query: a
-- page of them is a walk along `audit_at` (or the environment's, or the agent's index) that
-- finds a match nearly every step. Their entries in this index were a page written a batch for
-- no read that needed them. Humans', services' and Warden's own records, the few, keep it; the
-- store adds `actor_kind <> 'agent'` to a query for one of those kinds so the planner may use it.
DROP INDEX audit_actor_kind;
CREATE INDEX audit_actor_kind ON audit_events(actor_kind, at, seq) WHERE actor_kind <> 'agent';
