-- Test script for test_busypoll.py: an echo, and a timer armed by a message.
local wspush = require "wspush"

local ws = {}

function ws.on_message(conn, msg)
  if msg == "arm" then
    wspush.after(0.1, function() conn:send("fired") end)
  end
  conn:send("echo:" .. msg)
end

return { ["/ws"] = ws }
