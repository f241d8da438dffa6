-- fuzz_route.lua: the Lua half of tests/fuzz/fuzz_route.c. Loaded once per
-- process; returns { one = function(method, path, query, ctype, body),
-- unescape = ..., router_unescape = ..., decode_query = ... }.
--
-- one() raises "invariant failed: ..." when wspush.router / wspush.http /
-- wspush.server break a property; the C driver turns any error into abort().
-- The checks are written against an independent reference (splitting with
-- plain string.find, a byte-loop percent decoder), not by calling the code
-- under test twice.
local router = require "wspush.router"
local http = require "wspush.http"
local S = require "wspush.server"
local cjson = require "cjson"

local function check(cond, fmt, ...)
  if not cond then error("invariant failed: " .. string.format(fmt, ...), 2) end
end

-- --- reference implementations ---

-- %XX with two hex digits -> byte; anything else is kept as is.
local function ref_unescape(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    local hx = s:sub(i + 1, i + 2)
    if c == "%" and #hx == 2 and hx:find("^[0-9A-Fa-f][0-9A-Fa-f]$") then
      out[#out + 1] = string.char(tonumber(hx, 16))
      i = i + 3
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- "/a/b" -> {"a", "b"}; "/" -> {""}; "/a/" -> {"a", ""}. s starts with "/".
local function split(s)
  local out, i = {}, 2
  while true do
    local j = s:find("/", i, true)
    if not j then
      out[#out + 1] = s:sub(i)
      return out
    end
    out[#out + 1] = s:sub(i, j - 1)
    i = j + 1
  end
end

-- Params a route path (":name", "*name", "*" captures) gives for a request
-- path, or nil. Only an origin-form path ("/...") can match a route.
local function ref_match(kpath, path)
  if path:sub(1, 1) ~= "/" then return nil end
  local ks, ps = split(kpath), split(path)
  local params = {}
  for i, k in ipairs(ks) do
    local sigil, name = k:sub(1, 1), k:sub(2)
    if sigil == "*" then
      if name == "" then name = "splat" end
      if i > #ps then return nil end
      local v = ref_unescape(table.concat(ps, "/", i))
      params[name] = v
      params[#params + 1] = v
      return params
    elseif sigil == ":" then
      if ps[i] == nil or ps[i] == "" then return nil end
      local v = ref_unescape(ps[i])
      params[name] = v
      params[#params + 1] = v
    elseif ps[i] ~= k then
      return nil
    end
  end
  if #ps ~= #ks then return nil end
  return params
end

local function same_table(a, b, what)
  for k, v in pairs(a) do check(b[k] == v, "%s: [%q] = %q vs %q", what, tostring(k), tostring(v), tostring(b[k])) end
  for k, v in pairs(b) do check(a[k] == v, "%s: [%q] = %q vs %q", what, tostring(k), tostring(a[k]), tostring(v)) end
end

-- --- the application under test ---

local ROOT = "/nonexistent-wspush-fuzz-root"

-- realpath without a file system: lexical "." / ".." resolution. The static
-- handler promises to refuse ".." before asking, so every path it asks about
-- must stay under the root.
local function normalize(p)
  local out = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      out[#out] = nil
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  return "/" .. table.concat(out, "/")
end

local function fake_realpath(p)
  check(type(p) == "string", "realpath got a %s", type(p))
  if p:find("\0", 1, true) then return nil, "NUL in path" end
  local n = normalize(p)
  check(n == ROOT or n:sub(1, #ROOT + 1) == ROOT .. "/", "static asked realpath(%q): outside the root", p)
  return n
end

local function echo(req)
  return { method = req.method, path = req.path, params = req.params, query = req.query, form = req.form }
end

local function echo_text(req)
  return table.concat(req.params, "\n")
end

local WS = { on_message = function() end }

local function catch_all(method, path)
  if path:sub(1, 5) == "/dyn/" then return echo, { rest = path:sub(6) } end
  if path == "/dynws" then return WS end
  return nil
end

local routes = {
  ["/"] = echo,
  ["/room/lobby"] = echo,
  ["/room/:name"] = echo,
  ["POST /room/:name"] = echo_text,
  ["/files/*"] = echo,
  ["/api/users/:id"] = echo,
  ["/api/:x/:y"] = echo_text,
  ["/api/*rest"] = echo,
  ["ANY /any/:a/*rest"] = echo,
  ["DELETE /items/:id"] = echo,
  ["PUT /items/:item"] = echo,
  ["/ws/:room"] = WS,
  ["/static/*path"] = http.static(ROOT, { realpath = fake_realpath }),
  ["/a%20b/:c"] = echo,
  ["HEAD /h"] = echo,
  ["*"] = catch_all,
}

local app = assert(S.compile(routes, "/nonexistent"))
local rt = app.router

-- Route keys as { key, method, path, kind }.
local KEYS = {}
for key, v in pairs(routes) do
  if key ~= "*" then
    local m, p = key:match("^(%u+) +(/%S*)$")
    if not m then m, p = "GET", key end
    if type(v) == "table" then m = "GET" end
    KEYS[#KEYS + 1] = { key = key, method = m, path = p, fn = type(v) == "function" }
  end
end
table.sort(KEYS, function(a, b) return a.key < b.key end)

local ALLOW_ORDER = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }

local function compatible(k, method)
  return k.method == method or k.method == "ANY" or (method == "HEAD" and k.method == "GET" and k.fn)
end

local function literals(kpath)
  local n = 0
  for _, s in ipairs(split(kpath)) do
    local c = s:sub(1, 1)
    if c ~= ":" and c ~= "*" then n = n + 1 end
  end
  return n
end

local function is_pattern(kpath) return kpath:find("/[:*]") ~= nil end

-- --- checks ---

local function check_match(method, path)
  local h, a, b = rt:match(method, path)
  -- what the reference says
  local compat, allow = {}, {}
  for _, k in ipairs(KEYS) do
    local p = ref_match(k.path, path)
    if p then
      if compatible(k, method) then
        compat[#compat + 1] = { k = k, params = p }
      else
        if k.method == "ANY" then
          for _, m in ipairs(ALLOW_ORDER) do allow[m] = true end
        else
          allow[k.method] = true
          if k.method == "GET" and k.fn then allow.HEAD = true end
        end
      end
    end
  end
  if h ~= nil then
    check(type(a) == "table", "match returned params as a %s", type(a))
    for pk, pv in pairs(a) do
      check(type(pv) == "string", "param %s is a %s", tostring(pk), type(pv))
      check(type(pk) == "string" or math.type(pk) == "integer", "param key %s", tostring(pk))
    end
    if b ~= nil then
      check(type(b) == "string" and routes[b] == h, "key %q does not name the handler", tostring(b))
      local found
      for _, c in ipairs(compat) do
        if c.k.key == b then found = c end
      end
      check(found, "%s %q matched route %q, which the reference does not match", method, path, b)
      same_table(a, found.params, "params of " .. b)
      -- nothing matching is more specific: an exact path first, then more literal segments
      for _, c in ipairs(compat) do
        if not is_pattern(c.k.path) then
          check(not is_pattern(found.k.path), "%q: pattern %q beat exact %q", path, b, c.k.key)
        elseif is_pattern(found.k.path) then
          check(literals(c.k.path) <= literals(found.k.path), "%q: %q beat more literal %q", path, b, c.k.key)
        end
      end
    else
      check(#compat == 0, "%s %q went to the catch-all but route %q matches", method, path,
        compat[1] and compat[1].k.key or "?")
      check(catch_all(method, path) == h, "catch-all handler mismatch")
    end
  else
    check(#compat == 0, "%s %q: no handler, but route %q matches", method, path, compat[1] and compat[1].k.key or "?")
    check(catch_all(method, path) == nil, "catch-all would answer %q", path)
    local list = {}
    for _, m in ipairs(ALLOW_ORDER) do
      if allow[m] then list[#list + 1] = m end
    end
    if #list == 0 then
      check(a == 404 and b == nil, "%s %q: want 404, got %s %s", method, path, tostring(a), tostring(b))
    else
      check(a == 405, "%s %q: want 405, got %s", method, path, tostring(a))
      check(b == table.concat(list, ", "), "%s %q: Allow %q, want %q", method, path, tostring(b), table.concat(list, ", "))
    end
  end
  return h, a, b
end

local function check_decode(s, what)
  local t = http.decode_query(s)
  check(type(t) == "table", "decode_query(%s) gave a %s", what, type(t))
  for k, v in pairs(t) do
    check(type(k) == "string" and k ~= "", "%s: key %q", what, tostring(k))
    check(type(v) == "string", "%s: value of %q is a %s", what, k, type(v))
  end
  -- encode_query round trip
  same_table(http.decode_query(http.encode_query(t)), t, "decode(encode(decode(" .. what .. ")))")
  same_table(http.decode_form(s), t, "decode_form vs decode_query")
  return t
end

local function check_escape(x, what)
  local e = http.escape(x)
  check(not e:find("[^A-Za-z0-9%-%._~%%]"), "escape(%s) left %q", what, e)
  check(http.unescape(e) == x, "unescape(escape(%s)) ~= %s", what, what)
  -- unescape(x) itself is compared with a C reference in fuzz_route.c
end

local REASON_OK = { [400] = true, [403] = true, [404] = true, [405] = true, [426] = true }

local function check_http(method, path, query, ctype, body, h)
  local headers = { host = "example.com" }
  if ctype then headers["content-type"] = ctype end
  local req = { method = method, path = path, rawquery = query, headers = headers, body = body, remote = "127.0.0.1" }
  local ok, status, rbody, rheaders = pcall(S.http, app, req)
  check(ok, "S.http raised on %s %q: %s", method, path, tostring(status))
  check(math.type(status) == "integer" and status >= 100 and status <= 599, "bad status %s", tostring(status))
  check(type(rbody) == "string", "body is a %s", type(rbody))
  check(type(rheaders) == "table", "headers are a %s", type(rheaders))
  for k, v in pairs(rheaders) do
    check(type(k) == "string" and k:match("^[!#$%%&'*+%-.^_`|~%w]+$"), "header name %q", tostring(k))
    check(type(v) == "string" and not v:find("[\r\n%z]"), "header %s value %q", k, tostring(v))
  end
  local mt = ctype and ctype:match("^%s*([^;%s]+)")
  mt = mt and mt:lower()
  local json_type = mt and (mt == "application/json" or mt:match("%+json$"))
  if h == nil then
    check(status == 404 or status == 405, "no route but status %d", status)
  elseif type(h) == "table" then
    check(status == 426 or status == 405 or status == 400, "WebSocket route answered %d", status)
  elseif status == 400 then
    -- A JSON body that does not parse is refused before any HTTP handler runs.
    check(json_type and body ~= "", "%q answered 400", path)
  elseif h == routes["/static/*path"] then
    check(status == 403 or status == 404, "static answered %d for %q", status, path)
  elseif h == echo then
    check(status == 200, "echo answered %d", status)
    local got = cjson.decode(rbody)
    local want = {}
    for k, v in pairs(req.params) do want[tostring(k)] = v end -- JSON keys are strings
    same_table(got.params, want, "echoed params")
    same_table(got.query, req.query, "echoed query")
    check(got.path == path and got.method == method, "echoed path/method")
    if mt == "application/x-www-form-urlencoded" then
      same_table(got.form or {}, http.decode_form(body), "echoed form")
    end
  else
    check(status == 200 and rbody == table.concat(req.params, "\n"), "echo_text")
  end
  check(REASON_OK[status] or status == 200 or status == 301, "status %d", status)

  -- the upgrade path over the same request (GET, no Origin: same-origin not asked)
  local ureq = { method = "GET", path = path, rawquery = query, headers = { host = "example.com" }, body = "" }
  local uok, uh, ukey, usub = pcall(S.upgrade, app, ureq, {})
  check(uok, "S.upgrade raised on %q: %s", path, tostring(uh))
  if uh ~= nil then
    check(type(uh) == "table" and usub == nil, "upgrade gave a %s", type(uh))
    check(ukey == nil or routes[ukey] == uh, "upgrade key %q", tostring(ukey))
    check(S.resolve(app, ukey, path) == uh, "resolve(%q) lost the handler", tostring(ukey))
  else
    check(ukey == 404 or ukey == 405 or ukey == 403, "upgrade refused with %s", tostring(ukey))
    check(type(usub) == "string", "upgrade reason is a %s", type(usub))
  end
end

local M = {}

function M.one(method, path, query, ctype, body)
  for i, x in ipairs({ method, path, query or "", ctype or "", body }) do check_escape(x, "part " .. i) end
  check_decode(query, "query")
  check_decode(body, "body")
  local h = check_match(method, path)
  check_http(method, path, query, ctype, body, h)
end

M.unescape = http.unescape
M.router_unescape = router.unescape
M.decode_query = http.decode_query
return M
