-- a script that returns nothing
local ws = {}
function ws.open(conn) conn:send("x") end
