/*
 * Every Lua version difference lives here, as tc_-prefixed shims: LuaJIT
 * exports some luaL_* symbols of 5.2 and later, so none are defined here
 * under their own names.
 */
#ifndef TLSCACHE_COMPAT_H
#define TLSCACHE_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 502
#define tc_setfuncs luaL_setfuncs
#define tc_rawlen lua_rawlen
#else
#define tc_setfuncs tc_setfuncs_51
#define tc_rawlen lua_objlen
/* luaL_setfuncs of 5.2: register l into the table on top, below nup upvalues */
static inline void tc_setfuncs_51(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#endif

#endif
