-- bench/run.lua - benchmark driver: plain C vs LuaSec vs tlscache.
--
--   lua5.4 bench/run.lua [--quick] [--rounds N] [--duration SECS]
--       [--luas lua5.1,lua5.4,luajit] [--tls 1.2,1.3] [--server nginx|s_server]
--       [--rtts 20,50] [--ttfb-n N] [--no-ttfb] [--no-check] [--out DIR]
--
-- 1. builds bench/cclient.c and bench/delayproxy.c into bench/bin/;
-- 2. server-side check: against an nginx that logs $ssl_session_reused, each
--    resuming client runs 20 connections and the server must report every
--    one of them as resumed ("r");
-- 3. throughput: starts nginx (bench/server.sh: 2 workers, shared session
--    cache, tickets, TLS 1.2 + 1.3) and runs interleaved rounds: in each
--    round, for each TLS version, every client/mode runs for --duration
--    seconds, in an order rotated from round to round.  Clients: C resume,
--    C full, LuaSec shared context, LuaSec context per request, tlscache
--    resume, tlscache full (each Lua client under each --luas interpreter;
--    tlscache only where build/<lua>/tlscache/core.so exists);
-- 4. time to first byte through bench/delayproxy at each --rtts value;
-- 5. writes DIR/report.md, DIR/runs.tsv and DIR/chart.svg (default DIR:
--    bench/results) and prints the report.
--
-- Every client prints: conns=N secs=S cps=X cpu_ms_per_conn=Y resumed=R.
-- A resuming client must show resumed == conns in every run, a full one
-- resumed == 0; the report marks each client OK or FAIL.
-- --quick: 3 rounds of 1 s, lua5.4 only, 7 TTFB samples: under two minutes.
-- Runs with lua5.1, lua5.4 or luajit; needs cc, OpenSSL headers and nginx.

local in_main = false  -- inside main(), fail() raises so the servers get stopped
local function fail(msg)
  if in_main then error(msg, 0) end
  io.stderr:write("run.lua: ", msg, "\n")
  os.exit(1)
end

