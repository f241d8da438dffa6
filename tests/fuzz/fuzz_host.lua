-- fuzz_host.lua: the script of fuzz_host.c. It turns the fuzz input (the
-- file named by FUZZ_HOST_INPUT) into a routes table as hostile as a script
-- can make one: handler tables with metatables whose __index raises, loops or
-- returns odd values; odd keys and settings of every type; handlers that
-- raise tables, send tables with raising metamethods, allocate, loop, set
-- conn fields, make timers that fail, leave garbage with raising __gc. The
-- driver then upgrades, sends, pings, closes and makes HTTP requests on
-- /a /b /c /d; the server must answer each and never crash.
local wspush = require "wspush"

local f = io.open(os.getenv("FUZZ_HOST_INPUT") or "", "rb")
local input = f and f:read("a") or ""
if f then f:close() end
local pos = 0
local function byte()
  pos = pos + 1
  return input:byte(pos) or 0
end
local function pick(list) return list[byte() % #list + 1] end

local hostile -- forward

-- Things a metamethod or a handler may do.
local ACTS = {
  function() error("plain error") end,
  function() error({ "a table as error" }) end,
  function() error(setmetatable({}, { __tostring = function() error("tostring raises") end })) end,
  function() while true do end end,
  function() local t = {} for i = 1, 1e8 do t[i] = i end end,
  function() return string.rep("x", 1 << 20) end,
  function() return hostile(1) end,
  function() return nil end,
  function() return 42 end,
  function() collectgarbage() end,
  function() setmetatable({}, { __gc = function() error("gc raises") end }) end,
  function() setmetatable({}, { __gc = function() while true do end end }) end,
  function() wspush.after(0, function() error("timer raises") end) end,
  function() wspush.every(0.001, function() end) end,
  function() wspush.publish("t", hostile(1)) end,
  function() wspush.publish("t", "\255") end,
  function() wspush.log("warn", "fuzz") end,
}

local function act() return pick(ACTS)() end

local VALUES = {
  function() return nil end,
  function() return true end,
  function() return false end,
  function() return 0 end,
  function() return -1 end,
  function() return 0 / 0 end,
  function() return math.huge end,
  function() return 2 ^ 63 end,
  function() return 1.5 end,
  function() return "" end,
  function() return "close" end,
  function() return "drop-oldest" end,
  function() return string.rep("y", 300) end,
  function() return {} end,
  function() return { level = hostile(1), threshold = -1, window_bits = 99 } end,
  function() return hostile(1) end,
  function() return act end,
  function() return tostring end,
}

local function value() return pick(VALUES)() end

-- A table whose metamethods do one hostile thing each.
function hostile(depth)
  local mt = {}
  local names = { "__index", "__newindex", "__tostring", "__eq", "__len", "__call", "__pairs",
                  "__close", "__concat", "__gc" }
  for _ = 1, byte() % 4 do
    local name = pick(names)
    if name == "__index" and byte() % 2 == 0 then
      mt.__index = depth > 0 and hostile(depth - 1) or {}
    else
      mt[name] = function() return act() end
    end
  end
  return setmetatable({}, mt)
end

local FIELDS = { "open", "on_message", "on_ping", "on_pong", "on_drain", "on_close",
                 "check_origin", "select_subprotocol", "max_message", "max_buffered",
                 "idle_timeout", "rate_limit", "rate_burst", "backpressure", "compression" }

-- What an event handler does with its connection.
local CONN_ACTS = {
  function(c, m) c:send(m or "reply") end,
  function(c) c:send(hostile(1)) end,
  function(c) c:send({ a = { b = "c" } }) end,
  function(c) c:send("\255") end,
  function(c) c:send(string.rep("z", 70000), true) end,
  function(c) c:close(byte() % 5000) end,
  function(c) c:close(4000, string.rep("r", 200)) end,
  function(c) c.name = "x" end,
  function(c) c.data = hostile(1) end,
  function(c) c:subscribe("t") end,
  function(c) c:ping(string.rep("p", 200)) end,
  function() act() end,
}

local function handler_fn()
  local n = byte() % 3 + 1
  local acts = {}
  for i = 1, n do acts[i] = pick(CONN_ACTS) end
  return function(c, ...)
    for _, a in ipairs(acts) do a(c, ...) end
    return value()
  end
end

local function ws_handler()
  local h = {}
  for _ = 1, byte() % 8 do
    local k = pick(FIELDS)
    local kind = byte() % 4
    if kind == 0 then
      rawset(h, k, value())
    elseif k == "check_origin" then
      rawset(h, k, byte() % 2 == 0 and function() return true end or function() return act() end)
    else
      rawset(h, k, handler_fn())
    end
  end
  if byte() % 3 == 0 then rawset(h, value() or 1, value()) end -- an odd key
  if byte() % 2 == 0 then
    local mt = {}
    local how = byte() % 4
    if how == 0 then mt.__index = function(_, k) error("strict: no field " .. tostring(k)) end
    elseif how == 1 then mt.__index = function() while true do end end
    elseif how == 2 then mt.__index = function() return value() end
    else mt.__index = hostile(2) end
    setmetatable(h, mt)
  end
  return h
end

local function http_handler()
  local body, status, headers = value(), pick({ 200, 404, 999, 99, "x", 2.5 }), value()
  return function(req)
    if byte() % 4 == 0 then act() end
    return body, status, headers
  end
end

local routes = {}
for _, path in ipairs({ "/a", "/b", "/c", "/d" }) do
  routes[path] = byte() % 3 == 0 and http_handler() or ws_handler()
end
if byte() % 4 == 0 then
  -- A catch-all that returns whatever it likes.
  return function(method, path) return byte() % 2 == 0 and ws_handler() or value() end
end
return routes
