-- a script that fails while loading
local ws = {}
local n = nil
local boom = n.field -- LOAD_ERROR_LINE
return { ["/ws"] = ws }
