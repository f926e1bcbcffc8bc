#!/usr/bin/env lua
--[[
tlscache example: sessions that outlive the process.

  lua5.4 examples/persist.lua HOST PORT [--cafile FILE] [--file PATH]
                              [--keyfile FILE] [--tls 1.2|1.3] [--insecure]

Loads the sessions saved by the previous run (if any) from PATH (default
./tlscache-sessions), connects once, fetches "/", prints whether the
connection resumed, as the client saw it and as the server said it (an
`openssl s_server -www` page says "Reused" or "New"), then saves the cache
back. Run it twice: the second run's first connection resumes.

Try it against a local server (nothing is started for you), from a checkout
after `make LUA=lua5.4 all certs` (the module and a throwaway CA):

  export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;"
  openssl s_server -www -accept 127.0.0.1:4433 \
    -cert build/certs/server.pem -key build/certs/server.key &
  lua5.4 examples/persist.lua localhost 4433 --cafile build/certs/ca.pem
  lua5.4 examples/persist.lua localhost 4433 --cafile build/certs/ca.pem

--keyfile names a file holding a 32-byte key (e.g. `head -c 32
/dev/urandom > key; chmod 600 key`): the saved sessions are then encrypted
and authenticated with it, and the file is useless without it. Without
--keyfile the file holds live session secrets in the clear (mode 0600):
see the README's "Security" section before you keep one.
]]
local tlscache = require "tlscache"

local host, port, cafile, path, keyfile, tls, insecure
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--cafile" then cafile = arg[i + 1]; i = i + 1
    elseif a == "--file" then path = arg[i + 1]; i = i + 1
    elseif a == "--keyfile" then keyfile = arg[i + 1]; i = i + 1
    elseif a == "--tls" then tls = arg[i + 1]; i = i + 1
    elseif a == "--insecure" then insecure = true
    elseif not host then host = a
    elseif not port then port = tonumber(a)
    else error("unexpected argument " .. a) end
    i = i + 1
  end
end
if not host or not port then
  io.stderr:write("usage: lua5.4 examples/persist.lua HOST PORT [--cafile FILE] [--file PATH]\n"
    .. "                       [--keyfile FILE] [--tls 1.2|1.3] [--insecure]\n")
  os.exit(2)
end
path = path or "tlscache-sessions"

local key
if keyfile then
  local f = assert(io.open(keyfile, "rb"))
  key = f:read("*a")
  f:close()
  if #key ~= 32 then error(keyfile .. ": a key is exactly 32 bytes, this is " .. #key) end
end
local minor = tls and tls:match("^1%.([23])$")
if tls and not minor then error("--tls takes 1.2 or 1.3", 0) end
local proto = minor and "tlsv1_" .. minor or nil

-- The saved data is bound to these settings: a run with another cafile,
-- verify mode or protocol range refuses it (mismatch) instead of resuming.
local vh = assert(tlscache.vhost {
  cafile = cafile, verify = insecure and "none" or "peer",
  min_protocol = proto, max_protocol = proto,
})

local loaded, skipped, why = vh:load_file(path, { key = key })
if loaded then
  print(("loaded %d saved entr%s from %s, skipped %d"):format(loaded, loaded == 1 and "y" or "ies",
    path, skipped))
  for reason, n in pairs(why) do
    if n > 0 then
      print(("  skipped %d: %s%s"):format(n, reason,
        reason == "key" and " (saved with another --keyfile, or with none)" or ""))
    end
  end
elseif why == "io" and skipped:find("No such file", 1, true) then
  print(("no saved sessions yet (%s): this run makes a full handshake"):format(path))
else
  print("could not load saved sessions: " .. skipped)
end

local conn, err = vh:connect(host, port, { timeout = 10 })
if not conn then error(err, 0) end
assert(conn:send("GET / HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n"))
local body = conn:receive("*a") or ""
local info = conn:info()
conn:close()            -- also reads the TLS 1.3 tickets the server sent
local verdict = body:match("\n(%a+), TLSv1%.%d")
print(("connected to %s:%d with %s: client says %s, server says %s"):format(host, port,
  info.protocol, info.reused and "resumed" or "full handshake",
  verdict or "nothing (not an openssl s_server -www page)"))

local n, msg = vh:save_file(path, { key = key })
if n then
  print(("saved %d entr%s to %s (mode 0600)%s"):format(n, n == 1 and "y" or "ies", path,
    key and ", encrypted" or ""))
else
  print("could not save: " .. msg)
end
vh:close()
