-- require "wspush": the module scripts use. The event-loop functions come
-- from the C core ("wspush.core", registered in package.preload by the
-- server, or faked by wspush.testing); this file adds what is pure Lua.
local core = require "wspush.core"
local http = require "wspush.http"

local M = {}
for k, v in pairs(core) do
  if type(v) == "function" then M[k] = v end
end
-- Values (version, script_dir, which C may set again on reload) are read
-- through, never copied, so they cannot go stale.
setmetatable(M, { __index = core })

--- An HTTP handler serving files under dir, relative to the script's
-- directory. Use it on a "/static/*path" route (or "/" for an index.html).
function M.static(dir)
  if type(dir) ~= "string" or dir == "" then error("static: dir must be a non-empty string", 2) end
  -- Read script_dir now: the script calling static() is the one loading.
  return http.static(dir, { base = core.script_dir, realpath = core.realpath })
end

return M
