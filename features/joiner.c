/* joiner.c - online label joiner: pending samples in the store's "pending"
 * column family, small in-memory indexes over them (an entry slab, three
 * id -> chain maps, a release heap), per-scenario donor rings and the
 * release view of item features for sampled negatives.  See joiner.h for the
 * rules. */
#include "features/joiner.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/hash.h"

/* signed -> unsigned preserving order */
static uint64_t ord64(int64_t v) {
  return (uint64_t)v ^ (UINT64_C(1) << 63);
}
static int64_t unord64(uint64_t v) {
  return (int64_t)(v ^ (UINT64_C(1) << 63));
}
static uint32_t ord32(int32_t v) {
  return (uint32_t)v ^ UINT32_C(0x80000000);
}
static int32_t unord32(uint32_t v) {
  return (int32_t)(v ^ UINT32_C(0x80000000));
}

static int64_t sat_add(int64_t a, int64_t b) { /* b >= 0 */
  return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* ---- pending keys ---- */

#define KEY_TAG 'S'
#define EV_TAG 'E' /* item events of the release view (sampled negatives) */
#define KEY_LEN 25 /* tag, time 8, partition 4, offset 8, sub 4 */

static void make_key_tag(uint8_t *k, uint8_t tag, int64_t time_ms, int32_t partition,
                         int64_t offset, uint32_t sub) {
  k[0] = tag;
  mtld_put_be64(k + 1, ord64(time_ms));
  mtld_put_be32(k + 9, ord32(partition));
  mtld_put_be64(k + 13, ord64(offset));
  mtld_put_be32(k + 21, sub);
}

int32_t mtld_joiner_key_partition(void *ctx, const void *key, size_t klen) {
  const uint8_t *k = key;
  (void)ctx;
  if (klen != KEY_LEN || (k[0] != KEY_TAG && k[0] != EV_TAG)) return -1;
  return unord32(mtld_get_be32(k + 9));
}

static void make_key(uint8_t *k, int64_t time_ms, int32_t partition, int64_t offset, uint32_t sub) {
  make_key_tag(k, KEY_TAG, time_ms, partition, offset, sub);
}

/* ---- sample encoding (the pending value) ----
 * Fixed header, then variable parts.  Label updates patch the header in
 * place: click time at ENC_CLICK, labels at ENC_LABELS. */
#define ENC_VERSION 1
#define ENC_CLICK 4
#define ENC_LABELS 12
#define ENC_FIXED 76
#define ENC_MAX                                                                                    \
  (ENC_FIXED + 1 + MTLD_SCENARIO_MAX + 1 + 8 * MTLD_MAX_FIELDS + 1 + 4 * MTLD_MAX_DENSE + 1 +      \
   16 * MTLD_MAX_SAMPLE_SEQ)

/* b[3]: ENC_FLAG_DRAW marks a positive of the sampled-negatives mode that
 * draws its negatives when released (0 in records of earlier versions, whose
 * negatives were staged with them). */
#define ENC_FLAG_DRAW 1
/* b[3]: ENC_FLAG_PURCHASED (only with a review window): the record ends
 * with the time of the purchase that labelled it (8 bytes after the
 * sequence); ENC_FLAG_REVIEWED: a review of the same user and item came
 * within the review window after it (the review label; never set in
 * records of earlier versions, which had no review label). */
#define ENC_FLAG_PURCHASED 2
#define ENC_FLAG_REVIEWED 4
/* labels stored in the fixed header (the review label is the flag above) */
#define ENC_N_LABELS 4

static size_t enc_sample(uint8_t *b, const mtld_sample_t *s, uint64_t request_id,
                         int64_t click_time, uint8_t flags) {
  b[0] = ENC_VERSION;
  b[1] = (uint8_t)s->kind;
  b[2] = s->label_mask;
  b[3] = flags;
  mtld_put_le64(b + ENC_CLICK, (uint64_t)click_time);
  for (int l = 0; l < ENC_N_LABELS; l++) mtld_put_f32(b + ENC_LABELS + 4 * l, s->labels[l]);
  mtld_put_f32(b + 28, s->weight);
  mtld_put_le64(b + 32, s->sample_id);
  mtld_put_le64(b + 40, request_id);
  mtld_put_le64(b + 48, (uint64_t)s->time_ms);
  mtld_put_le32(b + 56, (uint32_t)s->partition);
  mtld_put_le64(b + 60, (uint64_t)s->offset);
  mtld_put_le64(b + 68, s->scenario_id);
  size_t n = ENC_FIXED;
  size_t sl = strnlen(s->scenario, MTLD_SCENARIO_MAX - 1);
  b[n++] = (uint8_t)sl;
  memcpy(b + n, s->scenario, sl);
  n += sl;
  b[n++] = (uint8_t)s->n_fields;
  for (int i = 0; i < s->n_fields; i++, n += 8) mtld_put_le64(b + n, s->fields[i]);
  b[n++] = (uint8_t)s->n_dense;
  for (int i = 0; i < s->n_dense; i++, n += 4) mtld_put_f32(b + n, s->dense[i]);
  b[n++] = (uint8_t)s->seq_len;
  for (int i = 0; i < s->seq_len; i++, n += 16) {
    mtld_put_le64(b + n, s->seq_items[i]);
    mtld_put_le64(b + n + 8, s->seq_cats[i]);
  }
  return n;
}

static mtld_status_t dec_sample(mtld_sample_t *s, uint64_t *request_id, int64_t *click_time,
                                int64_t *purchase_time, uint8_t *flags, const uint8_t *b,
                                size_t len) {
  memset(s, 0, sizeof *s);
  *purchase_time = INT64_MIN;
  if (len < ENC_FIXED + 4 || b[0] != ENC_VERSION) return MTLD_ERR_CORRUPT;
  *flags = b[3];
  s->kind = b[1];
  if (s->kind != MTLD_SAMPLE_IMPRESSION && s->kind != MTLD_SAMPLE_REVIEW) return MTLD_ERR_CORRUPT;
  s->label_mask = b[2];
  *click_time = (int64_t)mtld_get_le64(b + ENC_CLICK);
  for (int l = 0; l < ENC_N_LABELS; l++) s->labels[l] = mtld_get_f32(b + ENC_LABELS + 4 * l);
  if ((s->label_mask >> MTLD_LABEL_REVIEW) & 1)
    s->labels[MTLD_LABEL_REVIEW] = (b[3] & ENC_FLAG_REVIEWED) ? 1.0f : 0.0f;
  s->weight = mtld_get_f32(b + 28);
  s->sample_id = mtld_get_le64(b + 32);
  *request_id = mtld_get_le64(b + 40);
  s->time_ms = (int64_t)mtld_get_le64(b + 48);
  s->partition = (int32_t)mtld_get_le32(b + 56);
  s->offset = (int64_t)mtld_get_le64(b + 60);
  s->scenario_id = mtld_get_le64(b + 68);
  size_t n = ENC_FIXED;
  size_t sl = b[n++];
  if (sl >= MTLD_SCENARIO_MAX || n + sl + 1 > len) return MTLD_ERR_CORRUPT;
  memcpy(s->scenario, b + n, sl);
  n += sl;
  s->n_fields = b[n++];
  if (s->n_fields > MTLD_MAX_FIELDS || n + 8 * (size_t)s->n_fields + 1 > len)
    return MTLD_ERR_CORRUPT;
  for (int i = 0; i < s->n_fields; i++, n += 8) s->fields[i] = mtld_get_le64(b + n);
  s->n_dense = b[n++];
  if (s->n_dense > MTLD_MAX_DENSE || n + 4 * (size_t)s->n_dense + 1 > len) return MTLD_ERR_CORRUPT;
  for (int i = 0; i < s->n_dense; i++, n += 4) s->dense[i] = mtld_get_f32(b + n);
  s->seq_len = b[n++];
  size_t trailer = (*flags & ENC_FLAG_PURCHASED) ? 8 : 0;
  if (s->seq_len > MTLD_MAX_SAMPLE_SEQ || n + 16 * (size_t)s->seq_len + trailer != len)
    return MTLD_ERR_CORRUPT;
  for (int i = 0; i < s->seq_len; i++, n += 16) {
    s->seq_items[i] = mtld_get_le64(b + n);
    s->seq_cats[i] = mtld_get_le64(b + n + 8);
  }
  if (trailer) *purchase_time = (int64_t)mtld_get_le64(b + n);
  return MTLD_OK;
}

/* ---- id -> chain head maps (open addressing, backward-shift deletion) ---- */

typedef struct {
  uint64_t key;
  int32_t val;
  int32_t used;
} cslot_t;

typedef struct {
  cslot_t *s;
  size_t cap, n; /* cap: power of two or 0 */
} cmap_t;

static size_t cmap_home(const cmap_t *m, uint64_t k) {
  return (size_t)(mtld_mix64(k) & (m->cap - 1));
}

static int32_t *cmap_find(cmap_t *m, uint64_t k) {
  if (!m->cap) return NULL;
  for (size_t i = cmap_home(m, k);; i = (i + 1) & (m->cap - 1)) {
    if (!m->s[i].used) return NULL;
    if (m->s[i].key == k) return &m->s[i].val;
  }
}

static int cmap_insert(cmap_t *m, uint64_t k, int32_t v); /* k must be absent */

static int cmap_grow(cmap_t *m) {
  cmap_t g = {calloc(m->cap ? 2 * m->cap : 64, sizeof(cslot_t)), m->cap ? 2 * m->cap : 64, 0};
  if (!g.s) return -1;
  for (size_t i = 0; i < m->cap; i++)
    if (m->s[i].used) cmap_insert(&g, m->s[i].key, m->s[i].val);
  free(m->s);
  *m = g;
  return 0;
}

static int cmap_insert(cmap_t *m, uint64_t k, int32_t v) {
  if (2 * (m->n + 1) > m->cap && cmap_grow(m) != 0) return -1;
  size_t i = cmap_home(m, k);
  while (m->s[i].used) i = (i + 1) & (m->cap - 1);
  m->s[i] = (cslot_t){k, v, 1};
  m->n++;
  return 0;
}

static void cmap_erase(cmap_t *m, uint64_t k) {
  if (!m->cap) return;
  size_t mask = m->cap - 1, i = cmap_home(m, k);
  for (;; i = (i + 1) & mask) {
    if (!m->s[i].used) return;
    if (m->s[i].key == k) break;
  }
  /* shift later members of the probe run back into the hole when the hole
   * lies between their home and their slot */
  for (size_t j = (i + 1) & mask; m->s[j].used; j = (j + 1) & mask) {
    size_t h = cmap_home(m, m->s[j].key);
    if (((j - h) & mask) >= ((j - i) & mask)) {
      m->s[i] = m->s[j];
      i = j;
    }
  }
  m->s[i].used = 0;
  m->n--;
}

static void cmap_free(cmap_t *m) {
  free(m->s);
  memset(m, 0, sizeof *m);
}

/* ---- pending entries ---- */

/* entry_t.kind of an item event of the release view (not a sample; key
 * EV_TAG, sub SUB_ITEM_EVENT so it sorts after a sample of the same event). */
#define KIND_ITEM_EVENT 0xe0
#define SUB_ITEM_EVENT UINT32_MAX

enum { IDX_ID = 0, IDX_REQ = 1, IDX_UI = 2, N_IDX = 3 };

typedef struct {
  int64_t time_ms, offset, deadline;
  int64_t click_time;    /* INT64_MIN: not clicked */
  int64_t purchase_time; /* INT64_MIN: no purchase recorded (review window 0) */
  int32_t partition;
  uint32_t sub;
  uint64_t sample_id, request_id, user_id, item_id, scenario_id;
  int32_t next[N_IDX]; /* chain links; next[0] links the free list too */
  int32_t prev[N_IDX]; /* back links: a release unlinks in O(1), not by walking the chain */
  uint8_t kind;
  uint8_t indexed; /* bit i: in index i */
} entry_t;

typedef struct {
  uint64_t scenario_id;
  uint64_t total;   /* pushes ever; slot of the next push = total % cap */
  uint32_t n_alloc; /* items allocated (grows to cap) */
  uint32_t cap;     /* config popularity_size, or the stored one while loading */
  struct donor *items;
} ring_t;

/* A release-heap element: the entry's deadline kept beside its index, so
 * sifting compares deadlines without touching the entry slab (the entries'
 * keys break ties). */
typedef struct {
  int64_t deadline;
  int32_t e;
} heap_el_t;

struct mtld_joiner {
  mtld_store_t *st;
  mtld_feature_def_t def;
  mtld_joiner_config_t cfg;

  entry_t *ent;
  int32_t n_ent, cap_ent, free_head;
  size_t n_live;    /* live entries: samples and item events */
  size_t n_item_ev; /* of which item events (release view) */
  cmap_t idx[N_IDX];

  heap_el_t *heap; /* min-heap by release order */
  size_t n_heap, cap_heap;

  ring_t *rings;
  int32_t n_rings, cap_rings;
  cmap_t ring_map;                              /* probe key (see ring_find) -> ring index */
  int item_slots[MTLD_FEATURES_ITEM_DENSE_MAX]; /* mtld_features_dense_item_slots */
  int n_item_slots;

  int64_t max_release_wm;
  mtld_status_t load_rc; /* sticky error while loading */
  mtld_joiner_counters_t c;
  mtld_joiner_counters_t c_committed; /* c at the last mtld_joiner_counters_commit */
};

void mtld_joiner_config_default(mtld_joiner_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->click_window_ms = 30 * 60 * 1000;
  cfg->conversion_window_ms = 24 * 3600 * 1000;
  cfg->mode = MTLD_JOIN_IMPRESSIONS;
  cfg->negatives_per_positive = 4;
  cfg->popularity_size = 10000;
  cfg->seed = 0;
}

mtld_status_t mtld_joiner_config_check(const mtld_joiner_config_t *cfg, char *err, size_t errlen) {
  const char *bad = NULL;
  if (cfg->click_window_ms < 0)
    bad = "click_window must be >= 0";
  else if (cfg->conversion_window_ms < 0)
    bad = "conversion_window must be >= 0";
  else if (cfg->review_window_ms < 0)
    bad = "review_window must be >= 0";
  else if (cfg->mode != MTLD_JOIN_IMPRESSIONS && cfg->mode != MTLD_JOIN_SAMPLED_NEGATIVES)
    bad = "mode must be impressions or sampled_negatives";
  else if (cfg->negatives_per_positive < 0 ||
           cfg->negatives_per_positive > MTLD_JOINER_MAX_NEGATIVES)
    bad = "negatives_per_positive must be between 0 and 100";
  else if (cfg->popularity_size < 1 || cfg->popularity_size > MTLD_JOINER_MAX_POPULARITY)
    bad = "popularity_size must be between 1 and 16777216";
  if (!bad) return MTLD_OK;
  if (errlen) snprintf(err, errlen, "joiner: %s", bad);
  return MTLD_ERR_CONFIG;
}

uint64_t mtld_joiner_negative_id(uint64_t click_event_id, uint32_t sub) {
  uint64_t id = mtld_mix64(click_event_id ^ mtld_mix64(UINT64_C(0x6e6567) + sub));
  return id ? id : 1;
}

static uint64_t ui_key(uint64_t user, uint64_t item) {
  return mtld_mix64(user) ^ (item * UINT64_C(0x9e3779b97f4a7c15));
}

static int key_cmp(const entry_t *a, const entry_t *b) { /* (time, partition, offset, sub) */
  if (a->time_ms != b->time_ms) return a->time_ms < b->time_ms ? -1 : 1;
  if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
  if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
  if (a->sub != b->sub) return a->sub < b->sub ? -1 : 1;
  return 0;
}
/* release order: (deadline, time, partition, offset, sub) */
static int heap_less(const mtld_joiner_t *j, heap_el_t a, heap_el_t b) {
  if (a.deadline != b.deadline) return a.deadline < b.deadline;
  return key_cmp(&j->ent[a.e], &j->ent[b.e]) < 0;
}

static int heap_push(mtld_joiner_t *j, int32_t e) {
  if (j->n_heap == j->cap_heap) {
    size_t cap = j->cap_heap ? 2 * j->cap_heap : 256;
    heap_el_t *h = realloc(j->heap, cap * sizeof *h);
    if (!h) return -1;
    j->heap = h;
    j->cap_heap = cap;
  }
  heap_el_t x = {j->ent[e].deadline, e};
  size_t i = j->n_heap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(j, x, j->heap[p])) break;
    j->heap[i] = j->heap[p];
    i = p;
  }
  j->heap[i] = x;
  return 0;
}

