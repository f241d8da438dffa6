-- Benchmark (tests/bench/waiting.py): a connection that greets and is held,
-- with no handler waiting: the baseline of the waiting figures.
local ws = { check_origin = function() return true end }
function ws.open(conn) conn:send("Welcome") end
return { ["/ws"] = ws }
