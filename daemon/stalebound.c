/* stalebound.c - which peers the model sync waits for (see stalebound.h). */
#include "daemon/stalebound.h"

#include <inttypes.h>
#include <string.h>

#include "daemon/log.h"

void mtld_stalebound_init(mtld_stalebound_t *b, int max_stale, int64_t timeout_ms) {
  memset(b, 0, sizeof(*b));
  b->max_stale = max_stale;
  b->timeout_ms = timeout_ms;
}

void mtld_stalebound_seen(mtld_stalebound_t *b, uint64_t sender, int is_delta, uint32_t round,
                          int idle, uint32_t own_round, int64_t now_ms) {
  mtld_stalebound_peer_t *p = NULL, *free_slot = NULL;
  for (int i = 0; i < MTLD_STALEBOUND_PEERS; i++) {
    if (b->peers[i].used && b->peers[i].id == sender) p = &b->peers[i];
    if (!b->peers[i].used && !free_slot) free_slot = &b->peers[i];
  }
  if (!p) {
    if (!free_slot) return;
    p = free_slot;
    memset(p, 0, sizeof(*p));
    p->used = 1;
    p->id = sender;
    p->idle = 1; /* until its first DELTA with a round */
  }
  p->last_ms = now_ms;
  if (!is_delta || round == 0) return;
  if (!p->tracked || (p->idle && !idle)) {
    p->off = (int64_t)own_round - (int64_t)round + (p->tracked ? 0 : 1);
    p->tracked = 1;
  }
  p->round = round;
  p->idle = idle;
}

int mtld_stalebound_behind(mtld_stalebound_t *b, uint32_t own_round, int64_t now_ms) {
  int hold = 0;
  for (int i = 0; i < MTLD_STALEBOUND_PEERS; i++) {
    mtld_stalebound_peer_t *p = &b->peers[i];
    if (!p->used) continue;
    if (now_ms - p->last_ms > b->timeout_ms) {
      p->used = 0;
      b->dropped++;
      mtld_log(MTLD_LOG_NOTICE,
               "scaleout: instance %016" PRIx64 " silent for %.1f s: no longer waited for", p->id,
               (double)(now_ms - p->last_ms) / 1000.0);
      continue;
    }
    if (b->max_stale >= 0 && p->tracked && !p->idle &&
        (int64_t)p->round + p->off < (int64_t)own_round - (int64_t)b->max_stale)
      hold = 1;
  }
  return hold;
}
