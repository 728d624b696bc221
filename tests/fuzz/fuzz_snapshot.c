/* fuzz_snapshot.c - libFuzzer target: the serving snapshot reader.
 *
 * Any image must load or be refused with MTLD_ERR_CORRUPT (or NOMEM) and a
 * message, never crash, leak or allocate without bound.  Random bytes rarely
 * get past the magic, so the first input byte picks a mode:
 *   0  the rest of the input is the image;
 *   1  the rest are patches (offset hi, offset lo, xor) applied to a small
 *      valid snapshot built at start-up;
 *   2  the same patches, then every checksum recomputed (tensors and file),
 *      so that the header's contents reach the semantic checks and the model
 *      construction;
 *   3  like 2, patches confined to the header.
 * A loaded model must score a sample. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "schemas/snapshot.pb-c.h"
#include "durable/snapshot.h"

static unsigned char *base;
static size_t base_len;

static void build_base(void) {
  mtld_model_config_t c;
  mtld_model_config_default(&c);
  c.n_fields = 3;
  c.fields[0].rows = 3;
  c.fields[1].rows = 2;
  c.fields[2].rows = 2;
  snprintf(c.fields[2].name, sizeof c.fields[2].name, "scenario");
  c.dim = 2;
  c.item_field = 1;
  c.category_field = -1;
  c.scenario_field = 2;
  c.seq_max = 2;
  c.n_dense = 2;
  c.n_experts = 2;
  c.n_expert_layers = 1;
  c.expert_layers[0] = 3;
  c.n_tower_layers = 1;
  c.tower_layers[0] = 2;
  c.n_tasks = 2;
  c.batch_size = 4;
  c.pv_window = 16;
  c.pv_max_scenarios = 2;
  char err[256];
  mtld_trainer_t *t = NULL;
  if (mtld_trainer_create(&t, &c, err, sizeof err) != MTLD_OK) abort();
  mtld_sample_t s;
  for (int i = 0; i < 12; i++) {
    memset(&s, 0, sizeof s);
    s.sample_id = (uint64_t)i + 1;
    s.time_ms = 1000 + i;
    s.weight = 1.0f;
    s.n_fields = 3;
    s.fields[0] = 1 + (uint64_t)i % 3;
    s.fields[1] = 1 + (uint64_t)i % 2;
    s.fields[2] = 7;
    s.scenario_id = 7;
    s.n_dense = 2;
    s.dense[0] = (float)i;
    s.dense[1] = (float)(i % 3);
    s.seq_len = 1;
    s.seq_items[0] = 2;
    s.kind = MTLD_SAMPLE_IMPRESSION;
    s.labels[MTLD_LABEL_CLICK] = (float)(i % 2);
    s.label_mask = 1u << MTLD_LABEL_CLICK | 1u << MTLD_LABEL_PURCHASE;
    mtld_trainer_observe(t, &s, NULL);
  }
  mtld_source_offset_t off = {.topic = "t", .partition = 1, .next_offset = 12, .max_time_ms = 1011};
  mtld_snapshot_meta_t meta = {.watermark_ms = 1000, .n_offsets = 1, .offsets = &off};
  meta.features.n_half_lives = 1;
  meta.features.half_life_s[0] = 60;
  mtld_snapshot_t *snap = NULL;
  void *img = NULL;
  if (mtld_snapshot_capture(&snap, t, &meta, err, sizeof err) != MTLD_OK ||
      mtld_snapshot_encode(snap, &img, &base_len, err, sizeof err) != MTLD_OK)
    abort();
  base = img;
  mtld_snapshot_free(snap);
  mtld_trainer_destroy(t);
}

/* Recomputes the tensor checksums (re-packing the header) and the trailer.
 * Returns a new malloc'd image in *out (length *len), or NULL. */
static unsigned char *fix_checksums(const unsigned char *img, size_t len, size_t *out_len) {
  if (len < 24) return NULL;
  uint32_t hlen;
  memcpy(&hlen, img + 12, 4);
  if (hlen > len - 24) return NULL;
  Mtld__SnapshotHeader *h = mtld__snapshot_header__unpack(NULL, hlen, img + 16);
  if (!h) return NULL;
  size_t start = (16 + (size_t)hlen + 63) & ~(size_t)63;
  size_t payload = start <= len - 8 ? len - 8 - start : 0;
  for (size_t i = 0; i < h->n_tensors; i++) {
    Mtld__SnapshotTensor *t = h->tensors[i];
    if (t->offset <= payload && t->length <= payload - t->offset)
      t->xxh64 = XXH64(img + start + t->offset, t->length, 0);
  }
  size_t nh = mtld__snapshot_header__get_packed_size(h);
  size_t nstart = (16 + nh + 63) & ~(size_t)63;
  size_t n = nstart + payload + 8;
  unsigned char *out = calloc(1, n);
  if (out) {
    memcpy(out, img, 16);
    uint32_t nhl = (uint32_t)nh;
    memcpy(out + 12, &nhl, 4);
    mtld__snapshot_header__pack(h, out + 16);
    if (payload) memcpy(out + nstart, img + start, payload);
    uint64_t sum = XXH64(out, n - 8, 0);
    memcpy(out + n - 8, &sum, 8);
    *out_len = n;
  }
  mtld__snapshot_header__free_unpacked(h, NULL);
  return out;
}

static void try_load(const unsigned char *img, size_t len) {
  mtld_model_t *m = NULL;
  mtld_snapshot_info_t info;
  char err[512] = "";
  mtld_status_t st = mtld_snapshot_load_mem(img, len, &m, &info, err, sizeof err);
  if (st == MTLD_OK) {
    if (!m) __builtin_trap();
    mtld_sample_t s;
    memset(&s, 0, sizeof s);
    s.n_fields = 3;
    s.fields[0] = 1;
    s.fields[1] = 2;
    s.seq_len = 1;
    s.seq_items[0] = 1;
    s.n_dense = 1;
    s.time_ms = 1005;
    float p[MTLD_MAX_TASKS], cond[MTLD_MAX_TASKS];
    if (mtld_snapshot_score(m, &s, 1, p, cond) != MTLD_OK) __builtin_trap();
    mtld_snapshot_info_free(&info);
    mtld_model_destroy(m);
    return;
  }
  if (m || !err[0] || (st != MTLD_ERR_CORRUPT && st != MTLD_ERR_NOMEM)) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!base) build_base();
  if (size == 0) {
    try_load(base, base_len);
    return 0;
  }
  int mode = data[0] & 3;
  data++;
  size--;
  if (mode == 0) {
    try_load(data, size);
    return 0;
  }
  unsigned char *img = malloc(base_len);
  if (!img) return 0;
  memcpy(img, base, base_len);
  uint32_t hlen;
  memcpy(&hlen, base + 12, 4);
  for (size_t i = 0; i + 3 <= size; i += 3) {
    size_t off = (size_t)data[i] << 8 | data[i + 1];
    off = mode == 3 ? 16 + off % hlen : off % base_len;
    img[off] ^= data[i + 2];
  }
  if (mode == 1) {
    try_load(img, base_len);
  } else {
    size_t n = 0;
    unsigned char *fixed = fix_checksums(img, base_len, &n);
    if (fixed) try_load(fixed, n);
    free(fixed);
  }
  free(img);
  return 0;
}
