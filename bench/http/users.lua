-- wrk script for the HTTP phase of bench/run. WRK_MODE: get (GET /users/{random id}), page
-- (GET /users?limit=50&after={random}) or post (POST /users with a unique email);
-- WRK_N: rows in the table; WRK_TAG: makes emails unique across runs. At the end it prints
-- one line "WRK_JSON {...}" with the counts and latency percentiles in microseconds.
local mode = os.getenv("WRK_MODE") or "get"
local n = tonumber(os.getenv("WRK_N") or "10000")
local tag = os.getenv("WRK_TAG") or "0"
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  math.randomseed(os.time() + 7919 * (thread_id or 0))
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  if mode == "get" then
    return wrk.format("GET", "/users/" .. math.random(1, n))
  elseif mode == "page" then
    return wrk.format("GET", "/users?limit=50&after=" .. math.random(0, n - 50))
  end
  counter = counter + 1
  local body = string.format('{"email":"http%s_%d_%d@Bench.Example","name":"HTTP User %d"}',
    tag, thread_id or 0, counter, counter)
  return wrk.format("POST", "/users", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
