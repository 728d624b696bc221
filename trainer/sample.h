/* sample.h - one labelled training sample, the unit the joiner hands to the
 * trainer.  Plain data, no pointers, fixed size: the joiner stores it (in its
 * own encoding) in RocksDB while labels are pending.
 *
 * Features are those as of the creating event (point in time): the joiner
 * fills them from the store's "before" read, never after. */
#ifndef MTLD_SAMPLE_H
#define MTLD_SAMPLE_H

#include <stdint.h>

#include "common/limits.h" /* MTLD_SCENARIO_MAX, MTLD_ATTR_MAX */

/* Categorical fields: the fixed ones, then up to MTLD_ATTR_MAX categorical
 * attributes (6 + 16). */
#define MTLD_MAX_FIELDS 22
#define MTLD_MAX_DENSE 64      /* dense features */
#define MTLD_MAX_SAMPLE_SEQ 50 /* recent items carried for attention */

/* Fixed categorical field slots; slots >= MTLD_FIELD_EXTRA are the declared
 * categorical attributes (features.attributes), in declaration order. */
enum {
  MTLD_FIELD_USER = 0,
  MTLD_FIELD_ITEM = 1,
  MTLD_FIELD_CATEGORY = 2,
  MTLD_FIELD_SCENARIO = 3,
  MTLD_FIELD_POSITION = 4,
  MTLD_FIELD_HOUR = 5, /* hour of day of the event time: mtld_sample_hour_id */
  MTLD_FIELD_EXTRA = 6
};
_Static_assert(MTLD_FIELD_EXTRA + MTLD_ATTR_MAX <= MTLD_MAX_FIELDS,
               "room for a field per categorical attribute");

/* The hour-of-day id of an event time: 1 + the UTC hour (1..24; never the
 * absent id 0). */
static inline uint64_t mtld_sample_hour_id(int64_t time_ms) {
  int64_t in_day = time_ms % 86400000;
  if (in_day < 0) in_day += 86400000; /* floor, for times before 1970 */
  return 1 + (uint64_t)(in_day / 3600000);
}

/* Labels a task may train on (config: task.label = "click" | "cart" |
 * "purchase" | "rating" | "review" | "demand"). */
typedef enum {
  MTLD_LABEL_CLICK = 0,
  MTLD_LABEL_CART = 1,
  MTLD_LABEL_PURCHASE = 2, /* click AND purchase (the ESMM CTCVR label) */
  MTLD_LABEL_RATING = 3,
  MTLD_LABEL_REVIEW = 4, /* click AND purchase AND a review within the joiner's review window */
  MTLD_LABEL_DEMAND = 5, /* item samples: orders (purchased quantity) of the item in the next
                            horizon (features/demand.h) */
  MTLD_N_LABELS = 6
} mtld_label_t;

typedef enum {
  MTLD_SAMPLE_IMPRESSION = 1, /* click / cart / purchase labels valid */
  MTLD_SAMPLE_REVIEW = 2,     /* rating label valid */
  MTLD_SAMPLE_ITEM = 3        /* item-level demand sample: no user, demand label valid */
} mtld_sample_kind_t;

/* The naive forecasts an item sample carries (naive[]), scored next to the
 * model as the demand task's baselines. */
enum {
  MTLD_NAIVE_LAST = 0, /* orders in the window before the boundary ("same as the last hour") */
  MTLD_NAIVE_MA = 1,   /* mean orders of the last demand_windows windows (moving average) */
  MTLD_N_NAIVE = 2
};

typedef struct {
  uint64_t sample_id; /* event id of the impression (or review) */
  int64_t time_ms;    /* its event time */
  int32_t partition;  /* where it came from: release order is */
  int64_t offset;     /* (time_ms, partition, offset) */
  int32_t kind;       /* mtld_sample_kind_t */
  float weight;       /* importance weight; 1 unless negatives were sampled */

  int n_fields;
  uint64_t fields[MTLD_MAX_FIELDS]; /* hashed ids, slots as above; 0 = absent */
  uint64_t scenario_id;
  char scenario[MTLD_SCENARIO_MAX];

  int n_dense;
  float dense[MTLD_MAX_DENSE]; /* already log-scaled; the model normalises online */

  int seq_len; /* user's recent items before this event, newest first */
  uint64_t seq_items[MTLD_MAX_SAMPLE_SEQ];
  uint64_t seq_cats[MTLD_MAX_SAMPLE_SEQ];

  float labels[MTLD_N_LABELS]; /* 0/1 for click/cart/purchase; 1..5 for rating; orders */
  uint8_t label_mask;          /* bit l set: labels[l] is valid for this sample */
  float naive[MTLD_N_NAIVE];   /* MTLD_SAMPLE_ITEM: the naive forecasts above; else 0 */
} mtld_sample_t;

#endif
