local json = require "wspush.json"
local testing = require "wspush.testing"
local cjson = require "cjson"

local FIXTURE = "tests/lua/fixtures/json_app.lua"

local function line_of(marker)
  local n = 0
  for l in io.lines(FIXTURE) do
    n = n + 1
    if l:find(marker, 1, true) then return n end
  end
  error("no " .. marker)
end

describe("wspush.json", function()
  it("encodes and decodes, null included", function()
    local s = json.encode({ a = 1, b = { 1, 2, 3 }, c = json.null })
    assert.same({ a = 1, b = { 1, 2, 3 }, c = json.null }, json.decode(s))
    assert.equal('"x"', json.encode("x"))
  end)

  it("sends an array that is empty, where {} would be an object", function()
    assert.equal("{}", json.encode({}))
    assert.equal("[]", json.encode(json.array()))
    assert.equal('{"items":[]}', json.encode({ items = json.array() }))
    assert.equal('[[],{}]', json.encode({ json.array(), {} }))
    assert.equal("[1,null,3]", json.encode(json.array({ 1, nil, 3 })))
    assert.same({ 1, 2 }, cjson.decode(json.encode(json.array({ 1, 2 }))))
  end)

  it("refuses what is not JSON, naming the caller's line", function()
    local ok, err = pcall(function()
      local s = json.encode({ [1] = 1, [1000] = 2 }) -- not a tail call: this line is named
      return s
    end)
    assert.is_false(ok)
    assert.matches("json_spec%.lua:%d+: json%.encode: .*sparse", err)
    assert.has_error(function() json.array(5) end)
    assert.has_error(function() json.encode(json.array({ x = 1 })) end)
  end)

  it("decodes bad input to nil, err", function()
    local v, err = json.decode("{nope")
    assert.is_nil(v)
    assert.is_string(err)
    assert.not_matches("json%.lua", err)
  end)

  describe("in handlers", function()
    local app
    before_each(function() app = testing.load(FIXTURE, { catch = true }) end)

    it("an HTTP route can answer an empty array", function()
      local r = app:request("GET", "/empty")
      assert.equal('{"items":[]}', r.body)
    end)

    it("conn:send of a table with an empty array and null", function()
      local c = app:connect("/ws")
      c:receive("hi")
      assert.same({ got = "hi", none = {}, null = cjson.null }, cjson.decode(c.sent[#c.sent].data))
      assert.matches('"none":%[%]', c.sent[#c.sent].data)
    end)

    local function logged(pattern)
      for _, l in ipairs(app.logs) do
        if l.message:match(pattern) then return l.message end
      end
      return nil
    end

    it("a sparse array from an HTTP route names the handler's line, not wspush's", function()
      local r = app:request("GET", "/sparse")
      assert.equal(500, r.status)
      local msg = assert(logged("sparse"), "no log line")
      assert.matches("json_app%.lua:" .. line_of("SPARSE_ROUTE_LINE") .. ":", msg)
      assert.not_matches("wspush/http%.lua", msg:match("^[^\n]*"))
    end)

    it("a sparse array sent on a connection names the handler's line", function()
      local c = app:connect("/ws")
      c:receive("sparse")
      local msg = assert(logged("sparse"), "no log line")
      assert.matches("json_app%.lua:" .. line_of("SPARSE_SEND_LINE") .. ":", msg)
    end)
  end)
end)
