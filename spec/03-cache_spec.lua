-- How the cache behaves: servers that never resume, single-use tickets,
-- ticket_reuse, MRU eviction, expiry, session_cache = false, isolation of
-- vhosts and entries, flush, resume = false.
local helpers = require "helpers"
local socket = require "socket"

local function fetch_n(vh, port, n, opts)
  local out = {}
  for i = 1, n do out[i] = helpers.fetch(vh, port, opts) end
  return out
end

local function hosts_ports(vh)
  local out = {}
  for i, e in ipairs(vh:sessions()) do out[i] = e.port end
  return out
end

describe("cache", function()
  teardown(helpers.stop_all)

  describe("against servers that never resume", function()
    it("TLS 1.2 -no_cache -no_ticket: misses, no errors", function()
      local srv = helpers.s_server{ tls = "1.2", no_cache = true, no_ticket = true }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      for i, r in ipairs(fetch_n(vh, srv.port, 3)) do
        assert.are.equal(false, r.server_reused, "connection " .. i)
        assert.are.equal(false, r.reused, "connection " .. i)
        assert.are.equal("TLSv1.2", r.info.protocol)
      end
      local s = vh:stats()
      -- the server gives no session ID: nothing to store, nothing to offer
      assert.are.equal(3, s.misses)
      assert.are.equal(0, s.hits)
      assert.are.equal(0, s.stores)
      assert.are.equal(0, s.resumed)
      assert.are.equal(0, s.size)
    end)

    it("TLS 1.3 -num_tickets 0: misses, no errors", function()
      local srv = helpers.s_server{ tls = "1.3", num_tickets = 0 }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      for i, r in ipairs(fetch_n(vh, srv.port, 3)) do
        assert.are.equal(false, r.server_reused, "connection " .. i)
        assert.are.equal(false, r.reused, "connection " .. i)
        assert.are.equal(false, r.info.offered, "connection " .. i)
      end
      local s = vh:stats()
      assert.are.equal(3, s.misses)
      assert.are.equal(0, s.hits)
      assert.are.equal(0, s.stores)
      assert.are.equal(0, s.offered)
      assert.are.equal(0, s.size)
      assert.are.same({}, vh:sessions())
    end)

    it("TLS 1.3 -no_cache -no_ticket: tickets offered, refused, dropped; no errors", function()
      -- s_server still sends (stateful) tickets it cannot look up later
      local srv = helpers.s_server{ tls = "1.3", no_cache = true, no_ticket = true }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local rs = fetch_n(vh, srv.port, 3)
      for i, r in ipairs(rs) do
        assert.are.equal(false, r.server_reused, "connection " .. i)
        assert.are.equal(false, r.reused, "connection " .. i)
      end
      assert.are.equal(false, rs[1].info.offered)
      assert.are.equal(true, rs[2].info.offered)
      local s = vh:stats()
      assert.are.equal(1, s.misses)
      assert.are.equal(2, s.offered)
      assert.are.equal(2, s.rejected)
      assert.are.equal(0, s.resumed)
    end)
  end)

  it("single-use tickets: every reconnect still resumes", function()
    -- -anti_replay with early data on: the server accepts each ticket once
    local srv = helpers.s_server{ tls = "1.3", anti_replay = true }
    finally(srv.stop)
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    local rs = fetch_n(vh, srv.port, 6)
    assert.are.equal(false, rs[1].server_reused)
    for i = 2, 6 do
      assert.are.equal(true, rs[i].server_reused, "connection " .. i .. ": " .. rs[i].body)
      assert.are.equal(true, rs[i].reused, "connection " .. i)
    end
    local s = vh:stats()
    assert.are.equal(5, s.resumed)
    assert.are.equal(0, s.rejected)
    assert.are.equal(1, s.misses)
  end)

  it("the single-use server refuses a ticket offered twice (check of the fixture)", function()
    -- what makes the test above prove that each ticket is offered only once
    local srv = helpers.s_server{ tls = "1.3", anti_replay = true }
    finally(srv.stop)
    local sess = srv.dir .. "/sess.pem"
    local function s_client(extra)
      return helpers.server_reused(helpers.capture(string.format(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet -ign_eof " ..
        "-connect 127.0.0.1:%d -CAfile %s %s 2>/dev/null", srv.port, helpers.certs.ca, extra)))
    end
    assert.are.equal(false, s_client("-sess_out " .. sess))
    assert.are.equal(true, s_client("-sess_in " .. sess))
    assert.are.equal(false, s_client("-sess_in " .. sess))
  end)

  describe("ticket_reuse", function()
    it("false: an offered ticket is spent (tickets do not pile up)", function()
      local srv = helpers.s_server{ tls = "1.3", num_tickets = 1 }
      finally(srv.stop)
      local vh = helpers.vhost{ ticket_reuse = false }
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      assert.are.equal(1, vh:sessions()[1].tickets)
      for i = 2, 4 do
        local r = helpers.fetch(vh, srv.port)
        assert.are.equal(true, r.server_reused, "connection " .. i)
        -- one ticket spent, one new one received
        assert.are.equal(1, vh:sessions()[1].tickets, "connection " .. i)
      end
    end)

    it("true: an offered ticket is kept, up to session_tickets_max", function()
      local srv = helpers.s_server{ tls = "1.3", num_tickets = 1 }
      finally(srv.stop)
      local vh = helpers.vhost{ ticket_reuse = true, session_tickets_max = 3 }
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      assert.are.equal(1, vh:sessions()[1].tickets)
      local r = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r.server_reused)
      assert.are.equal(true, r.reused)
      assert.are.equal(2, vh:sessions()[1].tickets)
      helpers.fetch(vh, srv.port)
      assert.are.equal(3, vh:sessions()[1].tickets)
      r = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r.server_reused)
      assert.are.equal(3, vh:sessions()[1].tickets)
      assert.are.equal(3, vh:stats().resumed)
    end)

    it("session_tickets_max caps the tickets kept from one handshake", function()
      local srv = helpers.s_server{ tls = "1.3", num_tickets = 5 }
      finally(srv.stop)
      local vh = helpers.vhost{ session_tickets_max = 2 }
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      assert.are.equal(2, vh:sessions()[1].tickets)
      assert.are.equal(5, vh:stats().stores)
    end)
  end)

  describe("MRU order and eviction", function()
    local a, b, c
    setup(function()
      a = helpers.s_server{ tls = "1.3" }
      b = helpers.s_server{ tls = "1.2", no_ticket = true }
      c = helpers.s_server{ tls = "1.3", no_ticket = true }
    end)
    teardown(function() a.stop(); b.stop(); c.stop() end)

    it("lists sessions most recently used first and evicts the least recently used", function()
      local vh = helpers.vhost{ session_cache_max = 2 }
      finally(function() vh:close() end)

      helpers.fetch(vh, a.port)
      helpers.fetch(vh, b.port)
      assert.are.same({ b.port, a.port }, hosts_ports(vh))

      -- using A makes it the most recent
      local r = helpers.fetch(vh, a.port)
      assert.are.equal(true, r.server_reused)
      assert.are.same({ a.port, b.port }, hosts_ports(vh))

      -- C evicts B, the least recently used
      helpers.fetch(vh, c.port)
      assert.are.same({ c.port, a.port }, hosts_ports(vh))
      local s = vh:stats()
      assert.are.equal(2, s.size)
      assert.are.equal(2, s.max)
      assert.are.equal(1, s.evictions)

      -- B was evicted: a full handshake (a miss), which evicts A
      local misses = s.misses
      r = helpers.fetch(vh, b.port)
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal(false, r.info.offered)
      assert.are.equal(misses + 1, vh:stats().misses)
      assert.are.same({ b.port, c.port }, hosts_ports(vh))
      assert.are.equal(2, vh:stats().evictions)

      -- C is still there and resumes
      r = helpers.fetch(vh, c.port)
      assert.are.equal(true, r.server_reused, r.body)
      assert.are.equal(true, r.reused)
      assert.are.same({ c.port, b.port }, hosts_ports(vh))
    end)

    it("keeps 10 entries by default", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      -- 12 entries: three servers times four (host, server name) pairs
      for _, srv in ipairs{ a, b, c } do
        helpers.fetch(vh, srv.port)
        helpers.fetch(vh, srv.port, { servername = "localhost" })
        helpers.fetch(vh, srv.port, { servername = "alt.test" })
        helpers.fetch(vh, srv.port, nil, "localhost")
      end
      local s = vh:stats()
      assert.are.equal(10, s.size)
      assert.are.equal(10, s.max)
      assert.are.equal(2, s.evictions)
      local list = vh:sessions()
      assert.are.equal(10, #list)
      -- the two oldest, server A's first two, are the ones gone
      assert.are.equal(c.port, list[1].port)
      assert.are.equal("localhost", list[1].host)
      assert.are.equal(a.port, list[10].port)
      assert.are.equal("alt.test", list[10].servername)
    end)
  end)

  describe("expiry", function()
    it("drops a TLS 1.2 session after session_timeout", function()
      local srv = helpers.s_server{ tls = "1.2", no_ticket = true }
      finally(srv.stop)
      local vh = helpers.vhost{ session_timeout = 1 }
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      local e = vh:sessions()[1]
      assert.is_true(e.expires_in > 0 and e.expires_in <= 1, tostring(e.expires_in))
      -- still valid right away
      local r = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r.server_reused)
      socket.sleep(1.5)
      r = helpers.fetch(vh, srv.port)
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal(false, r.reused)
      assert.are.equal(false, r.info.offered)
      local s = vh:stats()
      assert.are.equal(1, s.expired)
      assert.are.equal(1, s.resumed)
      -- the new session is cached again
      assert.are.equal(1, s.size)
      r = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r.server_reused)
    end)

    it("drops TLS 1.3 tickets after session_timeout", function()
      local srv = helpers.s_server{ tls = "1.3" }
      finally(srv.stop)
      local vh = helpers.vhost{ session_timeout = 1 }
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port)
      assert.are.equal(2, vh:sessions()[1].tickets)
      socket.sleep(1.5)
      local r = helpers.fetch(vh, srv.port)
      assert.are.equal(false, r.server_reused, r.body)
      assert.are.equal(false, r.info.offered)
      assert.are.equal(2, vh:stats().expired)
    end)
  end)

  it("session_cache = false never stores or offers", function()
    local srv = helpers.s_server{ tls = "1.3" }
    finally(srv.stop)
    local vh = helpers.vhost{ session_cache = false }
    finally(function() vh:close() end)
    for i, r in ipairs(fetch_n(vh, srv.port, 3)) do
      assert.are.equal(false, r.server_reused, "connection " .. i)
      assert.are.equal(false, r.reused, "connection " .. i)
      assert.are.equal(false, r.info.offered, "connection " .. i)
    end
    local s = vh:stats()
    assert.are.equal(false, s.enabled)
    assert.are.equal(0, s.size)
    assert.are.equal(0, s.stores)
    assert.are.equal(0, s.hits)
    assert.are.equal(0, s.offered)
    assert.are.same({}, vh:sessions())
  end)

  it("two vhosts never share sessions, even with the same name", function()
    local srv = helpers.s_server{ tls = "1.2", no_ticket = true }
    finally(srv.stop)
    local vh1 = helpers.vhost{ name = "same" }
    local vh2 = helpers.vhost{ name = "same" }
    finally(function() vh1:close(); vh2:close() end)

    assert.are.equal(false, helpers.fetch(vh1, srv.port).server_reused)
    local r = helpers.fetch(vh2, srv.port)
    assert.are.equal(false, r.server_reused, r.body)
    assert.are.equal(false, r.info.offered)
    assert.are.equal(true, helpers.fetch(vh1, srv.port).server_reused)
    assert.are.equal(true, helpers.fetch(vh2, srv.port).server_reused)
    assert.are.equal(1, vh1:stats().resumed)
    assert.are.equal(1, vh2:stats().resumed)
    assert.are.equal(1, vh1:stats().misses)
    assert.are.equal(1, vh2:stats().misses)
  end)

  it("a different server name is a different entry", function()
    local srv = helpers.s_server{ tls = "1.3" }
    finally(srv.stop)
    local vh = helpers.vhost{}
    finally(function() vh:close() end)

    local r = helpers.fetch(vh, srv.port, { servername = "localhost" })
    assert.are.equal(false, r.server_reused)
    r = helpers.fetch(vh, srv.port, { servername = "alt.test" })
    assert.are.equal(false, r.server_reused, r.body)
    assert.are.equal(false, r.info.offered)
    assert.are.equal("alt.test", r.info.servername)

    local list = vh:sessions()
    assert.are.equal(2, #list)
    assert.are.equal("alt.test", list[1].servername)
    assert.are.equal("localhost", list[2].servername)
    assert.are.equal(list[1].port, list[2].port)

    assert.are.equal(true, helpers.fetch(vh, srv.port, { servername = "localhost" }).server_reused)
    assert.are.equal(true, helpers.fetch(vh, srv.port, { servername = "alt.test" }).server_reused)
    assert.are.equal("localhost", vh:sessions()[2].servername)
    -- and no server name at all is a third one
    r = helpers.fetch(vh, srv.port)
    assert.are.equal(false, r.server_reused)
    assert.are.equal(3, vh:stats().size)
  end)

  it("a per-connection ALPN override is a different entry", function()
    local srv = helpers.s_server{ tls = "1.3", alpn = "h2,http/1.1" }
    finally(srv.stop)
    local vh = helpers.vhost{ alpn = "http/1.1" }
    finally(function() vh:close() end)
    local r = helpers.fetch(vh, srv.port)
    assert.are.equal("http/1.1", r.info.alpn)
    r = helpers.fetch(vh, srv.port, { alpn = "h2" })
    assert.are.equal("h2", r.info.alpn)
    assert.are.equal(false, r.info.offered)
    assert.are.equal(2, vh:stats().size)
    r = helpers.fetch(vh, srv.port, { alpn = "h2" })
    assert.are.equal(true, r.server_reused)
    assert.are.equal("h2", r.info.alpn)
    local list = vh:sessions()
    assert.are.same({ "h2" }, list[1].alpn)
    assert.is_nil(list[2].alpn)
  end)

  describe("flush", function()
    local a, b
    setup(function()
      a = helpers.s_server{ tls = "1.3" }
      b = helpers.s_server{ tls = "1.2" }
    end)
    teardown(function() a.stop(); b.stop() end)

    it("flush(host, port) removes that tuple's entries and returns their number", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, a.port, { servername = "localhost" })
      helpers.fetch(vh, a.port, { servername = "alt.test" })
      helpers.fetch(vh, b.port)
      assert.are.equal(3, vh:stats().size)

      assert.are.equal(2, vh:flush("127.0.0.1", a.port))
      assert.are.equal(0, vh:flush("127.0.0.1", a.port))
      assert.are.equal(0, vh:flush("localhost", b.port))   -- another host name
      assert.are.equal(1, vh:stats().size)
      assert.are.same({ b.port }, hosts_ports(vh))

      local r = helpers.fetch(vh, a.port, { servername = "localhost" })
      assert.are.equal(false, r.server_reused)
      assert.are.equal(false, r.info.offered)
      r = helpers.fetch(vh, b.port)
      assert.are.equal(true, r.server_reused)
    end)

    it("flush() removes everything and returns the number of entries", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, a.port)
      helpers.fetch(vh, b.port)
      assert.are.equal(2, vh:flush())
      assert.are.equal(0, vh:flush())
      assert.are.equal(0, vh:stats().size)
      assert.are.same({}, vh:sessions())
      local r = helpers.fetch(vh, a.port)
      assert.are.equal(false, r.server_reused)
      assert.are.equal(false, r.info.offered)
    end)
  end)

  it("resume = false offers nothing but still caches the new session", function()
    local srv = helpers.s_server{ tls = "1.2", no_ticket = true }
    finally(srv.stop)
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    helpers.fetch(vh, srv.port)
    local r = helpers.fetch(vh, srv.port, { resume = false })
    assert.are.equal(false, r.server_reused, r.body)
    assert.are.equal(false, r.reused)
    assert.are.equal(false, r.info.offered)
    assert.are.equal(0, vh:stats().offered)
    r = helpers.fetch(vh, srv.port, { resume = true })
    assert.are.equal(true, r.server_reused)
    assert.are.equal(true, r.reused)
    assert.are.equal(1, vh:stats().size)
  end)
end)