static int32_t heap_pop(mtld_joiner_t *j) {
  int32_t top = j->heap[0].e;
  heap_el_t last = j->heap[--j->n_heap];
  size_t i = 0, n = j->n_heap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(j, j->heap[c + 1], j->heap[c])) c++;
    if (!heap_less(j, j->heap[c], last)) break;
    j->heap[i] = j->heap[c];
    i = c;
  }
  if (n) j->heap[i] = last;
  return top;
}

static int32_t entry_alloc(mtld_joiner_t *j) {
  if (j->free_head >= 0) {
    int32_t e = j->free_head;
    j->free_head = j->ent[e].next[0];
    return e;
  }
  if (j->n_ent == j->cap_ent) {
    if (j->cap_ent >= INT32_MAX / 2) return -1;
    int32_t cap = j->cap_ent ? 2 * j->cap_ent : 256;
    entry_t *p = realloc(j->ent, (size_t)cap * sizeof *p);
    if (!p) return -1;
    j->ent = p;
    j->cap_ent = cap;
  }
  return j->n_ent++;
}

static uint64_t idx_key(const entry_t *e, int which) {
  return which == IDX_ID    ? e->sample_id
         : which == IDX_REQ ? e->request_id
                            : ui_key(e->user_id, e->item_id);
}

static int chain_add(mtld_joiner_t *j, int which, int32_t e) {
  uint64_t k = idx_key(&j->ent[e], which);
  int32_t *head = cmap_find(&j->idx[which], k);
  j->ent[e].prev[which] = -1;
  if (head) {
    j->ent[e].next[which] = *head;
    j->ent[*head].prev[which] = e;
    *head = e;
  } else {
    j->ent[e].next[which] = -1;
    if (cmap_insert(&j->idx[which], k, e) != 0) return -1;
  }
  j->ent[e].indexed |= (uint8_t)(1u << which);
  return 0;
}

static void chain_remove(mtld_joiner_t *j, int which, int32_t e) {
  int32_t p = j->ent[e].prev[which], n = j->ent[e].next[which];
  if (n >= 0) j->ent[n].prev[which] = p;
  if (p >= 0) {
    j->ent[p].next[which] = n;
    return;
  }
  uint64_t k = idx_key(&j->ent[e], which);
  int32_t *head = cmap_find(&j->idx[which], k);
  if (!head) return;
  if (n >= 0)
    *head = n;
  else
    cmap_erase(&j->idx[which], k);
}

