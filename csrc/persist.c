/*
 * Saving and loading sessions: per tuple as a string, or the whole cache as
 * a file. The byte format and its crypto are record.c's; this file holds
 * the rules about what may be loaded where, and the files.
 *
 * A saved session is a bearer credential for the server it came from and,
 * after a resumption, stands in for the certificate check that made it
 * (RFC 5246 F.1.4). So loading trusts nothing it has not checked: the
 * record's integrity (digest, or GCM tag under the caller's key), its vhost
 * name, the digest of the vhost's security settings, its tuple and expiry,
 * and each session's own lifetime, protocol and peer certificate.
 *
 * Lua is never called while this file holds memory, a file descriptor, or
 * a pointer borrowed from the cache: a Lua allocation can run a collected
 * connection's __gc, whose late tickets change the cache. Every argument is
 * checked first, the work is pure C, and the results are pushed last.
 */
#define _GNU_SOURCE                    /* mkostemp */
#include "tlscache.h"
#include "record.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/x509v3.h>

#define TLS13_CAP (7.0 * 24 * 3600)    /* the longest any session is kept */
#define FAIL_WRITE_ENV "TLSCACHE_TEST_FAIL_WRITE"

static const char *const tuple_options[] = { "servername", "alpn", "key", NULL };
static const char *const file_options[] = { "key", NULL };

/* ---- arguments (everything that can raise) ---- */

/* opts.key: absent, or exactly 32 bytes (zero bytes allowed, unlike
 * tc_optstring). Read raw, so the string is one the options table itself
 * keeps alive after the pop, not one an __index function made. */
