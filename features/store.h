/* store.h - the per-user and per-item feature store on RocksDB, exactly once.
 *
 * Column families: "user" (key: user id, 8 bytes big-endian), "item" (item
 * id), "pending" (joiner state, opaque to the store), "meta" (schema hash,
 * source offsets with each partition's max event time, other small state),
 * "item_part" (key: partition, 4 bytes big-endian, then the item id: the
 * partition-local item views, see below), "seen" (the events applied, by
 * event time and id, for de-duplication: features/dedup.h).
 *
 * Item views.  "item" holds each item's features over every event applied
 * (the global view: inspection, serving).  Events are keyed by user, so an
 * item's events come from many partitions, and the global view at some
 * moment depends on how far each partition has been consumed.  With
 * features.item_view = partition (mtld_feature_def_t.item_view) the store
 * also keeps, per (partition, item), the features of that partition's
 * events only, and hands THOSE to the joiner as the "before" item features:
 * every partition is consumed in order, so they are the same however the
 * partitions interleave, and hold no event of another partition that is
 * later in event time.  With item_view = global nothing is kept in
 * "item_part" and the "before" values come from the global view.
 *
 * Work happens in batches: mtld_store_apply() stages events (reading the
 * batch's own writes first, then the DB), mtld_store_set_offset() records
 * what the batch consumed, and mtld_store_commit() writes everything in ONE
 * RocksDB WriteBatch (fsynced when configured).  After a crash the DB holds
 * exactly the committed batches and the offsets that produced them, so the
 * consumer seeks to those offsets and replays the rest: exactly-once state.
 *
 * Decayed counts are kept as of the newest event time applied (event time,
 * never wall clock): value(t) = sum_i 2^(-(t - t_i) / half_life).  An event
 * older than the stored time adds its already-decayed contribution.
 *
 * Thread: one thread owns a store (the daemon's main loop). */
#ifndef MTLD_STORE_H
#define MTLD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"
#include "common/metricstext.h"
#include "features/features.h"
#include "features/partition.h"
#include "common/status.h"

typedef struct mtld_store mtld_store_t;

typedef enum {
  MTLD_CF_USER = 0,
  MTLD_CF_ITEM,
  MTLD_CF_PENDING,
  MTLD_CF_META,
  MTLD_CF_ITEM_PART,
  MTLD_CF_SEEN,
  MTLD_CF_COUNT
} mtld_cf_t;

/* Opens (creating if absent, with its missing parent directories) the
 * store at `path`.  Refuses with
 * MTLD_ERR_SCHEMA when the DB was built with other feature definitions (or
 * by an mtld with another definitions format: features.h).
 * def == NULL: use the definitions stored in the DB, which must exist
 * (nothing is created: MTLD_ERR_NOTFOUND when there is no store).  A new DB
 * records def's hash and encoding in meta ("schema_hash", "feature_def").
 * def is copied.  sync: fsync every commit (WAL sync).  Returns MTLD_OK and
 * *out; otherwise MTLD_ERR_INVALID (bad def, no stored def), MTLD_ERR_IO
 * (RocksDB), or MTLD_ERR_CORRUPT (unreadable meta), with err set. */
mtld_status_t mtld_store_open(mtld_store_t **out, const char *path, const mtld_feature_def_t *def,
                              int sync, char *err, size_t errlen);

/* RocksDB's memory budget for one store: what it holds in memory does not
 * grow with the data (the stream) but stays within about
 * block_cache_bytes + write_buffer_bytes (+ RocksDB's small fixed
 * overheads).  The block cache holds data blocks and the tables' index and
 * filter blocks (which otherwise stay in memory, outside any cache, for
 * every table file: they grow with the store); write_buffer_bytes bounds
 * the memtables of all column families together (RocksDB flushes the
 * largest one when they reach it). */
typedef struct {
  size_t block_cache_bytes;  /* default 64 MiB */
  size_t write_buffer_bytes; /* default 128 MiB */
} mtld_store_memory_t;

/* Fills the defaults above. */
void mtld_store_memory_default(mtld_store_memory_t *m);

/* mtld_store_open with a memory budget (mem NULL: the defaults; mem is
 * read during the call only). */
mtld_status_t mtld_store_open_mem(mtld_store_t **out, const char *path,
                                  const mtld_feature_def_t *def, int sync,
                                  const mtld_store_memory_t *mem, char *err, size_t errlen);

/* Default byte budget of a writable store's committed-entity cache. */
#define MTLD_STORE_CACHE_DEFAULT ((size_t)64 << 20)

