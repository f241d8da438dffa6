-- Messages that arrive in one read (test_batch.py): the server hands them to
-- the handler together, and the handler must see what it would have seen one
-- by one. What the handlers do is recorded per connection tag (?tag=) and
-- read back over GET /events?tag=... as JSON (testjson).
local wspush = require "wspush"
local testjson = require "testjson"

local events = {}   -- tag -> list of strings, in order
local function rec(conn, s)
  local tag = conn.query.tag or "none"
  local l = events[tag]
  if not l then l = {}; events[tag] = l end
  l[#l + 1] = s
end

local function busy(seconds)
  local t = os.clock() + seconds
  while os.clock() < t do end
end

-- /rec: every message is recorded and answered "ok:<msg>"; some messages
-- are commands:
--   close      closes the connection (1000) after answering
--   err        raises
--   swap       replaces this table's on_message for the messages after it
--   sleep      waits 0.3 s (wspush.sleep), then records how the wait ended
--   spin S     runs S seconds of CPU (the time budget is per message)
local recorder = {}

local function on_message(conn, msg)
  rec(conn, "m:" .. msg)
  conn:send("ok:" .. msg)
  if msg == "close" then
    conn:close(1000, "bye")
  elseif msg == "err" then
    error("boom")
  elseif msg == "swap" then
    recorder.on_message = function(c, m)
      rec(c, "swapped:" .. m)
      c:send("swapped:" .. m)
    end
  elseif msg == "sleep" then
    local ok, err = wspush.sleep(0.3)
    rec(conn, "woke:" .. tostring(ok) .. ":" .. tostring(err))
  else
    local secs = msg:match("^spin ([%d.]+)$")
    if secs then
      busy(tonumber(secs))
      rec(conn, "spun")
    end
  end
end

function recorder.open(conn) recorder.on_message = on_message end
recorder.on_message = on_message
function recorder.on_ping(conn, payload) rec(conn, "ping:" .. payload) end
function recorder.on_close(conn, code) rec(conn, "close:" .. tostring(code)) end

-- /inherit: the handler comes from a metatable's __index, which counts
-- the messages it is asked for.
local asked = 0
local inherit = setmetatable({}, { __index = function(t, k)
  if k == "on_message" then
    asked = asked + 1
    return function(conn, msg) rec(conn, "i:" .. msg); conn:send("i:" .. msg) end
  end
end })

-- /confuse: the methods called on what is not a connection, from inside a
-- handler (where the event's own connection is known by address).
local confuse = {}
function confuse.on_message(conn, msg)
  local send = conn.send
  local out = {}
  for _, v in ipairs({ io.stdout, {}, "conn", 42 }) do
    local ok, err = pcall(send, v, "x")
    out[#out + 1] = tostring(ok) .. ":" .. tostring(err):gsub("^.-: ", "")
  end
  conn:send(table.concat(out, "|"))
end

-- /tamper: a script that reaches the connections table through the debug
-- library and puts another userdata where its connection was: the next
-- event's "connection" is then io.stdout, and the methods must still refuse
-- it (the event's connection is known by address only once proved).
local tamper = {}
local saved, send
function tamper.on_message(conn, msg)
  if msg == "tamper" then
    local _, conns = debug.getupvalue(wspush.connections(), 1)
    saved, send = conn, conn.send
    conns[conn.id] = io.stdout
    conn:send("tampered")
  elseif saved then
    local ok, err = pcall(send, conn, "x")
    local _, conns = debug.getupvalue(wspush.connections(), 1)
    conns[saved.id] = saved
    saved:send(tostring(io.type(conn)) .. "|" .. tostring(ok) .. "|" .. tostring(err):gsub("^.-: ", ""))
    saved = nil
  end
end

return {
  ["/confuse"] = confuse,
  ["/tamper"] = tamper,
  ["/rec"] = recorder,
  ["/inherit"] = inherit,
  ["/asked"] = function() return tostring(asked) end,
  ["/events"] = function(req) return testjson.reply({ events = events[req.query.tag or "none"] or {} }) end,
}
