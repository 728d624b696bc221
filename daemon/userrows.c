/* userrows.c - user rows carried with their partition (userrows.h). */
#include "daemon/userrows.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "daemon/log.h"
#include "features/partition.h"

#define HEAD_LEN 20 /* version, flags, dim 2, last_used 8, count 4, acc 4 */

/* The users noted since the last publish: an open-addressing set of user id
 * -> the sample's partition id (features/partition.h; id 0 = empty slot; a
 * sample without user is not noted). */
typedef struct {
  uint64_t user;
  int32_t partition;
} entry_t;

struct mtld_userrows {
  mtld_trainer_t *trainer; /* borrowed */
  mtld_trainfeed_t *feed;  /* borrowed: its lock guards the set and the ring */
  mtld_userrows_owns_fn owns;
  void *owns_ctx;
  entry_t *set;
  size_t cap, n; /* cap a power of two */
  /* the last users noted, newest last: those of the samples still in the
   * trainer's minibatch are noted again after a publish */
  entry_t *ring;
  size_t ring_cap, ring_pos;
  int dim, adam;
  /* main thread */
  uint64_t published, restored, restoring;
  uint64_t skipped; /* records not applied (bad or another shape) */
};

size_t mtld_userrows_value_len(int dim, int adam) {
  return HEAD_LEN + sizeof(float) * (size_t)dim * (adam ? 3 : 1);
}

void mtld_userrows_key(uint8_t out[MTLD_USERROWS_KEY_LEN], uint64_t user) {
  out[0] = MTLD_CHANGELOG_KIND_USERROW;
  mtld_put_le64(out + 1, user);
}

void mtld_userrows_encode(const mtld_userrow_t *r, uint8_t *out) {
  out[0] = MTLD_USERROWS_VERSION;
  out[1] = (uint8_t)((r->live ? 1 : 0) | (r->adam ? 2 : 0));
  out[2] = (uint8_t)(r->dim & 0xff);
  out[3] = (uint8_t)((r->dim >> 8) & 0xff);
  mtld_put_le64(out + 4, (uint64_t)r->last_used);
  mtld_put_le32(out + 12, r->count);
  mtld_put_f32(out + 16, r->acc);
  uint8_t *p = out + HEAD_LEN;
  for (int j = 0; j < r->dim; j++, p += 4) mtld_put_f32(p, r->w[j]);
  if (r->adam) {
    for (int j = 0; j < r->dim; j++, p += 4) mtld_put_f32(p, r->m[j]);
    for (int j = 0; j < r->dim; j++, p += 4) mtld_put_f32(p, r->v[j]);
  }
}

mtld_status_t mtld_userrows_decode(mtld_userrow_t *r, const void *key, size_t klen, const void *val,
                                   size_t vlen) {
  const uint8_t *k = key, *b = val;
  if (!k || klen != MTLD_USERROWS_KEY_LEN || k[0] != MTLD_CHANGELOG_KIND_USERROW || !b ||
      vlen < HEAD_LEN)
    return MTLD_ERR_CORRUPT;
  if (b[0] != MTLD_USERROWS_VERSION) return MTLD_ERR_SCHEMA;
  r->user = mtld_get_le64(k + 1);
  r->live = b[1] & 1;
  r->adam = (b[1] & 2) != 0;
  r->dim = b[2] | (b[3] << 8);
  if (r->dim < 1 || r->dim > MTLD_USERROWS_DIM_MAX ||
      vlen != mtld_userrows_value_len(r->dim, r->adam))
    return MTLD_ERR_CORRUPT;
  r->last_used = (int64_t)mtld_get_le64(b + 4);
  r->count = mtld_get_le32(b + 12);
  r->acc = mtld_get_f32(b + 16);
  const uint8_t *p = b + HEAD_LEN;
  int n = r->dim * (r->adam ? 3 : 1);
  for (int j = 0; j < n; j++, p += 4) r->buf[j] = mtld_get_f32(p);
  r->w = r->buf;
  r->m = r->adam ? r->buf + r->dim : NULL;
  r->v = r->adam ? r->buf + 2 * r->dim : NULL;
  return MTLD_OK;
}

/* ---- the set of users noted (under the trainer lock) -------------------- */

