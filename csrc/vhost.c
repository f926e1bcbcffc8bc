/*
 * Vhosts: one SSL_CTX (trust, client identity, protocol limits, ALPN) and
 * the session cache it owns. The trust store is loaded once here, never per
 * connection. Sessions reach the cache through OpenSSL's new-session
 * callback (conn.c), which also sees TLS 1.3 tickets that arrive after the
 * handshake.
 */
#define _POSIX_C_SOURCE 200809L
#include "tlscache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

static const char *const vhost_options[] = {
  "name", "verify", "cafile", "capath", "certificate", "key", "password",
  "min_protocol", "max_protocol", "ciphers", "ciphersuites", "alpn",
  "session_cache", "session_cache_max", "session_timeout", "ticket_reuse",
  "session_tickets_max", NULL
};
static const char *const verify_names[] = { "peer", "none", NULL };
static const char *const proto_names[] = { "tlsv1_2", "tlsv1_3", NULL };
static const int proto_versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };

/* Everything read from the options table before anything is acquired. */
typedef struct vh_opts {
  const char *name, *cafile, *capath, *cert, *key, *password, *ciphers, *suites;
  size_t namelen;
  int verify, minp, maxp, cache_on, ticket_reuse, tickets_max;
  lua_Number cache_max, timeout;
} vh_opts;

static void read_options(lua_State *L, vh_opts *o) {
  tc_checkoptions(L, 1, vhost_options);
  o->name = tc_optstring(L, 1, "name", &o->namelen);
  if (o->name == NULL) o->name = "default", o->namelen = 7;
  if (o->namelen == 0 || o->namelen > 255)
    luaL_error(L, "bad option 'name' (1..255 bytes expected)");
  o->verify = tc_optenum(L, 1, "verify", 0, verify_names);
  o->cafile = tc_optstring(L, 1, "cafile", NULL);
  o->capath = tc_optstring(L, 1, "capath", NULL);
  o->cert = tc_optstring(L, 1, "certificate", NULL);
  o->key = tc_optstring(L, 1, "key", NULL);
  o->password = tc_optstring(L, 1, "password", NULL);
  if (o->key && !o->cert) luaL_error(L, "bad option 'key' (needs 'certificate')");
  if (o->password && !o->cert) luaL_error(L, "bad option 'password' (needs 'certificate')");
  o->minp = tc_optenum(L, 1, "min_protocol", 0, proto_names);
  o->maxp = tc_optenum(L, 1, "max_protocol", 1, proto_names);
  if (o->minp > o->maxp)
    luaL_error(L, "bad option 'max_protocol' (lower than 'min_protocol')");
  o->ciphers = tc_optstring(L, 1, "ciphers", NULL);
  o->suites = tc_optstring(L, 1, "ciphersuites", NULL);
  o->cache_on = tc_optboolean(L, 1, "session_cache", 1);
  o->cache_max = tc_optinteger(L, 1, "session_cache_max", 0, 0, 1e7);
  o->timeout = tc_optnumber(L, 1, "session_timeout", 0, 0, 1e9);
  o->ticket_reuse = tc_optboolean(L, 1, "ticket_reuse", 0);
  o->tickets_max = (int)tc_optinteger(L, 1, "session_tickets_max", TC_DEFAULT_TICKETS, 1, TC_MAX_TICKETS);
}

static void free_session(void *sess) { SSL_SESSION_free((SSL_SESSION *)sess); }

size_t tc_key(char *buf, size_t cap, const char *host, int port,
              const char *sni, const unsigned char *alpn, size_t alpnlen) {
  size_t n = tc_key_prefix(buf, cap, host, port), sl = sni ? strlen(sni) : 0;
  if (n == 0 || n + sl + 1 + alpnlen > cap) return 0;
  memcpy(buf + n, sni ? sni : "", sl);
  n += sl;
  buf[n++] = '\0';
  if (alpnlen) memcpy(buf + n, alpn, alpnlen);
  return n + alpnlen;
}

size_t tc_key_prefix(char *buf, size_t cap, const char *host, int port) {
  int n = snprintf(buf, cap, "%s%c%d%c", host, 0, port, 0);
  return (n < 0 || (size_t)n >= cap) ? 0 : (size_t)n;
}

/* The digest of every setting that decides whom a session may be resumed
 * with: saved sessions carry it and are refused under other settings. */
