-- Handlers that wait, under wspush.testing: wspush.sleep runs on the virtual
-- clock and wspush.fetch is answered by app:fake_fetch, with the server's own
-- task code (core/ltask.c) underneath.
local testing = require "wspush.testing"

local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local SCRIPT = script([[
local wspush = require "wspush"
local ws = { max_pending = 3 }
function ws.upgrade(req)
  local res, err = wspush.fetch("http://auth.test/check?token=" .. (req.query.token or ""))
  if not res then return false, 503, nil, err end
  if res.status ~= 200 then return false, 401, { ["WWW-Authenticate"] = "Bearer" } end
  return { user = res.json.user }
end
function ws.open(conn) conn:send("hi " .. conn.data.user) end
function ws.on_message(conn, msg)
  local secs = tonumber(msg:match("^sleep (.+)"))
  if secs then
    local ok, err = wspush.sleep(secs)
    conn:send("woke " .. tostring(ok) .. " " .. tostring(err))
  elseif msg == "save" then
    local res, err = wspush.fetch("http://store.test/save", { method = "POST", body = { text = msg } })
    conn:send(res and ("saved " .. res.status .. " " .. res.headers["x-id"]) or ("not saved: " .. err))
  elseif msg == "sort" then
    table.sort({ 3, 1, 2 }, function(a, b) wspush.sleep(0) return a < b end)
  else
    conn:send("echo " .. msg)
  end
end
return { ["/ws"] = ws }
]])

local function auth(app)
  app:fake_fetch(function(url, opts)
    if url:match("^http://auth%.test/") then
      if url:match("token=good") then
        return { status = 200, headers = { ["Content-Type"] = "application/json" },
                 body = '{"user":"ann"}' }
      elseif url:match("token=slow") then
        return { status = 200, body = "{}" }, nil, 30
      end
      return { status = 401, body = "no" }
    end
    assert.equal("POST", opts.method)
    assert.equal('{"text":"save"}', opts.body)
    assert.equal("application/json", opts.headers["Content-Type"])
    return { status = 201, headers = { ["X-Id"] = "7" } }, nil, 0.5
  end)
end

describe("handlers that wait", function()
  it("authorise an upgrade through a fetch and fill conn.data", function()
    local app = testing.load(SCRIPT)
    auth(app)
    local c = assert(app:connect("/ws", { query = { token = "good" } }))
    assert.same({ "hi ann" }, c:texts())
    local none, status = app:connect("/ws", { query = { token = "bad" } })
    assert.is_nil(none)
    assert.equal(401, status)
  end)

  it("answer 503 when the upgrade's fetch times out", function()
    local app = testing.load(SCRIPT)
    auth(app)
    -- The fake takes 30 s, over the call's default timeout (10 s), and over
    -- --upgrade-timeout (5 s): the connection is refused when that passes.
    local none, status = app:connect("/ws", { query = { token = "slow" } })
    assert.is_nil(none)
    assert.equal(503, status)
  end)

  it("sleep on the virtual clock, keeping the connection's order", function()
    local app = testing.load(SCRIPT)
    auth(app)
    local c = assert(app:connect("/ws", { query = { token = "good" } }))
    c:receive("sleep 2")
    c:receive("after")
    assert.same({ "hi ann" }, c:texts())
    app:advance(1.9)
    assert.same({ "hi ann" }, c:texts())
    app:advance(0.1)
    assert.same({ "hi ann", "woke true nil", "echo after" }, c:texts())
  end)

  it("wait for a faked fetch and shape its answer", function()
    local app = testing.load(SCRIPT)
    auth(app)
    local c = assert(app:connect("/ws", { query = { token = "good" } }))
    c:receive("save")
    app:advance(0.5)
    assert.same({ "hi ann", "saved 201 7" }, c:texts())
  end)

  it("end a waiting sleep with nil, closed when the client leaves", function()
    local app = testing.load(SCRIPT)
    auth(app)
    local c = assert(app:connect("/ws", { query = { token = "good" } }))
    local conn = c.conn
    c:receive("sleep 100")
    c:close(1000)
    -- the handler went on at once: its send found the connection closed
    assert.same({ nil, "closed" }, { conn:send("x") })
    assert.equal(0, app.core.count())
  end)

  it("refuse to wait inside a C call, naming the function", function()
    local app = testing.load(SCRIPT, { catch = true })
    auth(app)
    local c = assert(app:connect("/ws", { query = { token = "good" } }))
    c:receive("sort")
    assert.equal(1011, c.close_code)
    local found = false
    for _, rec in ipairs(app.logs) do
      found = found or rec.message:find("wspush.sleep cannot wait here", 1, true) ~= nil
    end
    assert.is_true(found)
  end)

  it("make a fetch without a fake an error, not a network call", function()
    local app = testing.load(SCRIPT, { catch = true })
    local none, status = app:connect("/ws", { query = { token = "good" } })
    assert.is_nil(none)
    assert.equal(500, status)
    local found = false
    for _, rec in ipairs(app.logs) do
      found = found or rec.message:find("app:fake_fetch", 1, true) ~= nil
    end
    assert.is_true(found)
  end)
  it("bound every callback in a pooled coroutine, also after one was stopped", function()
    local spin = script([[
local ws = {}
function ws.on_message(conn, msg)
  if msg == "pcall" then
    while true do pcall(function() while true do end end) end
  elseif msg == "sort" then
    table.sort({ 3, 2, 1 }, function() while true do end end)
  elseif msg == "spin" then
    while true do end
  end
  conn:send("echo " .. msg)
end
return { ["/ws"] = ws }
]])
    local app = testing.load(spin, { catch = true, args = { "--lua-timeout", "0.05" } })
    for _, what in ipairs({ "spin", "sort", "spin", "pcall", "spin" }) do
      local c = assert(app:connect("/ws"))
      c:receive(what)
      assert.equal(1011, c.close_code, what)
    end
    local stopped = 0
    for _, rec in ipairs(app.logs) do
      if rec.message:find("exceeded its time budget", 1, true) then stopped = stopped + 1 end
    end
    assert.equal(5, stopped)
    local c = assert(app:connect("/ws"))
    c:receive("fine")
    assert.equal("echo fine", c.sent[#c.sent].data)
  end)
end)