/* Resizes (emptying it) the writable store's cache of committed users,
 * items and (partition, item) views, decoded, to at most bytes (half for
 * users, a quarter each for items and views; 0 = no cache).  It is filled
 * at each commit and read before RocksDB by apply and the get_user/_item
 * calls; what it returns is what a read of the DB would give, so it changes
 * no result, only the cost.  Pages never used are never touched.  MTLD_OK,
 * MTLD_ERR_NOMEM (the cache is then off), MTLD_ERR_INVALID (read-only store,
 * bytes > 0).  Thread: the store's owner. */
mtld_status_t mtld_store_set_cache(mtld_store_t *st, size_t bytes);

/* Opens an existing store read-only with its stored definitions (a store no
 * process writes: a checkpoint, a stopped daemon's).
 * MTLD_ERR_NOTFOUND when there is no store at path; MTLD_ERR_SCHEMA when it
 * lacks a column family (built by an older mtld).  apply, put, delete,
 * set_offset and commit fail (MTLD_ERR_INVALID) on it. */
mtld_status_t mtld_store_open_readonly(mtld_store_t **out, const char *path, char *err,
                                       size_t errlen);

/* The same, for tools that run while the daemon writes (mtld-inspect,
 * mtld-score): a RocksDB secondary instance (its info log in a temporary
 * directory under $TMPDIR or /tmp, removed by mtld_store_close), so files
 * the daemon deletes meanwhile do not make the open fail; it sees the state
 * as of the open.  Same errors and refusals as mtld_store_open_readonly. */
mtld_status_t mtld_store_open_secondary(mtld_store_t **out, const char *path, char *err,
                                        size_t errlen);

/* The definitions the store works with (valid until close). */
const mtld_feature_def_t *mtld_store_def(const mtld_store_t *st);

/* Text of the last error of a call without an err buffer (apply, put, get,
 * foreach...); "" when none.  Valid until the next call. */
const char *mtld_store_last_error(const mtld_store_t *st);

/* Reads every key of every column family with checksums verified (data,
 * index and filter blocks of every table file, not cached).  *keys (may be
 * NULL) gets the number of keys read.  MTLD_OK; MTLD_ERR_CORRUPT (a
 * checksum or format error) or MTLD_ERR_IO (a read failed) with err holding
 * RocksDB's text, which names the damaged file.  Cost: one sequential read
 * of the store.  Any thread that owns st. */
mtld_status_t mtld_store_verify(mtld_store_t *st, uint64_t *keys, char *err, size_t errlen);

/* Discards any uncommitted batch and closes.  NULL is a no-op. */
void mtld_store_close(mtld_store_t *st);

/* Applies one validated event, read from `partition`, to the current batch:
 * the user, the item's global view and (item_view = partition) the item's
 * view of that partition.  Copies the features as they were BEFORE the event
 * into *user_before / *item_before (either may be NULL): the point-in-time
 * read the joiner needs; *item_before is the partition's view of the item
 * (item_view = partition) or the global one (item_view = global).
 * `partition` is the partition id (features/partition.h: unique across
 * topics, the number the joiner orders by), >= 0.  Returns MTLD_OK; MTLD_ERR_INVALID for a type
 * outside 1..5, a negative partition or a read-only store; MTLD_ERR_IO /
 * MTLD_ERR_CORRUPT when reading the DB failed (nothing staged;
 * mtld_store_last_error() says why). */
mtld_status_t mtld_store_apply_part(mtld_store_t *st, const mtld_event_t *ev,
                                    mtld_partition_id_t partition,
                                    mtld_user_features_t *user_before,
                                    mtld_item_features_t *item_before);

/* mtld_store_apply_part() with partition 0 (one-partition callers, tests):
 * with every event on partition 0 both item views are equal. */
mtld_status_t mtld_store_apply(mtld_store_t *st, const mtld_event_t *ev,
                               mtld_user_features_t *user_before,
                               mtld_item_features_t *item_before);

#define MTLD_TOPIC_MAX 256

/* What a source had consumed, as the store keeps it per (topic, partition)
 * in the same write batch as the state it produced (and as checkpoint meta
 * and snapshot headers repeat it). */
typedef struct {
  char topic[MTLD_TOPIC_MAX]; /* Kafka topic (or the replayed file's name) */
  int32_t partition;
  int64_t next_offset; /* offset of the next record to read */
  int64_t max_time_ms; /* newest event time seen on it */
} mtld_source_offset_t;

