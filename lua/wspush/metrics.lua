-- wspush.metrics: Prometheus metrics. render() gives the text exposition
-- format 0.0.4 of the server's built-in figures (wspush_*) and of the
-- script's own, made by counter(), gauge() and histogram(). With --workers
-- every figure is the whole server's, whichever worker renders it: the
-- values live in memory the workers share (core/series.c).
--
-- A metric is (name, type, label names, buckets); defining it again with the
-- same definition (a reload does) gives the same metric, its values kept.
-- Series (label values) are bounded server-wide (1024, and 16384 values, a
-- histogram taking its buckets + 2): past the bound a new series is refused,
-- counted in wspush_metrics_series_refused_total and logged once per metric;
-- its updates do nothing.
local core = require "wspush.core"

local M = {}

local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

-- The format's rules (names, labels, buckets) are checked by the core
-- (core/series.c): here only the types, and the server's own prefix.
local function check_name(what, name, level)
  if type(name) ~= "string" then error(what .. ": name must be a string", level) end
  if name:sub(1, 7) == "wspush_" then
    error(what .. ": the prefix wspush_ is the server's own (" .. name .. ")", level)
  end
end

local function check_list(what, list, kind, level)
  if list == nil then return {} end
  if type(list) ~= "table" then error(what .. ": " .. kind .. " must be a list", level) end
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

local add, set, observe = core.metrics_add, core.metrics_set, core.metrics_observe

-- A series: the cell its values start at. A refused one (the table is full)
-- has none, and its methods do nothing. The updates take the level their
-- errors name: the script's line, whether it called a series or a metric.
local Series = {}
Series.__index = Series

local function amount(n, level)
  if n == nil then return 1 end
  if type(n) ~= "number" or n ~= n then error("amount must be a number", level + 1) end
  return n
end

local function inc(s, n, level)
  n = amount(n, level + 1)
  if s.kind == "histogram" then error("a histogram takes observe(), not inc()", level) end
  if s.kind == "counter" and n < 0 then error("a counter only goes up (inc(" .. n .. "))", level) end
  if s.cell then add(s.cell, n) end
end

local function dec(s, n, level)
  n = amount(n, level + 1)
  if s.kind ~= "gauge" then error("dec() is for gauges; this is a " .. s.kind, level) end
  if s.cell then add(s.cell, -n) end
end

local function set_(s, v, level)
  if s.kind ~= "gauge" then error("set() is for gauges; this is a " .. s.kind, level) end
  if type(v) ~= "number" then error("set: value must be a number", level) end
  if s.cell then set(s.cell, v) end
end

local function observe_(s, v, level)
  if s.kind ~= "histogram" then error("observe() is for histograms; this is a " .. s.kind, level) end
  if type(v) ~= "number" then error("observe: value must be a number", level) end
  if s.cell then observe(s.fam, s.cell, v) end
end

function Series:inc(n) inc(self, n, 3) end
function Series:add(n) inc(self, n, 3) end
function Series:dec(n) dec(self, n, 3) end
function Series:set(v) set_(self, v, 3) end
function Series:observe(v) observe_(self, v, 3) end

-- A metric: its series by label values (joined by "\0"), those made only.
local Metric = {}
Metric.__index = Metric

local function series(m, key, values, level)
  local cell = core.metrics_series(m.fam, table.unpack(values, 1, #m.labelnames))
  if cell == false then
    error(m.name .. ": label values too long (at most 256 bytes all together)", level)
  end
  local s = setmetatable({ cell = cell, fam = m.fam, kind = m.kind }, Series)
  if cell then
    m.children[key] = s
  elseif not m.warned then
    m.warned = true
    core.log("warn", "wspush.metrics: " .. m.name .. ": too many series, new label values"
             .. " refused (see wspush_metrics_series_refused_total)")
  end
  return s
end

--- The series of these label values (strings or numbers, one per label name,
-- in order; or one table name -> value).
function Metric:labels(...)
  local names, n = self.labelnames, select("#", ...)
  local first = ...
  -- the common case, one label given a string: no table made
  if n == 1 and #names == 1 and type(first) == "string" then
    return self.children[first] or series(self, first, { first }, 3)
  end
  local values
  if n == 1 and type(first) == "table" then
    for k in pairs(first) do
      if not self.index[k] then error(self.name .. ": no label named " .. tostring(k), 2) end
    end
    values = {}
    for i, l in ipairs(names) do values[i] = first[l] end
  elseif n ~= #names then
    error(self.name .. ": expected " .. #names .. " label value(s), got " .. n, 2)
  else
    values = { ... }
  end
  for i = 1, #names do
    local v = values[i]
    if math.type(v) == "integer" then v = tostring(v); values[i] = v end
    if type(v) ~= "string" then
      error(self.name .. ": label " .. names[i] .. " needs a string (or an integer), not "
            .. type(v), 2)
    end
  end
  local key = table.concat(values, "\0")
  return self.children[key] or series(self, key, values, 3)
end

-- A metric without labels has one series.
local function only(m, method, level)
  if #m.labelnames > 0 then
    error(m.name .. ": has labels (" .. table.concat(m.labelnames, ", ") .. "): use :labels(...):"
          .. method .. "()", level)
  end
  return m.children[""] or series(m, "", {}, level)
end

function Metric:inc(n) inc(only(self, "inc", 3), n, 3) end
function Metric:add(n) inc(only(self, "add", 3), n, 3) end
function Metric:dec(n) dec(only(self, "dec", 3), n, 3) end
function Metric:set(v) set_(only(self, "set", 3), v, 3) end
function Metric:observe(v) observe_(only(self, "observe", 3), v, 3) end

local function define(kind, name, help, labelnames, buckets)
  check_name(kind, name, 4)
  if type(help) ~= "string" then error(kind .. ": help must be a string", 3) end
  local labels = check_list(kind, labelnames, "labelnames", 4)
  local index = {}
  for _, l in ipairs(labels) do
    if type(l) ~= "string" then error(kind .. ": labelnames must be strings", 3) end
    index[l] = true
  end
  buckets = check_list(kind, buckets, "buckets", 4)
  for _, b in ipairs(buckets) do
    if type(b) ~= "number" then error(kind .. ": buckets must be numbers", 3) end
  end
  local fam, err = core.metrics_family(name, help, kind, labels, buckets)
  if not fam then error(kind .. ": " .. err, 3) end
  local m = setmetatable({ name = name, kind = kind, fam = fam, labelnames = labels, index = index,
                           children = {} }, Metric)
  if #labels == 0 then series(m, "", {}, 4) end
  return m
end

--- counter(name, help[, labelnames]): a value that only goes up (inc, add).
function M.counter(name, help, labelnames)
  local m = define("counter", name, help, labelnames) -- not a tail call: errors name the caller
  return m
end

--- gauge(name, help[, labelnames]): a value that goes up and down (set, inc,
-- dec, add). With workers, each worker's value, summed.
function M.gauge(name, help, labelnames)
  local m = define("gauge", name, help, labelnames) -- not a tail call: errors name the caller
  return m
end

--- histogram(name, help[, buckets[, labelnames]]): observations counted in
-- buckets (upper bounds, increasing; +Inf is added), with their sum.
function M.histogram(name, help, buckets, labelnames)
  local m = define("histogram", name, help, labelnames, buckets or DEFAULT_BUCKETS) -- not a tail call
  return m
end

--- The Prometheus text format (0.0.4) of every metric, the server's whole.
function M.render()
  return core.metrics_render()
end

--- The Content-Type of render()'s text.
M.content_type = "text/plain; version=0.0.4; charset=utf-8"

return M
