/*
 * Session cache: see cache.h for the contract.
 *
 * Every entry is one allocation: the header, its item array (capacity fixed
 * at tickets_max) and its key bytes. Lookup hashes the key into a power-of-two
 * bucket array with chaining; the MRU list is intrusive and doubly linked, so
 * lookup, insert, touch and removal are all O(1). The bucket array doubles
 * when the table is fuller than one entry per bucket.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

struct tc_entry {
  tc_entry *hnext;             /* hash chain */
  tc_entry *prev, *next;       /* MRU list: prev is more recent */
  uint64_t hash;
  size_t klen;
  char *key;                   /* points into this allocation */
  int count;                   /* items in use, items[0] is the newest */
  int tls13;
  tc_item items[1];            /* tickets_max of them */
};

struct tc_store {
  int refs;
  int closed;
  tc_config cfg;
  tc_free_fn freefn;
  tc_entry **buckets;
  size_t nbuckets;             /* power of two */
  size_t size;
  tc_entry *head, *tail;       /* most / least recently used */
  uint64_t next_id;
  tc_stats stats;
};

/* Seeded hash, eight bytes a step with a multiply-xorshift mix and the
 * splitmix64 finalizer: keys are ~40 bytes and hashing them is most of a
 * small cache's lookup, so byte-at-a-time hashes cost too much here. Keys
 * are chosen by the program, not by peers; the random seed keeps bucket
 * placement unpredictable all the same. */
static uint64_t mix(uint64_t h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

static uint64_t hashkey(uint64_t seed, const char *k, size_t n) {
  uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL), v;
  while (n >= 8) {
    memcpy(&v, k, 8);
    h = (h ^ v) * 0x9fb21c651e98df25ULL;
    h ^= h >> 29;
    k += 8;
    n -= 8;
  }
  v = 0;
  memcpy(&v, k, n);
  return mix(h ^ v);
}

tc_store *tc_store_new(const tc_config *cfg, tc_free_fn freefn) {
  tc_store *s = (tc_store *)calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->cfg = *cfg;
  if (s->cfg.max == 0) s->cfg.max = TC_DEFAULT_MAX;
  if (s->cfg.tickets_max <= 0) s->cfg.tickets_max = TC_DEFAULT_TICKETS;
  if (s->cfg.tickets_max > TC_MAX_TICKETS) s->cfg.tickets_max = TC_MAX_TICKETS;
  s->freefn = freefn;
  s->nbuckets = 16;
  s->buckets = (tc_entry **)calloc(s->nbuckets, sizeof *s->buckets);
  if (s->buckets == NULL) {
    free(s);
    return NULL;
  }
  s->refs = 1;
  s->next_id = 1;
  return s;
}

void tc_store_ref(tc_store *s) { s->refs++; }

static void entry_free(tc_store *s, tc_entry *e) {
  int i;
  for (i = 0; i < e->count; i++) s->freefn(e->items[i].sess);
  free(e);
}

static void unlink_entry(tc_store *s, tc_entry *e) {
  tc_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  if (e->prev) e->prev->next = e->next; else s->head = e->next;
  if (e->next) e->next->prev = e->prev; else s->tail = e->prev;
  s->size--;
}

static void remove_entry(tc_store *s, tc_entry *e) {
  unlink_entry(s, e);
  entry_free(s, e);
}

void tc_store_close(tc_store *s) {
  while (s->head) remove_entry(s, s->head);
  s->closed = 1;
}

void tc_store_unref(tc_store *s) {
  if (--s->refs > 0) return;
  tc_store_close(s);
  free(s->buckets);
  free(s);
}

int tc_store_closed(const tc_store *s) { return s->closed; }
size_t tc_size(const tc_store *s) { return s->size; }
size_t tc_max(const tc_store *s) { return s->cfg.max; }
tc_stats *tc_statsp(tc_store *s) { return &s->stats; }

static tc_entry *find(const tc_store *s, const char *key, size_t klen, uint64_t h) {
  tc_entry *e = s->buckets[h & (s->nbuckets - 1)];
  for (; e; e = e->hnext)
    if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
      return e;
  return NULL;
}

static void push_front(tc_store *s, tc_entry *e) {
  e->prev = NULL;
  e->next = s->head;
  if (s->head) s->head->prev = e; else s->tail = e;
  s->head = e;
}

