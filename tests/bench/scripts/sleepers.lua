-- Benchmark (tests/bench/waiting.py): every connection's open() greets and
-- then waits in wspush.sleep for ten minutes, so each holds a waiting handler.
local wspush = require "wspush"
local ws = { check_origin = function() return true end }
function ws.open(conn)
  conn:send("Welcome")
  wspush.sleep(600)
end
return { ["/ws"] = ws }