static int set_grow(mtld_userrows_t *u) {
  size_t cap = u->cap ? u->cap * 2 : 1024;
  entry_t *s = calloc(cap, sizeof *s);
  if (!s) return -1;
  for (size_t i = 0; i < u->cap; i++) {
    if (!u->set[i].user) continue;
    size_t j = (size_t)mtld_mix64(u->set[i].user) & (cap - 1);
    while (s[j].user) j = (j + 1) & (cap - 1);
    s[j] = u->set[i];
  }
  free(u->set);
  u->set = s;
  u->cap = cap;
  return 0;
}

static void set_add(mtld_userrows_t *u, uint64_t user, int32_t partition) {
  if (!user) return;
  if ((u->n + 1) * 2 > u->cap && set_grow(u) != 0) {
    mtld_log_rl(MTLD_LOG_ERR, "userrows-nomem", "scale-out: no memory to note a user row");
    return;
  }
  size_t j = (size_t)mtld_mix64(user) & (u->cap - 1);
  while (u->set[j].user && u->set[j].user != user) j = (j + 1) & (u->cap - 1);
  if (!u->set[j].user) u->n++;
  u->set[j] = (entry_t){.user = user, .partition = partition};
}

void mtld_userrows_note(void *ctx, const mtld_sample_t *s) {
  mtld_userrows_t *u = ctx;
  uint64_t user = s->n_fields > MTLD_FIELD_USER ? s->fields[MTLD_FIELD_USER] : 0;
  if (!user) return; /* item samples have no user */
  set_add(u, user, s->partition);
  u->ring[u->ring_pos++ % u->ring_cap] = (entry_t){.user = user, .partition = s->partition};
}

/* ---- publish (commit transaction) and restore ----------------------------- */

typedef struct {
  entry_t e;
  uint8_t *val;
} out_t;

static mtld_status_t publish_cb(void *ctx, mtld_changelog_emit_fn emit, void *ectx) {
  mtld_userrows_t *u = ctx;
  mtld_embed_t *tab = mtld_model_embed(mtld_trainer_model(u->trainer), MTLD_FIELD_USER);
  size_t vlen = mtld_userrows_value_len(u->dim, u->adam);
  mtld_trainfeed_lock(u->feed);
  if (u->n == 0) {
    mtld_trainfeed_unlock(u->feed);
    return MTLD_OK;
  }
  /* copied out under the lock, produced after it */
  out_t *o = malloc(u->n * sizeof *o);
  uint8_t *vals = malloc(u->n * vlen);
  if (!o || !vals) {
    mtld_trainfeed_unlock(u->feed);
    free(o);
    free(vals);
    return MTLD_ERR_NOMEM;
  }
  size_t n = 0;
  mtld_userrow_t r = {.dim = u->dim, .adam = u->adam};
  float *w = r.buf, *m = r.buf + u->dim, *v = r.buf + 2 * u->dim;
  r.w = w;
  r.m = m;
  r.v = v;
  for (size_t i = 0; i < u->cap; i++) {
    entry_t e = u->set[i];
    /* scale-out carries the first topic; a revoked partition is not ours
     * to write any more */
    if (!e.user || mtld_partition_id_topic(e.partition) != 0 ||
        !u->owns(u->owns_ctx, mtld_partition_id_number(e.partition)))
      continue;
    r.user = e.user;
    r.live = mtld_embed_row_export(tab, e.user, w, m, v, &r.acc, &r.last_used, &r.count);
    o[n].e = e;
    o[n].val = vals + n * vlen;
    mtld_userrows_encode(&r, o[n].val);
    n++;
  }
  memset(u->set, 0, u->cap * sizeof *u->set);
  u->n = 0;
  /* the samples still in the trainer's minibatch have not changed their
   * rows yet: their users go into the next publish too */
  size_t pending = (size_t)mtld_trainer_pending(u->trainer);
  if (pending > u->ring_cap) pending = u->ring_cap;
  if (pending > u->ring_pos) pending = u->ring_pos;
  for (size_t i = 0; i < pending; i++) {
    entry_t e = u->ring[(u->ring_pos - 1 - i) % u->ring_cap];
    set_add(u, e.user, e.partition);
  }
  mtld_trainfeed_unlock(u->feed);
  mtld_status_t rc = MTLD_OK;
  size_t i = 0;
  for (; i < n && rc == MTLD_OK; i++) {
    uint8_t k[MTLD_USERROWS_KEY_LEN];
    mtld_userrows_key(k, o[i].e.user);
    rc = emit(ectx, mtld_partition_id_number(o[i].e.partition), k, sizeof k, o[i].val, vlen);
  }
  if (rc == MTLD_OK) {
    u->published += n;
  } else {
    /* the transaction aborts and the batch is retried: the rows with it */
    mtld_trainfeed_lock(u->feed);
    for (size_t j = 0; j < n; j++) set_add(u, o[j].e.user, o[j].e.partition);
    mtld_trainfeed_unlock(u->feed);
  }
  free(o);
  free(vals);
  return rc;
}

