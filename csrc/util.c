/*
 * Small helpers shared by every part: the nil, "code: detail", code error
 * convention, clocks, and strict readers for options tables.
 */
#define _POSIX_C_SOURCE 200809L
#include "tlscache.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

void tc_seterr(tc_err *e, const char *code, const char *fmt, ...) {
  va_list ap;
  int n;
  e->code = code;
  n = snprintf(e->msg, sizeof e->msg, "%s: ", code);
  if (n < 0 || (size_t)n >= sizeof e->msg) return;
  va_start(ap, fmt);
  vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
  va_end(ap);
}

void tc_seterr_ssl(tc_err *e, const char *code, const char *what) {
  unsigned long err = ERR_peek_error();
  const char *reason = err ? ERR_reason_error_string(err) : NULL;
  if (reason)
    tc_seterr(e, code, "%s: %s", what, reason);
  else if (err)
    tc_seterr(e, code, "%s: error %lu", what, err);
  else
    tc_seterr(e, code, "%s", what);
  ERR_clear_error();
}

int tc_pusherr(lua_State *L, const tc_err *e) {
  lua_pushnil(L);
  lua_pushstring(L, e->msg);
  lua_pushstring(L, e->code);
  return 3;
}

int tc_fail(lua_State *L, const char *code, const char *fmt, ...) {
  tc_err e;
  va_list ap;
  int n;
  e.code = code;
  n = snprintf(e.msg, sizeof e.msg, "%s: ", code);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof e.msg)
    vsnprintf(e.msg + n, sizeof e.msg - (size_t)n, fmt, ap);
  va_end(ap);
  return tc_pusherr(L, &e);
}

double tc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t tc_wallnow(void) { return (int64_t)time(NULL); }

char *tc_strdup(const char *s, size_t n) {
  char *p = (char *)malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

void tc_checkoptions(lua_State *L, int idx, const char *const known[]) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int i;
    size_t n;
    const char *k;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      luaL_error(L, "option names must be strings (got %s)", luaL_typename(L, -1));
      return;
    }
    k = lua_tolstring(L, -1, &n);
    for (i = 0; known[i]; i++)
      if (strlen(k) == n && strcmp(known[i], k) == 0) break;   /* "verify\0x" is unknown */
    if (known[i] == NULL) luaL_error(L, "unknown option '%s'", k);
  }
}

/* push opts[k] (nil when opts is absent) */
/* push opts[k] (nil when opts is absent); raw, as tc_checkoptions reads
 * keys: no __index runs, and a string read stays anchored in the table */
static int getopt_(lua_State *L, int idx, const char *k) {
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_pushstring(L, k);
  lua_rawget(L, idx);
  return lua_type(L, -1);
}

static int badopt(lua_State *L, const char *k, const char *expected) {
  return luaL_error(L, "bad option '%s' (%s expected, got %s)", k, expected,
                    luaL_typename(L, -1));
}

int tc_optboolean(lua_State *L, int idx, const char *k, int def) {
  int t = getopt_(L, idx, k), v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) badopt(L, k, "boolean");
  lua_pop(L, 1);
  return v;
}

lua_Number tc_optnumber(lua_State *L, int idx, const char *k, lua_Number def,
                        lua_Number min, lua_Number max) {
  int t = getopt_(L, idx, k);
  lua_Number v = def;
  if (t == LUA_TNUMBER) {
    v = lua_tonumber(L, -1);
    if (!(v >= min && v <= max)) {   /* also catches NaN */
      char range[64];                /* lua_pushfstring knows no %g */
      snprintf(range, sizeof range, "%.15g..%.15g", (double)min, (double)max);
      luaL_error(L, "bad option '%s' (out of range %s)", k, range);
    }
  } else if (t != LUA_TNIL) {
    badopt(L, k, "number");
  }
  lua_pop(L, 1);
  return v;
}

lua_Number tc_optinteger(lua_State *L, int idx, const char *k, lua_Number def,
                         lua_Number min, lua_Number max) {
  lua_Number v = tc_optnumber(L, idx, k, def, min, max);
  if (v != (lua_Number)(long)v) luaL_error(L, "bad option '%s' (integer expected)", k);
  return v;
}

