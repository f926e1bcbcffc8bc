-- Resumption against nginx, judged by nginx's own $ssl_session_reused
-- ("r" when resumed, "." when not): shared session cache, tickets on and
-- off, TLS 1.2 and TLS 1.3.
local helpers = require "helpers"

local N = 4

describe("nginx", function()
  teardown(helpers.stop_all)

  for _, tls in ipairs{ "1.2", "1.3" } do
    for _, tickets in ipairs{ true, false } do
      local what = string.format("TLS %s, shared cache, tickets %s", tls, tickets and "on" or "off")
      it(what .. ": resumes every reconnect", function()
        local srv = helpers.nginx{ tls = tls, tickets = tickets }
        finally(srv.stop)
        local vh = helpers.vhost{}
        finally(function() vh:close() end)
        local protocol = "TLSv" .. tls

        local r = helpers.fetch(vh, srv.port, nil, "localhost")
        assert.are.equal(false, r.server_reused, r.body)
        assert.are.equal(false, r.reused)
        assert.are.equal(protocol, r.server_protocol)
        assert.are.equal(protocol, r.info.protocol)
        assert.truthy(r.body:find("^HTTP/1%.%d 200"), r.body)

        for i = 2, N do
          r = helpers.fetch(vh, srv.port, nil, "localhost")
          assert.are.equal(true, r.server_reused, "connection " .. i .. ": " .. r.body)
          assert.are.equal(true, r.reused, "connection " .. i)
          assert.are.equal(protocol, r.server_protocol)
        end

        local s = vh:stats()
        assert.are.equal(1, s.size)
        assert.are.equal(1, s.misses)
        assert.are.equal(N - 1, s.hits)
        assert.are.equal(N - 1, s.resumed)
        assert.are.equal(0, s.rejected)
        local e = vh:sessions()[1]
        assert.are.equal("localhost", e.host)
        assert.are.equal("localhost", e.servername)
        assert.are.equal(protocol, e.protocol)
      end)
    end
  end

  it("TLS 1.2 without a session cache and without tickets: never resumes, no errors", function()
    local srv = helpers.nginx{ tls = "1.2", tickets = false, session_cache = false }
    finally(srv.stop)
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    for i = 1, 3 do
      local r = helpers.fetch(vh, srv.port, nil, "localhost")
      assert.are.equal(false, r.server_reused, "connection " .. i .. ": " .. r.body)
      assert.are.equal(false, r.reused, "connection " .. i)
    end
    local s = vh:stats()
    assert.are.equal(0, s.resumed)
    -- whatever was offered was refused and dropped, never resumed
    assert.are.equal(s.offered, s.rejected)
  end)

  it("a session refused after the server restarts is dropped, then resumes again", function()
    -- tickets off: sessions live in nginx's shared cache, which a restart loses
    local srv = helpers.nginx{ tls = "1.2", tickets = false }
    local vh = helpers.vhost{}
    finally(function() vh:close() end)
    helpers.fetch(vh, srv.port)
    assert.are.equal(true, helpers.fetch(vh, srv.port).server_reused)
    local port = srv.port
    srv.stop()

    -- a new nginx; the cache entry is named by host and port, so the new
    -- server must listen on the same port
    local srv2 = helpers.nginx{ tls = "1.2", tickets = false, port = port }
    finally(srv2.stop)
    local r = helpers.fetch(vh, srv2.port)
    assert.are.equal(false, r.server_reused, r.body)
    assert.are.equal(true, r.info.offered)
    assert.are.equal(false, r.reused)
    assert.are.equal(1, vh:stats().rejected)
    r = helpers.fetch(vh, srv2.port)
    assert.are.equal(true, r.server_reused, r.body)
    assert.are.equal(true, r.reused)
  end)
end)
