/* store.c - the per-user and per-item feature store on RocksDB (store.h).
 *
 * Owns the RocksDB handle, its column families and the current batch.  The
 * batch keeps every dirty user, item and (partition, item) view DECODED in
 * hash maps (open addressing keyed by the entity's key: the 8-byte
 * big-endian id, or 4-byte partition + id), so repeated events of one entity
 * inside a batch read their own writes without decoding again; raw
 * puts/deletes (pending, meta, offsets) are staged in another map keyed by
 * (column family, key).  Commit encodes everything, in sorted key order, into
 * one rocksdb_writebatch: the bytes written depend only on the batch's
 * content.
 *
 * Meta keys: "schema_hash" (8 bytes LE), "feature_def" (encoded definitions),
 * "offset/<topic>/<partition>" -> version byte, next_offset, max_time_ms
 * (8 bytes LE each). */
#include "features/store.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/fs.h"

#define N_CF (MTLD_CF_COUNT + 1) /* "default" first, then mtld_cf_t order */
static const char *const cf_names[N_CF] = {"default", "user",      "item", "pending",
                                           "meta",    "item_part", "seen"};

#define BLOCK_CACHE_BYTES ((size_t)64 << 20)
#define WRITE_BUFFER_BYTES ((size_t)128 << 20)
#define CF_WRITE_BUFFER_MAX ((size_t)64 << 20) /* RocksDB's default per column family */
#define OFFSET_PREFIX "offset/"
#define OFFSET_ENC_VERSION 1
#define OFFSET_ENC_LEN 17
#define META_SCHEMA_HASH "schema_hash"
#define META_FEATURE_DEF "feature_def"

/* ---- the batch's hash map: open addressing over a dense entry array ---- */

typedef struct {
  uint64_t hash;
  uint8_t *key; /* a copy in the map's arena */
  size_t klen;
  void *val; /* user/item map: the decoded features; raw map: the bytes (in the arena) */
  size_t vlen;
  uint8_t cf;      /* mtld_cf_t */
  uint8_t deleted; /* raw map: a staged delete */
  int32_t part;    /* the source partition the write belongs to, -1 = none (scale-out) */
} entry_t;

/* A chunk of a map's arena: the batch's keys and values are carved from
 * these and all given back at once when the batch ends (no malloc/free per
 * key or value). */
typedef struct chunk {
  struct chunk *next;
  size_t cap, used;
  max_align_t data[]; /* cap bytes */
} chunk_t;

#define CHUNK_BYTES ((size_t)256 << 10)
#define ARENA_KEEP_BYTES ((size_t)16 << 20) /* kept across batches, at most */

typedef struct {
  entry_t *ents; /* insertion order */
  size_t n, ents_cap;
  uint32_t *slots;             /* 0 = empty, else index into ents + 1 */
  size_t nslots;               /* power of two, or 0 */
  size_t heap;                 /* bytes of keys and values */
  chunk_t *first, *cur, *last; /* the arena: chunks before cur are full */
  size_t arena_bytes;
} map_t;

/* n bytes (16-aligned) from m's arena, valid until map_clear; NULL on OOM. */
static void *arena_alloc(map_t *m, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!n) n = 16;
  while (m->cur && m->cur->cap - m->cur->used < n) m->cur = m->cur->next;
  if (!m->cur) {
    size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
    chunk_t *c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    if (m->last)
      m->last->next = c;
    else
      m->first = c;
    m->last = m->cur = c;
    m->arena_bytes += cap;
  }
  void *p = (char *)m->cur->data + m->cur->used;
  m->cur->used += n;
  return p;
}

/* Empties the arena: its chunks are kept for the next batch, unless a huge
 * batch grew it past ARENA_KEEP_BYTES (then they are given back). */
static void arena_reset(map_t *m, int give_back) {
  if (give_back || m->arena_bytes > ARENA_KEEP_BYTES) {
    for (chunk_t *c = m->first, *next; c; c = next) {
      next = c->next;
      free(c);
    }
    m->first = m->cur = m->last = NULL;
    m->arena_bytes = 0;
    return;
  }
  for (chunk_t *c = m->first; c; c = c->next) c->used = 0;
  m->cur = m->first;
}

static uint64_t map_hash(int cf, const void *key, size_t klen) {
  return XXH64(key, klen, (uint64_t)cf);
}

static entry_t *map_find(map_t *m, int cf, const void *key, size_t klen, uint64_t hash) {
  if (!m->nslots) return NULL;
  size_t mask = m->nslots - 1;
  for (size_t i = hash & mask; m->slots[i]; i = (i + 1) & mask) {
    entry_t *e = &m->ents[m->slots[i] - 1];
    if (e->hash == hash && e->cf == cf && e->klen == klen && memcmp(e->key, key, klen) == 0)
      return e;
  }
  return NULL;
}

static int map_rehash(map_t *m, size_t nslots) {
  uint32_t *slots = calloc(nslots, sizeof *slots);
  if (!slots) return -1;
  free(m->slots);
  m->slots = slots;
  m->nslots = nslots;
  for (size_t k = 0; k < m->n; k++) {
    size_t i = m->ents[k].hash & (nslots - 1);
    while (slots[i]) i = (i + 1) & (nslots - 1);
    slots[i] = (uint32_t)(k + 1);
  }
  return 0;
}

/* Adds a new entry (the caller checked it is absent); val is NULL. */
static entry_t *map_add(map_t *m, int cf, const void *key, size_t klen, uint64_t hash) {
  if ((m->n + 1) * 2 > m->nslots && map_rehash(m, m->nslots ? m->nslots * 2 : 64) != 0) return NULL;
  if (m->n == m->ents_cap) {
    size_t cap = m->ents_cap ? m->ents_cap * 2 : 32;
    entry_t *ents = realloc(m->ents, cap * sizeof *ents);
    if (!ents) return NULL;
    m->ents = ents;
    m->ents_cap = cap;
  }
  uint8_t *k = arena_alloc(m, klen);
  if (!k) return NULL;
  memcpy(k, key, klen);
  entry_t *e = &m->ents[m->n];
  memset(e, 0, sizeof *e);
  e->hash = hash;
  e->key = k;
  e->klen = klen;
  e->cf = (uint8_t)cf;
  e->part = -1;
  size_t i = hash & (m->nslots - 1);
  while (m->slots[i]) i = (i + 1) & (m->nslots - 1);
  m->slots[i] = (uint32_t)(++m->n);
  m->heap += klen;
  return e;
}

/* Empties the map; a table grown by a huge batch is given back. */
static void map_clear(map_t *m) {
  arena_reset(m, 0);
  m->n = 0;
  m->heap = 0;
  if (m->nslots > 65536) {
    free(m->slots);
    free(m->ents);
    m->slots = NULL;
    m->ents = NULL;
    m->nslots = m->ents_cap = 0;
  } else if (m->nslots) {
    memset(m->slots, 0, m->nslots * sizeof *m->slots);
  }
}

static void map_free(map_t *m) {
  map_clear(m);
  arena_reset(m, 1);
  free(m->slots);
  free(m->ents);
  memset(m, 0, sizeof *m);
}

static size_t map_bytes(const map_t *m) {
  return m->ents_cap * sizeof(entry_t) + m->nslots * sizeof(uint32_t) + m->heap;
}

/* ---- the committed-entity cache ----
 *
 * Decoded users, items and (partition, item) views as the last commit left
 * them in the DB, so that a batch's first use of an entity skips the
 * RocksDB read and the decoding.  Direct-mapped (a slot per hash; a new
 * entity evicts the one in its slot): bounded by its byte budget, nothing
 * allocated after the first fill.  Filled only at a successful commit by
 * decoding the bytes just written (an entity read back is then exactly what
 * a read of the DB gives), so a rollback or a failed write leaves it true.
 * Only writable stores have one (a secondary sees another process's
 * writes). */

typedef struct {
  uint8_t *tags; /* per slot: 0 = empty, else 1 + key length; the key follows */
  uint8_t *vals; /* per slot: size bytes of decoded features */
  size_t nslots; /* power of two, or 0 = no cache */
  size_t size;   /* sizeof the features struct */
  uint64_t hits, misses;
} ecache_t;

#define ENTITY_KEY_MAX 12
#define ECACHE_TAG (1 + ENTITY_KEY_MAX)

static void ecache_free(ecache_t *c) {
  free(c->tags);
  free(c->vals);
  memset(c, 0, sizeof *c);
}

/* Sizes the cache to the largest power of two of slots within bytes (no
 * cache below 16 slots).  0 or MTLD_ERR_NOMEM. */
static int ecache_init(ecache_t *c, size_t size, size_t bytes) {
  ecache_free(c);
  c->size = size;
  size_t n = 1;
  while (n * 2 * (size + ECACHE_TAG) <= bytes) n *= 2;
  if (n < 16) return 0;
  /* calloc: pages of slots never used are never touched (RSS follows use) */
  c->tags = calloc(n, ECACHE_TAG);
  c->vals = calloc(n, size);
  if (!c->tags || !c->vals) {
    ecache_free(c);
    return -1;
  }
  c->nslots = n;
  return 0;
}

/* The cached features of key (hash = map_hash of it), or NULL. */
static const void *ecache_get(ecache_t *c, const uint8_t *key, size_t klen, uint64_t hash) {
  if (!c->nslots) return NULL;
  size_t i = (size_t)(hash >> 17) & (c->nslots - 1);
  const uint8_t *t = c->tags + i * ECACHE_TAG;
  if (t[0] == 1 + klen && memcmp(t + 1, key, klen) == 0) {
    c->hits++;
    return c->vals + i * c->size;
  }
  c->misses++;
  return NULL;
}

/* The slot for key, tagged with it: the caller fills size bytes, or calls
 * ecache_drop when it cannot. */
static void *ecache_slot(ecache_t *c, const uint8_t *key, size_t klen, uint64_t hash) {
  size_t i = (size_t)(hash >> 17) & (c->nslots - 1);
  uint8_t *t = c->tags + i * ECACHE_TAG;
  t[0] = (uint8_t)(1 + klen);
  memcpy(t + 1, key, klen);
  return c->vals + i * c->size;
}

