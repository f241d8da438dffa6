-- wspush.sleep while the script loads: there is no handler to wait in, so
-- the script fails to load (test_waiting.py).
local wspush = require "wspush"
wspush.sleep(0.01) -- LOAD_SLEEP_LINE
return { ["/x"] = function() return "never" end }
