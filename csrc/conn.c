/*
 * Connections: a socket, an SSL object and a read buffer, with the
 * LuaSocket-style send/receive/close on top.
 *
 * Every OpenSSL call runs on a non-blocking socket and reports "want read"
 * or "want write"; the blocking calls loop over those steps with poll() and
 * a deadline (`again`), so an event-loop interface can drive the same steps
 * without a rewrite.
 *
 * Sessions are captured by the new-session callback below, which OpenSSL
 * calls at the end of a TLS 1.2 handshake and for each TLS 1.3 ticket
 * whenever it is read (inside SSL_read, also during close). The callback is
 * pure C: it reaches the connection through ex_data, and the connection
 * holds a reference on the store, so a late ticket never finds freed memory.
 */
#define _GNU_SOURCE
#include "tlscache.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define BUFSIZE 16384
#define TLS13_CAP (7.0 * 24 * 3600)   /* RFC 8446 4.6.1 */
#define TLS12_CAP (24.0 * 3600)       /* RFC 5246 F.1.4 */
#define DEFAULT_TIMEOUT 30.0

typedef struct tc_conn {
  int fd;                      /* owned, -1 when none */
  SSL *ssl;                    /* owns one reference */
  tc_store *store;             /* owns one reference; NULL: caching off */
  char *key;                   /* owned: host \0 port \0 sni \0 alpn */
  size_t klen;
  const char *host, *sni;      /* point into key; sni NULL when none sent */
  int port;
  unsigned char *alpn;         /* owned per-connection override, or NULL */
  size_t alpnlen;
  int verify;
  double lifetime_cap;         /* the vhost's session_timeout, 0: none */
  double timeout;              /* I/O timeout in seconds, < 0: block */
  int closed, broken, handshaked;
  int offered, reused, owned;
  int offered_loaded;          /* the session offered came from saved data */
  int netref;                  /* ssl's BIO holds a reference on the BIO method */
  uint64_t offered_id;
  SSL_SESSION *offered_sess;   /* owns one reference until the handshake ends */
  int captured;                /* sessions this connection delivered */
  size_t first, last;          /* unread bytes are buf[first..last) */
  char *wpend;                 /* owned, or NULL: a chunk of a send that timed out, */
  size_t wpendlen;             /* wpend[0..wpendlen) must be written before all else */
  char buf[BUFSIZE];
} tc_conn;

static int conn_index = -1;    /* SSL ex_data slot pointing at the tc_conn */

enum { WANT_READ = 1, WANT_WRITE = 2 };

double tc_session_lifetime(SSL_SESSION *sess, double cap) {
  unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(sess);
  long tmo = SSL_SESSION_get_timeout(sess);
  double life;
  if (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION) {
    if (hint == 0) return 0;   /* RFC 8446 4.6.1: zero means discard at once */
    life = (double)hint;       /* a ticket's own lifetime is its hint */
    if (life > TLS13_CAP) life = TLS13_CAP;
  } else {
    /* RFC 5077: a hint of zero means unspecified, the library's timeout rules */
    life = tmo > 0 ? (double)tmo : TLS12_CAP;
    if (SSL_SESSION_has_ticket(sess) && hint > 0 && (double)hint < life) life = (double)hint;
    if (life > TLS12_CAP) life = TLS12_CAP;
  }
  if (cap > 0 && cap < life) life = cap;
  return life;
}

