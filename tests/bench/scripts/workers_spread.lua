-- Connection-spread script for tests/bench/workers.py (run with --workers N). Every connection
-- on /ws is greeted with "w<worker id> <open connections of this worker>", so the client knows
-- which worker holds it; GET /who answers the same as JSON, for a query over fresh HTTP
-- connections. It subscribes to nothing: the connections stay idle.
local wspush = require "wspush"

local function worker() return wspush.worker and wspush.worker.id or 1 end

return {
  ["/ws"] = {
    check_origin = function() return true end,
    open = function(conn) conn:send("w" .. worker() .. " " .. wspush.count()) end,
  },
  ["/who"] = function()
    return { worker = worker(), workers = wspush.worker and wspush.worker.count or 1,
             count = wspush.count() }
  end,
}
