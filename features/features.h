/* features.h - feature definitions and the pure arithmetic on per-user and
 * per-item features: event-time decay, applying an event, the compact binary
 * encoding the store writes, and the dense vector the model reads.
 *
 * Nothing here touches RocksDB (see store.h) or the wall clock: every time is
 * an event time in ms.  Decayed counts are kept as of f->last_time_ms, the
 * newest event time applied:
 *     value(T) = sum_i 2^(-(T - t_i) / half_life)
 * An in-order event (t >= last) decays every value to t and adds 1; an older
 * event adds its already-decayed contribution 2^(-(last - t) / half_life).
 * Item features get events from many partitions, so they are kept as sums
 * and max-by-key values: the result does not depend on arrival order (up to
 * floating-point rounding of the decay products).
 *
 * Thread: all functions are pure (any thread, no shared state). */
#ifndef MTLD_FEATURES_H
#define MTLD_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"
#include "common/status.h"

#define MTLD_MAX_HALF_LIVES 4
#define MTLD_MAX_SEQ 200
#define MTLD_MAX_USER_SCENARIOS 8

/* Which item features a sample captures at impression time (features.item_view).
 * Events are keyed by user, so one item's events arrive on many partitions:
 *   PARTITION: the item's features from THIS partition's events only (the
 *              store keeps one such view per (partition, item), next to the
 *              global one).  Each partition is consumed in order, so the value
 *              does not depend on how far other partitions have been read: the
 *              same stream gives the same samples however partitions
 *              interleave, and no event later in event time leaks in.  Counts
 *              are the partition's share of the item's traffic; rates are
 *              unbiased.  The default.
 *   GLOBAL:    the item's features over every partition consumed so far (the
 *              first behaviour): depends on the interleaving.
 * Positives and negatives of joiner.mode = sampled_negatives use neither:
 * their item features come from the joiner's release view (joiner.h). */
typedef enum { MTLD_ITEM_VIEW_PARTITION = 0, MTLD_ITEM_VIEW_GLOBAL = 1 } mtld_item_view_t;

/* A declared named attribute (config features.attributes): events carry
 * it (features/event.h); user and item attributes are kept with the
 * entity's features (the newest value by (time_ms, event_id)), context
 * attributes are read from the sample's own event.  Categorical values
 * become an embedding with `rows` rows, numeric ones a dense input. */
typedef enum { MTLD_ATTR_USER = 0, MTLD_ATTR_ITEM = 1, MTLD_ATTR_CONTEXT = 2 } mtld_attr_owner_t;
typedef enum { MTLD_ATTR_CATEGORICAL = 0, MTLD_ATTR_NUMERIC = 1 } mtld_attr_kind_t;

typedef struct {
  char name[MTLD_ATTR_NAME_LEN + 1];
  uint64_t name_id;                          /* mtld_hash_id(name) */
  int owner;                                 /* mtld_attr_owner_t */
  int kind;                                  /* mtld_attr_kind_t */
  uint32_t rows;                             /* categorical: embedding rows (> 0); numeric: 0 */
  char default_str[MTLD_ATTR_VALUE_LEN + 1]; /* categorical default when absent */
  uint64_t default_id; /* mtld_hash_id(default_str), 0 (the absent id) for "" */
  double default_num;  /* numeric default when absent (finite) */
} mtld_attr_def_t;

/* Fills name, name_id, owner, kind, rows and the default (value: a string for
 * categorical, ignored for numeric; num for numeric).  Returns 0, or -1 when
 * a name or default is too long. */
int mtld_attr_def_set(mtld_attr_def_t *a, const char *name, int owner, int kind, uint32_t rows,
                      const char *default_str, double default_num);

/* Feature definitions (from the config's `features` group).  Their hash is
 * stored in meta; a DB built with other definitions is refused. */
