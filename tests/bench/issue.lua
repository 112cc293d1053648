-- wrk script: issue one assertion per request, each to a new recipient.
-- Needs env IBL_KEY (an API key) and IBL_PATH (the credential's assertions path).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Api-Token " .. os.getenv("IBL_KEY")
end

function request()
  counter = counter + 1
  local body = string.format('{"recipient": {"email": "learner-%d-%d@example.com"}}', thread_id, counter)
  return wrk.format(nil, os.getenv("IBL_PATH"), nil, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("issued_ok=%d non2xx=%d\n", summary.requests - non2xx, non2xx))
end