static const unsigned char *optkey(lua_State *L, int idx) {
  const char *k = NULL;
  size_t n = 0;
  if (lua_isnoneornil(L, idx)) return NULL;
  lua_pushliteral(L, "key");
  lua_rawget(L, idx);
  if (lua_type(L, -1) == LUA_TSTRING) {
    k = lua_tolstring(L, -1, &n);
    if (n != TC_REC_KEYLEN)
      luaL_error(L, "bad option 'key' (%d bytes expected, got %d)", TC_REC_KEYLEN, (int)n);
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "bad option 'key' (string expected, got %s)", luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return (const unsigned char *)k;
}

/* The cache key of (host, port) at 2 and 3 with opts.servername and
 * opts.alpn, by vh:connect's rules: servername defaults to host (none for
 * an IP literal), false sends none. Raises on bad arguments. */
static size_t check_tuple(lua_State *L, int opts, char key[TC_KEY_MAX]) {
  size_t hostlen, snilen = 0, alpnlen, klen;
  const char *host = tc_checkcstring(L, 2, &hostlen), *sni;
  int port = tc_checkport(L, 3);
  unsigned char *alpn;
  sni = tc_optservername(L, opts, host, &snilen);
  tc_optalpn(L, opts, "alpn", &alpn, &alpnlen);   /* malloc'd: nothing raises until freed */
  klen = tc_key(key, TC_KEY_MAX, host, port, sni, alpn, alpnlen);
  free(alpn);
  if (klen == 0) luaL_argerror(L, 2, "host, servername and alpn too long together (1 KiB at most)");
  return klen;
}

/* ---- from the cache to a record ---- */

/* Split a cache key host \0 port \0 sni \0 alpn into r's tuple (pointing
 * into key). */
static void tuple_of_key(const char *key, size_t klen, tc_rec *r) {
  const char *port = key + strlen(key) + 1, *sni = port + strlen(port) + 1;
  r->host = key;
  r->hostlen = strlen(key);
  r->port = atoi(port);
  r->sni = sni;
  r->snilen = strlen(sni);
  r->alpn = (const unsigned char *)sni + r->snilen + 1;
  r->alpnlen = klen - (size_t)(r->alpn - (const unsigned char *)key);
}

/* A record of the live sessions of entry e, newest first, borrowed from the
 * cache (valid until the cache changes). Sessions that cannot be encoded
 * within the caps are left out. Returns the count. */
static int record_of_entry(const tc_vhost *vh, const tc_entry *e, double now, int64_t wall,
                           tc_rec *r) {
  size_t klen, body = 19;
  const char *key = tc_entry_key(e, &klen);
  tc_item it;
  int i;
  memset(r, 0, sizeof *r);
  tuple_of_key(key, klen, r);
  r->name = vh->name;
  r->namelen = strlen(vh->name);
  r->fingerprint = vh->fingerprint;
  r->created = wall;
  r->expires = INT64_MIN;
  for (i = 0; tc_entry_item(e, i, &it) && r->count < TC_REC_SESSIONS_MAX; i++) {
    SSL_SESSION *s = (SSL_SESSION *)it.sess;
    int d = i2d_SSL_SESSION(s, NULL);
    int64_t exp;
    if (it.expires <= now || d <= 0 || d > TC_REC_DER_MAX) continue;
    if (body + 12 + (size_t)d > TC_REC_BODY_MAX) break;
    if (r->count == 0) r->protocol = SSL_SESSION_get_protocol_version(s);
    else if (SSL_SESSION_get_protocol_version(s) != r->protocol) continue;
    /* the monotonic clock is the one the cache trusts: the remaining
     * lifetime is carried over to the wall clock as it reads now */
    exp = (int64_t)(it.expires - now);
    if ((double)exp < it.expires - now) exp++;     /* rounded up, so 1 s stays 1 s */
    exp += wall;
    if (exp <= wall) continue;
    body += 12 + (size_t)d;
    r->sess[r->count] = s;
    r->sess_expires[r->count] = exp;
    if (exp > r->expires) r->expires = exp;
    r->count++;
  }
  return r->count;
}

/* ---- from a record to the cache ---- */

static int same_session(const SSL_SESSION *a, const SSL_SESSION *b) {
  const unsigned char *ta, *tb;
  size_t la, lb;
  unsigned int ia, ib;
  const unsigned char *da, *db;
  SSL_SESSION_get0_ticket(a, &ta, &la);
  SSL_SESSION_get0_ticket(b, &tb, &lb);
  if (la || lb) return la == lb && memcmp(ta, tb, la) == 0;
  da = SSL_SESSION_get_id(a, &ia);
  db = SSL_SESSION_get_id(b, &ib);
  return ia > 0 && ia == ib && memcmp(da, db, ia) == 0;
}

/* Already cached under key (loading one file twice must not duplicate a
 * single-use ticket)? */
static int cached(tc_store *st, const char *key, size_t klen, const SSL_SESSION *s) {
  const tc_entry *e = tc_lookup(st, key, klen);
  tc_item it;
  int i;
  for (i = 0; e && tc_entry_item(e, i, &it); i++)
    if (same_session((const SSL_SESSION *)it.sess, s)) return 1;
  return 0;
}

/* The peer certificate must be valid for the name the tuple verifies, as
 * conn.c checks again after a resumption. */
static int peer_matches(const SSL_SESSION *s, const char *name) {
  return tc_cert_matches(SSL_SESSION_get0_peer((SSL_SESSION *)s), name);
}

/*
 * Check a decoded record against vh (and against want, the key the caller
 * named, when not NULL) and cache its sessions. Always consumes r's
 * sessions. Returns 1 with *stored = sessions the cache took, or 0 with *e
 * set (mismatch, expired, format).
 */
static int admit(tc_vhost *vh, tc_rec *r, const char *want, size_t wantlen, int where,
                 int *stored, tc_err *e) {
  char host[TC_REC_HOST_MAX + 1], sni[TC_REC_SNI_MAX + 1], key[TC_KEY_MAX];
  size_t klen;
  double now = tc_now();
  int64_t wall = tc_wallnow();
  int i, live = 0, ok = 0;
  *stored = 0;
  memcpy(host, r->host, r->hostlen);
  host[r->hostlen] = '\0';
  memcpy(sni, r->sni, r->snilen);
  sni[r->snilen] = '\0';
  if (r->namelen != strlen(vh->name) || memcmp(r->name, vh->name, r->namelen) != 0) {
    tc_seterr(e, "mismatch", "saved by vhost '%.*s', not '%s'", (int)(r->namelen > 64 ? 64 : r->namelen),
              r->name, vh->name);
    goto done;
  }
  if (memcmp(r->fingerprint, vh->fingerprint, sizeof vh->fingerprint) != 0) {
    tc_seterr(e, "mismatch", "saved under other security settings (verify, trust store, "
              "certificate, protocols, ciphers or ALPN)");
    goto done;
  }
  klen = tc_key(key, sizeof key, host, r->port, r->snilen ? sni : NULL, r->alpn, r->alpnlen);
  if (klen == 0) {
    tc_seterr(e, "format", "host name and servername too long");
    goto done;
  }
  if (want && (klen != wantlen || memcmp(key, want, klen) != 0)) {
    tc_seterr(e, "mismatch", "saved for another host, port, servername or alpn (%.64s:%d%s%.64s)",
              host, r->port, r->snilen ? " servername " : "", sni);
    goto done;
  }
  if (r->expires <= wall) {
    tc_seterr(e, "expired", "saved sessions expired %.0f seconds ago", (double)wall - (double)r->expires);
    goto done;
  }
  if (vh->verify) {
    /* a session stands in for the certificate check: it must carry a
     * certificate, valid for this name (a digest does not stop forgery) */
    for (i = 0; i < r->count; i++) {
      if (SSL_SESSION_get0_peer(r->sess[i]) == NULL) {
        tc_seterr(e, "format", "session has no peer certificate");
        goto done;
      }
      if (!peer_matches(r->sess[i], r->snilen ? sni : host)) {
        tc_seterr(e, "mismatch", "session's certificate is not valid for %.64s", r->snilen ? sni : host);
        goto done;
      }
    }
  }
  for (i = 0; i < r->count; i++) {
    SSL_SESSION *s = r->sess[i];
    double life = tc_session_lifetime(s, vh->session_timeout), born, end, left;
    tc_item in;
    if (life <= 0) continue;           /* a live one would not have been kept either */
    /* as long as it had when it was live, counted from its creation, and
     * never beyond what the record says; in doubles, as forged times may
     * be anything */
    born = (double)SSL_SESSION_get_time(s);
    end = born + life;
    if ((double)r->sess_expires[i] < end) end = (double)r->sess_expires[i];
    left = end - (double)wall;
    if (left > life) left = life;      /* a creation time in the future */
    if (left < 1) continue;
    live++;
    if (!vh->cache_on || cached(vh->store, key, klen, s)) continue;
    memset(&in, 0, sizeof in);
    in.sess = s;
    in.tls13 = r->protocol == TLS1_3_VERSION;
    in.stored = now - ((double)wall > born ? (double)wall - born : 0);
    in.expires = now + left;
    in.wall_expires = wall + (int64_t)left;
    r->sess[i] = NULL;                 /* the cache owns it now, stored or not */
    *stored += tc_put_loaded(vh->store, key, klen, &in, now, where);
  }
  if (live == 0) {
    tc_seterr(e, "expired", "every saved session has expired");
    goto done;
  }
  ok = 1;
done:
  for (i = 0; i < r->count; i++) SSL_SESSION_free(r->sess[i]);   /* NULL for the cache's */
  r->count = 0;
  return ok;
}

/* Decode one record and admit it. *keyfail: the record did not fit the key
 * given, or the lack of one (e->code is "format" all the same). */
static int load_record(tc_vhost *vh, const unsigned char *buf, size_t len, const unsigned char *k,
                       const char *want, size_t wantlen, int where, int *stored, int *keyfail,
                       tc_err *e) {
  tc_rec r;
  const char *why = NULL;
  int rc = tc_rec_decode(buf, len, k, &r, &why);
  *stored = 0;
  *keyfail = rc == TC_REC_KEY;
  if (rc != TC_REC_OK) {
    tc_seterr(e, rc == TC_REC_NOMEM ? "nomem" : "format", "%s", why);
    return 0;
  }
  return admit(vh, &r, want, wantlen, where, stored, e);
}

/* ---- per tuple ---- */

typedef struct bytes {
  const unsigned char *p;
  size_t n;
} bytes;

/* Called protected, so that a memory error while making the string leaves
 * the caller free to release its buffer. */
static int push_bytes(lua_State *L) {
  const bytes *b = (const bytes *)lua_touserdata(L, 1);
  lua_pushlstring(L, (const char *)b->p, b->n);
  return 1;
}

/* vh:session_save(host, port [, opts]) -> blob | nil, msg, code */
int tc_persist_session_save(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  char key[TC_KEY_MAX];
  size_t klen, n;
  const unsigned char *k;
  const tc_entry *ent;
  unsigned char *buf;
  const char *why = NULL;
  tc_rec r;
  tc_err e;
  bytes b;
  double now = tc_now();
  tc_checkoptions(L, 4, tuple_options);
  k = optkey(L, 4);
  klen = check_tuple(L, 4, key);
  lua_settop(L, 4);
  lua_pushcfunction(L, push_bytes);    /* allocates under 5.1: before our malloc */
  vh = tc_checkvhost(L, 1);            /* after the last allocation: a __gc may have closed it */
  tc_purge(vh->store, now);
  ent = tc_lookup(vh->store, key, klen);
  if (ent == NULL || record_of_entry(vh, ent, now, tc_wallnow(), &r) == 0)
    return tc_fail(L, "notfound", "no session cached for %s:%d", lua_tostring(L, 2), (int)lua_tointeger(L, 3));
  n = tc_rec_size(&r, k != NULL);
  buf = n ? (unsigned char *)malloc(n) : NULL;
  if (buf == NULL)
    return tc_fail(L, n ? "nomem" : "format", n ? "not enough memory" : "session too large");
  n = tc_rec_encode(&r, k, buf, n, &why);
  if (n == 0) {
    free(buf);
    tc_seterr(&e, "format", "%s", why);
    return tc_pusherr(L, &e);
  }
  b.p = buf;
  b.n = n;
  lua_pushlightuserdata(L, &b);
  n = (size_t)lua_pcall(L, 1, 1, 0);
  OPENSSL_clear_free(buf, b.n);        /* it held session secrets */
  if (n != 0) return lua_error(L);
  return 1;
}

/* vh:session_load(host, port, blob [, opts]) -> true, stored | nil, msg, code */
int tc_persist_session_load(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  char key[TC_KEY_MAX];
  size_t klen, len;
  const unsigned char *k, *blob = (const unsigned char *)luaL_checklstring(L, 4, &len);
  int stored, keyfail;
  tc_err e;
  tc_checkoptions(L, 5, tuple_options);
  k = optkey(L, 5);
  klen = check_tuple(L, 5, key);
  vh = tc_checkvhost(L, 1);            /* after the last allocation: a __gc may have closed it */
  tc_purge(vh->store, tc_now());
  /* asked for by name: like a new connection it may evict the LRU entry */
  if (!load_record(vh, blob, len, k, key, klen, TC_LOAD_FRONT, &stored, &keyfail, &e))
    return tc_pusherr(L, &e);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, stored);
  return 2;
}