static void entry_free(mtld_joiner_t *j, int32_t e) {
  for (int w = 0; w < N_IDX; w++)
    if (j->ent[e].indexed & (1u << w)) chain_remove(j, w, e);
  j->ent[e].indexed = 0;
  j->ent[e].next[0] = j->free_head;
  j->free_head = e;
  j->n_live--;
  if (j->ent[e].kind == KIND_ITEM_EVENT) j->n_item_ev--;
}

static int64_t deadline_of(const mtld_joiner_t *j, int kind, int64_t time_ms) {
  if (kind == MTLD_SAMPLE_REVIEW) return time_ms;
  return sat_add(sat_add(sat_add(time_ms, j->cfg.click_window_ms), j->cfg.conversion_window_ms),
                 j->cfg.review_window_ms);
}

/* Adds an in-memory entry (indexes by kind: impressions with sub 0 are
 * matchable, reviews are only found by id for de-duplication, sampled
 * negatives are never matched).  Returns the entry or -1 (no memory). */
static int32_t entry_add(mtld_joiner_t *j, const mtld_sample_t *s, uint32_t sub,
                         uint64_t request_id, int64_t click_time, int64_t purchase_time) {
  int32_t e = entry_alloc(j);
  if (e < 0) return -1;
  entry_t *x = &j->ent[e];
  memset(x, 0, sizeof *x);
  x->time_ms = s->time_ms;
  x->offset = s->offset;
  x->partition = s->partition;
  x->sub = sub;
  x->kind = (uint8_t)s->kind;
  x->deadline = deadline_of(j, s->kind, s->time_ms);
  x->click_time = click_time;
  x->purchase_time = purchase_time;
  x->sample_id = s->sample_id;
  x->request_id = request_id;
  x->user_id = s->n_fields > MTLD_FIELD_USER ? s->fields[MTLD_FIELD_USER] : 0;
  x->item_id = s->n_fields > MTLD_FIELD_ITEM ? s->fields[MTLD_FIELD_ITEM] : 0;
  x->scenario_id = s->scenario_id;
  for (int w = 0; w < N_IDX; w++) x->next[w] = x->prev[w] = -1;
  j->n_live++;
  int rc = 0;
  if (sub == 0) {
    rc |= chain_add(j, IDX_ID, e);
    if (s->kind == MTLD_SAMPLE_IMPRESSION) {
      if (request_id) rc |= chain_add(j, IDX_REQ, e);
      rc |= chain_add(j, IDX_UI, e);
    }
  }
  if (rc == 0) rc = heap_push(j, e);
  if (rc != 0) {
    entry_free(j, e);
    return -1;
  }
  return e;
}

/* An entry already pending at this exact position (the same record seen
 * twice): found through the id index. */
static int32_t find_same(mtld_joiner_t *j, uint64_t sample_id, int64_t time_ms, int32_t partition,
                         int64_t offset) {
  int32_t *head = cmap_find(&j->idx[IDX_ID], sample_id);
  for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_ID]) {
    const entry_t *x = &j->ent[e];
    if (x->sample_id == sample_id && x->time_ms == time_ms && x->partition == partition &&
        x->offset == offset && x->sub == 0)
      return e;
  }
  return -1;
}

/* ---- release view (sampled negatives) ----
 * The item part of a positive is computed when it is RELEASED, from an item
 * aggregate that is updated in release order: every event of the stream is
 * staged as an item event (key EV_TAG, sub SUB_ITEM_EVENT) with the deadline
 * of a click at its time, so item events and positives leave the heap in
 * one (time, partition, offset) order whatever the partition count or
 * interleaving; a positive reads the aggregate just before its own item
 * event is applied.  The aggregate lives under "rit/" item(8) in the
 * pending column family, written in the same batch as the release. */

#define RIT_PREFIX "rit/"
#define RIT_KEY_LEN 12
#define EV_VERSION 1
#define EV_VAL_LEN                                                                                 \
  46 /* version, type, time 8, event id 8, item 8, category 8, rating 4, price 8                   \
      */

static void rit_key(uint8_t *k, uint64_t item) {
  memcpy(k, RIT_PREFIX, 4);
  mtld_put_be64(k + 4, item);
}

/* The release-view features of an item (zeroed: never seen).  An
 * undecodable value counts as corrupt and reads as never seen. */
static mtld_status_t rit_get(mtld_joiner_t *j, uint64_t item, mtld_item_features_t *f) {
  uint8_t k[RIT_KEY_LEN];
  void *v = NULL;
  size_t vlen = 0;
  memset(f, 0, sizeof *f);
  rit_key(k, item);
  mtld_status_t rc = mtld_store_get(j->st, MTLD_CF_PENDING, k, sizeof k, &v, &vlen);
  if (rc == MTLD_ERR_NOTFOUND) return MTLD_OK;
  if (rc == MTLD_OK && mtld_features_item_decode(&j->def, f, v, vlen) != MTLD_OK) {
    j->c.corrupt++;
    memset(f, 0, sizeof *f);
  }
  free(v);
  return rc;
}

static mtld_status_t rit_apply(mtld_joiner_t *j, const mtld_event_t *ev) {
  mtld_item_features_t f;
  mtld_status_t rc = rit_get(j, ev->item_id, &f);
  if (rc != MTLD_OK) return rc;
  mtld_features_item_apply(&j->def, &f, ev);
  uint8_t k[RIT_KEY_LEN], v[MTLD_FEATURES_ITEM_ENC_MAX];
  size_t n = mtld_features_item_encode(&j->def, &f, v, sizeof v);
  if (n == 0) return MTLD_ERR_INVALID;
  rit_key(k, ev->item_id);
  return mtld_store_put(j->st, MTLD_CF_PENDING, k, sizeof k, v, n);
}

/* Indexes an item event (heap only).  Returns the entry or -1 (no memory). */
static int32_t item_event_entry(mtld_joiner_t *j, int64_t time_ms, int32_t partition,
                                int64_t offset, uint64_t item_id) {
  int32_t e = entry_alloc(j);
  if (e < 0) return -1;
  entry_t *x = &j->ent[e];
  memset(x, 0, sizeof *x);
  x->time_ms = time_ms;
  x->offset = offset;
  x->partition = partition;
  x->sub = SUB_ITEM_EVENT;
  x->kind = KIND_ITEM_EVENT;
  x->deadline = deadline_of(j, MTLD_SAMPLE_IMPRESSION, time_ms);
  x->click_time = INT64_MIN;
  x->item_id = item_id;
  for (int w = 0; w < N_IDX; w++) x->next[w] = -1;
  j->n_live++;
  j->n_item_ev++;
  if (heap_push(j, e) != 0) {
    entry_free(j, e);
    return -1;
  }
  return e;
}

/* Stages an event of the stream as an item event of the release view. */
static mtld_status_t item_event_stage(mtld_joiner_t *j, const mtld_event_t *ev, int32_t partition,
                                      int64_t offset) {
  uint8_t k[KEY_LEN], v[EV_VAL_LEN];
  make_key_tag(k, EV_TAG, ev->time_ms, partition, offset, SUB_ITEM_EVENT);
  v[0] = EV_VERSION;
  v[1] = (uint8_t)ev->type;
  mtld_put_le64(v + 2, (uint64_t)ev->time_ms);
  mtld_put_le64(v + 10, ev->event_id);
  mtld_put_le64(v + 18, ev->item_id);
  mtld_put_le64(v + 26, ev->category_id);
  mtld_put_f32(v + 34, ev->rating);
  mtld_put_f64(v + 38, ev->price);
  mtld_status_t rc = mtld_store_put(j->st, MTLD_CF_PENDING, k, sizeof k, v, sizeof v);
  if (rc != MTLD_OK) return rc;
  return item_event_entry(j, ev->time_ms, partition, offset, ev->item_id) < 0 ? MTLD_ERR_NOMEM
                                                                              : MTLD_OK;
}

static mtld_status_t item_event_decode(mtld_event_t *ev, const uint8_t *v, size_t len) {
  memset(ev, 0, sizeof *ev);
  if (len != EV_VAL_LEN || v[0] != EV_VERSION || v[1] < 1 || v[1] > MTLD_N_EVENT_TYPES)
    return MTLD_ERR_CORRUPT;
  ev->type = v[1];
  ev->time_ms = (int64_t)mtld_get_le64(v + 2);
  ev->event_id = mtld_get_le64(v + 10);
  ev->item_id = mtld_get_le64(v + 18);
  ev->category_id = mtld_get_le64(v + 26);
  ev->rating = mtld_get_f32(v + 34);
  ev->price = mtld_get_f64(v + 38);
  return MTLD_OK;
}

/* A released item event: applied to the release view, then deleted. */
static void item_event_release(mtld_joiner_t *j, const entry_t *x) {
  uint8_t k[KEY_LEN];
  make_key_tag(k, EV_TAG, x->time_ms, x->partition, x->offset, x->sub);
  void *v = NULL;
  size_t vlen = 0;
  mtld_event_t ev;
  if (mtld_store_get(j->st, MTLD_CF_PENDING, k, sizeof k, &v, &vlen) == MTLD_OK &&
      item_event_decode(&ev, v, vlen) == MTLD_OK)
    rit_apply(j, &ev); /* a failed put sticks in the store's batch */
  else
    j->c.corrupt++;
  free(v);
  mtld_store_delete(j->st, MTLD_CF_PENDING, k, sizeof k);
}

/* Puts the release view of a positive's item, as of just before its own
 * event, into its item dense features. */
