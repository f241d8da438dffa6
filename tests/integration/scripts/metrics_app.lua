-- For test_metrics.py: the built-in figures and the script's own, scraped
-- from /metrics (whichever worker answers: X-Worker says which).
local wspush = require "wspush"
local metrics = wspush.metrics

local hits = metrics.counter("app_hits_total", "Hits by kind.", { "kind" })
local rooms = metrics.gauge("app_rooms", "Rooms open (each worker's, summed).")
local sizes = metrics.histogram("app_size_bytes", "Message sizes.", { 1, 4, 16 })

local ws = {}
function ws.open(conn) conn:subscribe("all") end
function ws.on_message(conn, msg)
  sizes:observe(#msg)
  conn:send(msg)
end

return {
  ["/ws"] = ws,
  ["/hooked"] = { upgrade = function() return false end },
  ["/metrics"] = function()
    return metrics.render(), 200, { ["Content-Type"] = metrics.content_type,
                                    ["X-Worker"] = tostring(wspush.worker.id) }
  end,
  ["/publish"] = function(req)
    return { sent_here = wspush.publish("all", req.query.msg or "x"), worker = wspush.worker.id }
  end,
  -- ?kind= one hit; ?rooms= this worker's rooms
  ["/hit"] = function(req)
    hits:labels(req.query.kind or "none"):inc()
    if req.query.rooms then rooms:set(tonumber(req.query.rooms)) end
    return { worker = wspush.worker.id }
  end,
  ["/boom"] = function() error("boom") end,
  ["/spin"] = function() while true do end end,
}
