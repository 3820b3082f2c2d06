-- The anomaly stage asks, on every decision, whether the agent was ever allowed this kind of
-- action. On (agent, kind, at) that was a walk through the agent's decisions of the kind until
-- an allowed one: for a kind it is never allowed (a production deploy that always waits for a
-- human), its whole history, every time. With the verdict before the time it is one seek; the
-- count of the last hour seeks each verdict's range instead of one.
DROP INDEX decisions_agent_kind_at;
CREATE INDEX decisions_agent_kind_verdict_at ON decisions(agent_id, class, environment, service, verdict, at);
