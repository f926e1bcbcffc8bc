/*
 * Unit tests of the pure session cache (csrc/cache.c), no OpenSSL needed:
 * sessions are heap integers, and every free is counted so that leaks and
 * double frees show up as wrong counts.
 */
#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed, freed;

#define CHECK(cond) do { \
    if (cond) passed++; \
    else { failed++; fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)

static void free_sess(void *p) { freed++; free(p); }

static void *sess(int v) {
  int *p = (int *)malloc(sizeof *p);
  *p = v;
  return p;
}

static int val(const tc_item *it) { return *(int *)it->sess; }

static tc_store *store(size_t max, int tickets, int reuse) {
  tc_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max = max;
  cfg.tickets_max = tickets;
  cfg.ticket_reuse = reuse;
  cfg.seed = 42;
  return tc_store_new(&cfg, free_sess);
}

static int take(tc_store *s, const char *k, double now) {
  tc_item it;
  int v;
  if (!tc_take(s, k, strlen(k), now, &it)) return -1;
  v = val(&it);
  if (it.owned) free_sess(it.sess);
  return v;
}

static void put(tc_store *s, const char *k, int v, int tls13, double now, double exp) {
  tc_put(s, k, strlen(k), sess(v), tls13, now, exp, 0);
}

static void test_tls12_reuse(void) {
  tc_store *s = store(0, 0, 0);
  CHECK(tc_max(s) == TC_DEFAULT_MAX);
  CHECK(take(s, "a", 0) == -1);
  put(s, "a", 1, 0, 0, 100);
  CHECK(take(s, "a", 1) == 1);
  CHECK(take(s, "a", 2) == 1);           /* TLS 1.2: reused */
  put(s, "a", 2, 0, 3, 100);               /* replaces, one item kept */
  CHECK(take(s, "a", 4) == 2);
  CHECK(tc_size(s) == 1);
  CHECK(tc_statsp(s)->hits == 3 && tc_statsp(s)->misses == 1 && tc_statsp(s)->stores == 2);
  freed = 0;
  tc_store_unref(s);
  CHECK(freed == 1);
}

static void test_tls13_single_use(void) {
  tc_store *s = store(10, 3, 0);
  const tc_entry *e;
  tc_item it;
  put(s, "h", 1, 1, 0, 100);
  put(s, "h", 2, 1, 0, 100);
  put(s, "h", 3, 1, 0, 100);
  put(s, "h", 4, 1, 0, 100);               /* over tickets_max: oldest (1) dropped */
  e = tc_next(s, NULL);
  CHECK(e && tc_entry_count(e) == 3);
  CHECK(tc_entry_item(e, 0, &it) && val(&it) == 4);
  CHECK(tc_entry_item(e, 2, &it) && val(&it) == 2);
  CHECK(!tc_entry_item(e, 3, &it));
  CHECK(take(s, "h", 1) == 4);             /* newest first, each once */
  CHECK(take(s, "h", 1) == 3);
  CHECK(take(s, "h", 1) == 2);
  CHECK(tc_size(s) == 0);                  /* an entry with no ticket left is gone */
  CHECK(take(s, "h", 1) == -1);
  freed = 0;
  tc_store_unref(s);
  CHECK(freed == 0);
}

static void test_ticket_reuse_and_protocol_change(void) {
  tc_store *s = store(10, 4, 1);
  put(s, "h", 1, 1, 0, 100);
  put(s, "h", 2, 1, 0, 100);
  CHECK(take(s, "h", 1) == 2);
  CHECK(take(s, "h", 1) == 2);             /* ticket_reuse: offered again */
  freed = 0;
  put(s, "h", 3, 0, 2, 100);               /* server went TLS 1.2: both tickets go */
  CHECK(freed == 2);
  CHECK(tc_entry_count(tc_next(s, NULL)) == 1);
  CHECK(take(s, "h", 3) == 3);
  tc_store_unref(s);
}

static void test_mru_eviction(void) {
  tc_store *s = store(2, 0, 0);
  size_t kl;
  put(s, "a", 1, 0, 0, 100);
  put(s, "b", 2, 0, 0, 100);
  CHECK(take(s, "a", 1) == 1);             /* a is now the most recent */
  put(s, "c", 3, 0, 2, 100);               /* evicts b, the least recent */
  CHECK(tc_size(s) == 2);
  CHECK(tc_statsp(s)->evictions == 1);
  CHECK(take(s, "b", 3) == -1);
  CHECK(strcmp(tc_entry_key(tc_next(s, NULL), &kl), "c") == 0);
  CHECK(strcmp(tc_entry_key(tc_next(s, tc_next(s, NULL)), &kl), "a") == 0);
  CHECK(tc_next(s, tc_next(s, tc_next(s, NULL))) == NULL);
  tc_store_unref(s);
}