typedef struct {
  int n_half_lives;                        /* 1..MTLD_MAX_HALF_LIVES */
  double half_life_s[MTLD_MAX_HALF_LIVES]; /* default 3600, 86400, 604800 */
  int seq_len;                             /* last N items, default 50 */
  double prior_strength;                   /* smoothing pseudo-count, default 10 */
  double ctr_prior, cvr_prior, cart_prior; /* prior means, default .05 .02 .05 */
  int item_view;                           /* mtld_item_view_t, default PARTITION */
  int n_attrs;                             /* declared attributes, 0..MTLD_ATTR_MAX */
  mtld_attr_def_t attrs[MTLD_ATTR_MAX];
} mtld_feature_def_t;

/* Fills the defaults above (unused half-life slots are 0). */
void mtld_feature_def_default(mtld_feature_def_t *def);

/* Checks ranges: n_half_lives 1..MTLD_MAX_HALF_LIVES, half-lives finite and
 * > 0, seq_len 0..MTLD_MAX_SEQ, prior_strength finite and >= 0, priors in
 * [0,1], item_view a mtld_item_view_t; attributes: distinct non-empty names
 * with name_id = mtld_hash_id(name), known owner and kind, rows > 0 for
 * categorical ones, default_id matching default_str, a finite numeric
 * default, and room for the numeric ones among the dense inputs
 * (mtld_features_dense_count + numeric attributes <= MTLD_MAX_DENSE).  Returns MTLD_OK or
 * MTLD_ERR_INVALID with a message naming the key. */
mtld_status_t mtld_feature_def_check(const mtld_feature_def_t *def, char *err, size_t errlen);

/* Deterministic 64-bit hash of the definitions (stored in meta): XXH64 of
 * their encoding (below), so it covers every field that is used (half-life
 * slots beyond n_half_lives are not). */
uint64_t mtld_feature_def_hash(const mtld_feature_def_t *def);

/* Encoding of the definitions (meta key "feature_def"): returns the length,
 * or 0 when cap is too small.  MTLD_FEATURE_DEF_ENC_MAX is always enough.
 * The first byte is MTLD_FEATURE_DEF_ENC_VERSION (2: item_view added; a
 * version-1 encoding no longer decodes).  Declared attributes follow as a
 * count and, each, name, owner, kind, rows, default string and number;
 * without attributes nothing follows, so the encoding and the hash of
 * attribute-free definitions are what they were before attributes. */
#define MTLD_FEATURE_DEF_ENC_VERSION 2
#define MTLD_FEATURE_DEF_ENC_MAX                                                                   \
  (2 + 8 * MTLD_MAX_HALF_LIVES + 4 + 4 * 8 + 1 + 1 +                                               \
   MTLD_ATTR_MAX * (1 + MTLD_ATTR_NAME_LEN + 1 + 1 + 4 + 2 + MTLD_ATTR_VALUE_LEN + 8))
size_t mtld_feature_def_encode(const mtld_feature_def_t *def, void *buf, size_t cap);

/* Decodes and checks definitions; MTLD_ERR_CORRUPT when malformed. */
mtld_status_t mtld_feature_def_decode(mtld_feature_def_t *def, const void *buf, size_t len);

typedef struct {
  uint64_t item_id;
  uint64_t category_id;
  int64_t time_ms;
  int32_t type;
  uint64_t event_id; /* orders equal times: (time_ms, event_id) descending */
} mtld_seq_item_t;

typedef struct {
  uint64_t scenario_id;
  double decayed[MTLD_MAX_HALF_LIVES]; /* events in that scenario */
} mtld_scenario_activity_t;

/* The newest value of each declared attribute of one owner, indexed like
 * mtld_feature_def_t.attrs (slots of other owners stay unset).  The newest
 * is the value of the event with the greatest (time_ms, event_id) carrying
 * the attribute, so the result does not depend on arrival order. */
typedef struct {
  uint32_t set; /* bit k: attrs[k] has a value */
  struct {
    uint64_t bits; /* categorical: the value id; numeric: the double's bits */
    int64_t time_ms;
    uint64_t event_id;
  } v[MTLD_ATTR_MAX];
} mtld_attr_values_t;