/* ---- files ---- */

/* Write all of p, or fail with errno set. The test hook makes the write fail
 * after that many bytes, as a full disk would. */
static int write_all(int fd, const unsigned char *p, size_t n) {
  const char *hook = getenv(FAIL_WRITE_ENV);
  size_t limit = hook ? (size_t)strtoul(hook, NULL, 10) : (size_t)-1;
  while (n > 0) {
    size_t chunk = n;
    ssize_t w;
    if (limit == 0) {
      errno = ENOSPC;
      return 0;
    }
    if (chunk > limit) chunk = limit;
    w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    p += w;
    n -= (size_t)w;
    limit -= (size_t)w;
  }
  return 1;
}

/* The directory entry of a rename survives a crash only once the directory
 * itself is synced; best effort, some file systems refuse it. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? tc_strdup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
  int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

/* Replace path with data atomically: a temporary file in the same
 * directory, mode 0600 whatever the umask, written, synced and renamed over
 * path. On failure path is untouched and the temporary file removed. */
static int write_file_atomic(const char *path, const unsigned char *data, size_t n, tc_err *e) {
  size_t pl = strlen(path), keep = pl;
  const char *base = strrchr(path, '/');
  char *tmp;
  int fd, saved;
  struct stat st;
  /* the rename would replace whatever path names: a device, a FIFO, a
   * symbolic link (not its target) */
  if (lstat(path, &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      tc_seterr(e, "io", "%s: not a regular file (save_file replaces only those)", path);
      return 0;
    }
  } else if (errno != ENOENT) {
    tc_seterr(e, "io", "%s: %s", path, strerror(errno));
    return 0;
  }
  tmp = (char *)malloc(pl + 8);
  if (tmp == NULL) {
    tc_seterr(e, "nomem", "not enough memory");
    return 0;
  }
  /* path.XXXXXX, its last part cut so as to stay within NAME_MAX (255) */
  base = base ? base + 1 : path;
  if (pl - (size_t)(base - path) > 255 - 7) keep = (size_t)(base - path) + 255 - 7;
  memcpy(tmp, path, keep);
  memcpy(tmp + keep, ".XXXXXX", 8);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    tc_seterr(e, "io", "%s: %s", path, strerror(errno));
    free(tmp);
    return 0;
  }
  if (fchmod(fd, 0600) != 0 || !write_all(fd, data, n) || fsync(fd) != 0) {
    saved = errno;
    close(fd);
    unlink(tmp);
    free(tmp);
    tc_seterr(e, "io", "%s: %s", path, strerror(saved));
    return 0;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    saved = errno;
    unlink(tmp);
    free(tmp);
    tc_seterr(e, "io", "%s: %s", path, strerror(saved));
    return 0;
  }
  free(tmp);
  sync_dir(path);
  return 1;
}