static void ecache_drop(ecache_t *c, uint64_t hash) {
  c->tags[((size_t)(hash >> 17) & (c->nslots - 1)) * ECACHE_TAG] = 0;
}

/* Empties the cache (its slots stay allocated). */
static void ecache_clear(ecache_t *c) {
  if (c->nslots) memset(c->tags, 0, c->nslots * ECACHE_TAG);
}

/* ---- the store ---- */

struct mtld_store {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_options_t *pending_opts; /* the pending column family's: st->opts uncompressed */
  rocksdb_block_based_table_options_t *bbto;
  rocksdb_cache_t *cache;
  rocksdb_readoptions_t *ro;
  rocksdb_writeoptions_t *wo;
  /* the commit's write batch, cleared and reused: its buffer keeps the
   * largest batch's capacity (no regrowing copies per commit) */
  rocksdb_writebatch_t *wb;
  rocksdb_column_family_handle_t *cfh[N_CF];
  mtld_feature_def_t def;
  int readonly;
  char secondary[256];            /* readonly: the secondary instance's own directory ("" = none) */
  map_t users, items, parts, raw; /* parts: (partition, item) views */
  ecache_t ecache[3];             /* committed users, items, (partition, item) views */
  size_t n_events;
  uint8_t below[64]; /* mtld_store_delete_below: staged range end, below_len > 0 */
  size_t below_len;
  char errbuf[512];
  /* Sticky read error of the current batch (SQLite's rc): the first failed
   * read of the DB, kept until rollback; commit refuses to write past it. */
  mtld_status_t read_rc;
  char read_err[512];
  /* writes, for the metrics */
  uint64_t commits, commit_failures;
  double write_seconds_sum, write_seconds_max;
  /* scale-out (mtld_store_set_partition & co.) */
  int32_t cur_part; /* tag of raw writes staged now, -1 = none */
  int part_index;   /* keep the "upart/" index of users by partition */
  mtld_store_commit_hook_fn commit_hook;
  void *commit_ctx;
};

static rocksdb_column_family_handle_t *cf_handle(mtld_store_t *st, mtld_cf_t cf) {
  return st->cfh[cf + 1];
}

__attribute__((format(printf, 2, 3))) static void set_error(mtld_store_t *st, const char *fmt,
                                                            ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(st->errbuf, sizeof st->errbuf, fmt, ap);
  va_end(ap);
}

static mtld_status_t raw_stage(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                               const void *val, size_t vlen, int deleted);

/* "upart/" partition (4, big-endian) user id (8, big-endian), in meta. */
#define UPART_PREFIX "upart/"
#define UPART_KEY_LEN 18
static void upart_key(uint8_t *k, int32_t partition, uint64_t user) {
  memcpy(k, UPART_PREFIX, 6);
  mtld_put_be32(k + 6, (uint32_t)partition);
  mtld_put_be64(k + 10, user);
}

/* ---- entities: users, items, (partition, item) views ---- */

/* The key of an entity of column family cf (MTLD_CF_USER, _ITEM or
 * _ITEM_PART; partition is used by the last only); returns its length. */
static size_t entity_key(mtld_cf_t cf, int32_t partition, uint64_t id,
                         uint8_t key[ENTITY_KEY_MAX]) {
  if (cf != MTLD_CF_ITEM_PART) {
    mtld_put_be64(key, id);
    return 8;
  }
  mtld_put_be32(key, (uint32_t)partition);
  mtld_put_be64(key + 4, id);
  return 12;
}

static size_t entity_key_len(mtld_cf_t cf) {
  return cf == MTLD_CF_ITEM_PART ? 12 : 8;
}

static size_t entity_size(mtld_cf_t cf) {
  return cf == MTLD_CF_USER ? sizeof(mtld_user_features_t) : sizeof(mtld_item_features_t);
}

static mtld_status_t entity_decode(const mtld_feature_def_t *def, mtld_cf_t cf, void *f,
                                   const void *val, size_t vlen) {
  return cf == MTLD_CF_USER ? mtld_features_user_decode(def, f, val, vlen)
                            : mtld_features_item_decode(def, f, val, vlen);
}

static size_t entity_encode(const mtld_feature_def_t *def, mtld_cf_t cf, const void *f, void *buf,
                            size_t cap) {
  return cf == MTLD_CF_USER ? mtld_features_user_encode(def, f, buf, cap)
                            : mtld_features_item_encode(def, f, buf, cap);
}

static uint64_t entity_events(mtld_cf_t cf, const void *f) {
  return cf == MTLD_CF_USER ? ((const mtld_user_features_t *)f)->n_events
                            : ((const mtld_item_features_t *)f)->n_events;
}

/* The index of cf's committed-entity cache (st->cache). */
static int cf_cache(mtld_cf_t cf) {
  return cf == MTLD_CF_USER ? 0 : cf == MTLD_CF_ITEM ? 1 : 2;
}

/* Records a failed read of the DB (RocksDB's text in errbuf already) as the
 * batch's sticky error; MTLD_ERR_CORRUPT for RocksDB's "Corruption", else
 * MTLD_ERR_IO. */
static mtld_status_t read_failed(mtld_store_t *st, const char *rocks_err) {
  mtld_status_t rc = strncmp(rocks_err, "Corruption", 10) == 0 ? MTLD_ERR_CORRUPT : MTLD_ERR_IO;
  if (st->read_rc == MTLD_OK) {
    st->read_rc = rc;
    snprintf(st->read_err, sizeof st->read_err, "%s", st->errbuf);
  }
  return rc;
}

/* Committed value of (cf, key): MTLD_OK with a rocksdb-malloc'd *val (free
 * with rocksdb_free), MTLD_ERR_NOTFOUND, or MTLD_ERR_IO. */
static mtld_status_t db_get(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                            char **val, size_t *vlen) {
  char *e = NULL;
  *val = rocksdb_get_cf(st->db, st->ro, cf_handle(st, cf), key, klen, vlen, &e);
  if (e) {
    set_error(st, "store read (%s): %s", cf_names[cf + 1], e);
    mtld_status_t rc = read_failed(st, e);
    rocksdb_free(e);
    return rc;
  }
  return *val ? MTLD_OK : MTLD_ERR_NOTFOUND;
}

/* The same without a copy: MTLD_OK with *ps pinning the value (*val, *vlen
 * valid until rocksdb_pinnableslice_destroy(*ps)), MTLD_ERR_NOTFOUND (*ps
 * NULL) or MTLD_ERR_IO. */
static mtld_status_t db_pin(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                            rocksdb_pinnableslice_t **ps, const char **val, size_t *vlen) {
  char *e = NULL;
  *ps = rocksdb_get_pinned_cf(st->db, st->ro, cf_handle(st, cf), key, klen, &e);
  if (e) {
    set_error(st, "store read (%s): %s", cf_names[cf + 1], e);
    mtld_status_t rc = read_failed(st, e);
    rocksdb_free(e);
    if (*ps) rocksdb_pinnableslice_destroy(*ps);
    *ps = NULL;
    return rc;
  }
  if (!*ps) return MTLD_ERR_NOTFOUND;
  *val = rocksdb_pinnableslice_value(*ps, vlen);
  return MTLD_OK;
}

static void close_handles(mtld_store_t *st) {
  for (int i = 0; i < N_CF; i++)
    if (st->cfh[i]) rocksdb_column_family_handle_destroy(st->cfh[i]);
  if (st->db) rocksdb_close(st->db);
  if (st->ro) rocksdb_readoptions_destroy(st->ro);
  if (st->wo) rocksdb_writeoptions_destroy(st->wo);
  if (st->opts) rocksdb_options_destroy(st->opts);
  if (st->pending_opts) rocksdb_options_destroy(st->pending_opts);
  if (st->bbto) rocksdb_block_based_options_destroy(st->bbto);
  if (st->cache) rocksdb_cache_destroy(st->cache);
  if (st->secondary[0]) { /* the secondary's own info LOG files */
    mtld_rmtree(st->secondary);
    st->secondary[0] = 0;
  }
}

void mtld_store_close(mtld_store_t *st) {
  if (!st) return;
  map_free(&st->users);
  map_free(&st->items);
  map_free(&st->parts);
  map_free(&st->raw);
  if (st->wb) rocksdb_writebatch_destroy(st->wb);
  for (int i = 0; i < 3; i++) ecache_free(&st->ecache[i]);
  close_handles(st);
  free(st);
}

static void describe_def(const mtld_feature_def_t *d, char *buf, size_t len) {
  int n = snprintf(buf, len, "half_lives=");
  for (int h = 0; h < d->n_half_lives && n >= 0 && (size_t)n < len; h++)
    n += snprintf(buf + n, len - n, "%s%g", h ? "," : "", d->half_life_s[h]);
  if (n >= 0 && (size_t)n < len)
    snprintf(buf + n, len - n,
             " seq_len=%d prior_strength=%g priors(ctr,cvr,cart)=%g,%g,%g item_view=%s", d->seq_len,
             d->prior_strength, d->ctr_prior, d->cvr_prior, d->cart_prior,
             d->item_view == MTLD_ITEM_VIEW_GLOBAL ? "global" : "partition");
}

