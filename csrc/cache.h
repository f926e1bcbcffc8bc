/*
 * The session cache: a hash table plus an intrusive most-recently-used list.
 * Knows nothing of Lua, sockets or OpenSSL: the sessions it holds are opaque
 * pointers released through the free function given at creation, so the cache
 * can be unit-tested and benchmarked from plain C.
 *
 * Each entry is named by a byte-string key (the caller encodes host, port,
 * server name and ALPN override into it) and holds up to `tickets_max` items
 * of one protocol: a TLS 1.2 entry keeps one reusable session, a TLS 1.3
 * entry keeps a small stack of tickets, newest first, each offered once
 * unless `ticket_reuse` is set (RFC 8446 appendix C.4).
 *
 * Time is passed in by the caller: `now` is monotonic seconds (in-memory
 * expiry), `wall` is Unix time (only recorded, for saving).
 *
 * The store is reference counted: the vhost holds one reference and every
 * connection that may still deliver a session holds another, so a ticket that
 * arrives while a connection closes after its vhost was collected finds live
 * memory (and, the store being closed, is dropped).
 */
#ifndef TLSCACHE_CACHE_H
#define TLSCACHE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tc_store tc_store;
typedef struct tc_entry tc_entry;

typedef void (*tc_free_fn)(void *sess);

typedef struct tc_config {
  size_t max;           /* entries; 0 means TC_DEFAULT_MAX */
  int tickets_max;      /* items kept per TLS 1.3 entry; 0 means TC_DEFAULT_TICKETS */
  int ticket_reuse;     /* TLS 1.3: 1 = offer the newest ticket again and again */
  uint64_t seed;        /* hash seed */
} tc_config;

#define TC_DEFAULT_MAX 10
#define TC_DEFAULT_TICKETS 4
#define TC_MAX_TICKETS 64

typedef struct tc_stats {
  uint64_t hits, misses, stores, evictions, expired, offered, resumed, rejected;
  uint64_t loaded;      /* items stored by tc_put_loaded (not in stores) */
} tc_stats;

/* One stored session as seen from outside. */
typedef struct tc_item {
  void *sess;           /* borrowed unless returned by tc_take with owned = 1 */
  uint64_t id;          /* unique within the store, never reused */
  double stored;        /* monotonic time it was stored */
  double expires;       /* monotonic expiry */
  int64_t wall_expires; /* Unix time of expiry, for saving */
  int tls13;
  int owned;            /* tc_take: 1 = removed from the cache, caller frees */
  int loaded;           /* came from saved data (tc_put_loaded), not a handshake */
} tc_item;

tc_store *tc_store_new(const tc_config *cfg, tc_free_fn freefn);
void tc_store_ref(tc_store *s);
void tc_store_unref(tc_store *s);      /* frees the store with its last reference */
void tc_store_close(tc_store *s);      /* drop every entry; later puts are refused */
int tc_store_closed(const tc_store *s);
size_t tc_size(const tc_store *s);
size_t tc_max(const tc_store *s);
tc_stats *tc_statsp(tc_store *s);

/*
 * Store `sess` under `key`. Ownership of `sess` always passes to the cache:
 * it is freed at once when refused (closed store, expires <= now). The entry
 * becomes the most recently used; a full store evicts its least recently used
 * entry first. A session of another protocol than the entry's replaces all of
 * its items. Returns 1 when stored.
 */
int tc_put(tc_store *s, const char *key, size_t klen, void *sess, int tls13,
           double now, double expires, int64_t wall_expires);

/* Where tc_put_loaded puts an entry it has to create. */
enum {
  TC_LOAD_FRONT,        /* most recently used; a full store evicts its LRU entry */
  TC_LOAD_BACK          /* least recently used; a full store refuses it */
};

/*
 * Store a session that comes from saved data rather than from a handshake:
 * like tc_put, but it never displaces a fresher session. `in` gives sess,
 * tls13, stored (may lie in the past), expires and wall_expires; ownership
 * of in->sess always passes to the cache. An existing entry keeps its place
 * in the MRU order and is refused when it holds the other protocol (the
 * server spoke that more recently) or, for TLS 1.2, a session whose wall
 * expiry is not earlier. A TLS 1.3 ticket is inserted after every ticket
 * that expires no earlier, and refused when the entry is full of those; the
 * ticket it displaces in a full entry is the oldest. A new entry goes where
 * `where` says. Returns 1 when stored.
 */
int tc_put_loaded(tc_store *s, const char *key, size_t klen, const tc_item *in,
                  double now, int where);

/* The entry named exactly `key`, or NULL; changes nothing (no expiry, no
 * MRU touch, no stats). Valid until the next call that changes the store. */
const tc_entry *tc_lookup(const tc_store *s, const char *key, size_t klen);

/*
 * Find a session to offer for `key`, dropping expired items on the way.
 * TLS 1.2 items, and TLS 1.3 items with ticket_reuse, stay cached and are
 * returned borrowed (valid until the next call that changes the store); a
 * single-use ticket is removed and returned owned. Counts a hit or a miss.
 */
int tc_take(tc_store *s, const char *key, size_t klen, double now, tc_item *out);

/* Drop the item with this id from the entry `key` (a session the server
 * refused). Returns 1 when found. */
int tc_drop(tc_store *s, const char *key, size_t klen, uint64_t id);

/* Remove the entry named exactly `key`. Returns 1 when there was one. */
int tc_remove(tc_store *s, const char *key, size_t klen);

/* Remove entries whose key starts with `prefix` (all when plen is 0).
 * Returns the number removed. */
size_t tc_flush(tc_store *s, const char *prefix, size_t plen);

/* Remove every expired item; entries left empty go too. */
void tc_purge(tc_store *s, double now);

/* Walk entries, most recently used first: pass NULL to start. The walk sees
 * a fixed store: change nothing until it ends. */
const tc_entry *tc_next(const tc_store *s, const tc_entry *e);
const char *tc_entry_key(const tc_entry *e, size_t *klen);
int tc_entry_count(const tc_entry *e);
/* Item i of an entry, 0 = newest. Returns 0 past the end. */
int tc_entry_item(const tc_entry *e, int i, tc_item *out);

#endif
