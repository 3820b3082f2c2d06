-- wrk script: agents working normally. Each connection paces itself (WARDEN_PACE_MS between
-- requests) and cycles through the agents' tokens (WARDEN_TOKENS, comma-separated) and
-- bench-http's mix of actions, so the load is a steady rate, not as fast as possible.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local tokens = {}
for t in string.gmatch(os.getenv("WARDEN_TOKENS"), "[^,]+") do
  tokens[#tokens + 1] = t
end
local pace = tonumber(os.getenv("WARDEN_PACE_MS") or "10")

local bodies = dofile("scripts/bench/mix.lua")
local i = 0

request = function()
  i = i + 1
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] }
  return wrk.format(nil, nil, headers, bodies[(i % #bodies) + 1])
end

delay = function()
  return pace
end

done = dofile("scripts/bench/report.lua")