static void digest_file(EVP_MD_CTX *md, const char *path) {
  unsigned char buf[4096];
  size_t n;
  FILE *f;
  EVP_DigestUpdate(md, path, strlen(path) + 1);
  f = fopen(path, "rb");
  if (f == NULL) return;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(md, buf, n);
  fclose(f);
}

static void digest_str(EVP_MD_CTX *md, const char *tag, const char *s) {
  EVP_DigestUpdate(md, tag, strlen(tag) + 1);
  if (s) EVP_DigestUpdate(md, s, strlen(s) + 1);
  else EVP_DigestUpdate(md, "", 1);
}

static int fingerprint(tc_vhost *vh, const vh_opts *o) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  char num[64];
  int ok;
  if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
    EVP_MD_CTX_free(md);
    return 0;
  }
  snprintf(num, sizeof num, "v1 verify=%d min=%d max=%d", o->verify, o->minp, o->maxp);
  digest_str(md, "settings", num);
  digest_str(md, "cafile", NULL);
  if (o->cafile) digest_file(md, o->cafile);
  digest_str(md, "capath", o->capath);
  digest_str(md, "certificate", NULL);
  if (o->cert) digest_file(md, o->cert);
  digest_str(md, "ciphers", o->ciphers);
  digest_str(md, "ciphersuites", o->suites);
  digest_str(md, "alpn", NULL);
  if (vh->alpn) EVP_DigestUpdate(md, vh->alpn, vh->alpnlen);
  ok = EVP_DigestFinal_ex(md, vh->fingerprint, NULL);
  EVP_MD_CTX_free(md);
  return ok;
}

/* Encrypted keys: the vhost's password, or fail at once (never prompt).
 * `asked` tells an encrypted key from a damaged one when loading fails. */
typedef struct pw_state {
  const char *pw;
  int asked;
} pw_state;

static int password_cb(char *buf, int size, int rwflag, void *u) {
  pw_state *ps = (pw_state *)u;
  const char *pw = ps->pw;
  size_t n;
  (void)rwflag;
  ps->asked = 1;
  if (pw == NULL || size <= 0) return 0;
  n = strlen(pw);
  if (n > (size_t)size) return 0;
  memcpy(buf, pw, n);
  return (int)n;
}

/* Runtime problems with the files named: code "io" when a file cannot be
 * read at all, "tls" when OpenSSL refuses its content. */
static int check_readable(tc_err *e, const char *what, const char *path) {
  /* opened, not access()ed: O_NONBLOCK so that a FIFO cannot hang us here,
   * and OpenSSL is given only a regular file (a directory for capath) */
  int dir = strcmp(what, "capath") == 0, fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    tc_seterr(e, "io", "%s %s: %s", what, path, strerror(errno));
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  if (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)) return 1;
  tc_seterr(e, "io", "%s %s: not a %s", what, path, dir ? "directory" : "regular file");
  return 0;
}

