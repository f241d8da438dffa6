-- Broadcast to many subscribers of whom some never read (tests/integration/test_fanout_stuck.py).
--
-- /ws (and /ws_drop_oldest, /ws_tiny): every connection joins topic "all"; one opened
-- with ?stuck=1 also joins "bulk". max_buffered = 256 KiB on both routes;
-- backpressure "close" on /ws, "drop-oldest" on /ws_drop_oldest. A message
-- from a client is echoed (to show a connection is still served).
--
-- HTTP:
--   /pub?n=N&size=S    publish N text messages of S bytes to "all" at once; each
--                      starts with its 8-digit sequence number (one sequence
--                      for every "all" message, /bulk's included).
--   /bulk?n=N&size=S&per=P&all_every=K
--                      every 10 ms publish P binary messages of S bytes to
--                      "bulk" (8-digit bulk sequence number first) until N are
--                      out; after every K-th bulk message also one 64-byte
--                      "all" message. Answers {all_msgs = N // K}.
--   /stats             JSON: count (wspush.count()), opens, stuck_open,
--                      closes by code for stuck and for reader connections,
--                      what every "all" publish reached, the bulk's progress,
--                      the Lua heap (KiB).
local wspush = require "wspush"
local cjson = require "cjson"

local MAX_BUFFERED = 256 * 1024

local stats = {
  opens = 0,
  stuck_opens = 0,
  closes_stuck = {},      -- close code -> count (stuck connections)
  closes_reader = {},     -- close code -> count (reader connections)
  all_seq = 0,            -- "all" messages published so far
  all_reached = {},       -- distinct values of publish()'s result for "all" -> how many times
  bulk_sent = 0,
  bulk_reached = 0,       -- sum of publish() results for "bulk"
  bulk_done = false,
}
local stuck = {}          -- id -> conn, for the stuck connections still open

local function bump(t, k)
  k = tostring(k)
  t[k] = (t[k] or 0) + 1
end

local function route(policy, max_buffered)
  local r = { max_buffered = max_buffered or MAX_BUFFERED, backpressure = policy, compression = false }
  function r.open(conn)
    conn:subscribe("all")
    stats.opens = stats.opens + 1
    if conn.query.stuck == "1" then
      conn.data.stuck = true
      conn:subscribe("bulk")
      stats.stuck_opens = stats.stuck_opens + 1
      stuck[conn.id] = conn
    end
  end
  function r.on_message(conn, msg, is_binary) conn:send(msg, is_binary) end
  function r.on_close(conn, code)
    if conn.data.stuck then
      stuck[conn.id] = nil
      bump(stats.closes_stuck, code)
    else
      bump(stats.closes_reader, code)
    end
  end
  return r
end

local function publish_all(size)
  local msg = string.format("%08d", stats.all_seq) .. string.rep("a", size - 8)
  stats.all_seq = stats.all_seq + 1
  bump(stats.all_reached, wspush.publish("all", msg))
end

local function pub(req)
  local n = tonumber(req.query.n) or 1
  local size = math.max(8, tonumber(req.query.size) or 64)
  local first = stats.all_seq
  for _ = 1, n do publish_all(size) end
  return { first = first, last = stats.all_seq - 1 }
end

local bulk_timer = nil
local function bulk(req)
  if bulk_timer then return "bulk already running", 409 end
  local n = tonumber(req.query.n) or 400
  local size = math.max(8, tonumber(req.query.size) or 65536)
  local per = tonumber(req.query.per) or 2
  local every = tonumber(req.query.all_every) or 0
  local pad = string.rep("b", size - 8)
  local seq = 0
  stats.bulk_done, stats.bulk_sent, stats.bulk_reached = false, 0, 0
  bulk_timer = wspush.every(0.01, function()
    for _ = 1, per do
      if seq >= n then break end
      stats.bulk_reached = stats.bulk_reached + wspush.publish("bulk", string.format("%08d", seq) .. pad, true)
      seq = seq + 1
      stats.bulk_sent = seq
      if every > 0 and seq % every == 0 then publish_all(64) end
    end
    if seq >= n then
      bulk_timer:stop()
      bulk_timer = nil
      stats.bulk_done = true
    end
  end)
  return { all_msgs = every > 0 and n // every or 0 }
end

local function get_stats()
  local open, buffered = 0, 0
  for _, c in pairs(stuck) do
    if c:is_open() then
      open = open + 1
      buffered = math.max(buffered, c:buffered() or 0)
    end
  end
  stats.count = wspush.count()
  stats.stuck_open = open
  stats.stuck_max_buffered = buffered
  stats.lua_kb = math.floor(collectgarbage("count"))
  return cjson.encode(stats), 200, { ["Content-Type"] = "application/json" }
end

return {
  ["/ws"] = route("close"),
  -- test_isolation.py: stuck subscribers with a 4 KiB queue, and a WebSocket
  -- publisher for wsbench (every message it sends goes to "all").
  ["/ws_tiny"] = route("close", 4096),
  ["/wspub"] = { on_message = function(_, msg, is_binary) wspush.publish("all", msg, is_binary) end },
  ["/ws_drop_oldest"] = route("drop-oldest"),
  ["/pub"] = pub,
  ["POST /pub"] = pub,
  ["/bulk"] = bulk,
  ["POST /bulk"] = bulk,
  ["/stats"] = get_stats,
}
