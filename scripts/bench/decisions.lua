-- wrk script: POST /v1/decisions with an agent's token, cycling through a realistic mix of
-- actions (allowed, needing approval, denied).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WARDEN_TOKEN")

local bodies = dofile("scripts/bench/mix.lua")
local i = 0

request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end

done = dofile("scripts/bench/report.lua")
