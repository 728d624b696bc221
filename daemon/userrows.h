/* userrows.h - scale-out: the trainer's user embedding rows travel with
 * their partition through the state changelog (README "Scale-out").
 *
 * Model sync (daemon/modelsync.h) shares the dense parameters and every
 * table but the user one; a user's row is trained only by the instance that
 * owns the user's partition, so it moves with the partition:
 *   - the trainer's thread notes, per sample it accepted, the user and the
 *     sample's source partition (mtld_userrows_note, a trainfeed observer);
 *   - each changelog transaction (one per store commit, main thread)
 *     carries, for every user noted since the last one whose partition this
 *     instance still holds, a record to changelog partition P: key
 *     MTLD_CHANGELOG_KIND_USERROW + the user's hashed id (8 bytes, LE),
 *     value = the row (mtld_userrows_encode: version, weights, optimiser
 *     state, last use, admission count).  Compaction keeps the newest row
 *     per user.  The rows are read under the trainer lock;
 *   - restoring a partition applies its user-row records, in offset order
 *     (so the newest wins), to the trainer's user table under the trainer
 *     lock, before any record of the partition is consumed.
 * Rows are approximate model state, not exactly-once state: a row is
 * published as it stands at the commit (samples still buffered in the
 * trainer's minibatch are noted again for the next one), and a kill -9
 * loses what was trained since the last transaction.  Rows of a revoked
 * partition stay in the local table (they expire by event time).
 *
 * Thread: mtld_userrows_note on the trainer's thread under the trainer
 * lock; everything else on the daemon's main thread. */
#ifndef MTLD_USERROWS_H
#define MTLD_USERROWS_H

#include <stddef.h>
#include <stdint.h>

#include "common/metricstext.h"
#include "common/status.h"
#include "daemon/changelog.h"
#include "daemon/trainfeed.h"
#include "trainer/embed.h"
#include "trainer/sample.h"
#include "trainer/train.h"

#define MTLD_USERROWS_VERSION 1
#define MTLD_USERROWS_KEY_LEN 9 /* kind, user id (LE 8) */

/* One user's row, decoded.  m and v are used only when adam is set. */
typedef struct {
  uint64_t user;
  int live; /* 0: only count is meaningful */
  int adam; /* m and v follow w */
  int dim;  /* <= MTLD_USERROWS_DIM_MAX */
  int64_t last_used;
  uint32_t count;         /* admission count */
  float acc;              /* Adagrad accumulator */
  const float *w, *m, *v; /* decode: views of dim floats into a private copy */
  float buf[3 * 256];
} mtld_userrow_t;

#define MTLD_USERROWS_DIM_MAX 256

/* Value bytes of a row of dimension dim (adam: with moments). */
size_t mtld_userrows_value_len(int dim, int adam);

/* key: MTLD_CHANGELOG_KIND_USERROW then user (LE).  encode writes
 * mtld_userrows_value_len bytes into out (version 1, flags (bit 0 live,
 * bit 1 adam), dim LE16, last_used LE64, count LE32, acc, w, [m, v]: f32
 * LE).  decode: MTLD_OK, or MTLD_ERR_CORRUPT (length, version, key kind,
 * dim) / MTLD_ERR_SCHEMA (another version).  Pure. */
void mtld_userrows_key(uint8_t out[MTLD_USERROWS_KEY_LEN], uint64_t user);
void mtld_userrows_encode(const mtld_userrow_t *r, uint8_t *out);
mtld_status_t mtld_userrows_decode(mtld_userrow_t *r, const void *key, size_t klen, const void *val,
                                   size_t vlen);

typedef struct mtld_userrows mtld_userrows_t;

/* Whether this instance holds source partition `partition` now. */
typedef int (*mtld_userrows_owns_fn)(void *ctx, int32_t partition);

/* Creates the rows' carrier for trainer t (its thread feed f; both
 * borrowed, they must outlive it), owns telling which partitions are held.
 * Installs itself as f's observer and cl's rows hooks.  MTLD_OK or
 * MTLD_ERR_NOMEM / MTLD_ERR_CONFIG (dimension too large) with err set. */
mtld_status_t mtld_userrows_new(mtld_userrows_t **out, mtld_trainer_t *t, mtld_trainfeed_t *f,
                                mtld_changelog_t *cl, mtld_userrows_owns_fn owns, void *owns_ctx,
                                char *err, size_t errlen);

/* Removes the hooks (observer, changelog rows) and frees.  NULL: no-op. */
void mtld_userrows_free(mtld_userrows_t *u, mtld_trainfeed_t *f, mtld_changelog_t *cl);

/* The trainfeed observer (ctx = the carrier): notes s's user and partition. */
void mtld_userrows_note(void *ctx, const mtld_sample_t *s);

/* Counters: mtld_scaleout_user_rows_published_total,
 * mtld_scaleout_user_rows_restored_total.  NULL: nothing. */
void mtld_userrows_render_metrics(const mtld_userrows_t *u, mtld_metrics_buf_t *b);

#endif
