-- Saving and loading sessions (issue 3): vh:session_save, vh:session_load,
-- vh:save_file, vh:load_file. Real servers on 127.0.0.1; the loading side
-- of the cross-process tests is a new process of the same interpreter, and
-- the server's own page decides whether its first connection resumed.
local helpers = require "helpers"
local tlscache = require "tlscache"

local unpack = table.unpack or unpack
local loadstring = loadstring or load

local q, readfile = helpers.q, helpers.readfile

-- unlike helpers.capture, keeps LD_PRELOAD and the sanitizer options: the
-- child interpreters run here must load the same (sanitized) build
local function capture(cmd)
  local f = assert(io.popen(cmd, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local function writefile(path, data, mode)
  helpers.writefile(path, data)
  if mode then assert(helpers.sh("chmod " .. mode .. " " .. q(path))) end
end

local function filemode(path) return (capture("stat -c %a " .. q(path)):gsub("%s+$", "")) end

-- the interpreter running this spec: arg[-1] when busted kept it, else
-- the executable of our own process (the shell's parent)
local function interpreter()
  local env = os.getenv("TLSCACHE_LUA")
  if env and env ~= "" then return env end
  local exe = capture("readlink /proc/$PPID/exe"):gsub("%s+$", "")
  if exe ~= "" and not exe:find("/sh$") and not exe:find("/dash$") then return exe end
  local i = -1
  while arg and arg[i - 1] do i = i - 1 end
  return assert(arg and arg[i], "cannot tell which interpreter runs the spec")
end

local LUA = interpreter()
local TMP = capture("mktemp -d ${TMPDIR:-/tmp}/tlscache-persist.XXXXXX"):gsub("%s+$", "")
assert(TMP ~= "", "mktemp -d failed")
local KEY = "0123456789abcdef0123456789ABCDEF"
local KEY2 = "fedcba9876543210FEDCBA9876543210"
local nfile = 0
local function tmpname(tag)
  nfile = nfile + 1
  return string.format("%s/%s-%d", TMP, tag, nfile)
end

-- vhost options as source text, so that the child builds the very same vhost
local function vhost_src(extra)
  return string.format("{ cafile = %q, %s }", helpers.certs.ca, extra or "")
end
local function vhost_of(src)
  return assert(tlscache.vhost(assert(loadstring("return " .. src))()))
end

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- Run Lua code in a new process of this interpreter; returns its stdout
-- as a table of "name value" lines, plus the raw text.
local function child(code, envprefix)
  local path = tmpname("child") .. ".lua"
  writefile(path, string.format("package.path = %q\npackage.cpath = %q\n", package.path, package.cpath)
    .. "local tlscache = require 'tlscache'\n"
    .. "local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end\n"
    .. code)
  local out = capture(string.format("%s %s %s 2>&1", envprefix or "", q(LUA), q(path)))
  -- under ASan the child inherits LD_PRELOAD: its reports count too
  assert(not out:find("Sanitizer", 1, true), out)
  local t = {}
  for name, value in out:gmatch("(%S+) ([^\n]*)") do t[name] = value end
  return t, out
end

-- the child's connection and the server's verdict on it
local CONNECT = [[
local c, m = vh:connect("127.0.0.1", PORT, OPTS)
if not c then print("connect " .. tostring(m)) os.exit(0) end
c:send("GET / HTTP/1.0\r\n\r\n")
local body = c:receive("*a") or ""
print("reused " .. tostring(c:reused()))
print("server " .. (body:match("(%a+), TLSv1%.%d") or "?"))
print("protocol " .. (body:match("%a+, (TLSv1%.%d)") or "?"))
c:close()
]]

local function child_resume(src, port, load, opts)
  return child(string.format("local vh = assert(tlscache.vhost(%s))\nlocal PORT, OPTS = %d, %s\n",
    src, port, opts or "nil") .. load .. "\n" .. CONNECT)
end

local function flipbit(s, i, bit)
  local b = s:byte(i)
  local v = 2 ^ bit
  if math.floor(b / v) % 2 == 1 then b = b - v else b = b + v end
  return s:sub(1, i - 1) .. string.char(b) .. s:sub(i + 1)
end

local function u16(s, i) return s:byte(i) * 256 + s:byte(i + 1) end
local function u32(s, i) return ((s:byte(i) * 256 + s:byte(i + 1)) * 256 + s:byte(i + 2)) * 256 + s:byte(i + 3) end

-- offset (1-based) of the 32-byte fingerprint in a record
local function fingerprint_at(blob)
  local i = 7
  i = i + 1 + blob:byte(i)              -- name
  i = i + 2 + u16(blob, i)              -- host
  i = i + 2                             -- port
  i = i + 1 + blob:byte(i)              -- servername
  i = i + 2 + u16(blob, i)              -- alpn
  return i
end

local function sha256(data)
  local p = tmpname("dgst")
  writefile(p, data)
  local h = capture("openssl dgst -sha256 -binary " .. q(p))
  assert(#h == 32)
  return h
end

-- the records of a file image: { {offset, length}, ... } (1-based offsets)
local function records(img)
  local t, i = {}, 49
  for _ = 1, u32(img, 13) do
    local len = u32(img, i)
    t[#t + 1] = { i + 4, len }
    i = i + 4 + len
  end
  return t
end

local function two(a, b) return a, b end

local function is_fail(code, ok, msg, got)
  assert.is_nil(ok)
  assert.is_string(msg)
  assert.are.equal(code, got, msg)
  assert.are.equal(code .. ":", msg:match("^%a+:"))
end

teardown(function()
  helpers.stop_all()
  if not os.getenv("TLSCACHE_KEEP") then helpers.sh("rm -rf " .. q(TMP)) end
end)

describe("session persistence across processes", function()
  local cases = {
    { tls = "1.2", label = "TLS 1.2 tickets" },
    { tls = "1.2", label = "TLS 1.2 session IDs", no_ticket = true },
    { tls = "1.3", label = "TLS 1.3 tickets" },
  }
  for _, case in ipairs(cases) do
    for _, key in ipairs { false, true } do
      it(case.label .. (key and ", with a key" or ", without a key")
        .. ": a new process loads and resumes at once", function()
        local srv = helpers.s_server { tls = case.tls, no_ticket = case.no_ticket }
        finally(srv.stop)
        local src = vhost_src()
        local vh = vhost_of(src)
        local first = helpers.fetch(vh, srv.port)
        assert.is_false(first.server_reused)
        local opts = key and { key = KEY } or nil
        local blob = assert(vh:session_save("127.0.0.1", srv.port, opts))
        local bpath = tmpname("blob")
        writefile(bpath, blob)
        local fpath = tmpname("file")
        assert.are.equal(1, vh:save_file(fpath, opts))
        assert.are.equal("600", filemode(fpath))
        local lopts = key and string.format("{ key = unhex(%q) }", hex(KEY)) or "nil"

        local t, out = child_resume(src, srv.port, string.format([[
local f = assert(io.open(%q, "rb")); local blob = f:read("*a"); f:close()
print("load " .. tostring(vh:session_load("127.0.0.1", PORT, blob, %s)))]], bpath, lopts))
        assert.are.equal("true", t.load, out)
        assert.are.equal("true", t.reused, out)
        assert.are.equal("Reused", t.server, out)
        assert.are.equal("TLSv" .. case.tls, t.protocol, out)

        t, out = child_resume(src, srv.port, string.format([[
local loaded, skipped = vh:load_file(%q, %s)
print("load " .. tostring(loaded) .. "/" .. tostring(skipped))]], fpath, lopts))
        assert.are.equal("1/0", t.load, out)
        assert.are.equal("true", t.reused, out)
        assert.are.equal("Reused", t.server, out)
        vh:close()
      end)
    end
  end

  it("keeps the servername and ALPN override of the entry", function()
    local srv = helpers.s_server {}
    finally(srv.stop)
    local src = vhost_src()
    local vh = vhost_of(src)
    helpers.fetch(vh, srv.port, { servername = "alt.test", alpn = "h2" })
    assert.are.equal("notfound", select(3, vh:session_save("127.0.0.1", srv.port)))
    assert.are.equal("notfound", select(3, vh:session_save("127.0.0.1", srv.port, { servername = "alt.test" })))
    local blob = assert(vh:session_save("127.0.0.1", srv.port, { servername = "alt.test", alpn = "h2" }))
    local bpath = tmpname("blob")
    writefile(bpath, blob)
    local t, out = child_resume(src, srv.port, string.format([[
local f = assert(io.open(%q, "rb")); local blob = f:read("*a"); f:close()
print("load " .. tostring(vh:session_load("127.0.0.1", PORT, blob, { servername = "alt.test", alpn = "h2" })))]],
      bpath), '{ servername = "alt.test", alpn = "h2" }')
    assert.are.equal("true", t.load, out)
    assert.are.equal("Reused", t.server, out)
    local fpath = tmpname("file")
    assert.are.equal(1, vh:save_file(fpath))
    t, out = child_resume(src, srv.port, string.format([[
print("load " .. tostring((vh:load_file(%q))))
local s = vh:sessions()[1]
print("entry " .. s.host .. "," .. s.servername .. "," .. table.concat(s.alpn, ";"))]], fpath),
      '{ servername = "alt.test", alpn = "h2" }')
    assert.are.equal("1", t.load, out)
    assert.are.equal("127.0.0.1,alt.test,h2", t.entry, out)
    assert.are.equal("Reused", t.server, out)
  end)
end)

describe("saved data that is damaged", function()
  local srv, vh, blob, kblob
  setup(function()
    srv = helpers.s_server { tls = "1.2" }
    vh = vhost_of(vhost_src())
    helpers.fetch(vh, srv.port)
    blob = assert(vh:session_save("127.0.0.1", srv.port))
    kblob = assert(vh:session_save("127.0.0.1", srv.port, { key = KEY }))
  end)
  teardown(function() srv.stop() end)

  local function fresh() return vhost_of(vhost_src()) end

  it("loads when intact", function()
    local v = fresh()
    assert.are.same({ true, 1 }, { v:session_load("127.0.0.1", srv.port, blob) })
    assert.are.same({ true, 1 }, { fresh():session_load("127.0.0.1", srv.port, kblob, { key = KEY }) })
    assert.are.equal(1, v:stats().loaded)
  end)

  it("refuses a wrong key, a missing key and a key where none was used", function()
    local v = fresh()
    is_fail("format", v:session_load("127.0.0.1", srv.port, kblob, { key = KEY2 }))
    is_fail("format", v:session_load("127.0.0.1", srv.port, kblob))
    is_fail("format", v:session_load("127.0.0.1", srv.port, blob, { key = KEY }))
    assert.are.equal(0, v:stats().size)
  end)

  it("refuses a flipped bit at every offset", function()
    local v = fresh()
    for _, b in ipairs { { blob }, { kblob, { key = KEY } } } do
      for i = 1, #b[1] do
        local ok, msg, code = v:session_load("127.0.0.1", srv.port, flipbit(b[1], i, i % 8), b[2])
        if ok or code ~= "format" then
          error(string.format("offset %d of %d: %s %s %s", i, #b[1], tostring(ok), tostring(msg), tostring(code)))
        end
      end
    end
    assert.are.equal(0, v:stats().size)
  end)

  it("refuses truncation at every length and trailing bytes", function()
    local v = fresh()
    for _, b in ipairs { { blob }, { kblob, { key = KEY } } } do
      for n = 0, #b[1] - 1 do
        local ok, _, code = v:session_load("127.0.0.1", srv.port, b[1]:sub(1, n), b[2])
        if ok or code ~= "format" then error("length " .. n .. ": " .. tostring(code)) end
      end
      is_fail("format", v:session_load("127.0.0.1", srv.port, b[1] .. "\0", b[2]))
      is_fail("format", v:session_load("127.0.0.1", srv.port, b[1] .. b[1], b[2]))
    end
    assert.are.equal(0, v:stats().size)
  end)

  it("refuses empty and random input", function()
    local v = fresh()
    is_fail("format", v:session_load("127.0.0.1", srv.port, ""))
    math.randomseed(os.time())
    for _ = 1, 300 do
      local t = {}
      for j = 1, math.random(0, 3000) do t[j] = string.char(math.random(0, 255)) end
      local junk = table.concat(t)
      is_fail("format", v:session_load("127.0.0.1", srv.port, junk))
      is_fail("format", v:session_load("127.0.0.1", srv.port, blob:sub(1, math.random(1, 60)) .. junk))
      is_fail("format", v:session_load("127.0.0.1", srv.port, junk, { key = KEY }))
    end
  end)

  it("refuses a forged record whose certificate is not valid for the tuple", function()
    -- an unkeyed digest stops accidents, not forgery: the peer certificate
    -- check must still refuse a session made with another server's cert
    local evil = helpers.s_server { tls = "1.2", cert = "other" }
    finally(evil.stop)
    local vnone = vhost_of(vhost_src('verify = "none"'))
    helpers.fetch(vnone, evil.port)
    local forged = assert(vnone:session_save("127.0.0.1", evil.port))
    local fp = fingerprint_at(forged)
    forged = forged:sub(1, fp - 1) .. blob:sub(fingerprint_at(blob), fingerprint_at(blob) + 31)
      .. forged:sub(fp + 32)
    forged = forged:sub(1, -33) .. sha256(forged:sub(1, -33))
    is_fail("mismatch", fresh():session_load("127.0.0.1", evil.port, forged))
    -- the same surgery with the right certificate is accepted: the test is sound
    local same = blob:sub(1, -33) .. sha256(blob:sub(1, -33))
    assert.is_true((fresh():session_load("127.0.0.1", srv.port, same)))
  end)
end)

describe("saved data for something else", function()
  local srv, vh, blob, sniblob, kblob
  setup(function()
    srv = helpers.s_server { tls = "1.3" }
    vh = vhost_of(vhost_src())
    helpers.fetch(vh, srv.port)
    helpers.fetch(vh, srv.port, { servername = "localhost" })
    blob = assert(vh:session_save("127.0.0.1", srv.port))
    kblob = assert(vh:session_save("127.0.0.1", srv.port, { key = KEY }))
    sniblob = assert(vh:session_save("127.0.0.1", srv.port, { servername = "localhost" }))
  end)
  teardown(function() srv.stop() end)

  it("is refused under another host, port, servername or alpn", function()
    local v = vhost_of(vhost_src())
    local p = srv.port
    is_fail("mismatch", v:session_load("localhost", p, blob))
    is_fail("mismatch", v:session_load("127.0.0.1", p == 65535 and 1 or p + 1, blob))
    is_fail("mismatch", v:session_load("127.0.0.1", p, blob, { servername = "localhost" }))
    is_fail("mismatch", v:session_load("127.0.0.1", p, blob, { alpn = "h2" }))
    is_fail("mismatch", v:session_load("127.0.0.1", p, sniblob))
    is_fail("mismatch", v:session_load("127.0.0.1", p, sniblob, { servername = "alt.test" }))
    is_fail("mismatch", v:session_load("127.0.0.1", p, sniblob, { servername = false }))
    is_fail("mismatch", v:session_load("localhost", p, kblob, { key = KEY }))
    assert.are.equal(0, v:stats().size)
    assert.is_true((v:session_load("127.0.0.1", p, sniblob, { servername = "localhost" })))
    assert.is_true((v:session_load("127.0.0.1", p, kblob, { key = KEY })))
  end)

  it("is refused by another vhost name or other security settings", function()
    local others = {
      vhost_src('name = "other"'),
      string.format('{ cafile = %q }', helpers.certs.evilca),
      vhost_src('min_protocol = "tlsv1_3"'),
      vhost_src('verify = "none"'),
      vhost_src('alpn = "http/1.1"'),
      vhost_src('ciphersuites = "TLS_AES_128_GCM_SHA256"'),
      vhost_src(string.format('certificate = %q, key = %q', helpers.certs.client, helpers.certs.client_key)),
    }
    for _, src in ipairs(others) do
      local v = vhost_of(src)
      local ok, msg, code = v:session_load("127.0.0.1", srv.port, blob)
      assert.are.equal("mismatch", code, src .. ": " .. tostring(msg))
      assert.is_nil(ok)
      local _, _, kcode = v:session_load("127.0.0.1", srv.port, kblob, { key = KEY })
      assert.are.equal("mismatch", kcode, src)
      v:close()
    end
    -- settings that decide nothing about whom to trust do not matter
    local v = vhost_of(vhost_src("session_timeout = 3600, session_cache_max = 3"))
    assert.is_true((v:session_load("127.0.0.1", srv.port, blob)))
  end)
end)

describe("expiry", function()
  it("refuses expired data, per tuple and in files", function()
    local srv = helpers.s_server { tls = "1.3" }
    finally(srv.stop)
    local src = vhost_src("session_timeout = 1")
    local vh = vhost_of(src)
    helpers.fetch(vh, srv.port)
    local blob = assert(vh:session_save("127.0.0.1", srv.port))
    local path = tmpname("expiring")
    assert.are.equal(1, vh:save_file(path))
    require("socket").sleep(2.2)
    is_fail("expired", vhost_of(src):session_load("127.0.0.1", srv.port, blob))
    is_fail("expired", vhost_of(vhost_src()):session_load("127.0.0.1", srv.port, blob))
    local loaded, skipped, why = vhost_of(src):load_file(path)
    assert.are.equal(0, loaded)
    assert.are.equal(1, skipped)
    assert.are.equal(1, why.expired)
    -- gone from memory too, so there is nothing left to save
    is_fail("notfound", vh:session_save("127.0.0.1", srv.port))
  end)

  it("caps a loaded session by the loading vhost's session_timeout", function()
    local srv = helpers.s_server { tls = "1.2" }
    finally(srv.stop)
    local vh = vhost_of(vhost_src())
    helpers.fetch(vh, srv.port)
    local blob = assert(vh:session_save("127.0.0.1", srv.port))
    local v = vhost_of(vhost_src("session_timeout = 5"))
    assert.is_true((v:session_load("127.0.0.1", srv.port, blob)))
    local s = v:sessions()[1]
    assert.is_true(s.expires_in <= 5 and s.expires_in > 3)
  end)
end)

describe("loading next to live sessions", function()
  it("never displaces a fresher session and never duplicates a ticket", function()
    local srv = helpers.s_server { tls = "1.3" }
    finally(srv.stop)
    local a = vhost_of(vhost_src())
    helpers.fetch(a, srv.port)
    local old = assert(a:session_save("127.0.0.1", srv.port))
    require("socket").sleep(1.1)
    local b = vhost_of(vhost_src("session_tickets_max = 2"))
    helpers.fetch(b, srv.port)                -- two fresher tickets fill the entry
    assert.are.equal(2, b:sessions()[1].tickets)
    assert.are.same({ true, 0 }, { b:session_load("127.0.0.1", srv.port, old) })
    local c = vhost_of(vhost_src())
    assert.are.same({ true, 2 }, { c:session_load("127.0.0.1", srv.port, old) })
    assert.are.same({ true, 0 }, { c:session_load("127.0.0.1", srv.port, old) })   -- already there
    assert.are.equal(2, c:sessions()[1].tickets)
    -- single-use: each loaded ticket is offered once
    assert.is_true(helpers.fetch(c, srv.port).server_reused)
    assert.is_true(helpers.fetch(c, srv.port).server_reused)
  end)

  it("fills a vhost's free room from a file without evicting live entries", function()
    local srv = helpers.s_server { tls = "1.2" }
    finally(srv.stop)
    local a = vhost_of(vhost_src())
    helpers.fetch(a, srv.port, { servername = "localhost" })
    helpers.fetch(a, srv.port, { servername = "alt.test" })
    helpers.fetch(a, srv.port)
    local path = tmpname("three")
    assert.are.equal(3, a:save_file(path))
    local small = vhost_of(vhost_src("session_cache_max = 2"))
    helpers.fetch(small, srv.port, { servername = false })
    local loaded, skipped, why = small:load_file(path)
    -- the file's first entry is the one small holds live, and fresher; the
    -- second takes the one free slot; the third finds no room
    assert.are.equal(1, loaded)
    assert.are.equal(2, skipped)
    assert.are.equal(2, why.cached)
    local s = small:sessions()
    assert.are.equal(2, #s)
    assert.is_nil(s[1].servername)            -- the live entry stays most recent
    assert.are.equal("alt.test", s[2].servername)
    -- with the room, everything; and loading twice adds nothing
    local big = vhost_of(vhost_src())
    assert.are.same({ 3, 0 }, { two(big:load_file(path)) })
    assert.are.same({ 0, 3 }, { two(big:load_file(path)) })
    assert.are.equal(3, big:stats().size)
    -- a vhost whose cache is off keeps nothing
    local off = vhost_of(vhost_src("session_cache = false"))
    assert.are.equal(0, (off:load_file(path)))
    assert.are.same({ true, 0 }, { off:session_load("127.0.0.1", srv.port, assert(a:session_save("127.0.0.1", srv.port))) })
    assert.are.equal(0, off:stats().size)
  end)
end)

describe("session files", function()
  local srv, vh, src
  setup(function()
    srv = helpers.s_server { tls = "1.3" }
    src = vhost_src()
    vh = vhost_of(src)
    helpers.fetch(vh, srv.port, { servername = "localhost" })
    helpers.fetch(vh, srv.port, { servername = "alt.test" })
    helpers.fetch(vh, srv.port)
  end)
  teardown(function() srv.stop() end)

  it("are written with mode 0600 whatever the umask, replacing the old file", function()
    for _, mask in ipairs { "022", "000", "077" } do
      local path = tmpname("umask" .. mask)
      writefile(path, "old", "0644")
      local t, out = child(string.format([[
local vh = assert(tlscache.vhost(%s))
print("saved " .. tostring(vh:save_file(%q)))]], src, path), "umask " .. mask .. ";")
      assert.are.equal("0", t.saved, out)
      assert.are.equal("600", filemode(path))
      assert.are.equal(0, (vhost_of(src):load_file(path)))
    end
    local path = tmpname("mine")
    assert.are.equal(3, vh:save_file(path))
    assert.are.equal("600", filemode(path))
    assert.are.same({ 3, 0 }, { two(vhost_of(src):load_file(path)) })
  end)

  it("are left intact by an interrupted save", function()
    local path = tmpname("intact")
    assert.are.equal(3, vh:save_file(path))
    local before = readfile(path)
    local function leftovers()     -- mkstemp names: path .. ".XXXXXX"
      return (capture("ls -1 " .. q(path) .. ".* 2>/dev/null"):gsub("%s+$", ""))
    end
    for _, limit in ipairs { 0, 10, 100, #before - 1 } do
      local t, out = child(string.format([[
local vh = assert(tlscache.vhost(%s))
assert(vh:load_file(%q))
local ok, msg, code = vh:save_file(%q)
print("result " .. tostring(ok) .. "," .. tostring(code) .. "," .. tostring(msg))]], src, path, path),
        "TLSCACHE_TEST_FAIL_WRITE=" .. limit)
      assert.are.equal("nil,io,", t.result and t.result:sub(1, 7), out)
      assert.are.equal(before, readfile(path))
      assert.are.equal("", leftovers())         -- no temporary file left
    end
    assert.are.same({ 3, 0 }, { two(vhost_of(src):load_file(path)) })
  end)

  it("are refused when others can write them, or when not regular files", function()
    local path = tmpname("perm")
    assert.are.equal(3, vh:save_file(path))
    for _, mode in ipairs { "0620", "0602", "0666" } do
      assert(helpers.sh("chmod " .. mode .. " " .. q(path)))
      is_fail("io", vhost_of(src):load_file(path))
    end
    assert(helpers.sh("chmod 0400 " .. q(path)))
    assert.are.equal(3, (vhost_of(src):load_file(path)))
    if capture("id -u"):match("^0%s") then     -- as root: a file of another user
      assert(helpers.sh("chown nobody " .. q(path)))
      is_fail("io", vhost_of(src):load_file(path))
    end
    is_fail("io", vh:load_file(TMP))                                  -- a directory
    local fifo = tmpname("fifo")
    assert(helpers.sh("mkfifo -m 0600 " .. q(fifo)))
    is_fail("io", vh:load_file(fifo))                                 -- without hanging
    is_fail("io", vh:load_file(tmpname("missing")))
    is_fail("io", vh:save_file(TMP .. "/no/such/dir/file"))
    local big = tmpname("big")
    assert(helpers.sh("truncate -s 65M " .. q(big) .. " && chmod 0600 " .. q(big)))
    is_fail("format", vh:load_file(big))
    local empty = tmpname("empty")
    writefile(empty, "", "0600")
    is_fail("format", vh:load_file(empty))
    local junk = tmpname("junk")
    writefile(junk, ("junk"):rep(100), "0600")
    is_fail("format", vh:load_file(junk))
  end)

  it("skip bad records one by one", function()
    local path = tmpname("records")
    assert.are.equal(3, vh:save_file(path))
    local img = readfile(path)
    local recs = records(img)
    assert.are.equal(3, #recs)
    local function try(data, ...)
      local p = tmpname("bad")
      writefile(p, data, "0600")
      return vhost_of(src):load_file(p, ...)
    end
    -- one record damaged: the two others load
    local mid = recs[2][1] + math.floor(recs[2][2] / 2)
    local loaded, skipped, why = try(flipbit(img, mid, 3))
    assert.are.equal(2, loaded)
    assert.are.equal(1, skipped)
    assert.are.equal(1, why.format)
    -- truncated inside the last record, and cut after the second
    assert.are.same({ 2, 1 }, { two(try(img:sub(1, #img - 10))) })
    assert.are.same({ 2, 1 }, { two(try(img:sub(1, recs[3][1] - 5))) })
    -- bytes after the last record
    assert.are.same({ 3, 1 }, { two(try(img .. "x")) })
    -- a damaged file header spoils the whole file
    is_fail("format", try(flipbit(img, 13, 0)))
    -- a key where none was used: every record refused, for its key
    loaded, skipped, why = try(img, { key = KEY })
    assert.are.same({ 0, 3, 3, 0 }, { loaded, skipped, why.key, why.format })
    -- a flipped bit anywhere never loads a damaged record
    for i = 1, #img, 7 do
      local l, s = try(flipbit(img, i, i % 8))
      if l ~= nil then
        assert(l <= 2 and l + s >= 3, "offset " .. i .. ": " .. l .. "/" .. s)
      end
    end
  end)

  it("with a key: encrypted records, refused under another key", function()
    local path = tmpname("keyed")
    assert.are.equal(3, vh:save_file(path, { key = KEY }))
    local img = readfile(path)
    assert.truthy(img:find("alt.test", 1, true))            -- the tuple is in the clear
    assert.is_nil(img:find("tlscache test CA", 1, true))    -- the sessions are not
    assert.are.equal(3, vh:save_file(path))
    assert.truthy(readfile(path):find("tlscache test CA", 1, true))
    assert.are.equal(3, vh:save_file(path, { key = KEY }))
    assert.are.same({ 3, 0 }, { two(vhost_of(src):load_file(path, { key = KEY })) })
    local loaded, skipped, why = vhost_of(src):load_file(path, { key = KEY2 })
    assert.are.same({ 0, 3, 3, 0 }, { loaded, skipped, why.key, why.format })
    loaded, skipped, why = vhost_of(src):load_file(path)      -- no key at all
    assert.are.same({ 0, 3, 3, 0 }, { loaded, skipped, why.key, why.format })
    loaded, skipped, why = vhost_of(vhost_src('name = "b"')):load_file(path, { key = KEY })
    assert.are.same({ 0, 3, 3 }, { loaded, skipped, why.mismatch })
  end)

  it("of an empty cache hold no entry", function()
    local path = tmpname("none")
    local v = vhost_of(src)
    assert.are.equal(0, v:save_file(path))
    assert.are.same({ 0, 0 }, { two(v:load_file(path)) })
  end)
end)

describe("argument checks", function()
  local vh = vhost_of(vhost_src())

  it("raise on programmer errors", function()
    local blob = "x"
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { key = "short" }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { key = KEY .. "x" }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { key = 42 }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { nokey = true }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, "opts") end)
    assert.has_error(function() vh:session_save("127.0.0.1", 0) end)
    assert.has_error(function() vh:session_save("", 443) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { servername = "" }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { servername = true }) end)
    assert.has_error(function() vh:session_save("127.0.0.1", 443, { alpn = {} }) end)
    assert.has_error(function() vh:session_save(("h"):rep(2000), 443) end)
    assert.has_error(function() vh:session_load("127.0.0.1", 443) end)
    assert.has_error(function() vh:session_load("127.0.0.1", 443, blob, { key = "short" }) end)
    assert.has_error(function() vh:session_load("127.0.0.1", 443, blob, { servername = 1 }) end)
    assert.has_error(function() vh:save_file() end)
    assert.has_error(function() vh:save_file("a\0b") end)
    assert.has_error(function() vh:save_file(TMP .. "/x", { servername = "x" }) end)
    assert.has_error(function() vh:load_file(TMP .. "/x", { key = ("k"):rep(31) }) end)
    assert.has_error(function() vh:load_file(TMP .. "/x", { bogus = 1 }) end)
    local closed = vhost_of(vhost_src())
    closed:close()
    assert.has_error(function() closed:session_save("127.0.0.1", 443) end)
    assert.has_error(function() closed:session_load("127.0.0.1", 443, blob) end)
    assert.has_error(function() closed:save_file(TMP .. "/x") end)
    assert.has_error(function() closed:load_file(TMP .. "/x") end)
  end)

  it("accept any 32 bytes as a key, zero bytes included", function()
    local srv = helpers.s_server {}
    finally(srv.stop)
    local v = vhost_of(vhost_src())
    helpers.fetch(v, srv.port)
    local zero = ("\0"):rep(32)
    local blob = assert(v:session_save("127.0.0.1", srv.port, { key = zero }))
    assert.is_true((vhost_of(vhost_src()):session_load("127.0.0.1", srv.port, blob, { key = zero })))
  end)

  it("return notfound when nothing is cached for the tuple", function()
    is_fail("notfound", vh:session_save("127.0.0.1", 443))
    is_fail("notfound", vh:session_save("localhost", 443, { key = KEY }))
  end)
end)

describe("fuzzing corpus and regressions", function()
  it("every saved input loads or fails cleanly", function()
    local list = capture("ls -1 spec/fuzz/corpus/* spec/fuzz/regress/* 2>/dev/null")
    local v = vhost_of(vhost_src())
    local n = 0
    for path in list:gmatch("[^\n]+") do
      local data = readfile(path)
      if data then
        n = n + 1
        for _, opts in ipairs { {}, { key = KEY } } do
          local ok, msg, code = v:session_load("127.0.0.1", 443, data, opts)
          assert(ok == true or (ok == nil and type(msg) == "string" and type(code) == "string"), path)
          local p = tmpname("corpus")
          writefile(p, data, "0600")
          local l, s = v:load_file(p, opts)
          assert((type(l) == "number" and type(s) == "number") or (l == nil and type(s) == "string"), path)
        end
      end
    end
    assert(n > 0, "no corpus found (run from the repository root)")
  end)
end)
