local server = require "wspush.server"

local function req(method, path, t)
  t = t or {}
  t.method, t.path, t.headers, t.body = method, path, t.headers or { host = "localhost:8000" }, t.body or ""
  return t
end

describe("server", function()
  describe("compile", function()
    it("returns nil and the router's error, without a file:line", function()
      local app, err = server.compile({ ["/x"] = 1 }, ".")
      assert.is_nil(app)
      assert.matches("^routes: ", err)
    end)
  end)

  describe("http", function()
    it("gives the handler the decoded query, params and case-insensitive headers", function()
      local seen
      local app = server.compile({ ["/u/:id"] = function(r) seen = r; return "ok" end }, ".")
      local st, body, h = server.http(app, req("GET", "/u/7", {
        rawquery = "a=1+2", headers = { ["x-token"] = "t" }, remote = "1.2.3.4:5",
      }))
      assert.same({ 200, "ok" }, { st, body })
      assert.equal("text/plain; charset=utf-8", h["Content-Type"])
      assert.same({ a = "1 2" }, seen.query)
      assert.equal("7", seen.params.id)
      assert.equal("t", seen.headers["X-Token"])
      assert.equal("1.2.3.4:5", seen.remote)
    end)

    it("answers 404 when no route matches", function()
      local app = server.compile({ ["/a"] = function() end }, ".")
      assert.equal(404, (server.http(app, req("GET", "/b"))))
    end)

    it("answers 405 with an Allow header for a wrong method", function()
      local app = server.compile({ ["POST /a"] = function() end }, ".")
      local st, _, h = server.http(app, req("GET", "/a"))
      assert.equal(405, st)
      assert.equal("POST", h.Allow)
    end)

    it("answers 426 Upgrade Required to a plain GET on a WebSocket route", function()
      local app = server.compile({ ["/ws"] = {} }, ".")
      local st, _, h = server.http(app, req("GET", "/ws"))
      assert.equal(426, st)
      assert.equal("websocket", h.Upgrade)
    end)

    it("answers 405 to a POST on a WebSocket route from the catch-all", function()
      local app = server.compile(function() return {} end, ".")
      local st, _, h = server.http(app, req("POST", "/anything"))
      assert.same({ 405, "GET" }, { st, h.Allow })
    end)

    it("decodes a form body", function()
      local app = server.compile({ ["POST /f"] = function(r) return r.form end }, ".")
      local _, body = server.http(app, req("POST", "/f", {
        headers = { ["content-type"] = "application/x-www-form-urlencoded; charset=utf-8" },
        body = "name=Ann+Lee",
      }))
      assert.equal('{"name":"Ann Lee"}', body)
    end)

    it("decodes a JSON body, and answers 400 when it is invalid", function()
      local app = server.compile({ ["POST /j"] = function(r) return { got = r.json.n } end }, ".")
      local headers = { ["content-type"] = "Application/JSON" }
      assert.equal('{"got":3}', select(2, server.http(app, req("POST", "/j", { headers = headers, body = '{"n":3}' }))))
      assert.equal(400, (server.http(app, req("POST", "/j", { headers = headers, body = "{nope" }))))
    end)

    it("answers HEAD like GET (the core drops the body, keeping its length)", function()
      local app = server.compile({ ["/t"] = function() return { a = 1 }, 202 end }, ".")
      local st, body, h = server.http(app, req("HEAD", "/t"))
      assert.same({ 202, '{"a":1}' }, { st, body })
      assert.equal("application/json; charset=utf-8", h["Content-Type"])
    end)

    it("lets a handler's error propagate for the core to answer 500", function()
      local app = server.compile({ ["/boom"] = function() error("boom") end }, ".")
      assert.has_error(function() server.http(app, req("GET", "/boom")) end)
    end)
  end)

  describe("upgrade", function()
    local ws = {}
    local app = server.compile({ ["/ws/:room"] = ws, ["/page"] = function() end }, ".")

    it("returns the handler and its route key, and fills the request", function()
      local r = req("GET", "/ws/lobby", { rawquery = "u=ann" })
      local h, key, sub = server.upgrade(app, r, {})
      assert.same({ ws, "/ws/:room" }, { h, key })
      assert.is_nil(sub)
      assert.equal("lobby", r.params.room)
      assert.equal("ann", r.query.u)
    end)

    it("refuses an unknown path or an HTTP route with 404", function()
      -- the fifth value says why, for wspush_upgrades_refused_total
      assert.same({ nil, 404, "Not Found", nil, "route" }, { server.upgrade(app, req("GET", "/nope"), {}) })
      assert.same({ nil, 404, "Not Found", nil, "route" }, { server.upgrade(app, req("GET", "/page"), {}) })
    end)

    it("allows a request without Origin and a same-origin one", function()
      assert.equal(ws, (server.upgrade(app, req("GET", "/ws/a"), {})))
      local r = req("GET", "/ws/a", { headers = { host = "localhost:8000", origin = "http://localhost:8000" } })
      assert.equal(ws, (server.upgrade(app, r, {})))
    end)

    it("refuses a cross-origin request with 403 by default", function()
      local r = req("GET", "/ws/a", { headers = { host = "localhost:8000", origin = "http://evil.example" } })
      assert.same({ nil, 403, "cross-origin request refused", nil, "origin" }, { server.upgrade(app, r, {}) })
    end)

    it("lets check_origin decide, given the origin and the request", function()
      local seen = {}
      local open = { check_origin = function(origin, r) seen[#seen + 1] = { origin, r.path }; return origin ~= "http://bad" end }
      local a = server.compile({ ["/ws"] = open }, ".")
      local r1 = req("GET", "/ws", { headers = { host = "h", origin = "http://other" } })
      assert.equal(open, (server.upgrade(a, r1, {})))
      local r2 = req("GET", "/ws", { headers = { host = "h", origin = "http://bad" } })
      assert.equal(403, select(2, server.upgrade(a, r2, {})))
      assert.equal(open, (server.upgrade(a, req("GET", "/ws"), {})))
      assert.same({ { "http://other", "/ws" }, { "http://bad", "/ws" }, { nil, "/ws" } }, seen)
    end)

    it("asks select_subprotocol only when the client offers some", function()
      local calls = 0
      local h = { select_subprotocol = function(list) calls = calls + 1; return list[2] end }
      local a = server.compile({ ["/ws"] = h }, ".")
      assert.same({ h, "/ws", "chat.v2", { } },
        { server.upgrade(a, req("GET", "/ws"), { "chat.v1", "chat.v2" }) })
      assert.same({ h, "/ws", nil, { } }, { server.upgrade(a, req("GET", "/ws"), {}) })
      assert.equal(1, calls)
    end)

    it("raises when select_subprotocol picks a name the client did not offer", function()
      local a = server.compile({ ["/ws"] = { select_subprotocol = function() return "mqtt" end } }, ".")
      assert.has_error(function() server.upgrade(a, req("GET", "/ws"), { "chat" }) end,
        "select_subprotocol returned 'mqtt', which the client did not offer")
    end)

    it("returns no key for a handler found by the catch-all", function()
      local a = server.compile(function() return ws end, ".")
      assert.same({ ws, nil, nil, { } }, { server.upgrade(a, req("GET", "/any"), {}) })
    end)

    it("reads the route's settings for the core into a plain table", function()
      local base = { max_buffered = 1024, compression = { level = 1, junk = true } }
      local h = setmetatable({ max_message = 100 }, { __index = base })
      local a = server.compile({ ["/ws"] = h }, ".")
      local settings = select(4, server.upgrade(a, req("GET", "/ws"), {}))
      assert.same({ max_message = 100, max_buffered = 1024, compression = { level = 1 } }, settings)
      assert.is_nil(getmetatable(settings))
    end)

    it("lets a handler table's raising __index raise from upgrade (the core answers 500)", function()
      local h = setmetatable({ check_origin = function() return true end },
        { __index = function(_, k) error("strict: no field " .. k) end })
      local a = server.compile({ ["/ws"] = h }, ".")
      assert.has_error(function() server.upgrade(a, req("GET", "/ws"), {}) end)
    end)
  end)

  describe("resolve", function()
    it("finds a WebSocket handler again by its route key", function()
      local ws = {}
      local app = server.compile({ ["/ws"] = ws, ["/page"] = function() end }, ".")
      assert.equal(ws, server.resolve(app, "/ws"))
      assert.is_nil(server.resolve(app, "/page"))
      assert.is_nil(server.resolve(app, "/gone"))
    end)

    it("asks the catch-all again when there is no key but a path", function()
      local ws = {}
      local app = server.compile(function(_, path) if path == "/x" then return ws end end, ".")
      assert.equal(ws, server.resolve(app, nil, "/x"))
      assert.is_nil(server.resolve(app, nil, "/y"))
      assert.is_nil(server.resolve(app, nil))
    end)
  end)
end)
