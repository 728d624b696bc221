/* rank.h - progressive ranking evaluation of click streams: HR@K and MRR@K
 * of the clicked ("next") item among the catalog seen so far, for the model
 * and for a popularity baseline, each click scored before it is learnt.
 *
 * The catalog: the items of the last `candidates` distinct clicked items
 * (most recently clicked kept), each with its item part as of its latest
 * click (item id, category id and the item-only dense features the caller
 * names, as sampled negatives use them).  Every `every`-th click (label
 * click = 1) is evaluated: the click's sample is copied once per catalog
 * item with that item's part swapped in and scored by the model's click task
 * in minibatches (the clicked item's own catalog entry included, so all
 * candidates are built the same way); its rank = 1 + candidates scored
 * higher + half the ties.  A clicked item not yet in the catalog is a miss.
 * The popularity baseline ranks the same candidates by their click counts
 * so far, on the same evaluated clicks.  Then the click's item enters the
 * catalog (or moves to its front) and its count grows.
 * Why bounded: scoring the whole catalog for every click would cost
 * (catalog size) forward passes per click; `candidates` bounds the cost per
 * evaluated click and `every` spreads it (defaults 500 and 100: at most 5
 * forward passes per click, against 1 + K trained samples; a click whose
 * item is not in the catalog is a miss without scoring).  A bounded
 * catalog of recent items makes hits easier than over the whole catalog,
 * for the model and the baseline alike.
 * Not part of the checkpoint: after a restart the catalog and the counts
 * start empty.  Deterministic; single-threaded: owned by its trainer. */
#ifndef MTLD_RANK_H
#define MTLD_RANK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trainer/model.h"
#include "trainer/sample.h"
#include "common/status.h"

#define MTLD_RANK_MAX_ITEM_DENSE 32

typedef struct {
  int k;          /* HR@K, MRR@K; 0 = ranking evaluation off */
  int every;      /* evaluate every N-th click (>= 1) */
  int candidates; /* catalog bound (>= 1) */
  int task;       /* the model's task scored (a binary click task) */
  int n_item_dense;
  int item_dense[MTLD_RANK_MAX_ITEM_DENSE]; /* dense positions of the item part */
  int n_item_fields;
  int item_fields[MTLD_MAX_FIELDS]; /* further fields of the item part (its attributes) */
} mtld_rank_config_t;

typedef struct {
  uint64_t clicks;        /* clicks seen */
  uint64_t evaluated;     /* clicks evaluated */
  uint64_t in_catalog;    /* evaluated clicks whose item was in the catalog */
  double hr, mrr;         /* model: HR@K, MRR@K over the evaluated clicks (NAN before any) */
  double pop_hr, pop_mrr; /* popularity baseline, same clicks and candidates */
  int k, catalog;         /* K, items in the catalog now */
} mtld_rank_summary_t;

typedef struct mtld_rank mtld_rank_t;

/* Creates the evaluation (cfg copied).  MTLD_OK, MTLD_ERR_CONFIG (bad k,
 * every, candidates, task or dense positions; err filled) or
 * MTLD_ERR_NOMEM. */
mtld_status_t mtld_rank_create(mtld_rank_t **out, const mtld_rank_config_t *cfg, char *err,
                               size_t errlen);
void mtld_rank_destroy(mtld_rank_t *r);

/* Evaluates the clicks among s[0..n) (when their turn comes) with model m
 * as it stands, then adds them to the catalog, in order.  Call before the
 * model learns from s.  Scoring uses m's forward pass (no model state
 * changes), so it must not come between a forward and its backward. */
void mtld_rank_observe(mtld_rank_t *r, mtld_model_t *m, const mtld_sample_t *s, int n);

void mtld_rank_get(const mtld_rank_t *r, mtld_rank_summary_t *out);

/* One line "rank k=.. evaluated=.. hr=.. mrr=.. pop_hr=.. pop_mrr=.. ...". */
void mtld_rank_print(const mtld_rank_t *r, FILE *f);

size_t mtld_rank_memory_bytes(const mtld_rank_t *r);

#endif
