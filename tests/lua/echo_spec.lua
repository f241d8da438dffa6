local testing = require "wspush.testing"

describe("echo demo", function()
  local app
  before_each(function() app = testing.load("handlers/echo.lua") end)

  it("says Welcome when a client connects", function()
    local c = app:connect("/ws")
    assert.same({ "Welcome" }, c:texts())
  end)

  it("answers every message with 'new message :' and the message", function()
    local c = app:connect("/ws")
    c:receive("hello")
    c:receive("again")
    assert.same({ "Welcome", "new message :hello", "new message :again" }, c:texts())
  end)

  it("accepts a page from any origin", function()
    assert.truthy(app:connect("/ws", { headers = { Origin = "http://elsewhere.example" } }))
  end)

  it("answers GET /index with Hello world", function()
    local res = app:request("GET", "/index")
    assert.same({ 200, "Hello world" }, { res.status, res.body })
    assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
  end)

  it("asks for an upgrade on a plain GET /ws", function()
    assert.equal(426, app:request("GET", "/ws").status)
  end)
end)
