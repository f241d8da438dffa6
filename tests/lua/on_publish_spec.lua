local testing = require "wspush.testing"

local function write(path, src)
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
end

local V1 = [[
local wspush = require "wspush"
local heard = {}
wspush.on_publish("t", function(data, topic)
  heard[#heard + 1] = topic .. ":" .. data
  _G.HEARD_T = (_G.HEARD_T or 0) + 1 -- seen by the spec across reloads
end)
wspush.on_publish("bad", function() error("listener boom") end)
return {
  ["/ws"] = { open = function(c) c:subscribe("t") end },
  ["/pub"] = function(req) return { n = wspush.publish(req.query.t, req.query.m), heard = heard } end,
  ["/heard"] = function() return { heard = heard } end,
}
]]

describe("wspush.on_publish", function()
  local path, app
  before_each(function()
    path = os.tmpname() .. ".lua"
    write(path, V1)
    app = testing.load(path, { catch = true })
  end)
  after_each(function() os.remove(path) end)

  it("hears each publish on its topic, with data and topic, not others", function()
    local c = app:connect("/ws")
    local r = app:request("GET", "/pub?t=t&m=a").json
    assert.equal(1, r.n)
    assert.same({ "t:a" }, r.heard)
    app:request("GET", "/pub?t=u&m=b")
    assert.same({ "t:a" }, app:request("GET", "/heard").json.heard)
    assert.same({ "a" }, c:texts())
  end)

  it("logs an error of its function; the publish still counts and delivers", function()
    local r = app:request("GET", "/pub?t=bad&m=x")
    assert.equal(200, r.status)
    assert.equal(0, r.json.n)
    local found = false
    for _, l in ipairs(app.logs) do
      if l.message:match("on_publish") and l.message:match("listener boom") then found = true end
    end
    assert.is_true(found)
  end)

  it("serves with its version: a reload without it stops hearing", function()
    _G.HEARD_T = 0
    app:request("GET", "/pub?t=t&m=before")
    assert.equal(1, _G.HEARD_T)
    write(path, [[
local wspush = require "wspush"
return { ["/pub"] = function(req) return { n = wspush.publish(req.query.t, req.query.m) } end }
]])
    app:reload()
    app:request("GET", "/pub?t=t&m=after")
    assert.equal(1, _G.HEARD_T)
  end)

  it("a broken reload keeps the serving version's functions", function()
    _G.HEARD_T = 0
    write(path, "return {")
    assert.has_error(function() app:reload() end)
    app:request("GET", "/pub?t=t&m=still")
    assert.equal(1, _G.HEARD_T)
  end)
end)
