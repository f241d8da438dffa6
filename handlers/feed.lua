-- A live JSON feed: subscribers of /feed get one update per second, pushed
-- by a timer (nobody has to ask). GET /feed/latest answers the last update.
--   {"seq":12,"time":1234.5,"price":101.37}
local wspush = require "wspush"
local cjson = require "cjson"

local INTERVAL = 1 -- seconds between updates

local seq, price, latest = 0, 100.0, nil

local function tick()
  seq = seq + 1
  price = math.max(1, price + (math.random() - 0.5)) -- a random walk
  wspush.publish("feed", cjson.encode({
    seq = seq, time = wspush.now(), price = math.floor(price * 100 + 0.5) / 100,
  })) -- framed once for everyone
end

-- Every worker (wspush --workers N) keeps the last update, whoever
-- published it: new clients and /feed/latest get it from any worker.
wspush.on_publish("feed", function(data) latest = cjson.decode(data) end)

-- One worker ticks; with N workers, N timers would publish N updates a
-- second. The timer belongs to this load of the script; a reload retires
-- it and the new version starts its own.
if wspush.worker.id == 1 then wspush.every(INTERVAL, tick) end

local feed = {}

function feed.open(conn)
  conn:subscribe("feed")
  if latest then conn:send(latest) end -- don't make a new client wait a tick
end

return {
  ["/feed"] = feed,
  ["GET /feed/latest"] = function()
    if not latest then return { error = "no update yet" }, 503 end
    return latest
  end,
}
