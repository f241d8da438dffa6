-- Fan-out benchmark script for wsbench (tests/bench/run.sh). Every connection on /ws joins the
-- topic "all" and is greeted with "Welcome"; a message from a connection on /pub (the
-- benchmark's publisher, which subscribes to nothing) is published to every subscriber. A
-- message sent on /ws is published too, so a browser tab can play publisher as well.
local wspush = require "wspush"

local function publish(conn, msg, is_binary) wspush.publish("all", msg, is_binary) end

return {
  ["/ws"] = {
    check_origin = function() return true end,
    open = function(conn)
      conn:subscribe("all")
      conn:send("Welcome")
    end,
    on_message = publish,
  },
  ["/pub"] = {
    check_origin = function() return true end,
    on_message = publish,
  },
}
