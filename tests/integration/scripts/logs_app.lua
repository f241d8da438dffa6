-- For test_logging.py: an echo route, and a route that writes many log
-- records at once (a chatty handler, or a log that cannot keep up).
local wspush = require "wspush"

local ws = {}

function ws.check_origin(origin) return origin == nil or origin == "http://good.example" end

function ws.on_message(conn, msg) conn:send(msg) end

function ws.on_close(conn, code, reason) end

return {
  ["/ws"] = ws,
  -- ?n= records of ?size= bytes each: "spam <i> xxxx..."
  ["/spam"] = function(req)
    local n = tonumber(req.query.n) or 1
    local line = string.rep("x", tonumber(req.query.size) or 100)
    for i = 1, n do wspush.log("info", "spam " .. i .. " " .. line) end
    return "logged " .. n
  end,
  ["/say"] = function(req)
    wspush.log("warn", req.query.msg or "")
    return "said"
  end,
  ["/index"] = function(req) return "Hello world" end,
}
