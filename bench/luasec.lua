-- bench/luasec.lua - the benchmark loop with LuaSec + LuaSocket.
--
--   lua bench/luasec.lua --port PORT --cafile FILE [--tls 1.2|1.3]
--       [--n N] [--duration SECS] [--ctx shared|perreq] [--no-hostcheck] [--ttfb]
--
-- Per connection, the same work as bench/cclient.c: TCP to 127.0.0.1:PORT
-- (TCP_NODELAY; LuaSocket sockets are non-blocking underneath), TLS with the
-- peer verified against CAFILE and SNI "localhost", one HTTP/1.1 request, the
-- response read to EOF, close (LuaSec's close sends close_notify).
--
-- --ctx shared: one ssl.newcontext for the whole run.
-- --ctx perreq: a new context per request, as ssl.https.request does (so the
--   trust store is loaded again each time).
-- LuaSec 1.2 has no session API and its contexts keep no client sessions, so
-- every handshake is a full one: resumed is always 0 (it is still counted
-- from what the connection reports, to show it).
-- LuaSec does not check the host name itself; by default this client checks
-- the certificate's subjectAltName dNSName against "localhost" after the
-- handshake, as a careful user must (cclient has OpenSSL do it).
-- --no-hostcheck skips that, exactly like ssl.https.request.
--
-- Output, one line: conns=N secs=S cps=X cpu_ms_per_conn=Y resumed=R
-- (CPU = os.clock(), the process's user + system time)
local socket = require "socket"
local ssl = require "ssl"

local HOST = "localhost"
local REQUEST = "GET / HTTP/1.1\r\nHost: " .. HOST .. "\r\nConnection: close\r\n\r\n"

local function usage(msg)
  io.stderr:write("luasec.lua: ", msg or "bad arguments", "\n",
    "usage: luasec.lua --port PORT --cafile FILE [--tls 1.2|1.3] [--n N]",
    " [--duration SECS] [--ctx shared|perreq] [--no-hostcheck] [--ttfb]\n")
  os.exit(2)
end

local o = { tls = "1.3", ctx = "shared", n = 0, duration = 0, hostcheck = true }
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--no-hostcheck" then o.hostcheck = false
    elseif a == "--ttfb" then o.ttfb = true
    elseif v == nil then usage("missing value for " .. a)
    else
      i = i + 1
      if a == "--port" then o.port = tonumber(v)
      elseif a == "--cafile" then o.cafile = v
      elseif a == "--tls" then o.tls = v
      elseif a == "--n" then o.n = tonumber(v)
      elseif a == "--duration" then o.duration = tonumber(v)
      elseif a == "--ctx" then o.ctx = v
      else usage("unknown option " .. a) end
    end
    i = i + 1
  end
end
if not o.port or not o.cafile or not o.n or not o.duration
   or (o.n == 0 and o.duration == 0) then usage() end
local PROTOCOLS = { ["1.2"] = "tlsv1_2", ["1.3"] = "tlsv1_3" }
if not PROTOCOLS[o.tls] then usage("--tls 1.2|1.3") end
if o.ctx ~= "shared" and o.ctx ~= "perreq" then usage("--ctx shared|perreq") end

local params = {
  mode = "client",
  protocol = PROTOCOLS[o.tls],
  verify = "peer",
  cafile = o.cafile,
  options = { "all" },
}

local function die(what, err)
  io.stderr:write("luasec.lua: ", what, ": ", tostring(err), "\n")
  os.exit(1)
end

local function check_host(conn)
  local cert = conn:getpeercertificate()
  local san = cert and cert:extensions()["2.5.29.17"]
  for _, name in ipairs(san and san.dNSName or {}) do
    if name == HOST then return end
  end
  die("verify", "certificate does not name " .. HOST)
end

local shared_ctx
if o.ctx == "shared" then
  local err
  shared_ctx, err = ssl.newcontext(params)
  if not shared_ctx then die("newcontext", err) end
end

local gettime = socket.gettime

-- One request; returns reused (always false here), and the times in seconds
-- from just before connect() to TCP connected, handshake done, first byte.
local function once()
  local t0 = gettime()
  local tcp = socket.tcp()
  tcp:setoption("tcp-nodelay", true)
  tcp:settimeout(10)
  local ok, err = tcp:connect("127.0.0.1", o.port)
  if not ok then die("connect", err) end
  local t_tcp = gettime() - t0
  local ctx = shared_ctx
  if not ctx then
    ctx, err = ssl.newcontext(params)
    if not ctx then die("newcontext", err) end
  end
  local conn
  conn, err = ssl.wrap(tcp, ctx)
  if not conn then die("wrap", err) end
  conn:sni(HOST)
  conn:settimeout(10)
  ok, err = conn:dohandshake()
  if not ok then die("handshake", err) end
  if o.hostcheck then check_host(conn) end
  local t_tls = gettime() - t0
  ok, err = conn:send(REQUEST)
  if not ok then die("send", err) end
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
  conn:close()
  -- LuaSec exposes no "session reused" flag; a LuaSec context never offers a
  -- session, so a handshake here cannot be an abbreviated one.
  return false, t_tcp, t_tls, t_first
end

once()  -- warm-up, not counted (same as cclient)

local conns, resumed = 0, 0
local ttfb, tcpt, tlst = {}, {}, {}
local start, cpu0 = gettime(), os.clock()
while (o.n == 0 or conns < o.n) and (o.duration == 0 or gettime() - start < o.duration) do
  local reused, a, b, c = once()
  conns = conns + 1
  if reused then resumed = resumed + 1 end
  if o.ttfb then ttfb[conns], tcpt[conns], tlst[conns] = c * 1e3, a * 1e3, b * 1e3 end
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
  line = line .. string.format(" ttfb_ms=%.3f tcp_ms=%.3f tls_ms=%.3f", median(ttfb),
    median(tcpt), median(tlst))
end
print(line)