/* Reads, writes or checks the stored definitions after the DB is open. */
static mtld_status_t open_schema(mtld_store_t *st, const char *path, const mtld_feature_def_t *def,
                                 char *err, size_t errlen) {
  char *hv = NULL, *dv = NULL;
  size_t hlen = 0, dlen = 0;
  mtld_status_t rc =
      db_get(st, MTLD_CF_META, META_SCHEMA_HASH, strlen(META_SCHEMA_HASH), &hv, &hlen);
  if (rc == MTLD_ERR_IO) {
    snprintf(err, errlen, "store %s: %s", path, st->errbuf);
    return rc;
  }
  if (rc == MTLD_ERR_NOTFOUND) {
    if (st->readonly || !def) {
      snprintf(err, errlen,
               "store %s holds no feature definitions (not an mtld store, or never opened by "
               "the daemon)",
               path);
      return MTLD_ERR_INVALID;
    }
    uint8_t hb[8], db[MTLD_FEATURE_DEF_ENC_MAX];
    mtld_put_le64(hb, mtld_feature_def_hash(def));
    size_t n = mtld_feature_def_encode(def, db, sizeof db);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_column_family_handle_t *meta = cf_handle(st, MTLD_CF_META);
    rocksdb_writebatch_put_cf(wb, meta, META_SCHEMA_HASH, strlen(META_SCHEMA_HASH),
                              (const char *)hb, 8);
    rocksdb_writebatch_put_cf(wb, meta, META_FEATURE_DEF, strlen(META_FEATURE_DEF),
                              (const char *)db, n);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    char *e = NULL;
    rocksdb_write(st->db, wo, wb, &e);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_writebatch_destroy(wb);
    if (e) {
      snprintf(err, errlen, "store %s: cannot record the feature definitions: %s", path, e);
      rocksdb_free(e);
      return MTLD_ERR_IO;
    }
    st->def = *def;
    return MTLD_OK;
  }

  mtld_feature_def_t stored;
  rc = db_get(st, MTLD_CF_META, META_FEATURE_DEF, strlen(META_FEATURE_DEF), &dv, &dlen);
  if (rc == MTLD_ERR_IO) {
    snprintf(err, errlen, "store %s: %s", path, st->errbuf);
  } else if (rc == MTLD_OK && dlen > 0 && (uint8_t)dv[0] != MTLD_FEATURE_DEF_ENC_VERSION) {
    snprintf(err, errlen,
             "store %s was built by another mtld version (feature definitions format %u, this "
             "build uses %u): set a new store.path, or delete the store and rebuild it by "
             "replaying the source",
             path, (unsigned)(uint8_t)dv[0], (unsigned)MTLD_FEATURE_DEF_ENC_VERSION);
    rc = MTLD_ERR_SCHEMA;
  } else if (hlen != 8 || rc != MTLD_OK || mtld_feature_def_decode(&stored, dv, dlen) != MTLD_OK ||
             mtld_feature_def_hash(&stored) != mtld_get_le64((const uint8_t *)hv)) {
    snprintf(err, errlen,
             "store %s: meta \"schema_hash\"/\"feature_def\" unreadable or inconsistent", path);
    rc = MTLD_ERR_CORRUPT;
  } else if (def && mtld_feature_def_hash(def) != mtld_feature_def_hash(&stored)) {
    char a[256], b[256];
    describe_def(&stored, a, sizeof a);
    describe_def(def, b, sizeof b);
    snprintf(err, errlen,
             "store %s was built with other feature definitions (store: %s; config: %s): set a "
             "new store.path, or delete the store and rebuild it by replaying the source",
             path, a, b);
    rc = MTLD_ERR_SCHEMA;
  } else {
    st->def = def ? *def : stored;
    rc = MTLD_OK;
  }
  rocksdb_free(hv);
  rocksdb_free(dv);
  return rc;
}

void mtld_store_memory_default(mtld_store_memory_t *m) {
  m->block_cache_bytes = BLOCK_CACHE_BYTES;
  m->write_buffer_bytes = WRITE_BUFFER_BYTES;
}

static mtld_status_t store_open(mtld_store_t **out, const char *path, const mtld_feature_def_t *def,
                                int sync, int readonly, const mtld_store_memory_t *mem_in,
                                char *err, size_t errlen) {
  *out = NULL;
  mtld_store_memory_t mem;
  if (mem_in)
    mem = *mem_in;
  else
    mtld_store_memory_default(&mem);
  if (def) {
    char msg[256];
    if (mtld_feature_def_check(def, msg, sizeof msg) != MTLD_OK) {
      snprintf(err, errlen, "%s", msg);
      return MTLD_ERR_INVALID;
    }
  }
  if (!def) {
    /* only an existing store: RocksDB would create the directory (and its
     * info LOG) before failing */
    char current[4096];
    struct stat sb;
    snprintf(current, sizeof current, "%s/CURRENT", path);
    if (stat(current, &sb) != 0) {
      snprintf(err, errlen, "no store at %s", path);
      return MTLD_ERR_NOTFOUND;
    }
  }
  if (def) {
    /* a fresh store under a directory that does not exist yet
     * (store.path = "/srv/mtld/run1/store"): create its parents, as
     * RocksDB creates only the last component */
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
      *slash = 0;
      if (mtld_mkdir_p(parent) != 0) {
        snprintf(err, errlen, "create %s: %s", parent, strerror(errno));
        return MTLD_ERR_IO;
      }
    }
  }
  mtld_store_t *st = calloc(1, sizeof *st);
  if (!st) {
    snprintf(err, errlen, "out of memory");
    return MTLD_ERR_NOMEM;
  }
  st->cur_part = -1;
  st->readonly = readonly != 0; /* 1: read-only, 2: secondary instance */
  /* RocksDB counts, per thread by default, every key comparison, block read
   * and memtable lookup into its perf context (one thread-local access per
   * count, ~3% of the main thread's CPU); nothing here reads those counts.
   * Thread-local: this covers the thread that opens the store, the one that
   * reads and writes it (main.c). */
  rocksdb_set_perf_level(rocksdb_disable);
  st->cache = rocksdb_cache_create_lru(mem.block_cache_bytes);
  st->bbto = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(st->bbto, st->cache);
  /* memory bounded by the budget, not by the store's size: index and
   * filter blocks in the cache (high priority), those of level 0 pinned
   * there (every read consults them) */
  rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->bbto, 1);
  rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(st->bbto, 1);
  rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(st->bbto, 1);
  /* most point reads miss (a user, item or event id seen for the first time):
   * a bloom filter per table answers those without reading its blocks, and
   * one over each memtable without searching it */
  rocksdb_block_based_options_set_filter_policy(st->bbto, rocksdb_filterpolicy_create_bloom(10));
  st->opts = rocksdb_options_create();
  rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->opts, 0.02);
  rocksdb_options_set_memtable_whole_key_filtering(st->opts, 1);
  /* all memtables together within the budget; one column family's at most
   * half of it (RocksDB's default 64 MiB when the budget is larger) */
  rocksdb_options_set_db_write_buffer_size(st->opts, mem.write_buffer_bytes);
  rocksdb_options_set_write_buffer_size(st->opts, mem.write_buffer_bytes / 2 < CF_WRITE_BUFFER_MAX
                                                      ? mem.write_buffer_bytes / 2
                                                      : CF_WRITE_BUFFER_MAX);
  rocksdb_options_set_block_based_table_factory(st->opts, st->bbto);
  rocksdb_options_set_create_if_missing(st->opts, !readonly && def != NULL);
  rocksdb_options_set_create_missing_column_families(st->opts, !readonly);
  rocksdb_options_set_keep_log_file_num(st->opts, 5);
  rocksdb_options_set_paranoid_checks(st->opts, 1);
  /* RocksDB's own LOG: header lines at open, then fatal errors only.  On a
   * full disk an append to LOG fails, and Debian's librocksdb 7.8 (built
   * with assertions) aborts the process on the next append to that file
   * (EnvLogger -> WritableFileWriter::AssertFalseAndGetStatusForPrevError:
   * "Assertion sync_without_flush_called_").  RocksDB's errors reach mtld's
   * own log through the status texts of the failing calls. */
  rocksdb_options_set_info_log_level(st->opts, 4 /* FATAL_LEVEL */);
  const rocksdb_options_t *cf_opts[N_CF];
  for (int i = 0; i < N_CF; i++) cf_opts[i] = st->opts;
  /* Pending samples live one conversion window and are read back once, at
   * release: compressing them at flush (background) and decompressing their
   * blocks at release (main thread) was CPU spent for disk space they hold
   * only briefly (bench/RESULTS.md, 2026-12-05 "hot path, round 2"). */
  if ((st->pending_opts = rocksdb_options_create_copy(st->opts))) {
    rocksdb_options_set_compression(st->pending_opts, rocksdb_no_compression);
    cf_opts[MTLD_CF_PENDING + 1] = st->pending_opts;
  }

  char *e = NULL;
  if (readonly) {
    /* a store made before a column family existed cannot be opened read-only
     * with it: say so instead of RocksDB's "column family not found" */
    size_t n_have = 0;
    char **have = rocksdb_list_column_families(st->opts, path, &n_have, &e);
    const char *missing = NULL;
    for (int i = 0; !e && i < N_CF && !missing; i++) {
      size_t k = 0;
      while (k < n_have && strcmp(have[k], cf_names[i]) != 0) k++;
      if (k == n_have) missing = cf_names[i];
    }
    if (have) rocksdb_list_column_families_destroy(have, n_have);
    if (e) { /* listing failed: the open below reports why */
      rocksdb_free(e);
      e = NULL;
    }
    if (missing) {
      snprintf(err, errlen,
               "store %s has no \"%s\" column family: it was built by an older mtld (rebuild it "
               "by replaying the source into a new store.path)",
               path, missing);
      mtld_store_close(st);
      return MTLD_ERR_SCHEMA;
    }
  }
  if (readonly == 2) {
    /* A secondary instance, not a read-only one: the daemon may be writing
     * (flushing memtables, deleting WAL files) while a tool opens the store,
     * and a read-only open then fails on a WAL file that vanished under it.
     * A secondary reads the primary's MANIFEST and WALs as they are and keeps
     * its own info log in a directory of its own.  An open racing a file
     * deletion is retried. */
    const char *tmp = getenv("TMPDIR");
    snprintf(st->secondary, sizeof st->secondary, "%s/mtld-store-secondary.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(st->secondary)) {
      snprintf(err, errlen, "cannot open store %s: no directory for a secondary instance in %s",
               path, tmp && *tmp ? tmp : "/tmp");
      st->secondary[0] = 0;
      mtld_store_close(st);
      return MTLD_ERR_IO;
    }
    rocksdb_options_set_max_open_files(st->opts, -1); /* required of a secondary */
    for (int attempt = 0; attempt < 20; attempt++) {
      if (e) {
        rocksdb_free(e);
        e = NULL;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      st->db = rocksdb_open_as_secondary_column_families(st->opts, path, st->secondary, N_CF,
                                                         cf_names, cf_opts, st->cfh, &e);
      if (!e || !strstr(e, "No such file")) break;
    }
  } else if (readonly)
    st->db = rocksdb_open_for_read_only_column_families(st->opts, path, N_CF, cf_names, cf_opts,
                                                        st->cfh, 0, &e);
  else
    st->db = rocksdb_open_column_families(st->opts, path, N_CF, cf_names, cf_opts, st->cfh, &e);
  if (e) {
    snprintf(err, errlen, "cannot open store %s%s: %s", path, readonly ? " read-only" : "", e);
    rocksdb_free(e);
    st->db = NULL;
    memset(st->cfh, 0, sizeof st->cfh);
    mtld_store_close(st);
    return MTLD_ERR_IO;
  }
  st->ro = rocksdb_readoptions_create();
  st->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(st->wo, sync ? 1 : 0);

  mtld_status_t rc = open_schema(st, path, def, err, errlen);
  if (rc == MTLD_OK && !readonly && mtld_store_set_cache(st, MTLD_STORE_CACHE_DEFAULT) != MTLD_OK) {
    snprintf(err, errlen, "out of memory");
    rc = MTLD_ERR_NOMEM;
  }
  if (rc != MTLD_OK) {
    mtld_store_close(st);
    return rc;
  }
  *out = st;
  return MTLD_OK;
}

