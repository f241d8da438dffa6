-- A JSON encoder of the test scripts' own: observing server-side state must
-- not depend on the server's table->JSON feature, which is tested separately.
local M = {}

local function esc(s)
  return (s:gsub('[%c"\\]', function(c)
    local m = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return m[c] or string.format('\\u%04x', c:byte())
  end))
end
local function enc(v)
  local t = type(v)
  if v == nil then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "string" then return '"' .. esc(v) .. '"'
  elseif t == "table" then
    if v[1] ~= nil or next(v) == nil then
      local out = {}
      for i = 1, #v do out[i] = enc(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local out = {}
    for k, x in pairs(v) do out[#out + 1] = enc(tostring(k)) .. ":" .. enc(x) end
    table.sort(out)
    return "{" .. table.concat(out, ",") .. "}"
  else return enc(tostring(v)) end
end
M.encode = enc

local JSON = { ["Content-Type"] = "application/json" }
--- An HTTP handler's return values for v as JSON.
function M.reply(v) return enc(v), 200, JSON end

return M