typedef struct {
  int64_t last_time_ms; /* newest event time applied; 0 = never seen */
  uint64_t n_events;
  double decayed[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES]; /* [type-1][hl] */
  uint32_t n_reviews;
  double rating_sum;    /* mean rating given = rating_sum / n_reviews */
  double spend;         /* sum of price * max(quantity,1) over purchases */
  uint32_t n_scenarios; /* most active scenarios, at most MTLD_MAX_USER_SCENARIOS */
  mtld_scenario_activity_t scenarios[MTLD_MAX_USER_SCENARIOS];
  uint32_t seq_len; /* newest first */
  mtld_seq_item_t seq[MTLD_MAX_SEQ];
  mtld_attr_values_t attrs; /* the user attributes (owner USER) */
} mtld_user_features_t;

typedef struct {
  int64_t last_time_ms;
  uint64_t n_events;
  double decayed[MTLD_N_EVENT_TYPES][MTLD_MAX_HALF_LIVES];
  uint32_t n_reviews;
  double rating_sum;
  double last_price; /* price of the newest priced event (ties: larger event id) */
  int64_t last_price_time_ms;
  uint64_t last_price_event_id;
  uint64_t category_id;
  mtld_attr_values_t attrs; /* the item attributes (owner ITEM) */
} mtld_item_features_t;

/* Smoothed rate (num + strength * prior) / (den + strength).  When both den
 * and strength are 0 it returns prior. */
double mtld_features_rate(double num, double den, double prior, double strength);

/* Applies one validated event (type 1..5) to a user's / an item's features,
 * in place (decay to the event time, then add it).  A zeroed struct is a
 * never-seen entity.
 * User: counts per type and half-life; REVIEW: n_reviews, rating_sum;
 * PURCHASE: spend += price * max(quantity,1); per-scenario activity when
 * scenario_id != 0 (at most MTLD_MAX_USER_SCENARIOS; when full a new scenario
 * replaces the one with the smallest count at the longest half-life, ties:
 * smaller scenario id); the sequence keeps the newest def->seq_len CLICK,
 * ADD_TO_CART, PURCHASE and REVIEW events by (time_ms, event_id) descending.
 * Item: counts, reviews, category (when the event has one), last_price (the
 * priced event with the greatest (time_ms, event_id)).
 * Both: the declared attributes of their owner the event carries with the
 * declared kind (others are ignored), newest by (time_ms, event_id). */
void mtld_features_user_apply(const mtld_feature_def_t *def, mtld_user_features_t *f,
                              const mtld_event_t *ev);
void mtld_features_item_apply(const mtld_feature_def_t *def, mtld_item_features_t *f,
                              const mtld_event_t *ev);

/* Compact versioned encodings (the store's values): a version byte, the
 * number of half-lives, then fixed-width little-endian fields; only the used
 * half-lives, f->n_scenarios scenarios and f->seq_len sequence entries are
 * written; when def declares attributes of the entity's owner, their set
 * mask and the set values follow (nothing otherwise).  Byte-deterministic.  encode returns the
 * length, or 0 when cap is too small (the _ENC_MAX sizes are always enough).  decode fills *f
 * entirely (unused parts zeroed) and returns MTLD_OK, or MTLD_ERR_CORRUPT on
 * a wrong version, half-life count, length or out-of-range field. */
#define MTLD_FEATURES_USER_ENC_MAX                                                                 \
  (2 + 8 + 8 + 8 * MTLD_N_EVENT_TYPES * MTLD_MAX_HALF_LIVES + 4 + 8 + 8 + 4 +                      \
   MTLD_MAX_USER_SCENARIOS * (8 + 8 * MTLD_MAX_HALF_LIVES) + 4 + MTLD_MAX_SEQ * 33 +               \
   MTLD_ATTR_VALUES_ENC_MAX)
