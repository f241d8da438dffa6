-- Handler tables and handlers as hostile as a script can make them
-- (test_isolation.py). None of them may hurt the server or anyone else.
local wspush = require "wspush"

-- A strict-mode table: __index raises on any field it lacks (a common idiom).
local strict = setmetatable({}, { __index = function(t, k) error("strict: no field " .. k) end })
rawset(strict, "check_origin", function() return true end)
rawset(strict, "select_subprotocol", function() return nil end)
function strict.open(conn) conn:send("hi") end

-- An __index that never returns.
local loopy = setmetatable({}, { __index = function() while true do end end })
rawset(loopy, "check_origin", function() return true end)

-- Handlers found through a metatable chain (inheritance): this must work.
local base = {}
function base.on_message(conn, msg) conn:send("base saw " .. msg) end
local child = setmetatable({ check_origin = function() return true end }, { __index = base })
function child.open(conn) conn:send("child open") end

-- A strict table that does have every event it is asked for except one.
local strict_events = setmetatable({}, {
  __index = function(_, k)
    if k == "on_message" then error("strict: no field on_message") end
    return nil
  end,
})
rawset(strict_events, "check_origin", function() return true end)
rawset(strict_events, "open", function(conn) conn:send("open") end)

local hog = { check_origin = function() return true end }
function hog.on_message(conn, msg)
  if msg == "rep" then local s = string.rep("x", 2^31) end
  if msg == "grow" then local t = {} for i = 1, 1e9 do t[i] = i end end
  if msg == "gc" then setmetatable({}, { __gc = function() while true do end end }) end
  if msg == "json" then
    -- JSON of a table the encoder refuses (a function inside), which also
    -- has metamethods that raise: the error is the handler's.
    conn:send(setmetatable({ f = print }, { __index = function() error("json meta") end,
                                            __pairs = function() error("pairs") end }))
  end
  if msg == "errtable" then error({ code = 42 }) end
  conn:send("ok " .. msg)
end

local echo = { check_origin = function() return true end }
function echo.on_message(conn, msg) conn:send(msg) end

return {
  ["/strict"] = strict,
  ["/loopy"] = loopy,
  ["/child"] = child,
  ["/strict_events"] = strict_events,
  ["/hog"] = hog,
  ["/echo"] = echo,
  ["/index"] = function() return "fine" end,
  ["/heap"] = function() collectgarbage() return { lua_kb = collectgarbage("count") } end,
}
