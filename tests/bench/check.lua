-- wrk script: one permission check of 10 resources per request, about a
-- random user (the admin key may name any user). Env: IBL_KEY, IBL_USERS.
-- The requests are drawn up front (4,096 per thread, each a random user and
-- mentors) and sent in turn, so the load generator spends its CPU on
-- sending, not on formatting strings in Lua.
local users = tonumber(os.getenv("IBL_USERS") or "10000")
local pool = {}
local next_request = 1

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Api-Token " .. os.getenv("IBL_KEY"),
  }
  for i = 1, 4096 do
    local m = math.random(0, 1999)
    local body = string.format('{"platform_key": "bench", "user_id": %d, "resources": ["/platforms/1/", "/platforms/1/mentors/", "/platforms/1/mentors/%d/", "/platforms/1/mentors/%d/documents/", "/platforms/1/mentors/%d/", "/platforms/1/mentors/%d/settings/", "/platforms/1/users/", "/platforms/1/groups/", "/platforms/1/policies/", "/platforms/1/credentials/"]}',
      math.random(2, users + 1), m, m, (m + 1) % 2000, m)
    pool[i] = wrk.format("POST", "/api/core/rbac/permissions/check/", headers, body)
  end
end

function request()
  local r = pool[next_request]
  next_request = next_request % #pool + 1
  return r
end