static void touch(tc_store *s, tc_entry *e) {
  if (s->head == e) return;
  e->prev->next = e->next;
  if (e->next) e->next->prev = e->prev; else s->tail = e->prev;
  push_front(s, e);
}

/* Double the bucket array; on allocation failure keep the old one (longer
 * chains, still correct). */
static void grow(tc_store *s) {
  size_t n = s->nbuckets * 2, i;
  tc_entry **b = (tc_entry **)calloc(n, sizeof *b);
  if (b == NULL) return;
  for (i = 0; i < s->nbuckets; i++) {
    tc_entry *e = s->buckets[i], *nx;
    for (; e; e = nx) {
      nx = e->hnext;
      e->hnext = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
}

static void drop_item(tc_store *s, tc_entry *e, int i, int freeit) {
  if (freeit) s->freefn(e->items[i].sess);
  memmove(&e->items[i], &e->items[i + 1], (size_t)(e->count - i - 1) * sizeof e->items[0]);
  e->count--;
}

/* Drop expired items of one entry; returns the number dropped. */
static int expire_entry(tc_store *s, tc_entry *e, double now) {
  int i = 0, n = 0;
  while (i < e->count) {
    if (e->items[i].expires <= now) {
      drop_item(s, e, i, 1);
      n++;
    } else {
      i++;
    }
  }
  s->stats.expired += (uint64_t)n;
  return n;
}

static void push_back(tc_store *s, tc_entry *e) {
  e->next = NULL;
  e->prev = s->tail;
  if (s->tail) s->tail->next = e; else s->head = e;
  s->tail = e;
}

/* Allocate an empty entry for `key` and hash it in; the caller links it into
 * the MRU list. NULL when out of memory. */
static tc_entry *new_entry(tc_store *s, const char *key, size_t klen, uint64_t h, int tls13) {
  size_t cap = (size_t)s->cfg.tickets_max;
  size_t sz = sizeof(tc_entry) + (cap - 1) * sizeof(tc_item);
  tc_entry *e = (tc_entry *)malloc(sz + klen + 1);
  if (e == NULL) return NULL;
  e->key = (char *)e + sz;
  memcpy(e->key, key, klen);
  e->key[klen] = '\0';
  e->klen = klen;
  e->hash = h;
  e->count = 0;
  e->tls13 = tls13;
  if (s->size >= s->nbuckets) grow(s);
  e->hnext = s->buckets[h & (s->nbuckets - 1)];
  s->buckets[h & (s->nbuckets - 1)] = e;
  s->size++;
  return e;
}

/* Put item `in` at position i of e, shifting the later ones down; there is room. */
static void insert_item(tc_store *s, tc_entry *e, int i, const tc_item *in) {
  tc_item *it;
  memmove(&e->items[i + 1], &e->items[i], (size_t)(e->count - i) * sizeof e->items[0]);
  it = &e->items[i];
  *it = *in;
  it->id = s->next_id++;
  it->owned = 0;
  e->count++;
}

int tc_put(tc_store *s, const char *key, size_t klen, void *sess, int tls13,
           double now, double expires, int64_t wall_expires) {
  uint64_t h;
  tc_entry *e;
  tc_item in;
  if (s->closed || expires <= now) {
    s->freefn(sess);
    return 0;
  }
  h = hashkey(s->cfg.seed, key, klen);
  e = find(s, key, klen, h);
  if (e == NULL) {
    if (s->size >= s->cfg.max && s->tail) {
      remove_entry(s, s->tail);
      s->stats.evictions++;
    }
    e = new_entry(s, key, klen, h, tls13);
    if (e == NULL) {
      s->freefn(sess);
      return 0;
    }
    push_front(s, e);
  } else {
    touch(s, e);
    if (e->tls13 != tls13 || !tls13) {
      /* a TLS 1.2 entry keeps only its newest session; a protocol change
       * makes every older item useless */
      while (e->count) drop_item(s, e, 0, 1);
      e->tls13 = tls13;
    } else if (e->count == s->cfg.tickets_max) {
      drop_item(s, e, e->count - 1, 1);    /* the oldest ticket */
    }
  }
  memset(&in, 0, sizeof in);
  in.sess = sess;
  in.stored = now;
  in.expires = expires;
  in.wall_expires = wall_expires;
  in.tls13 = tls13;
  insert_item(s, e, 0, &in);
  s->stats.stores++;
  return 1;
}

int tc_put_loaded(tc_store *s, const char *key, size_t klen, const tc_item *in,
                  double now, int where) {
  uint64_t h;
  tc_entry *e;
  int i = 0;
  if (s->closed || in->expires <= now) goto refuse;
  h = hashkey(s->cfg.seed, key, klen);
  e = find(s, key, klen, h);
  if (e == NULL) {
    if (s->size >= s->cfg.max) {
      if (where != TC_LOAD_FRONT || s->tail == NULL) goto refuse;
      remove_entry(s, s->tail);
      s->stats.evictions++;
    }
    e = new_entry(s, key, klen, h, in->tls13);
    if (e == NULL) goto refuse;
    if (where == TC_LOAD_FRONT) push_front(s, e); else push_back(s, e);
  } else {
    /* what is in memory came from the server more recently than any file:
     * the loaded item only fills room that nothing fresher needs */
    if (e->tls13 != in->tls13) goto refuse;
    while (i < e->count && e->items[i].wall_expires >= in->wall_expires) i++;
    if (!in->tls13) {
      if (i > 0) goto refuse;
      while (e->count) drop_item(s, e, 0, 1);
    } else if (e->count == s->cfg.tickets_max) {
      if (i == e->count) goto refuse;
      drop_item(s, e, e->count - 1, 1);    /* the oldest ticket */
    }
  }
  insert_item(s, e, i, in);
  e->items[i].loaded = 1;
  s->stats.loaded++;
  return 1;
refuse:
  s->freefn(in->sess);
  return 0;
}

const tc_entry *tc_lookup(const tc_store *s, const char *key, size_t klen) {
  return find(s, key, klen, hashkey(s->cfg.seed, key, klen));
}

int tc_take(tc_store *s, const char *key, size_t klen, double now, tc_item *out) {
  tc_entry *e = find(s, key, klen, hashkey(s->cfg.seed, key, klen));
  if (e) {
    expire_entry(s, e, now);
    if (e->count == 0) {
      remove_entry(s, e);
      e = NULL;
    }
  }
  if (e == NULL) {
    s->stats.misses++;
    return 0;
  }
  s->stats.hits++;
  touch(s, e);
  *out = e->items[0];
  if (e->tls13 && !s->cfg.ticket_reuse) {
    out->owned = 1;
    drop_item(s, e, 0, 0);
    if (e->count == 0) remove_entry(s, e);
  }
  return 1;
}

int tc_drop(tc_store *s, const char *key, size_t klen, uint64_t id) {
  tc_entry *e = find(s, key, klen, hashkey(s->cfg.seed, key, klen));
  int i;
  if (e == NULL) return 0;
  for (i = 0; i < e->count; i++) {
    if (e->items[i].id == id) {
      drop_item(s, e, i, 1);
      if (e->count == 0) remove_entry(s, e);
      return 1;
    }
  }
  return 0;
}

int tc_remove(tc_store *s, const char *key, size_t klen) {
  tc_entry *e = find(s, key, klen, hashkey(s->cfg.seed, key, klen));
  if (e == NULL) return 0;
  remove_entry(s, e);
  return 1;
}

size_t tc_flush(tc_store *s, const char *prefix, size_t plen) {
  tc_entry *e = s->head, *nx;
  size_t n = 0;
  for (; e; e = nx) {
    nx = e->next;
    if (e->klen >= plen && memcmp(e->key, prefix, plen) == 0) {
      remove_entry(s, e);
      n++;
    }
  }
  return n;
}

void tc_purge(tc_store *s, double now) {
  tc_entry *e = s->head, *nx;
  for (; e; e = nx) {
    nx = e->next;
    expire_entry(s, e, now);
    if (e->count == 0) remove_entry(s, e);
  }
}

const tc_entry *tc_next(const tc_store *s, const tc_entry *e) {
  return e ? e->next : s->head;
}

const char *tc_entry_key(const tc_entry *e, size_t *klen) {
  *klen = e->klen;
  return e->key;
}

int tc_entry_count(const tc_entry *e) { return e->count; }

int tc_entry_item(const tc_entry *e, int i, tc_item *out) {
  if (i < 0 || i >= e->count) return 0;
  *out = e->items[i];
  return 1;
}