static void positive_item_part(mtld_joiner_t *j, mtld_sample_t *s) {
  mtld_item_features_t f;
  float d[MTLD_MAX_DENSE];
  uint64_t item = s->n_fields > MTLD_FIELD_ITEM ? s->fields[MTLD_FIELD_ITEM] : 0;
  if (rit_get(j, item, &f) != MTLD_OK) memset(&f, 0, sizeof f);
  int n = mtld_features_dense(&j->def, NULL, &f, s->scenario_id, s->time_ms, d, MTLD_MAX_DENSE);
  for (int i = 0; i < j->n_item_slots; i++)
    if (j->item_slots[i] < n && j->item_slots[i] < s->n_dense)
      s->dense[j->item_slots[i]] = d[j->item_slots[i]];
}

/* ---- donor rings (sampled negatives) ----
 * Per scenario, the last popularity_size positives RELEASED, each as its
 * "item part": item id, category id and the item-only dense features
 * (mtld_features_dense_item_slots) it was released with, i.e. its item's
 * features as of its own click.  A negative is the released positive's
 * sample with the item part of a donor drawn from this ring. */

typedef struct donor {
  uint64_t item, category;
  float dense[MTLD_FEATURES_ITEM_DENSE_MAX];
} donor_t;

/* Takes the item part out of a released sample. */
static void donor_of(const mtld_joiner_t *j, donor_t *d, const mtld_sample_t *s) {
  memset(d, 0, sizeof *d);
  d->item = s->n_fields > MTLD_FIELD_ITEM ? s->fields[MTLD_FIELD_ITEM] : 0;
  d->category = s->n_fields > MTLD_FIELD_CATEGORY ? s->fields[MTLD_FIELD_CATEGORY] : 0;
  for (int i = 0; i < j->n_item_slots; i++)
    d->dense[i] = j->item_slots[i] < s->n_dense ? s->dense[j->item_slots[i]] : 0.0f;
}

/* Puts a donor's item part into sample s (the rest of s stays). */
static void donor_apply(const mtld_joiner_t *j, const donor_t *d, mtld_sample_t *s) {
  s->fields[MTLD_FIELD_ITEM] = d->item;
  s->fields[MTLD_FIELD_CATEGORY] = d->category;
  for (int i = 0; i < j->n_item_slots; i++)
    if (j->item_slots[i] < s->n_dense) s->dense[j->item_slots[i]] = d->dense[i];
}

static uint64_t ring_probe_key(uint64_t scenario_id) {
  return mtld_mix64(scenario_id);
}

/* The ring of a scenario, or -1; *slot_key gets the map key where it is or
 * would be inserted (collisions probe consecutive keys). */
static int32_t ring_find(mtld_joiner_t *j, uint64_t scenario_id, uint64_t *slot_key) {
  uint64_t k = ring_probe_key(scenario_id);
  for (;; k++) {
    int32_t *v = cmap_find(&j->ring_map, k);
    if (!v) break;
    if (j->rings[*v].scenario_id == scenario_id) return *v;
  }
  *slot_key = k;
  return -1;
}

static int32_t ring_get(mtld_joiner_t *j, uint64_t scenario_id, uint32_t cap) {
  uint64_t k = 0;
  int32_t r = ring_find(j, scenario_id, &k);
  if (r >= 0) return r;
  if (j->n_rings == j->cap_rings) {
    int32_t c = j->cap_rings ? 2 * j->cap_rings : 16;
    ring_t *p = realloc(j->rings, (size_t)c * sizeof *p);
    if (!p) return -1;
    j->rings = p;
    j->cap_rings = c;
  }
  if (cmap_insert(&j->ring_map, k, j->n_rings) != 0) return -1;
  j->rings[j->n_rings] = (ring_t){scenario_id, 0, 0, cap, NULL};
  return j->n_rings++;
}

static int ring_reserve(ring_t *r, uint32_t n) {
  if (n <= r->n_alloc) return 0;
  uint32_t a = r->n_alloc ? r->n_alloc : 64;
  while (a < n) a = a > UINT32_MAX / 2 ? n : 2 * a;
  if (a > r->cap) a = r->cap;
  donor_t *p = realloc(r->items, (size_t)a * sizeof *p);
  if (!p) return -1;
  memset(p + r->n_alloc, 0, (size_t)(a - r->n_alloc) * sizeof *p);
  r->items = p;
  r->n_alloc = a;
  return 0;
}

#define NEG_PREFIX "neg/" /* the donor rings */
#define POP_PREFIX "pop/" /* per-partition item rings of earlier versions: deleted at load */
#define NEG_KEY_HDR 13    /* "neg/" scenario(8) 'h' */
#define NEG_KEY_SLOT 17   /* "neg/" scenario(8) 's' slot(4) */
#define NEG_VAL_MAX (17 + 4 * MTLD_FEATURES_ITEM_DENSE_MAX)

static void neg_key(uint8_t *k, const ring_t *r, char what) {
  memcpy(k, NEG_PREFIX, 4);
  mtld_put_be64(k + 4, r->scenario_id);
  k[12] = (uint8_t)what;
}

static mtld_status_t ring_write_header(mtld_joiner_t *j, const ring_t *r) {
  uint8_t k[NEG_KEY_HDR], v[12];
  neg_key(k, r, 'h');
  mtld_put_le64(v, r->total);
  mtld_put_le32(v + 8, r->cap);
  return mtld_store_put(j->st, MTLD_CF_PENDING, k, sizeof k, v, sizeof v);
}

/* slot value: item(8) category(8) n(1) dense(4 n) */
static mtld_status_t ring_write_slot(mtld_joiner_t *j, const ring_t *r, uint32_t slot) {
  uint8_t k[NEG_KEY_SLOT], v[NEG_VAL_MAX];
  neg_key(k, r, 's');
  mtld_put_be32(k + 13, slot);
  const donor_t *d = &r->items[slot];
  mtld_put_le64(v, d->item);
  mtld_put_le64(v + 8, d->category);
  v[16] = (uint8_t)j->n_item_slots;
  for (int i = 0; i < j->n_item_slots; i++) mtld_put_f32(v + 17 + 4 * i, d->dense[i]);
  return mtld_store_put(j->st, MTLD_CF_PENDING, k, sizeof k, v, 17 + 4 * (size_t)j->n_item_slots);
}

static mtld_status_t ring_push(mtld_joiner_t *j, ring_t *r, const donor_t *d) {
  uint32_t slot = (uint32_t)(r->total % r->cap);
  if (ring_reserve(r, slot + 1) != 0) return MTLD_ERR_NOMEM;
  r->items[slot] = *d;
  r->total++;
  mtld_status_t rc = ring_write_slot(j, r, slot);
  if (rc == MTLD_OK) rc = ring_write_header(j, r);
  return rc;
}

/* Converts a ring loaded with another capacity to the configured one: keeps
 * the newest min(n, M) donors in push order and rewrites the slots. */
static mtld_status_t ring_resize(mtld_joiner_t *j, ring_t *r, uint32_t m) {
  uint32_t n_old = r->total < r->cap ? (uint32_t)r->total : r->cap;
  uint32_t n_new = n_old < m ? n_old : m;
  donor_t *items = calloc((size_t)n_new + 1, sizeof *items);
  if (!items) return MTLD_ERR_NOMEM;
  uint64_t first = r->total - n_old; /* push number of the oldest kept donor */
  for (uint32_t i = 0; i < n_new; i++) {
    uint64_t push = first + (n_old - n_new) + i;
    uint32_t slot = (uint32_t)(push % r->cap);
    if (slot < r->n_alloc) items[i] = r->items[slot];
  }
  ring_t old = *r;
  r->items = items;
  r->n_alloc = n_new + 1 <= m ? n_new + 1 : m;
  r->total = n_new;
  r->cap = m;
  free(old.items);
  mtld_status_t rc = MTLD_OK;
  for (uint32_t i = 0; i < n_new && rc == MTLD_OK; i++) rc = ring_write_slot(j, r, i);
  for (uint32_t s = n_new; s < n_old && rc == MTLD_OK; s++) {
    uint8_t k[NEG_KEY_SLOT];
    neg_key(k, r, 's');
    mtld_put_be32(k + 13, s);
    rc = mtld_store_delete(j->st, MTLD_CF_PENDING, k, sizeof k);
  }
  if (rc == MTLD_OK) rc = ring_write_header(j, r);
  return rc;
}

/* ---- loading ---- */

static void clear_memory(mtld_joiner_t *j) {
  free(j->ent);
  j->ent = NULL;
  j->n_ent = j->cap_ent = 0;
  j->free_head = -1;
  j->n_live = 0;
  j->n_item_ev = 0;
  for (int w = 0; w < N_IDX; w++) cmap_free(&j->idx[w]);
  free(j->heap);
  j->heap = NULL;
  j->n_heap = j->cap_heap = 0;
  for (int32_t i = 0; i < j->n_rings; i++) free(j->rings[i].items);
  free(j->rings);
  j->rings = NULL;
  j->n_rings = j->cap_rings = 0;
  cmap_free(&j->ring_map);
}

static int load_pending(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_joiner_t *j = ctx;
  const uint8_t *k = key;
  mtld_sample_t s;
  uint64_t request_id;
  int64_t click_time, purchase_time;
  uint8_t flags;
  if (klen != KEY_LEN ||
      dec_sample(&s, &request_id, &click_time, &purchase_time, &flags, val, vlen) != MTLD_OK ||
      s.time_ms != unord64(mtld_get_be64(k + 1)) || s.partition != unord32(mtld_get_be32(k + 9)) ||
      s.offset != unord64(mtld_get_be64(k + 13))) {
    /* not ours to keep: drop it with the next commit rather than stall */
    j->c.corrupt++;
    j->load_rc = mtld_store_delete(j->st, MTLD_CF_PENDING, key, klen);
    return j->load_rc != MTLD_OK;
  }
  if (entry_add(j, &s, mtld_get_be32(k + 21), request_id, click_time, purchase_time) < 0) {
    j->load_rc = MTLD_ERR_NOMEM;
    return 1;
  }
  return 0;
}

