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
  latest = { seq = seq, time = wspush.now(), price = math.floor(price * 100 + 0.5) / 100 }
  wspush.publish("feed", cjson.encode(latest)) -- framed once for everyone
end

-- The timer belongs to this load of the script; a reload retires it and
-- the new version starts its own.
wspush.every(INTERVAL, tick)

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