static int setup_ctx(tc_vhost *vh, const vh_opts *o, tc_err *e) {
  SSL_CTX *ctx;
  ERR_clear_error();
  ctx = vh->ctx = SSL_CTX_new(TLS_client_method());     /* vh owns it */
  if (ctx == NULL) {
    tc_seterr_ssl(e, "nomem", "SSL_CTX_new");
    return 0;
  }
  SSL_CTX_set_min_proto_version(ctx, proto_versions[o->minp]);
  SSL_CTX_set_max_proto_version(ctx, proto_versions[o->maxp]);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (o->verify == 0) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->cafile && !check_readable(e, "cafile", o->cafile)) return 0;
    if (o->capath && !check_readable(e, "capath", o->capath)) return 0;
    if (o->cafile || o->capath) {
      if (!SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath)) {
        tc_seterr_ssl(e, "tls", o->cafile ? o->cafile : o->capath);
        return 0;
      }
    } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
      tc_seterr_ssl(e, "tls", "default trust store");
      return 0;
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  if (o->cert) {
    const char *key = o->key ? o->key : o->cert;
    pw_state ps;                       /* the callback's, while the files load */
    ps.pw = vh->password;
    ps.asked = 0;
    if (!check_readable(e, "certificate", o->cert) || !check_readable(e, "key", key)) return 0;
    /* our callback, always: OpenSSL's default one would prompt on a terminal */
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &ps);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
      SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);   /* ps goes out of scope */
      tc_seterr_ssl(e, "tls", o->cert);
      return 0;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
      /* a certificate file without its key: OpenSSL 3 only says "unsupported" */
      unsigned long first = ERR_peek_error();
      SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
      if (o->key == NULL && !ps.asked && (ERR_GET_REASON(first) == ERR_R_UNSUPPORTED ||
                                          ERR_GET_REASON(first) == PEM_R_NO_START_LINE)) {
        ERR_clear_error();
        tc_seterr(e, "tls", "%s: no private key in the certificate file (set 'key')", key);
      } else if (ps.asked && ps.pw == NULL) {
        ERR_clear_error();
        tc_seterr(e, "tls", "%s: the key is encrypted (set 'password')", key);
      } else if (ps.asked) {
        ERR_clear_error();
        tc_seterr(e, "tls", "%s: cannot decrypt the key (wrong password?)", key);
      } else {
        tc_seterr_ssl(e, "tls", key);
      }
      return 0;
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_check_private_key(ctx) != 1) {
      tc_seterr_ssl(e, "tls", "key does not match certificate");
      return 0;
    }
  }
  if (o->ciphers && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1) {
    tc_seterr_ssl(e, "tls", "ciphers");
    return 0;
  }
  if (o->suites && SSL_CTX_set_ciphersuites(ctx, o->suites) != 1) {
    tc_seterr_ssl(e, "tls", "ciphersuites");
    return 0;
  }
  if (o->ciphers || o->suites) {
    /* lists valid each but leaving nothing for the protocol range
     * (ciphersuites = "" with TLS 1.3 only) fail here, not at every connect */
    SSL *probe = SSL_new(ctx);
    STACK_OF(SSL_CIPHER) *sk = probe ? SSL_get1_supported_ciphers(probe) : NULL;
    int n = sk ? sk_SSL_CIPHER_num(sk) : 0;
    sk_SSL_CIPHER_free(sk);
    SSL_free(probe);
    if (n <= 0) {
      ERR_clear_error();
      tc_seterr(e, "tls", "ciphers, ciphersuites: no cipher left for the protocol range");
      return 0;
    }
  }
  if (vh->alpn && SSL_CTX_set_alpn_protos(ctx, vh->alpn, (unsigned)vh->alpnlen) != 0) {
    tc_seterr_ssl(e, "tls", "alpn");
    return 0;
  }
  if (o->cache_on) {
    /* we keep sessions ourselves, keyed by host; OpenSSL only tells us */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, tc_conn_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  return 1;
}

static tc_vhost *tovhost(lua_State *L, int idx) {
  return (tc_vhost *)luaL_checkudata(L, idx, TC_VHOST_MT);
}

tc_vhost *tc_checkvhost(lua_State *L, int idx) {
  tc_vhost *vh = tovhost(L, idx);
  if (vh->closed) luaL_error(L, "attempt to use a closed vhost");
  return vh;
}

static void forget_password(tc_vhost *vh) {
  if (vh->password) {
    OPENSSL_cleanse(vh->password, strlen(vh->password));
    free(vh->password);
    vh->password = NULL;
  }
}

static void release(tc_vhost *vh) {
  if (!vh->closed) {
    vh->closed = 1;
    SSL_CTX_free(vh->ctx);         /* connections keep their own reference */
    vh->ctx = NULL;
    if (vh->store) {
      tc_store_close(vh->store);   /* late tickets of live connections are dropped */
      tc_store_unref(vh->store);
      vh->store = NULL;
    }
    free(vh->name);
    vh->name = NULL;
    free(vh->alpn);
    vh->alpn = NULL;
    forget_password(vh);
  }
}

