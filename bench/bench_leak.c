/* bench_leak.c - how much of a sample dump's click label the item's "seen
 * before" state gives away (the leak sampled negatives must not have; see
 * features/joiner.h).
 *
 *   bench_leak SAMPLES [HALF_LIVES]
 *
 * SAMPLES: a trainer.dump_samples file.  The rule scores a sample 1 when its
 * item features say the item was never seen (its decayed event counts, the
 * first 5 * HALF_LIVES of mtld_features_dense_item_slots (HALF_LIVES default
 * 3), all 0; the rates are never 0, they start at their priors), else 0.  Prints that rule's AUC
 * against the click label (0.5 = no information, ties count half) and the share of never-seen items
 * among positives and negatives. */
#include <stdio.h>
#include <stdlib.h>

#include "features/features.h"
#include "trainer/pvmetrics.h"
#include "trainer/sampledump.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_leak SAMPLES [HALF_LIVES]\n");
    return 2;
  }
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  if (argc > 2) def.n_half_lives = atoi(argv[2]);
  if (def.n_half_lives < 1 || def.n_half_lives > MTLD_MAX_HALF_LIVES) return 2;
  int slots[MTLD_FEATURES_ITEM_DENSE_MAX];
  mtld_features_dense_item_slots(&def, slots);
  int ns = 5 * def.n_half_lives; /* the item's decayed counts come first */
  FILE *f = fopen(argv[1], "rb");
  char err[256];
  if (!f || mtld_sampledump_read_header(f, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "bench_leak: %s: %s\n", argv[1], f ? err : "cannot open");
    return 1;
  }
  size_t n = 0, cap = 1 << 16, pos = 0, never_pos = 0, never_neg = 0;
  float *score = malloc(cap * sizeof(float)), *label = malloc(cap * sizeof(float));
  mtld_sample_t s;
  while (score && label && mtld_sampledump_read(f, &s) == 1) {
    if (!((s.label_mask >> MTLD_LABEL_CLICK) & 1)) continue;
    int never = 1;
    for (int i = 0; i < ns; i++)
      if (slots[i] < s.n_dense && s.dense[slots[i]] != 0.0f) never = 0;
    int y = s.labels[MTLD_LABEL_CLICK] > 0.5f;
    if (n == cap) {
      cap *= 2;
      score = realloc(score, cap * sizeof(float));
      label = realloc(label, cap * sizeof(float));
      if (!score || !label) break;
    }
    score[n] = (float)never;
    label[n] = (float)y;
    n++;
    pos += (size_t)y;
    if (never) *(y ? &never_pos : &never_neg) += 1;
  }
  fclose(f);
  if (!score || !label) return 1;
  printf("samples %zu positives %zu: item never seen: positives %.3f, negatives %.3f; "
         "rule AUC %.4f\n",
         n, pos, pos ? (double)never_pos / pos : 0.0, n > pos ? (double)never_neg / (n - pos) : 0.0,
         mtld_auc_exact(score, label, n));
  free(score);
  free(label);
  return 0;
}
