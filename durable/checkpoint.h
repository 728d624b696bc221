/* checkpoint.h - the checkpoint directory: one consistent cut of the daemon's
 * state (feature store, joiner state, model with optimiser, offsets) under
 * one id, written so that a crash at any moment leaves either the previous
 * complete checkpoint or the new one, never a half one.
 *
 * Layout under the checkpoint root (checkpoint.dir):
 *   checkpoint-<id>/          id: decimal, zero-padded to 10 digits
 *     store/                  the feature store's copy (mtld_store_checkpoint):
 *                             features, pending joins, offsets
 *     trainer.bin             mtld_trainer_save (magic, version, XXH64 trailer)
 *     meta                    text: id, created, watermark, offsets, XXH64
 *     COMPLETE                written last, after every file and directory
 *                             above was fsynced
 *   checkpoint-<id>.tmp/      being written (or left by a crash: ignored, and
 *                             deleted by the next commit)
 * meta is line oriented:
 *   mtld-checkpoint 1
 *   id <id>
 *   created_ms <wall clock ms, informational>
 *   watermark_ms <event time of the cut>
 *   samples <samples the trainer has observed>
 *   offset <topic> <partition> <next_offset> <max_time_ms>     (one per partition)
 *   xxh64 <16 hex digits: XXH64 seed 0 of every byte before this line>
 * The offsets repeat what the store's meta CF holds at the cut, so tools can
 * read them without opening RocksDB.
 *
 * Writing (the daemon's main thread, at a batch boundary):
 *   1. mtld_store_commit() so nothing is staged; the released samples of that
 *      batch are already in the trainer (do NOT flush the trainer: the saved
 *      state includes its partial minibatch, so training resumes with the
 *      same batch boundaries as a run without the restart);
 *   2. mtld_checkpoint_begin(root, id)  -> the temp directory T;
 *   3. mtld_store_checkpoint(store, T/store) and mtld_trainer_save_mem()
 *      (a copy: the only part that holds the trainer);
 *   4. (may move to another thread) mtld_checkpoint_write_file(T,
 *      "trainer.bin", buf), mtld_checkpoint_write_meta(T, meta),
 *      mtld_checkpoint_commit(root, id, keep).
 * Ids grow: mtld_checkpoint_next_id().  One writer per root.
 *
 * Recovery rule (daemon start):
 *   a. mtld_checkpoint_latest(root): the newest checkpoint that is COMPLETE
 *      and validates (meta checksum, trainer.bin checksum, a store in store/
 *      as mtld_store_dir_present sees it); a
 *      broken newer one is reported through the skip callback and passed over.
 *   b. None found: start from scratch (empty store, new trainer).  To make
 *      (c) always possible, a new daemon writes checkpoint 1 (the empty cut)
 *      before it consumes anything; a store that exists without any
 *      checkpoint was written by a run whose model is lost: refuse to start
 *      (or delete the store and replay from the earliest offsets).
 *   c. Found: load the trainer from it, always (the model lives only there).
 *      Restore its store (mtld_checkpoint_restore) unless the live store
 *      exists and its committed offsets equal the checkpoint's meta offsets
 *      exactly.  After a clean stop the daemon wrote a checkpoint at the end,
 *      so live == newest checkpoint: nothing is restored or replayed.  After
 *      a crash the live store is ahead of the model (offsets differ): it is
 *      replaced by the checkpoint's and Kafka is replayed from the
 *      checkpoint's offsets, so features, joiner and model end as if no
 *      crash had happened.
 *
 * Thread: any, but one writer per root; nothing here is shared state. */
#ifndef MTLD_CHECKPOINT_H
#define MTLD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "features/store.h"
#include "trainer/train.h"

#define MTLD_CHECKPOINT_META_VERSION 1

typedef struct {
  uint64_t id;
  int64_t created_ms;   /* wall clock, informational */
  int64_t watermark_ms; /* event time of the cut */
  uint64_t samples;     /* samples the trainer had observed */
  int n_offsets;
  mtld_source_offset_t *offsets; /* write: borrowed; read: malloc'd, see _meta_free */
} mtld_checkpoint_meta_t;