mtld_status_t mtld_store_open(mtld_store_t **out, const char *path, const mtld_feature_def_t *def,
                              int sync, char *err, size_t errlen) {
  return store_open(out, path, def, sync, 0, NULL, err, errlen);
}

mtld_status_t mtld_store_open_mem(mtld_store_t **out, const char *path,
                                  const mtld_feature_def_t *def, int sync,
                                  const mtld_store_memory_t *mem, char *err, size_t errlen) {
  return store_open(out, path, def, sync, 0, mem, err, errlen);
}

mtld_status_t mtld_store_open_readonly(mtld_store_t **out, const char *path, char *err,
                                       size_t errlen) {
  return store_open(out, path, NULL, 0, 1, NULL, err, errlen);
}

mtld_status_t mtld_store_open_secondary(mtld_store_t **out, const char *path, char *err,
                                        size_t errlen) {
  return store_open(out, path, NULL, 0, 2, NULL, err, errlen);
}

mtld_status_t mtld_store_set_cache(mtld_store_t *st, size_t bytes) {
  if (st->readonly) return bytes ? MTLD_ERR_INVALID : MTLD_OK;
  /* half for users (the big ones), a quarter each for items and views */
  size_t user = sizeof(mtld_user_features_t), item = sizeof(mtld_item_features_t);
  if (ecache_init(&st->ecache[0], user, bytes / 2) != 0 ||
      ecache_init(&st->ecache[1], item, bytes / 4) != 0 ||
      ecache_init(&st->ecache[2], item, bytes / 4) != 0) {
    for (int i = 0; i < 3; i++) ecache_free(&st->ecache[i]);
    return MTLD_ERR_NOMEM;
  }
  return MTLD_OK;
}

const mtld_feature_def_t *mtld_store_def(const mtld_store_t *st) {
  return &st->def;
}

const char *mtld_store_last_error(const mtld_store_t *st) {
  return st->errbuf;
}

/* ---- features in the batch ---- */

static map_t *entity_map(mtld_store_t *st, mtld_cf_t cf) {
  return cf == MTLD_CF_USER ? &st->users : cf == MTLD_CF_ITEM ? &st->items : &st->parts;
}

static void entity_error(mtld_store_t *st, mtld_cf_t cf, int32_t partition, uint64_t id) {
  if (cf == MTLD_CF_ITEM_PART)
    set_error(st, "item_part %d/%llu: undecodable value", (int)partition, (unsigned long long)id);
  else
    set_error(st, "%s %llu: undecodable value", cf_names[cf + 1], (unsigned long long)id);
}

/* The batch's decoded features of (cf, partition, id), loaded from the DB
 * (or zeroed: never seen) and added to the map on first use.  NULL on
 * error. */
static void *load_entity(mtld_store_t *st, mtld_cf_t cf, int32_t partition, uint64_t id,
                         int32_t tag, int *is_new, mtld_status_t *rc) {
  map_t *m = entity_map(st, cf);
  size_t size = entity_size(cf);
  uint8_t key[ENTITY_KEY_MAX];
  size_t klen = entity_key(cf, partition, id, key);
  uint64_t hash = map_hash(cf, key, klen);
  entry_t *e = map_find(m, cf, key, klen, hash);
  if (is_new) *is_new = 0;
  if (e) {
    e->part = tag;
    return e->val;
  }

  void *f = arena_alloc(m, size); /* left in the arena if it is not used */
  if (!f) {
    set_error(st, "out of memory");
    *rc = MTLD_ERR_NOMEM;
    return NULL;
  }
  const void *cached = ecache_get(&st->ecache[cf_cache(cf)], key, klen, hash);
  rocksdb_pinnableslice_t *ps;
  const char *val;
  size_t vlen;
  if (cached) {
    memcpy(f, cached, size);
    *rc = MTLD_OK;
  } else if (memset(f, 0, size), (*rc = db_pin(st, cf, key, klen, &ps, &val, &vlen)) == MTLD_OK) {
    *rc = entity_decode(&st->def, cf, f, val, vlen);
    rocksdb_pinnableslice_destroy(ps);
    if (*rc != MTLD_OK) entity_error(st, cf, partition, id);
  } else if (*rc == MTLD_ERR_NOTFOUND) {
    *rc = MTLD_OK;
    if (is_new) *is_new = 1;
  }
  if (*rc == MTLD_OK && !(e = map_add(m, cf, key, klen, hash))) {
    set_error(st, "out of memory");
    *rc = MTLD_ERR_NOMEM;
  }
  if (*rc != MTLD_OK) return NULL;
  e->val = f;
  e->vlen = size;
  e->part = tag;
  m->heap += size;
  return f;
}

mtld_status_t mtld_store_apply_part(mtld_store_t *st, const mtld_event_t *ev,
                                    mtld_partition_id_t partition,
                                    mtld_user_features_t *user_before,
                                    mtld_item_features_t *item_before) {
  if (st->readonly) {
    set_error(st, "store is read-only");
    return MTLD_ERR_INVALID;
  }
  if (ev->type < 1 || ev->type > MTLD_N_EVENT_TYPES) {
    set_error(st, "event %llu: unknown type %d", (unsigned long long)ev->event_id, ev->type);
    return MTLD_ERR_INVALID;
  }
  if (partition < 0) {
    set_error(st, "event %llu: negative partition %d", (unsigned long long)ev->event_id,
              (int)partition);
    return MTLD_ERR_INVALID;
  }
  /* Entities loaded before a failing load stay in the batch unchanged:
   * harmless (an untouched entry is neither read back nor written). */
  mtld_status_t rc = MTLD_OK;
  int new_user = 0;
  mtld_user_features_t *u =
      load_entity(st, MTLD_CF_USER, 0, ev->user_id, partition, &new_user, &rc);
  if (!u) return rc;
  if (new_user && st->part_index) {
    /* scale-out: the user's partition, to drop it with the partition */
    uint8_t k[UPART_KEY_LEN];
    upart_key(k, partition, ev->user_id);
    int32_t saved = st->cur_part;
    st->cur_part = partition;
    rc = raw_stage(st, MTLD_CF_META, k, sizeof k, "", 0, 0);
    st->cur_part = saved;
    if (rc != MTLD_OK) return rc;
  }
  mtld_item_features_t *it = load_entity(st, MTLD_CF_ITEM, 0, ev->item_id, -1, NULL, &rc);
  if (!it) return rc;
  mtld_item_features_t *ip = NULL;
  if (st->def.item_view == MTLD_ITEM_VIEW_PARTITION &&
      !(ip = load_entity(st, MTLD_CF_ITEM_PART, partition, ev->item_id, partition, NULL, &rc)))
    return rc;
  if (user_before) *user_before = *u;
  if (item_before) *item_before = ip ? *ip : *it;
  mtld_features_user_apply(&st->def, u, ev);
  mtld_features_item_apply(&st->def, it, ev);
  if (ip) mtld_features_item_apply(&st->def, ip, ev);
  st->n_events++;
  return MTLD_OK;
}

mtld_status_t mtld_store_apply(mtld_store_t *st, const mtld_event_t *ev,
                               mtld_user_features_t *user_before,
                               mtld_item_features_t *item_before) {
  return mtld_store_apply_part(st, ev, 0, user_before, item_before);
}

/* Staged-or-committed features; a loaded-but-untouched entry with no events
 * counts as absent. */
static mtld_status_t get_entity(mtld_store_t *st, mtld_cf_t cf, int32_t partition, uint64_t id,
                                void *out) {
  map_t *m = entity_map(st, cf);
  uint8_t key[ENTITY_KEY_MAX];
  size_t klen = entity_key(cf, partition, id, key);
  uint64_t hash = map_hash(cf, key, klen);
  entry_t *e = map_find(m, cf, key, klen, hash);
  const void *cached = e ? e->val : ecache_get(&st->ecache[cf_cache(cf)], key, klen, hash);
  if (cached) {
    memcpy(out, cached, entity_size(cf));
    return entity_events(cf, cached) ? MTLD_OK : MTLD_ERR_NOTFOUND;
  }
  rocksdb_pinnableslice_t *ps;
  const char *val;
  size_t vlen;
  mtld_status_t rc = db_pin(st, cf, key, klen, &ps, &val, &vlen);
  if (rc != MTLD_OK) return rc;
  rc = entity_decode(&st->def, cf, out, val, vlen);
  rocksdb_pinnableslice_destroy(ps);
  if (rc != MTLD_OK) entity_error(st, cf, partition, id);
  return rc;
}

mtld_status_t mtld_store_get_user(mtld_store_t *st, uint64_t user_id, mtld_user_features_t *out) {
  return get_entity(st, MTLD_CF_USER, 0, user_id, out);
}

