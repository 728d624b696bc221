/* snapshot.h - serving snapshots: the model's weights and description in one
 * versioned, checksummed file that serving systems load, and the C reader.
 *
 * File layout (schemas/snapshot.proto has the full description):
 *   "MTLDSNAP" | u32 format version | u32 header length H |
 *   SnapshotHeader (protobuf, H bytes) | zero pad to 64 |
 *   tensor payload (little-endian float32 parameters, int64 / uint16 row
 *   state; every tensor 64-byte aligned, each with its own XXH64) |
 *   u64 XXH64 of everything before it.
 * The header holds the format version, the model config, the feature
 * definitions and their schema hash, the creation time (wall clock,
 * informational), the watermark and source offsets (event time: what the
 * model has seen), the progressive-validation metrics per task and scenario
 * at capture, the normaliser statistics and the tensor table.  Optimiser
 * state is not included (it is in the checkpoint's trainer.bin).
 *
 * Directory (snapshot.dir):
 *   snapshot-<seq>.mtlds   seq = 1 + the highest present, 10 digits
 *   LATEST                 the newest file's name and "\n" (replaced atomically)
 *   .snapshot.tmp.XXXXXX   being written (deleted by the next save)
 * A save writes a temp file, fsyncs it, renames it to its final name,
 * fsyncs the directory, then replaces LATEST (LATEST.tmp, fsync, rename,
 * fsync the directory) and only then deletes the files beyond the newest
 * `keep`.  A reader that follows LATEST therefore always finds a complete
 * file (with keep >= 2 even when it opens the file a little later).
 *
 * Writing without stalling training: mtld_snapshot_capture() copies what the
 * snapshot needs out of the trainer (parameters, row state, normaliser,
 * metrics state: memcpy speed), on the thread that owns the trainer;
 * mtld_snapshot_save() does the slow part (checksums, metrics summaries,
 * I/O) on any thread.
 * One writer per directory.
 *
 * Reading (serving): mtld_snapshot_load() verifies magic, version, sizes,
 * every tensor checksum and the file checksum, then builds an mtld_model_t
 * (trainer/model.h) from the header's config and copies the weights, the row
 * state and the normaliser in; scoring is mtld_model_predict() or
 * mtld_snapshot_score().  Samples are built from features exactly as the
 * trainer's were with mtld_sample_from_features() (features/joiner.h).
 * The reader needs protobuf-c, xxhash, BLIS, trainer/ and the types of
 * features/ (definitions, offsets); libmtld-serving (include/mtld/serving.h)
 * wraps it for serving systems.
 *
 * Top-K: the snapshot carries the item set the store held at capture (ids
 * and categories); mtld_snapshot_top_k ranks it for one request. */
#ifndef MTLD_SNAPSHOT_H
#define MTLD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "features/features.h"
#include "features/store.h"
#include "trainer/model.h"
#include "trainer/pvmetrics.h"
#include "trainer/sample.h"
#include "common/status.h"
#include "trainer/train.h"

#define MTLD_SNAPSHOT_MAGIC "MTLDSNAP"
#define MTLD_SNAPSHOT_VERSION 1u
#define MTLD_SNAPSHOT_ALIGN 64
#define MTLD_SNAPSHOT_LATEST "LATEST"
#define MTLD_SNAPSHOT_MAX_BATCH 64 /* samples one mtld_snapshot_score call takes */
#define MTLD_SNAPSHOT_PATH_MAX 1024

/* What the trainer does not know: given by the daemon at capture. */
typedef struct {
  mtld_feature_def_t features; /* the definitions the samples were built with */
  uint64_t schema_hash;        /* mtld_feature_def_hash(&features) */
  int n_dense;                 /* mtld_features_dense_count(&features) */
  int64_t created_ms;          /* wall clock, informational */
  int64_t watermark_ms;        /* event time the released samples reached */
  int n_offsets;
  mtld_source_offset_t *offsets; /* capture: borrowed and copied; info: malloc'd */
  int join_mode;                 /* mtld_join_mode_t */
  int negatives_per_positive;    /* K (sampled negatives mode) */
  /* The item set (top-K candidates): ids and each one's category (0
   * unknown).  capture: borrowed and copied (item_ids NULL or n_items 0 =
   * none; item_cats NULL = all 0), sorted by id and deduplicated when they
   * are not already; info: ascending without duplicates, malloc'd, freed by
   * mtld_snapshot_info_free. */
  size_t n_items;
  uint64_t *item_ids;
  uint64_t *item_cats;
} mtld_snapshot_meta_t;

