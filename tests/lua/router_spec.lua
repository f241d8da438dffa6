local router = require "wspush.router"

local function compile(routes)
  return assert(router.compile(routes))
end

local function fn() end

describe("router", function()
  it("matches an exact path and returns the route key", function()
    local r = compile({ ["/index"] = fn })
    local h, params, key = r:match("GET", "/index")
    assert.equal(fn, h)
    assert.same({}, params)
    assert.equal("/index", key)
  end)

  it("refuses an empty routes table (every request would be a 404)", function()
    local r, err = router.compile({})
    assert.is_nil(r)
    assert.matches("empty table", err)
  end)

  it("answers 404 for a path no route matches", function()
    local r = compile({ ["/index"] = fn })
    assert.same({ nil, 404 }, { r:match("GET", "/nope") })
    assert.same({ nil, 404 }, { r:match("GET", "/index/") })
  end)

  it("prefers an exact path over a pattern", function()
    local exact, pat = function() end, function() end
    local r = compile({ ["/room/:name"] = pat, ["/room/lobby"] = exact })
    assert.equal(exact, (r:match("GET", "/room/lobby")))
    assert.equal(pat, (r:match("GET", "/room/other")))
  end)

  it("captures one non-empty segment with :param", function()
    local r = compile({ ["/room/:name"] = fn })
    local _, params = r:match("GET", "/room/lobby")
    assert.equal("lobby", params.name)
    assert.equal("lobby", params[1])
    assert.same({ nil, 404 }, { r:match("GET", "/room/") })
    assert.same({ nil, 404 }, { r:match("GET", "/room/a/b") })
  end)

  it("captures the rest of the path with *splat", function()
    local r = compile({ ["/files/*path"] = fn })
    assert.equal("a/b/c.txt", select(2, r:match("GET", "/files/a/b/c.txt")).path)
    assert.equal("", select(2, r:match("GET", "/files/")).path)
    assert.same({ nil, 404 }, { r:match("GET", "/files") })
  end)

  it("matches patterns only against a path that starts with '/'", function()
    -- llhttp accepts "GET *room/x HTTP/1.1"; the first byte must not be skipped
    -- (found by tests/fuzz/fuzz_route.c, regressions/route/pattern-no-slash).
    local exact, pat = function() end, function() end
    local r = compile({ ["/room/:name"] = pat, ["/room/lobby"] = exact, ["/f/*rest"] = pat })
    assert.same({ nil, 404 }, { r:match("GET", "*room/lobby") })
    assert.same({ nil, 404 }, { r:match("GET", "Xroom/x") })
    assert.same({ nil, 404 }, { r:match("GET", "\15f/a/b") })
    assert.same({ nil, 404 }, { r:match("GET", "") })
    assert.equal(pat, (r:match("GET", "/room/x")))
  end)

  it("percent-decodes captured segments", function()
    local r = compile({ ["/room/:name"] = fn, ["/f/*rest"] = fn })
    assert.equal("big room/é", select(2, r:match("GET", "/room/big%20room%2F%C3%A9")).name)
    assert.equal("a b/c", select(2, r:match("GET", "/f/a%20b/c")).rest)
  end)

  it("orders patterns by literal segments, then :param before *splat", function()
    local a, b, c, d = {}, {}, {}, {}
    local r = compile({
      ["/api/*rest"] = function() return a end,
      ["/api/:x/:y"] = function() return b end,
      ["/api/users/:id"] = function() return c end,
      ["/api/:thing"] = function() return d end,
    })
    assert.equal(c, r:match("GET", "/api/users/7")())
    assert.equal(b, r:match("GET", "/api/posts/7")())
    assert.equal(d, r:match("GET", "/api/posts")())
    assert.equal(a, r:match("GET", "/api/a/b/c")())
  end)

  it("breaks ties with the earlier literal, whatever the table order", function()
    for _ = 1, 20 do
      local r = compile({ ["/:a/x"] = function() return "a" end, ["/x/:b"] = function() return "b" end })
      assert.equal("b", r:match("GET", "/x/x")())
      assert.equal("a", r:match("GET", "/y/x")())
    end
  end)

  it("lets a function without a method answer GET and HEAD only", function()
    local r = compile({ ["/index"] = fn })
    assert.equal(fn, (r:match("HEAD", "/index")))
    assert.same({ nil, 405, "GET, HEAD" }, { r:match("POST", "/index") })
  end)

  it("lets a WebSocket table answer GET only", function()
    local ws = {}
    local r = compile({ ["/ws"] = ws })
    assert.equal(ws, (r:match("GET", "/ws")))
    assert.same({ nil, 405, "GET" }, { r:match("HEAD", "/ws") })
  end)

  it("restricts a route to its method and lists the others in Allow", function()
    local get, post = function() end, function() end
    local r = compile({ ["/items"] = get, ["POST /items"] = post, ["DELETE /items/:id"] = fn })
    assert.equal(post, (r:match("POST", "/items")))
    assert.same({ nil, 405, "GET, HEAD, POST" }, { r:match("PUT", "/items") })
    assert.same({ nil, 405, "DELETE" }, { r:match("GET", "/items/3") })
  end)

  it("falls through to a pattern when the exact route lacks the method", function()
    local r = compile({ ["POST /room/lobby"] = fn, ["/room/:name"] = {} })
    local h, params = r:match("GET", "/room/lobby")
    assert.is_table(h)
    assert.equal("lobby", params.name)
  end)

  it("answers every method with ANY, after the specific ones", function()
    local any, get = function() end, function() end
    local r = compile({ ["ANY /hook"] = any, ["GET /hook"] = get })
    assert.equal(get, (r:match("GET", "/hook")))
    assert.equal(any, (r:match("PATCH", "/hook")))
    assert.equal(any, (r:match("OPTIONS", "/hook")))
  end)

  it("asks the '*' router when nothing else matched", function()
    local ws = {}
    local r = compile({
      ["/index"] = fn,
      ["*"] = function(method, path)
        if path:match("^/u/") then return ws, { user = path:sub(4) } end
      end,
    })
    local h, params, key = r:match("GET", "/u/ann")
    assert.equal(ws, h)
    assert.equal("ann", params.user)
    assert.is_nil(key)
    assert.same({ nil, 404 }, { r:match("GET", "/other") })
    assert.equal(fn, (r:match("GET", "/index")))
  end)

  it("treats a bare function as the catch-all router", function()
    local r = compile(function(method, path) if path == "/x" then return fn end end)
    assert.equal(fn, (r:match("POST", "/x")))
    assert.same({}, select(2, r:match("POST", "/x")))
    assert.same({ nil, 404 }, { r:match("GET", "/y") })
  end)

  it("raises when the catch-all returns something that is not a handler", function()
    local r = compile(function() return 42 end)
    assert.has_error(function() r:match("GET", "/") end)
  end)

  it("finds a route's value by its key", function()
    local ws = {}
    local r = compile({ ["/ws"] = ws, ["/room/:n"] = ws })
    assert.equal(ws, r:lookup("/room/:n"))
    assert.is_nil(r:lookup("/gone"))
  end)

  describe("refuses", function()
    local function refuses(routes, pattern)
      local r, err = router.compile(routes)
      assert.is_nil(r)
      assert.matches("^routes: ", err)
      assert.matches(pattern, err)
    end

    it("a key that is not a path", function() refuses({ ["index"] = fn }, "key 'index'") end)
    it("a path with spaces", function() refuses({ ["/a b"] = fn }, "key '/a b'") end)
    it("an unknown method", function() refuses({ ["FETCH /x"] = fn }, "unknown method 'FETCH'") end)
    it("a value that is neither table nor function", function()
      refuses({ ["/x"] = "hello" }, "got a string.*key '/x'")
    end)
    it("a WebSocket table on a method other than GET", function()
      refuses({ ["POST /ws"] = {} }, "only answers GET")
    end)
    it("the same path twice for one method", function()
      refuses({ ["/x"] = fn, ["GET /x"] = fn }, "duplicate route for GET /x")
    end)
    it("two patterns of the same shape for one method", function()
      refuses({ ["/r/:a"] = fn, ["/r/:b"] = fn }, "duplicate route")
    end)
    it("a *splat that is not last", function() refuses({ ["/a/*p/b"] = fn }, "must be the last") end)
    it("a capture name used twice", function() refuses({ ["/:a/:a"] = fn }, "used twice") end)
    it("a bad capture name", function() refuses({ ["/:1x"] = fn }, "bad capture name") end)
    it("a '*' that is not a function", function() refuses({ ["*"] = {} }, "router function") end)
    it("routes that are neither table nor function", function()
      local r, err = router.compile(42)
      assert.is_nil(r)
      assert.matches("must return a table or a function", err)
    end)
  end)
end)