mtld_status_t mtld_store_get_item(mtld_store_t *st, uint64_t item_id, mtld_item_features_t *out) {
  return get_entity(st, MTLD_CF_ITEM, 0, item_id, out);
}

mtld_status_t mtld_store_get_item_part(mtld_store_t *st, mtld_partition_id_t partition,
                                       uint64_t item_id, mtld_item_features_t *out) {
  if (partition < 0) return MTLD_ERR_NOTFOUND;
  return get_entity(st, MTLD_CF_ITEM_PART, partition, item_id, out);
}

size_t mtld_store_batch_events(const mtld_store_t *st) {
  return st->n_events;
}

size_t mtld_store_batch_bytes(const mtld_store_t *st) {
  return map_bytes(&st->users) + map_bytes(&st->items) + map_bytes(&st->parts) +
         map_bytes(&st->raw);
}

/* ---- raw staged access ---- */

static mtld_status_t raw_stage(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                               const void *val, size_t vlen, int deleted) {
  if (st->readonly) {
    set_error(st, "store is read-only");
    return MTLD_ERR_INVALID;
  }
  if (cf != MTLD_CF_PENDING && cf != MTLD_CF_META && cf != MTLD_CF_SEEN) {
    set_error(st, "raw writes go to the pending, meta or seen column family only");
    return MTLD_ERR_INVALID;
  }
  uint64_t hash = map_hash(cf, key, klen);
  entry_t *e = map_find(&st->raw, cf, key, klen, hash);
  void *copy = NULL;
  if (!deleted) {
    /* a value staged again (the offsets, once per record) reuses its bytes
     * when it fits; else the old bytes stay in the arena until the batch
     * ends */
    copy = e && e->val && vlen <= e->vlen ? e->val : arena_alloc(&st->raw, vlen);
    if (!copy) {
      set_error(st, "out of memory");
      return MTLD_ERR_NOMEM; /* nothing changed */
    }
  }
  if (!e && !(e = map_add(&st->raw, cf, key, klen, hash))) {
    set_error(st, "out of memory"); /* the copy's bytes stay in the arena */
    return MTLD_ERR_NOMEM;
  }
  if (copy && vlen) memmove(copy, val, vlen);
  if (e->val) st->raw.heap -= e->vlen ? e->vlen : 1;
  e->val = copy;
  e->vlen = deleted ? 0 : vlen;
  e->deleted = (uint8_t)deleted;
  e->part = st->cur_part;
  if (copy) st->raw.heap += vlen ? vlen : 1;
  return MTLD_OK;
}

mtld_status_t mtld_store_put(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                             const void *val, size_t vlen) {
  return raw_stage(st, cf, key, klen, val, vlen, 0);
}

mtld_status_t mtld_store_delete(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen) {
  return raw_stage(st, cf, key, klen, NULL, 0, 1);
}

mtld_status_t mtld_store_get(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                             void **val, size_t *vlen) {
  *val = NULL;
  *vlen = 0;
  if ((int)cf < 0 || cf >= MTLD_CF_COUNT) {
    set_error(st, "bad column family %d", (int)cf);
    return MTLD_ERR_INVALID;
  }
  void *copy;
  size_t n;
  if (cf == MTLD_CF_USER || cf == MTLD_CF_ITEM || cf == MTLD_CF_ITEM_PART) {
    /* staged features, encoded as they would be committed */
    map_t *m = entity_map(st, cf);
    entry_t *e =
        klen == entity_key_len(cf) ? map_find(m, cf, key, klen, map_hash(cf, key, klen)) : NULL;
    if (e) {
      if (entity_events(cf, e->val) == 0)
        goto from_db; /* loaded, untouched: the DB has the truth */
      size_t cap = cf == MTLD_CF_USER ? MTLD_FEATURES_USER_ENC_MAX : MTLD_FEATURES_ITEM_ENC_MAX;
      if (!(copy = malloc(cap))) goto nomem;
      n = entity_encode(&st->def, cf, e->val, copy, cap);
      *val = copy;
      *vlen = n;
      return MTLD_OK;
    }
  } else {
    entry_t *e = map_find(&st->raw, cf, key, klen, map_hash(cf, key, klen));
    if (e) {
      if (e->deleted) return MTLD_ERR_NOTFOUND;
      if (!(copy = malloc(e->vlen ? e->vlen : 1))) goto nomem;
      if (e->vlen) memcpy(copy, e->val, e->vlen);
      *val = copy;
      *vlen = e->vlen;
      return MTLD_OK;
    }
  }
from_db:;
  rocksdb_pinnableslice_t *ps;
  const char *dv;
  mtld_status_t rc = db_pin(st, cf, key, klen, &ps, &dv, &n);
  if (rc != MTLD_OK) return rc;
  copy = malloc(n ? n : 1);
  if (!copy) {
    rocksdb_pinnableslice_destroy(ps);
    goto nomem;
  }
  if (n) memcpy(copy, dv, n);
  rocksdb_pinnableslice_destroy(ps);
  *val = copy;
  *vlen = n;
  return MTLD_OK;
nomem:
  set_error(st, "out of memory");
  return MTLD_ERR_NOMEM;
}

mtld_status_t mtld_store_get_many(mtld_store_t *st, mtld_cf_t cf, size_t n, const void *const *keys,
                                  const size_t *klens, void **vals, size_t *vlens,
                                  mtld_status_t *rcs) {
  if ((cf != MTLD_CF_PENDING && cf != MTLD_CF_META && cf != MTLD_CF_SEEN) ||
      n > MTLD_STORE_GET_MANY_MAX) {
    set_error(st, "get_many takes at most %d keys of the pending, meta or seen column family",
              MTLD_STORE_GET_MANY_MAX);
    return MTLD_ERR_INVALID;
  }
  for (size_t i = 0; i < n; i++) {
    vals[i] = NULL;
    vlens[i] = 0;
    rcs[i] = MTLD_ERR_NOTFOUND;
  }
  /* the batch's own values first; the rest go to one MultiGet */
  const char *dkeys[MTLD_STORE_GET_MANY_MAX];
  size_t dlens[MTLD_STORE_GET_MANY_MAX], at[MTLD_STORE_GET_MANY_MAX], nd = 0;
  for (size_t i = 0; i < n; i++) {
    entry_t *e = map_find(&st->raw, cf, keys[i], klens[i], map_hash(cf, keys[i], klens[i]));
    if (!e) {
      dkeys[nd] = keys[i];
      dlens[nd] = klens[i];
      at[nd++] = i;
      continue;
    }
    if (e->deleted) continue; /* MTLD_ERR_NOTFOUND */
    if (!(vals[i] = malloc(e->vlen ? e->vlen : 1))) goto nomem;
    if (e->vlen) memcpy(vals[i], e->val, e->vlen);
    vlens[i] = e->vlen;
    rcs[i] = MTLD_OK;
  }
  if (nd == 0) return MTLD_OK;
  rocksdb_pinnableslice_t *ps[MTLD_STORE_GET_MANY_MAX];
  char *errs[MTLD_STORE_GET_MANY_MAX];
  rocksdb_batched_multi_get_cf(st->db, st->ro, cf_handle(st, cf), nd, dkeys, dlens, ps, errs,
                               0 /* not sorted: RocksDB sorts a copy */);
  int oom = 0;
  for (size_t d = 0; d < nd; d++) {
    size_t i = at[d];
    if (errs[d]) {
      set_error(st, "store read (%s): %s", cf_names[cf + 1], errs[d]);
      rcs[i] = read_failed(st, errs[d]);
      rocksdb_free(errs[d]);
    } else if (ps[d] && !oom) {
      size_t len;
      const char *v = rocksdb_pinnableslice_value(ps[d], &len);
      if ((vals[i] = malloc(len ? len : 1))) {
        if (len) memcpy(vals[i], v, len);
        vlens[i] = len;
        rcs[i] = MTLD_OK;
      } else {
        oom = 1;
      }
    }
    if (ps[d]) rocksdb_pinnableslice_destroy(ps[d]);
  }
  if (!oom) return MTLD_OK;
nomem:
  for (size_t i = 0; i < n; i++) {
    free(vals[i]);
    vals[i] = NULL;
    vlens[i] = 0;
    rcs[i] = MTLD_ERR_NOMEM;
  }
  set_error(st, "out of memory");
  return MTLD_ERR_NOMEM;
}

/* ---- offsets ---- */

/* "offset/<topic>/<partition>" in a malloc'd buffer; NULL on OOM. */
static char *offset_key(const char *topic, int32_t partition, size_t *klen) {
  size_t cap = strlen(OFFSET_PREFIX) + strlen(topic) + 16;
  char *k = malloc(cap);
  if (!k) return NULL;
  int n = snprintf(k, cap, OFFSET_PREFIX "%s/%d", topic, (int)partition);
  *klen = (size_t)n;
  return k;
}

void mtld_store_set_offset(mtld_store_t *st, const char *topic, int32_t partition,
                           int64_t next_offset, int64_t max_time_ms) {
  size_t klen;
  char *key = offset_key(topic, partition, &klen);
  if (!key) {
    set_error(st, "out of memory");
    return;
  }
  uint8_t v[OFFSET_ENC_LEN];
  v[0] = OFFSET_ENC_VERSION;
  mtld_put_le64(v + 1, (uint64_t)next_offset);
  mtld_put_le64(v + 9, (uint64_t)max_time_ms);
  raw_stage(st, MTLD_CF_META, key, klen, v, sizeof v, 0);
  free(key);
}

static int decode_offset(const void *val, size_t vlen, int64_t *next_offset, int64_t *max_time_ms) {
  const uint8_t *v = val;
  if (vlen != OFFSET_ENC_LEN || v[0] != OFFSET_ENC_VERSION) return -1;
  *next_offset = (int64_t)mtld_get_le64(v + 1);
  *max_time_ms = (int64_t)mtld_get_le64(v + 9);
  return 0;
}

