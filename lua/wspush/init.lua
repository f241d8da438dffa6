-- require "wspush": the module scripts use. The event-loop functions come
-- from the C core ("wspush.core", registered in package.preload by the
-- server, or faked by wspush.testing); this file adds what is pure Lua.
local core = require "wspush.core"
local http = require "wspush.http"

local M = {}
-- The core's own plumbing, for this file only: not part of the API.
local INTERNAL = { can_wait = true, redis_call = true, redis_open = true, redis_timeout = true,
                   metrics_family = true, metrics_series = true, metrics_add = true,
                   metrics_set = true, metrics_observe = true, metrics_render = true }
for k, v in pairs(core) do
  if type(v) == "function" and not INTERNAL[k] then M[k] = v end
end
-- Values (version, script_dir, which C may set again on reload) are read
-- through, never copied, so they cannot go stale.
setmetatable(M, { __index = function(_, k)
  local v = core[k]
  if type(v) ~= "function" then return v end
end })

local cjson = require "cjson"

--- JSON: encode, decode, null, and array() for a table that must go out as
-- an array even when empty (see wspush/json.lua).
M.json = require "wspush.json"

--- Prometheus metrics: render(), counter(), gauge(), histogram() (see
-- wspush/metrics.lua).
M.metrics = require "wspush.metrics"

local function json_type(ctype)
  local mt = ctype and ctype:match("^%s*([^;%s]+)")
  mt = mt and mt:lower()
  return mt == "application/json" or (mt and mt:match("%+json$") ~= nil)
end

