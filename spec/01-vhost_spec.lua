-- tlscache.vhost: options, every raise path, the nil, message, code paths,
-- and the life cycle of the object.
local helpers = require "helpers"
local tlscache = require "tlscache"
local certs = helpers.certs

-- assert that f(...) raises an error whose message contains every pattern
-- (plain text)
local function raises(texts, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  assert.is_string(err)
  if type(texts) == "string" then texts = { texts } end
  for _, t in ipairs(texts) do
    assert(err:find(t, 1, true), string.format("error %q does not mention %q", err, t))
  end
  return err
end

-- assert the runtime failure triple: nil, "code: ...", code
local function fails(code, r1, msg, c)
  assert.is_nil(r1)
  assert.are.equal(code, c)
  assert.is_string(msg)
  assert.are.equal(code .. ": ", msg:sub(1, #code + 2))
  return msg
end

describe("tlscache module", function()
  it("has a version string", function()
    assert.is_string(tlscache._VERSION)
    assert.truthy(tlscache._VERSION:match("^tlscache %d+%.%d+%.%d+$"))
  end)

  it("exposes vhost as a function", function()
    assert.is_function(tlscache.vhost)
  end)
end)

describe("tlscache.vhost options", function()
  it("takes no options at all", function()
    local vh = tlscache.vhost()
    assert.is_userdata(vh)
    assert.are.equal(10, vh:stats().max)
    vh:close()
  end)

  it("has the documented defaults", function()
    local vh = helpers.vhost{}
    local s = vh:stats()
    assert.are.equal(0, s.size)
    assert.are.equal(10, s.max)
    for _, k in ipairs{ "hits", "misses", "stores", "evictions", "expired",
                        "offered", "resumed", "rejected" } do
      assert.are.equal(0, s[k], k)
    end
    assert.are.same({}, vh:sessions())
    assert.are.equal(0, vh:flush())
    vh:close()
  end)

  it("takes session_cache_max, and 0 means 10", function()
    local vh = helpers.vhost{ session_cache_max = 3 }
    assert.are.equal(3, vh:stats().max)
    vh:close()
    vh = helpers.vhost{ session_cache_max = 0 }
    assert.are.equal(10, vh:stats().max)
    vh:close()
  end)

  it("accepts every documented option with a valid value", function()
    local vh, msg, code = tlscache.vhost{
      name = "all", verify = "peer", cafile = certs.ca, capath = certs.dir,
      certificate = certs.client, key = certs.client_key,
      min_protocol = "tlsv1_2", max_protocol = "tlsv1_3",
      ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
      ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
      alpn = { "h2", "http/1.1" }, session_cache = true, session_cache_max = 5,
      session_timeout = 60, ticket_reuse = true, session_tickets_max = 2,
    }
    assert.is_userdata(vh, tostring(msg) .. " " .. tostring(code))
    assert.are.equal(5, vh:stats().max)
    vh:close()
    vh = assert(tlscache.vhost{ verify = "none", alpn = "h2", min_protocol = "tlsv1_3",
                                max_protocol = "tlsv1_3", session_cache = false })
    vh:close()
  end)

  describe("raises for", function()
    it("a non-table argument", function()
      raises("table expected", tlscache.vhost, 5)
      raises("table expected", tlscache.vhost, "name")
    end)

    it("an unknown option key", function()
      raises("bogus", tlscache.vhost, { bogus = 1 })
      raises("sessioncache", tlscache.vhost, { sessioncache = false })
    end)

    it("a non-string option key", function()
      raises("option", tlscache.vhost, { [1] = 2 })
    end)

    it("options of the wrong type", function()
      raises("name", tlscache.vhost, { name = {} })
      raises("verify", tlscache.vhost, { verify = true })
      raises("cafile", tlscache.vhost, { cafile = {} })
      raises("capath", tlscache.vhost, { capath = false })
      raises("certificate", tlscache.vhost, { certificate = {} })
      raises("min_protocol", tlscache.vhost, { min_protocol = 1.5 })
      raises("session_cache", tlscache.vhost, { session_cache = "yes" })
      raises("session_cache_max", tlscache.vhost, { session_cache_max = "ten" })
      raises("session_timeout", tlscache.vhost, { session_timeout = {} })
      raises("ticket_reuse", tlscache.vhost, { ticket_reuse = 1 })
      raises("session_tickets_max", tlscache.vhost, { session_tickets_max = "four" })
      raises("alpn", tlscache.vhost, { alpn = 5 })
      raises("alpn", tlscache.vhost, { alpn = { {} } })
    end)

    it("bad protocol names", function()
      raises({ "min_protocol", "sslv3" }, tlscache.vhost, { min_protocol = "sslv3" })
      raises({ "max_protocol", "tlsv1_1" }, tlscache.vhost, { max_protocol = "tlsv1_1" })
      raises("verify", tlscache.vhost, { verify = "maybe" })
    end)

    it("min_protocol above max_protocol", function()
      raises("max_protocol", tlscache.vhost, { min_protocol = "tlsv1_3", max_protocol = "tlsv1_2" })
    end)

    it("numbers out of range", function()
      raises("session_cache_max", tlscache.vhost, { session_cache_max = -1 })
      raises("session_cache_max", tlscache.vhost, { session_cache_max = 1.5 })
      raises("session_timeout", tlscache.vhost, { session_timeout = -1 })
      raises("session_tickets_max", tlscache.vhost, { session_tickets_max = 0 })
      raises("session_tickets_max", tlscache.vhost, { session_tickets_max = 65 })
    end)

    it("bad names and ALPN lists", function()
      raises("name", tlscache.vhost, { name = "" })
      raises("name", tlscache.vhost, { name = string.rep("x", 256) })
      raises("alpn", tlscache.vhost, { alpn = "" })
      raises("alpn", tlscache.vhost, { alpn = {} })
      raises("alpn", tlscache.vhost, { alpn = string.rep("a", 256) })
    end)

    it("a key without a certificate", function()
      raises("key", tlscache.vhost, { key = certs.client_key })
    end)
  end)

  describe("returns nil, message, code for", function()
    it("a cafile that does not exist", function()
      local msg = fails("io", tlscache.vhost{ cafile = "/nonexistent/ca.pem" })
      assert.truthy(msg:find("/nonexistent/ca.pem", 1, true))
    end)

    it("a cafile that is not PEM", function()
      local path = os.tmpname()
      helpers.writefile(path, "this is not a certificate\n")
      finally(function() os.remove(path) end)
      fails("tls", tlscache.vhost{ cafile = path })
    end)

    it("a cafile that is a directory", function()
      local msg = fails("io", tlscache.vhost{ cafile = certs.dir })
      assert.matches("not a regular file", msg, 1, true)
    end)

    it("a capath that does not exist", function()
      fails("io", tlscache.vhost{ capath = "/nonexistent/dir" })
    end)

    it("a certificate that does not exist", function()
      local msg = fails("io", tlscache.vhost{ certificate = "/nonexistent/client.pem" })
      assert.truthy(msg:find("/nonexistent/client.pem", 1, true))
    end)

    it("a key that does not match the certificate", function()
      fails("tls", tlscache.vhost{ certificate = certs.client, key = certs.client2_key })
    end)

    it("a certificate file without its key, and no 'key' option", function()
      local msg = fails("tls", tlscache.vhost{ certificate = certs.client })
      assert.equal("tls: " .. certs.client .. ": no private key in the certificate file (set 'key')", msg)
    end)

    it("an encrypted key with a wrong password", function()
      local msg = fails("tls", tlscache.vhost{ certificate = certs.client, key = certs.client_enc_key,
                                               password = "wrong" })
      assert.matches("cannot decrypt the key (wrong password?)", msg, 1, true)
    end)

    it("an encrypted key without a password (and never prompts)", function()
      local msg = fails("tls", tlscache.vhost{ certificate = certs.client, key = certs.client_enc_key })
      assert.matches("the key is encrypted (set 'password')", msg, 1, true)
    end)

    it("cipher lists that select nothing", function()
      fails("tls", tlscache.vhost{ ciphers = "NOSUCHCIPHER" })
      fails("tls", tlscache.vhost{ ciphersuites = "TLS_NOSUCH_SUITE" })
    end)
  end)

  it("loads an encrypted key with the right password", function()
    local vh, msg = tlscache.vhost{ certificate = certs.client, key = certs.client_enc_key,
                                    password = certs.client_password }
    assert.is_userdata(vh, msg)
    vh:close()
  end)
end)

describe("vh:connect arguments", function()
  local vh
  before_each(function() vh = helpers.vhost{} end)
  after_each(function() vh:close() end)

  it("raises for a missing or non-string host", function()
    raises("string expected", vh.connect, vh, nil, 443)
    raises("string expected", vh.connect, vh, {}, 443)
  end)

  it("raises for a host with an embedded zero byte", function()
    raises("zero", vh.connect, vh, "local\0host", 443)
  end)

  it("raises for ports outside 1..65535", function()
    raises("port", vh.connect, vh, "127.0.0.1", 0)
    raises("port", vh.connect, vh, "127.0.0.1", 65536)
    raises("port", vh.connect, vh, "127.0.0.1", -1)
    raises("port", vh.connect, vh, "127.0.0.1", 443.5)
    raises("number expected", vh.connect, vh, "127.0.0.1", "https")
    raises("number expected", vh.connect, vh, "127.0.0.1")
  end)

  it("raises for bad connect options", function()
    raises("table expected", vh.connect, vh, "127.0.0.1", 443, 5)
    raises("bogus", vh.connect, vh, "127.0.0.1", 443, { bogus = 1 })
    raises("timeout", vh.connect, vh, "127.0.0.1", 443, { timeout = "x" })
    raises("timeout", vh.connect, vh, "127.0.0.1", 443, { timeout = -1 })
    raises("resume", vh.connect, vh, "127.0.0.1", 443, { resume = "no" })
    raises("servername", vh.connect, vh, "127.0.0.1", 443, { servername = {} })
    raises("alpn", vh.connect, vh, "127.0.0.1", 443, { alpn = {} })
  end)

  it("raises for bad flush arguments", function()
    raises("number expected", vh.flush, vh, "127.0.0.1")
    raises("string expected", vh.flush, vh, {}, 443)
  end)

  it("raises when a method is called on something that is not a vhost", function()
    raises("tlscache.vhost", vh.stats, {})
    raises("tlscache.vhost", vh.connect, 5, "127.0.0.1", 443)
  end)
end)

describe("vhost life cycle", function()
  it("shows its name in tostring, and (closed) once closed", function()
    local vh = helpers.vhost{ name = "web" }
    local s = tostring(vh)
    assert.truthy(s:find("tlscache.vhost", 1, true), s)
    assert.truthy(s:find("web", 1, true), s)
    assert.is_nil(s:find("(closed)", 1, true), s)
    assert.is_true(vh:close())
    s = tostring(vh)
    assert.truthy(s:find("tlscache.vhost", 1, true), s)
    assert.truthy(s:find("(closed)", 1, true), s)
  end)

  it("close is idempotent", function()
    local vh = helpers.vhost{}
    assert.is_true(vh:close())
    assert.is_true(vh:close())
    assert.is_true(vh:close())
  end)

  it("raises on any use once closed", function()
    local vh = helpers.vhost{}
    vh:close()
    raises("closed", vh.connect, vh, "127.0.0.1", 443)
    raises("closed", vh.stats, vh)
    raises("closed", vh.sessions, vh)
    raises("closed", vh.flush, vh)
    raises("closed", vh.flush, vh, "127.0.0.1", 443)
  end)

  it("is collected without being closed", function()
    for _ = 1, 20 do
      local vh = helpers.vhost{}
      assert.are.equal(0, vh:stats().size)
    end
    collectgarbage()
    collectgarbage()
    -- a closed then collected vhost: __gc after close is harmless too
    local vh = helpers.vhost{}
    vh:close()
    vh = nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(vh)
  end)

  it("has __gc and __close metamethods", function()
    local vh = helpers.vhost{}
    local mt = getmetatable(vh)
    if type(mt) == "table" then
      assert.is_function(mt.__gc)
      assert.is_function(mt.__close)
      assert.is_function(mt.__tostring)
      -- __close as Lua 5.4 calls it: (value, error object)
      mt.__close(vh, nil)
      assert.truthy(tostring(vh):find("(closed)", 1, true))
    end
    vh:close()
  end)
end)
