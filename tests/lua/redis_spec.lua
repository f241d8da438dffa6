-- wspush.redis under wspush.testing: app:fake_redis(fn) answers the script's
-- calls on the virtual clock; fn(cmd) gets the command as a table of strings
-- and returns value | nil, err [, delay_seconds]. A spec hands a job (a
-- function of r and wspush) to the script's /run route, which runs it in its
-- handler's coroutine (where calls may wait) and keeps what it returned.
local testing = require "wspush.testing"

local URL = "redis://:hunter2@127.0.0.1:6379/2"

local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local SCRIPT = script([[
local wspush = require "wspush"
local r = wspush.redis("redis://:hunter2@127.0.0.1:6379/2", { timeout = 2 })
local ws = {}
function ws.on_message(conn, key)
  local v, err = r:call("GET", key)
  conn:send(tostring(v) .. "|" .. tostring(err))
end
return {
  ["/ws"] = ws,
  ["/run"] = function()
    _G.redis_result = table.pack(pcall(_G.redis_job, r, wspush))
    return "done"
  end,
}
]])

-- Run job(r, wspush) in an HTTP handler of the app; what it returned, packed
-- after pcall's status.
local function run(app, job)
  _G.redis_job, _G.redis_result = job, nil
  local res = app:request("GET", "/run")
  assert.equal(200, res.status)
  assert.equal("done", res.body)
  assert.is_table(_G.redis_result, "the job did not run")
  return _G.redis_result
end

-- The values job returned (it must not raise).
local function values(app, job)
  local res = run(app, job)
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

-- The message job raised (it must raise).
local function raised(app, job)
  local res = run(app, job)
  assert.is_false(res[1], "the job did not raise")
  return tostring(res[2])
end

local WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

