-- Resumption against openssl s_server -www: the server's own page says
-- "Reused," (or "New,"), and conn:reused() must agree, for every way a TLS
-- server can resume: TLS 1.3 tickets, TLS 1.3 stateful tickets, TLS 1.2
-- session IDs and TLS 1.2 tickets.
local helpers = require "helpers"

local N = 4   -- connections per server: 1 full handshake, N - 1 resumptions

local kinds = {
  { name = "TLS 1.3 tickets", opts = { tls = "1.3" }, protocol = "TLSv1.3",
    -- the server sends 2 tickets after a full handshake, 1 after a resumption
    stores = 2 + (N - 1), tickets = 2 },
  { name = "TLS 1.3 stateful (-no_ticket)", opts = { tls = "1.3", no_ticket = true },
    protocol = "TLSv1.3", stores = 2 + (N - 1), tickets = 2 },
  { name = "TLS 1.2 session IDs (-no_ticket)", opts = { tls = "1.2", no_ticket = true },
    protocol = "TLSv1.2", stores = 1, tickets = 1 },
  { name = "TLS 1.2 tickets", opts = { tls = "1.2" }, protocol = "TLSv1.2",
    stores = 1, tickets = 1 },
}

describe("resumption", function()
  teardown(helpers.stop_all)

  for _, k in ipairs(kinds) do
    describe(k.name, function()
      local srv
      setup(function() srv = helpers.s_server(k.opts) end)
      teardown(function() srv.stop() end)

      it("first connection is new, every reconnect is resumed", function()
        local vh = helpers.vhost{}
        finally(function() vh:close() end)

        local r = helpers.fetch(vh, srv.port)
        assert.are.equal(false, r.server_reused, r.body)
        assert.are.equal(false, r.reused)
        assert.are.equal(false, r.info.offered)
        assert.are.equal(k.protocol, r.server_protocol)
        assert.are.equal(k.protocol, r.info.protocol)

        for i = 2, N do
          r = helpers.fetch(vh, srv.port)
          assert.are.equal(true, r.server_reused, "connection " .. i .. ": " .. r.body)
          assert.are.equal(true, r.reused, "connection " .. i)
          assert.are.equal(true, r.info.offered, "connection " .. i)
          assert.are.equal(true, r.info.reused, "connection " .. i)
          assert.are.equal(k.protocol, r.server_protocol)
          assert.are.equal(k.protocol, r.info.protocol)
        end

        local s = vh:stats()
        assert.are.equal(1, s.size)
        assert.are.equal(1, s.misses)
        assert.are.equal(N - 1, s.hits)
        assert.are.equal(N - 1, s.offered)
        assert.are.equal(N - 1, s.resumed)
        assert.are.equal(0, s.rejected)
        assert.are.equal(0, s.evictions)
        assert.are.equal(0, s.expired)
        assert.are.equal(k.stores, s.stores)
      end)

      it("lists the entry in sessions()", function()
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        helpers.fetch(vh, srv.port)
        helpers.fetch(vh, srv.port)

        local list = vh:sessions()
        assert.are.equal(1, #list)
        local e = list[1]
        assert.are.equal("127.0.0.1", e.host)
        assert.are.equal(srv.port, e.port)
        assert.is_nil(e.servername)     -- an IP literal sends no SNI
        assert.are.equal(k.protocol, e.protocol)
        assert.are.equal(k.tickets, e.tickets)
        assert.is_number(e.age)
        assert.is_true(e.age >= 0 and e.age < 30)
        assert.is_number(e.expires_in)
        -- s_server's session lifetime is 7200 s; never above the caps
        assert.is_true(e.expires_in > 7000 and e.expires_in <= 7200, tostring(e.expires_in))
      end)

      it("resumes by host name, with SNI", function()
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        local r1 = helpers.fetch(vh, srv.port, nil, "localhost")
        local r2 = helpers.fetch(vh, srv.port, nil, "localhost")
        assert.are.equal(false, r1.server_reused)
        assert.are.equal(true, r2.server_reused, r2.body)
        assert.are.equal(true, r2.reused)
        assert.are.equal("localhost", r2.info.servername)
        local e = vh:sessions()[1]
        assert.are.equal("localhost", e.host)
        assert.are.equal("localhost", e.servername)
      end)
    end)
  end

  describe("with a client certificate", function()
    local srv
    setup(function() srv = helpers.s_server{ verify_client = true } end)
    teardown(function() srv.stop() end)

    local function check(vh)
      local r1 = helpers.fetch(vh, srv.port)
      assert.are.equal(false, r1.server_reused, r1.body)
      local r2 = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r2.server_reused, r2.body)
      assert.are.equal(true, r2.reused)
      assert.are.equal(1, vh:stats().resumed)
    end

    it("authenticates with certificate and key, and resumes", function()
      local vh = assert(helpers.vhost{ certificate = helpers.certs.client,
                                       key = helpers.certs.client_key })
      finally(function() vh:close() end)
      check(vh)
    end)

    it("authenticates with an encrypted key and its password, and resumes", function()
      local vh = assert(helpers.vhost{ certificate = helpers.certs.client,
                                       key = helpers.certs.client_enc_key,
                                       password = helpers.certs.client_password })
      finally(function() vh:close() end)
      check(vh)
    end)

    it("fails without a client certificate (TLS 1.2: in the handshake)", function()
      local srv12 = helpers.s_server{ verify_client = true, tls = "1.2" }
      finally(srv12.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn, msg, code = vh:connect("127.0.0.1", srv12.port, { timeout = 5 })
      assert.is_nil(conn)
      assert.are.equal("tls", code)
      assert.are.equal("tls: ", msg:sub(1, 5))
      assert.are.equal(0, vh:stats().size)
    end)

    it("fails without a client certificate (TLS 1.3: at the first read)", function()
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local conn, msg, code = vh:connect("127.0.0.1", srv.port, { timeout = 5 })
      if conn then
        -- TLS 1.3 clients finish before the server checks their certificate
        local body, err = helpers.get(conn)
        conn:close()
        assert.is_nil(body)
        assert.is_string(err)
        assert.are_not.equal("timeout", err)
      else
        assert.are.equal("tls", code, msg)
      end
      assert.are.equal(0, vh:stats().resumed)
    end)
  end)
end)
