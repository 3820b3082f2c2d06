-- A tier review counts an agent's blocked violations and finds its latest; walking the agent's
-- violations by time, it stepped over every flagged and guarded one on the way, so an agent
-- whose class is in `flag` mode made each review read all its violations. With the mode in the
-- index the review reads only blocked ones. The same number of index entries a violation.
DROP INDEX violations_agent_at;
CREATE INDEX violations_agent_mode_at ON violations(agent_id, mode, at);
