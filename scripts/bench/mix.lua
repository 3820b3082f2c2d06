-- The realistic mix of actions the HTTP benchmarks cycle through (allowed, needing approval,
-- denied): `dofile` returns the request bodies.
return {
  '{"action":{"class":"deploy","environment":"staging","service":"payments","reasoning":"roll out the retry fix","change":{"files_changed":4,"lines_added":120,"lines_deleted":30,"paths":["src/api.rs","src/db.rs"]}}}',
  '{"action":{"class":"docs_update","environment":"dev","service":"payments"}}',
  '{"action":{"class":"deploy","environment":"production","service":"payments","resources":["k8s/payments"]}}',
  '{"action":{"class":"config_change","environment":"staging","service":"orders","estimated_cost_usd":0.25}}',
  '{"action":{"class":"db_migration","environment":"production","service":"payments","reasoning":"add index"}}',
  '{"action":{"class":"read","environment":"production","service":"ledger"}}',
}