static int load_item_event(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_joiner_t *j = ctx;
  const uint8_t *k = key;
  mtld_event_t ev;
  if (klen != KEY_LEN || mtld_get_be32(k + 21) != SUB_ITEM_EVENT ||
      item_event_decode(&ev, val, vlen) != MTLD_OK || ev.time_ms != unord64(mtld_get_be64(k + 1))) {
    j->c.corrupt++;
    j->load_rc = mtld_store_delete(j->st, MTLD_CF_PENDING, key, klen);
    return j->load_rc != MTLD_OK;
  }
  if (item_event_entry(j, ev.time_ms, unord32(mtld_get_be32(k + 9)), unord64(mtld_get_be64(k + 13)),
                       ev.item_id) < 0) {
    j->load_rc = MTLD_ERR_NOMEM;
    return 1;
  }
  return 0;
}

static int load_ring(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_joiner_t *j = ctx;
  const uint8_t *k = key, *v = val;
  if (klen < NEG_KEY_HDR) goto corrupt;
  uint64_t scenario_id = mtld_get_be64(k + 4);
  if (klen == NEG_KEY_HDR && k[12] == 'h' && vlen == 12) {
    uint32_t cap = mtld_get_le32(v + 8);
    if (cap < 1 || cap > MTLD_JOINER_MAX_POPULARITY) goto corrupt;
    int32_t r = ring_get(j, scenario_id, cap);
    if (r < 0) goto nomem;
    j->rings[r].total = mtld_get_le64(v);
    j->rings[r].cap = cap;
    return 0;
  }
  if (klen == NEG_KEY_SLOT && k[12] == 's' && vlen >= 17 && v[16] == j->n_item_slots &&
      vlen == 17 + 4 * (size_t)v[16]) {
    uint64_t unused;
    int32_t r = ring_find(j, scenario_id, &unused);
    uint32_t slot = mtld_get_be32(k + 13);
    /* the header sorts before the slots of its ring */
    if (r < 0 || slot >= j->rings[r].cap) goto corrupt;
    if (ring_reserve(&j->rings[r], slot + 1) != 0) goto nomem;
    donor_t *d = &j->rings[r].items[slot];
    d->item = mtld_get_le64(v);
    d->category = mtld_get_le64(v + 8);
    for (int i = 0; i < j->n_item_slots; i++) d->dense[i] = mtld_get_f32(v + 17 + 4 * i);
    return 0;
  }
corrupt: /* also a slot written with another feature layout: dropped */
  j->c.corrupt++;
  j->load_rc = mtld_store_delete(j->st, MTLD_CF_PENDING, key, klen);
  return j->load_rc != MTLD_OK;
nomem:
  j->load_rc = MTLD_ERR_NOMEM;
  return 1;
}

/* The per-partition item rings of earlier versions: nothing reads them. */
static int drop_old_ring(void *ctx, const void *key, size_t klen, const void *val, size_t vlen) {
  mtld_joiner_t *j = ctx;
  (void)val;
  (void)vlen;
  j->load_rc = mtld_store_delete(j->st, MTLD_CF_PENDING, key, klen);
  return j->load_rc != MTLD_OK;
}

static mtld_status_t load(mtld_joiner_t *j, char *err, size_t errlen) {
  clear_memory(j);
  j->load_rc = MTLD_OK;
  uint8_t tag = KEY_TAG;
  mtld_store_foreach_raw(j->st, MTLD_CF_PENDING, &tag, 1, load_pending, j);
  tag = EV_TAG;
  if (j->load_rc == MTLD_OK)
    mtld_store_foreach_raw(j->st, MTLD_CF_PENDING, &tag, 1, load_item_event, j);
  if (j->load_rc == MTLD_OK)
    mtld_store_foreach_raw(j->st, MTLD_CF_PENDING, NEG_PREFIX, 4, load_ring, j);
  if (j->load_rc == MTLD_OK)
    mtld_store_foreach_raw(j->st, MTLD_CF_PENDING, POP_PREFIX, 4, drop_old_ring, j);
  for (int32_t i = 0; i < j->n_rings && j->load_rc == MTLD_OK; i++) {
    ring_t *r = &j->rings[i];
    uint32_t n = r->total < r->cap ? (uint32_t)r->total : r->cap;
    if (r->n_alloc < n) { /* slots missing: keep what is there, zeros are skipped */
      if (ring_reserve(r, n) != 0) j->load_rc = MTLD_ERR_NOMEM;
    }
    if (j->load_rc == MTLD_OK && r->cap != (uint32_t)j->cfg.popularity_size)
      j->load_rc = ring_resize(j, r, (uint32_t)j->cfg.popularity_size);
  }
  if (j->load_rc != MTLD_OK) {
    if (errlen)
      snprintf(err, errlen, "joiner: loading pending state: %s", mtld_status_str(j->load_rc));
    clear_memory(j);
    return j->load_rc;
  }
  return MTLD_OK;
}

mtld_status_t mtld_joiner_create(mtld_joiner_t **out, mtld_store_t *st,
                                 const mtld_feature_def_t *def, const mtld_joiner_config_t *cfg,
                                 char *err, size_t errlen) {
  *out = NULL;
  mtld_status_t rc = mtld_joiner_config_check(cfg, err, errlen);
  if (rc != MTLD_OK) return rc;
  if (mtld_features_dense_count(def) > MTLD_MAX_DENSE) {
    if (errlen) snprintf(err, errlen, "joiner: more dense features than MTLD_MAX_DENSE");
    return MTLD_ERR_CONFIG;
  }
  if (def->n_attrs > 0 && mtld_feature_def_check(def, err, errlen) != MTLD_OK)
    return MTLD_ERR_CONFIG; /* the attribute inputs must fit a sample */
  for (int k = 0; k < def->n_attrs; k++) {
    if (def->attrs[k].owner == MTLD_ATTR_ITEM && cfg->mode == MTLD_JOIN_SAMPLED_NEGATIVES) {
      /* donors (and the release view's item events) carry no attributes */
      if (errlen) snprintf(err, errlen, "joiner: item attributes need joiner.mode = impressions");
      return MTLD_ERR_CONFIG;
    }
  }
  mtld_joiner_t *j = calloc(1, sizeof *j);
  if (!j) return MTLD_ERR_NOMEM;
  j->st = st;
  j->def = *def;
  j->cfg = *cfg;
  j->free_head = -1;
  j->max_release_wm = INT64_MIN;
  j->n_item_slots = mtld_features_dense_item_slots(def, j->item_slots);
  rc = load(j, err, errlen);
  if (rc != MTLD_OK) {
    free(j);
    return rc;
  }
  *out = j;
  return MTLD_OK;
}

void mtld_joiner_destroy(mtld_joiner_t *j) {
  if (!j) return;
  clear_memory(j);
  free(j);
}

mtld_status_t mtld_joiner_reload(mtld_joiner_t *j, char *err, size_t errlen) {
  return load(j, err, errlen);
}

/* ---- events ---- */

void mtld_sample_from_features(mtld_sample_t *s, const mtld_feature_def_t *def,
                               const mtld_event_t *ev, mtld_partition_id_t partition,
                               int64_t offset, const mtld_user_features_t *u,
                               const mtld_item_features_t *it, uint64_t item_id,
                               uint64_t category_id, int with_position) {
  memset(s, 0, sizeof *s);
  s->sample_id = ev->event_id;
  s->time_ms = ev->time_ms;
  s->partition = partition;
  s->offset = offset;
  s->kind = ev->type == MTLD_EV_REVIEW ? MTLD_SAMPLE_REVIEW : MTLD_SAMPLE_IMPRESSION;
  s->weight = 1.0f;
  s->n_fields = MTLD_FIELD_EXTRA;
  s->fields[MTLD_FIELD_USER] = ev->user_id;
  s->fields[MTLD_FIELD_ITEM] = item_id;
  s->fields[MTLD_FIELD_CATEGORY] = category_id;
  s->fields[MTLD_FIELD_SCENARIO] = ev->scenario_id;
  s->fields[MTLD_FIELD_POSITION] =
      with_position && ev->position > 0 ? (uint64_t)(uint32_t)ev->position : 0;
  s->fields[MTLD_FIELD_HOUR] = mtld_sample_hour_id(ev->time_ms);
  s->scenario_id = ev->scenario_id;
  size_t sl = strnlen(ev->scenario, sizeof ev->scenario);
  if (sl >= MTLD_SCENARIO_MAX) sl = MTLD_SCENARIO_MAX - 1;
  memcpy(s->scenario, ev->scenario, sl);
  int n = mtld_features_dense(def, u, it, ev->scenario_id, ev->time_ms, s->dense, MTLD_MAX_DENSE);
  s->n_dense = n > 0 ? n : 0; /* create() checked the count fits */
  if (def->n_attrs > 0) {
    /* declared attributes: categorical ones as extra fields, numeric ones
     * after the dense features (mtld_feature_def_check: they fit) */
    int n_cat, n_num;
    mtld_features_attr_inputs(def, u, it, ev, s->fields + MTLD_FIELD_EXTRA, &n_cat,
                              s->dense + s->n_dense, &n_num);
    s->n_fields += n_cat;
    s->n_dense += n_num;
  }
  if (u) {
    uint32_t n_seq = u->seq_len < MTLD_MAX_SEQ ? u->seq_len : MTLD_MAX_SEQ;
    if (n_seq > MTLD_MAX_SAMPLE_SEQ) n_seq = MTLD_MAX_SAMPLE_SEQ;
    for (uint32_t i = 0; i < n_seq; i++) {
      s->seq_items[i] = u->seq[i].item_id;
      s->seq_cats[i] = u->seq[i].category_id;
    }
    s->seq_len = (int)n_seq;
  }
  if (s->kind == MTLD_SAMPLE_REVIEW) {
    s->labels[MTLD_LABEL_RATING] = ev->rating;
    s->label_mask = 1u << MTLD_LABEL_RATING;
  } else {
    s->label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_CART | 1u << MTLD_LABEL_PURCHASE;
  }
}