mtld_status_t mtld_store_get_offset(mtld_store_t *st, const char *topic, int32_t partition,
                                    int64_t *next_offset, int64_t *max_time_ms) {
  size_t klen;
  char *key = offset_key(topic, partition, &klen);
  if (!key) {
    set_error(st, "out of memory");
    return MTLD_ERR_NOMEM;
  }
  char *val;
  size_t vlen;
  mtld_status_t rc = db_get(st, MTLD_CF_META, key, klen, &val, &vlen);
  free(key);
  if (rc != MTLD_OK) return rc;
  if (decode_offset(val, vlen, next_offset, max_time_ms) != 0) {
    set_error(st, "offset of %s/%d: undecodable value", topic, (int)partition);
    rc = MTLD_ERR_CORRUPT;
  }
  rocksdb_free(val);
  return rc;
}

/* ---- iteration over committed state ---- */

typedef int (*raw_fn_t)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);

void mtld_store_foreach_raw(mtld_store_t *st, mtld_cf_t cf, const void *prefix, size_t plen,
                            raw_fn_t fn, void *ctx) {
  if ((int)cf < 0 || cf >= MTLD_CF_COUNT) return;
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ro, cf_handle(st, cf));
  if (plen)
    rocksdb_iter_seek(it, prefix, plen);
  else
    rocksdb_iter_seek_to_first(it);
  for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    if (plen && (klen < plen || memcmp(k, prefix, plen) != 0)) break;
    const char *v = rocksdb_iter_value(it, &vlen);
    if (fn(ctx, k, klen, v, vlen)) break;
  }
  char *e = NULL;
  rocksdb_iter_get_error(it, &e);
  if (e) {
    set_error(st, "store iteration (%s): %s", cf_names[cf + 1], e);
    read_failed(st, e);
    rocksdb_free(e);
  }
  rocksdb_iter_destroy(it);
}

typedef struct {
  int (*fn)(void *ctx, const char *topic, int32_t partition, int64_t next_offset,
            int64_t max_time_ms);
  void *ctx;
  mtld_store_t *st;
} offset_iter_t;

static int offset_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  offset_iter_t *oi = ctx;
  size_t pl = strlen(OFFSET_PREFIX);
  char topic[512];
  const char *k = key;
  /* the partition follows the last '/' (topic names have none) */
  size_t slash = klen;
  while (slash > pl && k[slash - 1] != '/') slash--;
  int64_t next, maxt;
  if (slash <= pl + 1 || slash - 1 - pl >= sizeof topic || slash == klen || klen - slash > 11 ||
      decode_offset(val, vlen, &next, &maxt) != 0) {
    set_error(oi->st, "meta: malformed offset record skipped");
    return 0;
  }
  memcpy(topic, k + pl, slash - 1 - pl);
  topic[slash - 1 - pl] = 0;
  char num[16];
  memcpy(num, k + slash, klen - slash);
  num[klen - slash] = 0;
  return oi->fn(oi->ctx, topic, (int32_t)strtol(num, NULL, 10), next, maxt);
}

void mtld_store_foreach_offset(mtld_store_t *st,
                               int (*fn)(void *ctx, const char *topic, int32_t partition,
                                         int64_t next_offset, int64_t max_time_ms),
                               void *ctx) {
  offset_iter_t oi = {fn, ctx, st};
  mtld_store_foreach_raw(st, MTLD_CF_META, OFFSET_PREFIX, strlen(OFFSET_PREFIX), offset_cb, &oi);
}

typedef struct {
  mtld_store_t *st;
  mtld_cf_t cf;
  void *f; /* decode target */
  int (*user_fn)(void *ctx, uint64_t id, const mtld_user_features_t *f);
  int (*item_fn)(void *ctx, uint64_t id, const mtld_item_features_t *f);
  mtld_store_item_part_fn part_fn;
  void *ctx;
} entity_iter_t;

static int entity_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  entity_iter_t *ei = ctx;
  mtld_status_t rc = klen != entity_key_len(ei->cf)
                         ? MTLD_ERR_CORRUPT
                         : entity_decode(&ei->st->def, ei->cf, ei->f, val, vlen);
  if (rc != MTLD_OK) {
    set_error(ei->st, "%s: undecodable entry skipped", cf_names[ei->cf + 1]);
    return 0;
  }
  const uint8_t *k = key;
  if (ei->cf == MTLD_CF_ITEM_PART)
    return ei->part_fn(ei->ctx, (int32_t)mtld_get_be32(k), mtld_get_be64(k + 4), ei->f);
  uint64_t id = mtld_get_be64(k);
  return ei->cf == MTLD_CF_USER ? ei->user_fn(ei->ctx, id, ei->f) : ei->item_fn(ei->ctx, id, ei->f);
}

void mtld_store_foreach_user(mtld_store_t *st,
                             int (*fn)(void *ctx, uint64_t id, const mtld_user_features_t *f),
                             void *ctx) {
  mtld_user_features_t *f = malloc(sizeof *f);
  if (!f) {
    set_error(st, "out of memory");
    return;
  }
  entity_iter_t ei = {st, MTLD_CF_USER, f, fn, NULL, NULL, ctx};
  mtld_store_foreach_raw(st, MTLD_CF_USER, NULL, 0, entity_cb, &ei);
  free(f);
}

void mtld_store_foreach_item(mtld_store_t *st,
                             int (*fn)(void *ctx, uint64_t id, const mtld_item_features_t *f),
                             void *ctx) {
  mtld_item_features_t f;
  entity_iter_t ei = {st, MTLD_CF_ITEM, &f, NULL, fn, NULL, ctx};
  mtld_store_foreach_raw(st, MTLD_CF_ITEM, NULL, 0, entity_cb, &ei);
}

void mtld_store_foreach_item_part(mtld_store_t *st, mtld_store_item_part_fn fn, void *ctx) {
  mtld_item_features_t f;
  entity_iter_t ei = {st, MTLD_CF_ITEM_PART, &f, NULL, NULL, fn, ctx};
  mtld_store_foreach_raw(st, MTLD_CF_ITEM_PART, NULL, 0, entity_cb, &ei);
}

/* Keys are (partition, item): one item's views are spread over the whole
 * column family, so seek (p, item) for each partition p that holds a key,
 * jumping over the partitions that hold none. */
void mtld_store_foreach_item_part_of(mtld_store_t *st, uint64_t item_id, mtld_store_item_part_fn fn,
                                     void *ctx) {
  mtld_item_features_t f;
  rocksdb_iterator_t *it =
      rocksdb_create_iterator_cf(st->db, st->ro, cf_handle(st, MTLD_CF_ITEM_PART));
  uint64_t p = 0; /* next partition to look at; > UINT32_MAX: done */
  while (p <= UINT32_MAX) {
    uint8_t key[ENTITY_KEY_MAX];
    entity_key(MTLD_CF_ITEM_PART, (int32_t)(uint32_t)p, item_id, key);
    rocksdb_iter_seek(it, (const char *)key, 12);
    if (!rocksdb_iter_valid(it)) break;
    size_t klen, vlen;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
    if (klen != 12) {
      set_error(st, "item_part: malformed key");
      break;
    }
    uint32_t kp = mtld_get_be32(k);
    if (kp > p) { /* p holds no key >= (p, item): go to the next partition with data */
      p = kp;
      continue;
    }
    if (mtld_get_be64(k + 4) == item_id) {
      const char *v = rocksdb_iter_value(it, &vlen);
      if (mtld_features_item_decode(&st->def, &f, v, vlen) != MTLD_OK)
        entity_error(st, MTLD_CF_ITEM_PART, (int32_t)kp, item_id);
      else if (fn(ctx, (int32_t)kp, item_id, &f))
        break;
    }
    p++;
  }
  char *e = NULL;
  rocksdb_iter_get_error(it, &e);
  if (e) {
    set_error(st, "store iteration (item_part): %s", e);
    rocksdb_free(e);
  }
  rocksdb_iter_destroy(it);
}

/* ---- commit ---- */

static int entry_cmp(const void *a, const void *b) {
  const entry_t *x = *(const entry_t *const *)a, *y = *(const entry_t *const *)b;
  if (x->cf != y->cf) return x->cf < y->cf ? -1 : 1;
  size_t n = x->klen < y->klen ? x->klen : y->klen;
  int c = memcmp(x->key, y->key, n);
  if (c) return c;
  return x->klen < y->klen ? -1 : x->klen > y->klen;
}

void mtld_store_rollback(mtld_store_t *st) {
  map_clear(&st->users);
  map_clear(&st->items);
  map_clear(&st->parts);
  map_clear(&st->raw);
  st->n_events = 0;
  st->below_len = 0;
  st->read_rc = MTLD_OK;
  st->read_err[0] = 0;
}

mtld_status_t mtld_store_delete_below(mtld_store_t *st, mtld_cf_t cf, const void *end,
                                      size_t elen) {
  if (st->readonly || cf != MTLD_CF_SEEN || elen == 0 || elen > sizeof st->below) {
    set_error(st, "delete_below takes the seen column family and a key of 1..%zu bytes",
              sizeof st->below);
    return MTLD_ERR_INVALID;
  }
  memcpy(st->below, end, elen);
  st->below_len = elen;
  return MTLD_OK;
}