typedef struct {
  char task[MTLD_NAME_MAX];
  char scenario[MTLD_SCENARIO_MAX]; /* "all", a name, or "other" */
  mtld_pv_summary_t s;
} mtld_snapshot_metric_t;

/* What a reader learns besides the model.  Free with mtld_snapshot_info_free. */
typedef struct {
  uint32_t format_version;
  char path[MTLD_SNAPSHOT_PATH_MAX]; /* the file loaded ("" from memory) */
  char producer[64];
  mtld_model_config_t config; /* as the trainer had it */
  mtld_snapshot_meta_t meta;
  uint64_t samples_trained, batches;
  int n_metrics;
  mtld_snapshot_metric_t *metrics;
  size_t file_bytes;
} mtld_snapshot_info_t;

typedef struct mtld_snapshot mtld_snapshot_t;

/* ---- writer ---------------------------------------------------------------- */

/* Copies everything a snapshot of t needs (parameters, embedding row state,
 * normaliser, metrics state, stats, config) and meta (offsets copied) into a
 * new in-memory snapshot; t is not modified.  Cost: about one memcpy of the
 * parameters.  Thread: the trainer's owner.  MTLD_OK or MTLD_ERR_NOMEM. */
mtld_status_t mtld_snapshot_capture(mtld_snapshot_t **out, const mtld_trainer_t *t,
                                    const mtld_snapshot_meta_t *meta, char *err, size_t errlen);

/* The same, recycling a previous capture: *snap is a snapshot from an
 * earlier capture (saved and no longer needed) or NULL; its big buffers are
 * reused when the model has the same size, so the copy does not pay page
 * faults again (the stall of a periodic snapshot).  On return *snap is the
 * new capture, or NULL on error (the old one is freed either way). */
mtld_status_t mtld_snapshot_recapture(mtld_snapshot_t **snap, const mtld_trainer_t *t,
                                      const mtld_snapshot_meta_t *meta, char *err, size_t errlen);

/* Writes snap into dir (created when absent) as the next snapshot-<seq>.mtlds,
 * points LATEST to it and deletes the files beyond the newest keep (>= 1).
 * path_out (may be NULL) gets the file's path.  Thread: any (one writer per
 * directory); snap is not modified.  MTLD_OK, MTLD_ERR_IO, MTLD_ERR_NOMEM
 * with err set; on failure the directory is as before (LATEST unchanged). */
mtld_status_t mtld_snapshot_save(const mtld_snapshot_t *snap, const char *dir, int keep,
                                 char *path_out, size_t pathlen, char *err, size_t errlen);

/* The file image of snap (what save writes), malloc'd: *buf (caller frees).
 * For tests, fuzz corpora and sending elsewhere. */
mtld_status_t mtld_snapshot_encode(const mtld_snapshot_t *snap, void **buf, size_t *len, char *err,
                                   size_t errlen);

void mtld_snapshot_free(mtld_snapshot_t *snap);

/* capture + save + free, on the caller's thread. */
mtld_status_t mtld_snapshot_write(const mtld_trainer_t *t, const mtld_snapshot_meta_t *meta,
                                  const char *dir, int keep, char *path_out, size_t pathlen,
                                  char *err, size_t errlen);

/* ---- reader ---------------------------------------------------------------- */

/* The file a path names: a snapshot file itself, or in a directory the file
 * LATEST names.  MTLD_ERR_NOTFOUND (no such path, no LATEST, or LATEST names
 * a missing file), MTLD_ERR_CORRUPT (LATEST holds no snapshot name). */
mtld_status_t mtld_snapshot_resolve(const char *path, char *file, size_t filelen, char *err,
                                    size_t errlen);