/* Records in the current batch that (topic, partition) was consumed up to
 * next_offset (the offset of the next record to read) and that the
 * partition's max event time is max_time_ms. */
void mtld_store_set_offset(mtld_store_t *st, const char *topic, int32_t partition,
                           int64_t next_offset, int64_t max_time_ms);

/* Committed offset state of (topic, partition): MTLD_OK with *next_offset and
 * *max_time_ms, or MTLD_ERR_NOTFOUND.  Reads the DB only (not the batch). */
mtld_status_t mtld_store_get_offset(mtld_store_t *st, const char *topic, int32_t partition,
                                    int64_t *next_offset, int64_t *max_time_ms);

/* Calls fn for every committed offset record; stops when fn returns non-zero. */
void mtld_store_foreach_offset(mtld_store_t *st,
                               int (*fn)(void *ctx, const char *topic, int32_t partition,
                                         int64_t next_offset, int64_t max_time_ms),
                               void *ctx);

/* Raw staged access for other subsystems (joiner: MTLD_CF_PENDING; meta;
 * de-duplication: MTLD_CF_SEEN).
 * get reads the batch first, then the DB; *val is malloc'd (caller frees).
 * get returns MTLD_ERR_NOTFOUND when absent (or deleted in the batch).
 * put/delete take MTLD_CF_PENDING, MTLD_CF_META and MTLD_CF_SEEN only (MTLD_ERR_INVALID
 * otherwise, and on a read-only store); get on MTLD_CF_USER/ITEM/ITEM_PART
 * returns the encoded features (staged ones encoded as commit would write
 * them). */
mtld_status_t mtld_store_put(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                             const void *val, size_t vlen);
mtld_status_t mtld_store_delete(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen);
mtld_status_t mtld_store_get(mtld_store_t *st, mtld_cf_t cf, const void *key, size_t klen,
                             void **val, size_t *vlen);

/* mtld_store_get of n keys of one raw column family (MTLD_CF_PENDING,
 * MTLD_CF_META or MTLD_CF_SEEN; MTLD_ERR_INVALID for the others): rcs[i],
 * vals[i] and vlens[i] are what mtld_store_get(st, cf, keys[i], klens[i], ...)
 * would give at the time of the call (the batch first, then the DB; each
 * found *vals[i] malloc'd, the caller frees; NULL otherwise).  The keys the
 * batch does not hold are read from the DB with one RocksDB MultiGet.
 * Returns MTLD_OK; MTLD_ERR_INVALID (another column family, or more than
 * MTLD_STORE_GET_MANY_MAX keys: the arrays are not touched); MTLD_ERR_NOMEM
 * (every vals[i] NULL, rcs[i] MTLD_ERR_NOMEM).  Main thread. */
#define MTLD_STORE_GET_MANY_MAX 512
mtld_status_t mtld_store_get_many(mtld_store_t *st, mtld_cf_t cf, size_t n, const void *const *keys,
                                  const size_t *klens, void **vals, size_t *vlens,
                                  mtld_status_t *rcs);

/* Stages the deletion of every key of cf (MTLD_CF_SEEN only) that sorts
 * before `end` (bytewise), done by the next commit in its write batch, before
 * the batch's own writes.  One range per commit: a later call replaces an
 * earlier one.  The batch's own staged keys below `end` are not affected
 * (callers expire keys no event of the batch can have). */
mtld_status_t mtld_store_delete_below(mtld_store_t *st, mtld_cf_t cf, const void *end, size_t elen);

/* Calls fn for every COMMITTED key/value of a column family whose key starts
 * with prefix (plen may be 0), in key order; stops when fn returns non-zero.
 * Staged (uncommitted) writes are not seen: use at start-up to rebuild
 * in-memory indexes (the joiner's). */
void mtld_store_foreach_raw(mtld_store_t *st, mtld_cf_t cf, const void *prefix, size_t plen,
                            int (*fn)(void *ctx, const void *key, size_t klen, const void *val,
                                      size_t vlen),
                            void *ctx);

/* Number of events staged in the current batch. */
size_t mtld_store_batch_events(const mtld_store_t *st);

/* Heap bytes held by the current batch (decoded dirty users/items, staged
 * raw writes, the maps' tables), for metrics. */
size_t mtld_store_batch_bytes(const mtld_store_t *st);

/* Writes the batch atomically (features, raw puts/deletes, offsets) and starts
 * a new one.  On failure the batch is kept (retry) and err says why.  Each
 * write is counted and timed for the metrics (an empty batch writes
 * nothing).  A read of the DB that failed since the last commit or rollback
 * (apply, get, foreach: RocksDB's error, e.g. a checksum mismatch naming the
 * .sst) is sticky: commit then writes nothing and returns MTLD_ERR_CORRUPT
 * or MTLD_ERR_IO with that first error's text (not retriable: roll back). */
