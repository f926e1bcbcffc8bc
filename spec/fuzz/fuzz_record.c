/*
 * libFuzzer target for the loading path of saved sessions (csrc/record.c):
 * a record as vh:session_load sees it, with and without a key, and a whole
 * file as vh:load_file sees it. No Lua involved.
 *
 * A random change almost never survives the SHA-256 digest, so each input
 * is also tried with its digests recomputed: that is what lets mutations
 * reach the body and OpenSSL's session decoder. A record that decodes must
 * re-encode and decode again to the same tuple, times and sessions.
 *
 *   make fuzz                          build, then a short run
 *   build/fuzz/fuzz_record -runs=N build/fuzz/corpus spec/fuzz/corpus
 */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* the key the specs and the seed corpus use */
static const unsigned char key[TC_REC_KEYLEN] = "0123456789abcdef0123456789ABCDEF";

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant broken: %s\n", #c); abort(); } } while (0)

static void check_record(const tc_rec *r, const unsigned char *buf, size_t len) {
  int i;
  CHECK(r->namelen >= 1 && r->namelen <= TC_REC_NAME_MAX);
  CHECK(r->hostlen >= 1 && r->hostlen <= TC_REC_HOST_MAX);
  CHECK(r->port >= 1 && r->port <= 65535);
  CHECK(r->snilen <= TC_REC_SNI_MAX && r->alpnlen <= TC_REC_ALPN_MAX);
  CHECK((const unsigned char *)r->host >= buf && (const unsigned char *)r->host + r->hostlen <= buf + len);
  CHECK(r->fingerprint >= buf && r->fingerprint + 32 <= buf + len);
  CHECK(r->protocol == TLS1_2_VERSION || r->protocol == TLS1_3_VERSION);
  CHECK(r->count >= 1 && r->count <= TC_REC_SESSIONS_MAX);
  for (i = 0; i < r->count; i++) {
    CHECK(r->sess[i] != NULL && r->sess_expires[i] <= r->expires);
    CHECK(SSL_SESSION_get_protocol_version(r->sess[i]) == r->protocol);
  }
}

/* decoded -> encoded -> decoded: the same record */
static void roundtrip(const tc_rec *r, const unsigned char *k) {
  size_t n = tc_rec_size(r, k != NULL);
  unsigned char *buf;
  const char *why = NULL;
  tc_rec again;
  int i;
  if (n == 0) return;                  /* a session that re-encodes larger than the cap */
  buf = (unsigned char *)malloc(n);
  CHECK(buf != NULL);
  CHECK(tc_rec_encode(r, k, buf, n, &why) == n);
  CHECK(tc_rec_decode(buf, n, k, &again, &why) == TC_REC_OK);
  CHECK(again.namelen == r->namelen && memcmp(again.name, r->name, r->namelen) == 0);
  CHECK(again.hostlen == r->hostlen && memcmp(again.host, r->host, r->hostlen) == 0);
  CHECK(again.snilen == r->snilen && (r->snilen == 0 || memcmp(again.sni, r->sni, r->snilen) == 0));
  CHECK(again.alpnlen == r->alpnlen && (r->alpnlen == 0 || memcmp(again.alpn, r->alpn, r->alpnlen) == 0));
  CHECK(again.port == r->port && memcmp(again.fingerprint, r->fingerprint, 32) == 0);
  CHECK(again.created == r->created && again.expires == r->expires);
  CHECK(again.protocol == r->protocol && again.count == r->count);
  for (i = 0; i < r->count; i++) CHECK(again.sess_expires[i] == r->sess_expires[i]);
  tc_rec_clear(&again);
  free(buf);
}

static void one_record(const unsigned char *buf, size_t len) {
  tc_rec r;
  const char *why = NULL;
  int rc = tc_rec_decode(buf, len, NULL, &r, &why);
  CHECK(rc == TC_REC_OK || (why != NULL && r.count == 0));
  if (rc == TC_REC_OK) {
    check_record(&r, buf, len);
    roundtrip(&r, NULL);
    /* the keyed round trip costs as much again: one input in eight */
    if ((buf[len / 2] & 7) == 0) roundtrip(&r, key);
    tc_rec_clear(&r);
  }
  why = NULL;
  rc = tc_rec_decode(buf, len, key, &r, &why);
  CHECK(rc == TC_REC_OK || (why != NULL && r.count == 0));
  if (rc == TC_REC_OK) {
    check_record(&r, buf, len);
    tc_rec_clear(&r);
  }
}

static void file_record(void *ud, const unsigned char *rec, size_t len) {
  (void)ud;
  one_record(rec, len);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  unsigned char *copy;
  const char *why = NULL;
  uint32_t lost;
  if (size > TC_REC_MAX) return 0;
  one_record(data, size);
  tc_file_walk(data, size, file_record, NULL, &lost, &why);
  /* a private copy: libFuzzer's input is read-only, and sized exactly so
   * ASan sees any read past the end */
  copy = (unsigned char *)malloc(size ? size : 1);
  CHECK(copy != NULL);
  if (size) memcpy(copy, data, size);
  if (size >= 32) {
    /* as a digested record, with its digest made right */
    EVP_Digest(copy, size - 32, copy + size - 32, NULL, EVP_sha256(), NULL);
    one_record(copy, size);
  }
  if (size >= TC_FILE_HEADER) {
    /* as a file, with its header digest made right */
    memcpy(copy, data, size);
    EVP_Digest(copy, 16, copy + 16, NULL, EVP_sha256(), NULL);
    tc_file_walk(copy, size, file_record, NULL, &lost, &why);
  }
  free(copy);
  return 0;
}