static void restore_row_cb(void *ctx, int32_t partition, const void *key, size_t klen,
                           const void *val, size_t vlen) {
  mtld_userrows_t *u = ctx;
  mtld_userrow_t r;
  (void)partition;
  if (mtld_userrows_decode(&r, key, klen, val, vlen) != MTLD_OK || r.dim != u->dim ||
      r.adam != u->adam) {
    u->skipped++;
    return;
  }
  mtld_trainfeed_lock(u->feed);
  mtld_embed_t *tab = mtld_model_embed(mtld_trainer_model(u->trainer), MTLD_FIELD_USER);
  mtld_embed_row_import(tab, r.user, r.live, r.w, r.m, r.v, r.acc, r.last_used, r.count);
  mtld_trainfeed_unlock(u->feed);
  u->restoring++;
}

static void restore_end_cb(void *ctx, int32_t partition, int ok) {
  mtld_userrows_t *u = ctx;
  u->restored += u->restoring;
  mtld_log(MTLD_LOG_NOTICE,
           "scale-out: partition %d: %" PRIu64 " user rows restored into the trainer%s%s",
           (int)partition, u->restoring, ok ? "" : " (the restore failed part way)",
           u->skipped ? " (some records of another shape skipped)" : "");
  u->restoring = 0;
  u->skipped = 0;
}

mtld_status_t mtld_userrows_new(mtld_userrows_t **out, mtld_trainer_t *t, mtld_trainfeed_t *f,
                                mtld_changelog_t *cl, mtld_userrows_owns_fn owns, void *owns_ctx,
                                char *err, size_t errlen) {
  *out = NULL;
  const mtld_model_config_t *mc = mtld_model_config(mtld_trainer_model(t));
  mtld_embed_t *tab = mtld_model_embed(mtld_trainer_model(t), MTLD_FIELD_USER);
  if (!tab || tab->dim > MTLD_USERROWS_DIM_MAX) {
    snprintf(err, errlen, "scale-out: user rows of dimension %d: at most %d are carried",
             tab ? tab->dim : 0, MTLD_USERROWS_DIM_MAX);
    return MTLD_ERR_CONFIG;
  }
  mtld_userrows_t *u = calloc(1, sizeof *u);
  if (u) {
    u->ring_cap = mc->batch_size > 0 ? (size_t)mc->batch_size : 1;
    u->ring = calloc(u->ring_cap, sizeof *u->ring);
  }
  if (!u || !u->ring || set_grow(u) != 0) {
    if (u) free(u->ring);
    free(u);
    snprintf(err, errlen, "scale-out: no memory for the user rows");
    return MTLD_ERR_NOMEM;
  }
  u->trainer = t;
  u->feed = f;
  u->owns = owns;
  u->owns_ctx = owns_ctx;
  u->dim = tab->dim;
  u->adam = tab->m != NULL;
  mtld_trainfeed_set_observer(f, mtld_userrows_note, u);
  mtld_changelog_rows_t rows = {.publish = publish_cb,
                                .restore_row = restore_row_cb,
                                .restore_end = restore_end_cb,
                                .ctx = u};
  mtld_changelog_set_rows(cl, &rows);
  *out = u;
  return MTLD_OK;
}

void mtld_userrows_free(mtld_userrows_t *u, mtld_trainfeed_t *f, mtld_changelog_t *cl) {
  if (!u) return;
  mtld_trainfeed_set_observer(f, NULL, NULL);
  if (cl) mtld_changelog_set_rows(cl, NULL);
  free(u->set);
  free(u->ring);
  free(u);
}

void mtld_userrows_render_metrics(const mtld_userrows_t *u, mtld_metrics_buf_t *b) {
  if (!u) return;
  mtld_metrics_family(b, "mtld_scaleout_user_rows_published_total", "counter",
                      "User embedding rows written to the changelog with their partition.");
  mtld_metrics_sample(b, "mtld_scaleout_user_rows_published_total", NULL, (double)u->published);
  mtld_metrics_family(b, "mtld_scaleout_user_rows_restored_total", "counter",
                      "User embedding rows restored from the changelog into the trainer.");
  mtld_metrics_sample(b, "mtld_scaleout_user_rows_restored_total", NULL, (double)u->restored);
}
