/* event.h - the decoded, validated in-memory event every layer works on.
 *
 * Ids are 64-bit.  Producers may send strings instead; mtld_hash_id() maps
 * them deterministically (XXH64 with seed 0 over the UTF-8 bytes) so that
 * serving systems can hash the same way.  Scenario is kept both as its short
 * name (for metrics) and as the hash of that name (for features/embeddings).
 * Named attributes are kept hashed too (name and string value through
 * mtld_hash_id), so an event stays small and fixed-size. */
#ifndef MTLD_EVENT_H
#define MTLD_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/limits.h" /* MTLD_SCENARIO_MAX */

typedef enum {
  MTLD_EV_IMPRESSION = 1,
  MTLD_EV_CLICK = 2,
  MTLD_EV_ADD_TO_CART = 3,
  MTLD_EV_PURCHASE = 4,
  MTLD_EV_REVIEW = 5
} mtld_event_type_t;

#define MTLD_N_EVENT_TYPES 5 /* index = type - 1 */

/* One named attribute: the hash of its name and either the hash of its
 * string (categorical) value or a number; which one is in the event's
 * attrs_num bit mask. */
typedef struct {
  uint64_t name_id; /* mtld_hash_id(name), never 0 */
  union {
    uint64_t value_id; /* categorical: mtld_hash_id(value), never 0 */
    double num;        /* numeric: finite once validated */
  } v;
} mtld_attr_t;

typedef struct {
  uint64_t event_id;
  uint64_t user_id;
  uint64_t item_id;
  uint64_t category_id; /* 0 = unknown */
  uint64_t request_id;  /* 0 = none */
  uint64_t scenario_id; /* mtld_hash_id(scenario) ; 0 when scenario is "" */
  int64_t time_ms;      /* event time */
  int32_t type;         /* mtld_event_type_t */
  int32_t position;
  int32_t quantity;
  float rating; /* 0 = none; 1..5 for REVIEW */
  double price;
  char scenario[MTLD_SCENARIO_MAX];
  uint16_t n_attrs;   /* 0..MTLD_ATTR_MAX, distinct names, in the record's order */
  uint16_t attrs_num; /* bit i set: attrs[i] is numeric */
  mtld_attr_t attrs[MTLD_ATTR_MAX];
} mtld_event_t;

_Static_assert(MTLD_ATTR_MAX <= 16, "attrs_num is a 16-bit mask");

/* Whether attrs[i] of ev is numeric. */
static inline int mtld_event_attr_is_num(const mtld_event_t *ev, int i) {
  return (ev->attrs_num >> i) & 1;
}

/* Index of the attribute named name_id in ev, or -1 when absent. */
int mtld_event_attr_find(const mtld_event_t *ev, uint64_t name_id);

/* Appends (or replaces, when the name is there already) a categorical
 * attribute (value_id != 0) or a numeric one.  Returns 0, or -1 when the
 * event already has MTLD_ATTR_MAX other attributes.  For tools and tests
 * that build events; the decoder enforces the limits on records itself. */
int mtld_event_attr_set_str(mtld_event_t *ev, uint64_t name_id, uint64_t value_id);
int mtld_event_attr_set_num(mtld_event_t *ev, uint64_t name_id, double num);

/* Deterministic 64-bit hash of an id given as bytes: XXH64(buf, len, 0).
 * Never returns 0 (0 means "absent"): a zero hash maps to 1.  Any thread. */
uint64_t mtld_hash_id(const void *buf, size_t len);

/* Name of an event type ("IMPRESSION", ...), or NULL when unknown. */
const char *mtld_event_type_name(int type);

/* Parses a type name (case-insensitive; also "pv"->CLICK, "cart"->ADD_TO_CART,
 * "buy"->PURCHASE are NOT accepted here: converters map those).  Returns the
 * type, or 0 when unknown. */
int mtld_event_type_parse(const char *name);

#endif