int tc_conn_new_session(SSL *ssl, SSL_SESSION *sess) {
  tc_conn *c = (tc_conn *)SSL_get_ex_data(ssl, conn_index);
  SSL_SESSION *copy;
  double now, life;
  if (c == NULL || c->store == NULL || tc_store_closed(c->store)) return 0;
  if (c->verify && SSL_get_verify_result(ssl) != X509_V_OK) return 0;
  if (!SSL_SESSION_is_resumable(sess)) return 0;
  life = tc_session_lifetime(sess, c->lifetime_cap);
  if (life <= 0) return 0;
  /* OpenSSL marks the connection's own session object not resumable after a
   * fatal alert, an unexpected EOF or a free without close_notify: the
   * cache keeps a copy that nothing else touches */
  copy = SSL_SESSION_dup(sess);
  if (copy == NULL) return 0;
  now = tc_now();
  if (tc_put(c->store, c->key, c->klen, copy,      /* the store owns copy */
             SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION,
             now, now + life, tc_wallnow() + (int64_t)life))
    c->captured++;
  return 0;                    /* we kept no reference to sess itself */
}

/* ---- errors ---- */

/* After an SSL call returned ret <= 0: WANT_READ / WANT_WRITE, or -1 with
 * *e set. Fatal errors mark the connection broken (no close_notify). */
static int classify(tc_conn *c, int ret, tc_err *e) {
  int err = SSL_get_error(c->ssl, ret);
  unsigned long first;
  switch (err) {
    case SSL_ERROR_WANT_READ: return WANT_READ;
    case SSL_ERROR_WANT_WRITE: return WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
      tc_seterr(e, "closed", "connection closed by peer");
      break;
    case SSL_ERROR_SYSCALL:
      c->broken = 1;
      if (errno == 0 || errno == EPIPE || errno == ECONNRESET)
        tc_seterr(e, "closed", "%s", errno ? strerror(errno) : "connection closed by peer");
      else
        tc_seterr(e, "io", "%s", strerror(errno));
      break;
    case SSL_ERROR_SSL:
      c->broken = 1;
      first = ERR_peek_error();
      if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
          ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        tc_seterr(e, "closed", "connection closed by peer without close_notify");
      } else if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
                 ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        tc_seterr(e, "verify", "%s",
                  X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
      } else {
        tc_seterr_ssl(e, "tls", c->handshaked ? "TLS error" : "handshake failed");
      }
      break;
    default:
      c->broken = 1;
      tc_seterr(e, "tls", "unexpected SSL error %d", err);
  }
  ERR_clear_error();
  return -1;
}

/* After an SSL call returned ret <= 0: wait as it asks, up to deadline
 * (< 0: none). 1 = call it again, 0 = failed with *e set. */
static int again(tc_conn *c, int ret, double deadline, tc_err *e) {
  int want = classify(c, ret, e), r;
  if (want < 0) return 0;
  r = tc_net_wait(c->fd, want == WANT_WRITE, deadline);
  if (r > 0) return 1;
  if (r == 0) tc_seterr(e, "timeout", "timed out");
  else tc_seterr(e, "io", "poll: %s", strerror(errno));
  return 0;
}

static double deadline_of(double timeout) {
  return timeout < 0 ? -1 : tc_now() + timeout;
}

/* ---- life cycle ---- */

static tc_conn *toconn(lua_State *L, int idx) {
  return (tc_conn *)luaL_checkudata(L, idx, TC_CONN_MT);
}

/* Read, without blocking, what the server already sent (so that TLS 1.3
 * tickets get cached), send close_notify once, free everything. Never
 * blocks: the socket is non-blocking and nothing here waits. */
static void release(tc_conn *c) {
  if (c->closed) return;
  c->closed = 1;
  if (c->ssl) {
    if (c->handshaked && !c->broken) {
      char tmp[4096];
      int i;
      for (i = 0; i < 64; i++) {            /* bounded: a server may stream */
        int n;
        ERR_clear_error();
        n = SSL_read(c->ssl, tmp, sizeof tmp);
        if (n <= 0) {
          int err = SSL_get_error(c->ssl, n);
          if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL) c->broken = 1;
          break;
        }
      }
      ERR_clear_error();
      if (!c->broken && c->wpendlen > 0) {   /* one try, without blocking */
        if (SSL_write(c->ssl, c->wpend, (int)c->wpendlen) != (int)c->wpendlen) c->broken = 1;
      }
      ERR_clear_error();
      if (!c->broken) SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->netref) tc_net_done();        /* after SSL_free: its BIO used the method */
  c->netref = 0;
  SSL_SESSION_free(c->offered_sess);   /* a handshake that failed */
  c->offered_sess = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (c->store) tc_store_unref(c->store);
  c->store = NULL;
  free(c->key);
  c->key = NULL;
  c->host = c->sni = NULL;
  free(c->alpn);
  c->alpn = NULL;
  free(c->wpend);
  c->wpend = NULL;
  c->wpendlen = 0;
  c->first = c->last = 0;
}

