-- Hardening (issue 5): the failure modes that broke other client session
-- caches, one test per kind, against real servers on 127.0.0.1. Each test
-- names the protection it checks; docs/hardening.md lists which mutation of
-- the module each one catches.
--   * TLS 1.3 ticket timing: tickets read during I/O, only during close, by
--     the collector, after the vhost is gone (curl CVE-2021-22901)
--   * isolation: server name, client certificate, verification settings
--     (curl CVE-2016-5419, CVE-2021-22890, CVE-2024-0853)
--   * server behaviour: restarts, accept-then-fail, no tickets, tickets it
--     cannot honour, single-use tickets, protocol and ALPN changes, ticket
--     renewal, connections that end without close_notify
local helpers = require "helpers"
local socket = require "socket"
local certs = helpers.certs

local function fails(code, conn, msg, c)
  assert.is_nil(conn, "expected a failure " .. code)
  assert.are.equal(code, c, tostring(msg))
  assert.are.equal(code .. ": ", msg:sub(1, #code + 2))
  return msg
end

local function connect(vh, port, opts, host)
  local o = { timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local conn, msg, code = vh:connect(host or "127.0.0.1", port, o)
  assert(conn, tostring(msg) .. " (" .. tostring(code) .. ")")
  return conn
end

-- send GET and read the answer line by line up to the server's verdict
-- ("New, TLSv1.3" / "Reused, TLSv1.3"), leaving anything after it unread
local function get_verdict(conn)
  assert(conn:send("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"))
  while true do
    local line, err = conn:receive("*l")
    assert(line, "no verdict line: " .. tostring(err))
    if line:match("^New, TLSv") then return false end
    if line:match("^Reused, TLSv") then return true end
  end
end

local function nothing_stored(vh)
  local s = vh:stats()
  assert.are.equal(0, s.stores)
  assert.are.equal(0, s.size)
  assert.are.same({}, vh:sessions())
end

describe("hardening", function()
  teardown(helpers.stop_all)

  -------------------------------------------------------------------------
  describe("TLS 1.3 ticket timing", function()
    -- tcserver sends its one ticket 400 ms after the response, never during
    -- the handshake: what a client sees depends only on when it reads
    local late
    setup(function()
      late = helpers.tcserver{ tls = "1.3", num_tickets = 0, late = 1, late_delay = 400 }
    end)
    teardown(function() late.stop() end)

    it("a connection that writes and closes at once stores nothing and does not wait", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn = connect(vh, late.port)
      local req = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
      assert.are.equal(#req, conn:send(req))
      local t0 = socket.gettime()
      assert.is_true(conn:close())
      -- close reads what already arrived, without waiting for the ticket
      -- that comes 400 ms later
      assert.is_true(socket.gettime() - t0 < 0.35, "close waited")
      assert.are.equal(0, conn:info().sessions_captured)
      nothing_stored(vh)
      -- nothing half-stored: the next connection is a clean full handshake
      local r = helpers.fetch(vh, late.port)
      assert.are.equal(false, r.info.offered)
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal(1, vh:stats().stores)
    end)

    it("a connection that reads gets its tickets during the read", function()
      local srv = helpers.s_server{ tls = "1.3" }     -- 2 tickets right after the handshake
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn = connect(vh, srv.port)
      assert.are.equal(false, get_verdict(conn))
      -- the tickets came before the page: reading it delivered them
      assert.are.equal(2, conn:info().sessions_captured)
      assert.are.equal(2, vh:stats().stores)
      assert.are.equal(2, vh:sessions()[1].tickets)
      conn:close()
      assert.are.equal(2, conn:info().sessions_captured)
      -- and a late ticket is read by receive("*a"), which reads to the end
      conn = connect(vh, late.port)
      assert(conn:send("GET / HTTP/1.0\r\n\r\n"))
      local page = assert(conn:receive("*a"))
      assert.are.equal(false, helpers.server_reused(page))
      assert.are.equal(1, conn:info().sessions_captured)
      conn:close()
      local r = helpers.fetch(vh, late.port)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(true, r.reused)
    end)

    it("a ticket that arrives only during close is cached by close", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn = connect(vh, late.port)
      assert.are.equal(false, get_verdict(conn))
      socket.sleep(0.8)              -- the ticket is in the socket now, unread
      assert.are.equal(0, conn:info().sessions_captured)
      assert.are.equal(0, vh:stats().stores)
      conn:close()
      assert.are.equal(1, conn:info().sessions_captured)
      assert.are.equal(1, vh:stats().stores)
      assert.are.equal("TLSv1.3", vh:sessions()[1].protocol)
      local r = helpers.fetch(vh, late.port)
      assert.are.equal(true, r.info.offered)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(true, r.reused)
    end)

    it("a connection collected without close delivers its ticket", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      do
        local conn = connect(vh, late.port)
        assert.are.equal(false, get_verdict(conn))
        socket.sleep(0.8)
        assert.are.equal(0, vh:stats().stores)
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(1, vh:stats().stores)
      local r = helpers.fetch(vh, late.port)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(true, r.reused)
    end)

    it("a ticket arriving after its vhost was collected: dropped, stored nowhere", function()
      local conn
      do
        local vh1 = helpers.vhost{}
        conn = connect(vh1, late.port)
        assert.are.equal(false, get_verdict(conn))
      end
      collectgarbage()                -- vh1 is gone; conn keeps the store alive
      collectgarbage()
      -- a new vhost made right away takes memory the old one freed: a
      -- store that was freed under the connection would now be this one's
      local vh2 = helpers.vhost{}
      finally(function() vh2:close() end)
      socket.sleep(0.8)              -- the late ticket is waiting in the socket
      assert.is_true(conn:close())   -- ... and read here
      assert.are.equal(0, conn:info().sessions_captured)
      nothing_stored(vh2)
      local r = helpers.fetch(vh2, late.port)
      assert.are.equal(false, r.info.offered)
      assert.are.equal(false, r.server_reused, r.body)
    end)
  end)

  -------------------------------------------------------------------------
  describe("isolation", function()
    it("a different server name on the same address and port is never offered the other's session", function()
      -- SNI other.test selects other.pem (DNS:other.test); anything else server.pem
      local srv = helpers.s_server{ servername = "other.test", cert2 = "other" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port, { servername = "localhost" })
      local r = helpers.fetch(vh, srv.port, { servername = "localhost" })
      assert.are.equal(true, r.server_reused, r.body)

      r = helpers.fetch(vh, srv.port, { servername = "other.test" })
      assert.are.equal(false, r.info.offered)
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal(false, r.reused)
      assert.are.equal("other.test", r.info.servername)
      r = helpers.fetch(vh, srv.port, { servername = "other.test" })
      assert.are.equal(true, r.server_reused, r.body)

      local s = vh:stats()
      assert.are.equal(2, s.offered)
      assert.are.equal(2, s.resumed)
      assert.are.equal(0, s.rejected)
      local names = {}
      for i, e in ipairs(vh:sessions()) do names[i] = e.servername end
      assert.are.same({ "other.test", "localhost" }, names)
    end)

    it("an IP literal given as servername is verified as an address, never sent as SNI", function()
      -- RFC 6066 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName"
      local srv = helpers.tcserver{ tls = "1.3" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local c = connect(vh, srv.port, { servername = "127.0.0.1" }, "localhost")
      assert.are.equal("127.0.0.1", c:info().servername)
      helpers.get(c)
      c:close()
      c = connect(vh, srv.port, { servername = "localhost" }, "localhost")
      helpers.get(c)
      c:close()
      local conns = srv.conns()
      assert.are.equal(2, #conns)
      assert.are.equal("-", conns[1].sni)
      assert.are.equal("localhost", conns[2].sni)
      -- the address is checked against the certificate's IP entries
      local other = helpers.s_server{ cert = "other" }  -- DNS:other.test only
      finally(other.stop)
      local conn, msg, code = vh:connect("localhost", other.port, { servername = "127.0.0.1", timeout = 10 })
      fails("verify", conn, msg, code)
    end)

    it("a client certificate's session is never offered by a vhost without it", function()
      -- the server asks for a client certificate but does not require one,
      -- and its page tells whether the connection presented one
      local srv = helpers.s_server{ args = { "-verify", "1", "-CAfile", certs.clientca } }
      finally(srv.stop)
      local with = helpers.vhost{ certificate = certs.client, key = certs.client_key }
      local without = helpers.vhost{}
      local other = helpers.vhost{ certificate = certs.client2, key = certs.client2_key }
      finally(function() with:close(); without:close(); other:close() end)
      local function client_cert(body)
        if body:find("no client certificate available", 1, true) then return "none" end
        return body:match("Client certificate.-Subject: CN ?= ?([^\n]+)")
      end

      local r = helpers.fetch(with, srv.port)
      assert.are.equal("tlscache client", client_cert(r.body))
      r = helpers.fetch(with, srv.port)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal("tlscache client", client_cert(r.body))

      for _, vh in ipairs{ without, other } do
        r = helpers.fetch(vh, srv.port)
        assert.are.equal(false, r.info.offered)
        assert.are.equal(false, r.server_reused, r.body)
        assert.are.equal(vh == without and "none" or "tlscache client 2", client_cert(r.body))
        -- and resumes its own session, still without the other identity
        r = helpers.fetch(vh, srv.port)
        assert.are.equal(true, r.server_reused, r.body)
        assert.are.equal(vh == without and "none" or "tlscache client 2", client_cert(r.body))
        assert.are.equal(1, vh:stats().offered)
      end
      assert.are.equal(1, with:stats().offered)
    end)

    it("a session made with verify = \"none\" is never offered by a verifying vhost", function()
      local srv = helpers.s_server{ cert = "untrusted" }
      finally(srv.stop)
      local lax = helpers.vhost{ verify = "none" }
      local strict = helpers.vhost{}
      finally(function() lax:close(); strict:close() end)
      helpers.fetch(lax, srv.port)
      assert.are.equal(true, helpers.fetch(lax, srv.port).server_reused)
      -- the strict vhost verifies, fails, and offered nothing
      fails("verify", strict:connect("127.0.0.1", srv.port, { timeout = 5 }))
      fails("verify", strict:connect("127.0.0.1", srv.port, { timeout = 5 }))
      local s = strict:stats()
      assert.are.equal(0, s.offered)
      assert.are.equal(0, s.hits)
      nothing_stored(strict)
      -- the lax vhost still has and resumes its own session
      assert.are.equal(true, helpers.fetch(lax, srv.port).server_reused)
    end)

    for _, tls in ipairs{ "1.2", "1.3" } do
      it("TLS " .. tls .. ": nothing from a connection that failed verification or the name check is stored", function()
        local bad = helpers.s_server{ tls = tls, cert = "untrusted" }
        local wrong = helpers.s_server{ tls = tls, cert = "other" }
        finally(function() bad.stop(); wrong.stop() end)
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        for _ = 1, 2 do
          fails("verify", vh:connect("127.0.0.1", bad.port, { timeout = 5 }))
          fails("verify", vh:connect("localhost", bad.port, { timeout = 5 }))
          fails("verify", vh:connect("127.0.0.1", wrong.port, { servername = "localhost", timeout = 5 }))
          fails("verify", vh:connect("127.0.0.1", wrong.port, { timeout = 5 }))
        end
        nothing_stored(vh)
        assert.are.equal(0, vh:stats().offered)
        -- the same servers and a lax vhost: sessions are handed out
        local lax = helpers.vhost{ verify = "none" }
        finally(function() lax:close() end)
        helpers.fetch(lax, bad.port)
        assert.is_true(lax:stats().stores > 0)
      end)
    end

    it("a planted session for another name never resumes (load check and resumption check)", function()
      -- Someone who can write an unkeyed session blob plants a session that
      -- the server other.pem (DNS:other.test) made, filed under the name
      -- bank0.test. Loading must refuse it; were it loaded, the check
      -- after the resumption must refuse the connection.
      local srv = helpers.s_server{ tls = "1.2", no_ticket = true, cert = "other" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port, { servername = "other.test" })
      local blob = assert(vh:session_save("127.0.0.1", srv.port, { servername = "other.test" }))
      -- record.h: an unkeyed record ends with the SHA-256 of the rest;
      -- "other.test" and "bank0.test" have the same length
      local body = blob:sub(1, -33)
      local n
      body, n = body:gsub("other%.test", "bank0.test", 1)
      assert.are.equal(1, n)
      local tmp = os.tmpname()
      finally(function() os.remove(tmp) end)
      helpers.writefile(tmp, body)
      local md = helpers.capture("openssl dgst -sha256 -binary " .. tmp)
      assert.are.equal(32, #md)
      local forged = body .. md

      local victim = helpers.vhost{}
      finally(function() victim:close() end)
      local ok, msg, code = victim:session_load("127.0.0.1", srv.port, forged,
                                                { servername = "bank0.test" })
      if ok then
        -- it got in: the check after the resumption is the last line (the
        -- server did resume it, so stats count it resumed)
        fails("verify", victim:connect("127.0.0.1", srv.port,
                                       { servername = "bank0.test", timeout = 5 }))
        assert.are.equal(0, victim:stats().stores)
        assert.are.same({}, victim:sessions())        -- dropped with its entry
      else
        assert.are.equal("mismatch", code, msg)
        assert.are.equal(0, victim:stats().offered)
      end
      -- the untouched blob loads (the forgery, not the blob, was refused)
      assert.is_true(victim:session_load("127.0.0.1", srv.port, blob, { servername = "other.test" }))
    end)
  end)

  -------------------------------------------------------------------------
  describe("server behaviour", function()
    for _, k in ipairs{
      { "TLS 1.3 tickets", { tls = "1.3" }, "TLSv1.3" },
      { "TLS 1.2 tickets", { tls = "1.2" }, "TLSv1.2" },
      { "TLS 1.2 session IDs", { tls = "1.2", no_ticket = true }, "TLSv1.2" },
    } do
      it(k[1] .. ": a restarted server (new keys) refuses once, then resumes", function()
        local srv = helpers.s_server(k[2])
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        helpers.fetch(vh, srv.port)
        assert.are.equal(true, helpers.fetch(vh, srv.port).server_reused)
        local port = srv.port
        srv.stop()
        local o = { port = port }
        for key, v in pairs(k[2]) do o[key] = v end
        srv = helpers.s_server(o)
        finally(srv.stop)

        local r = helpers.fetch(vh, port)
        assert.are.equal(true, r.info.offered)
        assert.are.equal(false, r.server_reused, r.body)
        assert.are.equal(false, r.reused)
        assert.are.equal(k[3], r.info.protocol)
        local s = vh:stats()
        assert.are.equal(1, s.rejected)
        assert.are.equal(1, s.resumed)
        r = helpers.fetch(vh, port)
        assert.are.equal(true, r.server_reused, r.body)
        assert.are.equal(true, r.reused)
        assert.are.equal(2, vh:stats().resumed)
        assert.are.equal(1, vh:stats().rejected)
      end)
    end

    it("a refused session is offered once, never again, when the restarted server issues none", function()
      local srv = helpers.s_server{ tls = "1.2" }
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      local port = srv.port
      srv.stop()
      srv = helpers.s_server{ tls = "1.2", no_ticket = true, no_cache = true, port = port }
      finally(srv.stop)
      local r = helpers.fetch(vh, port)
      assert.are.equal(true, r.info.offered)
      assert.are.equal(false, r.server_reused, r.body)
      for i = 1, 3 do
        r = helpers.fetch(vh, port)
        assert.are.equal(false, r.info.offered, "connection " .. i)
        assert.are.equal(false, r.server_reused)
      end
      local s = vh:stats()
      assert.are.equal(1, s.offered)
      assert.are.equal(1, s.rejected)
      assert.are.equal(0, s.size)
    end)

    for _, k in ipairs{
      { "TLS 1.3", { tls = "1.3" } },
      { "TLS 1.2 tickets", { tls = "1.2" } },
      { "TLS 1.2 session IDs", { tls = "1.2", no_ticket = true } },
    } do
      it(k[1] .. ": a server that accepts the session and then breaks the handshake is tried once", function()
        local o = { fail_resumed = true }
        for key, v in pairs(k[2]) do o[key] = v end
        local srv = helpers.tcserver(o)
        finally(srv.stop)
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        helpers.fetch(vh, srv.port)
        assert.are.equal(1, vh:stats().size)
        -- the server resumes, then corrupts its next record
        local msg = fails("tls", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
        assert.truthy(msg:find("bad record mac", 1, true) or msg:find("cipher operation failed", 1, true), msg)
        -- the whole entry is gone: the next connection offers nothing
        assert.are.equal(0, vh:stats().size)
        assert.are.same({}, vh:sessions())
        local r = helpers.fetch(vh, srv.port)
        assert.are.equal(false, r.info.offered)
        assert.are.equal(false, r.server_reused, r.body)
        local c = srv.conns()
        assert.are.equal(3, #c)
        assert.are.same({ false, true, false }, { c[1].reused, c[2].reused, c[3].reused })
        assert.are.same({ false, true, false }, { c[1].corrupted, c[2].corrupted, c[3].corrupted })
        local s = vh:stats()
        assert.are.equal(1, s.offered)
        assert.are.equal(0, s.resumed)
        assert.are.equal(0, s.rejected)   -- accepted, not refused
      end)
    end

    describe("servers that issue no usable tickets: every connection works", function()
      for _, k in ipairs{
        { "TLS 1.3 -num_tickets 0", { tls = "1.3", num_tickets = 0 }, 0 },
        { "TLS 1.2 -no_ticket -no_cache", { tls = "1.2", no_ticket = true, no_cache = true }, 0 },
        -- stateful tickets with no cache to find them in: handed out, refused
        { "TLS 1.3 -no_ticket -no_cache", { tls = "1.3", no_ticket = true, no_cache = true }, 3 },
      } do
        it(k[1], function()
          local srv = helpers.s_server(k[2])
          finally(srv.stop)
          local vh = helpers.vhost{}
          finally(function() vh:close() end)
          for i = 1, 4 do
            local r = helpers.fetch(vh, srv.port)
            assert.are.equal(false, r.server_reused, "connection " .. i)
            assert.are.equal(false, r.reused, "connection " .. i)
            assert.are.equal(k[3] > 0 and i > 1, r.info.offered, "connection " .. i)
          end
          local s = vh:stats()
          assert.are.equal(k[3], s.offered)
          assert.are.equal(k[3], s.rejected)
          assert.are.equal(0, s.resumed)
        end)
      end
    end)

    describe("single-use tickets (OpenSSL's anti-replay accepts each ticket once)", function()
      local srv
      setup(function() srv = helpers.tcserver{ tls = "1.3", anti_replay = true } end)
      teardown(function() srv.stop() end)

      -- two connections opened back to back, before either reads the new
      -- tickets it was sent: each must offer a ticket of its own
      local function two_at_once(vh)
        local req = "GET / HTTP/1.0\r\n\r\n"
        local a = connect(vh, srv.port)
        assert(a:send(req))          -- the server answers a and is free for b
        local b = connect(vh, srv.port)
        assert(b:send(req))
        local ra = helpers.server_reused(assert(a:receive("*a")))
        local rb = helpers.server_reused(assert(b:receive("*a")))
        local oa, ob = a:info().offered, b:info().offered
        a:close()
        b:close()
        return ra, rb, oa, ob
      end

      it("each ticket is offered once: connections in a row and at once all resume", function()
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        helpers.fetch(vh, srv.port)                 -- 2 tickets
        local ra, rb, oa, ob = two_at_once(vh)
        assert.are.same({ true, true, true, true }, { oa, ob, ra, rb })
        for i = 1, 3 do
          assert.are.equal(true, helpers.fetch(vh, srv.port).server_reused, "connection " .. i)
        end
        local s = vh:stats()
        assert.are.equal(5, s.resumed)
        assert.are.equal(0, s.rejected)
      end)

      it("ticket_reuse = true offers a ticket twice: the server refuses, the connection still works", function()
        local vh = helpers.vhost{ ticket_reuse = true }
        finally(function() vh:close() end)
        helpers.fetch(vh, srv.port)
        local ra, rb, oa, ob = two_at_once(vh)
        assert.are.same({ true, true }, { oa, ob })
        assert.are.equal(true, ra)
        assert.are.equal(false, rb)                 -- the same ticket, refused
        local s = vh:stats()
        assert.are.equal(1, s.resumed)
        assert.are.equal(1, s.rejected)
      end)
    end)

    it("TLS versions changed between connections: refused, replaced, never mixed", function()
      local srv = helpers.s_server{ tls = "1.3" }
      local port = srv.port
      local vh = helpers.vhost{}
      local vh13 = helpers.vhost{ min_protocol = "tlsv1_3" }
      finally(function() vh:close(); vh13:close() end)
      helpers.fetch(vh, port)
      helpers.fetch(vh13, port)
      assert.are.equal(2, vh:sessions()[1].tickets)

      -- the server now speaks TLS 1.2 only
      srv.stop()
      srv = helpers.s_server{ tls = "1.2", port = port }
      local r = helpers.fetch(vh, port)
      assert.are.equal(true, r.info.offered)         -- a TLS 1.3 ticket
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal("TLSv1.2", r.info.protocol)
      local e = vh:sessions()[1]
      assert.are.equal("TLSv1.2", e.protocol)        -- the other TLS 1.3 ticket is gone
      assert.are.equal(1, e.tickets)
      assert.are.equal(true, helpers.fetch(vh, port).server_reused)
      -- a vhost that insists on TLS 1.3 fails, and drops its entry
      fails("tls", vh13:connect("127.0.0.1", port, { timeout = 5 }))
      assert.are.equal(0, vh13:stats().size)

      -- and back to TLS 1.3 only
      srv.stop()
      srv = helpers.s_server{ tls = "1.3", port = port }
      finally(srv.stop)
      r = helpers.fetch(vh, port)
      assert.are.equal(true, r.info.offered)         -- the TLS 1.2 session
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal("TLSv1.3", r.info.protocol)
      e = vh:sessions()[1]
      assert.are.equal("TLSv1.3", e.protocol)
      assert.are.equal(2, e.tickets)
      assert.are.equal(true, helpers.fetch(vh, port).server_reused)
      r = helpers.fetch(vh13, port)
      assert.are.equal(false, r.info.offered)
      assert.are.equal(false, r.server_reused)
      local s = vh:stats()
      assert.are.equal(2, s.rejected)
      assert.are.equal(2, s.resumed)
    end)

    it("ALPN changed by the server: a resumed connection reports the new protocol", function()
      -- fixed ticket keys: the ticket survives the restart, the ALPN does not
      local key = "alpn-test-" .. tostring(os.time())
      local srv = helpers.tcserver{ tls = "1.3", ticket_key = key, alpn = "http/1.1" }
      local port = srv.port
      local vh = helpers.vhost{ alpn = { "h2", "http/1.1" } }
      finally(function() vh:close() end)
      local r = helpers.fetch(vh, port)
      assert.are.equal("http/1.1", r.info.alpn)
      r = helpers.fetch(vh, port)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal("http/1.1", r.info.alpn)

      for _, alpn in ipairs{ "h2", false } do
        srv.stop()
        srv = helpers.tcserver{ tls = "1.3", ticket_key = key, alpn = alpn or nil, port = port }
        local conn = connect(vh, port)
        assert.are.equal(true, conn:reused())
        assert.are.equal(alpn or nil, conn:getalpn())
        assert.are.equal(alpn or nil, conn:info().alpn)
        local body = assert(helpers.get(conn))
        conn:close()
        assert.are.equal(true, helpers.server_reused(body), body)
        assert.truthy(body:find("alpn=" .. (alpn or "") .. "\n", 1, true), body)
      end
      srv.stop()
      assert.are.equal(0, vh:stats().rejected)
    end)

    it("TLS 1.2 ticket renewed at a key rotation (nginx): the new ticket is used", function()
      -- nginx encrypts tickets with its first key, accepts the others and
      -- then sends a new ticket (RFC 5077 3.3) in the abbreviated handshake
      local dir = os.tmpname()
      os.remove(dir)
      assert(helpers.sh("mkdir -p " .. dir))
      finally(function() helpers.sh("rm -rf " .. dir) end)
      local function key(name)
        local p = dir .. "/" .. name
        assert(helpers.sh("head -c 80 /dev/urandom > " .. p))
        return p
      end
      local a, b, c = key("a"), key("b"), key("c")
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local port
      local function run(keys)
        local srv = helpers.nginx{ tls = "1.2", session_cache = false, port = port,
          extra = "ssl_session_ticket_key " .. table.concat(keys, "; ssl_session_ticket_key ") .. ";" }
        port = srv.port
        local r = helpers.fetch(vh, port, nil, "localhost")
        srv.stop()
        return r
      end
      assert.are.equal(false, run{ a }.server_reused)
      -- nginx's session timeout (300 s) is the first ticket's lifetime hint
      assert.is_true(vh:sessions()[1].expires_in <= 300)
      local r = run{ b, a }                   -- resumes under the old key, renews
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(2, vh:stats().stores)  -- the renewed ticket was kept
      -- OpenSSL sends a renewed TLS 1.2 ticket with lifetime hint 0, which
      -- RFC 5077 calls unspecified: the library's lifetime applies
      assert.is_true(vh:sessions()[1].expires_in > 7000, tostring(vh:sessions()[1].expires_in))
      r = run{ c, b }                         -- the first key is retired
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(true, r.reused)
      assert.are.equal(0, vh:stats().rejected)
    end)

    for _, k in ipairs{
      { "TLS 1.3", { tls = "1.3" } },
      { "TLS 1.2 tickets", { tls = "1.2" } },
      { "TLS 1.2 session IDs", { tls = "1.2", no_ticket = true } },
    } do
      it(k[1] .. ": connections that end without close_notify do not spoil the cached session", function()
        -- OpenSSL marks the session of a connection freed without
        -- close_notify not resumable; the cache must hold its own copies
        local o = { no_close_notify = true }
        for key, v in pairs(k[2]) do o[key] = v end
        local srv = helpers.tcserver(o)
        finally(srv.stop)
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        for i = 1, 4 do
          local conn = connect(vh, srv.port)
          local body, err = helpers.get(conn)
          assert.truthy(body, err)             -- "*a" ends at the bare FIN
          local data, err = conn:receive(1)
          assert.is_nil(data)
          assert.are.equal("closed", err)
          conn:close()
          assert.are.equal(i > 1, helpers.server_reused(body), "connection " .. i .. ": " .. body)
        end
        local s = vh:stats()
        assert.are.equal(3, s.resumed)
        assert.are.equal(0, s.rejected)
      end)
    end
  end)
end)
