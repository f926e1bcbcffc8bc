/*
 * Unit tests of the saved-session format (csrc/record.c) that need no
 * session: file framing, and the header checks a record fails before its
 * body is reached. Real records are exercised by the fuzz target's replay
 * of the seed corpus and by spec/20-persist_spec.lua.
 */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

static int passed, failed;

#define CHECK(cond) do { \
    if (cond) passed++; \
    else { failed++; fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)

typedef struct seen {
  int n;
  size_t len[8];
} seen;

static void count(void *ud, const unsigned char *rec, size_t len) {
  seen *s = (seen *)ud;
  (void)rec;
  if (s->n < 8) s->len[s->n] = len;
  s->n++;
}

/* header for `count` records, then frames of the given lengths (filled with 'x') */
static size_t file_of(unsigned char *buf, uint32_t n, const size_t *lens, int nl) {
  size_t pos = TC_FILE_HEADER;
  int i;
  tc_file_header(buf, n);
  for (i = 0; i < nl; i++) {
    tc_file_frame(buf + pos, (uint32_t)lens[i]);
    memset(buf + pos + 4, 'x', lens[i]);
    pos += 4 + lens[i];
  }
  return pos;
}

static void test_file_walk(void) {
  unsigned char buf[512];
  size_t lens[3] = { 10, 0, 20 }, len;
  uint32_t lost;
  const char *why = NULL;
  seen s;

  len = file_of(buf, 3, lens, 3);
  memset(&s, 0, sizeof s);
  CHECK(tc_file_walk(buf, len, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 3 && s.len[0] == 10 && s.len[1] == 0 && s.len[2] == 20 && lost == 0);

  memset(&s, 0, sizeof s);                 /* cut inside the last record */
  CHECK(tc_file_walk(buf, len - 1, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 2 && lost == 1);

  memset(&s, 0, sizeof s);                 /* cut inside a frame length */
  CHECK(tc_file_walk(buf, TC_FILE_HEADER + 2, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 0 && lost == 3);

  buf[len] = 'y';                          /* a byte after the last record */
  memset(&s, 0, sizeof s);
  CHECK(tc_file_walk(buf, len + 1, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 3 && lost == 1);

  tc_file_frame(buf + TC_FILE_HEADER, 0xffffffffu);   /* an impossible length */
  memset(&s, 0, sizeof s);
  CHECK(tc_file_walk(buf, len, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 0 && lost == 3);

  len = file_of(buf, 0, lens, 0);          /* an empty cache */
  memset(&s, 0, sizeof s);
  CHECK(len == TC_FILE_HEADER && tc_file_walk(buf, len, count, &s, &lost, &why) == TC_REC_OK);
  CHECK(s.n == 0 && lost == 0);

  buf[13] ^= 1;                            /* the count, under the header digest */
  CHECK(tc_file_walk(buf, len, count, &s, &lost, &why) == TC_REC_FORMAT && why != NULL);
  buf[13] ^= 1;
  buf[0] ^= 0x80;                          /* the magic */
  CHECK(tc_file_walk(buf, len, count, &s, &lost, &why) == TC_REC_FORMAT);
  buf[0] ^= 0x80;
  CHECK(tc_file_walk(buf, len - 1, count, &s, &lost, &why) == TC_REC_FORMAT);
  CHECK(tc_file_walk(buf, 0, count, &s, &lost, &why) == TC_REC_FORMAT);
}

/* A record header with a body of `blen` zero bytes and a correct digest. */
static size_t record_of(unsigned char *p, int version, int flags, const char *alpn, size_t alpnlen,
                        uint32_t blen) {
  size_t n = 0;
  static const unsigned char magic[4] = { 0x89, 'T', 'C', 'S' };
  memcpy(p, magic, 4), n = 4;
  p[n++] = (unsigned char)version;
  p[n++] = (unsigned char)flags;
  p[n++] = 1, p[n++] = 'v';                            /* name */
  p[n++] = 0, p[n++] = 1, p[n++] = 'h';                /* host */
  p[n++] = 1, p[n++] = 0xbb;                           /* port 443 */
  p[n++] = 0;                                          /* no servername */
  p[n++] = (unsigned char)(alpnlen >> 8), p[n++] = (unsigned char)alpnlen;
  memcpy(p + n, alpn, alpnlen), n += alpnlen;
  memset(p + n, 0xf0, 32), n += 32;                    /* fingerprint */
  p[n++] = (unsigned char)(blen >> 24), p[n++] = (unsigned char)(blen >> 16);
  p[n++] = (unsigned char)(blen >> 8), p[n++] = (unsigned char)blen;
  memset(p + n, 0, blen), n += blen;
  EVP_Digest(p, n, p + n, NULL, EVP_sha256(), NULL);
  return n + 32;
}

static void test_record_header(void) {
  static unsigned char buf[4096];
  static const unsigned char key[TC_REC_KEYLEN] = { 1 };
  const char *why = NULL;
  tc_rec r;
  size_t n;

  n = record_of(buf, 1, 0, "", 0, 19);
  /* a header that is right, a body of zeroes: protocol 0 is refused */
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && r.count == 0);
  CHECK(why && strcmp(why, "unknown protocol") == 0);
  CHECK(tc_rec_decode(buf, n, key, &r, &why) == TC_REC_KEY);   /* a key for a digest */
  n = record_of(buf, 2, 0, "", 0, 19);
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "unsupported version") == 0);
  n = record_of(buf, 1, 2, "", 0, 19);
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "unknown flags") == 0);
  n = record_of(buf, 1, 0, "\002h2", 3, 19);
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "unknown protocol") == 0);
  n = record_of(buf, 1, 0, "\003h2", 3, 19);           /* ALPN list overruns itself */
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "malformed header") == 0);
  n = record_of(buf, 1, 0, "\000", 1, 19);             /* an empty ALPN name */
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "malformed header") == 0);
  n = record_of(buf, 1, 0, "", 0, 18);                 /* body shorter than its fixed part */
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "bad body length") == 0);
  n = record_of(buf, 1, 0, "", 0, 19);
  CHECK(tc_rec_decode(buf, n - 1, NULL, &r, &why) == TC_REC_FORMAT && strcmp(why, "truncated") == 0);
  CHECK(tc_rec_decode(buf, n + 1, NULL, &r, &why) == TC_REC_FORMAT &&
        strcmp(why, "bytes after the record") == 0);
  buf[n - 1] ^= 1;
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT && strncmp(why, "digest", 6) == 0);
  n = record_of(buf, 1, 1, "", 0, 19);                 /* says encrypted: needs a key */
  CHECK(tc_rec_decode(buf, n, NULL, &r, &why) == TC_REC_FORMAT);
  CHECK(tc_rec_decode(buf, 3, NULL, &r, &why) == TC_REC_FORMAT);
  CHECK(tc_rec_decode(buf, 0, NULL, &r, &why) == TC_REC_FORMAT);
}

int main(void) {
  test_file_walk();
  test_record_header();
  printf("record_test: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
