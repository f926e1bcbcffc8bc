-- bench/tlscache_client.lua - the benchmark loop with tlscache (first version,
-- written against shared/API.md; the module owner may refine it).
--
--   LUA_CPATH="build/lua5.4/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;;" \
--   lua5.4 bench/tlscache_client.lua --port PORT --cafile FILE [--tls 1.2|1.3]
--       [--n N] [--duration SECS] [--resume|--full] [--resolve] [--ttfb] [--stats]
--
-- Per connection, the same work as bench/cclient.c: connect to 127.0.0.1:PORT
-- with server name "localhost" (SNI + verified name), one HTTP/1.1 request,
-- the response read to EOF ("*a"), close.  --resolve connects to "localhost"
-- instead, adding a name lookup per connection.
-- --resume: one vhost with session_cache = true (the default); --full: with
-- session_cache = false.  One warm-up connection (not counted) runs first,
-- so in --resume mode every counted connection should resume.
--
-- Output, one line: conns=N secs=S cps=X cpu_ms_per_conn=Y resumed=R
-- (resumed counts conn:reused(); CPU = os.clock(), user + system time)
local socket_ok, socket = pcall(require, "socket")
local tlscache = require "tlscache"

local HOST = "localhost"
local REQUEST = "GET / HTTP/1.1\r\nHost: " .. HOST .. "\r\nConnection: close\r\n\r\n"

local function usage(msg)
  io.stderr:write("tlscache_client.lua: ", msg or "bad arguments", "\n",
    "usage: tlscache_client.lua --port PORT --cafile FILE [--tls 1.2|1.3] [--n N]",
    " [--duration SECS] [--resume|--full] [--resolve] [--ttfb] [--stats]\n")
  os.exit(2)
end

local o = { tls = "1.3", mode = "resume", n = 0, duration = 0 }
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--resume" then o.mode = "resume"
    elseif a == "--full" then o.mode = "full"
    elseif a == "--resolve" then o.resolve = true
    elseif a == "--ttfb" then o.ttfb = true
    elseif a == "--stats" then o.stats = true
    elseif v == nil then usage("missing value for " .. a)
    else
      i = i + 1
      if a == "--port" then o.port = tonumber(v)
      elseif a == "--cafile" then o.cafile = v
      elseif a == "--tls" then o.tls = v
      elseif a == "--n" then o.n = tonumber(v)
      elseif a == "--duration" then o.duration = tonumber(v)
      else usage("unknown option " .. a) end
    end
    i = i + 1
  end
end
if not o.port or not o.cafile or not o.n or not o.duration
   or (o.n == 0 and o.duration == 0) then usage() end
local PROTOCOLS = { ["1.2"] = "tlsv1_2", ["1.3"] = "tlsv1_3" }
if not PROTOCOLS[o.tls] then usage("--tls 1.2|1.3") end

local function die(what, msg, code)
  io.stderr:write("tlscache_client.lua: ", what, ": ", tostring(msg),
    code and (" (" .. tostring(code) .. ")") or "", "\n")
  os.exit(1)
end

-- Wall clock: LuaSocket's when present, else os.time (1 s resolution, only
-- good enough for --duration).
local gettime = socket_ok and socket.gettime or os.time

local vh, verr, vcode = tlscache.vhost{
  cafile = o.cafile,
  min_protocol = PROTOCOLS[o.tls],
  max_protocol = PROTOCOLS[o.tls],
  session_cache = (o.mode == "resume"),
}
if not vh then die("vhost", verr, vcode) end

local connect_host = o.resolve and HOST or "127.0.0.1"
local connect_opts = { servername = HOST }

local function once()
  local t0 = gettime()
  local conn, err, code = vh:connect(connect_host, o.port, connect_opts)
  if not conn then die("connect", err, code) end
  local t_tls = gettime() - t0
  local ok
  ok, err, code = conn:send(REQUEST)
  if not ok then die("send", err, code) end
  local body, t_first
  if o.ttfb then
    local first
    first, err = conn:receive(1)
    if not first then die("receive", err) end
    t_first = gettime() - t0
    local rest
    rest, err = conn:receive("*a")
    body = rest and first .. rest
  else
    body, err = conn:receive("*a")
  end
  if not body or body:sub(1, 7) ~= "HTTP/1." then die("receive", err or "no HTTP response") end
  local reused = conn:reused()
  conn:close()
  return reused, t_tls, t_first
end

once()  -- warm-up, primes the cache; not counted

local conns, resumed = 0, 0
local ttfb, tlst = {}, {}
local start, cpu0 = gettime(), os.clock()
while (o.n == 0 or conns < o.n) and (o.duration == 0 or gettime() - start < o.duration) do
  local reused, a, b = once()
  conns = conns + 1
  if reused then resumed = resumed + 1 end
  if o.ttfb then ttfb[conns], tlst[conns] = b * 1e3, a * 1e3 end
end
local secs, cpu = gettime() - start, os.clock() - cpu0

local function median(t)
  table.sort(t)
  local n = #t
  if n == 0 then return 0 end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local line = string.format("conns=%d secs=%.3f cps=%.1f cpu_ms_per_conn=%.4f resumed=%d",
  conns, secs, secs > 0 and conns / secs or 0, conns > 0 and cpu * 1e3 / conns or 0, resumed)
if o.ttfb and conns > 0 then
  line = line .. string.format(" ttfb_ms=%.3f tls_ms=%.3f", median(ttfb), median(tlst))
end
print(line)

if o.stats then
  local s = vh:stats()
  local keys = {}
  for k in pairs(s) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(s[k]) end
  io.stderr:write("tlscache stats: ", table.concat(parts, " "), "\n")
end
vh:close()
