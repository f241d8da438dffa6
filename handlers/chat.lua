-- Chat rooms: connect to ws://HOST/room/NAME; every text message is relayed
-- to the room as JSON. Everything sent to clients is a JSON object:
--   {"type":"welcome","you":7,"room":"lobby"}
--   {"type":"join","user":7,"room":"lobby"}     {"type":"leave","user":7,...}
--   {"type":"message","user":7,"room":"lobby","text":"hi"}
--   {"type":"error","error":"..."}
local wspush = require "wspush"
local cjson = require "cjson"

local MAX_TEXT = 4096

local function announce(room, event)
  event.room = room
  return wspush.publish("room:" .. room, cjson.encode(event))
end

local room = {}

function room.open(conn)
  local name = conn.params.name
  conn.data.room = name -- kept in conn.data so it survives a reload
  conn:send({ type = "welcome", you = conn.id, room = name })
  announce(name, { type = "join", user = conn.id }) -- before we subscribe: others only
  conn:subscribe("room:" .. name)
end

function room.on_message(conn, msg, is_binary)
  if is_binary or #msg > MAX_TEXT then
    return conn:send({ type = "error", error = "send text of at most " .. MAX_TEXT .. " bytes" })
  end
  announce(conn.data.room, { type = "message", user = conn.id, text = msg })
end

function room.on_close(conn)
  -- A closed connection has already left its topics: this reaches the others.
  announce(conn.data.room, { type = "leave", user = conn.id })
end

return {
  ["/room/:name"] = room,
  ["/"] = function() return "Chat: connect a WebSocket to /room/<name>\n" end,
}
