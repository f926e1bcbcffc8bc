-- Finalizers that run in the middle of a call. Any Lua allocation can run
-- the collector, and with it the __gc of an unclosed connection (which
-- stores the TLS 1.3 tickets it still had, evicting an entry when the cache
-- is full) or a user's __gc that closes a vhost or a connection. No method
-- may hold a pointer into the cache, the vhost or the connection across
-- such an allocation. On the code before this spec, each of these read
-- freed memory (seen by ASan and valgrind), returned garbage or crashed.
--
-- Each case runs in a child interpreter of the same kind (helpers.run_lua;
-- under make asan it is preloaded the same way, and an ASan report fails
-- it): with busted's large heap a collection cycle, and so the finalizer,
-- comes too seldom to land inside the call under test. Every child checks
-- that its finalizer did run during the calls, so a pass means something.
local helpers = require "helpers"

local prelude = [[
  local tlscache = require "tlscache"
  local socket = require "socket"
  -- a small collector step inside (nearly) every allocation
  local function eager_gc()
    if _VERSION == "Lua 5.4" then collectgarbage("incremental", 1, 100, 0)
    else collectgarbage("setpause", 1); collectgarbage("setstepmul", 100) end
  end
  -- an object whose finalizer runs fn (5.1 and LuaJIT finalize userdata only)
  local function gc_object(fn)
    if newproxy then
      local p = newproxy(true)
      getmetatable(p).__gc = fn
      return p
    end
    return setmetatable({}, { __gc = fn })
  end
  -- f() in every collection cycle while state.armed
  local function every_cycle(f)
    local state = { armed = false, fired = 0 }
    local function fin()
      if state.armed then state.fired = state.fired + 1; f() end
      gc_object(fin)                       -- the next cycle's
    end
    for _ = 1, 50 do gc_object(fin) end
    return state
  end
  local function get(c)
    assert(c:send("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"))
    return c:receive("*a")
  end
]]

-- run the child's code; it prints its results, which must be `want`
local function child(code, want)
  local ok, out, err = helpers.run_lua(prelude .. code)
  assert.is_true(ok, err)
  assert.are.equal(want, out, err)
end