--- An HTTP request to another service, waiting for its answer (only in a
-- handler's own coroutine). Returns res = { status, headers, body, json, url }
-- or nil, err. See docs/api.md, "Handlers that wait".
function M.fetch(url, opts)
  if type(url) ~= "string" then error("fetch: url must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("fetch: opts must be a table", 2) end
  local method = opts.method or "GET"
  if type(method) ~= "string" then error("fetch: opts.method must be a string", 2) end
  local headers, body = opts.headers, opts.body
  if headers ~= nil and type(headers) ~= "table" then error("fetch: opts.headers must be a table", 2) end
  if type(body) == "table" then
    local has_type = false
    for k in pairs(headers or {}) do
      if type(k) == "string" and k:lower() == "content-type" then has_type = true end
    end
    local h = {}
    for k, v in pairs(headers or {}) do h[k] = v end
    if not has_type then h["Content-Type"] = "application/json" end
    headers, body = h, M.json.encode(body)
  elseif body ~= nil and type(body) ~= "string" then
    error("fetch: opts.body must be a string or a table", 2)
  end
  local fake = core.fetch_fake
  local status, hdrs, rbody, final
  if fake then
    -- wspush.testing: a scripted answer, after opts.delay of virtual time.
    core.can_wait("wspush.fetch")
    local res, err, delay = fake(url, { method = method, headers = headers, body = body,
                                        timeout = opts.timeout, follow = opts.follow,
                                        verify = opts.verify })
    local timeout = opts.timeout or 10
    if delay and delay > timeout then
      core.sleep(timeout)
      return nil, "timeout"
    end
    if delay and delay > 0 then core.sleep(delay) end
    if not res then return nil, err end
    status, rbody, final = res.status or 200, res.body or "", url
    hdrs = {}
    for k, v in pairs(res.headers or {}) do hdrs[#hdrs + 1] = k; hdrs[#hdrs + 1] = tostring(v) end
  else
    status, hdrs, rbody, final = core.fetch(url, method, headers, body, opts.timeout, opts.max_body,
                                            opts.follow, opts.verify)
    if not status then return nil, hdrs end
  end
  local h = {}
  for i = 1, #hdrs, 2 do
    local k = hdrs[i]:lower()
    h[k] = h[k] and (h[k] .. ", " .. hdrs[i + 1]) or hdrs[i + 1]
  end
  local res = { status = status, headers = http.case_insensitive(h), body = rbody, url = final }
  if rbody ~= "" and json_type(h["content-type"]) then
    local ok, v = pcall(cjson.decode, rbody)
    if ok then res.json = v end
  end
  return res
end

-- Commands a shared pipeline cannot carry: they change the connection's
-- state for every handler on it (a subscription, a transaction, a database,
-- a login) or hold it (blocking reads). XREAD and XREADGROUP only with BLOCK.
local REFUSED = {}
for w in ([[SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE MONITOR
  WATCH UNWATCH MULTI EXEC DISCARD BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX
  BZMPOP WAIT WAITAOF QUIT RESET SELECT AUTH HELLO SYNC PSYNC]]):gmatch("%S+") do
  REFUSED[w] = true
end

local function redis_args(cmd, level)
  for i = 1, #cmd do
    local v = cmd[i]
    local t = type(v)
    if t == "number" then
      -- 3.0 goes out as "3", not "3.0"; other floats in full precision
      if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^63 then
        v = string.format("%d", v)
      else
        local s = tostring(v)
        v = tonumber(s) == v and s or string.format("%.17g", v)
      end
      cmd[i] = v
    elseif t ~= "string" then
      error("wspush.redis: argument " .. i .. " of a command is a " .. t ..
            ", not a string or a number", level + 1)
    end
  end
  local name = cmd[1]
  if name == nil then error("wspush.redis: a command needs at least its name", level + 1) end
  local up = name:upper()
  local why
  if REFUSED[up] then
    why = up
  elseif up == "CLIENT" and type(cmd[2]) == "string" and cmd[2]:upper() == "REPLY" then
    why = "CLIENT REPLY"
  elseif up == "XREAD" or up == "XREADGROUP" then
    for i = 2, #cmd do
      if cmd[i]:upper() == "BLOCK" then why = up .. " with BLOCK" end
    end
  end
  if why then
    error("wspush.redis: " .. why .. " is refused: it would hold or change the connection that " ..
          "every handler shares (see docs/api.md, wspush.redis)", level + 1)
  end
  return cmd
end

local Redis = {}

-- wspush.testing's fake: fn(cmd) -> value | nil, err [, delay].
local function fake_call(self, fake, cmd)
  core.can_wait("wspush.redis")
  local v, err, delay = fake(cmd)
  local timeout = core.redis_timeout(self)
  if delay and delay > timeout then
    core.sleep(timeout)
    return nil, "timeout"
  end
  if delay and delay > 0 then core.sleep(delay) end
  if v == nil then return nil, err end
  return v
end

--- Send one command and wait for its reply (see docs/api.md).
function Redis:call(...)
  local cmd = redis_args({ ... }, 2)
  local fake = core.redis_fake
  if fake then return fake_call(self, fake, cmd) end
  return core.redis_call(self, table.unpack(cmd))
end

--- MULTI, the commands, EXEC as one unit: the EXEC reply, or nil, err.
function Redis:transaction(cmds)
  if type(cmds) ~= "table" or #cmds == 0 then
    error("wspush.redis: transaction takes a non-empty list of commands", 2)
  end
  local list = {}
  for i, c in ipairs(cmds) do
    if type(c) ~= "table" then error("wspush.redis: command " .. i .. " is not a table", 2) end
    local copy = {}
    for k = 1, #c do copy[k] = c[k] end
    list[i] = redis_args(copy, 2)
  end
  local fake = core.redis_fake
  if fake then
    local out = {}
    for i, c in ipairs(list) do
      local v, err = fake_call(self, fake, c)
      if v == nil and err then v = { err = err } elseif v == nil then v = false end
      out[i] = v
    end
    return out
  end
  table.insert(list, 1, { "MULTI" })
  list[#list + 1] = { "EXEC" }
  return core.redis_call(self, table.unpack(list))
end

--- The client of a Redis server: redis://[[user]:password@]host[:port][/db]
-- or unix:///path[?db=N]. One per URL; it connects on its first call.
-- opts: timeout (seconds, default 5), max_queued (default 1000); for a URL
-- that has a client already, the settings given replace its own.
function M.redis(url, opts)
  if type(url) ~= "string" then error("wspush.redis: url must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("wspush.redis: opts must be a table", 2) end
  local timeout, max_queued = opts.timeout, opts.max_queued
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout > 0 and timeout <= 86400)) then
    error("wspush.redis: opts.timeout must be > 0 and at most 86400 s", 2)
  end
  if max_queued ~= nil and (math.type(max_queued) ~= "integer" or max_queued < 1 or max_queued > 1e9) then
    error("wspush.redis: opts.max_queued must be an integer from 1", 2)
  end
  local ok, r = pcall(core.redis_open, url, timeout, max_queued, Redis)
  if not ok then error(r, 2) end
  return r
end

--- An HTTP handler serving files under dir, relative to the script's
-- directory. Use it on a "/static/*path" route (or "/" for an index.html).
function M.static(dir)
  if type(dir) ~= "string" or dir == "" then error("static: dir must be a non-empty string", 2) end
  -- Read script_dir now: the script calling static() is the one loading.
  return http.static(dir, { base = core.script_dir, realpath = core.realpath })
end

return M
