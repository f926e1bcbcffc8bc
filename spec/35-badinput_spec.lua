-- Hardening (issue 5): bad input everywhere. Every public function with
-- wrong types, out-of-range numbers, empty strings, embedded NUL bytes,
-- ports 0 and 65536, huge strings, unknown option keys, a closed vhost or
-- connection. Each call raises (programmer error) or returns
-- nil, "code: ...", code (runtime failure), as API.md says; none crashes,
-- and the vhost is still usable afterwards.
local helpers = require "helpers"
local tlscache = require "tlscache"
local socket = require "socket"

local BIG = string.rep("a", 1024 * 1024)        -- 1 MiB
local NAN, INF = 0 / 0, math.huge

-- f(...) raises a Lua error (a string naming the problem when `text`)
local function raises(text, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error" .. (text and (" about " .. text) or ""))
  assert.is_string(err)
  if text then
    assert.truthy(err:find(text, 1, true), string.format("error %q does not mention %q", err, text))
  end
end

-- f(...) returns nil, "code: ...", code
local function fails(code, f, ...)
  local r = { pcall(f, ...) }
  assert.is_true(r[1], "raised: " .. tostring(r[2]))
  assert.is_nil(r[2])
  assert.are.equal(code, r[4], tostring(r[3]))
  assert.is_string(r[3])
  assert.are.equal(code .. ": ", r[3]:sub(1, #code + 2))
end

local function still_works(vh, srv)
  local r = helpers.fetch(vh, srv.port)
  assert.is_string(r.body)
end

describe("bad input", function()
  teardown(helpers.stop_all)

  local srv
  setup(function() srv = helpers.s_server{ tls = "1.3" } end)
  teardown(function() srv.stop() end)

  describe("tlscache.vhost", function()
    it("raises for options of the wrong type or unknown keys", function()
      for _, v in ipairs{ 1, "x", true, print } do raises("table expected", tlscache.vhost, v) end
      raises("bogus", tlscache.vhost, { bogus = true })
      raises("Name", tlscache.vhost, { Name = "x" })           -- keys are case-sensitive
      raises("option", tlscache.vhost, { [1] = "x" })
      raises("option", tlscache.vhost, { [true] = "x" })
      for _, k in ipairs{ "name", "verify", "cafile", "capath", "certificate", "key", "password",
                          "min_protocol", "max_protocol", "ciphers", "ciphersuites" } do
        raises(k, tlscache.vhost, { [k] = {} })
        raises(k, tlscache.vhost, { [k] = 5 == 5 })
      end
      for _, k in ipairs{ "session_cache_max", "session_timeout", "session_tickets_max" } do
        raises(k, tlscache.vhost, { [k] = "10" == 1 })
        raises(k, tlscache.vhost, { [k] = {} })
      end
      raises("session_cache", tlscache.vhost, { session_cache = 1 })
      raises("ticket_reuse", tlscache.vhost, { ticket_reuse = "no" })
      raises("alpn", tlscache.vhost, { alpn = 1 })
      raises("alpn", tlscache.vhost, { alpn = { "h2", 2 } })
    end)

    it("raises for out-of-range numbers", function()
      for _, v in ipairs{ -1, 1e7 + 1, NAN, INF, -INF, 2.5 } do
        raises("session_cache_max", tlscache.vhost, { session_cache_max = v })
      end
      for _, v in ipairs{ -1, 1e9 + 1, NAN, INF } do
        raises("session_timeout", tlscache.vhost, { session_timeout = v })
      end
      for _, v in ipairs{ 0, 65, -1, NAN, INF } do
        raises("session_tickets_max", tlscache.vhost, { session_tickets_max = v })
      end
    end)

    it("raises for empty, NUL-bearing and huge names and lists", function()
      raises("name", tlscache.vhost, { name = "" })
      raises("name", tlscache.vhost, { name = "a\0b" })
      raises("name", tlscache.vhost, { name = BIG })
      raises("verify", tlscache.vhost, { verify = "" })
      raises("min_protocol", tlscache.vhost, { min_protocol = "" })
      raises("alpn", tlscache.vhost, { alpn = "" })
      raises("alpn", tlscache.vhost, { alpn = BIG })
      raises("alpn", tlscache.vhost, { alpn = {} })
      local long = {}
      for i = 1, 300 do long[i] = string.rep("x", 255) end
      raises("alpn", tlscache.vhost, { alpn = long })
      for _, k in ipairs{ "cafile", "capath", "certificate", "ciphers", "ciphersuites" } do
        raises(k, tlscache.vhost, { [k] = "x\0y" })
      end
      -- a zero byte makes neither another value nor another key
      raises("verify", tlscache.vhost, { verify = "none\0peer" })
      raises("min_protocol", tlscache.vhost, { min_protocol = "tlsv1_3\0" })
      raises("unknown option", tlscache.vhost, { ["verify\0x"] = "none" })
    end)

    it("raises for fractions where a count is expected", function()
      raises("session_tickets_max", tlscache.vhost, { session_tickets_max = 1.5 })
      raises("session_cache_max", tlscache.vhost, { session_cache_max = 2.5 })
      assert.is_userdata((tlscache.vhost{ session_tickets_max = 2, session_cache_max = 3 }))
    end)

    it("returns nil, io / tls for files and lists it cannot use: empty, huge, not there", function()
      fails("io", tlscache.vhost, { cafile = "" })
      fails("io", tlscache.vhost, { capath = "" })
      fails("io", tlscache.vhost, { certificate = "" })
      fails("io", tlscache.vhost, { cafile = BIG })            -- ENAMETOOLONG
      fails("io", tlscache.vhost, { certificate = "/" .. BIG })
      fails("tls", tlscache.vhost, { cafile = helpers.certs.server_key })  -- no certificate in it
      fails("tls", tlscache.vhost, { ciphers = "" })
      fails("tls", tlscache.vhost, { ciphers = BIG })
      -- each list valid, nothing left for TLS 1.3 only: at once, not at every connect
      fails("tls", tlscache.vhost, { ciphersuites = "", min_protocol = "tlsv1_3" })
      assert.is_userdata((tlscache.vhost{ ciphersuites = "", max_protocol = "tlsv1_2" }))
    end)

    it("returns nil, io for a file that is not a regular file (a FIFO must not hang)", function()
      fails("io", tlscache.vhost, { cafile = "/dev/null" })
      fails("io", tlscache.vhost, { cafile = "/tmp" })
      fails("io", tlscache.vhost, { capath = "/dev/null" })
      fails("io", tlscache.vhost, { certificate = "/dev/zero" })
      local fifo = os.tmpname()
      finally(function() os.remove(fifo) end)
      os.remove(fifo)
      assert.is_true(helpers.sh("mkfifo " .. helpers.q(fifo)))
      fails("io", tlscache.vhost, { cafile = fifo })              -- no writer: fopen would block
      fails("io", tlscache.vhost, { certificate = fifo })
    end)
  end)

  describe("vh:connect", function()
    local vh
    before_each(function() vh = helpers.vhost{} end)
    after_each(function() vh:close() end)

    it("raises for bad hosts: wrong type, empty, NUL, too long", function()
      for _, h in ipairs{ true, {}, print } do raises(nil, vh.connect, vh, h, srv.port) end
      raises("string expected", vh.connect, vh, nil, srv.port)
      raises("empty", vh.connect, vh, "", srv.port)
      raises("zero", vh.connect, vh, "127.0.0.1\0evil.test", srv.port)
      raises("zero", vh.connect, vh, "\0", srv.port)
      raises("too long", vh.connect, vh, BIG, srv.port)
      still_works(vh, srv)
    end)

    it("raises for ports 0, 65536 and other non-ports", function()
      for _, p in ipairs{ 0, 65536, -1, 1.5, NAN, INF, -INF, 2 ^ 53, "443x", {}, true } do
        raises(nil, vh.connect, vh, "127.0.0.1", p)
      end
      raises("port", vh.connect, vh, "127.0.0.1", 0)
      raises("port", vh.connect, vh, "127.0.0.1", 65536)
      raises("number expected", vh.connect, vh, "127.0.0.1")
      still_works(vh, srv)
    end)

    it("raises for bad options: unknown keys, types, ranges, server names", function()
      local function bad(text, o) raises(text, vh.connect, vh, "127.0.0.1", srv.port, o) end
      bad("table expected", 5)
      bad("table expected", "timeout")
      bad("bogus", { bogus = 1 })
      bad("option", { [1] = 1 })
      for _, t in ipairs{ -1, NAN, INF, 1e9 + 1, "5", {} } do bad("timeout", { timeout = t }) end
      bad("resume", { resume = 1 })
      bad("servername", { servername = "" })
      bad("servername", { servername = "a\0b" })
      bad("servername", { servername = string.rep("s", 256) })
      bad("servername", { servername = BIG })
      bad("servername", { servername = true })
      bad("servername", { servername = 5 })
      bad("alpn", { alpn = "" })
      bad("alpn", { alpn = { "" } })
      bad("alpn", { alpn = BIG })
      local many = {}                  -- a valid list, too long for a cache key
      for i = 1, 8 do many[i] = string.rep(tostring(i), 200) end
      bad("host, servername and alpn too long together", { alpn = many })
      bad("unknown option", { ["timeout\0x"] = 1 })
      assert.are.equal(0, vh:stats().offered)
      still_works(vh, srv)
    end)

    it("returns nil, message, code for hosts that cannot be reached", function()
      -- one label over 63 bytes: the resolver refuses it without a query
      fails("resolve", vh.connect, vh, string.rep("a", 300) .. ".invalid", 443, { timeout = 5 })
      fails("resolve", vh.connect, vh, "nosuch..invalid", 443, { timeout = 5 })
      fails("connect", vh.connect, vh, "127.0.0.1", helpers.closed_port(), { timeout = 5 })
      -- timeout 0: the deadline has passed before anything could happen
      fails("timeout", vh.connect, vh, "127.0.0.1", srv.port, { timeout = 0 })
      local s = vh:stats()
      assert.are.equal(0, s.size)
      assert.are.equal(0, s.stores)
      still_works(vh, srv)
    end)
  end)

  describe("vh:flush, vh:stats, vh:sessions, vh:close", function()
    it("flush raises for bad tuples and accepts a tuple that is not cached", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      raises("number expected", vh.flush, vh, "127.0.0.1")
      raises("string expected", vh.flush, vh, nil, 443)
      raises("empty", vh.flush, vh, "", 443)
      raises("zero", vh.flush, vh, "a\0b", 443)
      raises("too long", vh.flush, vh, BIG, 443)
      for _, p in ipairs{ 0, 65536, 1.5, NAN } do raises("port", vh.flush, vh, "127.0.0.1", p) end
      assert.are.equal(0, vh:flush("127.0.0.1", 443))
      assert.are.equal(0, vh:flush("never.seen.test", 65535))
    end)

    it("raises when self is not a vhost", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      for _, m in ipairs{ "connect", "stats", "sessions", "flush", "session_save", "session_load",
                          "save_file", "load_file", "close" } do
        for _, self in ipairs{ 1, "vh", {}, conn } do
          raises("tlscache.vhost", vh[m], self, "127.0.0.1", 443)
        end
        raises(nil, vh[m])
      end
      -- extra arguments are ignored where none are expected
      assert.is_table(vh:stats(1, 2, 3))
      assert.is_table(vh:sessions("x"))
      assert.is_number(tlscache.now("x"))
    end)

    it("a closed vhost raises for everything but close and tostring", function()
      local vh = helpers.vhost{}
      vh:close()
      for _, m in ipairs{ "connect", "stats", "sessions", "flush", "session_save", "session_load",
                          "save_file", "load_file" } do
        raises("closed", vh[m], vh, "127.0.0.1", 443, "blob")
        raises("closed", vh[m], vh)
      end
      assert.is_true(vh:close())
      assert.truthy(tostring(vh):find("(closed)", 1, true))
    end)
  end)

  describe("saving and loading", function()
    local vh
    before_each(function()
      vh = helpers.vhost{}
      helpers.fetch(vh, srv.port)
    end)
    after_each(function() vh:close() end)

    it("session_save: raises for bad tuples and options, notfound when nothing is cached", function()
      raises("zero", vh.session_save, vh, "a\0b", srv.port)
      raises("empty", vh.session_save, vh, "", srv.port)
      raises("port", vh.session_save, vh, "127.0.0.1", 0)
      raises("port", vh.session_save, vh, "127.0.0.1", 65536)
      raises("bogus", vh.session_save, vh, "127.0.0.1", srv.port, { bogus = 1 })
      raises("key", vh.session_save, vh, "127.0.0.1", srv.port, { key = "" })
      raises("key", vh.session_save, vh, "127.0.0.1", srv.port, { key = string.rep("k", 31) })
      raises("key", vh.session_save, vh, "127.0.0.1", srv.port, { key = BIG })
      raises("servername", vh.session_save, vh, "127.0.0.1", srv.port, { servername = "a\0b" })
      fails("notfound", vh.session_save, vh, "127.0.0.1", 1)
      fails("notfound", vh.session_save, vh, "127.0.0.1", srv.port, { servername = "localhost" })
      assert.is_string(vh:session_save("127.0.0.1", srv.port))
    end)

    it("session_load: raises for bad arguments, format for bytes that are not a record", function()
      local blob = assert(vh:session_save("127.0.0.1", srv.port))
      raises("string expected", vh.session_load, vh, "127.0.0.1", srv.port)
      raises("string expected", vh.session_load, vh, "127.0.0.1", srv.port, {})
      raises("zero", vh.session_load, vh, "a\0b", srv.port, blob)
      raises("port", vh.session_load, vh, "127.0.0.1", 0, blob)
      raises("bogus", vh.session_load, vh, "127.0.0.1", srv.port, blob, { bogus = 1 })
      raises("key", vh.session_load, vh, "127.0.0.1", srv.port, blob, { key = "short" })
      for _, junk in ipairs{ "", "\0", BIG, blob:sub(1, 10), blob .. "\0", blob:sub(1, -2),
                             string.rep("\255", #blob) } do
        fails("format", vh.session_load, vh, "127.0.0.1", srv.port, junk)
      end
      fails("mismatch", vh.session_load, vh, "127.0.0.1", srv.port + 1 <= 65535 and srv.port + 1 or 1, blob)
    end)

    it("save_file and load_file: raise for bad paths, io for paths they cannot use", function()
      raises("empty", vh.save_file, vh, "")
      raises("zero", vh.save_file, vh, "/tmp/a\0b")
      raises("bogus", vh.save_file, vh, "/tmp/x", { bogus = 1 })
      raises("empty", vh.load_file, vh, "")
      raises("zero", vh.load_file, vh, "/tmp/a\0b")
      raises("servername", vh.load_file, vh, "/dev/null", { servername = "x" })
      fails("io", vh.save_file, vh, "/nonexistent/dir/file")
      fails("io", vh.save_file, vh, "/tmp/" .. BIG)
      -- a last part of 255 bytes is a valid name: the temporary file's must be too
      local long = "/tmp/" .. string.rep("s", 255)
      local n, err = vh:save_file(long)
      assert.are.equal(vh:stats().size, n, err)
      assert.is_true(helpers.sh("test \"$(stat -c %a " .. helpers.q(long) .. ")\" = 600"))
      assert.is_true(helpers.sh("rm " .. helpers.q(long) .. " && ! ls /tmp/" .. string.rep("s", 248) .. ".* 2>/dev/null"))
      -- the rename would replace a device, a FIFO or a symbolic link itself
      local dir = os.tmpname()
      os.remove(dir)
      assert.is_true(helpers.sh("mkdir " .. helpers.q(dir)))
      finally(function() helpers.sh("rm -rf " .. helpers.q(dir)) end)
      assert.is_true(helpers.sh("mkfifo " .. helpers.q(dir .. "/fifo") .. " && ln -s /dev/null " ..
                                helpers.q(dir .. "/link")))
      fails("io", vh.save_file, vh, dir .. "/fifo")
      fails("io", vh.save_file, vh, dir .. "/link")
      fails("io", vh.save_file, vh, "/dev/null")
      assert.is_true(helpers.sh("test -p " .. helpers.q(dir .. "/fifo") .. " && test -L " ..
                                helpers.q(dir .. "/link") .. " && test -c /dev/null"))
      assert.is_true(helpers.sh("test -z \"$(ls " .. helpers.q(dir) .. " | grep -v '^fifo$' | grep -v '^link$')\""))
      fails("io", vh.load_file, vh, "/nonexistent")
      fails("io", vh.load_file, vh, "/tmp")
      fails("io", vh.load_file, vh, "/dev/null")
      fails("io", vh.load_file, vh, "/" .. BIG)
      still_works(vh, srv)
    end)
  end)

  describe("connections", function()
    local vh, rev
    setup(function() rev = helpers.s_server{ mode = "rev" } end)
    teardown(function() rev.stop() end)
    before_each(function() vh = helpers.vhost{} end)
    after_each(function() vh:close() end)

    local function open()
      return assert(vh:connect("127.0.0.1", rev.port, { timeout = 5 }))
    end

    it("receive raises for bad patterns and prefixes", function()
      local conn = open()
      finally(function() conn:close() end)
      for _, p in ipairs{ "", "*", "*x", "line", "l\0", {}, true, -1, NAN, INF, 2 ^ 31 } do
        raises(nil, conn.receive, conn, p)
      end
      raises(nil, conn.receive, conn, "*l", {})
      raises(nil, conn.receive, conn, 1, true)
      -- and the connection still works
      assert(conn:send("ok\n"))
      assert.are.equal("ko", conn:receive("*l"))
    end)

    it("send raises for bad data and takes any indices as string.sub does", function()
      local conn = open()
      finally(function() conn:close() end)
      for _, d in ipairs{ {}, true, print } do raises(nil, conn.send, conn, d) end
      raises(nil, conn.send, conn)
      raises(nil, conn.send, conn, "x", {})
      assert.are.equal(0, conn:send(""))
      -- an empty range sends nothing and returns i - 1, as LuaSocket does
      assert.are.equal(4, conn:send("abc", 5, 2))
      assert.are.equal(1, conn:send("abc", 2, -10))
      assert.are.equal(3, conn:send("ab\n", -100, 100))    -- clamped
      assert.are.equal("ba", conn:receive("*l"))
      assert.are.equal(2, conn:send("\0\n"))               -- NUL bytes are data
      assert.are.equal("\0", conn:receive("*l"))
      -- a large write goes through (s_server -rev answers lines up to 16 KiB)
      local big = string.rep("z", 10000) .. "\n"
      assert.are.equal(#big, conn:send(big))
      assert.are.equal(10000, #assert(conn:receive("*l")))
    end)

    it("settimeout raises for bad values; huge means block", function()
      local conn = open()
      finally(function() conn:close() end)
      raises("NaN", conn.settimeout, conn, NAN)
      raises(nil, conn.settimeout, conn, "long")
      raises(nil, conn.settimeout, conn, 1, "x")
      for _, t in ipairs{ INF, 1e300, 1e10, 2 ^ 31 } do
        assert.is_true(conn:settimeout(t))
        assert(conn:send("x\n"))
        assert.are.equal("x", conn:receive("*l"))
      end
      -- a blocking receive with a huge timeout waits for data that comes later
      assert.is_true(conn:settimeout(INF))
      assert(conn:send("later\n"))
      assert.are.equal("retal", conn:receive("*l"))
      assert.is_true(conn:settimeout(-5))                  -- negative: block
      assert.is_true(conn:settimeout(0))
      assert.are.same({ nil, "timeout", "" }, { conn:receive(1) })
    end)

    it("methods raise when self is not a connection", function()
      local conn = open()
      finally(function() conn:close() end)
      for _, m in ipairs{ "send", "receive", "settimeout", "close", "reused", "info", "getalpn",
                          "getfd", "dirty" } do
        for _, self in ipairs{ 1, "c", {}, vh } do
          raises("tlscache.connection", conn[m], self, "x")
        end
      end
    end)

    it("a closed connection: I/O returns nil, closed; the rest answers; nothing raises", function()
      local conn = open()
      conn:close()
      assert.are.same({ nil, "closed", 0 }, { conn:send("x") })
      assert.are.same({ nil, "closed", 1 }, { conn:send("abc", 2) })
      assert.are.same({ nil, "closed", "" }, { conn:receive("*l") })
      assert.are.same({ nil, "closed", "pre" }, { conn:receive(5, "pre") })
      assert.are.same({ nil, "closed", "" }, { conn:receive("*a") })
      assert.is_true(conn:settimeout(1))
      assert.is_true(conn:close())
      assert.are.equal(false, conn:reused())
      assert.are.equal(-1, conn:getfd())
      assert.are.equal(false, conn:dirty())
      assert.is_nil(conn:getalpn())
      assert.are.equal(true, conn:info().closed)
      assert.truthy(tostring(conn):find("(closed)", 1, true))
      -- bad arguments still raise on a closed connection
      raises(nil, conn.receive, conn, "*x")
      raises(nil, conn.send, conn, {})
    end)

    it("a connection whose vhost is closed keeps working, then closes", function()
      local vh2 = helpers.vhost{}
      local conn = assert(vh2:connect("127.0.0.1", rev.port, { timeout = 5 }))
      vh2:close()
      raises("closed", vh2.connect, vh2, "127.0.0.1", rev.port)
      assert(conn:send("abc\n"))
      assert.are.equal("cba", conn:receive("*l"))
      assert.is_true(conn:close())
    end)
  end)

  it("the process is alive and a fresh vhost still resumes", function()
    collectgarbage()
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    helpers.fetch(vh, srv.port)
    assert.are.equal(true, helpers.fetch(vh, srv.port).server_reused)
    assert.is_number(socket.gettime())
  end)
end)
