local http = require "wspush.http"
local router = require "wspush.router"
local realpath = require("wspush.testing").realpath

describe("http", function()
  describe("decode_query", function()
    it("decodes + as a space and %XX escapes", function()
      assert.same({ q = "a b/c", ["k y"] = "é" }, http.decode_query("q=a+b%2Fc&k+y=%C3%A9"))
    end)
    it("keeps the last value of a repeated key", function()
      assert.same({ a = "3", b = "2" }, http.decode_query("a=1&b=2&a=3"))
    end)
    it("maps a key without '=' to an empty string and skips empty pairs", function()
      assert.same({ flag = "", x = "=1" }, http.decode_query("flag&&x==1&"))
    end)
    it("gives an empty table for nil or an empty string", function()
      assert.same({}, http.decode_query(nil))
      assert.same({}, http.decode_query(""))
    end)
    it("decodes form bodies by the same rules", function()
      assert.same({ name = "Ann Lee", age = "7" }, http.decode_form("name=Ann+Lee&age=7"))
    end)
    it("round-trips what encode_query builds", function()
      local t = { msg = "hi there & bye", ["a/b"] = "100%" }
      assert.same(t, http.decode_query(http.encode_query(t)))
    end)
  end)

  describe("headers", function()
    it("finds a header whatever the case of its name", function()
      local h = http.headers({ ["Content-Type"] = "text/html" })
      assert.equal("text/html", h["content-type"])
      assert.equal("text/html", h["CONTENT-TYPE"])
      h["X-Thing"] = "1"
      assert.equal("1", rawget(h, "x-thing"))
    end)
  end)

  describe("normalize", function()
    it("sends a string as UTF-8 plain text with status 200", function()
      assert.same({ 200, "hi", { ["Content-Type"] = "text/plain; charset=utf-8" } }, { http.normalize("hi") })
    end)
    it("sends a table as JSON", function()
      local st, body, h = http.normalize({ sent = 3 }, 201)
      assert.equal(201, st)
      assert.equal('{"sent":3}', body)
      assert.equal("application/json; charset=utf-8", h["Content-Type"])
    end)
    it("sends nil as an empty body without a content type", function()
      assert.same({ 204, "", {} }, { http.normalize(nil, 204) })
    end)
    it("keeps the handler's content type, however it is spelled", function()
      local _, _, h = http.normalize("<p>", 200, { ["content-type"] = "text/html", ["X-N"] = 5 })
      assert.same({ ["content-type"] = "text/html", ["X-N"] = "5" }, h)
    end)
    it("raises on a bad status, body or header", function()
      assert.has_error(function() http.normalize("x", 42) end)
      assert.has_error(function() http.normalize("x", "200") end)
      assert.has_error(function() http.normalize(true) end)
      assert.has_error(function() http.normalize("x", 200, { ["X-A"] = "a\r\nSet-Cookie: b" }) end)
      assert.has_error(function() http.normalize("x", 200, { ["Bad Name"] = "a" }) end)
    end)
  end)

  describe("same_origin", function()
    it("compares the Origin's host and port with Host", function()
      assert.is_true(http.same_origin("http://localhost:8000", "localhost:8000"))
      assert.is_true(http.same_origin("https://Example.com", "example.com:443"))
      assert.is_false(http.same_origin("http://evil.com", "localhost:8000"))
      assert.is_false(http.same_origin("http://localhost:9000", "localhost:8000"))
      assert.is_false(http.same_origin("null", "localhost:8000"))
    end)
  end)

  it("guesses content types from extensions", function()
    assert.equal("text/html; charset=utf-8", http.content_type("a/index.HTML"))
    assert.equal("image/png", http.content_type("x.png"))
    assert.equal("application/octet-stream", http.content_type("README"))
  end)

  describe("static", function()
    local tmp, serve

    setup(function()
      tmp = os.tmpname()
      os.remove(tmp)
      assert(os.execute(table.concat({
        "mkdir -p " .. tmp .. "/site/sub " .. tmp .. "/site/empty",
        "printf '<h1>home</h1>' > " .. tmp .. "/site/index.html",
        "printf 'body{}' > " .. tmp .. "/site/sub/style.css",
        "printf 'sub home' > " .. tmp .. "/site/sub/index.html",
        "printf 'top secret' > " .. tmp .. "/secret.txt",
        "ln -s ../secret.txt " .. tmp .. "/site/leak.txt",
        "ln -s /etc " .. tmp .. "/site/etc",
        "ln -s sub/style.css " .. tmp .. "/site/alias.css",
      }, " && ")))
      -- Through the router, so percent-decoding happens as in the server.
      local r = assert(router.compile({
        ["/static/*path"] = http.static("site", { base = tmp, realpath = realpath }),
      }))
      serve = function(path)
        local h, params = r:match("GET", path)
        return h({ path = path, params = params })
      end
    end)

    teardown(function() os.execute("rm -rf " .. tmp) end)

    it("serves a file with a content type from its extension", function()
      local body, status, h = serve("/static/sub/style.css")
      assert.same({ "body{}", 200 }, { body, status })
      assert.equal("text/css; charset=utf-8", h["Content-Type"])
    end)

    it("serves index.html for a directory", function()
      local body, status = serve("/static/")
      assert.same({ "<h1>home</h1>", 200 }, { body, status })
      assert.equal("sub home", (serve("/static/sub/")))
    end)

    it("redirects a directory without its trailing slash", function()
      local _, status, h = serve("/static/sub")
      assert.equal(301, status)
      assert.equal("/static/sub/", h.Location)
    end)

    it("serves the root's index.html on a route without captures", function()
      local page = http.static("site", { base = tmp, realpath = realpath })
      local body, status = page({ path = "/docs", params = {} })
      assert.same({ "<h1>home</h1>", 200 }, { body, status })
    end)

    it("answers 404 for a missing file or a directory without index.html", function()
      assert.equal(404, select(2, serve("/static/nope.txt")))
      assert.equal(404, select(2, serve("/static/empty/")))
    end)

    it("follows a symlink that stays inside the root", function()
      local body, status = serve("/static/alias.css")
      assert.same({ "body{}", 200 }, { body, status })
    end)

    for _, case in ipairs({
      { "a plain '..' segment", "/static/../secret.txt" },
      { "'..' after other segments", "/static/sub/../../secret.txt" },
      { "a percent-encoded '..'", "/static/%2e%2e/secret.txt" },
      { "an upper-case encoded '..'", "/static/%2E%2E/secret.txt" },
      { "an encoded slash", "/static/..%2fsecret.txt" },
      { "a doubly encoded '..'", "/static/%252e%252e/secret.txt" },
      { "an absolute path", "/static//etc/passwd" },
      { "an encoded absolute path", "/static/%2fetc%2fpasswd" },
      { "a NUL byte", "/static/index.html%00.txt" },
      { "a backslash", "/static/..%5csecret.txt" },
      { "a symlink to a file outside the root", "/static/leak.txt" },
      { "a symlink to a directory outside the root", "/static/etc/passwd" },
    }) do
      it("refuses " .. case[1] .. " with 403", function()
        local body, status = serve(case[2])
        assert.equal(403, status)
        assert.not_matches("secret", body)
      end)
    end
  end)
end)
