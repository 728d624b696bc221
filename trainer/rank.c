/* rank.c - progressive HR@K / MRR@K of clicked items (see rank.h). */
#include "trainer/rank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint64_t item, category;
  float dense[MTLD_RANK_MAX_ITEM_DENSE];
  uint64_t fields[MTLD_MAX_FIELDS]; /* cfg.item_fields' ids */
  uint64_t clicks;                  /* popularity so far */
  uint64_t last_seen;               /* click number of its latest click */
} cand_t;

struct mtld_rank {
  mtld_rank_config_t cfg;
  cand_t *cat; /* [cfg.candidates] */
  int n_cat;
  mtld_sample_t *buf; /* [batch size] candidate samples */
  int buf_cap;
  float *score; /* [cfg.candidates] */
  uint64_t clicks, evaluated, in_catalog;
  uint64_t hits, pop_hits;
  double rr, pop_rr;
};

mtld_status_t mtld_rank_create(mtld_rank_t **out, const mtld_rank_config_t *cfg, char *err,
                               size_t errlen) {
  *out = NULL;
  if (cfg->k < 1 || cfg->every < 1 || cfg->candidates < 1 || cfg->task < 0 ||
      cfg->task >= MTLD_MAX_TASKS || cfg->n_item_dense < 0 ||
      cfg->n_item_dense > MTLD_RANK_MAX_ITEM_DENSE) {
    snprintf(err, errlen, "rank: need k, every and candidates >= 1 and a task");
    return MTLD_ERR_CONFIG;
  }
  for (int i = 0; i < cfg->n_item_fields; i++)
    if (cfg->n_item_fields > MTLD_MAX_FIELDS || cfg->item_fields[i] < 0 ||
        cfg->item_fields[i] >= MTLD_MAX_FIELDS) {
      snprintf(err, errlen, "rank: item field %d out of range", cfg->item_fields[i]);
      return MTLD_ERR_CONFIG;
    }
  for (int i = 0; i < cfg->n_item_dense; i++)
    if (cfg->item_dense[i] < 0 || cfg->item_dense[i] >= MTLD_MAX_DENSE) {
      snprintf(err, errlen, "rank: item dense position %d out of range", cfg->item_dense[i]);
      return MTLD_ERR_CONFIG;
    }
  mtld_rank_t *r = calloc(1, sizeof(*r));
  if (!r) return MTLD_ERR_NOMEM;
  r->cfg = *cfg;
  r->cat = calloc((size_t)cfg->candidates, sizeof(cand_t));
  r->score = calloc((size_t)cfg->candidates, sizeof(float));
  if (!r->cat || !r->score) {
    mtld_rank_destroy(r);
    return MTLD_ERR_NOMEM;
  }
  *out = r;
  return MTLD_OK;
}

void mtld_rank_destroy(mtld_rank_t *r) {
  if (!r) return;
  free(r->cat);
  free(r->buf);
  free(r->score);
  free(r);
}

static int is_click(const mtld_sample_t *s) {
  return ((s->label_mask >> MTLD_LABEL_CLICK) & 1) && s->labels[MTLD_LABEL_CLICK] > 0.5f &&
         s->n_fields > MTLD_FIELD_ITEM && s->fields[MTLD_FIELD_ITEM] != 0;
}

static int find(const mtld_rank_t *r, uint64_t item) {
  for (int i = 0; i < r->n_cat; i++)
    if (r->cat[i].item == item) return i;
  return -1;
}

/* 1-based rank of score[target] among score[0..n): ties count half. */
static double rank_of(const float *score, int n, int target) {
  double above = 0.0, ties = 0.0;
  for (int i = 0; i < n; i++) {
    if (i == target) continue;
    if (score[i] > score[target])
      above += 1.0;
    else if (score[i] == score[target])
      ties += 1.0;
  }
  return 1.0 + above + 0.5 * ties;
}

