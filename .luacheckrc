-- luacheck (Debian's lua-check) over the Lua modules and the shipped
-- handlers; tests/run-all.sh runs it (and ctest as "luacheck").
std = "lua54"
max_line_length = 110

-- A handler's arguments are the API's (check_origin(origin), on_close(conn,
-- code, reason)): the demos show them even where they do not use them.
files["handlers/"] = { unused_args = false }
