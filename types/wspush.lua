---@meta wspush
-- LuaLS (lua-language-server) definitions of the wspush API, for editors:
-- completion and checks of handler code. Never loaded at run time. Point
-- the editor at this directory (README, "Editor support"). Kept in step with
-- the server by tests/lua/types_spec.lua.

---@class wspush.Conn
---@field id integer unique in the server, never reused while it runs
---@field path string request path
---@field query table<string, string> decoded query
---@field params table<string, string> route captures
---@field headers table<string, string> request headers, case-insensitive
---@field remote string the client's address, "127.0.0.1:50412"; behind a --trusted-proxy the forwarded one, without a port ("203.0.113.7")
---@field subprotocol string|nil the negotiated subprotocol
---@field data table your own per-connection state
local Conn = {}

---Queue a message: text (UTF-8) unless is_binary; a table goes as JSON.
---@param data string|table
---@param is_binary? boolean
---@param compress? boolean false: never compress this one
---@return true|nil ok
---@return string? err "closed", "buffer full" or "invalid UTF-8 (send it as binary)"
function Conn:send(data, is_binary, compress) end

---Start the close handshake (default 1000).
---@param code? integer
---@param reason? string
---@return true|nil ok
---@return string? err
function Conn:close(code, reason) end

---Send a ping (at most 125 bytes).
---@param data? string
---@return true|nil ok
---@return string? err
function Conn:ping(data) end

---@param topic string
---@return boolean|nil joined
---@return string? err
function Conn:subscribe(topic) end

---@param topic string
---@return boolean|nil left
---@return string? err
function Conn:unsubscribe(topic) end

---@return string[] topics
function Conn:topics() end

---Bytes queued for sending and not yet written to the socket.
---@return integer
function Conn:buffered() end

---true until the close handshake starts.
---@return boolean
function Conn:is_open() end

---@class wspush.Request
---@field method string
---@field path string
---@field query table<string, string>
---@field params table<string, string> route captures
---@field headers table<string, string> case-insensitive
---@field body string
---@field json any the decoded body, when it is JSON
---@field form table<string, string>|nil the decoded body, when it is a form
---@field remote string the client's address, as conn.remote (behind a --trusted-proxy, this request's forwarded one)

---@class wspush.Timer
local Timer = {}
---Stop the timer (no more runs).
function Timer:stop() end
---true until it was stopped, fired for the last time, or retired by a reload.
---@return boolean
function Timer:active() end

---@class wspush.Response
---@field status integer
---@field headers table<string, string>
---@field body string
---@field json any
---@field url string

---@class wspush.Redis
local Redis = {}
---Send one command and wait for its reply (only in a handler's coroutine).
---@param cmd string
---@param ... string|number
---@return any reply nil with err on failure (a null reply is nil without err)
---@return string? err "timeout", "connection lost", "redis unavailable", or Redis's error
function Redis:call(cmd, ...) end
---Send MULTI, the commands, EXEC as one unit; returns EXEC's reply.
---@param cmds (string|number)[][]
---@return any reply
---@return string? err
function Redis:transaction(cmds) end

---@class wspush.BrokerStatus
---@field brokers integer
---@field up integer
---@field connected boolean
---@field reconnects integer
---@field published integer
---@field publish_failed integer
---@field received integer
---@field gaps integer
---@field missed integer
---@field topics integer

---@class wspush.Json
---@field null lightuserdata the JSON null
local Json = {}
---@param v any
---@return string
function Json.encode(v) end
---@param s string
---@return any value
---@return string? err
function Json.decode(s) end
---A table that goes out as a JSON array, even empty.
---@param t? table
---@return table
function Json.array(t) end

---A metric's series: one set of label values (or the metric itself when it
---has no labels). A series refused by the series bound does nothing.
---@class wspush.Series
local Series = {}
---Add n (default 1): counters (n >= 0) and gauges.
---@param n? number
function Series:inc(n) end
---The same as inc.
---@param n? number
function Series:add(n) end
---Subtract n (default 1): gauges.
---@param n? number
function Series:dec(n) end
---Set this worker's value: gauges (with workers, the server shows the sum).
---@param v number
function Series:set(v) end
---One observation: histograms.
---@param v number
function Series:observe(v) end