/* vh:close() -> true; also __gc and __close: never raises */
static int vh_close(lua_State *L) {
  release(tovhost(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

/* tlscache.vhost{...} -> vhost | nil, msg, code */
static int vh_new(lua_State *L) {
  vh_opts o;
  tc_vhost *vh;
  tc_config cfg;
  tc_err e;
  memset(&o, 0, sizeof o);
  if (lua_isnone(L, 1)) lua_newtable(L);
  read_options(L, &o);
  lua_settop(L, 1);
  vh = (tc_vhost *)lua_newuserdata(L, sizeof *vh);
  memset(vh, 0, sizeof *vh);
  vh->closed = 1;                  /* born closed: __gc is safe from here on */
  luaL_getmetatable(L, TC_VHOST_MT);
  lua_setmetatable(L, -2);
  tc_optalpn(L, 1, "alpn", &vh->alpn, &vh->alpnlen);   /* may raise; vh owns it */
  vh->closed = 0;
  vh->name = tc_strdup(o.name, o.namelen);
  if (o.password) vh->password = tc_strdup(o.password, strlen(o.password));
  memset(&cfg, 0, sizeof cfg);
  cfg.max = (size_t)o.cache_max;
  cfg.tickets_max = o.tickets_max;
  cfg.ticket_reuse = o.ticket_reuse;
  if (RAND_bytes((unsigned char *)&cfg.seed, sizeof cfg.seed) != 1) cfg.seed = (uint64_t)(uintptr_t)vh;
  vh->store = tc_store_new(&cfg, free_session);
  if (vh->name == NULL || vh->store == NULL || (o.password && vh->password == NULL)) {
    release(vh);
    return tc_fail(L, "nomem", "not enough memory");
  }
  vh->verify = o.verify == 0;
  vh->cache_on = o.cache_on;
  vh->session_timeout = o.timeout;
  e.code = NULL;
  if (!setup_ctx(vh, &o, &e) || !fingerprint(vh, &o)) {
    release(vh);
    if (e.code == NULL) tc_seterr(&e, "nomem", "fingerprint");
    return tc_pusherr(L, &e);
  }
  forget_password(vh);
  return 1;
}

/* A Lua allocation can run finalizers, and a collected connection's __gc
 * stores the tickets it still had (evicting an entry when the cache is
 * full), a user's __gc may even close the vhost. So the methods below copy
 * what they report out of the cache in pure C first, and only then build
 * their Lua tables: no pointer into the cache is held across a Lua call
 * (persist.c keeps the same rule). */

/* vh:stats() -> table */
static int vh_stats(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  tc_stats st;
  size_t size, max;
  int enabled = vh->cache_on;
  tc_purge(vh->store, tc_now());
  st = *tc_statsp(vh->store);
  size = tc_size(vh->store);
  max = tc_max(vh->store);
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, (lua_Integer)size); lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)max); lua_setfield(L, -2, "max");
#define F(x) lua_pushinteger(L, (lua_Integer)st.x); lua_setfield(L, -2, #x)
  F(hits); F(misses); F(stores); F(evictions); F(expired);
  F(offered); F(resumed); F(rejected); F(loaded);
#undef F
  lua_pushboolean(L, enabled); lua_setfield(L, -2, "enabled");
  return 1;
}

static const char *proto_name(const SSL_SESSION *s) {
  switch (SSL_SESSION_get_protocol_version(s)) {
    case TLS1_3_VERSION: return "TLSv1.3";
    case TLS1_2_VERSION: return "TLSv1.2";
    default: return "unknown";
  }
}

/* One entry of vh:sessions(), copied out of the cache. */
typedef struct sess_row {
  size_t koff, klen;           /* its key, in the bytes after the rows */
  const char *protocol;        /* static */
  int tickets;
  double age, expires_in;
} sess_row;

/* Copy every live entry into rows[0..nrows) and their keys into keys[0..kcap).
 * Returns the number copied, or -1 when they do not fit (the cache grew). */
static long copy_rows(tc_store *st, double now, sess_row *rows, size_t nrows, char *keys,
                      size_t kcap) {
  const tc_entry *e = NULL;
  size_t n = 0, off = 0;
  while ((e = tc_next(st, e)) != NULL) {
    size_t klen;
    const char *k = tc_entry_key(e, &klen);
    double expires = 0;
    tc_item it;
    int i;
    if (n == nrows || klen > kcap - off) return -1;
    for (i = 0; tc_entry_item(e, i, &it); i++)
      if (it.expires > expires) expires = it.expires;
    tc_entry_item(e, 0, &it);
    memcpy(keys + off, k, klen);
    rows[n].koff = off;
    rows[n].klen = klen;
    rows[n].protocol = proto_name((SSL_SESSION *)it.sess);
    rows[n].tickets = tc_entry_count(e);
    rows[n].age = now - it.stored;
    rows[n].expires_in = expires - now;
    off += klen;
    n++;
  }
  return (long)n;
}

