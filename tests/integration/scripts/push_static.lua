-- Test script for test_static.py: static files from a directory the test
-- chooses (absolute, from PUSH_STATIC_ROOT) and from one relative to this script.
local wspush = require "wspush"

local root = assert(os.getenv("PUSH_STATIC_ROOT"), "set PUSH_STATIC_ROOT")
local files = wspush.static(root)

return {
  ["/"] = files,                                     -- root/index.html
  ["/static/*path"] = files,
  ["/ex/*path"] = wspush.static("../../../examples"), -- relative to this script
  ["/hello"] = function() return "hello" end,
}