#define MTLD_FEATURES_ITEM_ENC_MAX                                                                 \
  (2 + 8 + 8 + 8 * MTLD_N_EVENT_TYPES * MTLD_MAX_HALF_LIVES + 4 + 8 + 8 + 8 + 8 + 8 +              \
   MTLD_ATTR_VALUES_ENC_MAX)
#define MTLD_ATTR_VALUES_ENC_MAX (4 + 24 * MTLD_ATTR_MAX)
size_t mtld_features_user_encode(const mtld_feature_def_t *def, const mtld_user_features_t *f,
                                 void *buf, size_t cap);
mtld_status_t mtld_features_user_decode(const mtld_feature_def_t *def, mtld_user_features_t *f,
                                        const void *buf, size_t len);
size_t mtld_features_item_encode(const mtld_feature_def_t *def, const mtld_item_features_t *f,
                                 void *buf, size_t cap);
mtld_status_t mtld_features_item_decode(const mtld_feature_def_t *def, mtld_item_features_t *f,
                                        const void *buf, size_t len);

/* Number of dense features for these definitions: 10 * n_half_lives + 15
 * (45 for 3 half-lives, at most 55). */
int mtld_features_dense_count(const mtld_feature_def_t *def);

/* Dense features as of now_ms (counts decayed to now_ms; inputs unchanged;
 * a now_ms before an entity's last event does not decay it).  u or it NULL
 * means never seen.  Writes, in this order ("longest" = the longest half-life):
 *   for each half-life h: log1p(user count[type][h]) for the 5 types, then
 *                         log1p(item count[type][h]) for the 5 types
 *   user CTR (clicks/impressions), CVR (purchases/clicks), cart rate
 *     (carts/clicks), smoothed with the priors, at the longest half-life
 *   item CTR, CVR, cart rate, likewise
 *   user mean rating given (0 without reviews), log1p(user n_reviews)
 *   item mean rating received (0 without reviews), log1p(item n_reviews)
 *   log1p(user spend)
 *   log1p(seconds since the user's last event)  (0 if never seen)
 *   log1p(seconds since the item's last event)  (0 if never seen)
 *   log1p(item last_price)
 *   user's activity share in scenario_id: its count / the user's total count
 *     at the longest half-life (0 if none)
 * Returns the number written, or -1 when cap is too small. */
int mtld_features_dense(const mtld_feature_def_t *def, const mtld_user_features_t *u,
                        const mtld_item_features_t *it, uint64_t scenario_id, int64_t now_ms,
                        float *out, int cap);

/* The positions in mtld_features_dense's vector that depend on the item
 * alone (its counts, rates, reviews, time since its last event, price):
 * 5 * n_half_lives + 7 of them, ascending, written to idx (at most
 * MTLD_FEATURES_ITEM_DENSE_MAX).  Returns their number.  Sampled negatives
 * swap exactly these (and the item and category ids) into a sample. */
#define MTLD_FEATURES_ITEM_DENSE_MAX (5 * MTLD_MAX_HALF_LIVES + 7)
int mtld_features_dense_item_slots(const mtld_feature_def_t *def, int *idx);

/* Attribute inputs, in declaration order: the categorical attributes' value
 * ids (cat[n_cat], 0 = absent: the default "" declared) and the numeric
 * attributes' values (num[n_num]).  User and item attributes come from u and
 * it (NULL = never seen), context ones from ev (NULL = none); a missing value
 * is the declared default.  n_cat + n_num = def->n_attrs.  Pure. */
void mtld_features_attr_inputs(const mtld_feature_def_t *def, const mtld_user_features_t *u,
                               const mtld_item_features_t *it, const mtld_event_t *ev,
                               uint64_t *cat, int *n_cat, float *num, int *n_num);

/* The number of categorical and numeric declared attributes. */
void mtld_features_attr_counts(const mtld_feature_def_t *def, int *n_cat, int *n_num);

#endif
