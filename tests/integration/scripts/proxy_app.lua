-- The broadcast demo's routes (handlers/broadcast.lua), with the default
-- same-origin check instead of accepting any page, and the client's address
-- (conn.remote, req.remote) shown: for test_proxy.py and test_nginx.py.
local wspush = require "wspush"

local ws = {}
function ws.open(conn)
  conn:subscribe("all")
  conn:send("remote " .. conn.remote)
end
function ws.on_message(conn, msg)
  if msg == "remote" then
    conn:send("remote " .. conn.remote)
  elseif msg == "proto" then
    conn:send("proto " .. tostring(conn.headers["x-forwarded-proto"]))
  else
    conn:send("new message :" .. msg)
  end
end

-- /slow: the same, with an upgrade that waits ?wait= seconds first.
local slow = { open = ws.open, on_message = ws.on_message }
function slow.upgrade(req)
  wspush.sleep(tonumber(req.query.wait) or 0)
  return true
end

return {
  ["/slow"] = slow,
  ["/"] = function() return "the page" end,
  ["/ws"] = ws,
  ["/index"] = function() return "Hello world" end,
  ["/remote"] = function(req) return req.remote end,
  ["/worker"] = function(req) return req.remote .. " " .. wspush.worker.id end,
  ["/receive"] = function(req)
    local msg = req.query.msg
    if not msg then return { error = "missing ?msg=" }, 400 end
    return { sent = wspush.publish("all", msg) }
  end,
}
