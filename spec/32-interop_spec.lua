-- Hardening (issue 5): interoperability with a TLS server that is not
-- OpenSSL. GnuTLS's gnutls-serv binds every address and has no option to
-- choose one, so it runs in a private network namespace whose only address
-- is its own loopback, and the Lua client runs there too (a child process
-- under `ip netns exec`). The server's own log is the verdict: GnuTLS
-- prints "*** This is a resumed session" for each resumption.
-- (nginx: spec/06-nginx_spec.lua, and the nginx cases of 30- and 31-.)
local helpers = require "helpers"

local N = 4

-- the child: N connections to 127.0.0.1:port, one line per connection:
-- "conn offered reused protocol", then the vhost's stats
local function client_code(port, opts)
  return string.format([=[
local tlscache = require "tlscache"
local vh = assert(tlscache.vhost{ cafile = %q })
for i = 1, %d do
  local conn, msg, code = vh:connect("127.0.0.1", %d, { timeout = 10, servername = %s })
  if not conn then print("error " .. tostring(msg)) os.exit(1) end
  conn:send("GET / HTTP/1.0\r\n\r\n")
  local page = conn:receive("*a")
  print(string.format("conn %%s %%s %%s %%d", tostring(conn:info().offered),
    tostring(conn:reused()), conn:info().protocol, page and #page or -1))
  conn:close()
end
local s = vh:stats()
print(string.format("stats %%d %%d %%d %%d %%d", s.offered, s.resumed, s.rejected, s.stores, s.size))
vh:close()
]=], helpers.certs.ca, N, port, opts.servername and string.format("%q", opts.servername) or "nil")
end

local function parse(out)
  local conns, stats = {}, nil
  for line in out:gmatch("[^\n]+") do
    local o, r, p, len = line:match("^conn (%S+) (%S+) (%S+) (%-?%d+)")
    if o then
      conns[#conns + 1] = { offered = o == "true", reused = r == "true", protocol = p, len = tonumber(len) }
    end
    local a, b, c, d, e = line:match("^stats (%d+) (%d+) (%d+) (%d+) (%d+)")
    if a then
      stats = { offered = tonumber(a), resumed = tonumber(b), rejected = tonumber(c),
                stores = tonumber(d), size = tonumber(e) }
    end
  end
  return conns, stats
end

describe("interop: GnuTLS gnutls-serv", function()
  teardown(helpers.stop_all)

  local ns, why
  setup(function()
    if not helpers.sh("command -v gnutls-serv >/dev/null 2>&1") then
      why = "gnutls-serv not installed (apt-get install gnutls-bin)"
      return
    end
    ns, why = helpers.netns()
  end)
  teardown(function() if ns then ns.delete() end end)

  local kinds = {
    { "TLS 1.3 tickets", { tls = "1.3" }, "TLSv1.3", true },
    { "TLS 1.2 tickets", { tls = "1.2", nodb = true }, "TLSv1.2", true },
    { "TLS 1.2 session IDs", { tls = "1.2", noticket = true }, "TLSv1.2", true },
    { "TLS 1.3 with SNI", { tls = "1.3" }, "TLSv1.3", true, "localhost" },
    { "TLS 1.2 without tickets and session IDs", { tls = "1.2", noticket = true, nodb = true }, "TLSv1.2", false },
  }
  for _, k in ipairs(kinds) do
    local name, sopts, protocol, resumes, sni = k[1], k[2], k[3], k[4], k[5]
    it(name .. (resumes and ": every reconnect resumes" or ": never resumes, no errors"), function()
      if not ns then pending(why) return end
      local srv = helpers.gnutls_serv(ns, sopts)
      finally(srv.stop)
      local ok, out, err = helpers.run_lua(client_code(srv.port, { servername = sni }), ns.exec)
      assert(ok, "client failed:\n" .. out .. err)
      local conns, stats = parse(out)
      assert.are.equal(N, #conns, out)
      -- GnuTLS writes its log as it goes: wait for the last connection
      local seen
      for _ = 1, 50 do
        seen = srv.conns()
        if #seen >= N then break end
        require("socket").sleep(0.05)
      end
      assert.are.equal(N, #seen, srv.logtext())
      for i = 1, N do
        local want = resumes and i > 1
        assert.are.equal(protocol, conns[i].protocol, "connection " .. i)
        assert.is_true(conns[i].len > 0, "connection " .. i .. ": no page")
        assert.are.equal(want, seen[i].resumed, "connection " .. i .. ": server's verdict")
        assert.are.equal(want, conns[i].reused, "connection " .. i .. ": ours")
      end
      if resumes then
        assert.are.equal(N - 1, stats.resumed)
        assert.are.equal(0, stats.rejected)
        assert.are.equal(1, stats.size)
      else
        assert.are.equal(0, stats.resumed)
        assert.are.equal(stats.offered, stats.rejected)
      end
    end)
  end
end)
