-- wspush.testing: run a script's handlers under busted, without a server.
--
--   local testing = require "wspush.testing"
--   local app = testing.load("handlers/echo.lua")
--   local c = app:connect("/ws")           -- routing, origin check, open()
--   c:receive("hi")                         -- on_message
--   assert.same("new message :hi", c.sent[2].data)
--   local res = app:request("GET", "/index") -- { status, body, headers, json }
--   app:advance(5)                          -- fire timers due in 5 s
--
-- It installs a fake "wspush.core" (pub/sub, connection table, timers on a
-- virtual clock, log capture) and goes through the same router, http and
-- server modules as the real server, so routing is not reimplemented here.
-- Handler errors propagate to the test unless load(..., { catch = true }),
-- which mimics the server: log it, close with 1011 / answer 500.
local cjson = require "cjson"
local http = require "wspush.http"
local server = require "wspush.server"

local M = {}

local App, Conn, Client = {}, {}, {}
App.__index, Conn.__index, Client.__index = App, Conn, Client

local LEVELS = { error = true, warn = true, info = true, debug = true }

-- realpath(3) through the coreutils command; good enough for tests.
local function realpath(p)
  if type(p) ~= "string" or p:find("%z") then return nil, "invalid path" end
  local f = io.popen("realpath -e -- '" .. p:gsub("'", "'\\''") .. "' 2>/dev/null")
  local out = f and f:read("l")
  if f then f:close() end
  if not out or out == "" then return nil, "No such file or directory" end
  return out
end

M.realpath = realpath

local function sorted_ids(set)
  local ids = {}
  for id in pairs(set) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

