/*
 * Saved-session records: see record.h for the layout and the contract.
 *
 * Decoding trusts nothing: every length is checked against what is left of
 * the input and against its cap before anything is allocated or copied, the
 * digest or the GCM tag is checked before the body is parsed, and the body
 * must be consumed exactly.
 */
#include "record.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define DIGEST_LEN 32
#define BODY_FIXED 19                  /* created, expires, protocol, count */
#define ITEM_FIXED 12                  /* expires, der_len */

static const unsigned char rec_magic[4] = { 0x89, 'T', 'C', 'S' };
static const unsigned char file_magic[8] = { 0x89, 'T', 'C', 'F', '\r', '\n', 0x1a, '\n' };

/* ---- writing ---- */

static unsigned char *put_u8(unsigned char *p, unsigned v) {
  *p = (unsigned char)v;
  return p + 1;
}

static unsigned char *put_u16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
  return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
  return p + 4;
}

static unsigned char *put_i64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  int i;
  for (i = 7; i >= 0; i--, u >>= 8) p[i] = (unsigned char)u;
  return p + 8;
}

static unsigned char *put_bytes(unsigned char *p, const void *s, size_t n) {
  if (n) memcpy(p, s, n);
  return p + n;
}

static size_t header_size(const tc_rec *r, int encrypted) {
  return 4 + 1 + 1 + 1 + r->namelen + 2 + r->hostlen + 2 + 1 + r->snilen + 2 + r->alpnlen +
         DIGEST_LEN + (encrypted ? NONCE_LEN : 0) + 4;
}

/* The body size, 0 when a session cannot be encoded or a cap is broken. */
static size_t body_size(const tc_rec *r) {
  size_t n = BODY_FIXED;
  int i;
  if (r->count < 1 || r->count > TC_REC_SESSIONS_MAX) return 0;
  for (i = 0; i < r->count; i++) {
    int d = i2d_SSL_SESSION(r->sess[i], NULL);
    if (d <= 0 || d > TC_REC_DER_MAX) return 0;
    n += ITEM_FIXED + (size_t)d;
  }
  return n <= TC_REC_BODY_MAX ? n : 0;
}

size_t tc_rec_size(const tc_rec *r, int encrypted) {
  size_t body;
  if (r->namelen < 1 || r->namelen > TC_REC_NAME_MAX || r->hostlen < 1 ||
      r->hostlen > TC_REC_HOST_MAX || r->snilen > TC_REC_SNI_MAX ||
      r->alpnlen > TC_REC_ALPN_MAX || r->port < 1 || r->port > 65535)
    return 0;
  body = body_size(r);
  if (body == 0) return 0;
  return header_size(r, encrypted) + body + (encrypted ? TAG_LEN : DIGEST_LEN);
}

static int sha256(const unsigned char *p, size_t n, unsigned char out[DIGEST_LEN]) {
  return EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) == 1;
}

/* AES-256-GCM over buf[0..n) in place, aad authenticated; tag written or
 * checked. Returns 1 on success (decrypt: tag matched). */