mtld_status_t mtld_store_commit(mtld_store_t *st, char *err, size_t errlen);

/* Drops the current batch (e.g. on partition revocation without commit). */
void mtld_store_rollback(mtld_store_t *st);

/* Reads committed+staged features.  MTLD_ERR_NOTFOUND when never seen. */
mtld_status_t mtld_store_get_user(mtld_store_t *st, uint64_t user_id, mtld_user_features_t *out);
mtld_status_t mtld_store_get_item(mtld_store_t *st, uint64_t item_id, mtld_item_features_t *out);

/* Reads committed+staged features of an item as seen by one partition
 * (item_view = partition).  MTLD_ERR_NOTFOUND when that partition never saw
 * the item, and always with item_view = global (nothing is kept). */
mtld_status_t mtld_store_get_item_part(mtld_store_t *st, mtld_partition_id_t partition,
                                       uint64_t item_id, mtld_item_features_t *out);

/* Iterates committed users / items in key order (inspect tool, tests);
 * stops when fn returns non-zero.  Undecodable entries are skipped and
 * reported through mtld_store_last_error(). */
void mtld_store_foreach_user(mtld_store_t *st,
                             int (*fn)(void *ctx, uint64_t id, const mtld_user_features_t *f),
                             void *ctx);
void mtld_store_foreach_item(mtld_store_t *st,
                             int (*fn)(void *ctx, uint64_t id, const mtld_item_features_t *f),
                             void *ctx);

/* Iterates the committed partition views of items (item_view = partition):
 * mtld_store_foreach_item_part() all of them in (partition, item) order,
 * mtld_store_foreach_item_part_of() those of one item in partition order
 * (a seek per partition that holds data, not a scan).  Stops when fn
 * returns non-zero; undecodable entries are skipped and reported through
 * mtld_store_last_error(). */
typedef int (*mtld_store_item_part_fn)(void *ctx, mtld_partition_id_t partition, uint64_t id,
                                       const mtld_item_features_t *f);
void mtld_store_foreach_item_part(mtld_store_t *st, mtld_store_item_part_fn fn, void *ctx);
void mtld_store_foreach_item_part_of(mtld_store_t *st, uint64_t item_id, mtld_store_item_part_fn fn,
                                     void *ctx);

/* Renders the store's families into b (Prometheus text): write batches
 * committed and failed, the time to write one (fsync included when the store
 * syncs), the on-disk size, memory by kind (mtld_store_memory_bytes:
 * memtables, block cache, table readers, entity cache) and the entity
 * cache's hits and misses. */
void mtld_store_render_metrics(mtld_store_t *st, mtld_metrics_buf_t *b);

/* Approximate on-disk size in bytes (live SST + memtables), for metrics. */
uint64_t mtld_store_size_bytes(mtld_store_t *st);

/* Writes a RocksDB checkpoint of the COMMITTED state into `dir`, which must
 * not exist (its parent must): memtables are flushed first, SST files are
 * hard-linked (same filesystem) or copied, so it is fast and takes little
 * space.  The staged batch is not included: commit first for a consistent
 * cut.  The result opens as a store (mtld_store_open / _open_readonly).
 * MTLD_OK, MTLD_ERR_INVALID (read-only store) or MTLD_ERR_IO with err set.
 * Thread: the store's owner. */
mtld_status_t mtld_store_checkpoint(mtld_store_t *st, const char *dir, char *err, size_t errlen);

/* 1 when dir holds a store as mtld_store_checkpoint writes it (RocksDB's
 * CURRENT file is there), else 0.  Presence only: opening it verifies the
 * rest.  Any thread. */
int mtld_store_dir_present(const char *dir);

/* Replaces the store directory at path (closed, or absent) with a copy of
 * the store at src (written by mtld_store_checkpoint; left unchanged): SST
 * files are hard-linked when possible (they are immutable), everything else
 * is copied, into path.restore.tmp, fsynced; then the live directory is
 * renamed to path.old, the copy renamed into place, the parent fsynced and
 * the old one deleted.  MTLD_OK; MTLD_ERR_INVALID (a path too long) or
 * MTLD_ERR_IO with err = "<step that failed>: <reason>", the live store then
 * where it was.  Any thread; nobody may have either store open. */