-- The fake C core, bound to one app.
local function make_core(app)
  local core = { version = "testing", realpath = realpath, same_origin = http.same_origin }

  function core.publish(topic, data, is_binary)
    -- Like the core: a table is published as JSON text.
    if type(data) == "table" then
      data, is_binary = cjson.encode(data), false
    elseif type(data) ~= "string" then
      error("bad argument #2 to 'publish' (string or table expected, got " .. type(data) .. ")", 2)
    end
    local n, subs = 0, app.topics[topic] or {}
    for _, id in ipairs(sorted_ids(subs)) do
      if app.conns[id] and app.conns[id]:send(data, is_binary) then n = n + 1 end
    end
    app.published[#app.published + 1] = { topic = topic, data = data, binary = not not is_binary, n = n }
    return n
  end
  function core.get(id) return app.conns[id] end
  function core.count()
    local n = 0
    for _ in pairs(app.conns) do n = n + 1 end
    return n
  end
  function core.connections()
    local ids, i = sorted_ids(app.conns), 0
    return function()
      repeat i = i + 1 until ids[i] == nil or app.conns[ids[i]]
      return ids[i] and app.conns[ids[i]]
    end
  end
  local function timer(seconds, fn, every)
    if type(seconds) ~= "number" or seconds < 0 or (every and seconds <= 0) then
      error("timer: bad interval " .. tostring(seconds), 3)
    end
    if type(fn) ~= "function" then error("timer: fn must be a function", 3) end
    app.seq = app.seq + 1
    local t = { due = app.clock + seconds, every = every and seconds, fn = fn,
                seq = app.seq, gen = app.gen }
    t.stop = function() t.stopped = true end
    app.timers[#app.timers + 1] = t
    return t
  end
  function core.after(s, fn) return timer(s, fn, false) end
  function core.every(s, fn) return timer(s, fn, true) end
  function core.log(level, msg)
    if not LEVELS[level] then error("log: unknown level " .. tostring(level), 2) end
    app.logs[#app.logs + 1] = { level = level, message = tostring(msg) }
  end
  function core.now() return app.clock end
  return core
end

-- Run fn(...); with app.catch, log an error instead of raising it.
local function guarded(app, fn, ...)
  if not app.catch then return true, fn(...) end
  local res = table.pack(xpcall(fn, debug.traceback, ...))
  if not res[1] then app.core.log("error", res[2]) end
  return table.unpack(res, 1, res.n)
end

-- (Re)load the script into app: run it, compile its routes, swap them in.
local function run_script(app)
  package.loaded["wspush.core"] = app.core
  package.loaded["wspush"] = nil -- so init.lua copies this app's core
  local chunk, err = loadfile(app.script)
  if not chunk then error(err, 3) end
  local compiled, cerr = server.compile(chunk(), app.core.script_dir)
  if not compiled then error(app.script .. ": " .. cerr, 3) end
  app.compiled = compiled
end

--- Load a script as the server would. opts.catch: see above.
function M.load(script, opts)
  opts = opts or {}
  local app = setmetatable({
    script = script, catch = opts.catch, clock = 0, seq = 0, gen = 1, next_id = 0,
    conns = {}, topics = {}, timers = {}, logs = {}, published = {}, pending = {},
  }, App)
  app.core = make_core(app)
  app.core.script_dir = script:match("^(.*)/[^/]*$") or "."
  run_script(app)
  return app
end

--- Reload the script like a live reload: connections stay, their handlers
-- are looked up again by route key, and the old script's timers retire.
function App:reload()
  self.gen = self.gen + 1
  run_script(self)
  for _, t in ipairs(self.timers) do
    if t.gen < self.gen then t.stopped = true end
  end
end

local function parse_target(target, query)
  local path, q = target:match("^([^?]*)%??(.*)$")
  if query then q = (q ~= "" and q .. "&" or "") .. http.encode_query(query) end
  return path, q ~= "" and q or nil
end

local function lower_headers(h, defaults)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(h or {}) do out[k:lower()] = v end
  return out
end

--- Send an HTTP request: opts.body, opts.headers, opts.query (table),
-- opts.json (table: encoded as the body), opts.form (table), opts.remote.
-- Returns { status, body, headers (case-insensitive), json (if JSON) }.
function App:request(method, target, opts)
  opts = opts or {}
  local path, rawquery = parse_target(target, opts.query)
  local headers = lower_headers(opts.headers, { host = "localhost:8000" })
  local body = opts.body or ""
  if opts.json then body, headers["content-type"] = cjson.encode(opts.json), "application/json" end
  if opts.form then
    body, headers["content-type"] = http.encode_query(opts.form), "application/x-www-form-urlencoded"
  end
  local req = { method = method:upper(), path = path, rawquery = rawquery, headers = headers,
                body = body, remote = opts.remote or "127.0.0.1:50000" }
  local ok, status, rbody, rheaders = guarded(self, server.http, self.compiled, req)
  if not ok then status, rbody, rheaders = 500, "500 Internal Server Error\n", {} end
  -- Like the core: HEAD keeps the GET response's headers and drops its body.
  if req.method == "HEAD" then rbody = "" end
  local res = { status = status, body = rbody, headers = http.headers(rheaders) }
  if (res.headers["content-type"] or ""):find("json") and rbody ~= "" then
    res.json = cjson.decode(rbody)
  end
  return res
end

-- Finish closing conn: it leaves the table and its topics, then on_close.
local function finish(app, conn, code, reason)
  if conn._state == "closed" then return end
  conn._state = "closed"
  app.conns[conn.id] = nil
  for _, subs in pairs(app.topics) do subs[conn.id] = nil end
  conn.client.closed, conn.client.close_code, conn.client.close_reason = true, code, reason
  app:_call(conn, "on_close", code, reason)
end

-- Dispatch an event to conn's current handler, then complete the closes it
-- started (the server would finish them once the peer echoes the close).
function App:_call(conn, name, ...)
  local h = server.resolve(self.compiled, conn._key, conn.path)
  if h and h[name] then
    local ok = guarded(self, h[name], conn, ...)
    if not ok and conn._state == "open" then conn:close(1011, "internal error") end
  end
  while #self.pending > 0 do
    local c = table.remove(self.pending, 1)
    finish(self, c, c._close_code, c._close_reason)
  end
end

--- Open a WebSocket: opts.headers, opts.query, opts.protocols, opts.remote.
-- Returns a client, or nil, status, reason when the upgrade is refused.
function App:connect(target, opts)
  opts = opts or {}
  local path, rawquery = parse_target(target, opts.query)
  local req = {
    method = "GET", path = path, rawquery = rawquery, body = "",
    -- As the core builds it: without the handshake's own headers, which it checks.
    headers = http.headers(lower_headers(opts.headers, { host = "localhost:8000" }), http.HANDSHAKE_ONLY),
    remote = opts.remote or "127.0.0.1:50000",
  }
  local h, key, sub = server.upgrade(self.compiled, req, opts.protocols or {})
  if not h then return nil, key, sub end
  self.next_id = self.next_id + 1
  local conn = setmetatable({
    id = self.next_id, path = path, query = req.query, params = req.params,
    headers = req.headers, remote = req.remote, subprotocol = sub, data = {},
    sent = {}, pings = {}, _state = "open", _key = key, _app = self,
  }, Conn)
  local client = setmetatable({ conn = conn, id = conn.id, sent = conn.sent, closed = false }, Client)
  conn.client = client
  self.conns[conn.id] = conn
  self:_call(conn, "open")
  return client
end

--- Move the clock forward, firing due timers in order (an every() timer
-- fires as many times as its interval fits).
function App:advance(seconds)
  local target = self.clock + seconds
  while true do
    local next_t
    for _, t in ipairs(self.timers) do
      if not t.stopped and t.due <= target
         and (not next_t or t.due < next_t.due or (t.due == next_t.due and t.seq < next_t.seq)) then
        next_t = t
      end
    end
    if not next_t then break end
    self.clock = next_t.due
    if next_t.every then next_t.due = next_t.due + next_t.every else next_t.stopped = true end
    guarded(self, next_t.fn)
  end
  self.clock = target
  local live = {}
  for _, t in ipairs(self.timers) do if not t.stopped then live[#live + 1] = t end end
  self.timers = live
end

-- The connection handlers see (the server's userdata, in Lua).
local function open(self) return self._state == "open" end

function Conn:send(data, is_binary)
  if not open(self) then return nil, "closed" end
  if type(data) == "table" then data, is_binary = cjson.encode(data), false end
  if type(data) ~= "string" then error("send: want a string or a table, got a " .. type(data), 2) end
  if not is_binary and not utf8.len(data) then error("send: text must be valid UTF-8", 2) end
  self.sent[#self.sent + 1] = { data = data, binary = not not is_binary }
  return true
end
function Conn:close(code, reason)
  if not open(self) then return nil, "closed" end
  self._state, self._close_code, self._close_reason = "closing", code or 1000, reason or ""
  table.insert(self._app.pending, self)
  return true
end
function Conn:ping(data)
  if not open(self) then return nil, "closed" end
  if data and #data > 125 then error("ping: at most 125 bytes", 2) end
  self.pings[#self.pings + 1] = data or ""
  return true
end
function Conn:subscribe(topic)
  if not open(self) then return nil, "closed" end
  local topics = self._app.topics
  topics[topic] = topics[topic] or {}
  topics[topic][self.id] = true
  return true
end
function Conn:unsubscribe(topic)
  if not open(self) then return nil, "closed" end
  local subs = self._app.topics[topic]
  if subs then subs[self.id] = nil end
  return true
end
function Conn:topics()
  local out = {}
  for topic, subs in pairs(self._app.topics) do
    if subs[self.id] then out[#out + 1] = topic end
  end
  table.sort(out)
  return out
end
function Conn:buffered() return 0 end
function Conn:is_open() return open(self) end

-- The client side a test drives.
local function check_open(self)
  if self.closed then error("connection " .. self.id .. " is closed", 3) end
end

--- Deliver a message from the client (on_message).
function Client:receive(msg, is_binary)
  check_open(self)
  if not is_binary and not utf8.len(msg) then error("text message is not valid UTF-8", 2) end
  self.conn._app:_call(self.conn, "on_message", msg, not not is_binary)
end
function Client:ping(data) check_open(self); self.conn._app:_call(self.conn, "on_ping", data or "") end
function Client:pong(data) check_open(self); self.conn._app:_call(self.conn, "on_pong", data or "") end

--- The client closes (code defaults to 1005, no status) and on_close runs;
-- code 1006 simulates a dropped TCP connection.
function Client:close(code, reason)
  check_open(self)
  finish(self.conn._app, self.conn, code or 1005, reason or "")
end

--- The text messages sent so far, as a list of strings (binary skipped).
function Client:texts()
  local out = {}
  for _, m in ipairs(self.sent) do if not m.binary then out[#out + 1] = m.data end end
  return out
end

--- The last message sent, JSON-decoded.
function Client:last_json()
  local m = self.sent[#self.sent]
  return m and cjson.decode(m.data)
end

return M
