/* changelog.h - scale-out: a partition's state travels with it through a
 * compacted Kafka changelog topic (README "Scale-out").
 *
 * Every committed store batch's writes that belong to source partition P
 * (store.h: tagged writes) are produced to partition P of the changelog
 * topic, key = column family (1 byte) + store key, value = the stored bytes
 * or a tombstone (NULL) for a delete, in ONE Kafka transaction per commit;
 * the offset record of P (meta "offset/<topic>/<P>", the source offset the
 * writes were derived from) is one of those writes.
 *
 * Order and recovery rule: the transaction commits FIRST, the RocksDB batch
 * after it (the store's commit hook).  So the changelog is never behind the
 * local store; after a crash between the two it is one batch ahead, and the
 * local store is trusted for a partition only when its mark says it holds
 * the changelog's end (mtld_changelog_held); otherwise an instance restores
 * the partition it is assigned from the changelog (read_committed, from the
 * beginning to the end) after dropping what it held of it, and resumes at
 * the restored offset record.  A partition revoked and not assigned back is
 * dropped locally.
 *
 * The group topic (compacted, one partition) holds the group's definition
 * record: the feature definitions' hash, a hash of the model and joiner
 * configuration, and the source topic's partition count.  The first
 * instance writes it; an instance that disagrees says which and refuses,
 * before it writes anything to a shared topic.
 *
 * Thread: the daemon's main thread. */
#ifndef MTLD_CHANGELOG_H
#define MTLD_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/metricstext.h"
#include "common/status.h"
#include "daemon/config.h"
#include "features/store.h"

typedef struct mtld_changelog mtld_changelog_t;

/* The group's definition record. */
typedef struct {
  uint64_t def_hash;   /* mtld_feature_def_hash */
  uint64_t model_hash; /* mtld_changelog_model_hash */
  int32_t partitions;  /* source topic partitions */
} mtld_changelog_group_t;

#define MTLD_CHANGELOG_GROUP_LEN 21 /* version 1, def 8, model 8, partitions 4 */

/* Encodes / decodes the definition record (little-endian).  decode:
 * MTLD_OK or MTLD_ERR_CORRUPT (length or version).  Pure. */
void mtld_changelog_group_encode(const mtld_changelog_group_t *g,
                                 uint8_t out[MTLD_CHANGELOG_GROUP_LEN]);
mtld_status_t mtld_changelog_group_decode(mtld_changelog_group_t *g, const void *buf, size_t len);

/* A changelog record's key: cf (1 byte) then the store key; *out malloc'd
 * (caller frees), NULL on no memory.  decode: MTLD_OK with *cf and the
 * store key at key + 1 (*klen), or MTLD_ERR_CORRUPT (empty, unknown cf).
 * Pure. */
void *mtld_changelog_key_encode(mtld_cf_t cf, const void *key, size_t klen, size_t *outlen);
mtld_status_t mtld_changelog_key_decode(const void *rec_key, size_t len, mtld_cf_t *cf,
                                        const void **key, size_t *klen);

/* A hash of what every instance must agree on beyond the feature
 * definitions: the features, model, joiner and validation groups of the
 * effective configuration as mtld_config_print prints them, but for the
 * per-instance keys joiner.idle_after, idle_release and
 * warn_no_samples_after (wall-clock rules; trainer.* is not hashed either:
 * its paths are per instance). */
uint64_t mtld_changelog_model_hash(const mtld_config_t *cfg);

/* Creates the changelog's clients (a transactional producer whose
 * transactional.id is "mtld-changelog-<group.id>-<group.instance.id>", a
 * read_committed consumer for restores, no group) from cfg's kafka
 * bootstrap and security properties.  Nothing is written yet.  MTLD_OK or
 * MTLD_ERR_CONFIG with err set. */
mtld_status_t mtld_changelog_new(mtld_changelog_t **out, const mtld_config_t *cfg, char *err,
                                 size_t errlen);

/* Checks this instance against the group: the changelog and the group
 * topic must exist, the changelog with as many partitions as the source
 * topic; the group record (written by this instance when there is none
 * yet) must equal mine.  MTLD_OK; MTLD_ERR_CONFIG (a disagreement or a
 * missing topic: err names it; nothing was written) or MTLD_ERR_RETRY (the
 * brokers did not answer in time).  Then initialises the transactions. */
mtld_status_t mtld_changelog_join(mtld_changelog_t *cl, const mtld_changelog_group_t *mine,
                                  char *err, size_t errlen);

/* The store's commit hook (mtld_store_set_commit_hook, ctx = the
 * changelog): one transaction with the batch's tagged writes.  MTLD_OK when
 * it committed; MTLD_ERR_RETRY (aborted: the batch is kept and retried) or
 * MTLD_ERR_IO (fatal: fenced by a newer instance with the same id) with
 * err set. */
mtld_status_t mtld_changelog_commit_hook(void *ctx, mtld_store_t *st, char *err, size_t errlen);

