-- route_cov.lua: which lines of lua/wspush/{router,http,server}.lua a
-- fuzz_route corpus reaches (liblua is not instrumented, so libFuzzer's own
-- coverage report cannot say). Run from the repository root:
--   lua5.4 tests/fuzz/route_cov.lua tests/fuzz/corpus/route build-fuzz/fuzz-corpus/route
-- Inputs are split as fuzz_route.c does; a failing input is printed, not fatal.
-- "Lines" are non-blank, non-comment lines other than end/else/}; a function's
-- "local function f(...)" line counts as missed (it runs only at load time).
package.path = "lua/?.lua;lua/?/init.lua"
package.preload["wspush.core"] = function()
  return { realpath = function() return nil, "stub" end, same_origin = function() return false end }
end

local hits = {}
debug.sethook(function(_, line)
  local src = debug.getinfo(2, "S").source
  if src:find("wspush/", 1, true) then
    hits[src] = hits[src] or {}
    hits[src][line] = true
  end
end, "l")
local H = dofile("tests/fuzz/fuzz_route.lua")

local n, failed = 0, 0
for _, dir in ipairs(arg) do
  local ls = io.popen("ls -A '" .. dir .. "' 2>/dev/null")
  for f in ls:lines() do
    local fh = io.open(dir .. "/" .. f, "rb") -- gone if a running fuzzer reduced it
    local data = fh and fh:read("a")
    if fh then fh:close() end
    if data then
      local fields, pos = {}, 1
      for i = 1, 3 do
        local nl = data:find("\n", pos, true)
        if not nl then
          fields[i], pos = data:sub(pos), nil
          break
        end
        fields[i], pos = data:sub(pos, nl - 1), nl + 1
      end
      local method, url, ctype = fields[1], fields[2] or "", fields[3]
      local body = pos and data:sub(pos) or ""
      if method == "" then method = "GET" end
      -- core/lhost.c push_request()
      local q, h = url:find("?", 1, true), url:find("#", 1, true)
      local plen = q and q - 1 or h and h - 1 or #url
      local query = q and url:sub(q + 1, (h and h > q) and h - 1 or #url) or nil
      local ok, err = pcall(H.one, method, url:sub(1, plen), query, ctype, body)
      if not ok then
        failed = failed + 1
        print(dir .. "/" .. f .. ": " .. tostring(err))
      end
      n = n + 1
    end
  end
  ls:close()
end
debug.sethook()
print(string.format("%d inputs, %d failed", n, failed))

for _, m in ipairs({ "router", "http", "server" }) do
  local path = "lua/wspush/" .. m .. ".lua"
  local seen = hits["@" .. path] or {}
  local total, hit, missed, ln = 0, 0, {}, 0
  for line in io.lines(path) do
    ln = ln + 1
    if line:match("%S") and not line:match("^%s*%-%-") and not line:match("^%s*end%)?,?$")
        and not line:match("^%s*else%s*$") and not line:match("^%s*}") then
      total = total + 1
      if seen[ln] then hit = hit + 1 else missed[#missed + 1] = ln end
    end
  end
  print(string.format("%s: %d/%d lines; missed: %s", path, hit, total, table.concat(missed, " ")))
end
