/* test_userrows.c - user rows carried with their partition
 * (daemon/userrows.h): the record's encoding (round trip for Adagrad and
 * Adam rows, refusals of a wrong key, length, version or dimension) and the
 * embedding table's row export / import (trainer/embed.h): a row trained in
 * one table, exported, encoded, decoded and imported into a fresh table
 * with the same configuration reads back identical there (weights,
 * optimiser state, last use, admission), and a dead row's import only
 * raises the admission count. */
#include <stdlib.h>
#include <string.h>

#include "daemon/userrows.h"
#include "tests/unit/check.h"

static void test_encoding(void) {
  for (int adam = 0; adam <= 1; adam++) {
    mtld_userrow_t r = {.user = 0x1122334455667788ULL,
                        .live = 1,
                        .adam = adam,
                        .dim = 4,
                        .last_used = -12345,
                        .count = 70000,
                        .acc = 0.25f};
    for (int j = 0; j < 12; j++) r.buf[j] = (float)j * 0.5f - 1.0f;
    r.w = r.buf;
    r.m = r.buf + 4;
    r.v = r.buf + 8;
    size_t n = mtld_userrows_value_len(4, adam);
    CHECK(n == 20 + 16 * (adam ? 3u : 1u));
    uint8_t *v = malloc(n), k[MTLD_USERROWS_KEY_LEN];
    mtld_userrows_encode(&r, v);
    mtld_userrows_key(k, r.user);
    CHECK(k[0] == MTLD_CHANGELOG_KIND_USERROW && k[0] >= MTLD_CF_COUNT);
    mtld_userrow_t d;
    CHECK(mtld_userrows_decode(&d, k, sizeof k, v, n) == MTLD_OK);
    CHECK(d.user == r.user && d.live == 1 && d.adam == adam && d.dim == 4 &&
          d.last_used == -12345 && d.count == 70000 && d.acc == 0.25f);
    CHECK(memcmp(d.w, r.w, 16) == 0);
    if (adam)
      CHECK(memcmp(d.m, r.m, 16) == 0 && memcmp(d.v, r.v, 16) == 0);
    else
      CHECK(d.m == NULL && d.v == NULL);
    /* refusals */
    CHECK(mtld_userrows_decode(&d, k, sizeof k, v, n - 1) == MTLD_ERR_CORRUPT);
    CHECK(mtld_userrows_decode(&d, k, sizeof k - 1, v, n) == MTLD_ERR_CORRUPT);
    k[0] = MTLD_CF_USER;
    CHECK(mtld_userrows_decode(&d, k, sizeof k, v, n) == MTLD_ERR_CORRUPT);
    k[0] = MTLD_CHANGELOG_KIND_USERROW;
    v[2] = 0;
    v[3] = 0;
    CHECK(mtld_userrows_decode(&d, k, sizeof k, v, n) == MTLD_ERR_CORRUPT); /* dim 0 */
    v[2] = 4;
    v[0] = 2;
    CHECK(mtld_userrows_decode(&d, k, sizeof k, v, n) == MTLD_ERR_SCHEMA);
    free(v);
  }
}

static void test_export_import(int optim) {
  enum { ROWS = 64, DIM = 4 };
  char err[256];
  mtld_embed_config_t cfg = {.optim = optim,
                             .lr = 0.1f,
                             .adagrad_init = 0.1f,
                             .beta1 = 0.9f,
                             .beta2 = 0.999f,
                             .eps = 1e-8f,
                             .init_scale = 0.05f,
                             .admit_after = 2,
                             .expire_ms = 0};
  float wa[ROWS * DIM], wb[ROWS * DIM];
  mtld_embed_t a, b;
  CHECK(mtld_embed_init(&a, wa, ROWS, DIM, 7, &cfg, 16, err, sizeof err) == MTLD_OK);
  CHECK(mtld_embed_init(&b, wb, ROWS, DIM, 7, &cfg, 16, err, sizeof err) == MTLD_OK);
  const uint64_t user = 4242, rare = 777;
  /* train user's row in a: admitted after two touches, then a few steps */
  for (int step = 0; step < 5; step++) {
    mtld_embed_touch(&a, user, 1000 + step, 1);
    int32_t r = mtld_embed_find(&a, user, 1000 + step);
    if (r >= 0) {
      float g[DIM] = {0.3f, -0.2f, 0.1f * (float)step, 0.05f};
      mtld_embed_grad_add(&a, r, g);
      mtld_embed_apply(&a);
    }
  }
  mtld_embed_touch(&a, rare, 2000, 1); /* counted once: not admitted, dead row */
  CHECK(mtld_embed_find(&a, user, 2000) >= 0);
  CHECK(mtld_embed_find(&b, user, 2000) < 0);

  /* export, through the record, import into b */
  mtld_userrow_t r = {.user = user, .adam = optim == MTLD_EMB_ADAM, .dim = DIM};
  float *w = r.buf, *m = r.buf + DIM, *v = r.buf + 2 * DIM;
  r.w = w;
  r.m = m;
  r.v = v;
  r.live = mtld_embed_row_export(&a, user, w, m, v, &r.acc, &r.last_used, &r.count);
  CHECK(r.live == 1 && r.last_used == 1004 && r.count == 5);
  size_t n = mtld_userrows_value_len(DIM, r.adam);
  uint8_t val[20 + 3 * DIM * 4], key[MTLD_USERROWS_KEY_LEN];
  mtld_userrows_encode(&r, val);
  mtld_userrows_key(key, user);
  mtld_userrow_t d;
  CHECK(mtld_userrows_decode(&d, key, sizeof key, val, n) == MTLD_OK);
  mtld_embed_row_import(&b, d.user, d.live, d.w, d.m, d.v, d.acc, d.last_used, d.count);
  int32_t ra = mtld_embed_find(&a, user, 2000), rb = mtld_embed_find(&b, user, 2000);
  CHECK(ra >= 0 && ra == rb);
  CHECK(memcmp(wa + ra * DIM, wb + rb * DIM, sizeof(float) * DIM) == 0);
  CHECK(a.acc[ra] == b.acc[rb] && a.last_used[ra] == b.last_used[rb]);
  if (optim == MTLD_EMB_ADAM)
    CHECK(memcmp(a.m + ra * DIM, b.m + rb * DIM, sizeof(float) * DIM) == 0 &&
          memcmp(a.v + ra * DIM, b.v + rb * DIM, sizeof(float) * DIM) == 0);
  CHECK(b.stats.live_rows == 1);

  /* the rare id: dead, count 1; its import brings no row, only the count
   * (one more occurrence in b admits it, as it would have in a) */
  mtld_userrow_t q = {.user = rare, .adam = r.adam, .dim = DIM, .w = w, .m = m, .v = v};
  q.live = mtld_embed_row_export(&a, rare, w, m, v, &q.acc, &q.last_used, &q.count);
  CHECK(q.live == 0 && q.count == 1);
  mtld_embed_row_import(&b, rare, q.live, q.w, q.m, q.v, q.acc, q.last_used, q.count);
  CHECK(mtld_embed_find(&b, rare, 2000) < 0 && b.stats.live_rows == 1);
  mtld_embed_touch(&b, rare, 2001, 1);
  CHECK(mtld_embed_find(&b, rare, 2001) >= 0);
  mtld_embed_free(&a);
  mtld_embed_free(&b);
}

int main(void) {
  test_encoding();
  test_export_import(MTLD_EMB_ADAGRAD);
  test_export_import(MTLD_EMB_ADAM);
  return CHECK_DONE();
}
