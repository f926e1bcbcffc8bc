-- Runtime failures of vh:connect: nil, "code: detail", code, and nothing is
-- cached from a connection that failed.
local helpers = require "helpers"

local function fails(code, conn, msg, c)
  assert.is_nil(conn)
  assert.are.equal(code, c, tostring(msg))
  assert.is_string(msg)
  assert.are.equal(code .. ": ", msg:sub(1, #code + 2))
  return msg
end

local function nothing_cached(vh)
  local s = vh:stats()
  assert.are.equal(0, s.size)
  assert.are.equal(0, s.stores)
  assert.are.equal(0, s.resumed)
  assert.are.same({}, vh:sessions())
end

describe("connect errors", function()
  teardown(helpers.stop_all)

  describe("verify", function()
    it("fails for a certificate from an untrusted CA and caches nothing", function()
      local srv = helpers.s_server{ cert = "untrusted" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      fails("verify", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      -- again: nothing was cached that could skip the check
      fails("verify", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      fails("verify", vh:connect("localhost", srv.port, { timeout = 5 }))
      nothing_cached(vh)
    end)

    it("fails for a certificate of another host name and caches nothing", function()
      local srv = helpers.s_server{ cert = "other" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      fails("verify", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      fails("verify", vh:connect("localhost", srv.port, { timeout = 5 }))
      fails("verify", vh:connect("127.0.0.1", srv.port, { servername = "localhost", timeout = 5 }))
      nothing_cached(vh)
    end)

    it("fails when the server name asked for is not in the certificate", function()
      local srv = helpers.s_server{}
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      fails("verify", vh:connect("127.0.0.1", srv.port, { servername = "other.test", timeout = 5 }))
      nothing_cached(vh)
      -- the right name on the same server works
      local r = helpers.fetch(vh, srv.port, { servername = "alt.test" })
      assert.are.equal(false, r.server_reused)
      assert.are.equal(1, vh:stats().size)
    end)

    it("a session cached for one name is not offered for another", function()
      local srv = helpers.s_server{ tls = "1.2", no_ticket = true }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      helpers.fetch(vh, srv.port, { servername = "localhost" })
      fails("verify", vh:connect("127.0.0.1", srv.port, { servername = "other.test", timeout = 5 }))
      local s = vh:stats()
      assert.are.equal(0, s.offered)
      assert.are.equal(1, s.size)
    end)

    it("fails for an expired certificate", function()
      local srv = helpers.s_server{ cert = "expired" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local msg = fails("verify", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      assert.truthy(msg:find("expired", 1, true), msg)
      nothing_cached(vh)
    end)

    it("fails through SNI: the server's second certificate does not match", function()
      -- s_server answers SNI "alt.test" with other.pem (DNS:other.test)
      local srv = helpers.s_server{ servername = "alt.test", cert2 = "other" }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      fails("verify", vh:connect("127.0.0.1", srv.port, { servername = "alt.test", timeout = 5 }))
      -- without that SNI name the default certificate is served, and verifies
      local r = helpers.fetch(vh, srv.port, { servername = "localhost" })
      assert.are.equal(false, r.server_reused)
      assert.are.equal(1, vh:stats().size)
    end)

    it("verify = \"none\" connects to an untrusted server, and resumes", function()
      local srv = helpers.s_server{ cert = "untrusted" }
      finally(srv.stop)
      local vh = helpers.vhost{ verify = "none" }
      finally(function() vh:close() end)
      local r1 = helpers.fetch(vh, srv.port)
      assert.are.equal(false, r1.server_reused)
      local r2 = helpers.fetch(vh, srv.port)
      assert.are.equal(true, r2.server_reused, r2.body)
      assert.are.equal(true, r2.reused)
    end)

    it("verify = \"none\" accepts an expired certificate and a wrong name", function()
      local srv = helpers.s_server{ cert = "expired" }
      finally(srv.stop)
      local vh = helpers.vhost{ verify = "none" }
      finally(function() vh:close() end)
      local r = helpers.fetch(vh, srv.port, { servername = "other.test" })
      assert.are.equal(false, r.server_reused)
      assert.is_string(r.body)
    end)
  end)

  it("connect: a port with nothing listening", function()
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    local port = helpers.closed_port()
    fails("connect", vh:connect("127.0.0.1", port, { timeout = 5 }))
    nothing_cached(vh)
    assert.are.equal(0, vh:stats().hits)
  end)

  it("resolve: a name that cannot be resolved", function()
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    -- an empty label: getaddrinfo refuses it locally, no DNS query leaves
    local msg = fails("resolve", vh:connect("nosuch..invalid", 443, { timeout = 5 }))
    assert.truthy(msg:find("nosuch..invalid", 1, true), msg)
    nothing_cached(vh)
  end)

  it("timeout: a listener that never speaks TLS", function()
    local l = helpers.silent_listener()
    finally(l.stop)
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    local t0 = require("socket").gettime()
    fails("timeout", vh:connect("127.0.0.1", l.port, { timeout = 0.5 }))
    -- it did wait (a loose lower bound, no upper bound: no speed assertion)
    assert.is_true(require("socket").gettime() - t0 >= 0.4)
    nothing_cached(vh)
  end)

  describe("tls", function()
    it("fails when the protocol versions do not overlap", function()
      local s12 = helpers.s_server{ tls = "1.2" }
      local s13 = helpers.s_server{ tls = "1.3" }
      finally(function() s12.stop(); s13.stop() end)
      local vh13 = helpers.vhost{ min_protocol = "tlsv1_3" }
      local vh12 = helpers.vhost{ max_protocol = "tlsv1_2" }
      finally(function() vh13:close(); vh12:close() end)
      fails("tls", vh13:connect("127.0.0.1", s12.port, { timeout = 5 }))
      fails("tls", vh12:connect("127.0.0.1", s13.port, { timeout = 5 }))
      nothing_cached(vh13)
      nothing_cached(vh12)
      -- and each works where they overlap
      assert.are.equal("TLSv1.3", helpers.fetch(vh13, s13.port).info.protocol)
      assert.are.equal("TLSv1.2", helpers.fetch(vh12, s12.port).info.protocol)
    end)

    it("fails when the server speaks plain HTTP", function()
      -- nginx answers the ClientHello with "400 Bad Request" in clear text
      local srv = helpers.nginx{ plain = true }
      finally(srv.stop)
      local vh = helpers.vhost{}
      finally(function() vh:close() end)
      local msg = fails("tls", vh:connect("127.0.0.1", srv.port, { timeout = 5 }))
      assert.truthy(msg:find("wrong version number", 1, true), msg)
      nothing_cached(vh)
    end)
  end)
end)
