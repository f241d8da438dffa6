-- For test_workers.py: a server run with --workers N. Every route says which
-- worker answered, so a test can tell how connections and requests spread.
local wspush = require "wspush"

local VERSION = "v1" -- test_workers.py rewrites this line to test reloads

local ws = {}

function ws.open(conn)
  conn:subscribe("all")
  -- the first message of every connection: who serves it
  conn:send({ hello = VERSION, worker = wspush.worker.id, id = conn.id })
end

function ws.on_message(conn, msg)
  conn:send(VERSION .. ":" .. wspush.worker.id .. ":" .. msg)
end

wspush.on_shutdown(function()
  wspush.log("info", "on_shutdown ran in worker " .. wspush.worker.id .. " of "
    .. wspush.worker.count .. " with " .. wspush.count() .. " connections")
end)

return {
  ["/ws"] = ws,
  -- publish ?msg= to every /ws client of every worker
  ["/publish"] = function(req)
    local msg = req.query.msg
    if not msg then return { error = "missing ?msg=" }, 400 end
    return { sent_here = wspush.publish("all", msg), worker = wspush.worker.id }
  end,
  ["/who"] = function()
    return { worker = wspush.worker.id, workers = wspush.worker.count, version = VERSION,
             count = wspush.count(), count_all = wspush.count_all() }
  end,
  -- one long record of two lines: ?n= x's, a newline, ?n= y's
  ["/biglog"] = function(req)
    local n = tonumber(req.query.n) or 3000
    wspush.log("info", string.rep("x", n) .. "\n" .. string.rep("y", n))
    return { worker = wspush.worker.id }
  end,
}