mtld_status_t mtld_store_commit(mtld_store_t *st, char *err, size_t errlen) {
  if (st->readonly) {
    snprintf(err, errlen, "store is read-only");
    return MTLD_ERR_INVALID;
  }
  if (st->read_rc != MTLD_OK) {
    /* events of this batch could not be applied: writing it would skip them */
    st->commit_failures++;
    snprintf(err, errlen, "batch not written, a read failed: %s", st->read_err);
    return st->read_rc;
  }
  size_t total = st->users.n + st->items.n + st->parts.n + st->raw.n;
  if (total == 0 && st->below_len == 0) {
    st->n_events = 0;
    return MTLD_OK;
  }
  if (st->commit_hook) {
    /* scale-out: the changelog transaction first (store.h) */
    mtld_status_t hrc = st->commit_hook(st->commit_ctx, st, err, errlen);
    if (hrc != MTLD_OK) {
      st->commit_failures++;
      return hrc; /* the batch is kept for a retry */
    }
    total = st->users.n + st->items.n + st->parts.n + st->raw.n; /* the hook may stage */
  }
  int64_t t0 = mtld_mono_ns();
  entry_t **order = malloc((total ? total : 1) * sizeof *order);
  if (!order) {
    st->commit_failures++;
    snprintf(err, errlen, "out of memory");
    return MTLD_ERR_NOMEM;
  }
  size_t n = 0;
  for (size_t i = 0; i < st->users.n; i++) order[n++] = &st->users.ents[i];
  for (size_t i = 0; i < st->items.n; i++) order[n++] = &st->items.ents[i];
  for (size_t i = 0; i < st->parts.n; i++) order[n++] = &st->parts.ents[i];
  for (size_t i = 0; i < st->raw.n; i++) order[n++] = &st->raw.ents[i];
  qsort(order, n, sizeof *order, entry_cmp);

  uint8_t buf[MTLD_FEATURES_USER_ENC_MAX > MTLD_FEATURES_ITEM_ENC_MAX ? MTLD_FEATURES_USER_ENC_MAX
                                                                      : MTLD_FEATURES_ITEM_ENC_MAX];
  if (!st->wb && !(st->wb = rocksdb_writebatch_create())) {
    free(order);
    st->commit_failures++;
    snprintf(err, errlen, "out of memory");
    return MTLD_ERR_NOMEM;
  }
  rocksdb_writebatch_t *wb = st->wb;
  rocksdb_writebatch_clear(wb);
  if (st->below_len) {
    static const char lowest = 0;
    rocksdb_writebatch_delete_range_cf(wb, cf_handle(st, MTLD_CF_SEEN), &lowest, 1,
                                       (const char *)st->below, st->below_len);
  }
  for (size_t i = 0; i < n; i++) {
    const entry_t *e = order[i];
    rocksdb_column_family_handle_t *h = cf_handle(st, e->cf);
    size_t len;
    if (e->cf == MTLD_CF_USER || e->cf == MTLD_CF_ITEM || e->cf == MTLD_CF_ITEM_PART) {
      if (entity_events(e->cf, e->val) == 0) continue; /* loaded, never applied */
      len = entity_encode(&st->def, e->cf, e->val, buf, sizeof buf);
      rocksdb_writebatch_put_cf(wb, h, (const char *)e->key, e->klen, (const char *)buf, len);
      /* the cache gets what a read of these bytes gives (dropped again
       * below if the write fails) */
      ecache_t *c = &st->ecache[cf_cache(e->cf)];
      if (c->nslots) {
        void *slot = ecache_slot(c, e->key, e->klen, e->hash);
        memset(slot, 0, c->size); /* as load_entity decodes: unused fields zero */
        if (entity_decode(&st->def, e->cf, slot, buf, len) != MTLD_OK) ecache_drop(c, e->hash);
      }
    } else if (e->deleted) {
      rocksdb_writebatch_delete_cf(wb, h, (const char *)e->key, e->klen);
    } else {
      rocksdb_writebatch_put_cf(wb, h, (const char *)e->key, e->klen, e->val, e->vlen);
    }
  }
  char *e = NULL;
  rocksdb_write(st->db, st->wo, wb, &e);
  if (e) /* the DB may hold the old values: forget the batch's entities */
    for (size_t i = 0; i < n; i++)
      if (order[i]->cf == MTLD_CF_USER || order[i]->cf == MTLD_CF_ITEM ||
          order[i]->cf == MTLD_CF_ITEM_PART) {
        ecache_t *c = &st->ecache[cf_cache(order[i]->cf)];
        if (c->nslots) ecache_drop(c, order[i]->hash);
      }
  free(order);
  if (e) {
    snprintf(err, errlen, "store commit failed: %s", e);
    set_error(st, "store commit failed: %s", e);
    rocksdb_free(e);
    st->commit_failures++;
    return MTLD_ERR_IO; /* the batch is kept for a retry */
  }
  mtld_store_rollback(st);
  double secs = (double)(mtld_mono_ns() - t0) / 1e9;
  st->write_seconds_sum += secs;
  if (secs > st->write_seconds_max) st->write_seconds_max = secs;
  st->commits++;
  return MTLD_OK;
}

uint64_t mtld_store_size_bytes(mtld_store_t *st) {
  static const char *const props[2] = {"rocksdb.total-sst-files-size",
                                       "rocksdb.cur-size-all-mem-tables"};
  uint64_t total = 0;
  for (int i = 0; i < N_CF; i++) {
    for (int p = 0; p < 2; p++) {
      uint64_t v = 0;
      if (rocksdb_property_int_cf(st->db, st->cfh[i], props[p], &v) == 0) total += v;
    }
  }
  return total;
}

mtld_status_t mtld_store_verify(mtld_store_t *st, uint64_t *keys, char *err, size_t errlen) {
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_verify_checksums(ro, 1);
  rocksdb_readoptions_set_fill_cache(ro, 0); /* one pass: keep the cache for the work */
  mtld_status_t rc = MTLD_OK;
  uint64_t n = 0;
  for (int i = 0; i < N_CF && rc == MTLD_OK; i++) {
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cfh[i]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) n++;
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e) {
      rc = strncmp(e, "Corruption", 10) == 0 ? MTLD_ERR_CORRUPT : MTLD_ERR_IO;
      snprintf(err, errlen, "store verification (%s): %s", cf_names[i], e);
      rocksdb_free(e);
    }
    rocksdb_iter_destroy(it);
  }
  rocksdb_readoptions_destroy(ro);
  if (keys) *keys = n;
  return rc;
}

mtld_status_t mtld_store_checkpoint(mtld_store_t *st, const char *dir, char *err, size_t errlen) {
  if (st->readonly) {
    snprintf(err, errlen, "store checkpoint: store is read-only");
    return MTLD_ERR_INVALID;
  }
  char *e = NULL;
  rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(st->db, &e);
  if (e) {
    snprintf(err, errlen, "store checkpoint: %s", e);
    rocksdb_free(e);
    return MTLD_ERR_IO;
  }
  /* log_size_for_flush 0: flush the memtables first, so the checkpoint is
     SST files (hard links) and needs no WAL replay. */
  rocksdb_checkpoint_create(cp, dir, 0, &e);
  rocksdb_checkpoint_object_destroy(cp);
  if (e) {
    snprintf(err, errlen, "store checkpoint to %s: %s", dir, e);
    rocksdb_free(e);
    return MTLD_ERR_IO;
  }
  return MTLD_OK;
}

void mtld_store_render_metrics(mtld_store_t *st, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_store_batches_total", "counter", "Store write batches committed.");
  mtld_metrics_sample(b, "mtld_store_batches_total", NULL, (double)st->commits);
  mtld_metrics_family(b, "mtld_store_commit_failures_total", "counter",
                      "Store write batches that failed (kept and retried).");
  mtld_metrics_sample(b, "mtld_store_commit_failures_total", NULL, (double)st->commit_failures);
  mtld_metrics_family(b, "mtld_store_write_seconds", "summary",
                      "Time to write one batch to RocksDB (fsync included when store.sync).");
  mtld_metrics_sample(b, "mtld_store_write_seconds_sum", NULL, st->write_seconds_sum);
  mtld_metrics_sample(b, "mtld_store_write_seconds_count", NULL, (double)st->commits);
  mtld_metrics_family(b, "mtld_store_write_seconds_max", "gauge",
                      "Longest batch write so far, in seconds.");
  mtld_metrics_sample(b, "mtld_store_write_seconds_max", NULL, st->write_seconds_max);
  mtld_metrics_family(b, "mtld_store_size_bytes", "gauge", "RocksDB SST files plus memtables.");
  mtld_metrics_sample(b, "mtld_store_size_bytes", NULL, (double)mtld_store_size_bytes(st));
  /* what RocksDB and the entity cache hold in memory, all bounded by
   * configuration (store.write_buffer_mb, store.block_cache_mb,
   * store.cache_mb); table readers: index and filter blocks outside the
   * block cache (none but level 0's pinned ones with this configuration) */
  uint64_t mem[5] = {0};
  for (int i = 0; i < N_CF; i++) {
    uint64_t v = 0;
    if (rocksdb_property_int_cf(st->db, st->cfh[i], "rocksdb.cur-size-all-mem-tables", &v) == 0)
      mem[0] += v;
    v = 0;
    if (rocksdb_property_int_cf(st->db, st->cfh[i], "rocksdb.estimate-table-readers-mem", &v) == 0)
      mem[3] += v;
  }
  (void)rocksdb_property_int(st->db, "rocksdb.block-cache-usage", &mem[1]);
  (void)rocksdb_property_int(st->db, "rocksdb.block-cache-pinned-usage", &mem[2]);
  for (int i = 0; i < 3; i++) mem[4] += st->ecache[i].nslots * (st->ecache[i].size + ECACHE_TAG);
  static const char *const mkinds[5] = {"kind=\"memtables\"", "kind=\"block_cache\"",
                                        "kind=\"block_cache_pinned\"", "kind=\"table_readers\"",
                                        "kind=\"entity_cache\""};
  mtld_metrics_family(b, "mtld_store_memory_bytes", "gauge",
                      "Store memory by kind: RocksDB memtables, block cache (pinned: of it, in "
                      "use), table readers outside the cache, entity cache (allocated).");
  for (int i = 0; i < 5; i++)
    mtld_metrics_sample(b, "mtld_store_memory_bytes", mkinds[i], (double)mem[i]);
  static const char *const kinds[3] = {"kind=\"user\"", "kind=\"item\"", "kind=\"item_part\""};
  mtld_metrics_family(b, "mtld_store_cache_hits_total", "counter",
                      "First reads of a batch answered by the committed-entity cache "
                      "(store.cache_mb).");
  for (int i = 0; i < 3; i++)
    mtld_metrics_sample(b, "mtld_store_cache_hits_total", kinds[i], (double)st->ecache[i].hits);
  mtld_metrics_family(b, "mtld_store_cache_misses_total", "counter",
                      "Reads the committed-entity cache could not answer (read from RocksDB).");
  for (int i = 0; i < 3; i++)
    mtld_metrics_sample(b, "mtld_store_cache_misses_total", kinds[i], (double)st->ecache[i].misses);
}

/* ---- the store's directory (checkpoints, restore) ----------------------- */

