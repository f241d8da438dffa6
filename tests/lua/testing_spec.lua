local testing = require "wspush.testing"

local FIXTURE = "tests/lua/fixtures/app.lua"

describe("testing", function()
  local app
  before_each(function() app = testing.load(FIXTURE) end)

  it("connects through routing and runs open", function()
    local c = assert(app:connect("/ws?name=ann", { headers = { ["User-Agent"] = "spec" } }))
    assert.same({ { data = '{"hello":1}', binary = false } }, c.sent)
    assert.same({ "open" }, c.conn.data.events)
    assert.equal("ann", c.conn.query.name)
    assert.equal("spec", c.conn.headers["user-agent"])
  end)

  it("leaves the handshake's own headers out, as the core does", function()
    local sent = { Upgrade = "websocket", Connection = "Upgrade",
                   ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==", ["X-Kept"] = "yes" }
    for _, path in ipairs({ "/ws", "/seen" }) do
      local c = assert(app:connect(path, { headers = sent }))
      -- conn.headers, and the req.headers check_origin got (route /seen)
      for _, h in ipairs({ c.conn.headers, path == "/seen" and _G.seen_headers or nil }) do
        assert.is_nil(h.upgrade)
        assert.is_nil(h.connection)
        assert.is_nil(h["sec-websocket-key"])
        assert.equal("yes", h["X-Kept"])
        assert.equal("localhost:8000", h.host)
      end
    end
  end)

  it("returns nil, status, reason when the upgrade is refused", function()
    assert.same({ nil, 404, "Not Found" }, { app:connect("/nowhere") })
    local refused = { app:connect("/strict", { headers = { origin = "http://evil.example" } }) }
    assert.same({ nil, 403, "cross-origin request refused" }, refused)
  end)

  it("delivers messages with their binary flag", function()
    local c = app:connect("/ws")
    c:receive("hi")
    c:receive("\0\1", true)
    assert.same({ data = "hi", binary = false }, c.sent[2])
    assert.same({ data = "\0\1", binary = true }, c.sent[3])
  end)

  it("closes with 1007 on a text message that is not UTF-8, as the server does", function()
    local c = app:connect("/ws")
    c:receive("\255")
    assert.same({ true, 1007 }, { c.closed, c.close_code })
    assert.equal(1007, _G.last_closed.code)
  end)

  it("runs on_close with the code the client echoed when the handler closes", function()
    local c = app:connect("/ws")
    c:receive("quit")
    assert.is_true(c.closed)
    assert.same({ 4000, "asked" }, { c.close_code, c.close_reason })
    -- RFC 6455 7.1.5/7.1.6: the code and reason of the first close frame
    -- received; the client (like a browser) echoed the code alone.
    assert.same({ 4000, "" }, { _G.last_closed.code, _G.last_closed.reason })
    assert.same({ nil, "closed" }, { c.conn:send("x") })
    assert.is_false(c.conn:is_open())
    assert.equal(0, app.core.count())
  end)

  it("runs on_close with 1005 when the client closes without a code", function()
    local c = app:connect("/ws")
    c:close()
    assert.equal(1005, _G.last_closed.code)
    -- wspush.log names the file:line that logged, as in the server.
    assert.same({ level = "info", message = "tests/lua/fixtures/app.lua:22: closed 1 1005 " },
      app.logs[1])
    assert.has_error(function() c:receive("late") end)
  end)

  it("passes client pings to on_ping", function()
    local c = app:connect("/ws")
    c:ping("x")
    assert.equal("saw ping x", c.sent[2].data)
  end)

  it("publishes to subscribers only, and a closed connection leaves its topics", function()
    local a, b = app:connect("/ws"), app:connect("/ws")
    assert.equal(2, app.core.publish("ticks", "hey"))
    b:close(1000)
    assert.equal(1, app.core.publish("ticks", "again"))
    assert.equal("again", a.sent[#a.sent].data)
    assert.equal("hey", b.sent[#b.sent].data)
    assert.same({ topic = "ticks", data = "again", binary = false, n = 1 }, app.published[2])
  end)

  it("keeps a connection table: get, count, connections", function()
    local a, b = app:connect("/ws"), app:connect("/ws")
    local wspush = require "wspush"
    assert.equal(2, wspush.count())
    assert.equal(b.conn, wspush.get(b.id))
    a:close(1001)
    assert.is_nil(wspush.get(a.id))
    local ids = {}
    for conn in wspush.connections() do ids[#ids + 1] = conn.id end
    assert.same({ b.id }, ids)
  end)

  it("fires every() timers each interval as the clock advances", function()
    local c = app:connect("/ws")
    app:advance(1.9)
    assert.equal(1, #c.sent)
    app:advance(4.1)
    assert.same({ '{"hello":1}', "tick 1", "tick 2", "tick 3" }, c:texts())
    assert.equal(6, app.core.now())
    assert.equal(3, app:request("GET", "/ticks").json.ticks)
  end)

  it("fires an after() timer once, and a stopped timer never", function()
    local c = app:connect("/ws")
    c:receive("later")
    local fired = false
    app.core.after(1, function() fired = true end):stop()
    app:advance(1.4)
    assert.is_nil(c:texts()[3])
    app:advance(0.1)
    assert.equal("later!", c.sent[3].data)
    app:advance(10)
    assert.same({ '{"hello":1}', "later", "later!", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5" },
      c:texts()) -- "later!" only once
    assert.is_false(fired)
  end)

  it("sends HTTP requests with a JSON or form body", function()
    local res = app:request("POST", "/echo", { json = { n = 1 } })
    assert.equal(200, res.status)
    assert.same({ n = 1 }, res.json.json)
    assert.equal("application/json; charset=utf-8", res.headers["Content-Type"])
    assert.same({ a = "b c" }, app:request("POST", "/echo", { form = { a = "b c" } }).json.form)
    assert.equal(405, app:request("GET", "/echo").status)
  end)

  it("lets handler errors reach the test by default", function()
    local c = app:connect("/ws")
    assert.has_error(function() c:receive("boom") end)
    assert.has_error(function() app:request("GET", "/boom") end)
  end)

  it("with catch = true, logs errors, closes with 1011 and answers 500", function()
    local caught = testing.load(FIXTURE, { catch = true })
    local c = caught:connect("/ws")
    c:receive("boom")
    assert.same({ true, 1011 }, { c.closed, c.close_code })
    assert.equal(500, caught:request("GET", "/boom").status)
    assert.equal("error", caught.logs[1].level)
    assert.matches("boom", caught.logs[1].message)
  end)

  it("reloads the script: connections stay, old timers retire", function()
    local c = app:connect("/ws")
    app:reload()
    c:receive("still here")
    assert.equal("still here", c.sent[2].data)
    app:advance(2)
    assert.same({ "tick 1" }, { table.unpack(c:texts(), 3) }) -- one timer, the new one
  end)
end)
