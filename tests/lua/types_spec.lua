-- types/wspush.lua (the LuaLS definitions editors read) must name every
-- function and field of the API the server gives a script, and no other.
local testing = require "wspush.testing"

local function declared()
  local names, conn = {}, {}
  for line in io.lines("types/wspush.lua") do
    local f = line:match("^function wspush%.([%w_]+)%(") or line:match("^%-%-%-@field ([%w_]+) ")
    local m = line:match("^function Conn:([%w_]+)%(")
    if m then conn[m] = true end
    if f and not line:match("^%-%-%-@field") then names[f] = true end
  end
  -- the wspush class's own fields
  local in_class = false
  for line in io.lines("types/wspush.lua") do
    if line:match("^%-%-%-@class wspush$") then in_class = true
    elseif in_class and line:match("^%-%-%-@field ([%w_]+)") then names[line:match("^%-%-%-@field ([%w_]+)")] = true
    elseif in_class then in_class = false end
  end
  return names, conn
end

describe("types/wspush.lua", function()
  it("declares exactly the module's functions and values", function()
    testing.load("handlers/echo.lua")
    local wspush = require "wspush"
    local names = declared()
    local have = {}
    for k in pairs(wspush) do have[k] = true end
    for _, k in ipairs({ "version", "script_dir", "shared", "worker" }) do
      assert.is_not_nil(wspush[k], k)
      have[k] = true
    end
    for k in pairs(have) do assert.is_true(names[k] == true, "types/wspush.lua lacks wspush." .. k) end
    for k in pairs(names) do assert.is_true(have[k] == true, "types/wspush.lua declares wspush." .. k .. " that the server lacks") end
  end)

  it("declares every connection method", function()
    local app = testing.load("handlers/echo.lua")
    local c = app:connect("/ws")
    local _, conn = declared()
    for _, m in ipairs({ "send", "close", "ping", "subscribe", "unsubscribe", "topics", "buffered", "is_open" }) do
      assert.is_function(c.conn[m], m)
      assert.is_true(conn[m] == true, "types/wspush.lua lacks conn:" .. m)
    end
  end)

  it("hides the core's plumbing from scripts", function()
    testing.load("handlers/echo.lua")
    local wspush = require "wspush"
    for _, k in ipairs({ "can_wait", "redis_call", "redis_open", "redis_timeout" }) do
      assert.is_nil(wspush[k], k)
    end
  end)
end)
