-- Liveness, limits, backpressure and shutdown tests (tests/integration/test_liveness.py).
--
-- Server-side observations go to HTTP routes as JSON, or, for what happens
-- while the server is going down, to the file named by $LIVE_EVENTS (one line
-- per event, appended and flushed at once).
local wspush = require "wspush"
local cjson = require "cjson"

local EVENTS = os.getenv("LIVE_EVENTS")
local function event(line)
  if not EVENTS then return end
  local f = assert(io.open(EVENTS, "a"))
  f:write(line, "\n")
  f:close()
end

local stats = {
  pongs = 0,          -- on_pong calls
  closes = {},        -- id -> close code, for every route
  sends = {},         -- results of the /fill route
  drains = 0,         -- on_drain calls on /stream
  floods = 0,         -- floods finished
}

local function on_close(conn, code, reason)
  stats.closes[tostring(conn.id)] = code
  event(string.format("close %d %s %s", conn.id, tostring(code), tostring(reason)))
end

---------------------------------------------------------------------------
-- /echo: echo; reports pongs.
local echo = { on_close = on_close }
function echo.open(conn) conn.data.pongs = 0 end
function echo.on_message(conn, msg, is_binary)
  if msg == "id" then return conn:send(tostring(conn.id)) end
  conn:send(msg, is_binary)
end
function echo.on_pong(conn, data)
  stats.pongs = stats.pongs + 1
  conn.data.pongs = conn.data.pongs + 1
  conn:send("on_pong " .. conn.data.pongs .. " [" .. data .. "]")
end

-- /rl: the same echo with its own rate limit (per-route setting).
local rl = { rate_limit = 5, rate_burst = 3, on_close = on_close, on_message = echo.on_message }

---------------------------------------------------------------------------
-- /feed*: subscribers of the "feed" topic; anything they send is echoed.
local function feed_route(settings)
  local r = settings or {}
  r.open = function(conn) conn:subscribe("feed") end
  r.on_message = function(conn, msg, is_binary) conn:send(msg, is_binary) end
  r.on_close = on_close
  return r
end

-- GET /flood?ticks=T&per=K&size=S: every 10 ms publish K binary messages of
-- S bytes to "feed" (each starts with its 8-digit sequence number), T times;
-- then publish the text "end".
local flooding = nil
local function flood(req)
  if flooding then return "already flooding", 409 end
  local ticks = tonumber(req.query.ticks) or 100
  local per = tonumber(req.query.per) or 2
  local size = tonumber(req.query.size) or 65536
  local pad = string.rep("x", size - 8)
  local seq, tick = 0, 0
  local reached = 0
  flooding = wspush.every(0.01, function()
    tick = tick + 1
    for _ = 1, per do
      reached = reached + wspush.publish("feed", string.format("%08d", seq) .. pad, true)
      seq = seq + 1
    end
    if tick >= ticks then
      flooding:stop()
      flooding = nil
      stats.floods = stats.floods + 1
      stats.reached = reached
      wspush.publish("feed", "end")
    end
  end)
  return { messages = ticks * per }
end

---------------------------------------------------------------------------
-- /fill: on "fill SIZE", conn:send SIZE-byte binary messages until send
-- refuses one; what it returned is kept in stats.sends[id].
local fill = { on_close = on_close }
function fill.on_message(conn, msg)
  if msg == "id" then return conn:send(tostring(conn.id)) end
  local size = tonumber(msg:match("^fill (%d+)$"))
  if not size then return conn:send(msg) end
  local chunk = string.rep("f", size)
  local out = { sent = 0 }
  for i = 1, 100000 do
    local ok, err = conn:send(chunk, true)
    if not ok then
      out.err = err
      out.open = conn:is_open()
      break
    end
    out.sent = i
  end
  stats.sends[tostring(conn.id)] = out
end

---------------------------------------------------------------------------
-- /stream: on "stream N SIZE THRESHOLD" send N numbered binary chunks of SIZE
-- bytes, the documented way: send while conn:buffered() is below THRESHOLD,
-- stop there and go on in on_drain. Then a JSON text {done=N, drains=, peak=}.
local stream = { on_close = on_close }
local function pump(conn)
  local d = conn.data
  while d.next <= d.n and conn:buffered() < d.threshold do
    local ok, err = conn:send(string.format("%08d", d.next) .. d.pad, true)
    if not ok then error("send refused: " .. tostring(err)) end
    d.next = d.next + 1
    if conn:buffered() > d.peak then d.peak = conn:buffered() end
  end
  if d.next > d.n and not d.done then
    d.done = true
    conn:send(cjson.encode({ done = d.n, drains = d.drains, peak = d.peak }))
  end
end
function stream.on_message(conn, msg)
  local n, size, threshold = msg:match("^stream (%d+) (%d+) (%d+)$")
  if not n then return conn:send(msg) end
  local d = conn.data
  d.threshold = tonumber(threshold)
  d.n, d.next, d.pad, d.drains, d.peak, d.done = tonumber(n), 1, string.rep("s", tonumber(size) - 8), 0, 0, false
  pump(conn)
end
function stream.on_drain(conn)
  local d = conn.data
  stats.drains = stats.drains + 1
  if d.n and not d.done then
    d.drains = d.drains + 1
    pump(conn)
  end
end

---------------------------------------------------------------------------
-- Shutdown: on_shutdown says goodbye to everyone (before their close 1001).
wspush.on_shutdown(function()
  event("shutdown " .. wspush.count())
  for conn in wspush.connections() do conn:send("bye from on_shutdown") end
end)

local JSON = { ["Content-Type"] = "application/json" }
return {
  ["/echo"] = echo,
  ["/rl"] = rl,
  ["/feed"] = feed_route(),
  ["/feed_drop_oldest"] = feed_route({ max_buffered = 256 * 1024, backpressure = "drop-oldest" }),
  ["/feed_big"] = feed_route({ max_buffered = 64 * 1024 * 1024 }),
  ["/fill"] = fill,
  ["/fill_drop"] = { backpressure = "drop", max_buffered = 128 * 1024, on_message = fill.on_message },
  ["/stream"] = stream,
  ["/flood"] = flood,
  ["/stats"] = function() return cjson.encode(stats), 200, JSON end,
  ["/count"] = function() return cjson.encode({ count = wspush.count() }), 200, JSON end,
}
