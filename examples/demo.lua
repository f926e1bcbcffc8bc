#!/usr/bin/env lua
--[[
tlscache demo: full versus resumed TLS handshakes, for TLS 1.2 and TLS 1.3.

  lua5.4 examples/demo.lua HOST [PORT] [--cafile FILE] [--n N] [--insecure]

For each protocol it makes N connections with the session cache off, then N
with it on, and prints how many the client and the server itself saw
resumed (the server's word is read from an `openssl s_server -www` page when
there is one), the median connect+handshake time, the speedup, and
vh:stats(). `make demo` starts such a server on 127.0.0.1 and runs this.
]]
local tlscache = require "tlscache"

local host, port, cafile, n, insecure
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--cafile" then cafile = arg[i + 1]; i = i + 1
    elseif a == "--n" then n = tonumber(arg[i + 1]); i = i + 1
    elseif a == "--insecure" then insecure = true
    elseif not host then host = a
    elseif not port then port = tonumber(a)
    else error("unexpected argument " .. a) end
    i = i + 1
  end
end
if not host then
  io.stderr:write("usage: lua5.4 examples/demo.lua HOST [PORT] [--cafile FILE] [--n N] [--insecure]\n")
  os.exit(2)
end
port, n = port or 443, n or 50

local function median(t)
  table.sort(t)
  local m = #t
  if m == 0 then return 0 end
  if m % 2 == 1 then return t[(m + 1) / 2] end
  return (t[m / 2] + t[m / 2 + 1]) / 2
end

-- one connection: time connect+handshake, fetch the page, read the
-- server's own verdict ("Reused, TLSv1.3" / "New, TLSv1.3" on s_server -www)
local function one(vh)
  local t0 = tlscache.now()
  local conn, err = vh:connect(host, port, { timeout = 10 })
  local dt = tlscache.now() - t0
  if not conn then error(err, 0) end
  assert(conn:send("GET / HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n"))
  local body = conn:receive("*a") or ""
  local verdict = body:match("\n(%a+), TLSv1%.%d") -- nil if not s_server -www
  local reused = conn:reused()
  conn:close()
  return dt, reused, verdict == "Reused", verdict ~= nil
end

local function run(proto, cache)
  local vh, verr = tlscache.vhost {
    cafile = cafile, verify = insecure and "none" or "peer",
    min_protocol = proto, max_protocol = proto, session_cache = cache,
  }
  if not vh then error(verr, 0) end
  local times, client, server, oracle = {}, 0, 0, false
  for _ = 1, n do
    local dt, r, sr, has = one(vh)
    times[#times + 1] = dt
    if r then client = client + 1 end
    if sr then server = server + 1 end
    oracle = oracle or has
  end
  local st = vh:stats()
  vh:close()
  return { median = median(times), client = client, server = oracle and server or nil, stats = st }
end

print(("tlscache demo: %s:%d, %d connections per mode (%s)"):format(host, port, n, tlscache._VERSION))
print(("%-8s %-10s %9s %9s %12s"):format("protocol", "cache", "resumed", "server", "median ms"))
local ran = 0
for _, proto in ipairs { "tlsv1_2", "tlsv1_3" } do
  local ok, off = pcall(run, proto, false)
  if not ok then
    print(("%-8s skipped: %s%s"):format(proto, off, tostring(off):find("verify:", 1, true)
      and " (pass --cafile FILE with the server's CA, or --insecure)" or ""))
  else
    ran = ran + 1
    local on = run(proto, true)
    for _, r in ipairs { { "off", off }, { "on", on } } do
      local m = r[2]
      print(("%-8s %-10s %5d/%-3d %9s %12.3f"):format(proto, r[1], m.client, n,
        m.server and ("%d/%d"):format(m.server, n) or "n/a", m.median * 1000))
    end
    local s = on.stats
    print(("%-8s speedup %.2fx (median full / median resumed)"):format(proto, off.median / on.median))
    print(("         stats: size=%d hits=%d misses=%d stores=%d offered=%d resumed=%d rejected=%d")
      :format(s.size, s.hits, s.misses, s.stores, s.offered, s.resumed, s.rejected))
    if on.server and on.server ~= n - 1 then
      print(("         NOTE: the server reported %d of %d cached reconnects resumed"):format(on.server, n - 1))
    end
  end
end
-- a server that speaks only one of the two protocols is fine; none is a failure
if ran == 0 then os.exit(1) end
