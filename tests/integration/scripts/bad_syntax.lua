-- a script with a syntax error on line 3
local ws = {}
function ws.open(conn conn:send("x") end
return { ["/ws"] = ws }
