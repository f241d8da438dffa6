-- Tornado demo 1: echo. Try it: wspush handlers/echo.lua, then
--   websocat ws://localhost:8000/ws     and     curl localhost:8000/index
local ws = {}

-- The demo accepts any origin; drop this to allow same-origin pages only.
function ws.check_origin(origin) return true end

function ws.open(conn) conn:send("Welcome") end

function ws.on_message(conn, msg) conn:send("new message :" .. msg) end

function ws.on_close(conn, code, reason) end

return {
  ["/ws"] = ws,
  ["/index"] = function(req) return "Hello world" end,
}
