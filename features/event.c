/* event.c - id hashing, event type names, attribute helpers. */
#include "features/event.h"

#include <strings.h>
#include <xxhash.h>

uint64_t mtld_hash_id(const void *buf, size_t len) {
  uint64_t h = XXH64(buf, len, 0);
  return h ? h : 1;
}

static const char *const type_names[MTLD_N_EVENT_TYPES] = {"IMPRESSION", "CLICK", "ADD_TO_CART",
                                                           "PURCHASE", "REVIEW"};

const char *mtld_event_type_name(int type) {
  if (type < 1 || type > MTLD_N_EVENT_TYPES) return NULL;
  return type_names[type - 1];
}

int mtld_event_type_parse(const char *name) {
  for (int i = 0; i < MTLD_N_EVENT_TYPES; i++)
    if (strcasecmp(name, type_names[i]) == 0) return i + 1;
  return 0;
}

int mtld_event_attr_find(const mtld_event_t *ev, uint64_t name_id) {
  for (int i = 0; i < ev->n_attrs; i++)
    if (ev->attrs[i].name_id == name_id) return i;
  return -1;
}

/* The slot for name_id (an existing one or a new one), or -1 when full. */
static int attr_slot(mtld_event_t *ev, uint64_t name_id) {
  int i = mtld_event_attr_find(ev, name_id);
  if (i >= 0) return i;
  if (ev->n_attrs >= MTLD_ATTR_MAX) return -1;
  i = ev->n_attrs++;
  ev->attrs[i].name_id = name_id;
  return i;
}

int mtld_event_attr_set_str(mtld_event_t *ev, uint64_t name_id, uint64_t value_id) {
  int i = attr_slot(ev, name_id);
  if (i < 0) return -1;
  ev->attrs[i].v.value_id = value_id;
  ev->attrs_num &= (uint16_t) ~(1u << i);
  return 0;
}

int mtld_event_attr_set_num(mtld_event_t *ev, uint64_t name_id, double num) {
  int i = attr_slot(ev, name_id);
  if (i < 0) return -1;
  ev->attrs[i].v.num = num;
  ev->attrs_num |= (uint16_t)(1u << i);
  return 0;
}