describe("wspush.redis under wspush.testing", function()
  local app, calls
  before_each(function()
    app = testing.load(SCRIPT)
    calls = {}
  end)
  after_each(function() _G.redis_job, _G.redis_result = nil, nil end)

  -- A fake that records the commands and answers from a table of key -> result.
  local function fake(answers)
    app:fake_redis(function(cmd)
      calls[#calls + 1] = cmd
      local a = answers[cmd[1] .. " " .. tostring(cmd[2])] or answers[cmd[1]]
      if type(a) == "function" then return a(cmd) end
      if a == nil then return nil end
      return table.unpack(a, 1, a.n or #a)
    end)
  end

  describe("r:call", function()
    it("returns the fake's value in every reply shape", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      bytes = table.concat(bytes)
      fake({
        ["GET k"] = { "v" }, ["GET bin"] = { bytes }, ["GET missing"] = { n = 1 },
        SET = { true }, INCR = { 7 }, DECRBY = { -3 }, PING = { "PONG" },
        MGET = { { "1", false, "2" } },
        EVAL = { { 1, { 2, { 3, "x" } }, {}, { err = "ERR boom" } } },
      })
      local got = table.pack(values(app, function(r)
        return r:call("GET", "k"), r:call("GET", "bin"), r:call("SET", "k", "v"),
               r:call("INCR", "n"), r:call("DECRBY", "n", 10), r:call("PING"),
               r:call("MGET", "a", "x", "b"), r:call("EVAL", "return 1", 0),
               (r:call("GET", "missing"))
      end))
      assert.equal(9, got.n)
      assert.equal("v", got[1])
      assert.equal(bytes, got[2])
      assert.is_true(got[3])
      assert.equal(7, got[4])
      assert.equal("integer", math.type(got[4]))
      assert.equal(-3, got[5])
      assert.equal("integer", math.type(got[5]))
      assert.equal("PONG", got[6])
      assert.same({ "1", false, "2" }, got[7])
      assert.same({ 1, { 2, { 3, "x" } }, {}, { err = "ERR boom" } }, got[8])
      assert.is_nil(got[9])
    end)

    it("returns nil, err when the fake answers with an error", function()
      fake({ GET = { nil, WRONGTYPE }, NOSUCHCMD = { nil, "ERR unknown command 'NOSUCHCMD'" } })
      local v, err, v2, err2 = values(app, function(r)
        local a, b = r:call("GET", "l")
        local c, d = r:call("NOSUCHCMD")
        return a, b, c, d
      end)
      assert.is_nil(v)
      assert.equal(WRONGTYPE, err)
      assert.is_nil(v2)
      assert.equal("ERR unknown command 'NOSUCHCMD'", err2)
    end)

    it("gives the fake the command as strings, numbers converted with tostring", function()
      fake({ INCRBY = { 1 }, INCRBYFLOAT = { "1.5" }, SET = { true }, LPUSH = { 3 } })
      values(app, function(r)
        r:call("INCRBY", "k", 5)
        r:call("INCRBY", "k", 5.0)
        r:call("INCRBYFLOAT", "f", 1.5)
        r:call("SET", 42, -3)
        r:call("LPUSH", "l", 1, 2.0, 2.5)
      end)
      assert.same({
        { "INCRBY", "k", "5" }, { "INCRBY", "k", "5" }, { "INCRBYFLOAT", "f", "1.5" },
        { "SET", "42", "-3" }, { "LPUSH", "l", "1", "2", "2.5" },
      }, calls)
    end)

    it("raises for an argument that is neither a string nor a number, sending nothing", function()
      fake({})
      for _, bad in ipairs({ {}, true, false, function() end }) do
        raised(app, function(r) return r:call("SET", "k", bad) end)
      end
      assert.same({}, calls)
    end)

    it("waits for the fake's delay on the virtual clock", function()
      fake({ GET = { "late", nil, 1.5 } })
      local v, err, elapsed = values(app, function(r, wspush)
        local t0 = wspush.now()
        local a, b = r:call("GET", "k")
        return a, b, wspush.now() - t0
      end)
      assert.equal("late", v)
      assert.is_nil(err)
      assert.near(1.5, elapsed, 0.01)
    end)

    it("times out after the client's timeout when the delay is longer", function()
      fake({ GET = { "too late", nil, 3 } })
      local v, err, elapsed = values(app, function(r, wspush)
        local t0 = wspush.now()
        local a, b = r:call("GET", "k")
        return a, b, wspush.now() - t0
      end)
      assert.is_nil(v)
      assert.equal("timeout", err)
      assert.near(2, elapsed, 0.01)   -- the script's opts.timeout
    end)

    it("takes a later call's opts: the timeout is replaced", function()
      fake({ GET = { "v", nil, 1 } })
      local same, v, err, elapsed = values(app, function(r, wspush)
        local again = wspush.redis(URL, { timeout = 0.5 })
        local t0 = wspush.now()
        local a, b = r:call("GET", "k")
        return again == r, a, b, wspush.now() - t0
      end)
      assert.is_true(same)
      assert.is_nil(v)
      assert.equal("timeout", err)
      assert.near(0.5, elapsed, 0.01)
    end)

    it("answers each caller with its own reply, in the order the delays end", function()
      fake({ GET = function(cmd)
        local delay = ({ a = 0.3, b = 0.1, c = 0.2 })[cmd[2]]
        return "val:" .. cmd[2], nil, delay
      end })
      local a, b, c = assert(app:connect("/ws")), assert(app:connect("/ws")), assert(app:connect("/ws"))
      a:receive("a")
      b:receive("b")
      c:receive("c")
      assert.same({}, a:texts())
      app:advance(0.15)
      assert.same({}, a:texts())
      assert.same({ "val:b|nil" }, b:texts())
      assert.same({}, c:texts())
      app:advance(0.2)
      assert.same({ "val:a|nil" }, a:texts())
      assert.same({ "val:c|nil" }, c:texts())
      assert.equal(3, #calls)
    end)
  end)

  describe("refused commands", function()
    local REFUSED = {
      { "SUBSCRIBE", "ch" }, { "psubscribe", "c*" }, { "SSUBSCRIBE", "ch" }, { "unsubscribe" },
      { "PUNSUBSCRIBE" }, { "SUNSUBSCRIBE" }, { "MONITOR" }, { "WATCH", "k" }, { "UNWATCH" },
      { "multi" }, { "EXEC" }, { "DISCARD" }, { "blpop", "l", 0 }, { "BRPOP", "l", 0 },
      { "BRPOPLPUSH", "a", "b", 0 }, { "BLMOVE", "a", "b", "LEFT", "RIGHT", 0 },
      { "BLMPOP", 0, 1, "l", "LEFT" }, { "BZPOPMIN", "z", 0 }, { "bzpopmax", "z", 0 },
      { "BZMPOP", 0, 1, "z", "MIN" }, { "WAIT", 1, 0 }, { "WAITAOF", 1, 0, 0 },
      { "XREAD", "BLOCK", 0, "STREAMS", "s", "$" }, { "xreadgroup", "GROUP", "g", "c", "block", 0,
      "STREAMS", "s", ">" }, { "QUIT" }, { "RESET" }, { "select", 1 }, { "AUTH", "pw" },
      { "HELLO", 3 }, { "CLIENT", "REPLY", "OFF" }, { "SYNC" }, { "PSYNC", "?", -1 },
    }

    it("raise at once, naming the command, and the fake never sees them", function()
      fake({})
      for _, cmd in ipairs(REFUSED) do
        local msg = raised(app, function(r) return r:call(table.unpack(cmd)) end)
        assert.truthy(msg:find("wspush.redis", 1, true), msg)
        assert.truthy(msg:find(cmd[1]:upper(), 1, true), msg)
        assert.truthy(msg:find("refused", 1, true), msg)
      end
      assert.same({}, calls)
    end)

    it("leave XREAD without BLOCK alone", function()
      fake({ XREAD = { n = 1 } })
      local v, err = values(app, function(r) return r:call("XREAD", "COUNT", 1, "STREAMS", "s", "0") end)
      assert.is_nil(v)
      assert.is_nil(err)
      assert.same({ { "XREAD", "COUNT", "1", "STREAMS", "s", "0" } }, calls)
    end)
  end)

  describe("r:transaction", function()
    it("calls the fake once per command and gathers the values", function()
      local n = 0
      fake({
        INCR = function() n = n + 1 return n end,
        GET = function() return tostring(n) end,
        LPUSH = { nil, WRONGTYPE },
        SET = { true },
      })
      local res, err = values(app, function(r)
        return r:transaction({ { "INCR", "a" }, { "GET", "a" }, { "LPUSH", "a", "x" }, { "SET", "b", 1 } })
      end)
      assert.is_nil(err)
      assert.same({ 1, "1", { err = WRONGTYPE }, true }, res)
      assert.same({ { "INCR", "a" }, { "GET", "a" }, { "LPUSH", "a", "x" }, { "SET", "b", "1" } }, calls)
    end)

    it("raises for a refused command inside, or no command, sending nothing", function()
      fake({ SET = { true } })
      local msg = raised(app, function(r) return r:transaction({ { "SET", "a", "1" }, { "blpop", "l", 0 } }) end)
      assert.truthy(msg:find("wspush.redis", 1, true), msg)
      assert.truthy(msg:find("BLPOP", 1, true), msg)
      assert.truthy(msg:find("refused", 1, true), msg)
      raised(app, function(r) return r:transaction({ { "SET", "a", "1" }, { "MULTI" } }) end)
      raised(app, function(r) return r:transaction({}) end)
      assert.same({}, calls)
    end)
  end)

  describe("the client", function()
    it("is one object per url, shown without its password", function()
      local same, other, shown, user = values(app, function(r, wspush)
        return wspush.redis(URL) == r, wspush.redis("redis://127.0.0.1:6379/3") ~= r, tostring(r),
               tostring(wspush.redis("redis://alice:s3cret@10.0.0.1:6380"))
      end)
      assert.is_true(same)
      assert.is_true(other)
      assert.equal("wspush.redis(redis://:***@127.0.0.1:6379/2)", shown)
      assert.equal("wspush.redis(redis://alice:***@10.0.0.1:6380)", user)
    end)

    it("refuses a bad url, never showing the password", function()
      local cases = {
        { "http://127.0.0.1:6379", "scheme" }, { "redis://127.0.0.1:99999", "port" },
        { "redis://:s3cret@127.0.0.1:12ab", "port" }, { "redis://127.0.0.1:6379/x", "db" },
        { "redis://:s3cret@:6379", "host" }, { "unix:///tmp/r.sock?db=x", "db" },
      }
      for _, case in ipairs(cases) do
        local msg = raised(app, function(_, wspush) return wspush.redis(case[1]) end)
        assert.truthy(msg:find("wspush.redis: invalid url: ", 1, true), msg)
        assert.truthy(msg:find(case[2], 1, true), case[1] .. " -> " .. msg)
        assert.falsy(msg:find("s3cret", 1, true), msg)
      end
      local msg = raised(app, function(_, wspush) return wspush.redis("rediss://:s3cret@127.0.0.1:6380") end)
      assert.truthy(msg:find("rediss:// is not supported", 1, true), msg)
      assert.truthy(msg:find("TLS", 1, true), msg)
      assert.falsy(msg:find("s3cret", 1, true), msg)
      msg = raised(app, function(_, wspush) return wspush.redis(6379) end)
      assert.truthy(msg:find("wspush.redis: url must be a string", 1, true), msg)
    end)

    it("raises without a fake, naming app:fake_redis", function()
      local msg = raised(app, function(r) return r:call("GET", "k") end)
      assert.truthy(msg:find("fake_redis", 1, true), msg)
    end)
  end)

  describe("a script", function()
    it("whose url is bad fails to load", function()
      local bad = script([[
local wspush = require "wspush"
wspush.redis("redis://:s3cret@127.0.0.1:notaport")
return { ["/x"] = function() return "never" end }
]])
      local ok, err = pcall(testing.load, bad)
      os.remove(bad)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("wspush.redis: invalid url: ", 1, true), err)
      assert.falsy(tostring(err):find("s3cret", 1, true), err)
    end)

    it("that calls while it loads fails to load", function()
      local bad = script([[
local wspush = require "wspush"
local r = wspush.redis("redis://127.0.0.1:6379")
r:call("PING")
return { ["/x"] = function() return "never" end }
]])
      local ok = pcall(testing.load, bad)
      os.remove(bad)
      assert.is_false(ok)
    end)
  end)
end)