/* conn:close() -> true; also __gc and __close: idempotent, never raises */
static int conn_close(lua_State *L) {
  release(toconn(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

/* Offer a cached session for this connection's entry, if any. */
static void offer(tc_conn *c) {
  tc_item it;
  SSL_SESSION *s;
  if (!tc_take(c->store, c->key, c->klen, tc_now(), &it)) return;
  if (it.owned) {
    s = (SSL_SESSION *)it.sess;             /* single-use ticket: ours now */
  } else {
    s = SSL_SESSION_dup((SSL_SESSION *)it.sess);   /* the cached one stays pristine */
    if (s == NULL) return;
  }
  if (SSL_set_session(c->ssl, s) == 1) {    /* takes its own reference */
    c->offered = 1;
    c->owned = it.owned;
    c->offered_loaded = it.loaded;
    c->offered_id = it.id;
    tc_statsp(c->store)->offered++;
    c->offered_sess = s;                    /* ours until the handshake ends */
  } else {
    SSL_SESSION_free(s);
  }
}

/* After a resumption OpenSSL checks no certificate: a session may only be
 * resumed for a name its peer certificate is valid for. A session captured
 * here was verified for exactly this name (the name is part of its cache
 * key), so only loaded sessions need the check; it costs ~9,000
 * instructions, 2% of a resumed TLS 1.2 connection. */
static int resumed_name_ok(tc_conn *c) {
  return tc_cert_matches(SSL_get0_peer_certificate(c->ssl), c->sni ? c->sni : c->host);
}

static int handshake(tc_conn *c, double deadline, tc_err *e) {
  for (;;) {
    int r;
    ERR_clear_error();
    r = SSL_connect(c->ssl);
    if (r == 1) break;
    if (!again(c, r, deadline, e)) return 0;
  }
  c->handshaked = 1;
  c->reused = SSL_session_reused(c->ssl);
  if (c->offered && c->store) {
    if (c->reused) {
      tc_statsp(c->store)->resumed++;
    } else {
      /* refused by the server: never offer it again. A refused TLS 1.3
       * ticket means the server lost its ticket keys or its cache (a
       * restart): the entry's older tickets are as dead, so they go too,
       * before this connection's new tickets arrive. A TLS 1.2 server's new
       * session was already captured during this handshake, so only the
       * refused one goes. */
      tc_statsp(c->store)->rejected++;
      if (SSL_version(c->ssl) == TLS1_3_VERSION) tc_remove(c->store, c->key, c->klen);
      else if (!c->owned) tc_drop(c->store, c->key, c->klen, c->offered_id);
    }
  }
  if (c->reused && c->verify && c->offered_loaded && !resumed_name_ok(c)) {
    c->broken = 1;
    tc_seterr(e, "verify", "resumed session's certificate does not match %s",
              c->sni ? c->sni : c->host);
    return 0;
  }
  /* RFC 5077 3.3: a TLS 1.2 server may renew the ticket in an abbreviated
   * handshake (nginx does when the ticket's key is no longer the newest),
   * and the client should use the new one. OpenSSL then replaces the
   * connection's session object but calls the new-session callback only
   * after full handshakes: capture it here, or the old ticket is offered
   * until the server retires its key and refuses it. */
  if (c->reused && c->offered_sess && SSL_get0_session(c->ssl) != c->offered_sess &&
      SSL_version(c->ssl) != TLS1_3_VERSION)
    tc_conn_new_session(c->ssl, SSL_get0_session(c->ssl));
  SSL_SESSION_free(c->offered_sess);
  c->offered_sess = NULL;
  return 1;
}

static const char *const connect_options[] = { "timeout", "servername", "alpn", "resume", NULL };

/* vh:connect(host, port [, opts]) -> conn | nil, msg, code */
int tc_conn_connect(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  size_t hostlen, snilen = 0, klen;
  const char *host = tc_checkcstring(L, 2, &hostlen);
  int port = tc_checkport(L, 3), resume;
  const char *sni;
  double timeout, deadline;
  char key[TC_KEY_MAX];
  tc_conn *c;
  tc_err e;
  BIO *bio;
  tc_checkoptions(L, 4, connect_options);
  timeout = tc_optnumber(L, 4, "timeout", DEFAULT_TIMEOUT, 0, 1e9);
  resume = tc_optboolean(L, 4, "resume", 1);
  sni = tc_optservername(L, 4, host, &snilen);
  lua_settop(L, 4);

  c = (tc_conn *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, offsetof(tc_conn, buf));
  c->fd = -1;
  c->closed = 1;                   /* born closed: __gc is safe from here on */
  luaL_getmetatable(L, TC_CONN_MT);
  lua_setmetatable(L, -2);
  tc_optalpn(L, 4, "alpn", &c->alpn, &c->alpnlen);   /* may raise; c owns it */
  c->closed = 0;                   /* from here on __gc frees what c holds */
  vh = tc_checkvhost(L, 1);        /* the allocations above may have run a __gc that closed it */
  klen = tc_key(key, sizeof key, host, port, sni, c->alpn, c->alpnlen);
  if (klen == 0) {
    release(c);
    return luaL_argerror(L, 2, "host, servername and alpn too long together (1 KiB at most)");
  }
  c->key = tc_strdup(key, klen);
  if (c->key == NULL) {
    release(c);
    return tc_fail(L, "nomem", "not enough memory");
  }
  c->klen = klen;
  c->host = c->key;
  c->sni = sni ? c->key + hostlen + 1 + strlen(c->key + hostlen + 1) + 1 : NULL;
  c->port = port;
  c->verify = vh->verify;
  c->lifetime_cap = vh->session_timeout;
  c->timeout = timeout;
  deadline = deadline_of(timeout);

  c->fd = tc_net_connect(c->host, port, deadline, &e);
  if (c->fd < 0) goto fail;
  ERR_clear_error();
  c->ssl = SSL_new(vh->ctx);           /* holds its own reference on the ctx */
  bio = c->ssl ? tc_net_bio(c->fd) : NULL;
  if (bio == NULL) {
    tc_seterr_ssl(&e, "nomem", "SSL_new");
    goto fail;
  }
  c->netref = 1;
  SSL_set_bio(c->ssl, bio, bio);       /* the SSL owns bio */
  SSL_set_ex_data(c->ssl, conn_index, c);
  /* RFC 6066 3: an IP literal is verified (below) but never sent as SNI */
  if (c->sni && !tc_is_ip_literal(c->sni) && !SSL_set_tlsext_host_name(c->ssl, c->sni)) {
    tc_seterr_ssl(&e, "tls", "servername");
    goto fail;
  }
  if (c->verify) {
    const char *name = c->sni ? c->sni : c->host;
    int ok;
    SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (tc_is_ip_literal(name))
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
    else
      ok = SSL_set1_host(c->ssl, name);
    if (!ok) {
      tc_seterr_ssl(&e, "tls", "host name for verification");
      goto fail;
    }
  }
  if (c->alpn && SSL_set_alpn_protos(c->ssl, c->alpn, (unsigned)c->alpnlen) != 0) {
    tc_seterr_ssl(&e, "tls", "alpn");
    goto fail;
  }
  if (vh->cache_on) {
    c->store = vh->store;
    tc_store_ref(c->store);
    if (resume) offer(c);
  }
  if (!handshake(c, deadline, &e)) {
    /* a session that was accepted and then failed is never retried */
    if (c->offered && c->store) tc_remove(c->store, c->key, c->klen);
    goto fail;
  }
  return 1;
fail:
  release(c);
  return tc_pusherr(L, &e);
}

static tc_conn *checkopen(lua_State *L, tc_err *e) {
  tc_conn *c = toconn(L, 1);
  if (c->closed) tc_seterr(e, "closed", "connection is closed");
  return c;
}

/* nil, err, partial: err is the bare code for closed and timeout as in
 * LuaSocket, the full message otherwise */
static int io_fail(lua_State *L, const tc_err *e) {
  lua_pushnil(L);
  lua_insert(L, -2);
  if (strcmp(e->code, "closed") == 0 || strcmp(e->code, "timeout") == 0)
    lua_pushstring(L, e->code);
  else
    lua_pushstring(L, e->msg);
  lua_insert(L, -2);
  return 3;
}

/* ---- send ---- */

/* Write data[0..n), n <= BUFSIZE. 0 = done, -1 = *e set; *done = the bytes
 * written or committed. On a timeout the unwritten rest is committed all
 * the same: OpenSSL may already have sealed it into a record it holds, and
 * SSL_write must then be called again with the same data before anything
 * else (else it reports the new data written while the old goes out, or
 * fails with "bad length"). The connection keeps its own copy and the next
 * send finishes it first. */
static int write_chunk(tc_conn *c, const char *data, size_t n, double deadline, tc_err *e,
                       size_t *done) {
  size_t total = n;
  while (n > 0) {
    int r;
    ERR_clear_error();
    r = SSL_write(c->ssl, data, (int)n);
    if (r > 0) {
      data += r;
      n -= (size_t)r;
    } else if (!again(c, r, deadline, e)) {
      break;
    }
  }
  *done = total - n;
  if (n == 0) return 0;
  if (!c->broken && strcmp(e->code, "timeout") == 0) {
    if (c->wpend == NULL && (c->wpend = (char *)malloc(BUFSIZE)) == NULL) {
      c->broken = 1;                   /* the rest is lost: no close_notify */
      tc_seterr(e, "nomem", "not enough memory");
      return -1;
    }
    memmove(c->wpend, data, n);        /* data may point into wpend */
    c->wpendlen = n;
    *done = total;
  }
  return -1;
}

/* Finish what a timed-out send committed, before any other I/O: the peer
 * may wait for it before it answers. 0 = done (or nothing), -1 = *e set. */
static int flush_pending(tc_conn *c, double deadline, tc_err *e) {
  size_t pend = c->wpendlen, done;
  if (pend == 0) return 0;
  c->wpendlen = 0;                     /* write_chunk sets it again on a timeout */
  return write_chunk(c, c->wpend, pend, deadline, e, &done);
}

/* ---- receive ---- */

/* Make sure the buffer holds unread bytes. 0 = ok, -1 = *e set. Every
 * luaL_Buffer addition can run finalizers (Lua allocates), and one of them
 * may close this very connection: the receive loops call this before each
 * use of c->ssl. */
typedef struct rcall {
  double deadline;             /* < 0: none */
  int reads;                   /* records read so far by this call */
} rcall;

static int fill(tc_conn *c, rcall *rc, tc_err *e) {
  if (c->closed) {           /* by a finalizer that ran while the buffer grew */
    tc_seterr(e, "closed", "connection is closed");
    return -1;
  }
  if (c->first < c->last) return 0;
  /* a peer that never stops sending must not hold the call past its
   * deadline (waiting checks it; reading what keeps arriving does not) */
  if (rc->reads > 0 && rc->deadline >= 0 && tc_now() >= rc->deadline) {
    tc_seterr(e, "timeout", "timed out");
    return -1;
  }
  c->first = c->last = 0;
  for (;;) {
    int n;
    ERR_clear_error();
    n = SSL_read(c->ssl, c->buf, sizeof c->buf);
    if (n > 0) {
      c->last = (size_t)n;
      rc->reads++;
      return 0;
    }
    if (!again(c, n, rc->deadline, e)) return -1;
  }
}

static int recv_bytes(tc_conn *c, luaL_Buffer *b, size_t want, rcall *rc, tc_err *e) {
  while (want > 0) {
    size_t n;
    if (fill(c, rc, e) < 0) return -1;
    n = c->last - c->first;
    if (n > want) n = want;
    luaL_addlstring(b, c->buf + c->first, n);
    c->first += n;
    want -= n;
  }
  return 0;
}

static int recv_all(tc_conn *c, luaL_Buffer *b, rcall *rc, tc_err *e) {
  for (;;) {
    if (fill(c, rc, e) < 0)
      return strcmp(e->code, "closed") == 0 ? 0 : -1;   /* end of stream is success */
    luaL_addlstring(b, c->buf + c->first, c->last - c->first);
    c->first = c->last;
  }
}

/* a line ends at LF; CR characters are dropped, as LuaSocket does */
static int recv_line(tc_conn *c, luaL_Buffer *b, rcall *rc, tc_err *e) {
  for (;;) {
    const char *p, *end;
    if (fill(c, rc, e) < 0) return -1;
    p = c->buf + c->first;
    end = c->buf + c->last;
    while (p < end && *p != '\n') {
      if (*p != '\r') luaL_addchar(b, *p);
      p++;
    }
    c->first = (size_t)(p - c->buf);
    if (p < end) {
      c->first++;
      return 0;
    }
  }
}

/* One receive, run under lua_pcall by conn_receive: its buffer grows with
 * what the peer sends, and an allocation failure must become nomem. */
typedef struct rjob {
  tc_conn *c;
  int mode;                    /* 'n', 'a', 'l' */
  size_t count;
  const char *prefix;          /* on conn_receive's stack */
  size_t plen;
  rcall rc;
  int r;
  tc_err e;
} rjob;

static int receive_body(lua_State *L) {
  rjob *j = (rjob *)lua_touserdata(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (j->prefix) luaL_addlstring(&b, j->prefix, j->plen);
  if (j->mode == 'n') j->r = recv_bytes(j->c, &b, j->count, &j->rc, &j->e);
  else if (j->mode == 'a') j->r = recv_all(j->c, &b, &j->rc, &j->e);
  else j->r = recv_line(j->c, &b, &j->rc, &j->e);
  luaL_pushresult(&b);
  return 1;
}

/* conn:receive([pattern [, prefix]]) -> data | nil, err, partial */
static int conn_receive(lua_State *L) {
  rjob j;
  tc_conn *c = toconn(L, 1);
  int st;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.mode = 'l';
  j.prefix = luaL_optlstring(L, 3, NULL, &j.plen);
  if (lua_isnumber(L, 2)) {             /* "10" too, as LuaSocket */
    lua_Number n = lua_tonumber(L, 2);
    luaL_argcheck(L, n >= 0 && n <= (lua_Number)INT_MAX, 2, "byte count out of range");
    j.count = (size_t)n;
    j.mode = 'n';
  } else if (!lua_isnoneornil(L, 2)) {
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (strlen(p) != n) return luaL_argerror(L, 2, "invalid receive pattern");   /* "l\0..." */
    if (*p == '*') p++;
    if (strcmp(p, "l") == 0) j.mode = 'l';
    else if (strcmp(p, "a") == 0) j.mode = 'a';
    else return luaL_argerror(L, 2, "invalid receive pattern");
  }
  lua_settop(L, 3);
  lua_pushcfunction(L, receive_body);  /* allocates under 5.1: before any I/O */
  lua_pushlightuserdata(L, &j);
  j.rc.deadline = deadline_of(c->timeout);
  if (c->closed) {                     /* also by a finalizer that ran just now */
    tc_seterr(&j.e, "closed", "connection is closed");
    lua_pushlstring(L, j.prefix ? j.prefix : "", j.plen);
    return io_fail(L, &j.e);
  }
  /* what a timed-out send committed goes first: the peer may wait for it */
  if (flush_pending(c, j.rc.deadline, &j.e) < 0) {
    lua_pushlstring(L, j.prefix ? j.prefix : "", j.plen);
    return io_fail(L, &j.e);
  }
  st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_ERRMEM) {
    /* the bytes read into the lost buffer are gone from the stream: the
     * connection cannot go on */
    c->broken = 1;
    release(c);
    lua_settop(L, 3);
    tc_seterr(&j.e, "nomem", "not enough memory for the data received (connection closed)");
    lua_pushliteral(L, "");
    return io_fail(L, &j.e);
  }
  if (st != 0) return lua_error(L);    /* not ours (a finalizer's): as without pcall */
  if (j.r < 0) return io_fail(L, &j.e);
  return 1;
}

/* conn:send(data [, i [, j]]) -> last index sent | nil, err, last index sent */
static int conn_send(lua_State *L) {
  tc_err e;
  tc_conn *c = checkopen(L, &e);
  size_t len, sent = 0;
  int r;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
  double deadline;
  /* string.sub's index rules */
  if (i < 0) i = (lua_Integer)len + i + 1;
  if (i < 1) i = 1;
  if (j < 0) j = (lua_Integer)len + j + 1;
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  if (c->closed) {
    lua_pushinteger(L, i - 1);
    return io_fail(L, &e);
  }
  deadline = deadline_of(c->timeout);
  if (flush_pending(c, deadline, &e) < 0) {
    lua_pushinteger(L, i - 1);
    return io_fail(L, &e);
  }
  if (i <= j) {
    size_t start = (size_t)i - 1, total = (size_t)(j - i + 1);
    while (sent < total) {
      size_t chunk = total - sent, done;
      if (chunk > BUFSIZE) chunk = BUFSIZE;
      r = write_chunk(c, data + start + sent, chunk, deadline, &e, &done);
      sent += done;
      if (r < 0) {
        lua_pushinteger(L, i - 1 + (lua_Integer)sent);
        return io_fail(L, &e);
      }
    }
  }
  lua_pushinteger(L, i > j ? i - 1 : j);
  return 1;
}

/* conn:settimeout(seconds [, mode]) -> true; nil or negative: block */
static int conn_settimeout(lua_State *L) {
  tc_conn *c = toconn(L, 1);
  lua_Number t = luaL_optnumber(L, 2, -1);
  if (!lua_isnoneornil(L, 3)) {
    const char *m = luaL_checkstring(L, 3);
    luaL_argcheck(L, m[0] == 'b' || m[0] == 't', 3, "mode must be 'b' or 't'");
  }
  luaL_argcheck(L, t == t, 2, "timeout is NaN");
  c->timeout = t < 0 ? -1 : t;
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:reused() -> boolean */
static int conn_reused(lua_State *L) {
  lua_pushboolean(L, toconn(L, 1)->reused);
  return 1;
}

/* conn:getalpn() -> protocol | nil */
static int conn_getalpn(lua_State *L) {
  tc_conn *c = toconn(L, 1);
  const unsigned char *p = NULL;
  unsigned int n = 0;
  if (c->ssl) SSL_get0_alpn_selected(c->ssl, &p, &n);
  if (n) lua_pushlstring(L, (const char *)p, n);   /* copies before it can allocate */
  else lua_pushnil(L);
  return 1;
}

/* conn:info() -> { protocol, cipher, alpn, reused, offered, servername, host, port, ... } */
static int conn_info(lua_State *L) {
  tc_conn *c = toconn(L, 1);
  /* copied first: building the table can run a finalizer that closes c */
  int closed = c->closed, reused = c->reused, offered = c->offered, verify = c->verify;
  int captured = c->captured, port = c->port;
  const char *version = NULL, *cipher = NULL;      /* static strings of OpenSSL's */
  char key[TC_KEY_MAX], alpn[256];
  size_t hostlen = 0, alpnlen = 0;
  long snioff = -1;
  if (!closed) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    version = SSL_get_version(c->ssl);
    cipher = SSL_get_cipher_name(c->ssl);
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    if (n) memcpy(alpn, p, alpnlen = n);
    memcpy(key, c->key, c->klen);
    hostlen = strlen(c->host);
    if (c->sni) snioff = (long)(c->sni - c->key);
  }
  lua_createtable(L, 0, 12);
  lua_pushboolean(L, reused); lua_setfield(L, -2, "reused");
  lua_pushboolean(L, offered); lua_setfield(L, -2, "offered");
  lua_pushboolean(L, closed); lua_setfield(L, -2, "closed");
  lua_pushinteger(L, captured); lua_setfield(L, -2, "sessions_captured");
  if (closed) return 1;
  lua_pushstring(L, version); lua_setfield(L, -2, "protocol");
  lua_pushstring(L, cipher); lua_setfield(L, -2, "cipher");
  if (alpnlen) lua_pushlstring(L, alpn, alpnlen); else lua_pushnil(L);
  lua_setfield(L, -2, "alpn");
  if (snioff >= 0) { lua_pushstring(L, key + snioff); lua_setfield(L, -2, "servername"); }
  lua_pushlstring(L, key, hostlen); lua_setfield(L, -2, "host");
  lua_pushinteger(L, port); lua_setfield(L, -2, "port");
  lua_pushboolean(L, verify); lua_setfield(L, -2, "verified");
  return 1;
}

/* conn:getfd() -> fd (-1 when closed) */
static int conn_getfd(lua_State *L) {
  lua_pushinteger(L, toconn(L, 1)->fd);
  return 1;
}

/* conn:dirty() -> true when data is buffered and select() would not see it */
static int conn_dirty(lua_State *L) {
  tc_conn *c = toconn(L, 1);
  lua_pushboolean(L, !c->closed && (c->first < c->last || SSL_pending(c->ssl) > 0));
  return 1;
}

static int conn_tostring(lua_State *L) {
  tc_conn *c = toconn(L, 1);
  char host[TC_KEY_MAX];               /* a copy: pushing may run a finalizer */
  if (c->closed) {
    lua_pushliteral(L, "tlscache.connection (closed)");
  } else {
    snprintf(host, sizeof host, "%s", c->host);
    lua_pushfstring(L, "tlscache.connection %s:%d (%p)", host, c->port, (void *)c);
  }
  return 1;
}

static const luaL_Reg conn_methods[] = {
  { "send", conn_send },
  { "receive", conn_receive },
  { "settimeout", conn_settimeout },
  { "close", conn_close },
  { "reused", conn_reused },
  { "info", conn_info },
  { "getalpn", conn_getalpn },
  { "getfd", conn_getfd },
  { "dirty", conn_dirty },
  { NULL, NULL }
};

static const luaL_Reg conn_metamethods[] = {
  { "__gc", conn_close },
  { "__close", conn_close },
  { "__tostring", conn_tostring },
  { NULL, NULL }
};

static void new_conn_index(void) {
  conn_index = SSL_get_ex_new_index(0, (void *)"tlscache", NULL, NULL, NULL);
}

int tc_conn_open(lua_State *L) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;    /* one slot for every Lua state */
  pthread_once(&once, new_conn_index);
  if (conn_index < 0) return luaL_error(L, "tlscache: no SSL ex_data slot");
  luaL_newmetatable(L, TC_CONN_MT);
  tc_setfuncs(L, conn_metamethods, 0);
  lua_newtable(L);
  tc_setfuncs(L, conn_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 0;
}
