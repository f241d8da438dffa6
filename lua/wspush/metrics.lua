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
local MAX_LABELS = 8

local function check_name(what, name, level)
  if type(name) ~= "string" then error(what .. ": name must be a string", level) end
  if not name:match("^[%a_:][%w_:]*$") or #name > 63 then
    error(what .. ": invalid metric name '" .. name
          .. "' (letters, digits, _ and :, not starting with a digit, at most 63)", level)
  end
  if name:sub(1, 7) == "wspush_" then
    error(what .. ": the prefix wspush_ is the server's own (" .. name .. ")", level)
  end
end

local function check_labels(what, labelnames, reserved, level)
  if labelnames == nil then return {} end
  if type(labelnames) ~= "table" then error(what .. ": labelnames must be a list of strings", level) end
  if #labelnames > MAX_LABELS then error(what .. ": at most " .. MAX_LABELS .. " labels", level) end
  local seen, out = {}, {}
  for i, l in ipairs(labelnames) do
    if type(l) ~= "string" or not l:match("^[%a_][%w_]*$") or l:sub(1, 2) == "__" or #l > 63 then
      error(what .. ": invalid label name '" .. tostring(l)
            .. "' (letters, digits and _, not starting with a digit or __)", level)
    end
    if l == reserved then error(what .. ": the label name " .. l .. " is reserved", level) end
    if seen[l] then error(what .. ": label " .. l .. " given twice", level) end
    seen[l] = true
    out[i] = l
  end
  return out
end

local function check_buckets(buckets, level)
  if buckets == nil then return DEFAULT_BUCKETS end
  if type(buckets) ~= "table" or #buckets == 0 or #buckets > 32 then
    error("histogram: buckets must be a list of 1 to 32 numbers", level)
  end
  local out = {}
  for i, b in ipairs(buckets) do
    if type(b) ~= "number" or b ~= b or b == math.huge or b == -math.huge then
      error("histogram: bucket " .. i .. " must be a finite number (+Inf is always there)", level)
    end
    if i > 1 and b <= out[i - 1] then error("histogram: buckets must increase", level) end
    out[i] = b
  end
  return out
end

local add, set, observe = core.metrics_add, core.metrics_set, core.metrics_observe

-- A series: the cell its values start at. A refused one (the table is full)
-- has none, and its methods do nothing.
local Series = {}
Series.__index = Series

local function amount(n, level)
  if n == nil then return 1 end
  if type(n) ~= "number" or n ~= n then error("amount must be a number", level) end
  return n
end

function Series:inc(n)
  n = amount(n, 3)
  if self.kind == "counter" and n < 0 then error("a counter only goes up (inc(" .. n .. "))", 2) end
  if self.kind == "histogram" then error("a histogram takes observe(), not inc()", 2) end
  if self.cell then add(self.cell, n) end
end

function Series:dec(n)
  n = amount(n, 3)
  if self.kind ~= "gauge" then error("dec() is for gauges; this is a " .. self.kind, 2) end
  if self.cell then add(self.cell, -n) end
end

function Series:set(v)
  if self.kind ~= "gauge" then error("set() is for gauges; this is a " .. self.kind, 2) end
  if type(v) ~= "number" then error("set: value must be a number", 2) end
  if self.cell then set(self.cell, v) end
end

function Series:observe(v)
  if self.kind ~= "histogram" then error("observe() is for histograms; this is a " .. self.kind, 2) end
  if type(v) ~= "number" then error("observe: value must be a number", 2) end
  if self.cell then observe(self.fam, self.cell, v) end
end

Series.add = Series.inc

-- A metric: its series by label values.
local Metric = {}
Metric.__index = Metric

local function series(m, values, level)
  local key = table.concat(values, "\0")
  local s = m.children[key]
  if s then return s end
  local cell = core.metrics_series(m.fam, table.unpack(values, 1, #m.labelnames))
  if cell == false then
    error(m.name .. ": label values too long (at most 256 bytes all together)", level)
  end
  s = setmetatable({ cell = cell, fam = m.fam, kind = m.kind }, Series)
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
  local n = #self.labelnames
  local values = { ... }
  if select("#", ...) == 1 and type(values[1]) == "table" then
    local t = values[1]
    values = {}
    for i, l in ipairs(self.labelnames) do values[i] = t[l] end
    for k in pairs(t) do
      local known = false
      for _, l in ipairs(self.labelnames) do known = known or l == k end
      if not known then error(self.name .. ": no label named " .. tostring(k), 2) end
    end
  end
  if select("#", ...) ~= n and not (select("#", ...) == 1 and type(...) == "table") then
    error(self.name .. ": expected " .. n .. " label value(s), got " .. select("#", ...), 2)
  end
  for i = 1, n do
    local v = values[i]
    if type(v) == "number" then v = tostring(v); values[i] = v end
    if type(v) ~= "string" then
      error(self.name .. ": label " .. self.labelnames[i] .. " needs a string value, not " .. type(v), 2)
    end
  end
  return series(self, values, 3)
end

local function unlabelled(m, method, level)
  if #m.labelnames > 0 then
    error(m.name .. ": has labels (" .. table.concat(m.labelnames, ", ") .. "): use :labels(...):"
          .. method .. "()", level)
  end
  return m.only or series(m, {}, level + 1)
end

function Metric:inc(n) local s = unlabelled(self, "inc", 3); s.inc(s, amount(n, 3)) end
function Metric:add(n) local s = unlabelled(self, "add", 3); s.inc(s, amount(n, 3)) end
function Metric:dec(n) local s = unlabelled(self, "dec", 3); s.dec(s, amount(n, 3)) end
function Metric:set(v) local s = unlabelled(self, "set", 3); s.set(s, v) end
function Metric:observe(v) local s = unlabelled(self, "observe", 3); s.observe(s, v) end

local function define(kind, name, help, labelnames, buckets)
  local what = kind
  check_name(what, name, 4)
  if type(help) ~= "string" then error(what .. ": help must be a string", 4) end
  if kind == "counter" and not name:match("_total$") then
    error("counter: a counter's name ends in _total (" .. name .. ")", 4)
  end
  if kind == "histogram" and (name:match("_bucket$") or name:match("_sum$") or name:match("_count$")) then
    error("histogram: " .. name .. " ends like the series a histogram makes (_bucket, _sum, _count)", 4)
  end
  local labels = check_labels(what, labelnames, kind == "histogram" and "le" or nil, 4)
  local fam, err = core.metrics_family(name, help, kind, labels, buckets or {})
  if not fam then error(what .. ": " .. err, 4) end
  local m = setmetatable({ name = name, kind = kind, fam = fam, labelnames = labels, children = {} }, Metric)
  if #labels == 0 then m.only = series(m, {}, 4) end
  return m
end

--- counter(name, help[, labelnames]): a value that only goes up (inc, add).
function M.counter(name, help, labelnames)
  return define("counter", name, help, labelnames)
end

--- gauge(name, help[, labelnames]): a value that goes up and down (set, inc,
-- dec, add). With workers, each worker's value, summed.
function M.gauge(name, help, labelnames)
  return define("gauge", name, help, labelnames)
end

--- histogram(name, help[, buckets[, labelnames]]): observations counted in
-- buckets (upper bounds, increasing; +Inf is added), with their sum.
function M.histogram(name, help, buckets, labelnames)
  return define("histogram", name, help, labelnames, check_buckets(buckets, 3))
end

--- The Prometheus text format (0.0.4) of every metric, the server's whole.
function M.render()
  return core.metrics_render()
end

--- The Content-Type of render()'s text.
M.content_type = "text/plain; version=0.0.4; charset=utf-8"

return M
