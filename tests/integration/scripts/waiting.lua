-- Handlers that wait (test_waiting.py): every callback runs in a coroutine of
-- its own and may wspush.sleep without blocking the server. What the handlers
-- do is recorded per tag (the connection's ?tag=, or the request's) and read
-- back over GET /events?tag=... as JSON, encoded by testjson (observing state
-- must not depend on the server's own table->JSON feature).
local wspush = require "wspush"
local testjson = require "testjson"
local reply = testjson.reply

local events = {}   -- tag -> list of strings, in the order they happened
local function rec(tag, s)
  tag = tag or "none"
  local l = events[tag]
  if not l then l = {}; events[tag] = l end
  l[#l + 1] = s
end

local function tag_of(conn) return conn.query.tag or tostring(conn.id) end

local function ms(t) return string.format("%d", math.floor(t * 1000 + 0.5)) end

local function busy(seconds)
  local t = os.clock() + seconds
  while os.clock() < t do end
end

---------------------------------------------------------------------------
-- /order: "sleep S NAME" sleeps S seconds then answers; anything else is
-- answered at once. Each reply carries the loop clock when the handler
-- started and (for a sleeper) when it woke, in ms.
local order = {}
function order.on_message(conn, msg)
  local t0 = wspush.now()
  local secs, name = msg:match("^sleep ([%d.]+) (.+)$")
  if secs then
    local ok, err = wspush.sleep(tonumber(secs))
    conn:send(string.format("%s slept %s %s start=%s end=%s", name, tostring(ok), tostring(err),
                            ms(t0), ms(wspush.now())))
  else
    conn:send(string.format("%s start=%s", msg, ms(t0)))
  end
end

---------------------------------------------------------------------------
-- /pending (max_pending = 2) and /pending_big (max_pending = 1000): "sleep S"
-- answers "sleeping", sleeps S seconds, answers "slept"; "m N ..." answers
-- "got N". GET /pending_state?tag= tells whether the sleeper still sleeps and
-- how many "m" messages were handled.
local pstate = {}   -- tag -> {sleeping =, handled =}
local function pending_handler(max_pending)
  local h = { max_pending = max_pending }
  function h.on_message(conn, msg)
    local tag = tag_of(conn)
    local st = pstate[tag]
    if not st then st = { sleeping = false, handled = 0 }; pstate[tag] = st end
    local secs = msg:match("^sleep ([%d.]+)$")
    if secs then
      st.sleeping = true
      conn:send("sleeping")
      wspush.sleep(tonumber(secs))
      st.sleeping = false
      conn:send("slept")
      return
    end
    st.handled = st.handled + 1
    conn:send("got " .. (msg:match("^m (%d+)") or "?"))
  end
  return h
end

---------------------------------------------------------------------------
-- /closewait: "sleep S" answers "sleeping" and sleeps S seconds; every step
-- is recorded. Other messages record what the connection looked like when
-- they were handled. on_close records last.
local closewait = {}
function closewait.on_message(conn, msg)
  local tag = tag_of(conn)
  local secs = msg:match("^sleep ([%d.]+)$")
  if secs then
    rec(tag, "start")
    conn:send("sleeping")
    local t0 = wspush.now()
    local ok, err = wspush.sleep(tonumber(secs))
    local waited = wspush.now() - t0
    rec(tag, "sleep returned " .. tostring(ok) .. " " .. tostring(err))
    rec(tag, "waited_ms " .. ms(waited))
    local s1, s2 = conn:send("after the sleep")
    rec(tag, "after: open=" .. tostring(conn:is_open()) .. " send=" .. tostring(s1) .. " " .. tostring(s2))
    rec(tag, "end")
    return
  end
  local s1, s2 = conn:send("got " .. msg)
  rec(tag, "msg " .. msg .. ": open=" .. tostring(conn:is_open()) .. " send=" .. tostring(s1) .. " "
           .. tostring(s2))
end
function closewait.on_close(conn, code, reason)
  rec(tag_of(conn), "on_close " .. tostring(code))
end

---------------------------------------------------------------------------
-- /slowopen: open waits; messages tell whether open had finished.
local slowopen = {}
function slowopen.open(conn)
  local secs = tonumber(conn.query.secs) or 0.5
  local t0 = wspush.now()
  wspush.sleep(secs)
  conn.data.ready = true
  conn:send("open done after " .. ms(wspush.now() - t0))
end
function slowopen.on_message(conn, msg)
  conn:send("msg " .. msg .. " ready=" .. tostring(conn.data.ready))
end

---------------------------------------------------------------------------
-- /cannot: waiting where it cannot.
local cannot = {}
function cannot.on_message(conn, msg)
  if msg == "sort" then
    table.sort({ 3, 1, 2 }, function(a, b)
      wspush.sleep(0.01) -- SORT_LINE
      return a < b
    end)
    conn:send("sorted")
  elseif msg == "gsub" then
    local s = ("ab"):gsub(".", function(c)
      wspush.sleep(0) -- GSUB_LINE
      return c
    end)
    conn:send("gsub " .. s)
  elseif msg == "wrap" then
    coroutine.wrap(function()
      wspush.sleep(0.01) -- WRAP_LINE
    end)()
    conn:send("wrapped")
  elseif msg == "yield" then
    coroutine.yield() -- YIELD_LINE
    conn:send("yielded")
  elseif msg == "pcall" then
    local t0 = wspush.now()
    local ok, res = pcall(wspush.sleep, 0.05)
    conn:send("pcall " .. tostring(ok) .. " " .. tostring(res) .. " waited " .. ms(wspush.now() - t0))
  else
    conn:send("echo " .. msg)
  end
end
function cannot.on_close(conn, code) rec(tag_of(conn), "on_close " .. tostring(code)) end

---------------------------------------------------------------------------
-- /budget: computes, waits, computes (for --lua-timeout).
local budget = {}
function budget.on_message(conn, msg)
  local a, s, b = msg:match("^([%d.]+) ([%d.]+) ([%d.]+)$")
  if not a then return conn:send("echo " .. msg) end
  busy(tonumber(a))
  wspush.sleep(tonumber(s))
  conn:send("slept")
  busy(tonumber(b))
  conn:send("done")
end

---------------------------------------------------------------------------
-- /sleepy: every message sleeps (?secs=, default 0.5) then answers.
local sleepy = {}
function sleepy.on_message(conn, msg)
  wspush.sleep(tonumber(conn.query.secs) or 0.5)
  conn:send("woke " .. msg)
end

-- /echo: answers at once.
local echo = {}
function echo.on_message(conn, msg, is_binary) conn:send(msg, is_binary) end

---------------------------------------------------------------------------
-- The upgrade(req) hook. ?wait=S makes it sleep S seconds first.
local function maybe_wait(req)
  local secs = tonumber(req.query.wait)
  if secs then
    local ok, err = wspush.sleep(secs)
    rec(req.query.tag, "upgrade sleep returned " .. tostring(ok) .. " " .. tostring(err))
  end
end

local up_table = {}
function up_table.upgrade(req)
  maybe_wait(req)
  return { user = req.query.user or "anon", how = "from upgrade" }
end
function up_table.open(conn) conn:send("hello " .. conn.data.user .. " " .. conn.data.how) end
function up_table.on_message(conn, msg) conn:send("echo " .. msg) end

local up_true = {}
function up_true.upgrade(req) maybe_wait(req); return true end
function up_true.open(conn) conn:send("data is " .. type(conn.data)) end

local up_401 = {}
function up_401.upgrade(req)
  maybe_wait(req)
  return false, 401, { ["WWW-Authenticate"] = "Bearer" }
end
function up_401.open(conn) conn:send("should not open") end

local up_false = {}
function up_false.upgrade(req) maybe_wait(req); return false end
function up_false.open(conn) conn:send("should not open") end

local up_error = {}
function up_error.upgrade(req)
  maybe_wait(req)
  error("upgrade exploded") -- UPGRADE_ERROR_LINE
end

-- Records the order of the handshake's callbacks under ?tag=.
local up_order = {}
function up_order.check_origin(origin, req)
  rec(req.query.tag, "check_origin " .. tostring(origin))
  return origin ~= "http://refused.example"
end
function up_order.upgrade(req)
  rec(req.query.tag, "upgrade")
  maybe_wait(req)
  rec(req.query.tag, "upgrade decided")
  return { who = "order" }
end
function up_order.select_subprotocol(list, req)
  rec(req.query.tag, "select_subprotocol " .. table.concat(list, ","))
  return list[#list]
end
function up_order.open(conn)
  rec(tag_of(conn), "open " .. tostring(conn.subprotocol) .. " " .. tostring(conn.data.who))
  conn:send("opened " .. tostring(conn.subprotocol))
end
function up_order.on_message(conn, msg) conn:send("echo " .. msg) end

-- Logs when it starts to wait, so that a test knows the request was read.
local up_logged = {}
function up_logged.upgrade(req)
  wspush.log("info", "upgrade waiting " .. tostring(req.query.tag))
  maybe_wait(req)
  return { tag = req.query.tag }
end
function up_logged.open(conn) conn:send("open " .. tostring(conn.data.tag)) end
function up_logged.on_message(conn, msg) conn:send("echo " .. msg) end

---------------------------------------------------------------------------
-- Timers that wait, started on demand.
local tstate = {}
local function start_timers()
  tstate = { after = "pending", runs = 0, active = 0, max_active = 0, final = nil }
  local t0 = wspush.now()
  wspush.after(0.01, function()
    local ok = wspush.sleep(0.2)
    tstate.after = "slept " .. tostring(ok) .. " at " .. ms(wspush.now() - t0)
  end)
  local h
  h = wspush.every(0.05, function()
    tstate.runs = tstate.runs + 1
    tstate.active = tstate.active + 1
    if tstate.active > tstate.max_active then tstate.max_active = tstate.active end
    wspush.sleep(0.3)
    tstate.active = tstate.active - 1
  end)
  wspush.after(1.0, function()
    h:stop()
    tstate.final = tstate.runs
  end)
end

---------------------------------------------------------------------------
-- on_shutdown waits GET /shutdown_wait?secs= seconds (none by default).
local shutdown_secs = nil
wspush.on_shutdown(function()
  if not shutdown_secs then return end
  wspush.log("info", "on_shutdown: sleeping " .. tostring(shutdown_secs))
  local ok, err = wspush.sleep(shutdown_secs)
  wspush.log("info", "on_shutdown: done, sleep returned " .. tostring(ok) .. " " .. tostring(err))
end)

return {
  ["/order"] = order,
  ["/pending"] = pending_handler(2),
  ["/pending_big"] = pending_handler(1000),
  ["/closewait"] = closewait,
  ["/slowopen"] = slowopen,
  ["/cannot"] = cannot,
  ["/budget"] = budget,
  ["/sleepy"] = sleepy,
  ["/echo"] = echo,
  ["/up_table"] = up_table,
  ["/up_true"] = up_true,
  ["/up_401"] = up_401,
  ["/up_false"] = up_false,
  ["/up_error"] = up_error,
  ["/up_order"] = up_order,
  ["/up_logged"] = up_logged,

  ["/events"] = function(req) return reply({ events = events[req.query.tag or "none"] or {} }) end,
  ["/pending_state"] = function(req)
    return reply(pstate[req.query.tag] or { sleeping = false, handled = 0 })
  end,

  -- An HTTP handler that waits ?secs= (default 0.2) and records the outcome.
  ["/slow_http"] = function(req)
    local tag = req.query.tag
    wspush.log("info", "slow_http waiting " .. tostring(tag))
    local t0 = wspush.now()
    local ok, err = wspush.sleep(tonumber(req.query.secs) or 0.2)
    rec(tag, "http sleep returned " .. tostring(ok) .. " " .. tostring(err))
    rec(tag, "waited_ms " .. ms(wspush.now() - t0))
    return "slow done " .. tostring(tag)
  end,
  ["/fast"] = function(req) return "fast" end,

  ["/start_timers"] = function(req) start_timers(); return "started" end,
  ["/timers"] = function(req) return reply(tstate) end,

  ["/shutdown_wait"] = function(req)
    shutdown_secs = tonumber(req.query.secs)
    return "on_shutdown will wait " .. tostring(shutdown_secs)
  end,
}
