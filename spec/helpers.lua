-- Test helpers: real TLS servers on 127.0.0.1, started on free ports and
-- stopped by PID; the certificates they use; small conveniences over
-- tlscache. Works on Lua 5.1, 5.4 and LuaJIT; needs only LuaSocket and the
-- openssl / nginx / timeout commands.
--
--   local helpers = require "helpers"
--   local srv = helpers.s_server{ tls = "1.3" }
--   finally(srv.stop)                  -- or teardown(helpers.stop_all)
--   local r = helpers.fetch(vh, srv.port)
--   assert.is_true(r.server_reused)
--
-- Every server is wrapped in `timeout`, so one that a crashed run left behind
-- still dies by itself (after helpers.max_life seconds).

local socket = require "socket"

local helpers = {}

helpers.root = os.getenv("TLSCACHE_ROOT") or "."
helpers.certdir = os.getenv("TLSCACHE_CERTS") or (helpers.root .. "/build/certs")
helpers.max_life = 300          -- seconds a server may live at most
helpers.start_timeout = 10      -- seconds to wait for a server to listen

local function q(s)             -- quote one word for /bin/sh
  s = tostring(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Under `make asan` the test process runs with LD_PRELOAD=libasan; the
-- servers and tools we start must not inherit it (LeakSanitizer would fail
-- bash, openssl or nginx at exit, and they are not what is under test).
local CLEAN_ENV = "unset LD_PRELOAD ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; "

local function sh(cmd)          -- true when cmd exited 0 (5.1 and 5.2+ shapes)
  local a, _, c = os.execute(CLEAN_ENV .. cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function capture(cmd)     -- cmd's standard output
  local f = assert(io.popen(CLEAN_ENV .. cmd, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function writefile(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local cwd = capture("pwd"):gsub("%s+$", "")
  return cwd .. "/" .. p:gsub("^%./", "")
end

helpers.readfile, helpers.writefile, helpers.sh, helpers.capture = readfile, writefile, sh, capture
helpers.q = q

local is_root = capture("id -u"):match("^0") ~= nil

---------------------------------------------------------------------------
-- certificates

helpers.certdir = abspath(helpers.certdir)
do
  local script = helpers.root .. "/spec/fixtures/mkcerts.sh"
  -- idempotent and fast when the certificates are there already
  if not sh("bash " .. q(script) .. " " .. q(helpers.certdir) .. " >/dev/null") then
    error("spec/fixtures/mkcerts.sh " .. helpers.certdir .. " failed")
  end
end

local function cert(name) return helpers.certdir .. "/" .. name end

helpers.certs = {
  dir = helpers.certdir,
  ca = cert "ca.pem", ca_key = cert "ca.key",
  server = cert "server.pem", server_key = cert "server.key",
  other = cert "other.pem", other_key = cert "other.key",
  untrusted = cert "untrusted.pem", untrusted_key = cert "untrusted.key",
  evilca = cert "evilca.pem",
  expired = cert "expired.pem", expired_key = cert "expired.key",
  clientca = cert "clientca.pem",
  client = cert "client.pem", client_key = cert "client.key",
  client2 = cert "client2.pem", client2_key = cert "client2.key",
  client_enc_key = cert "client-enc.key", client_password = "secret",
}

-- server certificate kinds usable as opts.cert
local server_certs = {
  server = { helpers.certs.server, helpers.certs.server_key },
  other = { helpers.certs.other, helpers.certs.other_key },
  untrusted = { helpers.certs.untrusted, helpers.certs.untrusted_key },
  expired = { helpers.certs.expired, helpers.certs.expired_key },
}

---------------------------------------------------------------------------
-- processes

local running = {}      -- pid -> server object, for stop_all

local function proc_state(pid)
  -- nil when gone; "Z" for a zombie nobody reaped yet (it is dead too)
  local stat = readfile("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  return stat:match("^%d+ %b() (%S)")
end

function helpers.alive(pid)
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z"
end

local function wait_dead(pid, seconds)
  local deadline = socket.gettime() + seconds
  while helpers.alive(pid) do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.02)
  end
  return true
end

local tmpbase
local function mktempdir(tag)
  if not tmpbase then
    tmpbase = capture("mktemp -d ${TMPDIR:-/tmp}/tlscache-spec.XXXXXX"):gsub("%s+$", "")
    assert(tmpbase ~= "", "mktemp -d failed")
  end
  local d = capture("mktemp -d " .. q(tmpbase .. "/" .. tag .. ".XXXXXX")):gsub("%s+$", "")
  assert(d ~= "", "mktemp -d failed")
  return d
end

-- Start argv in the background with stdout+stderr going to log; return the
-- PID. `timeout` puts itself and the server in a new process group (PGID =
-- PID), so stop() signals the whole group: nginx workers, or the feeder of
-- a server's stdin, go with it. `feed`, when given, is a shell command whose
-- output becomes the server's standard input.
local function spawn(argv, log, feed)
  local words = {}
  for i, a in ipairs(argv) do words[i] = q(a) end
  local cmd = table.concat(words, " ")
  if feed then
    cmd = "sh -c " .. q(feed .. " | exec " .. cmd)
  end
  cmd = string.format("timeout -k 2 %d %s >>%s 2>&1 </dev/null & echo $!",
    helpers.max_life, cmd, q(log))
  local pid = tonumber((capture(cmd):match("(%d+)")))
  assert(pid, "could not start: " .. cmd)
  return pid
end

local function stop(srv)
  if srv.stopped then return true end
  srv.stopped = true
  running[srv.pid] = nil
  sh("kill -TERM -- -" .. srv.pid .. " 2>/dev/null; kill -TERM " .. srv.pid .. " 2>/dev/null")
  wait_dead(srv.pid, 3)
  -- whatever is left of the group (a stuck server, a child) dies now
  sh("kill -KILL -- -" .. srv.pid .. " 2>/dev/null")
  wait_dead(srv.pid, 2)
  if srv.dir and not os.getenv("TLSCACHE_KEEP") then sh("rm -rf " .. q(srv.dir)) end
  return true
end

--- Stop every server still running (use in teardown / after a failure).
function helpers.stop_all()
  local list = {}
  for _, srv in pairs(running) do list[#list + 1] = srv end
  for _, srv in ipairs(list) do srv.stop() end
  if tmpbase and not os.getenv("TLSCACHE_KEEP") and sh("rmdir " .. q(tmpbase) .. " 2>/dev/null") then
    tmpbase = nil
  end
end

---------------------------------------------------------------------------
-- ports

--- A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
function helpers.free_port()
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- A port with nothing listening on it.
function helpers.closed_port()
  return helpers.free_port()
end

local function tcp_probe(port)
  local c = socket.tcp()
  c:settimeout(0.25)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

local function log_tail(srv)
  local s = readfile(srv.log) or "(no log)"
  if #s > 4000 then s = "...\n" .. s:sub(-4000) end
  return s
end

-- Start a server. build(port, dir) returns argv and a readiness check
-- ready(srv); retried on a fresh port when the port was taken meanwhile.
local function start(kind, build, opts)
  local last
  for _ = 1, 5 do
    local port = opts.port or helpers.free_port()
    local dir = mktempdir(kind)
    local argv, ready, feed = build(port, dir)
    local srv = { kind = kind, port = port, dir = dir, log = dir .. "/server.log",
                  argv = argv, host = "127.0.0.1" }
    srv.pid = spawn(argv, srv.log, feed)
    srv.stop = function() return stop(srv) end
    srv.alive = function() return not srv.stopped and helpers.alive(srv.pid) end
    srv.logtext = function() return readfile(srv.log) or "" end
    -- mode "stdin": let the server send its data now
    srv.release = function() writefile(dir .. "/go", "") end
    running[srv.pid] = srv
    local deadline = socket.gettime() + helpers.start_timeout
    while true do
      if ready(srv) then return srv end
      if not helpers.alive(srv.pid) then
        local text = log_tail(srv)
        stop(srv)
        last = string.format("%s on port %d died at start: %s\n--- log:\n%s",
          kind, port, table.concat(argv, " "), text)
        if opts.port or not text:find("in use") then error(last, 0) end
        break   -- port collision: try another
      end
      if socket.gettime() > deadline then
        local text = log_tail(srv)
        stop(srv)
        error(string.format("%s on port %d did not listen within %ds: %s\n--- log:\n%s",
          kind, port, helpers.start_timeout, table.concat(argv, " "), text), 0)
      end
      socket.sleep(0.02)
    end
  end
  error(last or (kind .. ": no free port"), 0)
end

---------------------------------------------------------------------------
-- openssl s_server

--[[ helpers.s_server(opts) -> server { port, pid, log, host, stop(), alive() }
opts:
  tls          "1.2" | "1.3" | nil (both)
  mode         "www" (default: GET / answers a status page with "Reused,"
               or "New,"), "rev" (echoes each line reversed; "CLOSE" closes),
               "stdin": once the test calls srv.release(), sends opts.data to
               the connected client, then closes the socket WITHOUT a TLS
               close_notify and exits (one connection only)
  data         bytes sent by mode "stdin"
  cert         "server" (default) | "other" | "untrusted" | "expired"
  no_ticket    -no_ticket (TLS 1.2: session IDs; TLS 1.3: stateful tickets)
  no_cache     -no_cache
  num_tickets  -num_tickets N (TLS 1.3)
  anti_replay  true: -anti_replay -max_early_data 1024, which makes the
               server accept each TLS 1.3 ticket once only
  verify_client  true: -Verify 1 -CAfile clientca.pem (client cert required)
  alpn         "h2,http/1.1" style list (-alpn)
  servername   SNI name that selects cert2 (default cert2 = "other")
  cert2        with servername: "other" (default) | "server" | ...
  args         list of extra arguments (alias: extra)
  port         listen on this port instead of a free one
]]
function helpers.s_server(opts)
  opts = opts or {}
  local mode = opts.mode or "www"
  local pair = server_certs[opts.cert or "server"]
  assert(pair, "unknown cert kind " .. tostring(opts.cert))
  return start("s_server", function(port, dir)
    local a = { "openssl", "s_server", "-accept", "127.0.0.1:" .. port,
                "-cert", pair[1], "-key", pair[2] }
    local feed
    if mode == "www" then a[#a + 1] = "-www"
    elseif mode == "rev" then a[#a + 1] = "-rev"
    elseif mode == "stdin" then
      -- s_server reads stdin only while a client is connected; it must not
      -- be readable before the handshake is over (s_server would then block
      -- in SSL_read after its first write), hence the wait for the go file.
      -- At end of input s_server closes the socket before any SSL_shutdown.
      writefile(dir .. "/data", opts.data or "")
      feed = string.format("{ i=0; while [ ! -e %s ] && [ $i -lt 1200 ]; do sleep 0.02; i=$((i+1)); done; cat %s; }",
        q(dir .. "/go"), q(dir .. "/data"))
    else error("unknown s_server mode " .. tostring(mode)) end
    if opts.tls == "1.2" then a[#a + 1] = "-tls1_2"
    elseif opts.tls == "1.3" then a[#a + 1] = "-tls1_3"
    elseif opts.tls ~= nil then error("tls must be \"1.2\" or \"1.3\"") end
    if opts.no_ticket then a[#a + 1] = "-no_ticket" end
    if opts.no_cache then a[#a + 1] = "-no_cache" end
    if opts.num_tickets then
      a[#a + 1] = "-num_tickets"; a[#a + 1] = tostring(opts.num_tickets)
    end
    if opts.anti_replay then
      a[#a + 1] = "-anti_replay"; a[#a + 1] = "-max_early_data"; a[#a + 1] = "1024"
    end
    if opts.verify_client then
      a[#a + 1] = "-Verify"; a[#a + 1] = "1"
      a[#a + 1] = "-CAfile"; a[#a + 1] = helpers.certs.clientca
      a[#a + 1] = "-verify_return_error"
    end
    if opts.alpn then a[#a + 1] = "-alpn"; a[#a + 1] = opts.alpn end
    if opts.servername then
      local p2 = server_certs[opts.cert2 or "other"]
      assert(p2, "unknown cert2 kind " .. tostring(opts.cert2))
      a[#a + 1] = "-servername"; a[#a + 1] = opts.servername
      a[#a + 1] = "-cert2"; a[#a + 1] = p2[1]
      a[#a + 1] = "-key2"; a[#a + 1] = p2[2]
    end
    for _, x in ipairs(opts.args or opts.extra or {}) do a[#a + 1] = x end
    -- s_server prints ACCEPT once it listens; no probe connection needed,
    -- which matters for mode "stdin" (a probe would take the data)
    local function ready(srv) return (readfile(srv.log) or ""):find("ACCEPT") ~= nil end
    return a, ready, feed
  end, opts)
end

---------------------------------------------------------------------------
-- nginx

--[[ helpers.nginx(opts) -> server { port, pid, log, stop() }
(log is nginx's error log too.)
GET / answers "reused=$ssl_session_reused proto=$ssl_protocol".
opts:
  tls            "1.2" | "1.3" | nil (both)
  tickets        true (default) | false  (ssl_session_tickets)
  session_cache  true (default): shared:SSL:1m | false: off
  session_timeout  seconds (ssl_session_timeout), default nginx's 5m
  cert           "server" (default) | "other" | "untrusted" | "expired"
  plain          true: listen without TLS (plain HTTP)
  extra          string of more server{} directives
  port           listen on this port instead of a free one (e.g. to restart
                 a server where a stopped one was)
]]
function helpers.nginx(opts)
  opts = opts or {}
  local pair = server_certs[opts.cert or "server"]
  assert(pair, "unknown cert kind " .. tostring(opts.cert))
  local protocols = ({ ["1.2"] = "TLSv1.2", ["1.3"] = "TLSv1.3" })[opts.tls or ""]
    or (opts.tls == nil and "TLSv1.2 TLSv1.3")
  assert(protocols, "tls must be \"1.2\" or \"1.3\"")
  return start("nginx", function(port, dir)
    local tmp = dir .. "/tmp"
    sh("mkdir -p " .. q(tmp))
    local conf = table.concat({
      -- workers run as nobody unless told otherwise; as root, stay root so
      -- they can read whatever the certificates' directory allows
      is_root and "user root root;" or "",
      "worker_processes 1;",
      "error_log " .. dir .. "/server.log info;",
      "events { worker_connections 64; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path " .. tmp .. "; proxy_temp_path " .. tmp .. ";",
      "  fastcgi_temp_path " .. tmp .. "; uwsgi_temp_path " .. tmp .. "; scgi_temp_path " .. tmp .. ";",
      "  server {",
      "    listen 127.0.0.1:" .. port .. (opts.plain and ";" or " ssl;"),
      "    server_name localhost;",
      "    ssl_certificate " .. pair[1] .. ";",
      "    ssl_certificate_key " .. pair[2] .. ";",
      "    ssl_protocols " .. protocols .. ";",
      "    ssl_session_cache " .. (opts.session_cache == false and "off" or "shared:SSL:1m") .. ";",
      "    ssl_session_tickets " .. (opts.tickets == false and "off" or "on") .. ";",
      opts.session_timeout and ("    ssl_session_timeout " .. opts.session_timeout .. "s;") or "",
      opts.extra or "",
      "    location / { default_type text/plain;",
      "      return 200 \"reused=$ssl_session_reused proto=$ssl_protocol\\n\"; }",
      "  }",
      "}", "" }, "\n")
    writefile(dir .. "/nginx.conf", conf)
    -- -e: the error log before the configuration is read (nginx >= 1.19.5)
    local argv = { "nginx", "-p", dir, "-e", dir .. "/server.log", "-c", dir .. "/nginx.conf",
                   "-g", "daemon off; pid " .. dir .. "/nginx.pid;" }
    -- a probe alone could reach another process that holds the port; nginx
    -- logs this notice only once its own listening socket is bound
    local function ready(srv)
      return (readfile(srv.log) or ""):find("start worker process", 1, true) ~= nil
        and tcp_probe(srv.port)
    end
    return argv, ready
  end, opts)
end

---------------------------------------------------------------------------
-- C tools of the specs (spec/tools/NAME.c), built on first use

--- Path of build/tools/NAME, compiled from spec/tools/NAME.c when missing
-- or older than its source (atomically: several runs may race).
function helpers.tool(name)
  local src = helpers.root .. "/spec/tools/" .. name .. ".c"
  local dir = helpers.root .. "/build/tools"
  local bin = dir .. "/" .. name
  if not sh("test -x " .. q(bin) .. " && test " .. q(bin) .. " -nt " .. q(src)) then
    local tmp = bin .. ".tmp." .. tostring(math.random(1e9))
    local ok = sh(string.format("mkdir -p %s && cc -std=c99 -O1 -g -Wall -Wextra %s -o %s " ..
      "-lssl -lcrypto 2>%s.log && mv -f %s %s", q(dir), q(src), q(tmp), q(tmp), q(tmp), q(bin)))
    if not ok then
      local log = readfile(tmp .. ".log") or ""
      sh("rm -f " .. q(tmp) .. " " .. q(tmp .. ".log"))
      error("cannot build " .. src .. ":\n" .. log, 2)
    end
    sh("rm -f " .. q(tmp .. ".log"))
  end
  return abspath(bin)
end

--[[ helpers.tcserver(opts) -> server { port, pid, log, stop(), conns() }
spec/tools/tcserver.c: a TLS server that misbehaves on purpose (see the
comment at its top). GET / answers like s_server -www ("Reused, TLSv1.3" or
"New, TLSv1.3"), so helpers.fetch and server_reused work with it.
opts:
  tls            "1.2" | "1.3" | nil (both)
  cert           "server" (default) | "other" | "untrusted" | "expired"
  num_tickets    TLS 1.3 tickets right after the handshake (default 2)
  late           TLS 1.3 tickets sent after the response ...
  late_delay     ... that many milliseconds after it
  lifetime       session timeout = ticket lifetime hint, seconds (0 allowed)
  no_ticket      session IDs (TLS 1.2) / stateful tickets (TLS 1.3)
  ticket_key     string: fixed ticket keys, so tickets survive a restart
  renew          ask for a fresh ticket at each ticket resumption
  alpn           "h2,http/1.1" (the server's order decides)
  no_close_notify  end each connection with a bare TCP FIN
  fail_resumed   accept a resumption, then corrupt the server's next record
  anti_replay    TLS 1.3: accept each ticket once
  flood          seconds: after the handshake send 'x' as fast as it is taken
  sink           ms: after the handshake read nothing that long, then read
                 to the end; srv.sink() -> bytes, runs ("A*3948544,B*1032192")
  answer         with sink: after 200 ms without data, answer "got BYTES\n"
  port           listen on this port
srv.conns() parses the log: an array of { reused = bool, proto, sni, alpn,
corrupted = bool, failed = bool }, one per connection, in order.
]]
function helpers.tcserver(opts)
  opts = opts or {}
  local pair = server_certs[opts.cert or "server"]
  assert(pair, "unknown cert kind " .. tostring(opts.cert))
  local bin = helpers.tool("tcserver")
  local srv = start("tcserver", function(port)
    local a = { bin, "-accept", tostring(port), "-cert", pair[1], "-key", pair[2] }
    local function add(...) for _, x in ipairs{ ... } do a[#a + 1] = tostring(x) end end
    if opts.tls then add("-tls", opts.tls) end
    if opts.num_tickets then add("-num_tickets", opts.num_tickets) end
    if opts.late then add("-late", opts.late) end
    if opts.late_delay then add("-late_delay", opts.late_delay) end
    if opts.lifetime then add("-lifetime", opts.lifetime) end
    if opts.ticket_key then add("-ticket_key", opts.ticket_key) end
    if opts.alpn then add("-alpn", opts.alpn) end
    if opts.no_ticket then add("-no_ticket") end
    if opts.renew then add("-renew") end
    if opts.no_close_notify then add("-no_close_notify") end
    if opts.fail_resumed then add("-fail_resumed") end
    if opts.anti_replay then add("-anti_replay") end
    if opts.flood then add("-flood", opts.flood) end
    if opts.sink then add("-sink", opts.sink) end
    if opts.answer then add("-answer") end
    local function ready(s) return (readfile(s.log) or ""):find("ACCEPT") ~= nil end
    return a, ready
  end, opts)
  function srv.conns()
    local list = {}
    for line in srv.logtext():gmatch("[^\n]+") do
      local n = line:match("^conn (%d+) ")
      if n then
        list[#list + 1] = {
          reused = line:match("reused=1") ~= nil,
          proto = line:match("proto=(%S+)"),
          sni = line:match("sni=(%S+)"),
          alpn = line:match("alpn=(%S*)"),
          corrupted = line:match("corrupted=1") ~= nil,
          failed = line:match("handshake failed") ~= nil,
        }
      end
    end
    return list
  end
  function srv.sink()
    local bytes, runs = srv.logtext():match("\nsink (%d+) (%S*)")
    return tonumber(bytes), runs
  end
  return srv
end

---------------------------------------------------------------------------
-- GnuTLS gnutls-serv, in a network namespace

--- A private network namespace with its loopback up, or nil, reason when
-- this machine cannot make one (not root, no `ip`, a sandbox without
-- namespaces). -> { name, exec = "ip netns exec NAME", delete() }
function helpers.netns()
  if not is_root then return nil, "network namespaces need root" end
  if not sh("command -v ip >/dev/null 2>&1") then return nil, "no ip command (apt-get install iproute2)" end
  local name = string.format("tlscache-%d-%d", os.time(), math.random(1e6))
  if not sh("ip netns add " .. name .. " 2>/dev/null") then
    return nil, "ip netns add failed (no network namespaces here?)"
  end
  local ns = { name = name, exec = "ip netns exec " .. name }
  function ns.delete() sh("ip netns del " .. name .. " 2>/dev/null") end
  if not sh(ns.exec .. " ip link set lo up") then
    ns.delete()
    return nil, "cannot bring up lo in a network namespace"
  end
  return ns
end

--[[ helpers.gnutls_serv(ns, opts) -> server { port, pid, log, stop(), conns() }
gnutls-serv --http in the network namespace ns (helpers.netns()): it binds
every address and cannot be told which, so it runs where the only address
is that namespace's own loopback. Reach it from a process in the same
namespace (helpers.run_lua(code, ns.exec)).
opts:
  tls          "1.2" | "1.3" | nil (both)
  noticket     --noticket (no tickets; TLS 1.2 resumes by session ID)
  nodb         --nodb (no session ID database)
srv.conns(): one { resumed = bool, version } per connection, in order, from
its log ("*** This is a resumed session").
]]
function helpers.gnutls_serv(ns, opts)
  opts = opts or {}
  local prio = ({ ["1.2"] = "NORMAL:-VERS-ALL:+VERS-TLS1.2", ["1.3"] = "NORMAL:-VERS-ALL:+VERS-TLS1.3" })[opts.tls or ""]
    or "NORMAL"
  local srv = start("gnutls-serv", function(port)
    local a = { "ip", "netns", "exec", ns.name, "gnutls-serv", "--http", "-p", tostring(port),
                "--x509certfile", helpers.certs.server, "--x509keyfile", helpers.certs.server_key,
                "--priority", prio }
    if opts.noticket then a[#a + 1] = "--noticket" end
    if opts.nodb then a[#a + 1] = "--nodb" end
    local function ready(s) return (readfile(s.log) or ""):find("listening on", 1, true) ~= nil end
    return a, ready
  end, opts)
  function srv.conns()
    local list = {}
    local text, marker = srv.logtext(), "* Accepted connection"
    local at = text:find(marker, 1, true)
    while at do
      local nxt = text:find(marker, at + 1, true)
      local block = text:sub(at, (nxt or #text + 1) - 1)
      at = nxt
      list[#list + 1] = {
        resumed = block:find("This is a resumed session", 1, true) ~= nil,
        version = block:match("%- Version: (%S+)"),
      }
    end
    return list
  end
  return srv
end

---------------------------------------------------------------------------
-- child Lua processes (for what needs another environment: a faked clock,
-- a network namespace)

--- The command that starts this interpreter, for a child process.
function helpers.lua_command()
  if rawget(_G, "jit") then return "luajit" end
  local v = _VERSION:match("Lua (%d%.%d)")
  return "lua" .. v
end

--- Run `code` (Lua source) in a child interpreter of the same kind, with
-- the same LUA_PATH/LUA_CPATH (and, under make asan, the same sanitizer
-- preload), prefixed by `prefix` (e.g. "env FOO=1" or "ip netns exec NS").
-- Returns ok (exit status 0), its standard output, its standard error.
function helpers.run_lua(code, prefix)
  local dir = mktempdir("child")
  local script, out, err = dir .. "/child.lua", dir .. "/out", dir .. "/err"
  writefile(script, code)
  local cmd = string.format("%s %s %s >%s 2>%s", prefix or "", helpers.lua_command(),
    q(script), q(out), q(err))
  local a, _, c = os.execute(cmd)      -- not sh(): keep LD_PRELOAD (asan)
  local ok
  if type(a) == "number" then ok = a == 0 else ok = a == true and (c == nil or c == 0) end
  local o, e = readfile(out) or "", readfile(err) or ""
  if not os.getenv("TLSCACHE_KEEP") then sh("rm -rf " .. q(dir)) end
  return ok, o, e
end

---------------------------------------------------------------------------
-- listeners that never speak TLS

--- A TCP listener on 127.0.0.1 that never accepts: the kernel completes the
-- connection, then nothing is ever said. -> { port, stop() }
function helpers.silent_listener()
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  assert(s:listen(8))
  local _, port = s:getsockname()
  local l = { port = tonumber(port), host = "127.0.0.1" }
  function l.stop() s:close(); return true end
  return l
end

---------------------------------------------------------------------------
-- tlscache conveniences

--- tlscache.vhost with cafile = the test CA, plus opts (opts win).
function helpers.vhost(opts)
  local tlscache = require "tlscache"
  local o = { cafile = helpers.certs.ca }
  for k, v in pairs(opts or {}) do o[k] = v end
  return tlscache.vhost(o)
end

--- GET / over conn; returns the whole response (headers and body) read with
-- receive("*a"), or nil, err, partial.
function helpers.get(conn, host)
  local req = "GET / HTTP/1.0\r\nHost: " .. (host or "localhost") .. "\r\n\r\n"
  local n, err = conn:send(req)
  if not n then return nil, err end
  return conn:receive("*a")
end

--- true when the server's page says the session was resumed, false when it
-- says new, nil when the page says neither.
function helpers.server_reused(body)
  if type(body) ~= "string" then return nil end
  if body:find("Reused, TLSv", 1, true) or body:find("reused=r", 1, true) then return true end
  if body:find("New, TLSv", 1, true) or body:find("reused=.", 1, true) then return false end
  return nil
end

--- "TLSv1.2" / "TLSv1.3" as the server's page reports it.
function helpers.server_protocol(body)
  if type(body) ~= "string" then return nil end
  return body:match("Reused, (TLSv1%.%d)") or body:match("New, (TLSv1%.%d)")
      or body:match("proto=(TLSv1%.%d)")
end

--- One connection to host (default "127.0.0.1"): connect, GET /, close.
-- Raises (with the error triple) if the connection or the GET fails.
-- opts are vh:connect's, with timeout 10 unless given. Returns
-- { body, server_reused, server_protocol, reused, info }, where reused is
-- conn:reused() and info conn:info(), both taken before the close.
function helpers.fetch(vh, port, opts, host)
  host = host or "127.0.0.1"
  local o = { timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local conn, msg, code = vh:connect(host, port, o)
  if not conn then
    error(string.format("connect %s:%s failed: %s (%s)", host, tostring(port),
      tostring(msg), tostring(code)), 2)
  end
  local body, err = helpers.get(conn, o.servername or host)
  local r = { reused = conn:reused(), info = conn:info() }
  conn:close()
  if not body then error("GET failed: " .. tostring(err), 2) end
  r.body = body
  r.server_reused = helpers.server_reused(body)
  r.server_protocol = helpers.server_protocol(body)
  return r
end

return helpers
