-- Benchmark (tests/bench/waiting.py): every upgrade asks an HTTP auth service
-- (WSPUSH_AUTH_URL) with wspush.fetch and puts its answer in conn.data.
local wspush = require "wspush"
local url = assert(os.getenv("WSPUSH_AUTH_URL"), "WSPUSH_AUTH_URL is not set")
local ws = { check_origin = function() return true end }
function ws.upgrade(req)
  local res, err = wspush.fetch(url, { headers = { Authorization = "Bearer t" }, timeout = 5 })
  if not res then return false, 503, nil, err end
  if res.status ~= 200 then return false, 401 end
  return { user = res.json.user }
end
function ws.open(conn) conn:send("Welcome") end
return { ["/ws"] = ws }