/* The file image of every live entry, MRU first, within TC_FILE_MAX.
 * Returns a malloc'd buffer (NULL with *e set) and the entries in it. */
static unsigned char *file_image(tc_vhost *vh, const unsigned char *k, size_t *len, int *count,
                                 tc_err *e) {
  double now = tc_now();
  int64_t wall = tc_wallnow();
  const tc_entry *ent = NULL;
  size_t total = TC_FILE_HEADER, pos = TC_FILE_HEADER;
  unsigned char *buf;
  tc_rec r;
  int n = 0;
  const char *why = NULL;
  tc_purge(vh->store, now);
  /* first pass: sizes; the cache does not change until we return */
  while ((ent = tc_next(vh->store, ent)) != NULL) {
    size_t sz;
    if (record_of_entry(vh, ent, now, wall, &r) == 0) continue;
    sz = tc_rec_size(&r, k != NULL);
    if (sz == 0 || total + 4 + sz > TC_FILE_MAX) continue;
    total += 4 + sz;
  }
  buf = (unsigned char *)malloc(total);
  if (buf == NULL) {
    tc_seterr(e, "nomem", "not enough memory");
    return NULL;
  }
  while ((ent = tc_next(vh->store, ent)) != NULL) {
    size_t sz;
    if (record_of_entry(vh, ent, now, wall, &r) == 0) continue;
    sz = tc_rec_size(&r, k != NULL);
    if (sz == 0 || pos + 4 + sz > total) continue;
    if (tc_rec_encode(&r, k, buf + pos + 4, sz, &why) != sz) {
      OPENSSL_clear_free(buf, total);
      tc_seterr(e, "format", "%s", why ? why : "encoding failed");
      return NULL;
    }
    tc_file_frame(buf + pos, (uint32_t)sz);
    pos += 4 + sz;
    n++;
  }
  tc_file_header(buf, (uint32_t)n);
  *len = pos;
  *count = n;
  return buf;
}

