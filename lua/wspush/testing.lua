-- wspush.testing: run a script's handlers under busted with the server's
-- own code: its C core and Lua host (the "wspush.native" module built
-- beside the server, build/lua/wspush/native.so) run in the test's state,
-- over in-memory connections and a virtual clock. The test plays the
-- clients: what it sends goes through the server's HTTP parser, handshake,
-- frame codec and routing; what handlers send comes back as frames.
--
--   local testing = require "wspush.testing"
--   local app = testing.load("handlers/echo.lua")
--   local c = app:connect("/ws")           -- routing, origin check, open()
--   c:receive("hi")                         -- on_message
--   assert.same("new message :hi", c.sent[2].data)
--   local res = app:request("GET", "/index") -- { status, body, headers, json }
--   app:advance(5)                          -- 5 s of timers and heartbeats
--
-- Handler errors are raised in the test by the call that caused them, after
-- the server has done what it does (close 1011, answer 500), unless
-- load(..., { catch = true }): then they are only logged (app.logs).

local function native_module()
  local ok, mod = pcall(require, "wspush.native")
  if ok then return mod end
  -- Not on package.cpath: try the build tree next to this file.
  local here = debug.getinfo(1, "S").source:match("^@(.*)/lua/wspush/[^/]*$")
  if here then
    package.cpath = here .. "/build/lua/?.so;" .. package.cpath
    ok, mod = pcall(require, "wspush.native")
    if ok then return mod end
  end
  error("wspush.testing needs the native module (build/lua/wspush/native.so): build the project, "
        .. "then run busted with --cpath='build/lua/?.so'", 3)
end

local native = native_module()
local cjson = require "cjson"
local http = require "wspush.http"

local M = {}

--- realpath(3), as the server resolves paths (wspush.static).
M.realpath = native.realpath

local App, Client = {}, {}
App.__index, Client.__index = App, Client

local OP = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
M.OP = OP

--- A client frame: masked (with a zero key, which leaves the payload as it
-- is) as RFC 6455 requires of clients. fin defaults to true.
function M.frame(op, payload, fin)
  payload = payload or ""
  local b1 = (fin == false and 0 or 0x80) | op
  local n = #payload
  local hdr
  if n < 126 then
    hdr = string.pack(">BB", b1, 0x80 | n)
  elseif n < 65536 then
    hdr = string.pack(">BBI2", b1, 0x80 | 126, n)
  else
    hdr = string.pack(">BBI8", b1, 0x80 | 127, n)
  end
  return hdr .. "\0\0\0\0" .. payload
end
local frame = M.frame

-- One server frame from the front of buf: fin, op, rsv1, payload, rest; or
-- nil when buf does not hold a whole frame yet.
local function parse_frame(buf)
  if #buf < 2 then return nil end
  local b1, b2 = buf:byte(1, 2)
  local n, pos = b2 & 0x7f, 3
  if n == 126 then
    if #buf < 4 then return nil end
    n, pos = string.unpack(">I2", buf, 3)
  elseif n == 127 then
    if #buf < 10 then return nil end
    n, pos = string.unpack(">I8", buf, 3)
  end
  if #buf < pos + n - 1 then return nil end
  return b1 & 0x80 ~= 0, b1 & 0x0f, b1 & 0x40 ~= 0, buf:sub(pos, pos + n - 1), buf:sub(pos + n)
end

-- "host:port" -> host, port (IPv6 in brackets).
local function split_remote(remote)
  if not remote then return "127.0.0.1", 50000 end
  local host, port = remote:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = remote:match("^(.+):(%d+)$") end
  if not host then error("remote must be 'address:port', got " .. tostring(remote), 3) end
  return host, tonumber(port)
end

local function target_of(target, query)
  if query then
    target = target .. (target:find("?", 1, true) and "&" or "?") .. http.encode_query(query)
  end
  return target
end

