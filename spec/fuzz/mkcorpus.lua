--[[ Make the fuzzing seed corpus from real sessions: `make fuzz-corpus`.
  lua spec/fuzz/mkcorpus.lua OUTDIR
Starts openssl s_server on 127.0.0.1 (TLS 1.2 with tickets and with session
IDs, TLS 1.3), connects, and writes per-tuple records (*.rec) and session
files (*.tcf), with and without the key the fuzz target knows. ]]
local helpers = require "helpers"

local out = assert(arg[1], "usage: mkcorpus.lua OUTDIR")
local KEY = "0123456789abcdef0123456789ABCDEF"   -- = fuzz_record.c's key

local function write(name, data)
  local f = assert(io.open(out .. "/" .. name, "wb"))
  f:write(data)
  f:close()
  print(("%-24s %5d bytes"):format(name, #data))
end

local servers = {}
local function server(opts)
  local s = helpers.s_server(opts)
  servers[#servers + 1] = s
  return s
end

local ok, err = pcall(function()
  local s12 = server { tls = "1.2" }
  local sid = server { tls = "1.2", no_ticket = true }
  local s13 = server { tls = "1.3" }
  local vh = assert(helpers.vhost {})
  helpers.fetch(vh, s12.port)
  helpers.fetch(vh, sid.port)
  helpers.fetch(vh, s13.port)
  helpers.fetch(vh, s13.port, { servername = "localhost", alpn = "h2" })
  write("tls12-ticket.rec", assert(vh:session_save("127.0.0.1", s12.port)))
  write("tls12-ticket-key.rec", assert(vh:session_save("127.0.0.1", s12.port, { key = KEY })))
  write("tls12-id.rec", assert(vh:session_save("127.0.0.1", sid.port)))
  write("tls13-tickets.rec", assert(vh:session_save("127.0.0.1", s13.port)))
  write("tls13-key.rec", assert(vh:session_save("127.0.0.1", s13.port, { key = KEY })))
  write("tls13-sni-alpn.rec", assert(vh:session_save("127.0.0.1", s13.port,
    { servername = "localhost", alpn = "h2" })))
  local tmp = os.tmpname()
  for _, v in ipairs { { "all.tcf" }, { "all-key.tcf", { key = KEY } } } do
    assert(vh:save_file(tmp, v[2]))
    local f = assert(io.open(tmp, "rb"))
    write(v[1], f:read("*a"))
    f:close()
  end
  local empty = assert(helpers.vhost {})
  assert(empty:save_file(tmp))
  local f = assert(io.open(tmp, "rb"))
  write("empty.tcf", f:read("*a"))
  f:close()
  os.remove(tmp)
end)
for _, s in ipairs(servers) do s.stop() end
if not ok then error(err, 0) end