static void fill_sample(const mtld_joiner_t *j, mtld_sample_t *s, const mtld_event_t *ev,
                        int32_t partition, int64_t offset, const mtld_user_features_t *u,
                        const mtld_item_features_t *it, uint64_t item_id, uint64_t category_id,
                        int with_position) {
  mtld_sample_from_features(s, &j->def, ev, partition, offset, u, it, item_id, category_id,
                            with_position);
  /* the review label (click AND purchase AND a review within the window)
   * exists only with a review window; then it is valid on impressions */
  if (j->cfg.review_window_ms > 0 && s->kind == MTLD_SAMPLE_IMPRESSION)
    s->label_mask |= 1u << MTLD_LABEL_REVIEW;
}

/* Stages a new pending sample and indexes it.  *dup = 1 (and nothing is
 * written) when the same record already has a pending sample. */
static mtld_status_t open_sample(mtld_joiner_t *j, const mtld_sample_t *s, uint32_t sub,
                                 uint64_t request_id, int64_t click_time, uint8_t flags, int *dup) {
  *dup = 0;
  if (sub == 0 && find_same(j, s->sample_id, s->time_ms, s->partition, s->offset) >= 0) {
    *dup = 1;
    return MTLD_OK;
  }
  uint8_t key[KEY_LEN], val[ENC_MAX];
  make_key(key, s->time_ms, s->partition, s->offset, sub);
  size_t n = enc_sample(val, s, request_id, click_time, flags);
  mtld_status_t rc = mtld_store_put(j->st, MTLD_CF_PENDING, key, sizeof key, val, n);
  if (rc != MTLD_OK) return rc;
  int32_t e = entry_add(j, s, sub, request_id, click_time, INT64_MIN);
  if (e < 0) return MTLD_ERR_NOMEM;
  if (j->ent[e].deadline < j->max_release_wm) j->c.late++;
  return MTLD_OK;
}

/* Is candidate c preferred over the best so far b (-1 = none)?  prefer(x)
 * ranks a candidate first (higher wins), then the more recent key wins. */
static int better(const mtld_joiner_t *j, int32_t c, int pc, int32_t b, int pb) {
  if (b < 0) return 1;
  if (pc != pb) return pc > pb;
  return key_cmp(&j->ent[c], &j->ent[b]) > 0;
}

/* A label event can attach to an impression sample only up to the sample's
 * deadline in EVENT time.  Whether a sample past its deadline was already
 * released depends on how far the other partitions got (the watermark), so
 * without this rule a late label would attach or fall through to another
 * sample depending on the interleaving. */
static int matchable_at(const mtld_joiner_t *j, const entry_t *x, int64_t event_time) {
  return x->kind == MTLD_SAMPLE_IMPRESSION && x->sub == 0 &&
         event_time <= deadline_of(j, x->kind, x->time_ms);
}
#define matchable(x) matchable_at(j, (x), ev->time_ms)

/* The impression a click belongs to (see joiner.h), or -1. */
static int32_t match_click(mtld_joiner_t *j, const mtld_event_t *ev) {
  int32_t best = -1, *head;
  int pbest = 0;
  if (ev->request_id) {
    head = cmap_find(&j->idx[IDX_ID], ev->request_id);
    for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_ID]) {
      const entry_t *x = &j->ent[e];
      if (!matchable(x) || x->sample_id != ev->request_id || x->user_id != ev->user_id) continue;
      int p = x->click_time == INT64_MIN;
      if (better(j, e, p, best, pbest)) best = e, pbest = p;
    }
    if (best >= 0) return best;
    head = cmap_find(&j->idx[IDX_REQ], ev->request_id);
    for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_REQ]) {
      const entry_t *x = &j->ent[e];
      if (!matchable(x) || x->request_id != ev->request_id || x->user_id != ev->user_id ||
          x->item_id != ev->item_id)
        continue;
      int p = x->click_time == INT64_MIN;
      if (better(j, e, p, best, pbest)) best = e, pbest = p;
    }
    if (best >= 0) return best;
  }
  head = cmap_find(&j->idx[IDX_UI], ui_key(ev->user_id, ev->item_id));
  for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_UI]) {
    const entry_t *x = &j->ent[e];
    if (!matchable(x) || x->user_id != ev->user_id || x->item_id != ev->item_id ||
        x->scenario_id != ev->scenario_id)
      continue;
    if (ev->time_ms < x->time_ms || ev->time_ms > sat_add(x->time_ms, j->cfg.click_window_ms))
      continue;
    int p = x->click_time == INT64_MIN;
    if (better(j, e, p, best, pbest)) best = e, pbest = p;
  }
  return best;
}

/* The pending sample of ev's user and item whose time at `off` (click_time
 * or purchase_time, INT64_MIN = not yet) is set and at most `window` ms
 * before ev, the most recent (same scenario preferred), or -1. */
static int32_t match_ui_after(mtld_joiner_t *j, const mtld_event_t *ev, size_t off,
                              int64_t window) {
  int32_t best = -1;
  int pbest = 0;
  int32_t *head = cmap_find(&j->idx[IDX_UI], ui_key(ev->user_id, ev->item_id));
  for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_UI]) {
    const entry_t *x = &j->ent[e];
    int64_t t;
    memcpy(&t, (const char *)x + off, sizeof(t));
    if (!matchable(x) || x->user_id != ev->user_id || x->item_id != ev->item_id || t == INT64_MIN)
      continue;
    if (ev->time_ms < t || ev->time_ms > sat_add(t, window)) continue;
    int p = x->scenario_id == ev->scenario_id;
    if (better(j, e, p, best, pbest)) best = e, pbest = p;
  }
  return best;
}

/* The clicked sample a cart or purchase belongs to, or -1. */
static int32_t match_conversion(mtld_joiner_t *j, const mtld_event_t *ev) {
  int32_t best = -1, *head;
  int pbest = 0;
  if (ev->request_id) {
    head = cmap_find(&j->idx[IDX_ID], ev->request_id);
    for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_ID]) {
      const entry_t *x = &j->ent[e];
      if (!matchable(x) || x->sample_id != ev->request_id || x->user_id != ev->user_id ||
          x->click_time == INT64_MIN)
        continue;
      if (better(j, e, 0, best, pbest)) best = e;
    }
    if (best >= 0) return best;
    head = cmap_find(&j->idx[IDX_REQ], ev->request_id);
    for (int32_t e = head ? *head : -1; e >= 0; e = j->ent[e].next[IDX_REQ]) {
      const entry_t *x = &j->ent[e];
      if (!matchable(x) || x->request_id != ev->request_id || x->user_id != ev->user_id ||
          x->item_id != ev->item_id || x->click_time == INT64_MIN)
        continue;
      int p = x->scenario_id == ev->scenario_id;
      if (better(j, e, p, best, pbest)) best = e, pbest = p;
    }
    if (best >= 0) return best;
  }
  return match_ui_after(j, ev, offsetof(entry_t, click_time), j->cfg.conversion_window_ms);
}

/* Sets a label of pending entry e in the store (and its click time for a
 * click).  *changed = 1 when the label was 0 before. */
static mtld_status_t set_label(mtld_joiner_t *j, int32_t e, int label, int64_t click_time,
                               int *changed) {
  entry_t *x = &j->ent[e];
  uint8_t key[KEY_LEN];
  make_key(key, x->time_ms, x->partition, x->offset, x->sub);
  void *val = NULL;
  size_t vlen = 0;
  *changed = 0;
  mtld_status_t rc = mtld_store_get(j->st, MTLD_CF_PENDING, key, sizeof key, &val, &vlen);
  if (rc != MTLD_OK) return rc == MTLD_ERR_NOTFOUND ? MTLD_ERR_CORRUPT : rc;
  uint8_t *b = val;
  if (vlen < ENC_FIXED || b[0] != ENC_VERSION) {
    free(val);
    return MTLD_ERR_CORRUPT;
  }
  if (mtld_get_f32(b + ENC_LABELS + 4 * label) == 0.0f) {
    mtld_put_f32(b + ENC_LABELS + 4 * label, 1.0f);
    if (label == MTLD_LABEL_CLICK) {
      mtld_put_le64(b + ENC_CLICK, (uint64_t)click_time);
      x->click_time = click_time;
    }
    rc = mtld_store_put(j->st, MTLD_CF_PENDING, key, sizeof key, val, vlen);
    *changed = rc == MTLD_OK;
  }
  free(val);
  return rc;
}

/* Review window only: records on pending entry e the time of the purchase
 * that labelled it (ENC_FLAG_PURCHASED and the 8-byte trailer), the first
 * purchase only. */
