/* event.c - id hashing and event type names. */
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