static void test_expiry(void) {
  tc_store *s = store(10, 4, 0);
  put(s, "a", 1, 0, 0, 10);
  put(s, "b", 2, 1, 0, 5);
  put(s, "b", 3, 1, 0, 20);
  CHECK(take(s, "a", 10) == -1);           /* expires <= now: gone */
  CHECK(tc_statsp(s)->expired == 1);
  tc_purge(s, 6);                          /* drops ticket 2, keeps 3 */
  CHECK(tc_size(s) == 1 && tc_entry_count(tc_next(s, NULL)) == 1);
  CHECK(take(s, "b", 7) == 3);
  freed = 0;
  tc_put(s, "c", 1, sess(9), 0, 50, 50, 0);   /* already expired: refused, freed */
  CHECK(freed == 1 && tc_size(s) == 0);
  tc_store_unref(s);
}

static void test_drop_flush_remove(void) {
  tc_store *s = store(10, 4, 1);
  tc_item it;
  char k1[] = "host\0" "443\0" "sni\0", k2[] = "host\0" "443\0" "other\0", k3[] = "host\0" "4430\0" "\0";
  tc_put(s, k1, sizeof k1 - 1, sess(1), 1, 0, 100, 0);
  tc_put(s, k1, sizeof k1 - 1, sess(2), 1, 0, 100, 0);
  tc_put(s, k2, sizeof k2 - 1, sess(3), 0, 0, 100, 0);
  tc_put(s, k3, sizeof k3 - 1, sess(4), 0, 0, 100, 0);
  CHECK(tc_take(s, k1, sizeof k1 - 1, 1, &it) && val(&it) == 2 && !it.owned);
  CHECK(tc_drop(s, k1, sizeof k1 - 1, it.id) == 1);
  CHECK(tc_drop(s, k1, sizeof k1 - 1, it.id) == 0);
  CHECK(tc_take(s, k1, sizeof k1 - 1, 1, &it) && val(&it) == 1);
  CHECK(tc_flush(s, "host\0" "443\0", 9) == 2);  /* both server names, not port 4430 */
  CHECK(tc_size(s) == 1);
  CHECK(tc_remove(s, k3, sizeof k3 - 1) == 1 && tc_size(s) == 0);
  CHECK(tc_remove(s, k3, sizeof k3 - 1) == 0);
  tc_store_unref(s);
}

static void test_refcount_and_close(void) {
  tc_store *s = store(10, 4, 0);
  put(s, "a", 1, 0, 0, 100);
  tc_store_ref(s);                         /* a connection's reference */
  freed = 0;
  tc_store_close(s);                       /* the vhost is closed */
  CHECK(freed == 1 && tc_store_closed(s));
  tc_store_unref(s);                       /* the vhost's reference */
  put(s, "a", 2, 1, 0, 100);               /* a late ticket: refused, freed */
  CHECK(freed == 2 && tc_size(s) == 0);
  tc_store_unref(s);                       /* the connection's: store freed */
}

static void test_many(void) {
  tc_store *s = store(5000, 1, 0);
  char k[32];
  int i, ok = 1;
  for (i = 0; i < 20000; i++) {
    snprintf(k, sizeof k, "host%d", i);
    put(s, k, i, 0, 0, 100);
  }
  CHECK(tc_size(s) == 5000);
  CHECK(tc_statsp(s)->evictions == 15000);
  for (i = 15000; i < 20000; i++) {
    snprintf(k, sizeof k, "host%d", i);
    if (take(s, k, 1) != i) ok = 0;
  }
  CHECK(ok);
  snprintf(k, sizeof k, "host%d", 14999);
  CHECK(take(s, k, 1) == -1);
  freed = 0;
  tc_store_unref(s);
  CHECK(freed == 5000);
}

/* a loaded item: sess(v), stored 0, monotonic and wall expiry */
static int load(tc_store *s, const char *k, int v, int tls13, double now, double exp,
                int64_t wall, int where) {
  tc_item in;
  memset(&in, 0, sizeof in);
  in.sess = sess(v);
  in.tls13 = tls13;
  in.expires = exp;
  in.wall_expires = wall;
  return tc_put_loaded(s, k, strlen(k), &in, now, where);
}