static mtld_status_t mark_purchase(mtld_joiner_t *j, int32_t e, int64_t time_ms) {
  entry_t *x = &j->ent[e];
  if (x->purchase_time != INT64_MIN) return MTLD_OK;
  uint8_t key[KEY_LEN];
  make_key(key, x->time_ms, x->partition, x->offset, x->sub);
  void *val = NULL;
  size_t vlen = 0;
  mtld_status_t rc = mtld_store_get(j->st, MTLD_CF_PENDING, key, sizeof key, &val, &vlen);
  if (rc != MTLD_OK) return rc == MTLD_ERR_NOTFOUND ? MTLD_ERR_CORRUPT : rc;
  uint8_t *b = realloc(val, vlen + 8);
  if (!b) {
    free(val);
    return MTLD_ERR_NOMEM;
  }
  if (vlen < ENC_FIXED || b[0] != ENC_VERSION || (b[3] & ENC_FLAG_PURCHASED)) {
    free(b);
    return MTLD_ERR_CORRUPT;
  }
  b[3] |= ENC_FLAG_PURCHASED;
  mtld_put_le64(b + vlen, (uint64_t)time_ms);
  rc = mtld_store_put(j->st, MTLD_CF_PENDING, key, sizeof key, b, vlen + 8);
  if (rc == MTLD_OK) x->purchase_time = time_ms;
  free(b);
  return rc;
}

/* The purchased pending sample a review labels (see joiner.h), or -1: same
 * user and item, purchase_time <= t_review <= purchase_time + review
 * window, the most recent (same scenario preferred). */
static int32_t match_review(mtld_joiner_t *j, const mtld_event_t *ev) {
  return match_ui_after(j, ev, offsetof(entry_t, purchase_time), j->cfg.review_window_ms);
}

/* Sets the review flag of pending entry e.  *changed = 1 when it was unset. */
static mtld_status_t mark_review(mtld_joiner_t *j, int32_t e, int *changed) {
  entry_t *x = &j->ent[e];
  uint8_t key[KEY_LEN];
  make_key(key, x->time_ms, x->partition, x->offset, x->sub);
  void *val = NULL;
  size_t vlen = 0;
  *changed = 0;
  mtld_status_t rc = mtld_store_get(j->st, MTLD_CF_PENDING, key, sizeof key, &val, &vlen);
  if (rc != MTLD_OK) return rc == MTLD_ERR_NOTFOUND ? MTLD_ERR_CORRUPT : rc;
  uint8_t *b = val;
  if (vlen < ENC_FIXED || b[0] != ENC_VERSION) {
    free(val);
    return MTLD_ERR_CORRUPT;
  }
  if (!(b[3] & ENC_FLAG_REVIEWED)) {
    b[3] |= ENC_FLAG_REVIEWED;
    rc = mtld_store_put(j->st, MTLD_CF_PENDING, key, sizeof key, val, vlen);
    *changed = rc == MTLD_OK;
  }
  free(val);
  return rc;
}

/* An unmatched click in sampled-negatives mode: a positive sample that draws
 * its K negatives when it is released (draw_negatives). */
static mtld_status_t open_positive(mtld_joiner_t *j, const mtld_event_t *ev, int32_t partition,
                                   int64_t offset, const mtld_user_features_t *u,
                                   const mtld_item_features_t *it) {
  mtld_sample_t s;
  int dup;
  fill_sample(j, &s, ev, partition, offset, u, it, ev->item_id, ev->category_id, 0);
  s.labels[MTLD_LABEL_CLICK] = 1.0f;
  mtld_status_t rc = open_sample(j, &s, 0, ev->request_id, ev->time_ms, ENC_FLAG_DRAW, &dup);
  if (rc == MTLD_OK && dup) j->c.duplicate_sample[2]++;
  if (rc != MTLD_OK || dup) return rc;
  j->c.opened++;
  j->c.positives++;
  j->c.clicked++;
  return MTLD_OK;
}

/* A positive was just released: K negatives, each the positive with the
 * item part of a donor drawn uniformly from the scenario's ring of released
 * positives (skipping donors of the positive's own item), handed to fn
 * right after it; then the positive joins the ring.  Returns the number of
 * negatives handed out. */
static size_t draw_negatives(mtld_joiner_t *j, const mtld_sample_t *pos, mtld_joiner_release_fn fn,
                             void *ctx) {
  int32_t r = ring_get(j, pos->scenario_id, (uint32_t)j->cfg.popularity_size);
  if (r < 0) return 0; /* no memory: this positive goes without negatives */
  ring_t *ring = &j->rings[r];
  uint32_t n = ring->total < ring->cap ? (uint32_t)ring->total : ring->cap;
  if (n > ring->n_alloc) n = ring->n_alloc;
  uint64_t item = pos->fields[MTLD_FIELD_ITEM];
  uint64_t state = mtld_mix64(j->cfg.seed) ^ mtld_mix64(pos->sample_id ^ UINT64_C(0x5deece66d));
  uint32_t sub = 0;
  size_t out = 0;
  for (int k = 0; k < j->cfg.negatives_per_positive && n > 0; k++) {
    const donor_t *d = NULL;
    for (int attempt = 0; attempt < 8 && !d; attempt++) {
      const donor_t *c = &ring->items[(uint32_t)(((mtld_splitmix64(&state) >> 32) * n) >> 32)];
      if (c->item != 0 && c->item != item) d = c;
    }
    if (!d) continue; /* the ring holds (almost) only the clicked item */
    mtld_sample_t ns = *pos;
    donor_apply(j, d, &ns);
    ns.sample_id = mtld_joiner_negative_id(pos->sample_id, ++sub);
    for (int l = 0; l < MTLD_N_LABELS; l++) ns.labels[l] = 0.0f;
    fn(ctx, &ns);
    out++;
  }
  j->c.negatives_sampled += out;
  donor_t self;
  donor_of(j, &self, pos);
  ring_push(j, ring, &self); /* a failed put sticks in the store's batch */
  return out;
}

/* A label at time_ms that matched nothing came after the deadline when
 * every sample it could have labelled is released already: impressions at
 * or before it have deadlines up to time_ms + click_window +
 * conversion_window (+ review_window with the review label: deadline_of). */
static int label_late(const mtld_joiner_t *j, int64_t time_ms) {
  return j->max_release_wm != INT64_MIN &&
         deadline_of(j, MTLD_SAMPLE_IMPRESSION, time_ms) < j->max_release_wm;
}

static mtld_status_t on_event(mtld_joiner_t *j, const mtld_event_t *ev,
                              mtld_partition_id_t partition, int64_t offset,
                              const mtld_user_features_t *user_before,
                              const mtld_item_features_t *item_before) {
  mtld_sample_t s;
  mtld_status_t rc = MTLD_OK;
  int dup, changed;
  int32_t e;
  switch (ev->type) {
  case MTLD_EV_IMPRESSION:
  case MTLD_EV_REVIEW:
    fill_sample(j, &s, ev, partition, offset, user_before, item_before, ev->item_id,
                ev->category_id, 1);
    rc = open_sample(j, &s, 0, ev->type == MTLD_EV_IMPRESSION ? ev->request_id : 0, INT64_MIN, 0,
                     &dup);
    if (rc == MTLD_OK && dup) j->c.duplicate_sample[ev->type == MTLD_EV_IMPRESSION ? 0 : 1]++;
    if (rc == MTLD_OK && !dup) {
      if (ev->type == MTLD_EV_IMPRESSION)
        j->c.opened++;
      else
        j->c.reviews++;
    }
    if (rc == MTLD_OK && !dup && ev->type == MTLD_EV_REVIEW && j->cfg.review_window_ms > 0 &&
        (e = match_review(j, ev)) >= 0) {
      rc = mark_review(j, e, &changed);
      if (rc == MTLD_OK && changed) j->c.reviewed++;
    }
    return rc;
  case MTLD_EV_CLICK:
    e = match_click(j, ev);
    if (e >= 0) {
      rc = set_label(j, e, MTLD_LABEL_CLICK, ev->time_ms, &changed);
      if (rc == MTLD_OK) {
        if (changed)
          j->c.clicked++;
        else
          j->c.duplicate_click++;
      }
      return rc;
    }
    if (j->cfg.mode == MTLD_JOIN_SAMPLED_NEGATIVES)
      return open_positive(j, ev, partition, offset, user_before, item_before);
    j->c.unmatched_click++;
    if (label_late(j, ev->time_ms)) j->c.late_click++;
    return MTLD_OK;
  case MTLD_EV_ADD_TO_CART:
  case MTLD_EV_PURCHASE:
    e = match_conversion(j, ev);
    if (e < 0) {
      int late = label_late(j, ev->time_ms);
      if (ev->type == MTLD_EV_PURCHASE) {
        j->c.unmatched_purchase++;
        j->c.late_purchase += (uint64_t)late;
      } else {
        j->c.unmatched_cart++;
        j->c.late_cart += (uint64_t)late;
      }
      return MTLD_OK;
    }
    rc = set_label(j, e, ev->type == MTLD_EV_PURCHASE ? MTLD_LABEL_PURCHASE : MTLD_LABEL_CART, 0,
                   &changed);
    if (rc == MTLD_OK) {
      int buy = ev->type == MTLD_EV_PURCHASE;
      uint64_t *n = buy ? (changed ? &j->c.purchased : &j->c.repeated_purchase)
                        : (changed ? &j->c.carted : &j->c.repeated_cart);
      (*n)++;
    }
    if (rc == MTLD_OK && ev->type == MTLD_EV_PURCHASE && j->cfg.review_window_ms > 0)
      rc = mark_purchase(j, e, ev->time_ms);
    return rc;
  default: return MTLD_ERR_INVALID;
  }
}

mtld_status_t mtld_joiner_on_event(mtld_joiner_t *j, const mtld_event_t *ev,
                                   mtld_partition_id_t partition, int64_t offset,
                                   const mtld_user_features_t *user_before,
                                   const mtld_item_features_t *item_before) {
  mtld_status_t rc = on_event(j, ev, partition, offset, user_before, item_before);
  if (rc == MTLD_OK && j->cfg.mode == MTLD_JOIN_SAMPLED_NEGATIVES && ev->type >= 1 &&
      ev->type <= MTLD_N_EVENT_TYPES)
    rc = item_event_stage(j, ev, partition, offset);
  return rc;
}