/* vh:save_file(path [, opts]) -> entries written | nil, msg, code */
int tc_persist_save_file(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  const char *path = tc_checkcstring(L, 2, NULL);
  const unsigned char *k;
  unsigned char *img;
  size_t len = 0;
  int count = 0, ok;
  tc_err e;
  tc_checkoptions(L, 3, file_options);
  k = optkey(L, 3);
  vh = tc_checkvhost(L, 1);            /* after the last allocation: a __gc may have closed it */
  img = file_image(vh, k, &len, &count, &e);
  if (img == NULL) return tc_pusherr(L, &e);
  ok = write_file_atomic(path, img, len, &e);
  OPENSSL_clear_free(img, len);
  if (!ok) return tc_pusherr(L, &e);
  lua_pushinteger(L, count);
  return 1;
}

/* Read a session file that only its owner (or root) can change: a planted
 * session would stand in for a certificate check. Returns a malloc'd
 * buffer, or NULL with *e set. */
static unsigned char *read_file(const char *path, size_t *len, tc_err *e) {
  struct stat st;
  unsigned char *buf = NULL;
  size_t got = 0;
  /* O_NONBLOCK: a FIFO must not hang us before fstat refuses it */
  int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    tc_seterr(e, "io", "%s: %s", path, strerror(errno));
    return NULL;
  }
  if (fstat(fd, &st) != 0) {
    tc_seterr(e, "io", "%s: %s", path, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    tc_seterr(e, "io", "%s: not a regular file", path);
  } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    tc_seterr(e, "io", "%s: group or others can write it (chmod 600)", path);
  } else if (st.st_uid != geteuid() && st.st_uid != 0) {
    tc_seterr(e, "io", "%s: owned by another user", path);
  } else if (st.st_size > TC_FILE_MAX) {
    tc_seterr(e, "format", "%s: larger than %d bytes", path, TC_FILE_MAX);
  } else if ((buf = (unsigned char *)malloc(st.st_size ? (size_t)st.st_size : 1)) == NULL) {
    tc_seterr(e, "nomem", "not enough memory");
  } else {
    while (got < (size_t)st.st_size) {
      ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        tc_seterr(e, "io", "%s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
        break;
      }
      if (r == 0) break;               /* shrank meanwhile: the walk sees truncation */
      got += (size_t)r;
    }
  }
  close(fd);
  *len = got;
  return buf;
}

