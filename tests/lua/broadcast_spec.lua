local testing = require "wspush.testing"

describe("broadcast demo", function()
  local app
  before_each(function() app = testing.load("handlers/broadcast.lua") end)

  it("echoes like the echo demo", function()
    local c = app:connect("/ws")
    c:receive("hi")
    assert.same({ "Welcome", "new message :hi" }, c:texts())
    assert.equal("Hello world", app:request("GET", "/index").body)
  end)

  it("pushes GET /receive?msg= to every connected client and says how many", function()
    local a, b = app:connect("/ws"), app:connect("/ws")
    local res = app:request("GET", "/receive?msg=hello+all%21")
    assert.equal(200, res.status)
    assert.same({ sent = 2 }, res.json)
    assert.equal("hello all!", a.sent[#a.sent].data)
    assert.equal("hello all!", b.sent[#b.sent].data)
  end)

  it("stops pushing to a client once it is gone", function()
    local a, b = app:connect("/ws"), app:connect("/ws")
    b:close(1001)
    assert.same({ sent = 1 }, app:request("GET", "/receive", { query = { msg = "x" } }).json)
    assert.same({ "Welcome", "x" }, a:texts())
  end)

  it("answers 400 when msg is missing", function()
    local res = app:request("GET", "/receive")
    assert.equal(400, res.status)
    assert.is_string(res.json.error)
  end)

  it("serves the browser page at /", function()
    local res = app:request("GET", "/")
    assert.equal(200, res.status)
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    assert.matches("new WebSocket", res.body, 1, true)
    assert.not_matches("https?://[%w.]+/.-%.js", res.body) -- no CDN
  end)
end)
