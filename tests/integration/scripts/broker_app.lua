-- For test_broker.py: a node of several joined through Redis (--broker).
-- Every route says which worker answered (with --workers N).
--
--   /ws?topic=a,b       subscribe to the topics given (default "all"); the
--                       first message is {hello =, worker =, id =, topics =};
--                       a message from the client comes back as "echo:" .. msg
--   /ws_roomy           the same with max_buffered = 8 MiB (a reader that
--                       keeps up, on a node run with a small --max-buffered)
--   /pub?topic=&msg=    wspush.publish(topic, data [, true with binary=1]);
--                       data = msg, or the bytes of hex= (hex-encoded), then
--                       repeated rep= times, then pad= "x"s appended;
--                       count=K publishes K messages msg-001 .. msg-K (each
--                       padded). Answers {n =, err =, worker =} (the last
--                       publish's), plus results = {{n =, err =}, ...} for count=.
--   /status             {status = wspush.broker_status(), worker =, workers =,
--                       count = wspush.count(), closes = {[code] = n}}
--   /events             {events = {{event =, broker =, topic =, missed =}, ...}}
--                       as wspush.on_broker reported them to this worker; each
--                       event is also logged ("on_broker EVENT ...") so that a
--                       test can wait for it.
local wspush = require "wspush"

local events = {}
local closes = {}

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function split(s)
  local out = {}
  for t in s:gmatch("[^,]+") do out[#out + 1] = t end
  return out
end

wspush.on_broker(function(event, info)
  events[#events + 1] = { event = event, broker = info.broker, topic = info.topic,
                          missed = info.missed }
  wspush.log("info", string.format("on_broker %s worker=%d broker=%s topic=%s missed=%s",
    event, wspush.worker.id, tostring(info.broker), tostring(info.topic),
    tostring(info.missed)))
end)

local ws = {}

function ws.open(conn)
  local topics = split(conn.query.topic or "all")
  for _, t in ipairs(topics) do conn:subscribe(t) end
  conn:send({ hello = "broker_app", worker = wspush.worker.id, id = conn.id, topics = topics })
end

function ws.on_message(conn, msg) conn:send("echo:" .. msg) end

function ws.on_close(conn, code)
  local k = tostring(code)
  closes[k] = (closes[k] or 0) + 1
end

local function payload(q, suffix)
  local data = q.hex and unhex(q.hex) or (q.msg or "")
  if suffix then data = data .. suffix end
  if q.rep then data = string.rep(data, tonumber(q.rep)) end
  if q.pad then data = data .. string.rep("x", tonumber(q.pad)) end
  return data
end

-- /ws_roomy: the same, with a queue of 8 MiB whatever --max-buffered says
local roomy = { max_buffered = 8 * 1024 * 1024 }
for k, v in pairs(ws) do roomy[k] = v end

return {
  ["/ws"] = ws,
  ["/ws_roomy"] = roomy,
  ["/pub"] = function(req)
    local q = req.query
    local topic = q.topic or "all"
    local binary = q.binary == "1"
    local count = tonumber(q.count)
    if not count then
      local n, err = wspush.publish(topic, payload(q), binary)
      return { n = n, err = err, worker = wspush.worker.id }
    end
    local results, n, err = {}, nil, nil
    for i = 1, count do
      n, err = wspush.publish(topic, payload(q, string.format("-%03d", i)), binary)
      results[i] = { n = n, err = err }
    end
    return { n = n, err = err, worker = wspush.worker.id, results = results }
  end,
  ["/status"] = function()
    return { status = wspush.broker_status(), worker = wspush.worker.id,
             workers = wspush.worker.count, count = wspush.count(), closes = closes }
  end,
  ["/events"] = function()
    return { events = events, worker = wspush.worker.id }
  end,
}