mtld_status_t mtld_store_restore_dir(const char *src, const char *path, char *err, size_t errlen);

/* ---- scale-out (README "Scale-out") -------------------------------------
 * With several instances in one consumer group a source partition's state
 * moves with the partition: every staged write is tagged with the partition
 * it belongs to (its user's, its (partition, item) view's, its pending
 * sample's, its offset's), and before a commit writes RocksDB the commit
 * hook sees the batch's tagged writes (mtld_store_foreach_staged) and copies
 * them to the changelog (daemon/changelog.c).  Without a hook and with the
 * index off (the default) nothing of this changes what the store writes. */

/* Tags the raw writes staged from now on (put, delete, set_offset) with
 * partition (-1: none, the default; untagged writes stay local).  Entities
 * are tagged by mtld_store_apply_part itself: a user and a (partition, item)
 * view with the event's partition, the global item view never. */
void mtld_store_set_partition(mtld_store_t *st, mtld_partition_id_t partition);

/* on != 0: a user seen for the first time also gets an index entry in meta
 * ("upart/" partition(4 BE) user(8 BE), empty value, tagged), so that
 * mtld_store_drop_partition finds a partition's users.  Off by default. */
void mtld_store_set_partition_index(mtld_store_t *st, int on);

/* Called by mtld_store_commit before it writes a non-empty batch (the hook
 * may stage more writes, written with the batch); a status other than
 * MTLD_OK fails the commit with it (the batch kept, err set by the hook).  NULL removes it. Thread:
 * the store's owner. */
typedef mtld_status_t (*mtld_store_commit_hook_fn)(void *ctx, mtld_store_t *st, char *err,
                                                   size_t errlen);
void mtld_store_set_commit_hook(mtld_store_t *st, mtld_store_commit_hook_fn fn, void *ctx);

/* Calls fn for every staged write with a partition tag: entities encoded as
 * commit writes them, raw puts (deleted = 0) and deletes (deleted = 1, val
 * NULL).  The range deletion of mtld_store_delete_below is not included.
 * Stops at fn's first status other than MTLD_OK and returns it. */
typedef mtld_status_t (*mtld_store_staged_fn)(void *ctx, mtld_partition_id_t partition,
                                              mtld_cf_t cf, const void *key, size_t klen,
                                              const void *val, size_t vlen, int deleted);
mtld_status_t mtld_store_foreach_staged(mtld_store_t *st, mtld_store_staged_fn fn, void *ctx);

/* One write of mtld_store_write_direct. */
typedef struct {
  mtld_cf_t cf;
  const void *key;
  size_t klen;
  const void *val; /* ignored when deleted */
  size_t vlen;
  int deleted;
} mtld_store_write_t;

/* Writes w[0..n) to the DB in one RocksDB write batch at once, past the
 * staged batch (which is not touched: a restore must not write keys the
 * staged batch holds); empties the committed-entity cache.  MTLD_OK,
 * MTLD_ERR_INVALID (read-only, a bad column family) or MTLD_ERR_IO, with
 * err set. */
mtld_status_t mtld_store_write_direct(mtld_store_t *st, const mtld_store_write_t *w, size_t n,
                                      char *err, size_t errlen);

/* The partition a pending key belongs to, or -1 (joiner: mtld_joiner_key_partition). */
typedef int32_t (*mtld_store_key_partition_fn)(void *ctx, const void *key, size_t klen);

/* Deletes, at once (mtld_store_write_direct), the committed state of one
 * partition: its users (through the index of mtld_store_set_partition_index),
 * its (partition, item) views, the pending keys pending_partition assigns to
 * it (NULL: none), its offset record (topic, kafka_partition) and its
 * partition ledger (mtld_store_plg_key).  Seen event ids are kept: they are
 * facts of events applied, also in the changelog, and expire by time.
 * *dropped (may be NULL) gets the number of keys deleted.  The caller holds no
 * staged write of the partition (commit or roll back first). */
mtld_status_t mtld_store_drop_partition(mtld_store_t *st, mtld_partition_id_t partition,
                                        const char *topic, int32_t kafka_partition,
                                        mtld_store_key_partition_fn pending_partition, void *ctx,
                                        uint64_t *dropped, char *err, size_t errlen);

/* The meta key of a partition's ledger of released samples (scale-out):
 * "plg/" partition (4, big-endian). */
#define MTLD_STORE_PLG_KEY_LEN 8
void mtld_store_plg_key(uint8_t k[MTLD_STORE_PLG_KEY_LEN], mtld_partition_id_t partition);

#endif
