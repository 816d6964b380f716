-- wrk script of benches/cluster/run.sh: a uniformly random key per request.
-- Settings come from the environment:
--   KEY_PATH  the request path up to the key number, e.g. /get?key=k or /v1/galaxies/bench/keys/k
--   KEYS      number of distinct keys (k0 .. k<KEYS-1>)
-- When done it prints one machine-readable line:
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B errors=E
local path = os.getenv("KEY_PATH") or "/get?key=k"
local keys = tonumber(os.getenv("KEYS") or "10000")

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919)
end

request = function()
  return wrk.format("GET", path .. math.random(0, keys - 1))
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
