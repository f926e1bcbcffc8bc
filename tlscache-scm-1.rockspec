rockspec_format = "3.0"
package = "tlscache"
version = "scm-1"
source = {
  url = "git+file:///dev/null",   -- install from a checkout: luarocks make
}
description = {
  summary = "Automatic TLS client session caching and resumption for Lua (OpenSSL 3)",
  detailed = [[
Vhosts own a TLS client context and a session cache; vh:connect(host, port)
resolves, connects, verifies the peer and resumes a cached TLS 1.2 session or
TLS 1.3 ticket, so that later connections skip the full handshake.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
  type = "builtin",
  modules = {
    tlscache = "lua/tlscache/init.lua",
    ["tlscache.core"] = {
      sources = {
        "csrc/cache.c", "csrc/util.c", "csrc/net.c",
        "csrc/vhost.c", "csrc/conn.c", "csrc/record.c", "csrc/persist.c",
        "csrc/module.c",
      },
      defines = { "OPENSSL_API_COMPAT=30000" },
      libraries = { "ssl", "crypto" },
      incdirs = { "$(OPENSSL_INCDIR)", "csrc" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
    },
  },
}
