-- Soak test (issue 5): many connections through one vhost whose cache is
-- smaller than the set of servers it talks to, against servers of every
-- kind (TLS 1.3 tickets, stateful TLS 1.3 tickets, TLS 1.2 session IDs and
-- tickets, nginx's shared cache), some of them restarted in the middle.
-- Every connection's resumption is checked against the server's own
-- verdict; live sessions, RSS and open descriptors are sampled as it goes
-- and must stay flat.
--
--   make soak                      (SOAK_CONNS=50000 by default)
--   LUA_PATH=... LUA_CPATH=... lua5.4 spec/soak.lua [connections]
--
-- Not part of make test. Prints a table and a verdict; exits 1 when a
-- connection failed, a verdict disagreed, or a figure grew.
local helpers = require "helpers"
local tlscache = require "tlscache"
local socket = require "socket"

local TOTAL = tonumber(arg and arg[1]) or 50000
local CACHE_MAX = 10
helpers.max_life = 7200          -- servers must outlive the run

local function pid()
  local stat = assert(io.open("/proc/self/stat")):read("*l")
  return tonumber(stat:match("^(%d+)"))
end
local PID = pid()

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

local function fds()
  -- counted from outside, so the pipe of this popen is the only extra one
  local f = assert(io.popen("ls -l /proc/" .. PID .. "/fd"))
  local list = f:read("*a")
  f:close()
  local n, what = 0, {}
  for target in list:gmatch("%-> ([^\n]+)") do
    n = n + 1
    what[#what + 1] = target
  end
  return n, table.concat(what, " ")
end

-- the servers; `restart` ones are restarted on their port in the middle
local kinds = {
  { name = "s_server TLS 1.3 tickets", start = function(p) return helpers.s_server{ tls = "1.3", port = p } end, restart = true },
  { name = "s_server TLS 1.3 stateful", start = function(p) return helpers.s_server{ tls = "1.3", no_ticket = true, port = p } end },
  { name = "s_server TLS 1.2 session IDs", start = function(p) return helpers.s_server{ tls = "1.2", no_ticket = true, port = p } end, restart = true },
  { name = "s_server TLS 1.2 tickets", start = function(p) return helpers.s_server{ tls = "1.2", port = p } end },
  { name = "nginx TLS 1.2+1.3 tickets", start = function(p) return helpers.nginx{ port = p } end, restart = true },
  { name = "nginx TLS 1.2 shared cache", start = function(p) return helpers.nginx{ tls = "1.2", tickets = false, port = p } end },
  { name = "tcserver TLS 1.3 late ticket", start = function(p) return helpers.tcserver{ tls = "1.3", num_tickets = 0, late = 1, port = p } end },
}

local servers = {}
for i, k in ipairs(kinds) do servers[i] = k.start() end

-- 20 tuples: each server by IP, by name with SNI, by IP with SNI alt.test
local tuples = {}
for i = 1, #kinds do
  tuples[#tuples + 1] = { i, "127.0.0.1", nil }
  tuples[#tuples + 1] = { i, "localhost", nil }
  tuples[#tuples + 1] = { i, "127.0.0.1", { servername = "alt.test" } }
end
while #tuples > 20 do table.remove(tuples) end

-- a fixed pseudo-random sequence: 70 % of connections to 6 hot tuples,
-- 30 % to any of the 20
local seed = 12345
local function rand(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 65536) % n + 1      -- the high bits: the low ones cycle
end
local function pick()
  if rand(10) <= 7 then return tuples[rand(6)] end
  return tuples[rand(#tuples)]
end

local vh = assert(helpers.vhost{ session_cache_max = CACHE_MAX })
local done, errors, disagree, server_reused = 0, 0, 0, 0
local first_error

local function one()
  local t = pick()
  local srv = servers[t[1]]
  local o = { timeout = 10 }
  if t[3] then o.servername = t[3].servername end
  local conn, msg = vh:connect(t[2], srv.port, o)
  done = done + 1
  if not conn then
    errors = errors + 1
    first_error = first_error or (kinds[t[1]].name .. ": " .. tostring(msg))
    return
  end
  local body = helpers.get(conn, o.servername or t[2])
  local reused = conn:reused()
  conn:close()
  local verdict = helpers.server_reused(body)
  if verdict == nil then
    errors = errors + 1
    first_error = first_error or (kinds[t[1]].name .. ": no page")
  elseif verdict ~= reused then
    disagree = disagree + 1
  end
  if verdict then server_reused = server_reused + 1 end
end

local function live_sessions()
  local n = 0
  for _, e in ipairs(vh:sessions()) do n = n + e.tickets end
  return n
end

local samples = {}
local T0 = socket.gettime()
local function sample(tag)
  collectgarbage()
  collectgarbage()
  local s = vh:stats()
  local nfd, fdlist = fds()
  local row = { tag = tag, conns = done, entries = s.size, live = live_sessions(), rss = rss_kib(),
                fds = nfd, fdlist = fdlist, lua_kib = math.floor(collectgarbage("count")), resumed = s.resumed,
                rejected = s.rejected, evictions = s.evictions, errors = errors }
  samples[#samples + 1] = row
  io.write(string.format("%-8s %7d conns  %2d entries  %3d sessions  RSS %6d KiB  %3d fds  Lua %5d KiB  resumed %6d  rejected %4d  evictions %6d  errors %d  (%.0f s)\n",
    tag, row.conns, row.entries, row.live, row.rss, row.fds, row.lua_kib, row.resumed, row.rejected,
    row.evictions, row.errors, socket.gettime() - T0))
  if os.getenv("SOAK_FDS") then io.write("   fds: ", fdlist, "\n") end
  io.flush()
end

T0 = socket.gettime()
local warmup = math.min(1000, math.floor(TOTAL / 10))
for _ = 1, warmup do one() end
sample("start")
local step = math.floor((TOTAL - warmup) / 10)
for tenth = 1, 10 do
  local target = tenth == 10 and TOTAL or warmup + tenth * step
  while done < target do one() end
  if tenth == 3 or tenth == 6 then
    -- restart some servers on their ports: their sessions become invalid
    for i, k in ipairs(kinds) do
      if k.restart then
        local port = servers[i].port
        servers[i].stop()
        servers[i] = k.start(port)
      end
    end
    io.write("-- restarted: ")
    for _, k in ipairs(kinds) do if k.restart then io.write(k.name, "; ") end end
    io.write("\n")
  end
  sample(tenth == 10 and "end" or (tenth * 10 .. "%"))
end
local elapsed = socket.gettime() - T0
local s = vh:stats()
helpers.stop_all()

local a, z = samples[1], samples[#samples]
local ok = true
local function check(cond, what)
  if not cond then ok = false; io.write("FAIL: ", what, "\n") end
end
check(errors == 0, errors .. " connections failed, first: " .. tostring(first_error))
check(disagree == 0, disagree .. " connections where conn:reused() and the server disagreed")
check(s.size <= CACHE_MAX, "more entries than the maximum")
check(z.fds == a.fds, string.format("descriptors %d -> %d: %s", a.fds, z.fds, z.fdlist))
check(z.rss - a.rss < 4096, string.format("RSS grew %d KiB", z.rss - a.rss))
check(z.lua_kib - a.lua_kib < 512, string.format("Lua heap grew %d KiB", z.lua_kib - a.lua_kib))
check(s.resumed > TOTAL / 4, "too few resumptions: " .. s.resumed)
check(s.rejected > 0, "no session was refused: the restarts did not happen?")
for _, r in ipairs(samples) do
  check(r.entries <= CACHE_MAX, "entries above the maximum at " .. r.tag)
  check(r.live <= CACHE_MAX * 4, "more sessions than entries x tickets at " .. r.tag)
end
io.write(string.format(
  "\n%d connections in %.0f s (%.0f/s), %d tuples, cache of %d: resumed %d (server says %d), " ..
  "misses %d, stores %d, evictions %d, rejected %d, expired %d\n",
  done, elapsed, done / elapsed, #tuples, CACHE_MAX, s.resumed, server_reused, s.misses, s.stores,
  s.evictions, s.rejected, s.expired))
io.write(string.format("start: %d sessions, RSS %d KiB, %d fds;  end: %d sessions, RSS %d KiB, %d fds\n",
  a.live, a.rss, a.fds, z.live, z.rss, z.fds))
io.write(ok and "soak: OK\n" or "soak: FAILED\n")
vh:close()
os.exit(ok and 0 or 1)
