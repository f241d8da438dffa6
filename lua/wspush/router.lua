-- wspush.router: turns the routes table a script returns into a matcher.
--
--   local r, err = router.compile(routes)
--   local handler, params, key = r:match("GET", "/room/lobby")
--   -- or nil, 404  |  nil, 405, "GET, HEAD"
--
-- Keys match the raw request path (no query); captures are percent-decoded.
local M = {}

local METHODS = {
  GET = true, HEAD = true, POST = true, PUT = true, PATCH = true,
  DELETE = true, OPTIONS = true, ANY = true,
}
-- Order of the Allow header, so 405 answers are stable.
local ALLOW_ORDER = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }

--- Percent-decode %XX (no '+' handling: that belongs to query strings only).
M.unescape = require("wspush.http").unescape

local Router = {}
Router.__index = Router

local function fail(why, key)
  return nil, string.format("routes: %s (key '%s')", why, tostring(key))
end

-- Split "/a/b/c" into {"a","b","c"}; "/" gives {""}, "/a/" gives {"a",""}.
local function segments(path)
  local out = {}
  for seg in (path:sub(2) .. "/"):gmatch("([^/]*)/") do out[#out + 1] = seg end
  return out
end

-- Parse a path key into a pattern, or return nil if it is an exact path.
local function parse_pattern(path, key)
  if not path:find("/[:*]") then return nil end
  local segs, names, pat = segments(path), {}, { literals = 0, shape = {} }
  for i, seg in ipairs(segs) do
    local sigil, name = seg:sub(1, 1), seg:sub(2)
    if sigil == ":" or sigil == "*" then
      if sigil == "*" and name == "" then name = "splat" end
      if not name:match("^[%a_][%w_]*$") then
        return fail("bad capture name '" .. seg .. "'", key)
      end
      if names[name] then return fail("capture '" .. name .. "' used twice", key) end
      if sigil == "*" and i ~= #segs then
        return fail("a *splat must be the last segment", key)
      end
      names[name] = true
      segs[i] = { sigil = sigil, name = name }
      pat.splat = pat.splat or sigil == "*"
      pat.shape[i] = sigil
    else
      pat.literals = pat.literals + 1
      pat.shape[i] = seg
    end
  end
  pat.segs, pat.shape = segs, table.concat(pat.shape, "/")
  return pat
end

-- Return params (with captures also in order as params[1], params[2], ...)
-- when the pattern matches the given path segments, else nil.
local function match_pattern(pat, psegs)
  local params, segs = {}, pat.segs
  for i, seg in ipairs(segs) do
    if type(seg) == "table" then
      if seg.sigil == "*" then
        if i > #psegs then return nil end -- "/files/*p" needs at least "/files/"
        local rest = M.unescape(table.concat(psegs, "/", i))
        params[seg.name], params[#params + 1] = rest, rest
        return params
      end
      local v = psegs[i]
      if v == nil or v == "" then return nil end
      v = M.unescape(v)
      params[seg.name], params[#params + 1] = v, v
    elseif psegs[i] ~= seg then
      return nil
    end
  end
  if #psegs ~= #segs then return nil end
  return params
end

-- Sort patterns: more literal segments, then :param before *splat, then
-- more segments, then a literal earlier in the path ("/x/:b" before "/:a/x"),
-- then key text: pairs() order is not deterministic, this order is.
local function more_specific(a, b)
  if a.literals ~= b.literals then return a.literals > b.literals end
  if a.splat ~= b.splat then return not a.splat end
  if #a.segs ~= #b.segs then return #a.segs > #b.segs end
  for i = 1, #a.segs do
    local la, lb = type(a.segs[i]) == "string", type(b.segs[i]) == "string"
    if la ~= lb then return la end
  end
  return a.path < b.path
end

--- Compile routes (a table, or a function = catch-all) into a router.
-- Returns router | nil, "routes: <why> (key '...')".
function M.compile(routes)
  local self = setmetatable({ exact = {}, patterns = {}, by_key = {} }, Router)
  if type(routes) == "function" then
    self.catch_all = routes
    return self
  end
  if type(routes) ~= "table" then
    return nil, "routes: the script must return a table or a function, got a " .. type(routes)
  end
  -- A server that would answer 404 to everything is a mistake, not a choice.
  if next(routes) == nil then
    return nil, "routes: the script returned an empty table: no request would be answered "
      .. "(return at least one route)"
  end
  local shapes = {} -- exact path or pattern shape -> { method -> key }, for duplicates
  local by_shape = {} -- pattern shape -> pattern entry (one entry per shape)
  for key, value in pairs(routes) do
    if type(key) ~= "string" then return fail("keys must be strings", key) end
    if key == "*" then
      if type(value) ~= "function" then return fail("'*' must be a router function", key) end
      self.catch_all = value
      goto continue
    end
    local vt = type(value)
    if vt ~= "table" and vt ~= "function" then
      return fail("a route must be a table (WebSocket) or a function (HTTP), got a " .. vt, key)
    end
    local method, path = key:match("^(%u+) +(/%S*)$")
    if not method then
      if key:match("^%u+ ") then return fail("bad path", key) end
      path = key
      if not path:match("^/%S*$") then return fail("a path must start with '/' and hold no spaces", key) end
      method = "GET" -- a function also answers HEAD: see match()
    elseif not METHODS[method] then
      return fail("unknown method '" .. method .. "'", key)
    end
    if vt == "table" and method ~= "GET" and method ~= "ANY" then
      return fail("a WebSocket endpoint only answers GET", key)
    end
    if vt == "table" then method = "GET" end -- upgrades are GET, whatever was written
    local pat, err = parse_pattern(path, key)
    if err then return nil, err end
    local shape = pat and pat.shape or path
    shapes[shape] = shapes[shape] or {}
    local other = shapes[shape][method]
    if other then
      local a, b = other, key
      if b < a then a, b = b, a end
      return fail("duplicate route for " .. method .. " " .. path .. ", also key '" .. a .. "'", b)
    end
    shapes[shape][method] = key
    local entry
    if pat then
      entry = by_shape[shape]
      if not entry then
        entry = pat
        entry.path, entry.methods = path, {}
        by_shape[shape] = entry
        self.patterns[#self.patterns + 1] = entry
      end
    else
      entry = self.exact[path] or { methods = {} }
      self.exact[path] = entry
    end
    -- Two spellings of one shape ("/r/:a", "/r/:b") share an entry; each
    -- method keeps its own capture names.
    entry.methods[method] = { handler = value, key = key, pat = pat }
    self.by_key[key] = value
    ::continue::
  end
  table.sort(self.patterns, more_specific)
  return self
end

-- Pick the handler for a method among an entry's methods; HEAD falls back to
-- a GET HTTP function, anything falls back to ANY.
local function pick(methods, method)
  local m = methods[method]
  if not m and method == "HEAD" and methods.GET and type(methods.GET.handler) == "function" then
    m = methods.GET
  end
  return m or methods.ANY
end

local function add_allow(allow, methods)
  for m, r in pairs(methods) do
    if m == "ANY" then
      for _, x in ipairs(ALLOW_ORDER) do allow[x] = true end
    else
      allow[m] = true
      if m == "GET" and type(r.handler) == "function" then allow.HEAD = true end
    end
  end
end

--- match(method, path) -> handler, params, key | nil, 404 | nil, 405, allow
-- key is nil for a handler found by the catch-all router.
function Router:match(method, path)
  local allow
  local e = self.exact[path]
  if e then
    local r = pick(e.methods, method)
    if r then return r.handler, {}, r.key end
    allow = {}
    add_allow(allow, e.methods)
  end
  -- Only an origin-form path ("/...") can match a pattern: segments() drops
  -- the first byte, so "*room/x" (which llhttp accepts) would otherwise be
  -- matched as "/room/x".
  local psegs
  for _, pat in ipairs(path:sub(1, 1) == "/" and self.patterns or {}) do
    psegs = psegs or segments(path)
    local r = pick(pat.methods, method)
    local params = match_pattern(r and r.pat or pat, psegs)
    if params then
      if r then return r.handler, params, r.key end
      allow = allow or {}
      add_allow(allow, pat.methods)
    end
  end
  if self.catch_all then
    local h, params = self.catch_all(method, path)
    if h ~= nil then
      if type(h) ~= "function" and type(h) ~= "table" then
        error("catch-all router returned a " .. type(h) .. " handler for " .. path, 2)
      end
      return h, params or {}, nil
    end
  end
  if not allow then return nil, 404 end
  local list = {}
  for _, m in ipairs(ALLOW_ORDER) do
    if allow[m] then list[#list + 1] = m end
  end
  return nil, 405, table.concat(list, ", ")
end

--- The value a route key was bound to (nil if the key is gone).
function Router:lookup(key)
  return self.by_key[key]
end

return M