/* Entries released per round: their pending values are read with one
 * MultiGet (mtld_store_get_many), then released one by one in order. */
#define RELEASE_CHUNK 256

size_t mtld_joiner_release(mtld_joiner_t *j, int64_t watermark_ms, mtld_joiner_release_fn fn,
                           void *ctx) {
  size_t n = 0;
  if (watermark_ms > j->max_release_wm) j->max_release_wm = watermark_ms;
  int32_t due[RELEASE_CHUNK];
  uint8_t keys[RELEASE_CHUNK][KEY_LEN];
  const void *kp[RELEASE_CHUNK];
  size_t klen[RELEASE_CHUNK], vlens[RELEASE_CHUNK];
  void *vals[RELEASE_CHUNK];
  mtld_status_t rcs[RELEASE_CHUNK];
  for (;;) {
    /* nothing below pushes to the heap: popping a round first keeps the order */
    size_t k = 0, m = 0;
    while (k < RELEASE_CHUNK && j->n_heap > 0 && j->heap[0].deadline < watermark_ms) {
      int32_t e = heap_pop(j);
      due[k++] = e;
      const entry_t *x = &j->ent[e];
      if (x->kind == KIND_ITEM_EVENT) continue;
      make_key(keys[m], x->time_ms, x->partition, x->offset, x->sub);
      kp[m] = keys[m];
      klen[m++] = KEY_LEN;
    }
    if (k == 0) break;
    if (m) mtld_store_get_many(j->st, MTLD_CF_PENDING, m, kp, klen, vals, vlens, rcs);
    for (size_t i = 0, v = 0; i < k; i++) {
      int32_t e = due[i];
      const entry_t *x = &j->ent[e];
      if (x->kind == KIND_ITEM_EVENT) {
        item_event_release(j, x);
        entry_free(j, e);
        continue;
      }
      mtld_sample_t s;
      uint64_t request_id;
      int64_t click_time, purchase_time;
      uint8_t flags = 0;
      if (rcs[v] == MTLD_OK && dec_sample(&s, &request_id, &click_time, &purchase_time, &flags,
                                          vals[v], vlens[v]) == MTLD_OK) {
        if (flags & ENC_FLAG_DRAW) positive_item_part(j, &s);
        fn(ctx, &s);
        n++;
        if (flags & ENC_FLAG_DRAW) n += draw_negatives(j, &s, fn, ctx);
      } else {
        j->c.corrupt++;
      }
      free(vals[v]);
      mtld_store_set_partition(j->st, x->partition); /* scale-out: the delete moves with it */
      mtld_store_delete(j->st, MTLD_CF_PENDING, keys[v], KEY_LEN);
      mtld_store_set_partition(j->st, -1);
      v++;
      entry_free(j, e);
    }
  }
  j->c.released += n;
  return n;
}

int mtld_joiner_shape_advice(const mtld_joiner_config_t *cfg,
                             const uint64_t n_by_type[MTLD_N_EVENT_TYPES], char *buf, size_t len) {
  uint64_t imp = n_by_type[MTLD_EV_IMPRESSION - 1], clk = n_by_type[MTLD_EV_CLICK - 1],
           cart = n_by_type[MTLD_EV_ADD_TO_CART - 1], buy = n_by_type[MTLD_EV_PURCHASE - 1],
           rev = n_by_type[MTLD_EV_REVIEW - 1];
  if (cfg->mode == MTLD_JOIN_IMPRESSIONS && imp == 0 && clk + cart + buy > 0) {
    snprintf(buf, len,
             "the stream has no IMPRESSION events (%" PRIu64 " clicks, %" PRIu64 " carts, %" PRIu64
             " purchases, %" PRIu64 " reviews): joiner.mode = \"impressions\" makes samples only "
             "from impressions%s; for a click-only stream set joiner.mode = "
             "\"sampled_negatives\" (README, \"Your own data\")",
             clk, cart, buy, rev, rev ? " and reviews" : "");
    return 1;
  }
  if (cfg->mode == MTLD_JOIN_SAMPLED_NEGATIVES && imp > 0) {
    snprintf(buf, len,
             "the stream has %" PRIu64 " IMPRESSION events, which joiner.mode = "
             "\"sampled_negatives\" ignores (it draws negatives instead): with real impressions "
             "set joiner.mode = \"impressions\" (README, \"Your own data\")",
             imp);
    return 1;
  }
  return 0;
}

size_t mtld_joiner_pending_count(const mtld_joiner_t *j) {
  return j->n_live - j->n_item_ev;
}

int64_t mtld_joiner_next_deadline(const mtld_joiner_t *j) {
  return j->n_heap ? j->heap[0].deadline : INT64_MAX;
}

void mtld_joiner_counters(const mtld_joiner_t *j, mtld_joiner_counters_t *out) {
  *out = j->c;
}

void mtld_joiner_counters_committed(const mtld_joiner_t *j, mtld_joiner_counters_t *out) {
  *out = j->c_committed;
}

void mtld_joiner_counters_commit(mtld_joiner_t *j) {
  j->c_committed = j->c;
}

void mtld_joiner_counters_rollback(mtld_joiner_t *j) {
  j->c = j->c_committed;
}

size_t mtld_joiner_memory_bytes(const mtld_joiner_t *j) {
  size_t n = sizeof *j + (size_t)j->cap_ent * sizeof(entry_t) + j->cap_heap * sizeof(heap_el_t) +
             j->ring_map.cap * sizeof(cslot_t) + (size_t)j->cap_rings * sizeof(ring_t);
  for (int w = 0; w < N_IDX; w++) n += j->idx[w].cap * sizeof(cslot_t);
  for (int32_t r = 0; r < j->n_rings; r++) n += (size_t)j->rings[r].n_alloc * sizeof(struct donor);
  return n;
}

void mtld_joiner_render_metrics(const mtld_joiner_t *j, mtld_metrics_buf_t *b) {
  mtld_metrics_family(b, "mtld_joiner_pending", "gauge", "Samples waiting for their labels.");
  mtld_metrics_sample(b, "mtld_joiner_pending", NULL, (double)mtld_joiner_pending_count(j));
  mtld_metrics_family(b, "mtld_joiner_memory_bytes", "gauge",
                      "Bytes allocated for the joiner's in-memory indexes (entries, release "
                      "heap, id maps, donor rings); the samples themselves are in the store.");
  mtld_metrics_sample(b, "mtld_joiner_memory_bytes", NULL, (double)mtld_joiner_memory_bytes(j));
  /* the ledger, as committed: every event given is in one outcome, every
   * sample opened is released, pending or dropped */
  const mtld_joiner_counters_t *c = &j->c_committed;
  const char *imp = mtld_event_type_name(MTLD_EV_IMPRESSION),
             *rev = mtld_event_type_name(MTLD_EV_REVIEW),
             *clk = mtld_event_type_name(MTLD_EV_CLICK),
             *cart = mtld_event_type_name(MTLD_EV_ADD_TO_CART),
             *buy = mtld_event_type_name(MTLD_EV_PURCHASE);
  struct {
    const char *type, *outcome;
    uint64_t n;
  } ev[] = {
      {imp, "opened", c->opened - c->positives},
      {imp, "duplicate_sample", c->duplicate_sample[0]},
      {rev, "opened", c->reviews},
      {rev, "duplicate_sample", c->duplicate_sample[1]},
      {clk, "attached", c->clicked - c->positives},
      {clk, "opened_positive", c->positives},
      {clk, "duplicate_sample", c->duplicate_sample[2]},
      {clk, "duplicate_click", c->duplicate_click},
      {clk, "no_impression", c->unmatched_click - c->late_click},
      {clk, "after_deadline", c->late_click},
      {cart, "attached", c->carted},
      {cart, "repeated", c->repeated_cart},
      {cart, "no_clicked_sample", c->unmatched_cart - c->late_cart},
      {cart, "after_deadline", c->late_cart},
      {buy, "attached", c->purchased},
      {buy, "repeated", c->repeated_purchase},
      {buy, "no_clicked_sample", c->unmatched_purchase - c->late_purchase},
      {buy, "after_deadline", c->late_purchase},
  };
  mtld_metrics_family(b, "mtld_joiner_events_total", "counter",
                      "Events the joiner handled, by type and outcome (opened a sample, attached "
                      "a label to one; the others added nothing: duplicate_sample: its sample "
                      "was pending already).");
  for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
    mtld_metrics_label_t l[2] = {{"type", ev[i].type}, {"outcome", ev[i].outcome}};
    mtld_metrics_sample_kv(b, "mtld_joiner_events_total", l, 2, (double)ev[i].n);
  }
  mtld_metrics_family(b, "mtld_joiner_samples_total", "counter",
                      "Samples the joiner opened, and how they ended (opened = released + "
                      "pending + dropped).");
  mtld_metrics_sample(b, "mtld_joiner_samples_total", "outcome=\"opened\"",
                      (double)(c->opened + c->reviews + c->negatives_sampled));
  mtld_metrics_sample(b, "mtld_joiner_samples_total", "outcome=\"released\"", (double)c->released);
  mtld_metrics_sample(b, "mtld_joiner_samples_total", "outcome=\"dropped_corrupt\"",
                      (double)c->corrupt);
  mtld_metrics_family(b, "mtld_joiner_negatives_sampled_total", "counter",
                      "Of the samples opened: negatives drawn for clicks (sampled negatives).");
  mtld_metrics_sample(b, "mtld_joiner_negatives_sampled_total", NULL, (double)c->negatives_sampled);
}
