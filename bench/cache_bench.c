/*
 * Micro-benchmark of the pure session cache (csrc/cache.c): ns per lookup,
 * insert, evict and expire at several sizes, and the memory an entry costs
 * beyond OpenSSL's own session. Keys look like real ones
 * (host \0 port \0 servername \0) and are visited in random order, so the
 * large sizes pay their cache misses.
 *
 * Two access patterns: "random" picks any entry, so at a million entries
 * each operation pays DRAM misses (the bucket, then the entry: two
 * dependent loads no hash table avoids); "hot" touches a fixed set of 1,000
 * entries spread over the whole table, which is how a client uses a cache
 * (a few servers, over and over) and isolates the algorithm's own cost from
 * the memory hierarchy.
 *
 *   make cache-bench        (or: cc -O2 -Icsrc bench/cache_bench.c csrc/cache.c)
 *   ./build/cache_bench [sizes...]       (default 10 1000 100000 1000000)
 */
#define _POSIX_C_SOURCE 200809L
#include "cache.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char dummy;                     /* every "session" points here */
static void nofree(void *p) { (void)p; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct { char k[64]; size_t n; } key;

static key *make_keys(size_t n, size_t base) {
  key *ks = (key *)malloc(n * sizeof *ks);
  size_t i;
  for (i = 0; i < n; i++) {
    int len = snprintf(ks[i].k, sizeof ks[i].k, "host%zu.example.net%c443%chost%zu.example.net%c",
                       base + i, 0, 0, base + i, 0);
    ks[i].n = (size_t)len;
  }
  return ks;
}

static size_t *perm(size_t n, unsigned seed) {
  size_t *p = (size_t *)malloc(n * sizeof *p), i;
  srand(seed);
  for (i = 0; i < n; i++) p[i] = i;
  for (i = n - 1; i > 0; i--) {
    size_t j = (((size_t)rand() << 16) ^ (size_t)rand()) % (i + 1), t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

static tc_store *mk(size_t max) {
  tc_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max = max;
  cfg.tickets_max = 4;                 /* the default: room for 4 tickets */
  cfg.seed = 0x9e3779b97f4a7c15ULL;
  return tc_store_new(&cfg, nofree);
}

static double median5(double *v) {
  int i, j;
  for (i = 0; i < 5; i++)
    for (j = i + 1; j < 5; j++)
      if (v[j] < v[i]) { double t = v[i]; v[i] = v[j]; v[j] = t; }
  return v[2];
}

static volatile size_t sink;

/* ns per lookup (tc_take hit + MRU move) over `ops` operations on keys[] */
static double time_lookups(tc_store *st, key **keys, size_t nkeys, size_t ops) {
  tc_item it;
  size_t i;
  double t0 = now();
  for (i = 0; i < ops; i++) {
    const key *k = keys[(i * 7919) % nkeys];
    sink += (size_t)tc_take(st, k->k, k->n, 1, &it);
  }
  return (now() - t0) / (double)ops * 1e9;
}

/* ns of one dependent load at a random place in `bytes` of memory: what the
 * memory hierarchy charges for any pointer a lookup follows at that size
 * (a chained hash table follows at least two: the bucket, then the entry) */
static double chase_ns(size_t bytes) {
  size_t n = bytes / sizeof(size_t), i, x = 0, ops = 2000000;
  size_t *a, *p;
  double t0, t;
  if (n < 2) n = 2;
  a = (size_t *)malloc(n * sizeof *a);
  p = perm(n, 11);
  for (i = 0; i < n; i++) a[p[i]] = p[(i + 1) % n];   /* one cycle through all */
  t0 = now();
  for (i = 0; i < ops; i++) x = a[x];
  t = (now() - t0) / (double)ops * 1e9;
  sink += x;
  free(a);
  free(p);
  return t;
}

int main(int argc, char **argv) {
  size_t sizes[16], nsizes = 0, s;
  if (argc > 1) {
    int a;
    for (a = 1; a < argc && nsizes < 16; a++) sizes[nsizes++] = (size_t)strtoul(argv[a], NULL, 10);
  } else {
    sizes[0] = 10; sizes[1] = 1000; sizes[2] = 100000; sizes[3] = 1000000; nsizes = 4;
  }
  printf("ns per operation, median of 5 runs; random = any entry, hot = 1,000 entries spread over the table\n");
  printf("dram = one dependent random load in a table of that many entries (the memory's own floor)\n");
  printf("%10s %10s %10s %10s %10s %10s %12s %10s\n", "entries", "lookup", "lookup", "insert",
         "evict", "expire", "bytes/entry", "dram");
  printf("%10s %10s %10s %10s %10s %10s %12s %10s\n", "", "random", "hot", "", "", "", "", "");
  for (s = 0; s < nsizes; s++) {
    size_t n = sizes[s], ops = 2000000, i, r, nhot = n < 1000 ? n : 1000;
    size_t reps = n >= ops ? 1 : ops / n;
    key *ks = make_keys(n, 0), *fresh = make_keys(ops, n);
    key **all = (key **)malloc(n * sizeof *all), **hot = (key **)malloc(nhot * sizeof *hot);
    size_t *order = perm(n, 7);
    double look[5], lookh[5], ins[5], ev[5], ex[5], bytes = 0;
    for (i = 0; i < n; i++) all[i] = &ks[order[i]];
    for (i = 0; i < nhot; i++) hot[i] = all[i * (n / nhot)];
    for (r = 0; r < 5; r++) {
      tc_store *st;
      tc_item it;
      double t0, t;
      struct mallinfo2 m0, m1;
      size_t k;
      /* insert: fill an empty store, bucket growth included */
      t = 0;
      for (k = 0; k < reps; k++) {
        m0 = mallinfo2();
        st = mk(n);
        t0 = now();
        for (i = 0; i < n; i++) tc_put(st, all[i]->k, all[i]->n, &dummy, 0, 0, 1e9, 0);
        t += now() - t0;
        m1 = mallinfo2();
        bytes = (double)(m1.uordblks - m0.uordblks) / (double)n;
        if (k + 1 < reps) tc_store_unref(st);
      }
      ins[r] = t / (double)(reps * n) * 1e9;
      look[r] = time_lookups(st, all, n, ops);
      lookh[r] = time_lookups(st, hot, nhot, ops);
      /* evict: a new key into the full store evicts the least recently used */
      t0 = now();
      for (i = 0; i < ops; i++) tc_put(st, fresh[i].k, fresh[i].n, &dummy, 0, 2, 1e9, 0);
      ev[r] = (now() - t0) / (double)ops * 1e9;
      tc_store_unref(st);
      /* expire: a lookup that finds the entry past its lifetime and drops it */
      t = 0;
      for (k = 0; k < reps; k++) {
        st = mk(n);
        for (i = 0; i < n; i++) tc_put(st, all[i]->k, all[i]->n, &dummy, 0, 0, 1, 0);
        t0 = now();
        for (i = 0; i < n; i++) sink += (size_t)tc_take(st, ks[i].k, ks[i].n, 5, &it);
        t += now() - t0;
        tc_store_unref(st);
      }
      ex[r] = t / (double)(reps * n) * 1e9;
    }
    printf("%10zu %10.1f %10.1f %10.1f %10.1f %10.1f %12.1f %10.1f\n", n, median5(look),
           median5(lookh), median5(ins), median5(ev), median5(ex), bytes,
           chase_ns((size_t)((double)n * bytes)));
    fflush(stdout);
    free(ks); free(fresh); free(all); free(hot); free(order);
  }
  return 0;
}
