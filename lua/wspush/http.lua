-- wspush.http: query/form decoding, response normalization, case-insensitive
-- headers, and the static file handler behind wspush.static().
local json = require "wspush.json"
local native = require "wspush.native"

local M = {}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
M.unescape = unescape

--- Decode "a=1&b=x+y&c=%2F" into a table. A repeated key keeps the last value;
-- a key without "=" maps to "". nil or "" gives {}.
function M.decode_query(s)
  local out = {}
  if s == nil then return out end
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k = unescape((k:gsub("%+", " ")))
    if k ~= "" then out[k] = unescape((v:gsub("%+", " "))) end
  end
  return out
end

--- application/x-www-form-urlencoded bodies follow the same rules.
M.decode_form = M.decode_query

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
M.escape = escape

--- Encode a table as a query string (keys sorted, so the result is stable).
function M.encode_query(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = escape(k) .. "=" .. escape(t[k]) end
  return table.concat(parts, "&")
end

-- Headers: keys are stored lowercase, and any spelling finds them.
local HMT = {
  __index = function(t, k) return type(k) == "string" and rawget(t, k:lower()) or nil end,
  __newindex = function(t, k, v) rawset(t, type(k) == "string" and k:lower() or k, v) end,
}

--- A case-insensitive copy of a headers table (t may be nil), without the
-- lowercase names that are keys of skip (when given).
function M.headers(t, skip)
  local h = setmetatable({}, HMT)
  for k, v in pairs(t or {}) do
    if not (skip and skip[k]) then h[k] = v end
  end
  return h
end

--- Make a headers table whose names are all lowercase (the core's, for one)
-- case-insensitive in place, without copying it.
function M.case_insensitive(t) return setmetatable(t, HMT) end

--- The headers that only serve the WebSocket handshake: the core checks them
-- and leaves them out of an upgrade's req.headers, which becomes
-- conn.headers, so that idle connections do not carry them.
M.HANDSHAKE_ONLY = {
  upgrade = true, connection = true, ["sec-websocket-key"] = true,
  ["sec-websocket-version"] = true, ["sec-websocket-extensions"] = true,
}

local function has_header(h, name)
  for k in pairs(h) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

--- Turn what a handler returned into status, body, headers (a plain table,
-- names as the handler spelled them). Bad return values are programming
-- errors and raise.
function M.normalize(body, status, headers, handler)
  status = status == nil and 200 or status
  if math.type(status) ~= "integer" or status < 100 or status > 599 then
    error("handler returned a bad status: " .. tostring(status), 2)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("handler returned headers as a " .. type(headers) .. ", want a table", 2)
  end
  local out = {}
  for k, v in pairs(headers or {}) do
    if type(k) ~= "string" or not k:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
      error("bad header name: " .. tostring(k), 2)
    end
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then error("header '" .. k .. "' must be a string", 2) end
    if v:find("[\r\n%z]") then error("header '" .. k .. "' holds CR, LF or NUL", 2) end
    out[k] = v
  end
  local bt, ctype = type(body), nil
  if bt == "table" then
    local ok, s = pcall(json.encode, body)
    if not ok then
      -- Name the handler that returned it: this file's line would say nothing.
      local info = handler and debug.getinfo(handler, "S")
      local where = info and info.what == "Lua" and info.short_src .. ":" .. info.linedefined .. ": " or ""
      error(where .. "the table the handler returned cannot be sent as JSON: "
        .. tostring(s):gsub("^.-json%.encode: ", ""), 0)
    end
    body, ctype = s, "application/json; charset=utf-8"
  elseif bt == "string" then
    ctype = "text/plain; charset=utf-8"
  elseif bt == "nil" then
    body = ""
  else
    error("handler returned a " .. bt .. " body, want a string, a table or nil", 2)
  end
  if ctype and not has_header(out, "content-type") then out["Content-Type"] = ctype end
  return status, body, out
end

--- The same-origin check of the upgrade (the C one: there is only one):
-- the Origin's host[:port] names the Host, default ports implied.
function M.same_origin(origin, host)
  if type(origin) ~= "string" or type(host) ~= "string" then return false end
  return native.same_origin(origin, host)
end

--- The reason phrase of an HTTP status, as the server's status lines have it.
M.reason = native.reason

local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8", json = "application/json; charset=utf-8",
  txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  xml = "application/xml", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
  ico = "image/x-icon", wasm = "application/wasm", woff2 = "font/woff2",
  woff = "font/woff", map = "application/json", pdf = "application/pdf",
}

function M.content_type(name)
  local ext = name:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local function forbidden() return "Forbidden\n", 403 end
local function not_found() return "Not Found\n", 404 end

-- True when real is root or lies under it (compared on resolved paths, so a
-- symlink pointing outside the root is caught).
local function inside(root, real)
  if real == root then return true end
  local prefix = root:sub(-1) == "/" and root or root .. "/"
  return real:sub(1, #prefix) == prefix
end

-- Read a regular file; nil, "dir" for a directory, nil for anything else.
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data, _, code = f:read("a")
  f:close()
  if data then return data end
  return nil, code == 21 and "dir" or nil -- EISDIR: open() succeeds, read() fails
end

--- An HTTP handler serving files under dir. opts.base: the directory a
-- relative dir is taken from (the script's directory); opts.realpath:
-- function(path) -> resolved | nil, err.
function M.static(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("static: dir must be a non-empty string", 2) end
  opts = opts or {}
  local realpath = opts.realpath or error("static: opts.realpath is required", 2)
  local root = dir
  if dir:sub(1, 1) ~= "/" and opts.base then root = opts.base .. "/" .. dir end

  return function(req)
    local params = req.params or {}
    local rel = params.path or params[#params] or ""
    -- Refuse anything that could climb out: NUL, backslashes, absolute paths,
    -- and ".." whether it came plain, percent-encoded once or twice.
    if rel:find("%z") or rel:find("\\") or rel:sub(1, 1) == "/" then return forbidden() end
    local clean = {}
    for seg in rel:gmatch("[^/]+") do
      local again = unescape(seg)
      if seg == ".." or again == ".." or again:find("[/\\%z]") then return forbidden() end
      if seg ~= "." then clean[#clean + 1] = seg end
    end
    local rroot = realpath(root)
    if not rroot then return not_found() end
    local file = rroot .. "/" .. table.concat(clean, "/")
    local real = realpath(file)
    if not real then return not_found() end
    if not inside(rroot, real) then return forbidden() end
    local data, kind = read_file(real)
    if kind == "dir" then
      -- Relative links in index.html need the trailing slash; not for the
      -- root itself (an exact route like "/docs" may have no "/docs/").
      if rel ~= "" and req.path and req.path:sub(-1) ~= "/" then
        return "", 301, { Location = req.path .. "/" }
      end
      real = realpath(real .. "/index.html")
      if not real then return not_found() end
      if not inside(rroot, real) then return forbidden() end
      data = read_file(real)
    end
    if not data then return not_found() end
    return data, 200, { ["Content-Type"] = M.content_type(real) }
  end
end

return M