/* What one restore did. */
typedef struct {
  uint64_t records; /* changelog records applied */
  uint64_t dropped; /* local keys dropped first */
  double seconds;   /* drop + restore */
} mtld_changelog_restore_t;

/* Drops what the store holds of source partition `partition` (id pid; the
 * staged batch must hold none of it) and restores it from the changelog's
 * partition, read_committed, from the beginning to its end, in direct
 * write batches.  MTLD_OK and *out; MTLD_ERR_IO / MTLD_ERR_RETRY (the
 * changelog unreadable within scaleout.restore_timeout) with err set. */
mtld_status_t mtld_changelog_restore(mtld_changelog_t *cl, mtld_store_t *st, const char *topic,
                                     int32_t partition, int32_t pid, mtld_changelog_restore_t *out,
                                     char *err, size_t errlen);

/* The restore shortcut.  Every transaction ends, in each changelog
 * partition it writes, with a mark record (meta "clmark/" partition id =
 * this process's instance hash, epoch and transaction number), and stages
 * the same mark in the RocksDB batch that follows it; a restore writes the
 * mark last; a drop deletes it first.  So a local mark equal to the
 * changelog partition's last committed record, with nothing after it but
 * its commit marker, means the local store holds exactly the changelog's
 * state of that partition.
 *
 * mtld_changelog_held: *held = 1 when that is so (counted in
 * mtld_scaleout_restores_skipped_total), else 0 (no local mark; the
 * changelog moved on: another instance wrote to it, or a crash came between
 * the transaction and the RocksDB batch).  why gets a sentence either way.
 * MTLD_OK, or MTLD_ERR_RETRY / MTLD_ERR_IO (the changelog's end unreadable)
 * with why set: restore then.  mtld_changelog_has_mark: 1 when the store
 * holds partition pid's mark.  Thread: the daemon's main thread. */
mtld_status_t mtld_changelog_held(mtld_changelog_t *cl, mtld_store_t *st, int32_t partition,
                                  int32_t pid, int *held, char *why, size_t whylen);
int mtld_changelog_has_mark(mtld_store_t *st, int32_t pid);

/* Drops a revoked partition's state locally (mtld_store_drop_partition),
 * its mark first. */
mtld_status_t mtld_changelog_drop(mtld_changelog_t *cl, mtld_store_t *st, const char *topic,
                                  int32_t partition, int32_t pid, char *err, size_t errlen);

/* User rows (daemon/userrows.h) travel in the same partitions under their
 * own key kind: a record key starting with this byte (never a column
 * family) is a user row, not a store write. */
#define MTLD_CHANGELOG_KIND_USERROW 0x55

/* Produces one record (key as given) to changelog partition `partition`
 * inside the open transaction; the partition then gets the transaction's
 * mark.  MTLD_OK or MTLD_ERR_RETRY / MTLD_ERR_IO (the transaction is then
 * aborted and the batch retried). */
typedef mtld_status_t (*mtld_changelog_emit_fn)(void *ectx, int32_t partition, const void *key,
                                                size_t klen, const void *val, size_t vlen);

/* Extra records carried with the partitions (the trainer's user rows).
 * publish: called in each commit transaction after the batch's writes,
 * before the marks; it emits what it has (an error aborts the
 * transaction).  restore_row: per record of the kind
 * MTLD_CHANGELOG_KIND_USERROW read while restoring `partition`, in offset
 * order.  restore_end: after that restore (ok = 1 when it read the
 * partition to its end).  All on the daemon's main thread. */
typedef struct {
  mtld_status_t (*publish)(void *ctx, mtld_changelog_emit_fn emit, void *ectx);
  void (*restore_row)(void *ctx, int32_t partition, const void *key, size_t klen, const void *val,
                      size_t vlen);
  void (*restore_end)(void *ctx, int32_t partition, int ok);
  void *ctx;
} mtld_changelog_rows_t;

/* Installs (rows copied) or, with NULL, removes the extra records' hooks. */
void mtld_changelog_set_rows(mtld_changelog_t *cl, const mtld_changelog_rows_t *rows);

/* Partitions held now (restored, not revoked), for metrics and STATUS. */
int mtld_changelog_owned(const mtld_changelog_t *cl);
void mtld_changelog_set_owned(mtld_changelog_t *cl, int owned);

/* Renders the families (Prometheus text): partitions owned, restores,
 * records restored, the last restore's rate and duration, restore lag
 * (records left in the restore running now, 0 between restores),
 * transactions committed and aborted. */
void mtld_changelog_render_metrics(const mtld_changelog_t *cl, mtld_metrics_buf_t *b);

/* A short text for STATUS ("4 partitions owned, last restore 1200 rec in
 * 0.1 s"). */
void mtld_changelog_status(const mtld_changelog_t *cl, char *buf, size_t len);

/* Aborts an open transaction, closes the clients.  NULL is a no-op. */
void mtld_changelog_free(mtld_changelog_t *cl);

#endif
