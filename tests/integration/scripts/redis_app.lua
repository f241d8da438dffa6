-- wspush.redis end to end (test_redis.py). The test runs a redis-server of
-- its own on 127.0.0.1 and gives its URL in the environment of this server:
--   REDIS_URL          the client's url ("(number)": the number 6379 instead,
--                      to see wspush.redis refuse a url that is not a string)
--   REDIS_TIMEOUT      opts.timeout, if set
--   REDIS_MAX_QUEUED   opts.max_queued, if set
--   REDIS_CALL_AT_LOAD if set, r:call("PING") while the script loads (must raise)
-- Results go back as JSON made by testjson, every value tagged with its Lua
-- type (a reply's shape is what is under test: an integer is not a string,
-- true is not "OK"), strings hex-encoded (replies are binary-safe).
local wspush = require "wspush"
local testjson = require "testjson"
local enc, reply = testjson.encode, testjson.reply

local shared = wspush.shared
shared.inflight = shared.inflight or 0     -- calls started and not returned yet
shared.started = shared.started or 0       -- calls started, ever
shared.generation = shared.generation or 1

local URL = os.getenv("REDIS_URL")
if URL == "(number)" then URL = 6379 end
local opts = {}
if os.getenv("REDIS_TIMEOUT") then opts.timeout = tonumber(os.getenv("REDIS_TIMEOUT")) end
if os.getenv("REDIS_MAX_QUEUED") then
  opts.max_queued = math.tointeger(tonumber(os.getenv("REDIS_MAX_QUEUED")))
end

local r = wspush.redis(URL, next(opts) and opts or nil)

if os.getenv("REDIS_CALL_AT_LOAD") then
  r:call("PING")   -- CALL_AT_LOAD: raises (a waiting call outside a handler)
end

wspush.on_reload(function(info) shared.generation = info.generation end)

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- A Lua value as plain tagged data (see the header).
local function describe(v)
  local t = type(v)
  if v == nil then return { t = "nil" }
  elseif t == "boolean" then return { t = "bool", v = v }
  elseif t == "number" then return { t = math.type(v), v = v }
  elseif t == "string" then return { t = "str", hex = hex(v) }
  elseif t == "table" then
    local n = 0
    for k in pairs(v) do
      if math.type(k) == "integer" and k >= 1 and k > n then n = k end
    end
    local arr, keys = {}, {}
    for i = 1, n do arr[i] = describe(v[i]) end   -- a hole shows as {t = "nil"}
    for k, x in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[tostring(k)] = describe(x) end
    end
    return { t = "table", arr = arr, keys = keys }
  end
  return { t = t, v = tostring(v) }
end

-- An argument as the test wrote it in JSON: a string, or {hex =} (bytes),
-- {int =}, {float =}, {bool =}; any other table is passed as it is (the
-- client must refuse it).
local function arg(a)
  if type(a) ~= "table" then return a end
  if a.hex then return unhex(a.hex) end
  if a.int then return math.tointeger(a.int) end
  if a.float then return a.float + 0.0 end
  if a.bool ~= nil then return a.bool end
  return a
end

local function args_of(list)
  local out = {}
  for i, a in ipairs(list) do out[i] = arg(a) end
  return out
end

-- Run fn(...) (which waits) under pcall, counting it in flight; its result
-- described: {v =, err =, elapsed =} or {raised = message}.
local function run(fn, ...)
  shared.inflight = shared.inflight + 1
  shared.started = shared.started + 1
  local t0 = wspush.now()
  local res = table.pack(pcall(fn, ...))
  shared.inflight = shared.inflight - 1
  if not res[1] then return { raised = tostring(res[2]) } end
  return { v = describe(res[2]), err = describe(res[3]), n = res.n - 1, elapsed = wspush.now() - t0 }
end

local function call(list) return run(r.call, r, table.unpack(list, 1, #list)) end
local function transaction(cmds) return run(r.transaction, r, cmds) end

-- /ws: a text message is one command, its arguments separated by tabs; or
-- "TX" and then commands on lines of their own (a transaction). The answer
-- is the result, as JSON.
local ws = {}
function ws.on_message(conn, msg)
  local out
  if msg:sub(1, 3) == "TX\n" then
    local cmds = {}
    for line in msg:sub(4):gmatch("[^\n]+") do
      local cmd = {}
      for a in line:gmatch("[^\t]+") do cmd[#cmd + 1] = a end
      cmds[#cmds + 1] = cmd
    end
    out = transaction(cmds)
  else
    local cmd = {}
    for a in msg:gmatch("[^\t]+") do cmd[#cmd + 1] = a end
    out = call(cmd)
  end
  conn:send(enc(out))
end

-- /bin: a binary message is stored under a key of the connection's own and
-- read back; the answer is what GET returned, as a binary message.
local bin = {}
function bin.on_message(conn, msg, is_binary)
  local key = "bin:" .. conn.id
  local ok, err = r:call("SET", key, msg)
  if ok ~= true then conn:send("SET failed: " .. tostring(err)) return end
  local v, err2 = r:call("GET", key)
  if type(v) ~= "string" then conn:send("GET failed: " .. tostring(err2)) return end
  conn:send(v, true)
end

return {
  ["/ws"] = ws,
  ["/bin"] = bin,
  -- POST /call {"args": [...]}: one r:call, under pcall (a refusal raises:
  -- its message comes back as {"raised": ...}).
  ["POST /call"] = function(req) return reply(call(args_of(req.json.args))) end,
  -- POST /transaction {"cmds": [[...], ...]}: one r:transaction, under pcall.
  ["POST /transaction"] = function(req)
    local cmds = {}
    for i, c in ipairs(req.json.cmds) do cmds[i] = args_of(c) end
    return reply(transaction(cmds))
  end,
  -- /client: what the client object says of itself.
  ["/client"] = function()
    local again = wspush.redis(URL)
    local other = wspush.redis("redis://127.0.0.1:1/15")   -- never called
    return reply({ tostring = tostring(r), same = again == r, other_differs = other ~= r,
                   other_tostring = tostring(other) })
  end,
  -- /opts?timeout=S: a later wspush.redis(URL, opts) replaces the settings.
  ["/opts"] = function(req)
    local o = {}
    if req.query.timeout then o.timeout = tonumber(req.query.timeout) end
    if req.query.max_queued then o.max_queued = math.tointeger(tonumber(req.query.max_queued)) end
    return reply({ same = wspush.redis(URL, o) == r })
  end,
  ["/stats"] = function()
    return reply({ inflight = shared.inflight, started = shared.started,
                   generation = shared.generation })
  end,
  ["/ping"] = function() return "pong" end,
}
