/* dedup.c - the "seen" column family: event ids applied (see dedup.h). */
#include "features/dedup.h"

#include <stdlib.h>

#include "common/bytes.h"

struct mtld_dedup {
  mtld_store_t *store; /* borrowed */
  int64_t expired;     /* event time below which the keys were deleted */
};

mtld_status_t mtld_dedup_create(mtld_dedup_t **out, mtld_store_t *store) {
  mtld_dedup_t *d = calloc(1, sizeof(*d));
  if (!d) return MTLD_ERR_NOMEM;
  d->store = store;
  d->expired = INT64_MIN;
  *out = d;
  return MTLD_OK;
}

void mtld_dedup_destroy(mtld_dedup_t *d) {
  free(d);
}

void mtld_dedup_key(uint8_t k[MTLD_DEDUP_KEY_LEN], int64_t time_ms, uint64_t event_id) {
  mtld_put_be64(k, (uint64_t)time_ms ^ (UINT64_C(1) << 63));
  mtld_put_be64(k + 8, event_id);
}

mtld_status_t mtld_dedup_seen(mtld_dedup_t *d, const mtld_event_t *ev) {
  uint8_t k[MTLD_DEDUP_KEY_LEN];
  void *v = NULL;
  size_t vlen;
  mtld_dedup_key(k, ev->time_ms, ev->event_id);
  mtld_status_t st = mtld_store_get(d->store, MTLD_CF_SEEN, k, sizeof k, &v, &vlen);
  free(v);
  return st;
}

mtld_status_t mtld_dedup_mark(mtld_dedup_t *d, const mtld_event_t *ev) {
  uint8_t k[MTLD_DEDUP_KEY_LEN];
  mtld_dedup_key(k, ev->time_ms, ev->event_id);
  return mtld_store_put(d->store, MTLD_CF_SEEN, k, sizeof k, "", 0);
}

void mtld_dedup_expire(mtld_dedup_t *d, int64_t watermark_ms, int64_t max_lateness_ms) {
  int64_t keep = 2 * max_lateness_ms + 3600000;
  if (watermark_ms == INT64_MIN || watermark_ms < INT64_MIN + keep) return;
  int64_t horizon = watermark_ms - keep;
  if (d->expired != INT64_MIN && horizon < d->expired + MTLD_DEDUP_EXPIRE_STEP_MS) return;
  uint8_t k[MTLD_DEDUP_KEY_LEN];
  mtld_dedup_key(k, horizon, 0);
  if (mtld_store_delete_below(d->store, MTLD_CF_SEEN, k, sizeof k) == MTLD_OK) d->expired = horizon;
}

int64_t mtld_dedup_expired_below(const mtld_dedup_t *d) {
  return d->expired;
}