describe("a finalizer that runs during a call", function()
  after_each(helpers.stop_all)

  it("vh:stats() while a finalizer closes the vhost", function()
    child([[
      local vh
      local st = every_cycle(function() if vh then vh:close() end end)
      eager_gc()
      local tables, raised, bad = 0, 0, 0
      for _ = 1, 3000 do
        vh = assert(tlscache.vhost{ verify = "none" })
        st.armed = true
        local ok, r = pcall(vh.stats, vh)
        st.armed = false
        if ok then
          if r.max == 10 and r.size == 0 and r.enabled == true then tables = tables + 1
          else bad = bad + 1 end
        elseif tostring(r):find("closed", 1, true) then
          raised = raised + 1
        else
          bad = bad + 1
        end
      end
      print(st.fired > 0, tables + raised, bad)
    ]], "true\t3000\t0\n")
  end)

  it("vh:sessions() while a finalizer flushes the cache", function()
    local srv = helpers.s_server{ tls = "1.2" }
    child(([[
      local port = %d
      local vh = assert(tlscache.vhost{ cafile = %q, session_cache_max = 50 })
      for i = 1, 30 do
        local c = assert(vh:connect("127.0.0.1", port,
          { timeout = 10, servername = "localhost", alpn = "p" .. i }))
        get(c)
        c:close()
      end
      assert(vh:stats().size == 30)
      local st = every_cycle(function() vh:flush() end)
      eager_gc()
      st.armed = true
      local bad = 0
      for _ = 1, 300 do
        for _, e in ipairs(vh:sessions()) do
          if not (e.host == "127.0.0.1" and e.port == port and e.servername == "localhost"
                  and e.protocol == "TLSv1.2") then bad = bad + 1 end
        end
      end
      st.armed = false
      print(st.fired > 0, vh:stats().size, bad)
    ]]):format(srv.port, helpers.certs.ca), "true\t0\t0\n")
  end)

  it("vh:sessions() while collected connections store their tickets and evict", function()
    local srv = helpers.nginx{ tls = "1.3" }
    child(([[
      local port = %d
      local vh = assert(tlscache.vhost{ verify = "none", session_cache_max = 4,
                                        session_tickets_max = 1 })
      local rows, bad = 0, 0
      for round = 1, 4 do
        for i = 1, 4 do
          local c = assert(vh:connect("127.0.0.1", port,
            { servername = ("p%%d-%%d"):format(round, i), timeout = 10 }))
          get(c)
          c:close()
        end
        collectgarbage("stop")
        for i = 1, 40 do                 -- left unclosed, their tickets unread
          assert(vh:connect("127.0.0.1", port,
            { servername = ("g%%d-%%d"):format(round, i), timeout = 10 }))
          for _ = 1, 100 do gc_object(function() end) end
        end
        socket.sleep(0.05)               -- the tickets are in the sockets now
        collectgarbage("restart")
        eager_gc()
        for _ = 1, 1500 do
          local list = vh:sessions()
          if #list > 4 then bad = bad + 1 end
          for _, e in ipairs(list) do
            if type(e.servername) ~= "string" or e.protocol ~= "TLSv1.3" then bad = bad + 1 end
            rows = rows + 1
          end
        end
        collectgarbage("collect")
      end
      -- the 4 x 40 unclosed connections delivered their tickets
      print(rows > 0, bad, vh:stats().stores > 4 * 4 + 40)
    ]]):format(srv.port), "true\t0\ttrue\n")
  end)

  it("conn:receive() while a finalizer closes that connection", function()
    local srv = helpers.s_server{ tls = "1.3", mode = "rev" }
    child(([[
      local vh = assert(tlscache.vhost{ cafile = %q })
      local c = assert(vh:connect("localhost", %d, { timeout = 10 }))
      local st = every_cycle(function() c:close() end)
      eager_gc()
      -- 400 000 bytes in one receive: its buffer grows many times while it
      -- reads (s_server -rev echoes a long line in 16 KiB lines: 400 025
      -- bytes come back, 25 of them newlines)
      assert(c:send(string.rep("x", 400000) .. "\n"))
      st.armed = true
      local ok, data, err, partial = pcall(c.receive, c, 400025)
      st.armed = false
      local verdict
      if not ok then verdict = "raised: " .. tostring(data)
      elseif data then verdict = #data == 400025 and "all" or "short"
      elseif err == "closed" and type(partial) == "string" and #partial < 400025 then
        verdict = "closed"
      else verdict = "bad: " .. tostring(err) end
      local d2, e2 = c:receive("*l")
      print(st.fired > 0, verdict, d2, e2, c:info().closed)
    ]]):format(helpers.certs.ca, srv.port), "true\tclosed\tnil\tclosed\ttrue\n")
  end)

  it("conn:info() and tostring while a finalizer closes the connection", function()
    local srv = helpers.s_server{ tls = "1.3" }
    child(([[
      local vh = assert(tlscache.vhost{ cafile = %q })
      local c
      local st = every_cycle(function() if c then c:close() end end)
      eager_gc()
      local bad = 0
      for _ = 1, 50 do
        c = assert(vh:connect("localhost", %d, { timeout = 10 }))
        st.armed = true
        for _ = 1, 50 do
          local info = c:info()
          if not info.closed and not (info.host == "localhost" and info.port == %d
                                      and info.protocol == "TLSv1.3") then bad = bad + 1 end
          if type(tostring(c)) ~= "string" then bad = bad + 1 end
        end
        st.armed = false
        c:close()
      end
      print(st.fired > 0, bad)
    ]]):format(helpers.certs.ca, srv.port, srv.port), "true\t0\n")
  end)

  it("a connection that outlives a reload of the module and its sentinel", function()
    -- the child's lua_close finalizes the new module's sentinel before the
    -- older connection; only valgrind sees the freed BIO method being used
    -- (inside libcrypto, which ASan does not instrument)
    if (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) then
      pending("valgrind cannot run a child preloaded with ASan; runs in make test") return
    end
    if not helpers.sh("command -v valgrind >/dev/null") then
      pending("valgrind not installed (apt-get install valgrind)") return
    end
    -- s_server serves one connection at a time: one server for each
    local srv = helpers.s_server{ tls = "1.3", mode = "rev" }
    local srv2 = helpers.s_server{ tls = "1.3", mode = "rev" }
    local code = ([[
      local core = require "tlscache.core"
      local vh = assert(core.vhost{ cafile = %q })
      local conn = assert(vh:connect("localhost", %d, { timeout = 10 }))
      package.loaded["tlscache.core"] = nil
      local core2 = require "tlscache.core"
      collectgarbage(); collectgarbage()        -- the first sentinel goes
      assert(conn:send("hello\n"))
      print(conn:receive())
      local vh2 = assert(core2.vhost{ cafile = %q })
      local conn2 = assert(vh2:connect("localhost", %d, { timeout = 10 }))
      assert(conn2:send("again\n"))
      print(conn2:receive())
      KEEP = { conn, conn2 }                    -- alive until lua_close
    ]]):format(helpers.certs.ca, srv.port, helpers.certs.ca, srv2.port)
    local ok, out, err = helpers.run_lua(code, "valgrind -q --error-exitcode=87")
    assert.is_true(ok, err)
    assert.are.equal("olleh\nniaga\n", out)
    assert.are.equal("", err)
  end)
end)
