-- --lua-timeout: loops that never end, on the main thread and in coroutines.
local ws = {}

function ws.on_message(conn, msg)
  if msg == "main" then
    while true do end
  elseif msg == "pcall" then
    -- the budget is not an error a handler can catch and go on after
    while true do pcall(function() while true do end end) end
  elseif msg == "sort" then
    -- stopped where the task cannot yield (a C function is in between):
    -- by an error, and the next callbacks must still be bounded
    table.sort({ 3, 2, 1 }, function() while true do end end)
  elseif msg == "wrap" then
    -- coroutine.wrap passes the coroutine's error on: the handler fails (1011)
    coroutine.wrap(function() while true do end end)()
  elseif msg == "create" then
    -- the error ends the coroutine only; the handler answers with it
    local co = coroutine.create(function() while true do end end)
    local ok, err = coroutine.resume(co)
    conn:send(tostring(ok) .. " " .. tostring(err))
  elseif msg == "nested" then
    -- a coroutine created inside a coroutine is bounded too
    local outer = coroutine.wrap(function()
      local inner = coroutine.create(function() while true do end end)
      return select(2, coroutine.resume(inner))
    end)
    conn:send("inner: " .. tostring(outer()))
  else
    -- a coroutine that ends in time works as ever
    local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
    conn:send(msg .. " " .. gen() .. gen() .. gen())
  end
end

return { ["/ws"] = ws }
