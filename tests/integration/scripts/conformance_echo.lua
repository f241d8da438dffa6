-- Plain echo for the conformance suite (tests/integration/test_conformance.py):
-- every message goes back unchanged, with the same type; nothing else is sent.
local ws = {}

function ws.on_message(conn, msg, is_binary)
  conn:send(msg, is_binary)
end

return { ["/ws"] = ws }