---@class wspush.Metric: wspush.Series
---@field name string
local Metric = {}
---The series of these label values (one per label name, in order; or one
---table name -> value).
---@param ... string|number|table<string, string|number>
---@return wspush.Series
function Metric:labels(...) end

---@class wspush.Metrics
---@field content_type string the Content-Type of render()'s text
local Metrics = {}
---The Prometheus text format 0.0.4 of the built-in and the script's
---metrics, the whole server's (every worker's, summed).
---@return string
function Metrics.render() end
---A counter (name ends in _total).
---@param name string
---@param help string
---@param labelnames? string[]
---@return wspush.Metric
function Metrics.counter(name, help, labelnames) end
---A gauge (with workers, each worker's value, summed).
---@param name string
---@param help string
---@param labelnames? string[]
---@return wspush.Metric
function Metrics.gauge(name, help, labelnames) end
---A histogram; buckets: increasing upper bounds (+Inf is added; default
---0.005 .. 10 seconds).
---@param name string
---@param help string
---@param buckets? number[]
---@param labelnames? string[]
---@return wspush.Metric
function Metrics.histogram(name, help, buckets, labelnames) end

---@class wspush
---@field version string
---@field script_dir string
---@field shared table survives hot reloads
---@field worker {id: integer, count: integer}
---@field json wspush.Json
---@field metrics wspush.Metrics
local wspush = {}

---Send to every subscriber of topic (in every worker and node). Returns this
---process's count, and "broker unavailable" when the broker could not take it.
---@param topic string
---@param data string|table
---@param is_binary? boolean
---@return integer sent
---@return string? err
function wspush.publish(topic, data, is_binary) end

---fn(data, topic) runs for every message published on topic.
---@param topic string
---@param fn fun(data: string, topic: string)|nil
function wspush.on_publish(topic, fn) end

---@param id integer
---@return wspush.Conn|nil
function wspush.get(id) end

---Open WebSocket connections of this worker.
---@return integer
function wspush.count() end

---Open WebSocket connections of the whole server.
---@return integer
function wspush.count_all() end

---@return fun(): wspush.Conn
function wspush.connections() end

---@param seconds number
---@param fn fun()
---@return wspush.Timer
function wspush.after(seconds, fn) end

---@param seconds number
---@param fn fun()
---@return wspush.Timer
function wspush.every(seconds, fn) end

---Wait without blocking the server (only in a handler's coroutine).
---@param seconds number
---@return true
function wspush.sleep(seconds) end

---An HTTP request to another service, waiting for its answer.
---@param url string
---@param opts? {method?: string, headers?: table<string, string>, body?: string|table, timeout?: number, max_body?: integer}
---@return wspush.Response|nil res
---@return string? err
function wspush.fetch(url, opts) end

---A Redis client (one connection per URL, pipelined).
---@param url string redis://[[user]:password@]host[:port][/db] or unix:///path
---@param opts? {timeout?: number, max_queued?: integer}
---@return wspush.Redis
function wspush.redis(url, opts) end

---An HTTP handler serving the files under dir (relative to the script).
---@param dir string
---@return fun(req: wspush.Request): (string|table|nil, integer?, table?)
function wspush.static(dir) end

---@param level "error"|"warn"|"info"|"debug"
---@param message string
function wspush.log(level, message) end

---The event loop's clock, in seconds.
---@return number
function wspush.now() end

---@param fn fun(info: {generation: integer, changed: string})
function wspush.on_reload(fn) end

---@param fn fun()
function wspush.on_shutdown(fn) end

---@param fn fun(event: "up"|"down"|"gap", info: {broker: string, topic?: string, missed?: integer})|nil
function wspush.on_broker(fn) end

---@return wspush.BrokerStatus|nil
function wspush.broker_status() end

---@param path string
---@return string|nil real
---@return string? err
function wspush.realpath(path) end

---@param origin string
---@param host string
---@return boolean
function wspush.same_origin(origin, host) end

return wspush
