-- wspush.fetch from every kind of handler (test_fetch.py). The test runs an
-- HTTP server of its own on 127.0.0.1 and tells this script its port through
-- /config?port=N (kept in wspush.shared); every other URL comes whole from
-- the test.
local wspush = require "wspush"
local testjson = require "testjson"
local enc, reply = testjson.encode, testjson.reply

local shared = wspush.shared
shared.events = shared.events or {}

local function backend(path)
  assert(shared.port, "the test did not call /config yet")
  return "http://127.0.0.1:" .. shared.port .. path
end

local function event(e) shared.events[#shared.events + 1] = e end

-- What a fetch returned, as plain values (the result's shape is under test,
-- so it is copied field by field, not trusted to encode itself).
local function describe(res, err, lookups)
  if not res then return { ok = false, err = err } end
  local out = { ok = true, status = res.status, body = res.body, url = res.url,
                has_json = res.json ~= nil, headers = {}, lookups = {} }
  for k, v in pairs(res.headers) do out.headers[k] = v end
  if res.json ~= nil then out.json = enc(res.json) end
  for _, name in ipairs(lookups or {}) do out.lookups[name] = res.headers[name] or false end
  return out
end

-- /ws: the upgrade asks the auth service (the token is the query's).
local auth = {}
function auth.upgrade(req)
  local t0 = wspush.now()
  local res, err = wspush.fetch(backend("/auth"), {
    headers = { Authorization = "Bearer " .. (req.query.token or "") }, timeout = 5 })
  event({ kind = "upgrade", token = req.query.token, err = err or false,
          elapsed = wspush.now() - t0 })
  if not res then return false, 503, nil, "auth unavailable: " .. err end
  if res.status ~= 200 then
    return false, 401, { ["WWW-Authenticate"] = 'Bearer realm="wspush"' }, "bad token"
  end
  return { user = res.json.user, role = res.json.role }
end
function auth.open(conn) conn:send(enc({ user = conn.data.user, role = conn.data.role })) end

-- /many: each message is a URL to fetch; the answer is "status body".
local many = {}
function many.on_message(conn, url)
  local res, err = wspush.fetch(url, { timeout = 10 })
  conn:send(res and (res.status .. " " .. res.body) or ("error " .. err))
end

local echo = {}
function echo.on_message(conn, msg) conn:send(msg) end

-- /wait: fetch the message's URL; the test closes the client meanwhile.
local wait = {}
function wait.on_message(conn, url)
  local t0 = wspush.now()
  local res, err = wspush.fetch(url, { timeout = 10 })
  event({ kind = "fetch returned", conn = conn.id, ok = res ~= nil, err = err or false,
          elapsed = wspush.now() - t0, send = select(2, conn:send("late")) or false })
  conn.data.handler_done = true
end
function wait.on_close(conn, code)
  event({ kind = "on_close", conn = conn.id, code = code,
          handler_done = conn.data.handler_done == true })
end

-- POST /fetch {url =, opts =, lookups = {names}}: one fetch, its result as JSON.
local function fetch_route(req)
  local spec = req.json
  if spec.rep then -- a large body, made here rather than sent in
    spec.opts = spec.opts or {}
    spec.opts.body = string.rep(spec.rep[1], spec.rep[2])
  end
  local t0 = wspush.now()
  local res, err = wspush.fetch(spec.url, spec.opts)
  local out = describe(res, err, spec.lookups)
  out.elapsed = wspush.now() - t0
  return reply(out)
end

-- POST /fetch_seq {urls = {...}}: sequential fetches, their results.
local function fetch_seq(req)
  local out = {}
  for i, url in ipairs(req.json.urls) do
    local res, err = wspush.fetch(url)
    out[i] = describe(res, err)
  end
  return reply(out)
end

-- /slowproxy?tag=T: an HTTP handler waiting on a slow backend (3 s); the
-- test's client leaves meanwhile.
local function slowproxy(req)
  local t0 = wspush.now()
  local res, err = wspush.fetch(backend("/slow?delay=3&tag=" .. req.query.tag))
  event({ kind = "slowproxy returned", ok = res ~= nil, err = err or false,
          elapsed = wspush.now() - t0 })
  return res and res.body or err
end

-- /proxy: an HTTP handler that answers with what the backend's /hello said.
local function proxy(req)
  local res, err = wspush.fetch(backend("/hello?from=proxy"))
  if not res then return "proxy failed: " .. err, 502 end
  return res.body, res.status, { ["X-Backend-Type"] = res.headers["content-type"] }
end

-- With /config?webhook=1, stopping tells the backend (a handler that waits
-- at shutdown: the server exits once it is done).
wspush.on_shutdown(function()
  if not shared.webhook then return end
  local res, err = wspush.fetch(backend("/slow?delay=0.3&tag=shutdown"), { method = "POST", body = "bye" })
  wspush.log("info", "shutdown webhook: " .. (res and res.status or err))
end)

return {
  ["/config"] = function(req)
    shared.port = tonumber(req.query.port)
    shared.webhook = req.query.webhook == "1"
    return "ok"
  end,
  ["/events"] = function() return reply(shared.events) end,
  ["/ws"] = auth,
  ["/many"] = many,
  ["/echo"] = echo,
  ["/wait"] = wait,
  ["POST /fetch"] = fetch_route,
  ["POST /fetch_seq"] = fetch_seq,
  ["/proxy"] = proxy,
  ["/slowproxy"] = slowproxy,
  ["/ping"] = function() return "pong" end,
}
