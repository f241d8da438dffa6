local testing = require "wspush.testing"
local cjson = require "cjson"

local function decoded(c)
  local out = {}
  for i, m in ipairs(c.sent) do out[i] = cjson.decode(m.data) end
  return out
end

describe("chat demo", function()
  local app
  before_each(function() app = testing.load("handlers/chat.lua") end)

  it("welcomes a client with its id and room", function()
    local c = app:connect("/room/lobby")
    assert.same({ { type = "welcome", you = c.id, room = "lobby" } }, decoded(c))
  end)

  it("tells the room who joins, but not the one joining", function()
    local a = app:connect("/room/lobby")
    local b = app:connect("/room/lobby")
    assert.same({ type = "join", user = b.id, room = "lobby" }, a:last_json())
    assert.equal(1, #b.sent)
  end)

  it("relays a message as JSON with the sender's id to everyone in the room", function()
    local a, b = app:connect("/room/lobby"), app:connect("/room/lobby")
    b:receive("hi all")
    local msg = { type = "message", user = b.id, room = "lobby", text = "hi all" }
    assert.same(msg, a:last_json())
    assert.same(msg, b:last_json())
  end)

  it("keeps rooms apart, with decoded room names", function()
    local a, b = app:connect("/room/big%20room"), app:connect("/room/other")
    a:receive("psst")
    assert.equal("big room", a:last_json().room)
    assert.equal("welcome", b:last_json().type)
  end)

  it("tells the room who leaves", function()
    local a, b = app:connect("/room/lobby"), app:connect("/room/lobby")
    b:close(1000)
    assert.same({ type = "leave", user = b.id, room = "lobby" }, a:last_json())
  end)

  it("answers binary or oversized messages with an error, to the sender only", function()
    local a, b = app:connect("/room/lobby"), app:connect("/room/lobby")
    b:receive("\1\2", true)
    b:receive(string.rep("x", 5000))
    assert.equal("error", decoded(b)[2].type)
    assert.equal("error", decoded(b)[3].type)
    assert.equal("join", a:last_json().type)
  end)

  it("has no room at /room/ without a name", function()
    assert.same({ nil, 404, "Not Found" }, { app:connect("/room/") })
  end)
end)
