-- wspush.metrics under wspush.testing (the server's own C underneath): the
-- script's counters, gauges and histograms, their errors naming the
-- script's line, the series bound, a reload keeping the values, and the
-- built-in figures moving with traffic.
local testing = require "wspush.testing"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function script(text) return write(os.tmpname(), text) end

-- The value of the sample line "series value" in text, or nil.
local function sample(text, series)
  for line in text:gmatch("[^\n]+") do
    local name, v = line:match("^(.-) (%S+)$")
    if name == series then return tonumber(v) end
  end
end

local APP = [[
local wspush = require "wspush"
local metrics = wspush.metrics
local hits = metrics.counter("app_hits_total", "Hits.", { "kind", "code" })
local rooms = metrics.gauge("app_rooms", "Rooms.")
local lat = metrics.histogram("app_latency_seconds", "Latency.", { 0.1, 1 })
local ws = {}
function ws.on_message(conn, msg)
  hits:labels("msg", 200):inc()
  lat:observe(tonumber(msg) or 0)
  conn:send(msg)
end
return {
  ["/ws"] = ws,
  ["/metrics"] = function() return metrics.render(), 200, { ["Content-Type"] = metrics.content_type } end,
  ["/rooms"] = function(req) rooms:set(tonumber(req.query.n)); rooms:inc(); rooms:dec(2); return "ok" end,
  ["/hit"] = function(req) hits:labels({ kind = req.query.kind, code = "1" }):add(2); return "ok" end,
  -- ?call= one misuse; the answer is the error, whose line is the pcall's
  ["/misuse"] = function(req)
    local calls = {
      neg = function() hits:labels("a", "b"):inc(-1) end,
      nolabels = function() hits:inc() end,
      count = function() hits:labels("a") end,
      unknown = function() hits:labels({ nope = "x" }) end,
      observe = function() rooms:observe(1) end,
      set = function() lat:set(1) end,
      value = function() hits:labels("a", {}) end,
    }
    local ok, err = pcall(calls[req.query.call])
    return tostring(ok) .. " " .. tostring(err)
  end,
}
]]

describe("wspush.metrics", function()
  local path, app
  before_each(function()
    path = script(APP)
    app = testing.load(path)
  end)
  after_each(function()
    app:close()
    os.remove(path)
  end)

  local function render()
    local res = app:request("GET", "/metrics")
    assert.equal(200, res.status)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
    return res.body
  end

  it("counts, sets and observes, and renders the text format", function()
    local c = app:connect("/ws")
    c:receive("0.05")
    c:receive("0.5")
    c:receive("5")
    assert.equal(3, #c:texts())
    assert.equal("ok", app:request("GET", "/rooms?n=5").body)
    assert.equal("ok", app:request("GET", "/hit?kind=x").body)
    local text = render()
    assert.equal(3, sample(text, 'app_hits_total{kind="msg",code="200"}'))
    assert.equal(2, sample(text, 'app_hits_total{kind="x",code="1"}'))
    assert.equal(4, sample(text, "app_rooms"))
    assert.equal(1, sample(text, 'app_latency_seconds_bucket{le="0.1"}'))
    assert.equal(2, sample(text, 'app_latency_seconds_bucket{le="1"}'))
    assert.equal(3, sample(text, 'app_latency_seconds_bucket{le="+Inf"}'))
    assert.equal(5.55, sample(text, "app_latency_seconds_sum"))
    assert.equal(3, sample(text, "app_latency_seconds_count"))
    assert.truthy(text:find("# TYPE app_hits_total counter\n", 1, true))
    assert.truthy(text:find("# TYPE app_latency_seconds histogram\n", 1, true))
    assert.truthy(text:find("# HELP wspush_messages_received_total ", 1, true))
  end)

  it("moves the built-in figures with the traffic", function()
    local before = render()
    local c = app:connect("/ws")
    c:receive("abc")
    c:close(1000)
    local after = render()
    local function delta(s) return sample(after, s) - sample(before, s) end
    assert.equal(1, delta("wspush_messages_received_total"))
    assert.equal(3, delta("wspush_messages_received_bytes_total"))
    assert.equal(1, delta("wspush_connections_opened_total"))
    assert.equal(1, delta('wspush_connections_closed_total{code="1000"}'))
    assert.is_nil(app:connect("/ws", { headers = { Origin = "http://evil.example" } }))
    assert.equal(1, sample(render(), 'wspush_upgrades_refused_total{reason="origin"}')
                    - sample(after, 'wspush_upgrades_refused_total{reason="origin"}'))
  end)

  it("names the script's line in a misuse", function()
    local line = {}
    local n = 0
    for l in io.lines(path) do
      n = n + 1
      local call = l:match("^      (%w+) = function")
      if call then line[call] = n end
    end
    local want = {
      neg = "a counter only goes up", nolabels = "has labels %(kind, code%)",
      count = "expected 2 label value%(s%), got 1", unknown = "no label named nope",
      observe = "observe%(%) is for histograms", set = "set%(%) is for gauges",
      value = "label code needs a string",
    }
    for call, msg in pairs(want) do
      local body = app:request("GET", "/misuse?call=" .. call).body
      assert.truthy(body:find("^false [^\n]*:" .. line[call] .. ": "), call .. ": " .. body)
      assert.truthy(body:find(msg), call .. ": " .. body)
    end
  end)

  it("refuses a bad definition with the script's line", function()
    local cases = {
      { 'metrics.counter("bad name_total", "x")', "invalid metric name" },
      { 'metrics.counter("hits", "x")', "ends in _total" },
      { 'metrics.gauge("wspush_mine", "x")', "prefix wspush_ is the server's own" },
      { 'metrics.gauge("g", "x", { "a-b" })', "invalid label name" },
      { 'metrics.gauge("g", "x", { "a", "a" })', "given twice" },
      { 'metrics.histogram("h", "x", { 1 }, { "le" })', "label name le" },
      { 'metrics.histogram("h", "x", { 2, 1 })', "increasing" },
      { 'metrics.histogram("h_count", "x")', "ends like the series" },
      { 'metrics.gauge("app_hits_total", "x")', "defined already as a counter" },
      { 'metrics.gauge("g", 5)', "help must be a string" },
    }
    for _, case in ipairs(cases) do
      local p = script('local metrics = require("wspush").metrics\n'
                       .. 'metrics.counter("app_hits_total", "Hits.")\n'
                       .. case[1] .. "\nreturn {}\n")
      local ok, err = pcall(testing.load, p)
      os.remove(p)
      assert.is_false(ok, case[1])
      assert.truthy(err:find(":3: ", 1, true), case[1] .. ": " .. err)
      assert.truthy(err:find(case[2]), case[1] .. ": " .. err)
    end
  end)

  it("keeps a metric's values across a reload, and refuses a changed one", function()
    assert.equal("ok", app:request("GET", "/hit?kind=r").body)
    app:reload()
    assert.equal("ok", app:request("GET", "/hit?kind=r").body)
    assert.equal(4, sample(render(), 'app_hits_total{kind="r",code="1"}'))
    -- the same name with another type: the reload fails, the old script serves on
    write(path, (APP:gsub('metrics.gauge%("app_rooms"', 'metrics.counter("app_rooms_total"')
                    :gsub('metrics.counter%("app_hits_total", "Hits.", { "kind", "code" }%)',
                          'metrics.counter("app_hits_total", "Hits.", { "kind" })')))
    local ok, err = pcall(app.reload, app)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("defined already as a counter with other labels"), err)
    assert.equal(4, sample(render(), 'app_hits_total{kind="r",code="1"}'))
  end)

  it("counts backpressure drops and slow-consumer closes", function()
    local p = script([[
local metrics = require("wspush").metrics
local function flood(conn) for _ = 1, 50 do conn:send(string.rep("x", 1000)) end end
return {
  ["/close"] = { max_buffered = 4096, on_message = flood },
  ["/drop"] = { max_buffered = 4096, backpressure = "drop", on_message = flood },
  ["/metrics"] = function() return metrics.render() end,
}
]])
    local a = testing.load(p)
    os.remove(p)
    local function figure(name) return sample(a:request("GET", "/metrics").body, name) end
    local slow, drops = figure("wspush_slow_consumer_closes_total"), figure("wspush_backpressure_drops_total")
    local closed = figure('wspush_connections_closed_total{code="1008"}')
    local c = a:connect("/close")
    c:hold(true)
    c:receive("go")
    local d = a:connect("/drop")
    d:hold(true)
    d:receive("go")
    c:hold(false)
    assert.equal(1, figure("wspush_slow_consumer_closes_total") - slow)
    assert.equal(1, figure('wspush_connections_closed_total{code="1008"}') - closed)
    -- 50 sends of 1000 bytes into 4096: all but the few that fit are dropped
    local dropped = figure("wspush_backpressure_drops_total") - drops
    assert.is_true(dropped >= 40 and dropped < 50, tostring(dropped))
    a:close()
  end)

  it("refuses series past the bound without an error, and counts them", function()
    local p = script([[
local metrics = require("wspush").metrics
local g = metrics.gauge("many", "Many.", { "n" })
return {
  ["/fill"] = function(req)
    for i = 1, tonumber(req.query.n) do g:labels(tostring(i)):set(i) end
    return "ok"
  end,
  ["/metrics"] = function() return metrics.render() end,
}
]])
    local a = testing.load(p)
    os.remove(p)
    local before = sample(a:request("GET", "/metrics").body, "wspush_metrics_series_refused_total")
    assert.equal("ok", a:request("GET", "/fill?n=1030").body)
    local text = a:request("GET", "/metrics").body
    a:close()
    assert.equal(1024, sample(text, 'many{n="1024"}'))
    assert.is_nil(sample(text, 'many{n="1025"}'))
    assert.equal(6, sample(text, "wspush_metrics_series_refused_total") - before)
    local warned = 0
    for _, l in ipairs(a.logs) do
      if tostring(l.message or l):find("too many series", 1, true) then warned = warned + 1 end
    end
    assert.equal(1, warned)
  end)
end)
