-- wspush.json: JSON for handlers. lua-cjson (Debian's 2.1.0) does the work;
-- this adds what it lacks: a way to send an empty array ({} encodes as {}),
-- and errors that name the caller's line rather than this file's.
--   json.encode(v)     -> string; raises on what cannot be JSON (a function,
--                         an excessively sparse array, a cycle)
--   json.decode(s)     -> value, or nil, err
--   json.null          -> the JSON null (decode gives it, encode writes it)
--   json.array([t])    -> t marked as an array: encoded as [...] even empty
local cjson = require "cjson"

local M = {}

M.null = cjson.null

-- Arrays are known by their metatable's name, not its identity: a test
-- runner that loads this module afresh per file must still recognise the
-- arrays an earlier copy marked (the server keeps the first copy's encode).
local ARRAY = "wspush.json.array"
local array_mt = { __name = ARRAY }

local function is_array(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__name") == ARRAY
end

function M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then error("json.array: want a table, got a " .. type(t), 2) end
  if getmetatable(t) ~= nil and not is_array(t) then
    error("json.array: the table already has a metatable", 2)
  end
  return setmetatable(t, array_mt)
end

-- Whether v holds a table marked by json.array: only then does encoding
-- need more than cjson. Depth bounded as cjson's own (1000).
local function marked(v, depth)
  if is_array(v) then return true end
  if depth > 1000 then return false end
  for _, x in next, v do
    if type(x) == "table" and marked(x, depth + 1) then return true end
  end
  return false
end

local encode_value

local function encode_table(t, out, depth)
  if depth > 1000 then error("nested too deep (more than 1000 levels)", 0) end
  if is_array(t) then
    local n = 0
    for k in next, t do
      if math.type(k) ~= "integer" or k < 1 then
        error("json.array holds a non-index key: " .. tostring(k), 0)
      end
      if k > n then n = k end
    end
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      local x = t[i]
      if x == nil then out[#out + 1] = "null" else encode_value(x, out, depth + 1) end
    end
    out[#out + 1] = "]"
  elseif t[1] ~= nil or next(t) == nil then
    -- cjson's own rules for arrays and {} (it raises on what it refuses)
    if marked(t, 0) then
      out[#out + 1] = "["
      for i, x in ipairs(t) do
        if i > 1 then out[#out + 1] = "," end
        encode_value(x, out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = cjson.encode(t)
    end
  else
    out[#out + 1] = "{"
    local first = true
    for k, x in next, t do
      local kt = type(k)
      if kt ~= "string" and kt ~= "number" then error("a table key is a " .. kt, 0) end
      if not first then out[#out + 1] = "," end
      first = false
      out[#out + 1] = cjson.encode(tostring(k))
      out[#out + 1] = ":"
      encode_value(x, out, depth + 1)
    end
    out[#out + 1] = "}"
  end
end

function encode_value(v, out, depth)
  if type(v) == "table" and (getmetatable(v) == nil or is_array(v)) then
    encode_table(v, out, depth)
  else
    out[#out + 1] = cjson.encode(v)
  end
end

local function why(err)
  -- cjson's message carries no useful position: keep its text only
  return (tostring(err):gsub("^[^:]*:%d+: ", ""))
end

local function encode_marked(v)
  local out = {}
  encode_value(v, out, 0)
  return table.concat(out)
end

function M.encode(v)
  -- cjson alone unless an array() is inside (no closure made per call)
  local ok, s
  if type(v) == "table" and marked(v, 0) then
    ok, s = pcall(encode_marked, v)
  else
    ok, s = pcall(cjson.encode, v)
  end
  if not ok then error("json.encode: " .. why(s), 2) end
  return s
end

function M.decode(s)
  if type(s) ~= "string" then error("json.decode: want a string, got a " .. type(s), 2) end
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, why(v) end
  return v
end

return M
