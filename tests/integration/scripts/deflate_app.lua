-- Test application for tests/integration/test_deflate.py (permessage-deflate).
--
-- WebSocket routes (all echo every message back with the same type):
--   /echo      server defaults
--   /plain     compression = false
--   /w10       compression = { window_bits = 10 }
--   /ctx       compression = { context_takeover = true }
--   /small     compression = { threshold = 16, level = 9, mem_level = 9 }
--   /cmd       commands, see cmd.on_message
--   /cmd1      the same commands with compression = { level = 1 }
-- HTTP:
--   /publish?topic=T&n=N[&bin=1]  wspush.publish of a deterministic N-byte text
--   /subs?topic=T                 how many connections subscribed to T so far
local wspush = require "wspush"

local function echo_route(compression)
  local r = { compression = compression }
  function r.on_message(conn, msg, is_binary) conn:send(msg, is_binary) end
  return r
end

-- A deterministic, compressible but not trivial text of n bytes (ASCII).
local function text_of(n)
  local words = { "alpha ", "bravo ", "charlie ", "delta ", "echo ", "foxtrot ", "golf " }
  local out, len, i = {}, 0, 0
  while len < n do
    i = i + 1
    local w = words[(i * 7 + i // 3) % #words + 1] .. tostring(i % 97) .. " "
    out[#out + 1] = w
    len = len + #w
  end
  return table.concat(out):sub(1, n)
end

local subs = {}   -- topic -> count of subscribe commands

-- /cmd: "big N" -> N-byte text, compressed as usual;
--       "plain N" -> the same text with conn:send(x, false, false);
--       "plainbin N" -> N zero bytes as binary with conn:send(x, true, false);
--       "burst N" -> N differing texts in one callback, then "burst done";
--       "sub TOPIC" -> subscribe, answers "subscribed TOPIC".
local cmd = {}
function cmd.on_message(conn, msg, is_binary)
  local verb, arg = msg:match("^(%a+) (%S+)$")
  if verb == "big" then
    conn:send(text_of(tonumber(arg)))
  elseif verb == "plain" then
    conn:send(text_of(tonumber(arg)), false, false)
  elseif verb == "plainbin" then
    conn:send(string.rep("\0", tonumber(arg)), true, false)
  elseif verb == "burst" then
    -- "burst N": N messages of different lengths sent in one callback, then "burst done"
    for k = 1, tonumber(arg) do
      conn:send(string.rep("#", k % 53) .. text_of(6000 + k * 13) .. k)
    end
    conn:send("burst done")
  elseif verb == "sub" then
    conn:subscribe(arg)
    subs[arg] = (subs[arg] or 0) + 1
    conn:send("subscribed " .. arg)
  else
    conn:send(msg, is_binary)
  end
end

local JSON = { ["Content-Type"] = "application/json" }

return {
  ["/echo"] = echo_route(nil),
  ["/plain"] = echo_route(false),
  ["/w10"] = echo_route({ window_bits = 10 }),
  ["/ctx"] = echo_route({ context_takeover = true }),
  ["/small"] = echo_route({ threshold = 16, level = 9, mem_level = 9 }),
  ["/cmd"] = cmd,
  ["/cmd1"] = { compression = { level = 1 }, on_message = cmd.on_message },
  ["/page"] = function(req)
    return "<!doctype html><title>deflate</title><p>permessage-deflate test page</p>", 200,
           { ["Content-Type"] = "text/html; charset=utf-8" }
  end,
  ["/text"] = function(req) return text_of(tonumber(req.query.n)) end,
  ["/publish"] = function(req)
    local n = wspush.publish(req.query.topic, text_of(tonumber(req.query.n)), req.query.bin == "1")
    return string.format('{"sent":%d}', n), 200, JSON
  end,
  ["/subs"] = function(req)
    return string.format('{"subs":%d}', subs[req.query.topic] or 0), 200, JSON
  end,
}