typedef struct load_state {
  tc_vhost *vh;
  const unsigned char *key;
  int loaded, format, keyfail, mismatch, expired, kept, nomem;
} load_state;

static void load_one(void *ud, const unsigned char *rec, size_t len) {
  load_state *ls = (load_state *)ud;
  int stored, keyfail;
  tc_err e;
  if (!load_record(ls->vh, rec, len, ls->key, NULL, 0, TC_LOAD_BACK, &stored, &keyfail, &e)) {
    if (keyfail) ls->keyfail++;
    else if (strcmp(e.code, "mismatch") == 0) ls->mismatch++;
    else if (strcmp(e.code, "expired") == 0) ls->expired++;
    else if (strcmp(e.code, "nomem") == 0) ls->nomem++;
    else ls->format++;
  } else if (stored > 0) {
    ls->loaded++;
  } else {
    ls->kept++;                        /* fresher or the same already cached, or no room */
  }
}

/* vh:load_file(path [, opts]) -> loaded, skipped, reasons | nil, msg, code */
int tc_persist_load_file(lua_State *L) {
  tc_vhost *vh = tc_checkvhost(L, 1);
  const char *path = tc_checkcstring(L, 2, NULL), *why = NULL;
  unsigned char *buf;
  size_t len;
  uint32_t lost = 0;
  load_state ls;
  int rc;
  tc_err e;
  memset(&ls, 0, sizeof ls);
  tc_checkoptions(L, 3, file_options);
  ls.key = optkey(L, 3);
  ls.vh = vh = tc_checkvhost(L, 1);    /* after the last allocation: a __gc may have closed it */
  buf = read_file(path, &len, &e);
  if (buf == NULL) return tc_pusherr(L, &e);
  tc_purge(vh->store, tc_now());       /* expired entries must not take the room */
  rc = tc_file_walk(buf, len, load_one, &ls, &lost, &why);
  OPENSSL_clear_free(buf, len ? len : 1);
  if (rc != TC_REC_OK) return tc_fail(L, "format", "%s: %s", path, why);
  ls.format += (int)(lost > 1000000 ? 1000000 : lost);
  lua_pushinteger(L, ls.loaded);
  lua_pushinteger(L, ls.format + ls.keyfail + ls.mismatch + ls.expired + ls.kept + ls.nomem);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, ls.format); lua_setfield(L, -2, "format");
  lua_pushinteger(L, ls.keyfail); lua_setfield(L, -2, "key");
  lua_pushinteger(L, ls.mismatch); lua_setfield(L, -2, "mismatch");
  lua_pushinteger(L, ls.expired); lua_setfield(L, -2, "expired");
  lua_pushinteger(L, ls.kept); lua_setfield(L, -2, "cached");
  lua_pushinteger(L, ls.nomem); lua_setfield(L, -2, "nomem");
  return 3;
}