static int gcm(int enc, const unsigned char *key, const unsigned char *nonce,
               const unsigned char *aad, size_t aadlen, unsigned char *buf, size_t n,
               unsigned char tag[TAG_LEN]) {
  EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
  int ok = 0, len;
  if (cx == NULL) return 0;
  if (EVP_CipherInit_ex(cx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1) goto done;
  if (EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1) goto done;
  if (EVP_CipherInit_ex(cx, NULL, NULL, key, nonce, enc) != 1) goto done;
  if (aadlen > INT32_MAX || n > INT32_MAX) goto done;
  if (EVP_CipherUpdate(cx, NULL, &len, aad, (int)aadlen) != 1) goto done;
  if (n && EVP_CipherUpdate(cx, buf, &len, buf, (int)n) != 1) goto done;   /* in place */
  if (!enc && EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1) goto done;
  if (EVP_CipherFinal_ex(cx, buf + n, &len) != 1) goto done;   /* GCM writes nothing here */
  if (enc && EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1) goto done;
  ok = 1;
done:
  EVP_CIPHER_CTX_free(cx);             /* also cleanses the key schedule */
  return ok;
}

size_t tc_rec_encode(const tc_rec *r, const unsigned char *key, unsigned char *out,
                     size_t cap, const char **why) {
  int enc = key != NULL, i;
  size_t total = tc_rec_size(r, enc), hlen = header_size(r, enc), blen;
  unsigned char *p = out, *body;
  if (total == 0) {
    *why = "session data too large or out of range";
    return 0;
  }
  if (total > cap) {
    *why = "buffer too small";
    return 0;
  }
  blen = total - hlen - (enc ? TAG_LEN : DIGEST_LEN);
  p = put_bytes(p, rec_magic, sizeof rec_magic);
  p = put_u8(p, 1);
  p = put_u8(p, enc ? 1 : 0);
  p = put_u8(p, (unsigned)r->namelen);
  p = put_bytes(p, r->name, r->namelen);
  p = put_u16(p, (unsigned)r->hostlen);
  p = put_bytes(p, r->host, r->hostlen);
  p = put_u16(p, (unsigned)r->port);
  p = put_u8(p, (unsigned)r->snilen);
  p = put_bytes(p, r->sni, r->snilen);
  p = put_u16(p, (unsigned)r->alpnlen);
  p = put_bytes(p, r->alpn, r->alpnlen);
  p = put_bytes(p, r->fingerprint, DIGEST_LEN);
  if (enc) {
    /* a fresh random nonce per record: never reused under one key */
    if (RAND_bytes(p, NONCE_LEN) != 1) {
      *why = "no random bytes for the nonce";
      return 0;
    }
    p += NONCE_LEN;
  }
  p = put_u32(p, (uint32_t)blen);
  body = p;
  p = put_i64(p, r->created);
  p = put_i64(p, r->expires);
  p = put_u16(p, (unsigned)r->protocol);
  p = put_u8(p, (unsigned)r->count);
  for (i = 0; i < r->count; i++) {
    unsigned char *q;
    int d = i2d_SSL_SESSION(r->sess[i], NULL);
    p = put_i64(p, r->sess_expires[i]);
    p = put_u32(p, (uint32_t)d);
    q = p;
    if (i2d_SSL_SESSION(r->sess[i], &q) != d) {
      *why = "session encoding failed";
      return 0;
    }
    p = q;
  }
  if ((size_t)(p - body) != blen) {
    *why = "session encoding changed size";
    return 0;
  }
  if (enc) {
    if (!gcm(1, key, body - 4 - NONCE_LEN, out, hlen, body, blen, p)) {
      *why = "encryption failed";
      return 0;
    }
  } else if (!sha256(out, hlen + blen, p)) {
    *why = "digest failed";
    return 0;
  }
  return total;
}

/* ---- reading ---- */

typedef struct cursor {
  const unsigned char *p;
  size_t n;                            /* bytes left */
  int bad;                             /* a read went past the end */
} cursor;

static const unsigned char *take(cursor *c, size_t n) {
  const unsigned char *p = c->p;
  if (c->bad || n > c->n) {
    c->bad = 1;
    return NULL;
  }
  c->p += n;
  c->n -= n;
  return p;
}

static unsigned get_u8(cursor *c) {
  const unsigned char *p = take(c, 1);
  return p ? p[0] : 0;
}

static unsigned get_u16(cursor *c) {
  const unsigned char *p = take(c, 2);
  return p ? (unsigned)p[0] << 8 | p[1] : 0;
}

static uint32_t get_u32(cursor *c) {
  const unsigned char *p = take(c, 4);
  return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

static int64_t get_i64(cursor *c) {
  const unsigned char *p = take(c, 8);
  uint64_t u = 0;
  int i;
  if (p == NULL) return 0;
  for (i = 0; i < 8; i++) u = u << 8 | p[i];
  return (int64_t)u;   /* two's complement, as written by put_i64 */
}

/* A name field: at most max bytes, at least min, no NUL inside. */
static const char *get_text(cursor *c, size_t len, size_t min, size_t max) {
  const unsigned char *p;
  if (len < min || len > max) {
    c->bad = 1;
    return NULL;
  }
  p = take(c, len);
  if (p == NULL || (len && memchr(p, 0, len) != NULL)) {
    c->bad = 1;
    return NULL;
  }
  return (const char *)p;
}

/* ALPN wire format: a sequence of 1..255-byte names, each length-prefixed. */
static int alpn_ok(const unsigned char *a, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (a[i] == 0 || a[i] > n - i - 1) return 0;
    i += 1 + (size_t)a[i];
  }
  return 1;
}

void tc_rec_clear(tc_rec *r) {
  int i;
  for (i = 0; i < r->count; i++) {
    SSL_SESSION_free(r->sess[i]);      /* r owned one reference each */
    r->sess[i] = NULL;
  }
  r->count = 0;
}

/* Parse the body (already authenticated and in the clear). */
static int parse_body(cursor *c, tc_rec *r, const char **why) {
  int64_t latest = INT64_MIN;
  unsigned count;
  r->created = get_i64(c);
  r->expires = get_i64(c);
  r->protocol = (int)get_u16(c);
  count = get_u8(c);
  if (c->bad) {
    *why = "truncated body";
    return TC_REC_FORMAT;
  }
  if (r->protocol != TLS1_2_VERSION && r->protocol != TLS1_3_VERSION) {
    *why = "unknown protocol";
    return TC_REC_FORMAT;
  }
  if (count < 1 || count > TC_REC_SESSIONS_MAX || (r->protocol == TLS1_2_VERSION && count != 1)) {
    *why = "bad session count";
    return TC_REC_FORMAT;
  }
  while (r->count < (int)count) {
    int64_t exp = get_i64(c);
    uint32_t dlen = get_u32(c);
    const unsigned char *der, *q;
    SSL_SESSION *s;
    if (c->bad) {
      *why = "truncated session";
      return TC_REC_FORMAT;
    }
    if (dlen < 1 || dlen > TC_REC_DER_MAX || dlen > c->n) {
      *why = "bad session length";
      return TC_REC_FORMAT;
    }
    der = q = take(c, dlen);
    s = d2i_SSL_SESSION(NULL, &q, (long)dlen);   /* r owns s once stored below */
    if (s == NULL) {
      *why = "undecodable session";
      return TC_REC_FORMAT;
    }
    r->sess[r->count] = s;
    r->sess_expires[r->count] = exp;
    r->count++;
    if (q != der + dlen) {
      *why = "bytes after a session";
      return TC_REC_FORMAT;
    }
    if (!SSL_SESSION_is_resumable(s)) {
      *why = "session not resumable";
      return TC_REC_FORMAT;
    }
    if (SSL_SESSION_get_protocol_version(s) != r->protocol) {
      *why = "session protocol differs from the record's";
      return TC_REC_FORMAT;
    }
    if (exp > latest) latest = exp;
  }
  if (c->n != 0) {
    *why = "bytes after the last session";
    return TC_REC_FORMAT;
  }
  if (latest != r->expires) {
    *why = "record expiry differs from its sessions'";
    return TC_REC_FORMAT;
  }
  return TC_REC_OK;
}

int tc_rec_decode(const unsigned char *buf, size_t len, const unsigned char *key,
                  tc_rec *r, const char **why) {
  cursor c;
  const unsigned char *magic, *nonce = NULL, *body, *trailer;
  unsigned version, flags;
  size_t hlen, blen, tlen;
  unsigned char *plain = NULL;
  int rc;
  memset(r, 0, sizeof *r);
  c.p = buf;
  c.n = len;
  c.bad = 0;
  magic = take(&c, sizeof rec_magic);
  if (magic == NULL || memcmp(magic, rec_magic, sizeof rec_magic) != 0) {
    *why = "not tlscache session data";
    return TC_REC_FORMAT;
  }
  version = get_u8(&c);
  flags = get_u8(&c);
  if (c.bad) {
    *why = "truncated header";
    return TC_REC_FORMAT;
  }
  if (version != 1) {
    *why = "unsupported version";
    return TC_REC_FORMAT;
  }
  if (flags > 1) {
    *why = "unknown flags";
    return TC_REC_FORMAT;
  }
  r->encrypted = flags == 1;
  r->namelen = get_u8(&c);
  r->name = get_text(&c, r->namelen, 1, TC_REC_NAME_MAX);
  r->hostlen = get_u16(&c);
  r->host = get_text(&c, r->hostlen, 1, TC_REC_HOST_MAX);
  r->port = (int)get_u16(&c);
  r->snilen = get_u8(&c);
  r->sni = get_text(&c, r->snilen, 0, TC_REC_SNI_MAX);
  r->alpnlen = get_u16(&c);
  if (r->alpnlen > TC_REC_ALPN_MAX) c.bad = 1;
  r->alpn = take(&c, r->alpnlen);
  r->fingerprint = take(&c, DIGEST_LEN);
  if (r->encrypted) nonce = take(&c, NONCE_LEN);
  blen = get_u32(&c);
  if (c.bad) {
    *why = "truncated or malformed header";
    memset(r, 0, sizeof *r);
    return TC_REC_FORMAT;
  }
  if (r->port < 1 || (r->alpnlen && !alpn_ok(r->alpn, r->alpnlen))) {
    *why = "malformed header";
    memset(r, 0, sizeof *r);
    return TC_REC_FORMAT;
  }
  hlen = len - c.n;
  tlen = r->encrypted ? TAG_LEN : DIGEST_LEN;
  if (blen < BODY_FIXED || blen > TC_REC_BODY_MAX) {
    *why = "bad body length";
    memset(r, 0, sizeof *r);
    return TC_REC_FORMAT;
  }
  if (c.n != blen + tlen) {
    *why = c.n < blen + tlen ? "truncated" : "bytes after the record";
    memset(r, 0, sizeof *r);
    return TC_REC_FORMAT;
  }
  body = c.p;
  trailer = body + blen;
  if (r->encrypted != (key != NULL)) {
    *why = key ? "data is not encrypted but a key was given" : "data is encrypted: a key is needed";
    memset(r, 0, sizeof *r);
    return TC_REC_KEY;
  }
  if (r->encrypted) {
    unsigned char tag[TAG_LEN];
    plain = (unsigned char *)malloc(blen);
    if (plain == NULL) {
      *why = "not enough memory";
      memset(r, 0, sizeof *r);
      return TC_REC_NOMEM;
    }
    memcpy(plain, body, blen);
    memcpy(tag, trailer, TAG_LEN);
    if (!gcm(0, key, nonce, buf, hlen, plain, blen, tag)) {
      OPENSSL_clear_free(plain, blen);
      *why = "authentication failed (wrong key, or the data was changed)";
      memset(r, 0, sizeof *r);
      return TC_REC_KEY;
    }
    c.p = plain;
  } else {
    unsigned char md[DIGEST_LEN];
    if (!sha256(buf, hlen + blen, md)) {
      *why = "digest failed";
      memset(r, 0, sizeof *r);
      return TC_REC_NOMEM;
    }
    if (CRYPTO_memcmp(md, trailer, DIGEST_LEN) != 0) {
      *why = "digest mismatch (corrupted data)";
      memset(r, 0, sizeof *r);
      return TC_REC_FORMAT;
    }
  }
  c.n = blen;
  rc = parse_body(&c, r, why);
  if (plain) OPENSSL_clear_free(plain, blen);   /* it held session secrets */
  if (rc != TC_REC_OK) {
    tc_rec_clear(r);
    memset(r, 0, sizeof *r);
  }
  return rc;
}

/* ---- files ---- */

void tc_file_header(unsigned char out[TC_FILE_HEADER], uint32_t count) {
  unsigned char *p = put_bytes(out, file_magic, sizeof file_magic);
  p = put_u8(p, 1);
  p = put_u8(p, 0);
  p = put_u16(p, 0);
  p = put_u32(p, count);
  if (!sha256(out, 16, p)) memset(p, 0, DIGEST_LEN);   /* the reader will refuse it */
}

void tc_file_frame(unsigned char out[4], uint32_t reclen) { put_u32(out, reclen); }

int tc_file_walk(const unsigned char *buf, size_t len, tc_file_fn fn, void *ud,
                 uint32_t *lost, const char **why) {
  unsigned char md[DIGEST_LEN];
  cursor c;
  uint32_t count, seen = 0;
  *lost = 0;
  if (len < TC_FILE_HEADER || memcmp(buf, file_magic, sizeof file_magic) != 0) {
    *why = "not a tlscache session file";
    return TC_REC_FORMAT;
  }
  if (!sha256(buf, 16, md) || CRYPTO_memcmp(md, buf + 16, DIGEST_LEN) != 0) {
    *why = "corrupted file header";
    return TC_REC_FORMAT;
  }
  if (buf[8] != 1 || buf[9] || buf[10] || buf[11]) {
    *why = "unsupported file version";
    return TC_REC_FORMAT;
  }
  c.p = buf + 12;
  c.n = 4;
  c.bad = 0;
  count = get_u32(&c);
  c.p = buf + TC_FILE_HEADER;
  c.n = len - TC_FILE_HEADER;
  while (seen < count) {
    uint32_t rl = get_u32(&c);
    const unsigned char *rec;
    if (c.bad || rl > TC_REC_MAX || rl > c.n) break;   /* framing lost: the rest is gone */
    rec = take(&c, rl);
    seen++;
    fn(ud, rec, rl);
  }
  *lost = count - seen;
  if (seen == count && c.n > 0) *lost += 1;            /* bytes after the last record */
  return TC_REC_OK;
}
