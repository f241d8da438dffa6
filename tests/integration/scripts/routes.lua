-- Second test application: routing, pub/sub, timers, logging, control frames.
local wspush = require "wspush"

local testjson = require "testjson"
local enc, reply = testjson.encode, testjson.reply

local state = { isopen = nil, pongs = {}, closed_errors = 0 }

-- /room/:name (WebSocket with a capture)
local room = {}
function room.open(conn) conn:send("room:" .. tostring(conn.params.name)) end

-- /sub?topic=T (pub/sub)
local sub = {}
function sub.open(conn)
  if conn.query.topic then conn:subscribe(conn.query.topic) end
  conn:send("subscribed")
end
function sub.on_message(conn, msg)
  local cmd, arg = msg:match("^(%S+)%s*(.*)$")
  if cmd == "sub" then
    conn:subscribe(arg); conn:send("ok")
  elseif cmd == "unsub" then
    conn:unsubscribe(arg); conn:send("ok")
  elseif cmd == "topics" then
    local t = {}
    for _, name in ipairs(conn:topics()) do t[#t + 1] = name end
    table.sort(t)
    conn:send(enc(t))
  else
    conn:send("?")
  end
end

-- /ctl: timers, control frames, is_open, buffered
local ctl = {}
function ctl.on_message(conn, msg)
  if msg == "after" then
    wspush.after(0.05, function() conn:send("fired") end)
  elseif msg == "every" then
    local n = 0
    local h
    h = wspush.every(0.02, function()
      n = n + 1
      conn:send("tick" .. n)
      if n == 3 then h:stop(); conn:send("stopped") end
    end)
  elseif msg == "cancel" then
    local h = wspush.after(0.05, function() conn:send("should not fire") end)
    h:stop()
    wspush.after(0.15, function() conn:send("after cancel") end)
  elseif msg == "timer error" then
    wspush.after(0.01, function()
      error("timer went wrong") -- TIMER_RAISE_LINE
    end)
    wspush.after(0.05, function() conn:send("timers still work") end)
  elseif msg == "ping me" then
    conn:ping("hb")
  elseif msg == "log" then
    wspush.log("warn", "custom log line from lua 7f3a")
    conn:send("logged")
  elseif msg == "now" then
    local a = wspush.now()
    conn:send(enc({ now = a, type = type(a) }))
  elseif msg == "buffered" then
    -- nothing is queued yet; a send is queued until the handler returns (the
    -- write happens after it), so buffered() then counts its whole frame
    local before = conn:buffered()
    conn:send(string.rep("b", 1000))
    local after = conn:buffered()
    conn:send(enc({ before = before, after = after, type = math.type(before) }))
  elseif msg == "isopen" then
    local a = conn:is_open()
    conn:close(4002, "checked")
    state.isopen = { before = a, after = conn:is_open() }
  elseif msg == "bad utf8" then
    local ok, res, err = pcall(conn.send, conn, "\xff\xfe")
    conn:send(enc({ pcall_ok = ok, result = tostring(res), err = tostring(err) }))
  else
    conn:send("echo:" .. msg)
  end
end
function ctl.on_ping(conn, data) conn:send("got ping " .. data) end
function ctl.on_pong(conn, data) conn:send("got pong " .. data) end

-- /open_boom: raises in open
local open_boom = {}
function open_boom.open(conn)
  error("open exploded") -- OPEN_RAISE_LINE
end
function open_boom.on_message(conn, msg) conn:send("unreachable") end

-- /close_boom: raises in on_close
local close_boom = {}
function close_boom.open(conn) conn:send("hi") end
function close_boom.on_close(conn, code, reason)
  state.closed_errors = state.closed_errors + 1
  error("on_close exploded") -- CLOSE_RAISE_LINE
end

-- /spin: a handler that never returns
local spin = {}
function spin.on_message(conn, msg)
  if msg == "spin" then
    while true do end
  end
  conn:send("spun:" .. msg)
end

local function router(method, path)
  local name = path:match("^/dyn/([%w_]+)$")
  if not name then return nil end
  return function(req) return reply({ dyn = req.params.name, method = req.method }) end, { name = name }
end

return {
  ["/room/:name"] = room,
  ["/room/lobby"] = function(req) return "exact lobby" end,
  ["/items/:id"] = function(req) return reply({ route = "param", id = req.params.id }) end,
  ["/items/*rest"] = function(req) return reply({ route = "splat", rest = req.params.rest }) end,
  ["/items/special"] = function(req) return reply({ route = "exact" }) end,
  ["/files/*path"] = function(req) return reply({ path = req.params.path }) end,
  ["POST /things"] = function(req) return reply({ m = "post", body = req.body }) end,
  ["DELETE /things"] = function(req) return reply({ m = "delete" }) end,
  ["ANY /any"] = function(req) return reply({ m = req.method }) end,
  ["POST /form"] = function(req) return reply({ form = req.form or false }) end,
  ["POST /json"] = function(req) return reply({ json = req.json or false }) end,
  ["/headers"] = function(req)
    return reply({ a = req.headers["x-thing"], b = req.headers["X-THING"], remote = req.remote })
  end,
  ["*"] = router,

  ["/sub"] = sub,
  ["/ctl"] = ctl,
  ["/open_boom"] = open_boom,
  ["/close_boom"] = close_boom,
  ["/spin"] = spin,

  ["/publish"] = function(req)
    return reply({ sent = wspush.publish(req.query.topic, req.query.msg, req.query.binary == "1") })
  end,
  ["/state"] = function(req) return reply(state) end,
  ["/count"] = function(req) return reply({ count = wspush.count() }) end,
}
