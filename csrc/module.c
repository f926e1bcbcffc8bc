/*
 * tlscache.core: opens the module and each part of it.
 */
#include "tlscache.h"

#include <openssl/err.h>

#if defined(__GNUC__)
#define TC_EXPORT __attribute__((visibility("default")))
#else
#define TC_EXPORT
#endif

TC_EXPORT int luaopen_tlscache_core(lua_State *L);

/* tlscache.now() -> monotonic seconds, for timing connections */
static int m_now(lua_State *L) {
  lua_pushnumber(L, tc_now());
  return 1;
}

/* Finalizer of a sentinel made at open: it holds the state's reference on
 * the shared BIO method between connections (each connection's BIO holds
 * its own, so the order in which lua_close finalizes them does not matter,
 * nor a reload of the module that drops an older sentinel). */
static int m_done(lua_State *L) {
  int *live = (int *)lua_touserdata(L, 1);
  if (*live) tc_net_done();
  *live = 0;
  return 0;
}

int luaopen_tlscache_core(lua_State *L) {
  int *live;
  if (OPENSSL_init_ssl(0, NULL) != 1)
    return luaL_error(L, "tlscache: OpenSSL initialisation failed");
  live = (int *)lua_newuserdata(L, sizeof *live);
  *live = 0;
  lua_newtable(L);
  lua_pushcfunction(L, m_done);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (!tc_net_init()) return luaL_error(L, "tlscache: OpenSSL initialisation failed");
  *live = 1;
  lua_setfield(L, LUA_REGISTRYINDEX, "tlscache.core.sentinel");
  lua_newtable(L);
  lua_pushliteral(L, TC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "openssl");
  lua_pushcfunction(L, m_now);
  lua_setfield(L, -2, "now");
  tc_conn_open(L);
  tc_vhost_open(L);
  return 1;
}