int mtld_store_dir_present(const char *dir) {
  char p[PATH_MAX];
  return mtld_pathf(p, sizeof p, "%s/CURRENT", dir) == 0 && mtld_exists(p);
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* Copies the tree src into the new directory dst; SST files (immutable once
 * written) are hard-linked when the filesystem allows it. */
static int copy_tree(const char *src, const char *dst) {
  if (mkdir(dst, 0755) != 0) return -1;
  DIR *d = opendir(src);
  if (!d) return -1;
  struct dirent *de;
  int rc = 0;
  char s[PATH_MAX], t[PATH_MAX];
  while (rc == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (mtld_pathf(s, sizeof s, "%s/%s", src, de->d_name) != 0 ||
        mtld_pathf(t, sizeof t, "%s/%s", dst, de->d_name) != 0) {
      errno = ENAMETOOLONG;
      rc = -1;
      break;
    }
    struct stat sb;
    if (lstat(s, &sb) != 0) {
      rc = -1;
    } else if (S_ISDIR(sb.st_mode)) {
      rc = copy_tree(s, t);
    } else if (S_ISREG(sb.st_mode)) {
      if (!has_suffix(de->d_name, ".sst") || link(s, t) != 0) rc = mtld_copy_file(s, t);
    }
  }
  closedir(d);
  if (rc == 0) rc = mtld_fsync_dir(dst);
  return rc;
}

mtld_status_t mtld_store_restore_dir(const char *src, const char *path, char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(src);
  MTLD_CHECK_DIR_LEN(path);
  char stage[PATH_MAX], old[PATH_MAX], parent[PATH_MAX];
  mtld_pathf(stage, sizeof stage, "%s.restore.tmp", path);
  mtld_pathf(old, sizeof old, "%s.old", path);
  mtld_pathf(parent, sizeof parent, "%s", path);
  const char *pdir = dirname(parent);
  const char *what = NULL;
  if (mtld_rmtree(stage) != 0 || mtld_rmtree(old) != 0)
    what = "cannot clear leftovers of an earlier restore";
  else if (copy_tree(src, stage) != 0)
    what = "cannot copy the checkpoint's store";
  else if (mtld_exists(path) && rename(path, old) != 0)
    what = "cannot move the live store aside";
  else if (rename(stage, path) != 0) {
    what = "cannot move the restored store into place";
    int e = errno;
    rename(old, path); /* put the live one back */
    errno = e;
  } else if (mtld_fsync_dir(pdir) != 0)
    what = "cannot fsync the store's parent directory";
  if (what) {
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
    mtld_rmtree(stage);
    return MTLD_ERR_IO;
  }
  mtld_rmtree(old);
  mtld_fsync_dir(pdir);
  return MTLD_OK;
}

/* ---- scale-out: partition tags, the commit hook, direct writes ---------- */

void mtld_store_set_partition(mtld_store_t *st, mtld_partition_id_t partition) {
  st->cur_part = partition < 0 ? -1 : partition;
}

void mtld_store_set_partition_index(mtld_store_t *st, int on) {
  st->part_index = on != 0;
}

void mtld_store_set_commit_hook(mtld_store_t *st, mtld_store_commit_hook_fn fn, void *ctx) {
  st->commit_hook = fn;
  st->commit_ctx = ctx;
}

mtld_status_t mtld_store_foreach_staged(mtld_store_t *st, mtld_store_staged_fn fn, void *ctx) {
  uint8_t buf[MTLD_FEATURES_USER_ENC_MAX > MTLD_FEATURES_ITEM_ENC_MAX ? MTLD_FEATURES_USER_ENC_MAX
                                                                      : MTLD_FEATURES_ITEM_ENC_MAX];
  const map_t *maps[4] = {&st->users, &st->items, &st->parts, &st->raw};
  for (int m = 0; m < 4; m++) {
    for (size_t i = 0; i < maps[m]->n; i++) {
      const entry_t *e = &maps[m]->ents[i];
      if (e->part < 0) continue;
      mtld_status_t rc;
      if (m < 3) {
        if (entity_events(e->cf, e->val) == 0) continue; /* loaded, never applied */
        size_t len = entity_encode(&st->def, e->cf, e->val, buf, sizeof buf);
        rc = fn(ctx, e->part, (mtld_cf_t)e->cf, e->key, e->klen, buf, len, 0);
      } else {
        rc = fn(ctx, e->part, (mtld_cf_t)e->cf, e->key, e->klen, e->val, e->vlen, e->deleted);
      }
      if (rc != MTLD_OK) return rc;
    }
  }
  return MTLD_OK;
}

mtld_status_t mtld_store_write_direct(mtld_store_t *st, const mtld_store_write_t *w, size_t n,
                                      char *err, size_t errlen) {
  if (st->readonly) {
    snprintf(err, errlen, "store is read-only");
    return MTLD_ERR_INVALID;
  }
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  for (size_t i = 0; i < n; i++) {
    if ((int)w[i].cf < 0 || w[i].cf >= MTLD_CF_COUNT) {
      rocksdb_writebatch_destroy(wb);
      snprintf(err, errlen, "direct write: bad column family %d", (int)w[i].cf);
      return MTLD_ERR_INVALID;
    }
    rocksdb_column_family_handle_t *h = cf_handle(st, w[i].cf);
    if (w[i].deleted)
      rocksdb_writebatch_delete_cf(wb, h, (const char *)w[i].key, w[i].klen);
    else
      rocksdb_writebatch_put_cf(wb, h, (const char *)w[i].key, w[i].klen, (const char *)w[i].val,
                                w[i].vlen);
  }
  char *e = NULL;
  rocksdb_write(st->db, st->wo, wb, &e);
  rocksdb_writebatch_destroy(wb);
  /* the write bypassed the commit that keeps the committed-entity caches
   * equal to the DB (restores, partition drops are rare): empty them */
  for (int c = 0; c < 3; c++) ecache_clear(&st->ecache[c]);
  if (e) {
    snprintf(err, errlen, "store direct write failed: %s", e);
    rocksdb_free(e);
    return MTLD_ERR_IO;
  }
  return MTLD_OK;
}

/* Collects the keys to delete of one partition. */
typedef struct {
  mtld_store_t *st;
  mtld_store_write_t *w;
  size_t n, cap;
  mtld_cf_t cf; /* of the keys being collected */
  int32_t partition;
  mtld_store_key_partition_fn classify;
  void *cctx;
  int users; /* collecting from the upart index: delete the user key too */
  int failed;
} drop_t;

static int drop_add(drop_t *d, mtld_cf_t cf, const void *key, size_t klen) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 1024;
    mtld_store_write_t *w = realloc(d->w, cap * sizeof *w);
    if (!w) return -1;
    d->w = w;
    d->cap = cap;
  }
  void *k = malloc(klen ? klen : 1);
  if (!k) return -1;
  memcpy(k, key, klen);
  d->w[d->n++] = (mtld_store_write_t){.cf = cf, .key = k, .klen = klen, .deleted = 1};
  return 0;
}

static int drop_cb(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  drop_t *d = ctx;
  (void)val;
  (void)vlen;
  if (d->classify && d->classify(d->cctx, key, klen) != d->partition) return 0;
  if (drop_add(d, d->cf, key, klen) != 0) {
    d->failed = 1;
    return 1;
  }
  if (d->users && klen == UPART_KEY_LEN &&
      drop_add(d, MTLD_CF_USER, (const uint8_t *)key + 10, 8) != 0) {
    d->failed = 1;
    return 1;
  }
  return 0;
}

mtld_status_t mtld_store_drop_partition(mtld_store_t *st, mtld_partition_id_t partition,
                                        const char *topic, int32_t kafka_partition,
                                        mtld_store_key_partition_fn pending_partition, void *ctx,
                                        uint64_t *dropped, char *err, size_t errlen) {
  drop_t d = {.st = st, .partition = partition};
  uint8_t pre[10];
  memcpy(pre, UPART_PREFIX, 6);
  mtld_put_be32(pre + 6, (uint32_t)partition);
  /* users (through their index) */
  d.cf = MTLD_CF_META;
  d.users = 1;
  mtld_store_foreach_raw(st, MTLD_CF_META, pre, sizeof pre, drop_cb, &d);
  d.users = 0;
  /* the partition's item views */
  uint8_t ip[4];
  mtld_put_be32(ip, (uint32_t)partition);
  d.cf = MTLD_CF_ITEM_PART;
  if (!d.failed) mtld_store_foreach_raw(st, MTLD_CF_ITEM_PART, ip, sizeof ip, drop_cb, &d);
  /* pending joins */
  d.cf = MTLD_CF_PENDING;
  d.classify = pending_partition;
  d.cctx = ctx;
  if (!d.failed && pending_partition)
    mtld_store_foreach_raw(st, MTLD_CF_PENDING, NULL, 0, drop_cb, &d);
  d.classify = NULL;
  /* its offset and its partition ledger ("plg/" partition, mtld_store_plg_key) */
  size_t oklen = 0;
  char *ok = offset_key(topic, kafka_partition, &oklen);
  uint8_t lk[MTLD_STORE_PLG_KEY_LEN];
  mtld_store_plg_key(lk, partition);
  mtld_status_t rc = MTLD_OK;
  if (d.failed || !ok || drop_add(&d, MTLD_CF_META, ok, oklen) != 0 ||
      drop_add(&d, MTLD_CF_META, lk, sizeof lk) != 0) {
    snprintf(err, errlen, "dropping partition %d: out of memory", (int)partition);
    rc = MTLD_ERR_NOMEM;
  } else {
    rc = mtld_store_write_direct(st, d.w, d.n, err, errlen);
  }
  free(ok);
  if (dropped) *dropped = rc == MTLD_OK ? d.n : 0;
  for (size_t i = 0; i < d.n; i++) free((void *)d.w[i].key);
  free(d.w);
  return rc;
}

void mtld_store_plg_key(uint8_t k[MTLD_STORE_PLG_KEY_LEN], mtld_partition_id_t partition) {
  memcpy(k, "plg/", 4);
  mtld_put_be32(k + 4, (uint32_t)partition);
}
