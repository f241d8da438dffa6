-- wspush.server: the glue the C core calls. Internal; scripts use "wspush".
--
-- Contract with the C core (its Lua bindings call exactly these):
--   S.compile(routes, script_dir)    -> app | nil, err   (err has no file:line)
--   S.http(app, req)                 -> status, body, headers
--   S.upgrade(app, req, protocols)   -> handler, key, subprotocol, settings, data
--                                     | nil, status, reason[, headers[, why]]
--     (why: "origin" or "route", for the refusal counts; else the handler's hook)
--   S.resolve(app, key[, path])      -> handler table | nil
--   S.project_modules(dirs)          -> { module name = real file path }
-- req = { method, path, rawquery (string|nil), headers (lowercase names,
-- repeats joined with ", "), body (string), remote }. S.http and S.upgrade
-- add req.query, req.params and make req.headers case-insensitive; C takes
-- conn.query/params/headers from req after S.upgrade returns.
-- Errors raised by handlers propagate: C catches them (500 / close 1011).
-- S.http and S.upgrade run in a task (core/ltask.c): a handler they call
-- may wait (wspush.sleep, wspush.fetch), and they return when it is done.
local router = require "wspush.router"
local http = require "wspush.http"
local cjson = require "cjson"

local S = {}

-- Read by the core (lreq.c) when it builds an upgrade request.
S.HANDSHAKE_ONLY = http.HANDSHAKE_ONLY

local function plain(status, extra)
  local headers = extra or {}
  headers["Content-Type"] = "text/plain; charset=utf-8"
  return status, status .. " " .. http.reason(status) .. "\n", headers
end

function S.compile(routes, script_dir)
  local r, err = router.compile(routes)
  if not r then return nil, err end
  return { router = r, script_dir = script_dir }
end

-- Fill req.query/params/headers; returns handler, key (nil for the
-- catch-all) or nil, status, allow.
local function route(app, req)
  req.headers = http.case_insensitive(req.headers or {})
  req.query = http.decode_query(req.rawquery)
  local h, params, key = app.router:match(req.method, req.path)
  if not h then return nil, params, key end -- params is the status here
  req.params = params
  return h, key
end

-- The media type without parameters, lowercase: "application/json".
local function media_type(req)
  local mt = (req.headers["content-type"] or ""):match("^%s*([^;%s]+)")
  return mt and mt:lower()
end

function S.http(app, req)
  local h, status, allow = route(app, req)
  if not h then return plain(status, allow and { Allow = allow }) end
  if type(h) == "table" then
    -- A WebSocket route reached without a (valid) upgrade.
    if req.headers.upgrade then
      return 400, "Upgrade must be websocket\n", { ["Content-Type"] = "text/plain; charset=utf-8" }
    end
    if req.method == "GET" or req.method == "HEAD" then
      return plain(426, { Upgrade = "websocket", ["Sec-WebSocket-Version"] = "13" })
    end
    return plain(405, { Allow = "GET" })
  end
  local body, mt = req.body or "", media_type(req)
  if mt == "application/x-www-form-urlencoded" then
    req.form = http.decode_form(body)
  elseif mt and body ~= "" and (mt == "application/json" or mt:match("%+json$")) then
    local ok, v = pcall(cjson.decode, body)
    if not ok then return plain(400) end
    req.json = v
  end
  -- HEAD: C sends the GET response's headers and length without its body.
  local rbody, rstatus, rheaders = h(req)
  return http.normalize(rbody, rstatus, rheaders, h)
end

-- The route's own settings, read here, inside the protected call: a handler
-- table may have a metatable (inheritance, a strict mode that raises), and C
-- only reads the plain table this returns.
local SETTINGS = { "max_message", "max_buffered", "idle_timeout", "rate_limit", "rate_burst",
                   "backpressure", "max_pending" }
local COMPRESSION = { "level", "threshold", "window_bits", "mem_level", "context_takeover" }

local function settings_of(h)
  local s = {}
  for _, k in ipairs(SETTINGS) do s[k] = h[k] end
  local c = h.compression
  if type(c) == "table" then
    s.compression = {}
    for _, k in ipairs(COMPRESSION) do s.compression[k] = c[k] end
  else
    s.compression = c
  end
  return s
end

function S.upgrade(app, req, protocols)
  req.method = req.method or "GET"
  local h, key, allow = route(app, req)
  if not h then
    local status = key
    if status == 405 then return nil, 405, http.reason(405), { Allow = allow }, "route" end
    return nil, 404, http.reason(404), nil, "route"
  end
  if type(h) ~= "table" then return nil, 404, http.reason(404), nil, "route" end
  local origin = req.headers.origin
  local ok
  if h.check_origin then
    ok = h.check_origin(origin, req)
  else
    ok = origin == nil or http.same_origin(origin, req.headers.host)
  end
  if not ok then return nil, 403, "cross-origin request refused", nil, "origin" end
  -- upgrade(req): true, or a table that becomes conn.data, accepts; false
  -- or nil [, status [, headers [, body]]] refuses (403 by default). It may wait.
  local data
  if h.upgrade then
    local yes, status, headers, body = h.upgrade(req)
    if type(yes) == "table" then
      data = yes
    elseif yes ~= true then
      if yes ~= nil and yes ~= false then
        error("upgrade must return true, a table, false or nil, not a " .. type(yes))
      end
      status = status or 403
      if math.type(status) ~= "integer" or status < 400 or status > 599 then
        error("upgrade refused with status " .. tostring(status) .. ": use 400-599")
      end
      if headers ~= nil and type(headers) ~= "table" then
        error("upgrade's headers must be a table, not a " .. type(headers))
      end
      if body ~= nil and type(body) ~= "string" then
        error("upgrade's body must be a string, not a " .. type(body))
      end
      return nil, status, body or http.reason(status), headers
    end
  end
  local sub
  if protocols and #protocols > 0 and h.select_subprotocol then
    sub = h.select_subprotocol(protocols, req)
    if sub ~= nil then
      local offered = false
      for _, p in ipairs(protocols) do offered = offered or p == sub end
      if not offered then
        error("select_subprotocol returned '" .. tostring(sub) .. "', which the client did not offer")
      end
    end
  end
  return h, key, sub, settings_of(h), data
end

--- Re-find a connection's handler after a reload. key is the route key S.upgrade
-- returned; for a connection routed by the catch-all (key nil), pass its path
-- to ask the catch-all again.
function S.resolve(app, key, path)
  local h
  if key ~= nil then
    h = app.router:lookup(key)
  elseif path ~= nil then
    h = app.router:match("GET", path)
  end
  return type(h) == "table" and h or nil
end

--- The modules the script loaded from the project's own directories (dirs:
-- real paths), as name -> real file path. The server's own runtime
-- ("wspush" and "wspush.*") is not part of a project: it never reloads.
function S.project_modules(dirs)
  local realpath = require("wspush.core").realpath
  local out = {}
  for name in pairs(package.loaded) do
    if type(name) == "string" and name ~= "wspush" and not name:match("^wspush%.") then
      local file = package.searchpath(name, package.path)
      local real = file and realpath(file)
      if real then
        for _, d in ipairs(dirs) do
          if real:sub(1, #d + 1) == d .. "/" then
            out[name] = real
            break
          end
        end
      end
    end
  end
  return out
end

return S
