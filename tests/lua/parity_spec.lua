-- wspush.testing runs the server's own core and host: what a handler meets
-- under busted is what it meets in the server. Each case below was once a
-- difference between the old pure-Lua fake and the server.
local testing = require "wspush.testing"
local http = require "wspush.http"

-- A scratch project: a script and the modules it requires, rewritable.
local function project(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  for name, text in pairs(files) do write(name, text) end
  return dir, write
end

-- The handler under test runs fn(conn) from on_message and sends back what
-- it returned (or the error), so each case is one message.
local SCRIPT = [[
local wspush = require "wspush"
local cases = {}
function cases.set_field(conn) conn.name = "x" end
function cases.close_1005(conn) return tostring(conn:close(1005)) end
function cases.bad_utf8(conn) return table.concat({ tostring(select(1, conn:send("\255"))),
                                                    tostring(select(2, conn:send("\255"))) }, "|") end
return {
  ["/ws"] = {
    on_message = function(conn, msg)
      local ok, res = pcall(cases[msg], conn)
      conn:send((ok and "ok: " or "error: ") .. tostring(res))
    end,
  },
}
]]

describe("wspush.testing, like the server", function()
  local app
  before_each(function()
    local dir = project({ ["app.lua"] = SCRIPT })
    app = testing.load(dir .. "/app.lua")
  end)
  after_each(function() app:close() end)

  it("refuses to set a connection field other than conn.data", function()
    local c = app:connect("/ws")
    c:receive("set_field")
    assert.matches("^error: .*conn%.name is read%-only", c.sent[1].data)
  end)

  it("refuses close code 1005, which may not be sent", function()
    local c = app:connect("/ws")
    c:receive("close_1005")
    assert.matches("^error: .*close code must be", c.sent[1].data)
    assert.is_false(c.closed)
  end)

  it("returns nil and a reason for text that is not UTF-8 instead of raising", function()
    local c = app:connect("/ws")
    c:receive("bad_utf8")
    assert.equal("ok: nil|invalid UTF-8 (send it as binary)", c.sent[1].data)
  end)
end)

describe("wspush.testing timers, like the server", function()
  it("accepts every(0) and fires it at most once per millisecond", function()
    local dir = project({ ["t.lua"] = [[
      local wspush = require "wspush"
      n = 0
      local t = wspush.every(0, function() n = n + 1 end)
      timer = t
      return { ["/n"] = function() return { n = n, active = t:active() } end }
    ]] })
    local app = testing.load(dir .. "/t.lua")
    app:advance(0.01)
    local res = app:request("GET", "/n").json
    assert.is_true(res.n >= 5 and res.n <= 10, "fired " .. res.n .. " times in 10 ms")
    assert.is_true(res.active)
    assert.is_true(_G.timer:stop())   -- stop() says whether it was running
    assert.is_false(_G.timer:stop())
    assert.is_false(_G.timer:active())
    app:close()
  end)
end)

describe("wspush.testing lifecycle, like the server", function()
  it("has wspush.shared, on_reload and on_shutdown, and reload re-requires modules", function()
    local dir, write = project({
      ["mod.lua"] = 'return { version = 1 }',
      ["app.lua"] = [[
        local wspush = require "wspush"
        local mod = require "mod"
        wspush.shared.loads = (wspush.shared.loads or 0) + 1
        wspush.on_reload(function(info) wspush.shared.reloaded = info.generation end)
        wspush.on_shutdown(function() wspush.log("info", "bye") end)
        return { ["/v"] = function()
          return { version = mod.version, loads = wspush.shared.loads, reloaded = wspush.shared.reloaded }
        end }
      ]],
    })
    local app = testing.load(dir .. "/app.lua")
    assert.same({ version = 1, loads = 1 }, app:request("GET", "/v").json)
    write("mod.lua", 'return { version = 2 }')
    app:reload()
    assert.same({ version = 2, loads = 2, reloaded = 2 }, app:request("GET", "/v").json)
    app:stop()
    assert.matches("bye$", app.logs[#app.logs].message)
    app:close()
  end)

  it("keeps the old version when the new one fails to load, and says where", function()
    local dir, write = project({ ["app.lua"] = 'return { ["/v"] = function() return "one" end }' })
    local app = testing.load(dir .. "/app.lua")
    write("app.lua", 'return { ["/v"] = function() return "two" end ')
    assert.has_error(function() app:reload() end)
    local ok, err = pcall(app.reload, app)
    assert.is_false(ok)
    assert.matches("app%.lua:1:", err)
    assert.equal("one", app:request("GET", "/v").body)
    app:close()
  end)
end)

describe("the same-origin check", function()
  -- Rows of tests/unit/test_handshake.c's table on which the old Lua copy
  -- disagreed with the C check; now both are the C check.
  local rows = {
    { "ws://example.com", "example.com", true },
    { "wss://example.com", "example.com", true },
    { "http://example.com/", "example.com", false },
    { "http://example.com:65536", "example.com:65536", false },
    { "http://[::1", "[::1", false },
    { "http://[::1]x", "[::1]", false },
    { "http://example.com:08000", "example.com:8000", true },
    { "http://user@example.com", "example.com", false },
    { "https://example.com", "example.com:443", true },
    { "null", "example.com", false },
  }
  for _, r in ipairs(rows) do
    it(("says %s for %s against Host %s"):format(tostring(r[3]), r[1], r[2]), function()
      assert.equal(r[3], http.same_origin(r[1], r[2]))
    end)
  end
end)

describe("wspush.testing clients", function()
  local SCRIPT = [[
    local wspush = require "wspush"
    return { ["/ws"] = {
      on_message = function(conn, msg)
        if msg == "flood" then
          for _ = 1, 64 do conn:send(string.rep("x", 1024)) end
          wspush.shared.buffered = conn:buffered()
        else
          conn:send("got " .. #msg)
        end
      end,
      on_drain = function(conn) conn:send("drained") end,
    } }
  ]]

  it("can stop reading: the server's queue grows, on_drain runs once it reads again", function()
    local dir = project({ ["d.lua"] = SCRIPT })
    local app = testing.load(dir .. "/d.lua", { args = { "--max-buffered", "1m" } })
    local c = app:connect("/ws")
    c:hold(true)
    c:receive("flood")
    assert.is_true(app.core.shared.buffered > 0)
    assert.equal(0, #c.sent)
    c:hold(false)
    assert.equal(65, #c.sent)
    assert.equal("drained", c.sent[65].data)
    app:close()
  end)

  it("sends raw frames: a message in three fragments arrives whole", function()
    local dir = project({ ["d.lua"] = SCRIPT })
    local app = testing.load(dir .. "/d.lua")
    local c = app:connect("/ws")
    local OP, frame = testing.OP, testing.frame
    c:feed(frame(OP.text, "ab", false))
    c:feed(frame(OP.continuation, "cd", false))
    assert.equal(0, #c.sent)
    c:feed(frame(OP.continuation, "e"))
    assert.equal("got 5", c.sent[1].data)
    app:close()
  end)
end)
