-- Benchmark (tests/bench/redis.py): the echo demo's reply, made two ways in
-- one server. /plain answers "new message :" .. msg at once; /redis first
-- reads that prefix from Redis (GET bench:prefix, which the bench set) with
-- wspush.redis (REDIS_URL), so every message costs one round trip to Redis.
-- A failed GET closes the connection (1011): wsbench counts it as lost rather
-- than take a short reply for a greeting.
local wspush = require "wspush"
local r = wspush.redis((assert(os.getenv("REDIS_URL"), "REDIS_URL is not set")))

local plain = { check_origin = function() return true end }
function plain.open(conn) conn:send("Welcome") end
function plain.on_message(conn, msg) conn:send("new message :" .. msg) end

local via_redis = { check_origin = function() return true end, open = plain.open }
function via_redis.on_message(conn, msg)
  local prefix, err = r:call("GET", "bench:prefix")
  if type(prefix) ~= "string" then
    conn:close(1011, "redis: " .. tostring(err))
    return
  end
  conn:send(prefix .. msg)
end

return { ["/plain"] = plain, ["/redis"] = via_redis }
