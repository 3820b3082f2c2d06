-- Most events carry no decision id: index only those that do (one index insert fewer per
-- imported event; `decision_id = $1` implies it is not null, so lookups still use it).
DROP INDEX events_decision;
CREATE INDEX events_decision ON events(decision_id) WHERE decision_id IS NOT NULL;