static void evaluate(mtld_rank_t *r, mtld_model_t *m, const mtld_sample_t *s) {
  r->evaluated++;
  int target = find(r, s->fields[MTLD_FIELD_ITEM]);
  if (target < 0) return; /* a new item: no catalog could have held it */
  r->in_catalog++;
  const mtld_model_config_t *mc = mtld_model_config(m);
  int B = mc->batch_size, T = mc->n_tasks;
  if (r->buf_cap < B) {
    mtld_sample_t *b = realloc(r->buf, sizeof(*b) * (size_t)B);
    if (!b) return; /* counted as evaluated in the catalog but not ranked: a miss */
    r->buf = b;
    r->buf_cap = B;
  }
  for (int i0 = 0; i0 < r->n_cat; i0 += B) {
    int n = r->n_cat - i0 < B ? r->n_cat - i0 : B;
    for (int i = 0; i < n; i++) {
      const cand_t *c = &r->cat[i0 + i];
      mtld_sample_t *x = &r->buf[i];
      *x = *s;
      x->fields[MTLD_FIELD_ITEM] = c->item;
      x->fields[MTLD_FIELD_CATEGORY] = c->category;
      for (int d = 0; d < r->cfg.n_item_dense; d++)
        if (r->cfg.item_dense[d] < x->n_dense) x->dense[r->cfg.item_dense[d]] = c->dense[d];
      for (int f = 0; f < r->cfg.n_item_fields; f++)
        if (r->cfg.item_fields[f] < x->n_fields) x->fields[r->cfg.item_fields[f]] = c->fields[f];
    }
    mtld_model_forward(m, r->buf, n);
    const float *p = mtld_model_preds(m);
    for (int i = 0; i < n; i++) r->score[i0 + i] = p[i * T + r->cfg.task];
  }
  double rank = rank_of(r->score, r->n_cat, target);
  if (rank <= r->cfg.k) {
    r->hits++;
    r->rr += 1.0 / rank;
  }
  for (int i = 0; i < r->n_cat; i++) r->score[i] = (float)r->cat[i].clicks;
  double pop = rank_of(r->score, r->n_cat, target);
  if (pop <= r->cfg.k) {
    r->pop_hits++;
    r->pop_rr += 1.0 / pop;
  }
}

/* The click's item enters the catalog (replacing the least recently
 * clicked one when full) with its item part as of this click. */
static void learn(mtld_rank_t *r, const mtld_sample_t *s) {
  int i = find(r, s->fields[MTLD_FIELD_ITEM]);
  if (i < 0) {
    if (r->n_cat < r->cfg.candidates) {
      i = r->n_cat++;
    } else {
      i = 0;
      for (int j = 1; j < r->n_cat; j++)
        if (r->cat[j].last_seen < r->cat[i].last_seen) i = j;
    }
    memset(&r->cat[i], 0, sizeof(r->cat[i]));
  }
  cand_t *c = &r->cat[i];
  c->item = s->fields[MTLD_FIELD_ITEM];
  c->category = s->n_fields > MTLD_FIELD_CATEGORY ? s->fields[MTLD_FIELD_CATEGORY] : 0;
  for (int d = 0; d < r->cfg.n_item_dense; d++)
    c->dense[d] = r->cfg.item_dense[d] < s->n_dense ? s->dense[r->cfg.item_dense[d]] : 0.0f;
  for (int f = 0; f < r->cfg.n_item_fields; f++)
    c->fields[f] = r->cfg.item_fields[f] < s->n_fields ? s->fields[r->cfg.item_fields[f]] : 0;
  c->clicks++;
  c->last_seen = r->clicks;
}

void mtld_rank_observe(mtld_rank_t *r, mtld_model_t *m, const mtld_sample_t *s, int n) {
  for (int b = 0; b < n; b++) {
    if (!is_click(&s[b])) continue;
    r->clicks++;
    if (r->clicks % (uint64_t)r->cfg.every == 0) evaluate(r, m, &s[b]);
    learn(r, &s[b]);
  }
}

void mtld_rank_get(const mtld_rank_t *r, mtld_rank_summary_t *out) {
  double n = (double)r->evaluated;
  out->clicks = r->clicks;
  out->evaluated = r->evaluated;
  out->in_catalog = r->in_catalog;
  out->hr = n ? (double)r->hits / n : NAN;
  out->mrr = n ? r->rr / n : NAN;
  out->pop_hr = n ? (double)r->pop_hits / n : NAN;
  out->pop_mrr = n ? r->pop_rr / n : NAN;
  out->k = r->cfg.k;
  out->catalog = r->n_cat;
}

void mtld_rank_print(const mtld_rank_t *r, FILE *f) {
  mtld_rank_summary_t s;
  mtld_rank_get(r, &s);
  fprintf(f,
          "rank k=%d clicks=%llu evaluated=%llu in_catalog=%llu catalog=%d hr=%.4f mrr=%.4f "
          "pop_hr=%.4f pop_mrr=%.4f\n",
          s.k, (unsigned long long)s.clicks, (unsigned long long)s.evaluated,
          (unsigned long long)s.in_catalog, s.catalog, s.hr, s.mrr, s.pop_hr, s.pop_mrr);
}

size_t mtld_rank_memory_bytes(const mtld_rank_t *r) {
  return sizeof(*r) + sizeof(cand_t) * (size_t)r->cfg.candidates +
         sizeof(float) * (size_t)r->cfg.candidates + sizeof(mtld_sample_t) * (size_t)r->buf_cap;
}