static void test_loaded_tls12_never_displaces(void) {
  tc_store *s = store(10, 4, 0);
  freed = 0;
  tc_put(s, "a", 1, sess(1), 0, 0, 100, 1000);
  CHECK(load(s, "a", 2, 0, 0, 100, 1000, TC_LOAD_FRONT) == 0);   /* same expiry: live kept */
  CHECK(load(s, "a", 3, 0, 0, 100, 900, TC_LOAD_FRONT) == 0);    /* older: refused */
  CHECK(freed == 2);
  CHECK(take(s, "a", 1) == 1);
  CHECK(load(s, "a", 4, 0, 0, 100, 1001, TC_LOAD_FRONT) == 1);   /* fresher: replaces */
  CHECK(freed == 3 && take(s, "a", 1) == 4);
  CHECK(load(s, "a", 5, 1, 0, 100, 5000, TC_LOAD_FRONT) == 0);   /* other protocol: refused */
  CHECK(freed == 4 && take(s, "a", 1) == 4);
  CHECK(load(s, "b", 6, 0, 50, 50, 5000, TC_LOAD_FRONT) == 0);   /* expired: refused */
  CHECK(freed == 5 && tc_size(s) == 1);
  CHECK(tc_statsp(s)->loaded == 1 && tc_statsp(s)->stores == 1);
  tc_store_unref(s);
}

static void test_loaded_tls13_order(void) {
  tc_store *s = store(10, 3, 0);
  const tc_entry *e;
  tc_item it;
  tc_put(s, "h", 1, sess(1), 1, 0, 100, 1000);
  tc_put(s, "h", 1, sess(2), 1, 0, 100, 2000);          /* items: 2 (2000), 1 (1000) */
  CHECK(load(s, "h", 3, 1, 0, 100, 1500, TC_LOAD_FRONT) == 1);   /* between them */
  e = tc_lookup(s, "h", 1);
  CHECK(e && tc_entry_count(e) == 3);
  CHECK(tc_entry_item(e, 0, &it) && val(&it) == 2);
  CHECK(tc_entry_item(e, 1, &it) && val(&it) == 3);
  CHECK(tc_entry_item(e, 2, &it) && val(&it) == 1);
  freed = 0;
  CHECK(load(s, "h", 4, 1, 0, 100, 500, TC_LOAD_FRONT) == 0);    /* full of fresher: refused */
  CHECK(freed == 1);
  CHECK(load(s, "h", 5, 1, 0, 100, 1200, TC_LOAD_FRONT) == 1);   /* displaces the oldest (1) */
  CHECK(freed == 2);
  e = tc_lookup(s, "h", 1);
  CHECK(tc_entry_item(e, 2, &it) && val(&it) == 5);
  CHECK(take(s, "h", 1) == 2 && take(s, "h", 1) == 3 && take(s, "h", 1) == 5);
  CHECK(tc_lookup(s, "h", 1) == NULL && tc_lookup(s, "x", 1) == NULL);
  tc_store_unref(s);
}

static void test_loaded_placement(void) {
  tc_store *s = store(2, 0, 0);
  size_t kl;
  freed = 0;
  CHECK(load(s, "a", 1, 0, 0, 100, 10, TC_LOAD_BACK) == 1);
  CHECK(load(s, "b", 2, 0, 0, 100, 10, TC_LOAD_BACK) == 1);      /* after a: MRU order kept */
  CHECK(strcmp(tc_entry_key(tc_next(s, NULL), &kl), "a") == 0);
  CHECK(load(s, "c", 3, 0, 0, 100, 10, TC_LOAD_BACK) == 0);      /* full: no eviction */
  CHECK(freed == 1 && tc_statsp(s)->evictions == 0);
  CHECK(load(s, "a", 4, 0, 0, 100, 20, TC_LOAD_BACK) == 1);      /* existing entry: stays put */
  CHECK(strcmp(tc_entry_key(tc_next(s, NULL), &kl), "a") == 0);
  CHECK(load(s, "d", 5, 0, 0, 100, 10, TC_LOAD_FRONT) == 1);     /* evicts b, the LRU */
  CHECK(tc_statsp(s)->evictions == 1 && take(s, "b", 1) == -1);
  CHECK(strcmp(tc_entry_key(tc_next(s, NULL), &kl), "d") == 0);
  tc_store_close(s);
  CHECK(load(s, "e", 6, 0, 0, 100, 10, TC_LOAD_FRONT) == 0);     /* closed: refused, freed */
  tc_store_unref(s);
  CHECK(freed == 6);
}

int main(void) {
  test_tls12_reuse();
  test_tls13_single_use();
  test_ticket_reuse_and_protocol_change();
  test_mru_eviction();
  test_expiry();
  test_drop_flush_remove();
  test_refcount_and_close();
  test_many();
  test_loaded_tls12_never_displaces();
  test_loaded_tls13_order();
  test_loaded_placement();
  printf("cache_test: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