/* Loads a snapshot (file, or directory -> LATEST; retried when the file
 * named by LATEST was replaced meanwhile) into a new model (*model, free with
 * mtld_model_destroy) ready to score up to MTLD_SNAPSHOT_MAX_BATCH samples
 * per forward, and *info (may be NULL; free with mtld_snapshot_info_free).
 * Returns MTLD_OK; MTLD_ERR_NOTFOUND; MTLD_ERR_IO; MTLD_ERR_NOMEM; or
 * MTLD_ERR_CORRUPT with err naming the problem (bad magic, format version,
 * truncation, the tensor whose checksum fails, file checksum, header,
 * inconsistent config or tensor table).  Nothing is returned on error.
 * Thread: any; the model then belongs to the caller's thread. */
mtld_status_t mtld_snapshot_load(const char *path, mtld_model_t **model, mtld_snapshot_info_t *info,
                                 char *err, size_t errlen);

/* The same from a file image in memory (buf is not kept). */
mtld_status_t mtld_snapshot_load_mem(const void *buf, size_t len, mtld_model_t **model,
                                     mtld_snapshot_info_t *info, char *err, size_t errlen);

void mtld_snapshot_info_free(mtld_snapshot_info_t *info);

/* Scores n samples (1..MTLD_SNAPSHOT_MAX_BATCH) with a loaded model:
 * preds[n * n_tasks] (probability; pCTCVR for ESMM; value for regression)
 * and cond[n * n_tasks] (may be NULL: pCVR for ESMM, else = preds).  For
 * n == 1 this is mtld_model_predict, bit for bit what the trainer's
 * mtld_trainer_predict gives.  The embedding lookups use each sample's
 * time_ms as "now" (rows unused for expire_ms before it read as zero).
 * Returns MTLD_ERR_INVALID for a bad n. */
mtld_status_t mtld_snapshot_score(mtld_model_t *m, const mtld_sample_t *s, int n, float *preds,
                                  float *cond);

/* Fills candidate sample s for item (category cat) from a request: called
 * by mtld_snapshot_top_k for every candidate, s already a copy of the
 * request's template with the item and category fields set. */
typedef void (*mtld_snapshot_fill_fn)(void *ctx, mtld_sample_t *s, uint64_t item, uint64_t cat);

/* One ranked item. */
typedef struct {
  uint64_t item;
  uint64_t category;
  float score; /* the ranking task's prediction (pCTCVR for ESMM) */
} mtld_snapshot_ranked_t;

/* Top-K: scores every item of items[n] (categories cats[n], may be NULL =
 * 0) for the request tmpl (user, scenario, time, dense, sequence: the
 * template of every candidate, its item and category fields replaced by the
 * candidate's), in batches of the model's batch size through the forward
 * pass (BLIS), and writes the k best by task `task`'s prediction, best
 * first, ties by smaller item id, into out[k]; *n_out = min(k, n).  fill
 * (may be NULL) completes each candidate (item features from a store).
 * Scores are mtld_snapshot_score's for the same batches of samples (scored
 * alone a sample may differ in the last float bits: BLIS picks kernels by
 * the batch's shape).
 * MTLD_ERR_INVALID for a bad task or k < 1; MTLD_ERR_NOMEM.  Thread: the
 * model's owner. */
mtld_status_t mtld_snapshot_top_k(mtld_model_t *m, const mtld_sample_t *tmpl, const uint64_t *items,
                                  const uint64_t *cats, size_t n, int task, int k,
                                  mtld_snapshot_fill_fn fill, void *ctx,
                                  mtld_snapshot_ranked_t *out, int *n_out);

/* Adds a declared attributes' inputs to a sample built from a serving
 * request (ids and the feature store's dense features only), as the joiner
 * lays them out: categorical attribute j of m->features (in declaration
 * order) into fields[MTLD_FIELD_EXTRA + j], numeric attribute j into
 * dense[m->n_dense + j] (dense zero-padded up to m->n_dense).  Values come
 * from ev's attributes (any owner; ev NULL = none), a missing one (or one of
 * the other kind) is the declared default; item_attrs 0 ignores ev's item
 * attributes (top-K: each candidate is another item; they take the
 * defaults).  Nothing changes without declared attributes.  Pure. */
void mtld_snapshot_request_attrs(const mtld_snapshot_meta_t *m, const mtld_event_t *ev,
                                 int item_attrs, mtld_sample_t *s);

#endif
