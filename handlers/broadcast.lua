-- The default demo: echo, plus a server push to everyone.
--   wspush handlers/broadcast.lua, open http://localhost:8000/, then
--   curl 'localhost:8000/receive?msg=hello'    -> every open page gets "hello"
local wspush = require "wspush"

local ws = {}

-- Like the original demo, accept any origin. Remove this function to let
-- the server refuse pages from other sites (its default).
function ws.check_origin(origin) return true end

function ws.open(conn)
  conn:subscribe("all") -- the server keeps the set of subscribers for us
  conn:send("Welcome")
end

function ws.on_message(conn, msg) conn:send("new message :" .. msg) end

-- Prometheus metrics (README, "Metrics"), for a scraper on this machine
-- only: anyone else gets 404. Behind a proxy on this machine every request
-- comes from 127.0.0.1: block /metrics in the proxy too.
local function metrics(req)
  local from_here = req.remote:match("^127%.") or req.remote:match("^%[::1%]:")
  if not from_here then return "Not Found", 404 end
  return wspush.metrics.render(), 200, { ["Content-Type"] = wspush.metrics.content_type }
end

return {
  ["/"] = wspush.static("../examples"), -- serves examples/index.html
  ["/ws"] = ws,
  ["/index"] = function() return "Hello world" end,
  ["/metrics"] = metrics,
  ["/receive"] = function(req)
    local msg = req.query.msg
    if not msg then return { error = "missing ?msg=" }, 400 end
    local sent, err = wspush.publish("all", msg) -- how many clients of this process got it
    if wspush.worker.count == 1 and not wspush.broker_status() then return { sent = sent } end
    -- With --workers or --broker, the other workers and nodes deliver it
    -- too, on their own: only this process's count is known now. err says
    -- when the broker could not take it (the other nodes will not get it).
    return { sent_here = sent, worker = wspush.worker.id, workers = wspush.worker.count,
             broker = err }
  end,
}
