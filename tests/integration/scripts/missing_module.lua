-- Requires a module that exists nowhere: the start-up error is one line
-- that names it (not Lua's list of every place it looked).
local helper = require "no_such_helper_module" -- MISSING_REQUIRE_LINE
return { ["/"] = function() return helper.hello() end }
