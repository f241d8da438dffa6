-- Test application for the integration suite. HTTP routes report server-side
-- state as JSON (encoded here, so that observing state does not depend on the
-- server's own table->JSON feature, which is tested separately).
local wspush = require "wspush"

local testjson = require "testjson"
local enc, reply = testjson.encode, testjson.reply

---------------------------------------------------------------------------
-- server-side state
local closes = {}   -- id -> {code=, reason=}
local opens = {}    -- list of ids, in open order
local kept = nil    -- a conn kept after it closed
local last_close = nil

local function record_close(conn, code, reason)
  last_close = { id = conn.id, path = conn.path, code = code, reason = reason }
  closes[tostring(conn.id)] = { code = code, reason = reason }
end

-- /echo: echoes every message back with the same type; no greeting.
local echo = {}
function echo.open(conn) opens[#opens + 1] = conn.id end
function echo.on_message(conn, msg, is_binary) conn:send(msg, is_binary) end
echo.on_close = record_close

-- /state: commands to inspect and drive the connection.
local state = {}
function state.open(conn)
  opens[#opens + 1] = conn.id
  conn.data.count = 0
end
function state.on_message(conn, msg, is_binary)
  conn.data.count = conn.data.count + 1
  if msg == "id" then
    conn:send(tostring(conn.id))
  elseif msg == "count" then
    conn:send(tostring(conn.data.count))
  elseif msg == "info" then
    local q = {}
    for k, v in pairs(conn.query or {}) do q[k] = v end
    conn:send(enc({
      id = conn.id,
      path = conn.path,
      query = q,
      ua = conn.headers["user-agent"],
      ua_upper = conn.headers["USER-AGENT"],
      custom = conn.headers["x-custom"],
      custom_mixed = conn.headers["X-Custom"],
      remote = conn.remote,
      subprotocol = conn.subprotocol or "none",
      data_is_table = type(conn.data) == "table",
      -- made on first use when empty: must still be tables, the same each time
      query_is_table = type(conn.query) == "table" and conn.query == conn.query,
      params_is_table = type(conn.params) == "table" and conn.params == conn.params,
      handshake_headers = {
        conn.headers["sec-websocket-key"] or "absent", conn.headers.upgrade or "absent",
        conn.headers.connection or "absent", conn.headers["sec-websocket-version"] or "absent",
      },
    }))
  elseif msg == "json" then
    conn:send({ hello = "world", n = 42, list = { 1, 2, 3 }, nested = { ok = true } })
  elseif msg == "close me" then
    conn:close(4000, "bye")
  elseif msg == "is_binary" then
    conn:send(tostring(is_binary))
  else
    conn:send((is_binary and "binary:" or "text:") .. #msg)
  end
end
state.on_close = record_close

-- /boom: raises on demand.
local boom = {}
function boom.on_message(conn, msg)
  if msg == "raise" then
    error("boom on purpose") -- RAISE_LINE
  end
  conn:send("still here: " .. msg)
end
boom.on_close = record_close

-- /keep: keeps its conn in a global after it closed.
local keep = {}
function keep.open(conn)
  kept = conn
  conn:send(tostring(conn.id))
end
keep.on_close = record_close

-- /proto: subprotocol negotiation.
local proto = {}
function proto.select_subprotocol(list, req)
  for _, name in ipairs(list) do
    if name == "chat.v2" then return name end
  end
  return nil
end
function proto.open(conn) conn:send(conn.subprotocol or "none") end

-- /strict_origin: check_origin that only allows one origin.
local strict = {}
function strict.check_origin(origin, req) return origin == "http://allowed.example" end
function strict.open(conn) conn:send("in") end

-- /node: the interop endpoint (Welcome, text echo, binary echo).
local node = {}
function node.open(conn) conn:send("Welcome") end
function node.on_message(conn, msg, is_binary)
  if is_binary then conn:send(msg, true) else conn:send("new message :" .. msg) end
end
node.on_close = record_close

return {
  ["/echo"] = echo,
  ["/state"] = state,
  ["/boom"] = boom,
  ["/keep"] = keep,
  ["/proto"] = proto,
  ["/strict_origin"] = strict,
  ["/node"] = node,

  ["/count"] = function(req) return reply({ count = wspush.count() }) end,

  ["/conns"] = function(req)
    local ids = {}
    for c in wspush.connections() do ids[#ids + 1] = c.id end
    table.sort(ids)
    return reply({ ids = ids })
  end,

  ["/push"] = function(req)
    local c = wspush.get(tonumber(req.query.id))
    if not c then return reply({ found = false }) end
    local ok, err = c:send(req.query.msg)
    return reply({ found = true, id = c.id, ok = ok, err = err })
  end,

  -- The server pushes count messages of size bytes to one connection (what
  -- the backpressure policy is for: the peer's own replies pause its reading
  -- instead). Reports how many were refused ("buffer full").
  ["/blast"] = function(req)
    local c = wspush.get(tonumber(req.query.id))
    if not c then return reply({ found = false }) end
    local chunk = string.rep("b", tonumber(req.query.size) or 65536)
    local sent, refused, err = 0, 0, nil
    for i = 1, tonumber(req.query.count) or 64 do
      local ok, e = c:send(chunk, true)
      if ok then sent = sent + 1 else refused, err = refused + 1, err or e end
    end
    return reply({ found = true, sent = sent, refused = refused, err = err })
  end,

  ["/closes"] = function(req)
    local c = closes[req.query.id]
    if not c then return reply({ seen = false }) end
    return reply({ seen = true, code = c.code, reason = c.reason })
  end,

  ["/last_close"] = function(req)
    if not last_close then return reply({ seen = false }) end
    return reply({ seen = true, id = last_close.id, path = last_close.path,
                   code = last_close.code, reason = last_close.reason })
  end,

  ["/kept"] = function(req)
    if not kept then return reply({ have = false }) end
    local s1, s2 = kept:send("late")
    local c1, c2 = kept:close(1000)
    local p1, p2 = kept:ping("x")
    return reply({
      have = true,
      id = kept.id,
      path = kept.path,
      remote = kept.remote,
      send = { tostring(s1), tostring(s2) },
      close = { tostring(c1), tostring(c2) },
      ping = { tostring(p1), tostring(p2) },
    })
  end,

  ["/http_boom"] = function(req)
    error("http handler exploded") -- HTTP_RAISE_LINE
  end,

  ["/table_body"] = function(req) return { a = 1, b = "two" } end,

  ["/status"] = function(req) return "made", 201, { ["X-Test"] = "yes" } end,

  ["/query"] = function(req) return reply({ q = req.query, method = req.method, path = req.path }) end,

  ["POST /body"] = function(req) return reply({ body = req.body, method = req.method }) end,
}
