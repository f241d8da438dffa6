local testing = require "wspush.testing"
local cjson = require "cjson"

describe("feed demo", function()
  local app
  before_each(function() app = testing.load("handlers/feed.lua") end)

  it("pushes one JSON update per second to subscribers", function()
    local c = app:connect("/feed")
    assert.equal(0, #c.sent)
    app:advance(3)
    assert.equal(3, #c.sent)
    for i, m in ipairs(c.sent) do
      local u = cjson.decode(m.data)
      assert.equal(i, u.seq)
      assert.equal(i, u.time) -- the timer fired at 1, 2, 3 s
      assert.is_number(u.price)
    end
  end)

  it("sends the latest update to a newcomer right away", function()
    app:advance(2)
    local c = app:connect("/feed")
    assert.equal(2, c:last_json().seq)
  end)

  it("stops pushing to a client that left", function()
    local a, b = app:connect("/feed"), app:connect("/feed")
    app:advance(1)
    a:close(1000)
    app:advance(1)
    assert.equal(1, #a.sent)
    assert.equal(2, #b.sent)
    assert.equal(1, app.published[2].n)
  end)

  it("answers GET /feed/latest with the last update, 503 before the first", function()
    assert.equal(503, app:request("GET", "/feed/latest").status)
    app:advance(1)
    local res = app:request("GET", "/feed/latest")
    assert.equal(200, res.status)
    assert.equal(1, res.json.seq)
  end)
end)
