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

local cjson = require "cjson"

local function json_type(ctype)
  local mt = ctype and ctype:match("^%s*([^;%s]+)")
  mt = mt and mt:lower()
  return mt == "application/json" or (mt and mt:match("%+json$") ~= nil)
end

--- An HTTP request to another service, waiting for its answer (only in a
-- handler's own coroutine). Returns res = { status, headers, body, json, url }
-- or nil, err. See docs/api.md, "Handlers that wait".
function M.fetch(url, opts)
  if type(url) ~= "string" then error("fetch: url must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("fetch: opts must be a table", 2) end
  local method = opts.method or "GET"
  if type(method) ~= "string" then error("fetch: opts.method must be a string", 2) end
  local headers, body = opts.headers, opts.body
  if headers ~= nil and type(headers) ~= "table" then error("fetch: opts.headers must be a table", 2) end
  if type(body) == "table" then
    local has_type = false
    for k in pairs(headers or {}) do
      if type(k) == "string" and k:lower() == "content-type" then has_type = true end
    end
    local h = {}
    for k, v in pairs(headers or {}) do h[k] = v end
    if not has_type then h["Content-Type"] = "application/json" end
    headers, body = h, cjson.encode(body)
  elseif body ~= nil and type(body) ~= "string" then
    error("fetch: opts.body must be a string or a table", 2)
  end
  local fake = core.fetch_fake
  local status, hdrs, rbody, final
  if fake then
    -- wspush.testing: a scripted answer, after opts.delay of virtual time.
    core.can_wait("wspush.fetch")
    local res, err, delay = fake(url, { method = method, headers = headers, body = body,
                                        timeout = opts.timeout, follow = opts.follow,
                                        verify = opts.verify })
    local timeout = opts.timeout or 10
    if delay and delay > timeout then
      core.sleep(timeout)
      return nil, "timeout"
    end
    if delay and delay > 0 then core.sleep(delay) end
    if not res then return nil, err end
    status, rbody, final = res.status or 200, res.body or "", url
    hdrs = {}
    for k, v in pairs(res.headers or {}) do hdrs[#hdrs + 1] = k; hdrs[#hdrs + 1] = tostring(v) end
  else
    status, hdrs, rbody, final = core.fetch(url, method, headers, body, opts.timeout, opts.max_body,
                                            opts.follow, opts.verify)
    if not status then return nil, hdrs end
  end
  local h = {}
  for i = 1, #hdrs, 2 do
    local k = hdrs[i]:lower()
    h[k] = h[k] and (h[k] .. ", " .. hdrs[i + 1]) or hdrs[i + 1]
  end
  local res = { status = status, headers = http.case_insensitive(h), body = rbody, url = final }
  if rbody ~= "" and json_type(h["content-type"]) then
    local ok, v = pcall(cjson.decode, rbody)
    if ok then res.json = v end
  end
  return res
end

--- An HTTP handler serving files under dir, relative to the script's
-- directory. Use it on a "/static/*path" route (or "/" for an index.html).
function M.static(dir)
  if type(dir) ~= "string" or dir == "" then error("static: dir must be a non-empty string", 2) end
  -- Read script_dir now: the script calling static() is the one loading.
  return http.static(dir, { base = core.script_dir, realpath = core.realpath })
end

return M