-- An HTTP request head: defaults, overridden by the caller's headers
-- (whatever their case).
local function request_head(method, target, defaults, headers)
  local names, values = {}, {}
  local function put(k, v)
    local low = k:lower()
    if not values[low] then names[#names + 1] = k end
    values[low] = tostring(v)
    for i, name in ipairs(names) do if name:lower() == low then names[i] = k end end
  end
  for _, kv in ipairs(defaults) do put(kv[1], kv[2]) end
  for k, v in pairs(headers or {}) do put(k, v) end
  local lines = { method .. " " .. target .. " HTTP/1.1" }
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. values[k:lower()] end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Status, headers (case-insensitive) and body of the response at the front
-- of buf, and what follows it; nil when it is not whole.
local function parse_response(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  local headers = http.headers()
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k] = v end
  end
  local len = tonumber(headers["content-length"] or 0)
  local rest = buf:sub(head_end + 4)
  if status == 101 then return status, headers, "", rest end
  if #rest < len then return nil end
  return status, headers, rest:sub(1, len), rest:sub(len + 1)
end

--- Load a script as the server would. opts.catch: see above; opts.args: a
-- list of command-line options ({"--max-buffered", "64k"}), as for the
-- server; opts.auto_pong = false: clients do not answer the server's pings.
function M.load(script, opts)
  opts = opts or {}
  local app = setmetatable({
    script = script, catch = opts.catch, auto_pong = opts.auto_pong ~= false,
    logs = {}, published = {}, _clients = {}, _busy = 0,
  }, App)
  -- The script's wspush.publish records what it published.
  local function prepare(core)
    local publish = core.publish
    core.publish = function(topic, data, is_binary)
      local n = publish(topic, data, is_binary)
      if type(data) == "table" then data, is_binary = cjson.encode(data), false end
      app.published[#app.published + 1] = { topic = topic, data = data, binary = not not is_binary, n = n }
      -- Called by the test itself, not a handler: deliver it now.
      if app._busy == 0 then app:flush() end
      return n
    end
  end
  local n, err = native.testing.app(script, opts.args or {}, prepare)
  if not n then error(err, 2) end
  app._n = n
  app.core = n:core()
  app:_collect(2)
  return app
end

-- Run fn(native app, ...) as the server's loop would run it, then let the
-- clients answer (pongs, close replies) until nothing moves.
function App:_run(level, fn, ...)
  self._busy = self._busy + 1
  local ok, err = pcall(fn, self._n, ...)
  self._busy = self._busy - 1
  if not ok then error(err, 0) end
  self:_settle()
  self:_collect(level + 1)
end

function App:_settle()
  for _ = 1, 100 do
    local moved = false
    for _, c in ipairs(self._clients) do moved = c:_pump() or moved end
    if not moved then break end
  end
end

-- Move the log into app.logs; raise a handler's error unless catch.
function App:_collect(level)
  local first_error
  for _, rec in ipairs(self._n:logs()) do
    self.logs[#self.logs + 1] = rec
    if rec.level == "error" and not first_error then first_error = rec.message end
  end
  if first_error and not self.catch then error(first_error, level + 1) end
end

--- Write what handlers sent outside a callback (conn:send from the test).
function App:flush() self:_run(1, function(n) n:flush() end) end

--- Reload the script like a live reload: connections stay, their handlers
-- are looked up again by route, the old script's timers retire and its
-- modules are required afresh.
function App:reload()
  local ok, err
  self:_run(1, function(n) ok, err = n:reload("testing") end)
  if not ok then error(err, 2) end
end

--- Move the virtual clock forward: timers fire and heartbeats run in order,
-- and the clients answer as they go.
function App:advance(seconds)
  if type(seconds) ~= "number" or seconds < 0 then error("advance: seconds must be >= 0", 2) end
  local target = self._n:now() + math.floor(seconds * 1000 + 0.5)
  repeat
    local now
    self:_run(1, function(n) now = n:step(target) end)
  until now >= target
end

--- Answer the script's wspush.fetch calls: fn(url, opts) returns a
-- response table { status, headers, body } or nil, err, and optionally a
-- delay in seconds of virtual time (see docs/api.md, "Testing scripts").
function App:fake_fetch(fn)
  if type(fn) ~= "function" then error("fake_fetch: fn must be a function", 2) end
  self.core.fetch_fake = fn
end

--- Answer the script's wspush.redis calls: fn(cmd) gets the command as a
-- table of strings ({"GET", "k"}) and returns a value as r:call would, or
-- nil, err, and optionally a delay in seconds of virtual time.
function App:fake_redis(fn)
  if type(fn) ~= "function" then error("fake_redis: fn must be a function", 2) end
  self.core.redis_fake = fn
end

--- What SIGTERM does: on_shutdown runs, timers stop, connections close 1001.
function App:stop() self:_run(1, function(n) n:stop() end) end

--- Release the app (connections are dropped without on_close's replies).
function App:close() self._n:close() end

-- An answer the handler gives later (it waits in wspush.sleep or a faked
-- wspush.fetch): move the virtual clock to each next thing due until the
-- whole response is there, as the server's loop would; at most an hour.
function App:_await(peer, out)
  local limit = self._n:now() + 3600 * 1000
  while not parse_response(out) and self._n:now() < limit do
    self:_run(2, function(n)
      n:step(limit)
      out = out .. peer:take()
    end)
  end
  return out
end

--- Send an HTTP request: opts.body, opts.headers, opts.query (table),
-- opts.json (table: encoded as the body), opts.form (table), opts.remote.
-- Returns { status, body, headers (case-insensitive), json (if JSON) }.
function App:request(method, target, opts)
  opts = opts or {}
  local body = opts.body or ""
  local ctype
  if opts.json then body, ctype = cjson.encode(opts.json), "application/json" end
  if opts.form then body, ctype = http.encode_query(opts.form), "application/x-www-form-urlencoded" end
  local defaults = { { "Host", "localhost:8000" }, { "Connection", "close" } }
  if body ~= "" or ctype then defaults[#defaults + 1] = { "Content-Length", #body } end
  if ctype then defaults[#defaults + 1] = { "Content-Type", ctype } end
  local head = request_head(method:upper(), target_of(target, opts.query), defaults, opts.headers)
  local peer
  local out = ""
  self:_run(1, function(n)
    peer = n:connect(split_remote(opts.remote))
    peer:feed(head .. body)
    out = peer:take()
  end)
  out = self:_await(peer, out)
  peer:release()
  local status, headers, rbody = parse_response(out)
  if not status then error("no complete HTTP response: " .. out, 2) end
  local res = { status = status, body = rbody, headers = headers }
  if (headers["content-type"] or ""):find("json") and rbody ~= "" then
    res.json = cjson.decode(rbody)
  end
  return res
end

--- Open a WebSocket: opts.headers, opts.query, opts.protocols, opts.remote.
-- Returns a client, or nil, status, reason when the upgrade is refused. An
-- upgrade(req) that waits is waited for on the virtual clock.
function App:connect(target, opts)
  opts = opts or {}
  local defaults = {
    { "Host", "localhost:8000" }, { "Upgrade", "websocket" }, { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==" }, { "Sec-WebSocket-Version", "13" },
  }
  if opts.protocols and #opts.protocols > 0 then
    defaults[#defaults + 1] = { "Sec-WebSocket-Protocol", table.concat(opts.protocols, ", ") }
  end
  local head = request_head("GET", target_of(target, opts.query), defaults, opts.headers)
  local peer, out
  self:_run(1, function(n)
    peer = n:connect(split_remote(opts.remote))
    peer:feed(head)
    out = peer:take()
  end)
  out = self:_await(peer, out)
  local status, _, body, rest = parse_response(out)
  if status ~= 101 then
    peer:release()
    return nil, status, body and body:gsub("\n$", "")
  end
  local c = setmetatable({
    id = peer:id(), sent = {}, pings = {}, pongs = {}, closed = false,
    _app = self, _peer = peer, _buf = rest,
  }, Client)
  c.conn = self.core.get(c.id)
  self._clients[#self._clients + 1] = c
  self:_settle()
  return c
end

-- The client side a test drives.

-- Read what the server sent; answer pings and close frames as a browser
-- does. Returns true if anything arrived.
function Client:_pump()
  if self._gone then return false end
  local out = self._peer:take()
  local moved = out ~= ""
  self._buf = self._buf .. out
  while true do
    local fin, op, rsv1, payload, rest = parse_frame(self._buf)
    if not fin and not op then break end
    self._buf = rest
    if op == OP.continuation then
      self._partial = self._partial .. payload
      if fin then
        self.sent[#self.sent + 1] = { data = self._partial, binary = self._partial_op == OP.binary }
        self._partial = nil
      end
    elseif op == OP.text or op == OP.binary then
      if fin then
        self.sent[#self.sent + 1] = { data = payload, binary = op == OP.binary, compressed = rsv1 or nil }
      else
        self._partial, self._partial_op = payload, op
      end
    elseif op == OP.ping then
      self.pings[#self.pings + 1] = payload
      if self._app.auto_pong and not self._close_sent then self._peer:feed(frame(OP.pong, payload)) end
    elseif op == OP.pong then
      self.pongs[#self.pongs + 1] = payload
    elseif op == OP.close then
      self.closed = true
      if not self._close_sent then
        self.close_code = #payload >= 2 and string.unpack(">I2", payload) or 1005
        self.close_reason = payload:sub(3)
        self._close_sent = true
        self._peer:feed(frame(OP.close, payload:sub(1, 2)))
      end
    end
  end
  local closed, shut = self._peer:state()
  if shut and self._close_sent and not self._finished then
    -- The server ended its side after the close handshake: end ours, as a
    -- client's TCP does when it closes.
    self._finished = true
    self._peer:finish()
    moved = true
    closed = self._peer:state()
  end
  if closed then
    self.closed = true
    self.close_code = self.close_code or 1006
    self._gone = true
    self._peer:release()
  end
  return moved
end

local function check_open(self)
  if self.closed then error("connection " .. self.id .. " is closed", 3) end
end

--- Send raw bytes from the client (frames made with testing.frame).
function Client:feed(bytes)
  check_open(self)
  self._app:_run(2, function() self._peer:feed(bytes) end)
end

--- Deliver a message from the client (on_message).
function Client:receive(msg, is_binary)
  check_open(self)
  self._app:_run(2, function() self._peer:feed(frame(is_binary and OP.binary or OP.text, msg)) end)
end
function Client:ping(data)
  check_open(self)
  self._app:_run(2, function() self._peer:feed(frame(OP.ping, data or "")) end)
end
function Client:pong(data)
  check_open(self)
  self._app:_run(2, function() self._peer:feed(frame(OP.pong, data or "")) end)
end

--- The client closes (no code: the server sees 1005) and on_close runs;
-- code 1006 drops the connection without a close frame.
function Client:close(code, reason)
  check_open(self)
  self.closed, self.close_code, self.close_reason = true, code or 1005, reason or ""
  self._close_sent = true
  if code == 1006 then
    self._app:_run(2, function() self._peer:finish() end)
    return
  end
  local payload = code and string.pack(">I2", code) .. (reason or "") or ""
  self._app:_run(2, function() self._peer:feed(frame(OP.close, payload)) end)
end

--- The client stops reading (true) or reads again (false): the server's
-- writes wait meanwhile, as with a peer whose socket is full.
function Client:hold(on)
  self._app:_run(2, function() self._peer:hold(on) end)
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