/* Creates (after removing any leftover of the same name) the temp directory
 * <root>/checkpoint-<id>.tmp, creating root when absent, and puts its path
 * in tmp_path.  MTLD_ERR_INVALID when checkpoint-<id> already exists (ids
 * must grow), MTLD_ERR_IO otherwise on failure; err set. */
mtld_status_t mtld_checkpoint_begin(const char *root, uint64_t id, char *tmp_path, size_t pathlen,
                                    char *err, size_t errlen);

/* 1 + the highest id under root (complete, temp or broken), or 1. */
uint64_t mtld_checkpoint_next_id(const char *root);

/* Writes dir/name from buf (temp file, fsync, rename, fsync dir).  For
 * trainer.bin from mtld_trainer_save_mem.  MTLD_OK or MTLD_ERR_IO. */
mtld_status_t mtld_checkpoint_write_file(const char *dir, const char *name, const void *buf,
                                         size_t len, char *err, size_t errlen);

/* Writes dir/meta in the format above. */
mtld_status_t mtld_checkpoint_write_meta(const char *dir, const mtld_checkpoint_meta_t *meta,
                                         char *err, size_t errlen);

/* Reads and verifies <ckpt_dir>/meta into *out (free with _meta_free).
 * MTLD_ERR_NOTFOUND (no meta), MTLD_ERR_CORRUPT (format or checksum),
 * MTLD_ERR_NOMEM, MTLD_ERR_IO. */
mtld_status_t mtld_checkpoint_read_meta(const char *ckpt_dir, mtld_checkpoint_meta_t *out,
                                        char *err, size_t errlen);
void mtld_checkpoint_meta_free(mtld_checkpoint_meta_t *m);

/* Seals checkpoint-<id>.tmp: checks it holds a store in store/
 * (mtld_store_dir_present), trainer.bin and meta, fsyncs every file and directory in it, writes
 * COMPLETE (fsynced), renames it to checkpoint-<id>, fsyncs root; then deletes every complete
 * checkpoint older than the newest `keep` (keep >= 1) and every .tmp
 * directory of a lower id (a higher one is a cut being written now).  path_out (may be NULL) gets
 * the final path.  MTLD_OK, or MTLD_ERR_INVALID (missing parts) / MTLD_ERR_IO with err set; a
 * failure before the rename leaves the previous checkpoints untouched; a failure to prune is not an
 * error (the next commit retries). */
mtld_status_t mtld_checkpoint_commit(const char *root, uint64_t id, int keep, char *path_out,
                                     size_t pathlen, char *err, size_t errlen);

/* Called for each checkpoint passed over, with the reason. */
typedef void (*mtld_checkpoint_skip_fn)(void *ctx, const char *path, const char *reason);

/* Finds the newest usable checkpoint: COMPLETE present, meta valid with the
 * directory's id, trainer.bin's magic and XXH64 trailer valid, a store in
 * store/ (mtld_store_dir_present).  Broken ones are reported to skip (may be NULL) and passed over.
 * MTLD_OK with *id and path; MTLD_ERR_NOTFOUND when none (or no root);
 * MTLD_ERR_IO when root cannot be listed. */
mtld_status_t mtld_checkpoint_latest(const char *root, uint64_t *id, char *path, size_t pathlen,
                                     mtld_checkpoint_skip_fn skip, void *ctx, char *err,
                                     size_t errlen);

/* Loads the checkpoint at ckpt_dir: its trainer (*trainer, caller destroys)
 * and, when meta_out is non-NULL, its meta.  Then, when store_path is
 * non-NULL, replaces the live store directory at store_path with a copy of
 * ckpt_dir/store (mtld_store_restore_dir: copied aside, then renamed into
 * place; a failure leaves the live store as it was).  The store must be
 * closed.  Nothing is changed when the trainer or meta fail to load.
 * MTLD_OK, or an error of loading (MTLD_ERR_CORRUPT...) or MTLD_ERR_IO. */
mtld_status_t mtld_checkpoint_restore(const char *ckpt_dir, const char *store_path,
                                      mtld_trainer_t **trainer, mtld_checkpoint_meta_t *meta_out,
                                      char *err, size_t errlen);

#endif
