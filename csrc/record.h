/*
 * The saved-session record: a versioned, bounded format of our own around
 * OpenSSL's session encoding (i2d_SSL_SESSION), protected by a SHA-256
 * digest or, with a key, by AES-256-GCM. It knows nothing of Lua, files or
 * the cache, so the decoder can be fuzzed and tested from plain C; the
 * rules about which record may go into which vhost live in persist.c.
 *
 * Record layout (integers big-endian):
 *
 *   header, authenticated (the GCM associated data, or digested):
 *     magic      4   0x89 'T' 'C' 'S'
 *     version    1   1
 *     flags      1   0: SHA-256 digest, 1: AES-256-GCM; other bits must be 0
 *     name       1+n vhost name, 1..255 bytes, no NUL
 *     host       2+n 1..1023 bytes, no NUL
 *     port       2   1..65535
 *     servername 1+n 0..255 bytes, no NUL; empty: no SNI was sent
 *     alpn       2+n 0..1023 bytes: the per-connection ALPN override of the
 *                    cache key, ALPN wire format
 *     fingerprint 32 SHA-256 of the vhost's security settings
 *     nonce     12   only when flags = 1
 *     body_len   4   bytes of body, 19..TC_REC_BODY_MAX
 *   body (encrypted when flags = 1):
 *     created    8   Unix time the record was written
 *     expires    8   Unix time the last of its sessions expires
 *     protocol   2   0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)
 *     count      1   1 for TLS 1.2, 1..64 tickets for TLS 1.3
 *     count times:
 *       expires  8   Unix time this session expires
 *       der_len  4   1..TC_REC_DER_MAX
 *       der          i2d_SSL_SESSION
 *   trailer:
 *     flags 0: SHA-256(header || body), 32 bytes
 *     flags 1: GCM tag, 16 bytes
 *
 * A record is exactly that long: anything before or after it is an error.
 */
#ifndef TLSCACHE_RECORD_H
#define TLSCACHE_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#define TC_REC_KEYLEN 32
#define TC_REC_SESSIONS_MAX 64           /* TC_MAX_TICKETS of cache.h */
#define TC_REC_NAME_MAX 255
#define TC_REC_HOST_MAX 1023
#define TC_REC_SNI_MAX 255
#define TC_REC_ALPN_MAX 1023
#define TC_REC_DER_MAX (256 * 1024)      /* a ticket (< 64 KiB) and a peer certificate */
#define TC_REC_BODY_MAX (4 * 1024 * 1024)
#define TC_REC_MAX (TC_REC_BODY_MAX + 4096)   /* header + body + trailer */

/* A file: header, then records each framed by a 4-byte length.
 *   magic "\x89TCF\r\n\x1a\n" (8), version 1 (1), zero (3), count (4),
 *   SHA-256 of those 16 bytes (32) */
#define TC_FILE_HEADER 48
#define TC_FILE_MAX (64 * 1024 * 1024)

/* TC_REC_KEY: a format error too, where the key given (or none) does not fit
 * the record: encrypted without a key, a key for plain data, or a failed
 * authentication (a wrong key, or the data was changed) */
enum { TC_REC_OK = 0, TC_REC_FORMAT, TC_REC_NOMEM, TC_REC_KEY };

typedef struct tc_rec {
  int encrypted;                       /* decode: flags said AES-256-GCM */
  /* the tuple; decode points these into the input */
  const char *name;
  size_t namelen;
  const char *host;
  size_t hostlen;
  int port;
  const char *sni;                     /* snilen 0: no SNI */
  size_t snilen;
  const unsigned char *alpn;           /* wire format; alpnlen 0: no override */
  size_t alpnlen;
  const unsigned char *fingerprint;    /* 32 bytes */
  int64_t created, expires;            /* Unix seconds */
  int protocol;                        /* TLS1_2_VERSION or TLS1_3_VERSION */
  int count;
  SSL_SESSION *sess[TC_REC_SESSIONS_MAX];   /* decode: owned; encode: borrowed */
  int64_t sess_expires[TC_REC_SESSIONS_MAX];
} tc_rec;

/* Bytes tc_rec_encode writes for r, or 0 when r breaks a limit. */
size_t tc_rec_size(const tc_rec *r, int encrypted);

/* Write r into out (cap bytes); key NULL: digest, else 32 bytes for
 * AES-256-GCM under a fresh random nonce. Returns the bytes written, or 0
 * with *why set (a static string). */
size_t tc_rec_encode(const tc_rec *r, const unsigned char *key, unsigned char *out,
                     size_t cap, const char **why);

/* Check and decode one record that is exactly buf[0..len). key NULL: the
 * record must carry a digest, else it must be encrypted under key. Returns
 * TC_REC_OK with r filled (its tuple points into buf, its sessions are r's:
 * release them with tc_rec_clear), or TC_REC_FORMAT / TC_REC_NOMEM with *why
 * set and nothing held. Never reads outside buf, whatever it holds. */
int tc_rec_decode(const unsigned char *buf, size_t len, const unsigned char *key,
                  tc_rec *r, const char **why);
void tc_rec_clear(tc_rec *r);

void tc_file_header(unsigned char out[TC_FILE_HEADER], uint32_t count);
void tc_file_frame(unsigned char out[4], uint32_t reclen);

/* Walk a file image: fn gets each framed record in turn (not checked: that
 * is tc_rec_decode's job). Returns TC_REC_OK, with *lost = records the
 * header announced that could not be framed (a bad length, truncation) plus
 * one for bytes after the last record; or TC_REC_FORMAT with *why set when
 * the file header itself is bad. */
typedef void (*tc_file_fn)(void *ud, const unsigned char *rec, size_t len);
int tc_file_walk(const unsigned char *buf, size_t len, tc_file_fn fn, void *ud,
                 uint32_t *lost, const char **why);

#endif
