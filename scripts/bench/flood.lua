-- wrk script: one agent asking for the same staging deploy as fast as it can (a runaway loop);
-- WARDEN_CLASS asks for another action class instead; WARDEN_APPROVAL presents that approval id.
-- Counts the answers by status: 200 (decided) and 429 (cut off for its rate limit).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WARDEN_TOKEN")
local approval = os.getenv("WARDEN_APPROVAL")
if approval == "" then approval = nil end
wrk.body = '{' .. (approval and ('"approval_id":"' .. approval .. '",') or '') .. '"action":{"class":"' .. (os.getenv("WARDEN_CLASS") or "deploy") .. '","environment":"staging","service":"payments","reasoning":"again"}}'

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  decided, refused, other = 0, 0, 0
end

response = function(status, headers, body)
  if status == 200 then
    decided = decided + 1
  elseif status == 429 then
    refused = refused + 1
  else
    other = other + 1
  end
end

done = function(summary, latency, requests)
  local d, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    d = d + t:get("decided")
    r = r + t:get("refused")
    o = o + t:get("other")
  end
  io.write(string.format("decided %d  refused (429) %d  other %d\n", d, r, o))
  io.write(string.format("p50 %.2f ms  p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
