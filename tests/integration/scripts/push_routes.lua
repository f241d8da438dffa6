-- Test script for test_routing.py: pattern/method/exact/catch-all routes,
-- request decoding, custom status and headers, sending to a connection by id,
-- and timers (wspush.after / wspush.every) started from HTTP routes.
local wspush = require "wspush"

local function show(req, extra)
  local out = {
    method = req.method, path = req.path, params = req.params, query = req.query,
    form = req.form, json = req.json, body = req.body,
  }
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- WebSocket on a pattern: reports its captures.
local room = {}
function room.open(conn)
  conn:send({ kind = "room", name = conn.params.name, first = conn.params[1],
              id = conn.id, query = conn.query })
end

-- A plain WebSocket endpoint that timers and HTTP routes push to by id.
local client = {}
function client.open(conn) conn:send("id " .. conn.id) end
function client.on_message(conn, msg)
  local id, text = msg:match("^tell (%d+) (.*)$") -- another connection's handler sends
  if id then
    local other = wspush.get(tonumber(id))
    return conn:send(other and other:send("from " .. conn.id .. ": " .. text) and "told" or "nobody")
  end
  conn:send("echo " .. msg)
end

local timers = {}     -- name -> handle
local held = nil      -- state of /timer/hold
local function target(req)
  local id = tonumber(req.query.id)
  return id and wspush.get(id)
end

return {
  ["/room/:name"] = room,
  ["POST /room/:name"] = function(req) return show(req, { name = req.params.name }) end,
  ["/page/:name"] = function(req) return show(req, { name = req.params.name }) end,
  ["/files/*rest"] = function(req) return show(req, { rest = req.params.rest }) end,
  ["/a/:x/b/:y"] = function(req) return show(req) end,

  -- method routes
  ["POST /items"] = function(req) return show(req, { made = true }), 201 end,
  ["POST /caught"] = function() return "post caught" end,
  ["DELETE /items"] = function(req) return "deleted" end,
  ["ANY /any"] = function(req) return req.method end,

  -- exact beats pattern
  ["/items/special"] = function() return "exact" end,
  ["/items/:id"] = function(req) return "pattern " .. req.params.id end,

  -- bodies and queries
  ["ANY /echo"] = function(req) return show(req) end,

  -- status + headers
  ["/teapot"] = function()
    return "short and stout", 418, { ["X-Tea"] = "earl grey", ["Content-Type"] = "text/x-tea", ["X-Count"] = 3 }
  end,
  ["/nocontent"] = function() return nil, 204, { ["X-Empty"] = "yes" } end,

  -- catch-all: a router written in Lua
  ["*"] = function(method, path)
    local name = path:match("^/dyn/([^/]+)$")
    if name then
      return function(req) return show(req, { routed_by = "catch-all", m = method }) end, { name = name }
    end
    if path == "/dyn-ws" then return client end
    if path == "/caught" then return function() return "caught " .. method end end
    return nil
  end,

  ["/client"] = client,

  -- any code may send to any connection: HTTP -> connection by id
  ["/send"] = function(req)
    local conn = target(req)
    if not conn then return { sent = false }, 404 end
    local ok, err = conn:send(req.query.msg or "")
    return { sent = ok == true, err = err }
  end,
  ["/count"] = function() return { count = wspush.count() } end,

  -- timers
  ["/timer/every"] = function(req)
    local conn, name, n = target(req), req.query.name, 0
    if not conn then return "no such connection", 404 end
    timers[name] = wspush.every(tonumber(req.query.interval), function()
      n = n + 1
      local c = wspush.get(conn.id)
      if c then c:send("tick " .. name .. " " .. n) end
    end)
    return "started"
  end,
  ["/timer/stop"] = function(req)
    local conn, name = target(req), req.query.name
    timers[name]:stop()
    timers[name] = nil
    conn:send("stopped " .. name) -- anything after this from the timer is a bug
    return "stopped"
  end,
  ["/timer/after"] = function(req)
    local conn = target(req)
    local t0 = wspush.now()
    wspush.after(tonumber(req.query.delay), function()
      conn:send(string.format("after %s %.3f", req.query.tag, wspush.now() - t0))
    end)
    return "scheduled"
  end,
  ["/timer/cancelled"] = function(req)
    local conn = target(req)
    local h = wspush.after(tonumber(req.query.delay), function() conn:send("cancelled timer fired") end)
    h:stop()
    return "cancelled"
  end,
  ["/timer/selfstop"] = function(req)
    local conn, n, h = target(req), 0, nil
    h = wspush.every(0.005, function()
      n = n + 1
      conn:send("self " .. n)
      if n == 3 then
        h:stop()
        h:stop() -- twice is harmless
        conn:send("self-stopped")
      end
    end)
    return "started"
  end,
  ["/timer/stop-fired"] = function(req)
    -- :stop() on a one-shot timer that already fired, from inside another timer
    local conn = target(req)
    local first = wspush.after(0, function() conn:send("first fired") end)
    wspush.after(0.02, function()
      first:stop()
      conn:send("stopped a fired timer")
    end)
    return "ok"
  end,
  -- a timer that keeps a connection object after the connection closed
  ["/timer/hold"] = function(req)
    local conn = target(req)
    held = { ok = 0, closed = 0, other = 0 }
    held.timer = wspush.every(0.005, function()
      local ok, err = conn:send("held")
      if ok then held.ok = held.ok + 1
      elseif err == "closed" then held.closed = held.closed + 1
      else held.other = held.other + 1 end
      held.is_open = conn:is_open()
      held.id = conn.id
    end)
    return "holding"
  end,
  ["/timer/held"] = function()
    return { ok = held.ok, closed = held.closed, other = held.other,
             is_open = held.is_open, id = held.id }
  end,
  ["/timer/boom"] = function(req)
    local conn = target(req)
    wspush.after(0, function()
      error("timer went boom") -- BOOM-LINE
    end)
    -- a later timer still runs after the failing one
    wspush.after(0.02, function() conn:send("still ticking") end)
    return "armed"
  end,
}
