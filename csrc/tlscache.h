/*
 * Declarations shared by the parts of tlscache.core. Each part (vhost.c,
 * conn.c, net.c, util.c, persist.c) keeps everything else static.
 */
#ifndef TLSCACHE_H
#define TLSCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "compat.h"
#include "cache.h"

#define TC_VERSION "tlscache 0.1.0"
#define TC_VHOST_MT "tlscache.vhost"
#define TC_CONN_MT "tlscache.connection"

#if defined(__GNUC__)
#define TC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TC_PRINTF(a, b)
#endif

/* ---- util.c: errors, clocks, option tables ---- */

/* A runtime failure on its way to Lua as nil, "code: detail", code. */
typedef struct tc_err {
  const char *code;            /* static string: "timeout", "tls", ... */
  char msg[256];
} tc_err;

void tc_seterr(tc_err *e, const char *code, const char *fmt, ...) TC_PRINTF(3, 4);
/* detail from the first queued OpenSSL error (or `what` alone); clears the queue */
void tc_seterr_ssl(tc_err *e, const char *code, const char *what);
int tc_pusherr(lua_State *L, const tc_err *e);       /* returns 3 */
int tc_fail(lua_State *L, const char *code, const char *fmt, ...) TC_PRINTF(3, 4);

double tc_now(void);           /* monotonic seconds */
int64_t tc_wallnow(void);      /* Unix seconds */

/* Options tables: raise on anything but a table or nil, and on unknown keys. */
void tc_checkoptions(lua_State *L, int idx, const char *const known[]);
int tc_optboolean(lua_State *L, int idx, const char *k, int def);
lua_Number tc_optnumber(lua_State *L, int idx, const char *k, lua_Number def,
                        lua_Number min, lua_Number max);
/* tc_optnumber that also raises on a fraction */
lua_Number tc_optinteger(lua_State *L, int idx, const char *k, lua_Number def,
                         lua_Number min, lua_Number max);
const char *tc_optstring(lua_State *L, int idx, const char *k, size_t *len);
int tc_optenum(lua_State *L, int idx, const char *k, int def, const char *const names[]);
char *tc_strdup(const char *s, size_t n);
/* a string argument with no embedded NUL (host names, paths) */
const char *tc_checkcstring(lua_State *L, int arg, size_t *len);
int tc_checkport(lua_State *L, int arg);

/* The SNI name of a tuple from opts.servername: the string given, none for
 * false, else host unless it is an IP literal. Raises when bad. The result
 * points into opts or at host. */
const char *tc_optservername(lua_State *L, int idx, const char *host, size_t *len);
int tc_is_ip_literal(const char *host);
/* Is the certificate valid for this DNS name or IP literal? */
int tc_cert_matches(X509 *peer, const char *name);

/* ALPN: a string or an array of strings into wire format (raises when bad).
 * Leaves nothing on the stack; *out is malloc'd (NULL when absent). */
void tc_optalpn(lua_State *L, int idx, const char *k, unsigned char **out, size_t *len);

/* ---- net.c: resolve, connect, wait, the socket BIO ---- */

int tc_net_init(void);
void tc_net_done(void);   /* one call per successful tc_net_init */
/* Resolve and connect (every address tried) before `deadline` (< 0: none).
 * Returns a connected non-blocking socket, or -1 with *e set. */
int tc_net_connect(const char *host, int port, double deadline, tc_err *e);
/* Wait for fd to be readable (or writable). 1 ready, 0 timed out, -1 error. */
int tc_net_wait(int fd, int forwrite, double deadline);
/* A BIO on fd whose writes never raise SIGPIPE; does not own fd. It holds
 * a reference on its BIO method: call tc_net_done() once it is freed. */
BIO *tc_net_bio(int fd);

/* ---- vhost.c ---- */

typedef struct tc_vhost {
  SSL_CTX *ctx;                /* owns one reference */
  tc_store *store;             /* owns one reference */
  char *name;                  /* owned */
  int verify;                  /* 1: chain and host name checked */
  int cache_on;                /* session_cache */
  double session_timeout;      /* seconds, 0: the session's own */
  unsigned char *alpn;         /* wire format, owned; NULL: none */
  size_t alpnlen;
  char *password;              /* owned, only while keys are loaded */
  unsigned char fingerprint[32]; /* digest of the security settings */
  int closed;
} tc_vhost;

tc_vhost *tc_checkvhost(lua_State *L, int idx);   /* raises when closed */
int tc_vhost_open(lua_State *L);

/* Cache keys: host \0 port \0 servername \0 alpn-wire. Returns the length
 * written, or 0 when it does not fit. */
size_t tc_key(char *buf, size_t cap, const char *host, int port,
              const char *sni, const unsigned char *alpn, size_t alpnlen);
/* The host \0 port \0 prefix every key of that tuple starts with. */
size_t tc_key_prefix(char *buf, size_t cap, const char *host, int port);
#define TC_KEY_MAX 1024

/* ---- conn.c ---- */

int tc_conn_open(lua_State *L);
int tc_conn_connect(lua_State *L);                 /* vh:connect */
int tc_conn_new_session(SSL *ssl, SSL_SESSION *sess);  /* SSL_CTX callback */
/* Lifetime a fresh session may be kept, in seconds (0: do not store). */
double tc_session_lifetime(SSL_SESSION *sess, double cap);

/* ---- persist.c: saving and loading sessions ---- */

int tc_persist_session_save(lua_State *L);         /* vh:session_save */
int tc_persist_session_load(lua_State *L);         /* vh:session_load */
int tc_persist_save_file(lua_State *L);            /* vh:save_file */
int tc_persist_load_file(lua_State *L);            /* vh:load_file */

#endif
