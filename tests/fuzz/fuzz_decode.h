/* fuzz_decode.h - the body shared by the decoder fuzz targets.
 *
 * Any input must decode or be refused with a message, never crash.  A
 * decoded event must validate without UB, and survive a re-encode in both
 * formats unchanged (string ids and attributes come back as their hashes). */
#ifndef MTLD_FUZZ_DECODE_H
#define MTLD_FUZZ_DECODE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "daemon/decode.h"

static int same_attrs(const mtld_event_t *a, const mtld_event_t *b) {
  if (a->n_attrs != b->n_attrs || a->attrs_num != b->attrs_num) return 0;
  for (int i = 0; i < a->n_attrs; i++) {
    const mtld_attr_t *x = &a->attrs[i], *y = &b->attrs[i];
    if (x->name_id != y->name_id) return 0;
    if (mtld_event_attr_is_num(a, i) ? !(isnan(x->v.num) ? isnan(y->v.num) : x->v.num == y->v.num)
                                     : x->v.value_id != y->v.value_id)
      return 0;
  }
  return 1;
}

static int same(const mtld_event_t *a, const mtld_event_t *b) {
  if (!same_attrs(a, b)) return 0;
  int price = isnan(a->price) ? isnan(b->price) : a->price == b->price;
  int rating = isnan(a->rating) ? isnan(b->rating) : a->rating == b->rating;
  return price && rating && a->event_id == b->event_id && a->user_id == b->user_id &&
         a->item_id == b->item_id && a->category_id == b->category_id &&
         a->request_id == b->request_id && a->scenario_id == b->scenario_id &&
         a->time_ms == b->time_ms && a->type == b->type && a->position == b->position &&
         a->quantity == b->quantity && strcmp(a->scenario, b->scenario) == 0;
}

/* The fuzz step for one format: decode with fmt (and with AUTO, which must
 * not crash either), validate, re-encode in both formats, decode again. */
static int fuzz_decode_one(const uint8_t *data, size_t size, mtld_format_t fmt) {
  mtld_validate_limits_t lim;
  mtld_validate_limits_default(&lim);
  mtld_event_t ev, again;
  char err[256] = "";
  mtld_reject_t r = mtld_decode_event(data, size, fmt, lim.max_record_bytes, &ev, err, sizeof err);
  mtld_decode_event(data, size, MTLD_FMT_AUTO, lim.max_record_bytes, &again, err, sizeof err);
  if (r != MTLD_REJECT_NONE) {
    if (!err[0] || r >= MTLD_REJECT_COUNT) __builtin_trap();
    return 0;
  }
  mtld_validate_event(&ev, &lim, INT64_MIN, INT64_MIN, err, sizeof err);
  int64_t t = ev.time_ms;
  mtld_validate_event(&ev, &lim, t, t > INT64_MIN ? t - 1 : t, err, sizeof err);
  mtld_validate_event(&ev, &lim, INT64_MAX, INT64_MIN + 1, err, sizeof err);

  uint8_t pb[4096];
  size_t n = mtld_encode_event_pb(&ev, pb, sizeof pb);
  if (n > 0) { /* an all-default event encodes to nothing */
    if (mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, sizeof pb, &again, err, sizeof err) ||
        !same(&ev, &again))
      __builtin_trap();
  }
  char js[8192];
  n = mtld_encode_event_json(&ev, js, sizeof js);
  if (n == 0 || mtld_decode_event(js, n, MTLD_FMT_AUTO, sizeof js, &again, err, sizeof err) ||
      !same(&ev, &again))
    __builtin_trap();
  return 0;
}

#endif
