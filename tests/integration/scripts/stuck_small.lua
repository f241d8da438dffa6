-- Many small messages for a subscriber that never reads (test_liveness.py):
-- /sub subscribes to "t"; every message on /pub is published to "t" and
-- also sent to each subscriber directly; "sync" is answered on /pub, once
-- everything sent before it on /pub has been handled.
local wspush = require "wspush"
local subs = {}

return {
  ["/sub"] = {
    open = function(conn)
      conn:subscribe("t")
      subs[conn.id] = conn
      conn:send("ready")
    end,
    on_close = function(conn) subs[conn.id] = nil end,
  },
  ["/pub"] = {
    on_message = function(conn, msg)
      if msg == "sync" then return conn:send("synced") end
      wspush.publish("t", msg)
      for _, c in pairs(subs) do c:send(msg) end
    end,
  },
}