---------------------------------------------------------------- shell helpers

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its stdout and true when it exited 0.
local function sh(cmd)
  local p = assert(io.popen(cmd .. "; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return out, rc == 0
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function slurp(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function split(s, sep)
  local t = {}
  for item in s:gmatch("[^" .. sep .. "]+") do t[#t + 1] = item end
  return t
end

local function now()
  local ok, socket = pcall(require, "socket")
  if ok then return socket.gettime() end
  return os.time()
end

---------------------------------------------------------------- options

local script_dir = (arg[0]:match("^(.*)/[^/]*$") or ".")
local ROOT = (sh("cd " .. q(script_dir .. "/..") .. " && pwd")):gsub("%s+$", "")
local BENCH = ROOT .. "/bench"

local o = {
  rounds = 5, duration = 2, luas = "lua5.1,lua5.4,luajit", tls = "1.2,1.3",
  server = "nginx", rtts = "20,50", ttfb_n = 21, out = BENCH .. "/results",
}
do
  local i, quick, set = 1, false, {}
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    local function val() i = i + 1; if v == nil then fail("missing value for " .. a) end; set[a] = true; return v end
    if a == "--quick" then quick = true
    elseif a == "--no-ttfb" then o.no_ttfb = true
    elseif a == "--no-check" then o.no_check = true
    elseif a == "--rounds" then o.rounds = tonumber(val())
    elseif a == "--duration" then o.duration = tonumber(val())
    elseif a == "--luas" then o.luas = val()
    elseif a == "--tls" then o.tls = val()
    elseif a == "--server" then o.server = val()
    elseif a == "--rtts" then o.rtts = val()
    elseif a == "--ttfb-n" then o.ttfb_n = tonumber(val())
    elseif a == "--out" then o.out = val()
    else fail("unknown option " .. a .. " (see the header of bench/run.lua)") end
    i = i + 1
  end
  if quick then
    if not set["--rounds"] then o.rounds = 3 end
    if not set["--duration"] then o.duration = 1 end
    if not set["--luas"] then o.luas = "lua5.4" end
    if not set["--ttfb-n"] then o.ttfb_n = 7 end
  end
  if not (o.rounds and o.rounds >= 1 and o.rounds <= 50) then fail("--rounds 1..50") end
  if not (o.duration and o.duration > 0 and o.duration <= 60) then fail("--duration 0..60") end
  if not (o.ttfb_n and o.ttfb_n >= 1 and o.ttfb_n <= 1000) then fail("--ttfb-n 1..1000") end
  if o.server ~= "nginx" and o.server ~= "s_server" then fail("--server nginx|s_server") end
  o.luas, o.tls, o.rtts = split(o.luas, ","), split(o.tls, ","), split(o.rtts, ",")
  for _, t in ipairs(o.tls) do if t ~= "1.2" and t ~= "1.3" then fail("--tls: 1.2,1.3") end end
  for k, r in ipairs(o.rtts) do
    r = tonumber(r)
    if not (r and r >= 0 and r <= 1000) then fail("--rtts: milliseconds 0..1000") end
    o.rtts[k] = r
  end
end

---------------------------------------------------------------- build

local BIN = BENCH .. "/bin"
local CCLIENT, PROXY = BIN .. "/cclient", BIN .. "/delayproxy"
do
  local out, ok = sh("mkdir -p " .. q(BIN)
    .. " && cc -O2 -Wall -Wextra -o " .. q(CCLIENT) .. " " .. q(BENCH .. "/cclient.c") .. " -lssl -lcrypto 2>&1"
    .. " && cc -O2 -Wall -Wextra -o " .. q(PROXY) .. " " .. q(BENCH .. "/delayproxy.c") .. " 2>&1")
  if not ok then fail("build failed:\n" .. out) end
  if out:match("%S") then io.stderr:write(out) end
end

---------------------------------------------------------------- servers

local servers = {}   -- running, stopped at exit

local function start_server(extra)
  local cmd = q(BENCH .. "/server.sh") .. " start " .. o.server .. " --max-seconds 3600 " .. (extra or "")
  local out, ok = sh(cmd .. " 2>&1")
  if not ok then fail("server did not start:\n" .. out) end
  local s = {}
  for k, v in out:gmatch("(%u[%u_]*)=(%S+)") do s[k] = v end
  if not (s.PORT and s.CAFILE and s.SERVER_DIR) then fail("server.sh said:\n" .. out) end
  s.PORT = tonumber(s.PORT)
  servers[#servers + 1] = s
  return s
end

local function stop_server(s)
  if s.stopped then return end
  s.stopped = true
  sh(q(BENCH .. "/server.sh") .. " stop " .. q(s.SERVER_DIR) .. " >/dev/null 2>&1")
end

local function stop_all()
  for _, s in ipairs(servers) do stop_server(s) end
end

---------------------------------------------------------------- clients

-- The tlscache module for one interpreter, or nil while it is not built.
local function tlscache_cpath(lua)
  local dirs = { lua }
  if lua == "luajit" then dirs[2] = "lua5.1" end   -- LuaJIT uses the 5.1 ABI
  for _, d in ipairs(dirs) do
    if exists(ROOT .. "/build/" .. d .. "/tlscache/core.so") then
      return ROOT .. "/build/" .. d .. "/?.so"
    end
  end
end

-- Each client: name, kind ("c", "luasec", "tlscache"), mode, expected
-- resumption ("all" or "none"), and cmd(port, cafile, tls, extra) -> string.
local clients = {}
local function add(c) clients[#clients + 1] = c end

local function common(port, cafile, tls)
  return " --port " .. port .. " --cafile " .. q(cafile) .. " --tls " .. tls
end

add{ name = "C resume", kind = "c", mode = "resume", expect = "all",
  cmd = function(p, ca, t, x) return q(CCLIENT) .. common(p, ca, t) .. " --resume " .. x end }
add{ name = "C full", kind = "c", mode = "full", expect = "none",
  cmd = function(p, ca, t, x) return q(CCLIENT) .. common(p, ca, t) .. " --full " .. x end }
for _, lua in ipairs(o.luas) do
  local _, have = sh("command -v " .. q(lua) .. " >/dev/null")
  if not have then fail(lua .. " not found") end
  for _, ctx in ipairs{ "shared", "perreq" } do
    add{ name = "LuaSec " .. (ctx == "shared" and "shared ctx" or "ctx/request") .. " (" .. lua .. ")",
      kind = "luasec", mode = ctx, lua = lua, expect = "none",
      cmd = function(p, ca, t, x)
        return q(lua) .. " " .. q(BENCH .. "/luasec.lua") .. common(p, ca, t) .. " --ctx " .. ctx .. " " .. x
      end }
  end
  local cpath = tlscache_cpath(lua)
  for _, mode in ipairs{ "resume", "full" } do
    add{ name = "tlscache " .. mode .. " (" .. lua .. ")", kind = "tlscache", mode = mode, lua = lua,
      expect = mode == "resume" and "all" or "none", missing = not cpath,
      cmd = function(p, ca, t, x)
        return "LUA_CPATH=" .. q(cpath .. ";;") .. " LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;")
          .. " " .. q(lua) .. " " .. q(BENCH .. "/tlscache_client.lua") .. common(p, ca, t) .. " --" .. mode .. " " .. x
      end }
  end
end

local ERRFILE = os.tmpname()

-- Runs one client; returns the parsed fields (numbers), or nil, message.
local function run_client(c, port, cafile, tls, extra)
  local out, ok = sh(c.cmd(port, cafile, tls, extra) .. " 2>" .. q(ERRFILE))
  local line = out:match("(conns=[^\n]*)")
  if not ok or not line then
    return nil, (slurp(ERRFILE):gsub("%s+$", "")) .. (out:match("%S") and (" / " .. out) or "")
  end
  local r = { line = line }
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
  return r
end

---------------------------------------------------------------- statistics

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local function minmax(t)
  local lo, hi
  for _, v in ipairs(t) do
    if not lo or v < lo then lo = v end
    if not hi or v > hi then hi = v end
  end
  return lo, hi
end

local function fmt(v, digits)
  if v == nil then return "-" end
  return string.format("%." .. (digits or 1) .. "f", v)
end

---------------------------------------------------------------- the run

local report = {}
local function say(s)
  report[#report + 1] = s
  print(s)
end

local function env_line(cmd)
  local out = sh(cmd .. " 2>&1")
  return (out:gsub("\n.*", ""):gsub("%s+$", ""))
end

local started = now()
do
  local la = tonumber((slurp("/proc/loadavg"):match("^(%S+)")))
  if la and la > 1 then
    io.stderr:write(string.format("run.lua: warning: load average %.2f, other work will skew the numbers\n", la))
  end
end
local results = {}  -- results[client name][tls] = { runs }
local tsv = { "round\ttls\tclient\tconns\tsecs\tcps\tcpu_ms_per_conn\tresumed\terror" }

local function main()
  say("# tlscache benchmark")
  say("")
  say("- date: " .. os.date("!%Y-%m-%d %H:%M UTC"))
  say("- machine: " .. env_line("nproc") .. " cores, " .. env_line("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'")
    .. ", kernel " .. env_line("uname -r"))
  say("- " .. env_line("openssl version") .. "; " .. env_line("nginx -v") .. "; LuaSec "
    .. env_line("lua5.4 -e 'print(require(\"ssl\")._VERSION)'"))
  say("- server: " .. o.server .. (o.server == "nginx" and " (2 workers, ssl_session_cache shared:SSL:10m, tickets on, TLSv1.2 TLSv1.3, EC P-256 certificate)" or " -www")
    .. "; client and server share the " .. env_line("nproc") .. " cores")
  say("- load average at start: " .. env_line("cut -d' ' -f1-3 /proc/loadavg")
    .. " (anything else running on the 2 cores skews conn/s; CPU ms/conn suffers less)")
  say("- rounds: " .. o.rounds .. " x " .. o.duration .. " s per client, TLS " .. table.concat(o.tls, " and ")
    .. ", interpreters: " .. table.concat(o.luas, ", "))
  say("")

  ------------------------------------------------ server-side resumption check
  if not o.no_check and o.server == "nginx" then
    say("## Server-side check of resumption")
    say("")
    say("nginx logs `$ssl_session_reused` per request; each client runs 20 counted connections (+1 warm-up); resuming clients must show 20/20 on both sides, the others 0/20.")
    say("")
    say("| client | TLS | client says resumed | server says resumed | |")
    say("| --- | --- | --- | --- | --- |")
    local srv = start_server("--log")
    local log = srv.SERVER_DIR .. "/access.log"
    for _, tls in ipairs(o.tls) do
      for _, c in ipairs(clients) do
        if not c.missing then
          local before = select(2, slurp(log):gsub("\n", "\n"))
          local r, err = run_client(c, srv.PORT, srv.CAFILE, tls, "--n 20")
          local lines = {}
          for l in slurp(log):gmatch("[^\n]+") do lines[#lines + 1] = l end
          local server_r = 0
          for k = before + 2, #lines do   -- skip the warm-up connection
            if lines[k]:match(" r$") then server_r = server_r + 1 end
          end
          if r then
            local want = c.expect == "all" and 20 or 0
            local okk = r.resumed == want and server_r == want
            say(string.format("| %s | %s | %d/20 | %d/20 | %s |", c.name, tls, r.resumed, server_r, okk and "OK" or "FAIL"))
          else
            say(string.format("| %s | %s | error: %s | | FAIL |", c.name, tls, err))
          end
        end
      end
    end
    stop_server(srv)
    say("")
  end

  ------------------------------------------------ throughput rounds
  local srv = start_server()
  for round = 1, o.rounds do
    io.stderr:write(string.format("round %d/%d ...\n", round, o.rounds))
    for _, tls in ipairs(o.tls) do
      local n = #clients
      for k = 0, n - 1 do
        local c = clients[(k + round - 1) % n + 1]   -- rotate the order per round
        results[c.name] = results[c.name] or {}
        local runs = results[c.name][tls] or {}
        results[c.name][tls] = runs
        if not c.missing then
          local r, err = run_client(c, srv.PORT, srv.CAFILE, tls, "--duration " .. o.duration)
          if r then
            runs[#runs + 1] = r
            tsv[#tsv + 1] = table.concat({ round, tls, c.name, r.conns, r.secs, r.cps, r.cpu_ms_per_conn, r.resumed, "" }, "\t")
          else
            runs.errors = (runs.errors or 0) + 1
            runs.last_error = err
            tsv[#tsv + 1] = table.concat({ round, tls, c.name, "", "", "", "", "", (err:gsub("[\t\n]", " ")) }, "\t")
            io.stderr:write("  ", c.name, " TLS ", tls, ": ", err, "\n")
          end
        end
      end
    end
  end
  stop_server(srv)

  say("## Throughput (one client process, sequential connections)")
  say("")
  say("conn/s and client CPU ms per connection (getrusage / os.clock, user + system): median [min - max] over rounds.")
  say("")
  say("| client | TLS | conn/s | CPU ms/conn | resumed/conns | check |")
  say("| --- | --- | --- | --- | --- | --- |")
  local summary = {}  -- summary[name][tls] = { cps, cpu }
  for _, c in ipairs(clients) do
    summary[c.name] = {}
    for _, tls in ipairs(o.tls) do
      local runs = results[c.name] and results[c.name][tls] or {}
      if c.missing then
        say(string.format("| %s | %s | not built yet | | | |", c.name, tls))
      else
        local cps, cpu, conns, resumed, good = {}, {}, 0, 0, (runs.errors or 0) == 0 and #runs > 0
        for i, r in ipairs(runs) do
          cps[i], cpu[i] = r.cps, r.cpu_ms_per_conn
          conns, resumed = conns + r.conns, resumed + r.resumed
          if c.expect == "all" and r.resumed ~= r.conns then good = false end
          if c.expect == "none" and r.resumed ~= 0 then good = false end
        end
        local lo, hi = minmax(cps)
        local clo, chi = minmax(cpu)
        summary[c.name][tls] = { cps = median(cps), cpu = median(cpu), lo = lo, hi = hi }
        say(string.format("| %s | %s | %s [%s - %s] | %s [%s - %s] | %d/%d | %s%s |", c.name, tls,
          fmt(median(cps)), fmt(lo), fmt(hi), fmt(median(cpu), 3), fmt(clo, 3), fmt(chi, 3),
          resumed, conns, good and "OK" or "FAIL",
          runs.errors and (" (" .. runs.errors .. " failed runs: " .. tostring(runs.last_error) .. ")") or ""))
      end
    end
  end
  say("")

  say("## Ratios")
  say("")
  say("conn/s ratio (higher is better for tlscache) and CPU ratio (lower is better), from the medians.")
  say("")
  say("| tlscache | TLS | vs | conn/s ratio | CPU ratio |")
  say("| --- | --- | --- | --- | --- |")
  for _, lua in ipairs(o.luas) do
    for _, tls in ipairs(o.tls) do
      for _, mode in ipairs{ "resume", "full" } do
        local me = "tlscache " .. mode .. " (" .. lua .. ")"
        local mine = summary[me] and summary[me][tls]
        for _, other in ipairs{ "C " .. mode, "LuaSec shared ctx (" .. lua .. ")", "LuaSec ctx/request (" .. lua .. ")" } do
          local theirs = summary[other] and summary[other][tls]
          if mine and theirs and theirs.cps and mine.cps then
            say(string.format("| %s | %s | %s | %.2f | %.2f |", me, tls, other, mine.cps / theirs.cps, mine.cpu / theirs.cpu))
          else
            say(string.format("| %s | %s | %s | n/a (tlscache not built) | |", me, tls, other))
          end
        end
      end
    end
  end
  say("")

  ------------------------------------------------ time to first byte
  if not o.no_ttfb then
    say("## Time to first byte through bench/delayproxy")
    say("")
    say("Median over " .. o.ttfb_n .. " connections, from just before connect(): `tls` = handshake done, `ttfb` = first response byte.")
    say("Each client first runs through the proxy at 0 ms (baseline: local CPU and proxy hops); RTTs = (time - baseline) / RTT; the check wants the nearest whole number to be the expected count (the rest is wake-up and cold-cache time after each idle wait).")
    say("The proxy delays each direction by RTT/2 but cannot delay the kernel's TCP handshake with the client,")
    say("so connect() costs ~0 RTT here (a real path: +1 RTT before everything below).")
    say("Expected after connect(): TLS 1.2 full 2 RTT, TLS 1.2 resumed 1 RTT, TLS 1.3 full 1 RTT, TLS 1.3 resumed 1 RTT; the request/response +1 RTT.")
    say("")
    say("| client | RTT ms | TLS | tcp ms | tls ms | tls RTTs (expected) | ttfb ms | ttfb RTTs (expected) | real path (+TCP) | check |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    local srv2 = start_server()
    local ttfb_clients = {}
    local ttfb_lua = o.luas[1]   -- one interpreter is enough for RTT counts; prefer lua5.4
    for _, l in ipairs(o.luas) do if l == "lua5.4" then ttfb_lua = l end end
    for _, c in ipairs(clients) do
      if c.kind == "c" or (not c.missing and c.kind == "tlscache" and c.lua == ttfb_lua) then
        ttfb_clients[#ttfb_clients + 1] = c
      end
    end
    local base = {}   -- base[client name .. tls] = result at 0 ms
    local rtts = { 0 }
    for _, rtt in ipairs(o.rtts) do if rtt > 0 then rtts[#rtts + 1] = rtt end end
    for _, rtt in ipairs(rtts) do
      local pfile = os.tmpname()
      local pcmd = q(PROXY) .. " --target " .. srv2.PORT .. " --rtt " .. rtt .. " --max-seconds 600"
      local pid = (sh(pcmd .. " >" .. q(pfile) .. " 2>/dev/null & echo $!")):match("%d+")
      local port
      for _ = 1, 50 do
        port = tonumber(slurp(pfile):match("^(%d+)"))
        if port then break end
        sh("sleep 0.1")
      end
      if not port then fail("delayproxy did not start") end
      for _, tls in ipairs(o.tls) do
        for _, c in ipairs(ttfb_clients) do
          local r, err = run_client(c, port, srv2.CAFILE, tls, "--ttfb --n " .. o.ttfb_n)
          local exp_tls = (tls == "1.2" and c.mode == "full") and 2 or 1
          local b = base[c.name .. tls]
          if r and r.ttfb_ms and rtt == 0 then
            base[c.name .. tls] = r
            say(string.format("| %s | 0 (baseline) | %s | %s | %s | | %s | | | %s |", c.name, tls,
              fmt(r.tcp_ms, 2), fmt(r.tls_ms, 2), fmt(r.ttfb_ms, 2),
              (c.expect ~= "all" or r.resumed == r.conns) and "" or "FAIL (not resumed)"))
          elseif r and r.ttfb_ms and b then
            local rt_tls, rt_ttfb = (r.tls_ms - b.tls_ms) / rtt, (r.ttfb_ms - b.ttfb_ms) / rtt
            local okk = (c.expect ~= "all" or r.resumed == r.conns)
              and math.abs(rt_tls - exp_tls) < 0.5 and math.abs(rt_ttfb - exp_tls - 1) < 0.5
            say(string.format("| %s | %g | %s | %s | %s | %.2f (%d) | %s | %.2f (%d) | %d RTT | %s |",
              c.name, rtt, tls, fmt(r.tcp_ms, 2), fmt(r.tls_ms, 1), rt_tls, exp_tls,
              fmt(r.ttfb_ms, 1), rt_ttfb, exp_tls + 1, exp_tls + 2, okk and "OK" or "FAIL"))
          else
            say(string.format("| %s | %g | %s | error: %s | | | | | | FAIL |", c.name, rtt, tls,
              tostring(err or "no baseline")))
          end
        end
      end
      if pid then sh("kill -TERM " .. pid .. " 2>/dev/null") end
      os.remove(pfile)
    end
    stop_server(srv2)
    say("")
  end

  say("- load average at end: " .. env_line("cut -d' ' -f1-3 /proc/loadavg"))
  say("")
  say(string.format("_total run time %.0f s_", now() - started))
end

---------------------------------------------------------------- chart (SVG)

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

local function write_chart(path)
  local names = {}
  for _, c in ipairs(clients) do names[#names + 1] = c end
  local max = 0
  for _, c in ipairs(names) do
    for _, tls in ipairs(o.tls) do
      local runs = results[c.name] and results[c.name][tls] or {}
      for _, r in ipairs(runs) do if r.cps > max then max = r.cps end end
    end
  end
  if max == 0 then return end
  -- round the axis up to a nice number
  local step = 10 ^ math.floor(math.log10 and math.log10(max) or (math.log(max) / math.log(10)))
  local top = math.ceil(max / step) * step
  if top / step <= 3 then step = step / 2 end
  local ntls = #o.tls
  local bw, gap, left, right, topm, plot_h = 22, 26, 70, 20, 50, 320
  local gw = ntls * bw + gap
  local width = math.max(left + #names * gw + right, 720)
  local height = topm + plot_h + 150
  local colors = { ["1.2"] = "#4e79a7", ["1.3"] = "#f28e2b" }
  local s = {}
  local function w(x) s[#s + 1] = x end
  w(string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">', width, height))
  w(string.format('<rect width="%d" height="%d" fill="white"/>', width, height))
  w(string.format('<text x="%d" y="20" font-size="15" font-weight="bold">HTTPS connections per second, one sequential client</text>', left))
  w(string.format('<text x="%d" y="36" fill="#555">median of %d rounds x %g s, whiskers min-max; server %s on the same machine</text>', left, o.rounds, o.duration, esc(o.server)))
  local function y(v) return topm + plot_h - v / top * plot_h end
  for v = 0, top + 1e-9, step do
    w(string.format('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>', left, width - right, y(v), y(v)))
    w(string.format('<text x="%d" y="%.1f" text-anchor="end">%g</text>', left - 6, y(v) + 4, v))
  end
  w(string.format('<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">conn/s</text>', topm + plot_h / 2))
  for i, c in ipairs(names) do
    local gx = left + (i - 1) * gw + gap / 2
    for j, tls in ipairs(o.tls) do
      local runs = results[c.name] and results[c.name][tls] or {}
      local cps = {}
      for k, r in ipairs(runs) do cps[k] = r.cps end
      local m = median(cps)
      local x = gx + (j - 1) * bw
      if m then
        local lo, hi = minmax(cps)
        w(string.format('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/>', x, y(m), bw - 2, topm + plot_h - y(m), colors[tls]))
        w(string.format('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>', x + bw / 2 - 1, x + bw / 2 - 1, y(hi), y(lo)))
        w(string.format('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%d</text>', x + bw / 2 - 1, y(hi) - 3, math.floor(m + 0.5)))
      elseif c.missing then
        w(string.format('<text transform="translate(%.1f,%.1f) rotate(-90)" font-size="9" fill="#999">not built</text>', x + bw / 2 + 2, topm + plot_h - 4))
      end
    end
    w(string.format('<text transform="translate(%.1f,%d) rotate(-40)" text-anchor="end">%s</text>', gx + ntls * bw / 2, topm + plot_h + 14, esc(c.name)))
  end
  w(string.format('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>', left, width - right, topm + plot_h, topm + plot_h))
  for j, tls in ipairs(o.tls) do
    local lx = width - right - 180 + (j - 1) * 90
    w(string.format('<rect x="%d" y="8" width="12" height="12" fill="%s"/><text x="%d" y="18">TLS %s</text>', lx, colors[tls], lx + 16, tls))
  end
  w('</svg>')
  local f = assert(io.open(path, "w"))
  f:write(table.concat(s, "\n"), "\n")
  f:close()
end

---------------------------------------------------------------- go

in_main = true
local ok, err = pcall(main)
in_main = false
stop_all()
os.remove(ERRFILE)
if not ok then fail(tostring(err)) end

sh("mkdir -p " .. q(o.out))
write_chart(o.out .. "/chart.svg")
local png = ""
if select(2, sh("command -v rsvg-convert >/dev/null")) then
  -- optional PNG copy (Debian package librsvg2-bin)
  if select(2, sh("rsvg-convert -o " .. q(o.out .. "/chart.png") .. " " .. q(o.out .. "/chart.svg"))) then png = ", chart.png" end
end
say("")
say("Files: " .. o.out .. "/report.md, runs.tsv, chart.svg" .. png)
local f = assert(io.open(o.out .. "/report.md", "w"))
f:write(table.concat(report, "\n"), "\n")
f:close()
f = assert(io.open(o.out .. "/runs.tsv", "w"))
f:write(table.concat(tsv, "\n"), "\n")
f:close()