/* The string stays alive in the options table; callers copy what they keep. */
const char *tc_optstring(lua_State *L, int idx, const char *k, size_t *len) {
  int t = getopt_(L, idx, k);
  const char *s = NULL;
  size_t n = 0;
  if (t == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    if (strlen(s) != n) luaL_error(L, "bad option '%s' (embedded zero byte)", k);
  } else if (t != LUA_TNIL) {
    badopt(L, k, "string");
  }
  lua_pop(L, 1);
  if (len) *len = n;
  return s;
}

int tc_optenum(lua_State *L, int idx, const char *k, int def, const char *const names[]) {
  int t = getopt_(L, idx, k), i, v = def;
  if (t == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    for (i = 0; names[i]; i++)
      if (strlen(s) == n && strcmp(names[i], s) == 0) break;   /* "none\0peer" is no name */
    if (names[i] == NULL) luaL_error(L, "bad option '%s' (invalid value '%s')", k, s);
    v = i;
  } else if (t != LUA_TNIL) {
    badopt(L, k, "string");
  }
  lua_pop(L, 1);
  return v;
}

const char *tc_checkcstring(lua_State *L, int arg, size_t *len) {
  size_t n;
  const char *s = luaL_checklstring(L, arg, &n);
  if (strlen(s) != n) luaL_argerror(L, arg, "embedded zero byte");
  if (n == 0) luaL_argerror(L, arg, "empty string");
  if (len) *len = n;
  return s;
}

int tc_checkport(lua_State *L, int arg) {
  lua_Number n = luaL_checknumber(L, arg);
  if (!(n >= 1 && n <= 65535) || n != (lua_Number)(int)n)
    luaL_argerror(L, arg, "port must be an integer in 1..65535");
  return (int)n;
}

/* Validate one protocol name on top of the stack; returns its length. */
static size_t alpn_check(lua_State *L, const char *k) {
  size_t n;
  if (lua_type(L, -1) != LUA_TSTRING) badopt(L, k, "string or array of strings");
  lua_tolstring(L, -1, &n);
  if (n == 0 || n > 255) luaL_error(L, "bad option '%s' (protocol names are 1..255 bytes)", k);
  return n;
}

void tc_optalpn(lua_State *L, int idx, const char *k, unsigned char **out, size_t *len) {
  int t = getopt_(L, idx, k), top = lua_gettop(L), i, count = 1;
  size_t total = 0, pos = 0;
  unsigned char *w;
  *out = NULL;
  *len = 0;
  if (t == LUA_TTABLE) {
    count = (int)tc_rawlen(L, top);
    if (count == 0) luaL_error(L, "bad option '%s' (empty list)", k);
  } else if (t != LUA_TSTRING) {
    if (t != LUA_TNIL) badopt(L, k, "string or array of strings");
    lua_pop(L, 1);
    return;
  }
  /* first pass: everything that can raise, before anything is allocated */
  for (i = 1; i <= count; i++) {
    if (t == LUA_TTABLE) lua_rawgeti(L, top, i); else lua_pushvalue(L, top);
    total += 1 + alpn_check(L, k);
    lua_pop(L, 1);
  }
  if (total > 65535) luaL_error(L, "bad option '%s' (list too long)", k);
  w = (unsigned char *)malloc(total);
  if (w == NULL) luaL_error(L, "not enough memory");
  for (i = 1; i <= count; i++) {       /* nothing below raises */
    size_t n;
    const char *s;
    if (t == LUA_TTABLE) lua_rawgeti(L, top, i); else lua_pushvalue(L, top);
    s = lua_tolstring(L, -1, &n);
    w[pos++] = (unsigned char)n;
    memcpy(w + pos, s, n);
    pos += n;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *out = w;
  *len = total;
}

int tc_is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int tc_cert_matches(X509 *peer, const char *name) {
  if (peer == NULL) return 0;
  if (tc_is_ip_literal(name)) return X509_check_ip_asc(peer, name, 0) == 1;
  return X509_check_host(peer, name, strlen(name), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

const char *tc_optservername(lua_State *L, int idx, const char *host, size_t *len) {
  size_t n = 0;
  const char *sni;
  if (getopt_(L, idx, "servername") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    *len = 0;
    return NULL;                     /* false: send no SNI */
  }
  lua_pop(L, 1);
  sni = tc_optstring(L, idx, "servername", &n);
  if (sni && (n == 0 || n > 255)) luaL_error(L, "bad option 'servername' (1..255 bytes expected)");
  if (sni == NULL && !tc_is_ip_literal(host)) {
    sni = host;
    n = strlen(host);
  }
  *len = n;
  return sni;
}
