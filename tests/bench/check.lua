-- wrk script: one permission check of 10 resources per request, about a
-- random user (the admin key may name any user). Env: IBL_KEY, IBL_USERS.
local users = tonumber(os.getenv("IBL_USERS") or "10000")

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/core/rbac/permissions/check/"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Api-Token " .. os.getenv("IBL_KEY")
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local m = math.random(0, 1999)
  local body = string.format('{"platform_key": "bench", "user_id": %d, "resources": ["/platforms/1/", "/platforms/1/mentors/", "/platforms/1/mentors/%d/", "/platforms/1/mentors/%d/documents/", "/platforms/1/mentors/%d/", "/platforms/1/mentors/%d/settings/", "/platforms/1/users/", "/platforms/1/groups/", "/platforms/1/policies/", "/platforms/1/credentials/"]}',
    math.random(2, users + 1), m, m, (m + 1) % 2000, m)
  return wrk.format(nil, nil, nil, body)
end
