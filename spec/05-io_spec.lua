-- Connection I/O, LuaSocket style: receive patterns, prefixes, partial
-- results, timeouts, closed connections, info(), getalpn(), getfd(),
-- dirty(), and a peer that closes without close_notify.
local helpers = require "helpers"
local tlscache = require "tlscache"
local socket = require "socket"

-- s_server -rev answers each line reversed; "CLOSE" makes it close
local function rev_conn(vh, srv, opts)
  local conn, msg, code = vh:connect("127.0.0.1", srv.port, opts or { timeout = 5 })
  assert(conn, tostring(msg) .. " " .. tostring(code))
  return conn
end

describe("connection I/O", function()
  teardown(helpers.stop_all)

  local vh
  before_each(function() vh = helpers.vhost{} end)
  after_each(function() vh:close() end)

  describe("with a line-reversing server", function()
    local srv
    setup(function() srv = helpers.s_server{ mode = "rev" } end)
    teardown(function() srv.stop() end)

    it("sends and receives lines (*l, l, and the default)", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.are.equal(6, conn:send("hello\n"))
      assert.are.equal("olleh", conn:receive("*l"))
      assert.are.equal(10, conn:send("abc\ndefgh\n"))
      assert.are.equal("cba", conn:receive("l"))
      assert.are.equal("hgfed", conn:receive())
    end)

    it("receives a number of bytes", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("0123456789\n")
      assert.are.equal("987", conn:receive(3))
      assert.are.equal("6543210\n", conn:receive("8"))   -- a numeric string, as LuaSocket
      conn:send("xy\n")
      assert.are.equal("", conn:receive(0))
      assert.are.equal("yx", conn:receive("*l"))
    end)

    it("puts the prefix in front of the result", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("abc\n")
      assert.are.equal("pre:cba", conn:receive("*l", "pre:"))
      conn:send("abc\n")
      assert.are.equal(">>cb", conn:receive(2, ">>"))
      assert.are.equal("a", conn:receive("*l"))
    end)

    it("sends data:sub(i, j) and returns the last index", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.are.equal(8, conn:send("xxhello\nyy", 3, 8))
      assert.are.equal("olleh", conn:receive("*l"))
      assert.are.equal(3, conn:send("ab\n", -4))      -- i clamped as string.sub does
      assert.are.equal("ba", conn:receive("*l"))
    end)

    it("returns nil, closed, partial when the peer closes mid-pattern", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("abc\nCLOSE\n")
      local data, err, partial = conn:receive(100)
      assert.is_nil(data)
      assert.are.equal("closed", err)
      assert.are.equal("cba\n", partial)
    end)

    it("returns the data before the close for *a", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("abc\nCLOSE\n")
      assert.are.equal("cba\n", conn:receive("*a"))
    end)

    it("returns the partial line when the peer closes during *l", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("abc\nCLOSE\n")
      assert.are.equal("cba", conn:receive("*l"))
      local data, err, partial = conn:receive("*l")
      assert.is_nil(data)
      assert.are.equal("closed", err)
      assert.are.equal("", partial)
    end)

    it("times out with settimeout, keeps the partial data, and stays usable", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.is_true(conn:settimeout(0.2))
      local data, err, partial = conn:receive("*l")
      assert.is_nil(data)
      assert.are.equal("timeout", err)
      assert.are.equal("", partial)
      -- a partial line is returned as partial, and the rest comes later
      conn:send("abcdef\n")
      assert.are.equal("fe", conn:receive(2))
      data, err, partial = conn:receive(10)
      assert.is_nil(data)
      assert.are.equal("timeout", err)
      assert.are.equal("dcba\n", partial)
      conn:send("xyz\n")
      assert.are.equal("zyx", conn:receive("*l"))
    end)

    it("settimeout(0) returns timeout at once, and nil blocks again", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.is_true(conn:settimeout(0))
      local data, err = conn:receive(1)
      assert.is_nil(data)
      assert.are.equal("timeout", err)
      assert.is_true(conn:settimeout(nil))
      conn:send("ok\n")
      assert.are.equal("ko", conn:receive("*l"))
    end)

    it("dirty() tells whether data is buffered in the connection", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.are.equal(false, conn:dirty())
      conn:send("abcdef\n")
      assert.are.equal("fe", conn:receive(2))
      -- the rest of the record is buffered
      assert.are.equal(true, conn:dirty())
      assert.are.equal("dcba", conn:receive("*l"))
      assert.are.equal(false, conn:dirty())
    end)

    it("getfd() is a descriptor while open and -1 once closed", function()
      local conn = rev_conn(vh, srv)
      local fd = conn:getfd()
      assert.is_number(fd)
      assert.is_true(fd >= 0)
      conn:close()
      assert.are.equal(-1, conn:getfd())
    end)

    it("raises for bad receive patterns and bad send data", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.has_error(function() conn:receive("*x") end)
      assert.has_error(function() conn:receive({}) end)
      assert.has_error(function() conn:receive(-1) end)
      assert.has_error(function() conn:receive("-1") end)
      assert.has_error(function() conn:send({}) end)
      assert.has_error(function() conn:send() end)
      assert.has_error(function() conn:settimeout("long") end)
      -- and the connection is still fine
      conn:send("ok\n")
      assert.are.equal("ko", conn:receive("*l"))
    end)

    it("raises when a method is called on something that is not a connection", function()
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      assert.has_error(function() conn.send({}, "x") end)
      assert.has_error(function() conn.receive(vh, "*l") end)
      assert.has_error(function() conn.info(5) end)
      assert.has_error(function() conn.close("conn") end)
    end)
  end)

  describe("after close", function()
    local srv
    setup(function() srv = helpers.s_server{ mode = "rev" } end)
    teardown(function() srv.stop() end)

    it("I/O returns nil, closed; close is idempotent", function()
      local conn = rev_conn(vh, srv)
      assert.is_true(conn:close())
      assert.is_true(conn:close())
      local n, err = conn:send("x\n")
      assert.is_nil(n)
      assert.are.equal("closed", err)
      local data
      data, err = conn:receive("*l")
      assert.is_nil(data)
      assert.are.equal("closed", err)
      data, err = conn:receive("*a")
      assert.is_nil(data)
      assert.are.equal("closed", err)
      assert.are.equal(false, conn:dirty())
      assert.truthy(tostring(conn):find("closed", 1, true), tostring(conn))
    end)

    it("info() still tells reused, offered and closed", function()
      local conn = rev_conn(vh, srv)
      conn:close()
      local info = conn:info()
      assert.are.equal(true, info.closed)
      assert.are.equal(false, info.reused)
      assert.are.equal(false, info.offered)
      assert.are.equal(false, conn:reused())
    end)

    it("a connection outlives its vhost", function()
      local vh2 = helpers.vhost{}
      local conn = rev_conn(vh2, srv)
      vh2:close()
      collectgarbage()
      conn:send("still\n")
      assert.are.equal("llits", conn:receive("*l"))
      assert.is_true(conn:close())
    end)

    it("a connection dropped without close is collected (and closed)", function()
      -- s_server serves one connection at a time: the next connect only
      -- works once the collector has closed the previous connection
      for _ = 1, 5 do
        local conn = rev_conn(vh, srv)
        conn:send("x\n")
        assert.are.equal("x", conn:receive("*l"))
        conn = nil
        collectgarbage()
        collectgarbage()
      end
      local conn = rev_conn(vh, srv)
      conn:send("y\n")
      assert.are.equal("y", conn:receive("*l"))
      conn:close()
    end)
  end)

  describe("info() and ALPN", function()
    local srv
    setup(function() srv = helpers.s_server{ tls = "1.3", alpn = "h2,http/1.1" } end)
    teardown(function() srv.stop() end)

    it("info() has the documented fields", function()
      local conn = assert(vh:connect("localhost", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      local info = conn:info()
      assert.are.equal("TLSv1.3", info.protocol)
      assert.is_string(info.cipher)
      assert.truthy(info.cipher:match("^TLS_"), info.cipher)
      assert.is_nil(info.alpn)
      assert.are.equal(false, info.reused)
      assert.are.equal(false, info.offered)
      assert.are.equal("localhost", info.servername)
      assert.are.equal("localhost", info.host)
      assert.are.equal(srv.port, info.port)
      assert.are.equal(true, info.verified)
      assert.are.equal(false, info.closed)
    end)

    it("getalpn() is nil without ALPN", function()
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      assert.is_nil(conn:getalpn())
      assert.is_nil(conn:info().servername)
      assert.are.equal("127.0.0.1", conn:info().host)
    end)

    it("getalpn() tells the protocol chosen from the vhost's list", function()
      local avh = helpers.vhost{ alpn = { "http/1.1", "h2" } }
      finally(function() avh:close() end)
      local conn = assert(avh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      -- s_server picks by its own order: h2 first
      assert.are.equal("h2", conn:getalpn())
      assert.are.equal("h2", conn:info().alpn)
    end)

    it("getalpn() with a per-connection override", function()
      local avh = helpers.vhost{ alpn = "h2" }
      finally(function() avh:close() end)
      local conn = assert(avh:connect("127.0.0.1", srv.port, { timeout = 5, alpn = "http/1.1" }))
      finally(function() conn:close() end)
      assert.are.equal("http/1.1", conn:getalpn())
    end)

    it("getalpn() survives resumption", function()
      local avh = helpers.vhost{ alpn = "http/1.1" }
      finally(function() avh:close() end)
      local r1 = helpers.fetch(avh, srv.port)
      local r2 = helpers.fetch(avh, srv.port)
      assert.are.equal(true, r2.server_reused)
      assert.are.equal("http/1.1", r1.info.alpn)
      assert.are.equal("http/1.1", r2.info.alpn)
    end)
  end)

  describe("a peer that closes", function()
    it("send after the peer closed returns nil, closed (no SIGPIPE)", function()
      -- this server closes its socket once its data is sent, and exits
      local srv = helpers.s_server{ mode = "stdin", data = "bye\n" }
      finally(srv.stop)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      srv.release()
      assert.are.equal("bye\n", conn:receive("*a"))
      local chunk = string.rep("x", 16384)
      local n, err, last
      for _ = 1, 50 do
        n, err, last = conn:send(chunk)
        if not n then break end
        socket.sleep(0.01)
      end
      assert.is_nil(n)
      assert.are.equal("closed", err)
      assert.is_number(last)
      assert.is_true(last >= 0 and last <= #chunk)
      -- the process is alive and the connection keeps answering the same
      n, err = conn:send("more")
      assert.is_nil(n)
      assert.are.equal("closed", err)
    end)

    it("send to a server killed mid-connection returns nil, closed (no SIGPIPE)", function()
      local srv = helpers.s_server{ mode = "rev" }
      local conn = rev_conn(vh, srv)
      finally(function() conn:close() end)
      conn:send("abc\n")
      assert.are.equal("cba", conn:receive("*l"))
      srv.stop()
      local n, err
      for _ = 1, 50 do
        n, err = conn:send(string.rep("y", 16384))
        if not n then break end
      end
      assert.is_nil(n)
      assert.are.equal("closed", err)
      local data
      data, err = conn:receive("*l")
      assert.is_nil(data)
      assert.are.equal("closed", err)
    end)

    it("*a returns the data when the server closes without close_notify", function()
      local srv = helpers.s_server{ mode = "stdin", data = "hello\nworld\n" }
      finally(srv.stop)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      srv.release()
      assert.are.equal("hello", conn:receive(5))
      assert.are.equal("\nworld\n", conn:receive("*a"))
      -- and then the connection is at its end
      local data, err = conn:receive(1)
      assert.is_nil(data)
      assert.are.equal("closed", err)
    end)

    it("a number pattern ends with nil, closed, partial at a close without close_notify", function()
      local srv = helpers.s_server{ mode = "stdin", data = "abc" }
      finally(srv.stop)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      finally(function() conn:close() end)
      srv.release()
      local data, err, partial = conn:receive(10)
      assert.is_nil(data)
      assert.are.equal("closed", err)
      assert.are.equal("abc", partial)
    end)

    it("a session from a connection closed without close_notify is still cached", function()
      local srv = helpers.s_server{ mode = "stdin", data = "bye\n", tls = "1.3" }
      finally(srv.stop)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      srv.release()
      assert.are.equal("bye\n", conn:receive("*a"))
      conn:close()
      -- the tickets arrived before the data; the unexpected EOF spoils nothing
      assert.are.equal(1, vh:stats().size)
      assert.is_true(vh:sessions()[1].tickets >= 1)
    end)

    it("receives a large response in many records", function()
      local data = {}
      for i = 1, 20000 do data[i] = string.format("%09d\n", i) end
      data = table.concat(data)        -- 200 000 bytes
      local srv = helpers.s_server{ mode = "stdin", data = data }
      finally(srv.stop)
      local conn = assert(vh:connect("127.0.0.1", srv.port, { timeout = 10 }))
      finally(function() conn:close() end)
      srv.release()
      local got = assert(conn:receive(#data))
      assert.are.equal(#data, #got)
      assert.is_true(got == data)
      assert.are.equal(false, conn:dirty())
    end)
  end)

  describe("a peer that floods or reads late", function()
    -- a TLS 1.3 tcserver with these options and a connection to it
    local function tc_connect(opts)
      opts.tls = "1.3"
      local srv = helpers.tcserver(opts)
      finally(srv.stop)
      local conn = assert(vh:connect("localhost", srv.port, { timeout = 10 }))
      finally(function() conn:close() end)
      return srv, conn
    end

    it("receive returns by its timeout while the peer keeps sending", function()
      -- the server sends 'x' (no newline) as fast as it is read for 6 s.
      -- Reading a line byte by byte is slower than the server writes, so
      -- data is always there: a receive that checked its timeout only
      -- while waiting would run until the flood stops. This bounds the
      -- call by its timeout (0.2 s, with a margin for slow sanitizer
      -- builds); it measures no speed.
      local _, conn = tc_connect{ flood = 6 }
      conn:settimeout(0.2)
      local t0 = tlscache.now()
      local data, err, partial = conn:receive("*l")
      local took = tlscache.now() - t0
      assert.is_nil(data)
      assert.are.equal("timeout", err)
      assert.is_true(#partial > 0)
      assert.is_nil(partial:find("[^x]"))
      assert.is_true(took < 3, ("receive took %.1f s"):format(took))
      -- and the connection goes on
      assert.are.equal("xxxx", conn:receive(4))
    end)

    it("send after a timed-out send keeps the byte stream whole", function()
      -- the server reads nothing for 3 s (long enough for a client under
      -- valgrind to fill the socket buffers): the first send times out with
      -- part of its data sealed in a TLS record OpenSSL still holds. That
      -- part counts as sent, and goes out before the next send's data.
      local srv, conn = tc_connect{ sink = 3000 }
      conn:settimeout(0.3)
      local A = string.rep("A", 8 * 1024 * 1024)
      local n, err, last = conn:send(A)
      assert.is_nil(n)
      assert.are.equal("timeout", err)
      assert.is_true(last > 0 and last < #A, tostring(last))
      conn:settimeout(10)
      local B = string.rep("B", 1024 * 1024)
      assert.are.equal(#B, conn:send(B))
      -- LuaSocket's way to go on: the rest of A, from last + 1
      assert.are.equal(#A, conn:send(A, last + 1))
      conn:close()
      local bytes, runs
      for _ = 1, 100 do
        bytes, runs = srv.sink()
        if bytes then break end
        socket.sleep(0.1)
      end
      assert.are.equal(("A*%d,B*%d,A*%d"):format(last, #B, #A - last), runs)
      assert.are.equal(#A + #B, bytes)
    end)

    it("receive first sends what a timed-out send committed", function()
      -- the server reads nothing for 3 s, then answers "got N" once no data
      -- has come for 200 ms. The send times out with a chunk committed
      -- (counted in last, held for OpenSSL): the server can only have all
      -- `last` bytes if receive sends that chunk before it waits.
      local _, conn = tc_connect{ sink = 3000, answer = true }
      conn:settimeout(0.3)
      local n, err, last = conn:send(string.rep("A", 8 * 1024 * 1024))
      assert.is_nil(n)
      assert.are.equal("timeout", err)
      conn:settimeout(10)
      assert.are.equal("got " .. last, conn:receive("*l"))
    end)

    it("a receive that runs out of memory returns nil, nomem and closes the connection", function()
      -- a peer that sends without end fills receive("*a")'s buffer until an
      -- allocation fails: that is the peer's doing, not a programmer error
      if (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) then
        pending("ASan reserves more address space than the limit allows") return
      end
      local srv = helpers.tcserver{ tls = "1.3", flood = 8 }
      finally(srv.stop)
      local ok, out, errout = helpers.run_lua(([[
        local tlscache = require "tlscache"
        local vh = assert(tlscache.vhost{ cafile = %q })
        local c = assert(vh:connect("localhost", %d, { timeout = 10 }))
        c:settimeout(6)
        local d, err, partial = c:receive("*a")
        print(d, err, partial, c:info().closed, select(2, c:receive(1)))
      ]]):format(helpers.certs.ca, srv.port), "ulimit -v 600000;")
      assert.is_true(ok, errout)
      assert.are.equal("nil\tnomem: not enough memory for the data received (connection closed)" ..
                       "\t\ttrue\tclosed\t\n", out)
    end)
  end)
end)