/* vh:sessions() -> { {host, port, servername, protocol, tickets, age, expires_in}, ... } */
static int vh_sessions(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  double now = tc_now();
  sess_row *rows;
  const char *keys;
  long n, r;
  for (;;) {                           /* until no finalizer changed the cache meanwhile */
    const tc_entry *e = NULL;
    size_t count = 0, bytes = 0, klen;
    tc_purge(vh->store, now);
    while ((e = tc_next(vh->store, e)) != NULL) {
      tc_entry_key(e, &klen);
      count++;
      bytes += klen;
    }
    lua_settop(L, 1);
    rows = (sess_row *)lua_newuserdata(L, count * sizeof *rows + bytes + 1);
    vh = tc_checkvhost(L, 1);          /* a finalizer may have closed it */
    n = copy_rows(vh->store, now, rows, count, (char *)(rows + count), bytes);
    if (n >= 0) {
      keys = (const char *)(rows + count);
      break;
    }
  }
  lua_createtable(L, (int)n, 0);
  for (r = 0; r < n; r++) {
    const char *k = keys + rows[r].koff;
    size_t klen = rows[r].klen, hl, pl, sl;
    hl = strlen(k);
    pl = strlen(k + hl + 1);
    sl = strlen(k + hl + pl + 2);
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, k, hl); lua_setfield(L, -2, "host");
    lua_pushinteger(L, atoi(k + hl + 1)); lua_setfield(L, -2, "port");
    if (sl) { lua_pushlstring(L, k + hl + pl + 2, sl); lua_setfield(L, -2, "servername"); }
    if (klen > hl + pl + sl + 3) {
      /* the per-connection ALPN override, as the array it was given as */
      const unsigned char *a = (const unsigned char *)k + hl + pl + sl + 3;
      const unsigned char *end = (const unsigned char *)k + klen;
      int j = 0;
      lua_newtable(L);
      while (a < end && a + 1 + a[0] <= end) {
        lua_pushlstring(L, (const char *)a + 1, a[0]);
        lua_rawseti(L, -2, ++j);
        a += 1 + a[0];
      }
      lua_setfield(L, -2, "alpn");
    }
    lua_pushstring(L, rows[r].protocol); lua_setfield(L, -2, "protocol");
    lua_pushinteger(L, rows[r].tickets); lua_setfield(L, -2, "tickets");
    lua_pushnumber(L, rows[r].age); lua_setfield(L, -2, "age");
    lua_pushnumber(L, rows[r].expires_in); lua_setfield(L, -2, "expires_in");
    lua_rawseti(L, -2, (int)r + 1);
  }
  return 1;
}

/* vh:flush([host, port]) -> number of entries removed */
static int vh_flush(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  char key[TC_KEY_MAX];
  size_t n = 0;
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3)) {
    lua_pushinteger(L, (lua_Integer)tc_flush(vh->store, "", 0));
    return 1;
  }
  {
    const char *host = tc_checkcstring(L, 2, NULL);
    int port = tc_checkport(L, 3);
    n = tc_key_prefix(key, sizeof key, host, port);
    if (n == 0) luaL_argerror(L, 2, "host name too long");
  }
  lua_pushinteger(L, (lua_Integer)tc_flush(vh->store, key, n));
  return 1;
}

static int vh_tostring(lua_State *L) {
  tc_vhost *vh = tovhost(L, 1);
  char name[256];                      /* a copy: pushing may run a finalizer */
  if (vh->closed) {
    lua_pushliteral(L, "tlscache.vhost (closed)");
  } else {
    snprintf(name, sizeof name, "%s", vh->name);
    lua_pushfstring(L, "tlscache.vhost %s (%p)", name, (void *)vh);
  }
  return 1;
}

static const luaL_Reg vh_methods[] = {
  { "connect", tc_conn_connect },
  { "stats", vh_stats },
  { "sessions", vh_sessions },
  { "flush", vh_flush },
  { "session_save", tc_persist_session_save },
  { "session_load", tc_persist_session_load },
  { "save_file", tc_persist_save_file },
  { "load_file", tc_persist_load_file },
  { "close", vh_close },
  { NULL, NULL }
};

static const luaL_Reg vh_metamethods[] = {
  { "__gc", vh_close },
  { "__close", vh_close },
  { "__tostring", vh_tostring },
  { NULL, NULL }
};

int tc_vhost_open(lua_State *L) {
  luaL_newmetatable(L, TC_VHOST_MT);
  tc_setfuncs(L, vh_metamethods, 0);
  lua_newtable(L);
  tc_setfuncs(L, vh_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, vh_new);
  lua_setfield(L, -2, "vhost");
  return 0;
}
