/* mtld-gen - deterministic synthetic e-commerce event stream with known truth.
 *
 * A latent-factor world (users, items, categories with vectors; lognormal
 * prices per category; Zipf-like item popularity; heterogeneous user
 * activity) and three scenarios (home_feed, search, product_page) with their
 * own click and conversion levels.  The click logit is the scenario's level
 * + affinity * <user, item> + item-effect * item quality + user-effect * the
 * user's propensity - 0.35 log(position) + a time-of-day wave; purchases
 * given a click follow the affinity, the quality and the price against its
 * category's.  Each impression's click probability and purchase-given-click
 * probability are known, and so is every review's expected rating, so the
 * truth file gives the oracle a model is measured against (printed: oracle
 * AUCs over the stream and over its last N impressions, and rating RMSE).
 *
 * --attr-effect X gives users and items named attributes (user age_level
 * and shopping_level, item brand and a daily discount) carried by every
 * event, with X times known effects in both logits (gen_age_click ...
 * below): the oracle includes them, and a model that is not given them has
 * to learn them through each user's and item's own id.  X = 0 (default)
 * emits no attribute and leaves the stream byte-identical.
 *
 * The oracle is what a model would reach with unlimited data: the per-user
 * and per-item terms have to be learnt from each user's and item's own
 * events.  A correctly specified logistic matrix factorisation fitted offline
 * on 500 impressions per user stayed 0.075 AUC below it (pure latent world,
 * 200 users, 500 items), so a stream meant to show how close a learner gets
 * needs thousands of impressions per user and per item (tools/demo.sh: 100
 * users, 200 items, 1M impressions).
 *
 * Same seed and options -> byte-identical output: own PRNG (xoshiro256**
 * seeded by splitmix64), the world and the impressions drawn from separate
 * streams, events sorted by (time, event id).  --bad-every N inserts a
 * malformed record of a rotating kind every Nth record, listed in the truth
 * file with the reason the daemon should reject it for. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/hash.h"
#include "daemon/decode.h"
#include "daemon/eventfile.h"
#include "features/event.h"
#include "tools/convert.h"
#include "tools/kafka_out.h"

/* ---- PRNG ---------------------------------------------------------------- */

typedef struct {
  uint64_t s[4];
} gen_rng_t;

static void rng_seed(gen_rng_t *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
  for (int i = 0; i < 4; i++) r->s[i] = mtld_splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(gen_rng_t *r) { /* xoshiro256** */
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

static double rng_u01(gen_rng_t *r) { /* [0, 1) */
  return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_gauss(gen_rng_t *r) { /* Box-Muller, one value per call */
  double u1 = 1.0 - rng_u01(r), u2 = rng_u01(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double rng_exp(gen_rng_t *r, double mean) {
  return -mean * log(1.0 - rng_u01(r));
}

/* Index i with cdf[i-1] <= u*total < cdf[i] (cdf ascending, n > 0). */
static size_t cdf_pick(const double *cdf, size_t n, double u) {
  double x = u * cdf[n - 1];
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cdf[mid] > x)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

static double sigmoid(double x) {
  return 1.0 / (1.0 + exp(-x));
}

/* ---- world --------------------------------------------------------------- */

#define GEN_N_SCEN 3
#define GEN_N_PREF 3

static const struct {
  const char *name;
  double share;      /* of impressions */
  double base_click; /* click logit intercept */
  double base_conv;  /* purchase-given-click logit intercept */
  double pref_bias;  /* probability the item comes from the user's preferred categories */
} gen_scen[GEN_N_SCEN] = {{"home_feed", 0.5, -2.9, -3.6, 0.0},
                          {"search", 0.3, -3.0, -3.3, 0.7},
                          {"product_page", 0.2, -3.2, -3.5, 0.6}};

typedef struct {
  int users, items, cats, dim;
  double *uvec, *ivec, *cvec; /* users x dim, items x dim, cats x dim */
  int *item_cat;              /* 0-based category of each item */
  double *item_price, *item_q, *cat_mu;
  double *user_cdf, *item_cdf;
  int *cat_items, *cat_start; /* items grouped by category, with offsets */
  double *cat_cdf;            /* per position in cat_items: popularity cdf within its category */
  int *user_pref;             /* users x GEN_N_PREF preferred categories */
  double *user_b;             /* users: propensity to click, N(0, 1) */
  /* attributes (--attr-effect): drawn from a stream of their own, so the
   * draws above do not move; used only when the effect is > 0 */
  int brands;
  unsigned char *user_age, *user_shop; /* users: age_level 0..5, shopping_level 0..2 */
  int *item_brand;                     /* items: brand 0..brands-1 */
  double *brand_click, *brand_conv;    /* brands: effects, N(0, 0.6^2) */
} gen_world_t;

/* Known effects of the attributes on the click and purchase logits, per
 * unit of --attr-effect.  age_level 1..6 (shares 10/25/25/20/12/8 %) and
 * shopping_level 1..3 (30/50/20 %) are user attributes; brand ("b-<n>", a
 * few hundred: items / 4, at most 300, each with N(0, 0.6^2) effects) and
 * discount (numeric, 0 or 0.1..0.5, drawn per item and day: 30 % of an
 * item's days are on discount) are item attributes. */
static const double gen_age_share[6] = {0.10, 0.25, 0.25, 0.20, 0.12, 0.08};
static const double gen_age_click[6] = {0.5, 0.3, 0.0, -0.2, -0.4, -0.6};
static const double gen_age_conv[6] = {-0.6, -0.2, 0.2, 0.4, 0.3, 0.0};
static const double gen_shop_share[3] = {0.30, 0.50, 0.20};
static const double gen_shop_click[3] = {-0.2, 0.0, 0.3};
static const double gen_shop_conv[3] = {-0.7, 0.0, 0.7};
#define GEN_DISC_CLICK 2.0 /* per unit of discount (0..0.5) */
#define GEN_DISC_CONV 3.0
#define GEN_MAX_BRANDS 300

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "mtld-gen: out of memory\n");
    exit(1);
  }
  return p;
}

static double dot(const double *a, const double *b, int d) {
  double s = 0;
  for (int k = 0; k < d; k++) s += a[k] * b[k];
  return s;
}

static void world_build(gen_world_t *w, uint64_t seed) {
  gen_rng_t r;
  rng_seed(&r, seed, 1);
  int D = w->dim;
  double sc = pow((double)D, -0.25); /* so that <u,i> has variance about 1 */
  w->cvec = xcalloc((size_t)w->cats * D, sizeof(double));
  w->cat_mu = xcalloc((size_t)w->cats, sizeof(double));
  for (int c = 0; c < w->cats; c++) {
    for (int k = 0; k < D; k++) w->cvec[(size_t)c * D + k] = 0.8 * sc * rng_gauss(&r);
    w->cat_mu[c] = 2.0 + 3.0 * rng_u01(&r); /* log price level: ~7 .. ~150 */
  }
  w->ivec = xcalloc((size_t)w->items * D, sizeof(double));
  w->item_cat = xcalloc((size_t)w->items, sizeof(int));
  w->item_price = xcalloc((size_t)w->items, sizeof(double));
  w->item_q = xcalloc((size_t)w->items, sizeof(double));
  for (int i = 0; i < w->items; i++) {
    int c = (int)(w->cats * pow(rng_u01(&r), 1.6)); /* uneven category sizes */
    if (c >= w->cats) c = w->cats - 1;
    w->item_cat[i] = c;
    for (int k = 0; k < D; k++)
      w->ivec[(size_t)i * D + k] = w->cvec[(size_t)c * D + k] + 0.6 * sc * rng_gauss(&r);
    double p = exp(w->cat_mu[c] + 0.5 * rng_gauss(&r));
    p = round(p * 100.0) / 100.0;
    w->item_price[i] = p < 0.5 ? 0.5 : p;
    w->item_q[i] = rng_gauss(&r);
  }
  /* popularity: Zipf over a random permutation of the items */
  int *perm = xcalloc((size_t)w->items, sizeof(int));
  for (int i = 0; i < w->items; i++) perm[i] = i;
  for (int i = w->items - 1; i > 0; i--) {
    int j = (int)(rng_u01(&r) * (i + 1));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  double *pop = xcalloc((size_t)w->items, sizeof(double));
  for (int rank = 0; rank < w->items; rank++) pop[perm[rank]] = pow(rank + 1.0, -0.9);
  free(perm);
  w->item_cdf = xcalloc((size_t)w->items, sizeof(double));
  double acc = 0;
  for (int i = 0; i < w->items; i++) w->item_cdf[i] = (acc += pop[i]);
  /* per-category lists and cdfs */
  w->cat_start = xcalloc((size_t)w->cats + 1, sizeof(int));
  for (int i = 0; i < w->items; i++) w->cat_start[w->item_cat[i] + 1]++;
  for (int c = 0; c < w->cats; c++) w->cat_start[c + 1] += w->cat_start[c];
  int *fill = xcalloc((size_t)w->cats, sizeof(int));
  w->cat_items = xcalloc((size_t)w->items, sizeof(int));
  w->cat_cdf = xcalloc((size_t)w->items, sizeof(double));
  for (int i = 0; i < w->items; i++) {
    int c = w->item_cat[i];
    w->cat_items[w->cat_start[c] + fill[c]++] = i;
  }
  for (int c = 0; c < w->cats; c++) {
    acc = 0;
    for (int p = w->cat_start[c]; p < w->cat_start[c + 1]; p++)
      w->cat_cdf[p] = (acc += pop[w->cat_items[p]]);
  }
  free(fill);
  free(pop);
  /* users: vectors, lognormal activity, preferred categories by affinity */
  w->uvec = xcalloc((size_t)w->users * D, sizeof(double));
  w->user_cdf = xcalloc((size_t)w->users, sizeof(double));
  w->user_pref = xcalloc((size_t)w->users * GEN_N_PREF, sizeof(int));
  acc = 0;
  for (int u = 0; u < w->users; u++) {
    double *uv = w->uvec + (size_t)u * D;
    for (int k = 0; k < D; k++) uv[k] = sc * rng_gauss(&r);
    w->user_cdf[u] = (acc += exp(1.0 * rng_gauss(&r)));
    double best[GEN_N_PREF];
    int *pref = w->user_pref + (size_t)u * GEN_N_PREF;
    for (int j = 0; j < GEN_N_PREF; j++) {
      best[j] = -INFINITY;
      pref[j] = 0;
    }
    for (int c = 0; c < w->cats; c++) {
      if (w->cat_start[c + 1] == w->cat_start[c]) continue; /* empty category */
      double a = dot(uv, w->cvec + (size_t)c * D, D);
      for (int j = 0; j < GEN_N_PREF; j++) {
        if (a > best[j]) {
          for (int m = GEN_N_PREF - 1; m > j; m--) {
            best[m] = best[m - 1];
            pref[m] = pref[m - 1];
          }
          best[j] = a;
          pref[j] = c;
          break;
        }
      }
    }
    for (int j = 1; j < GEN_N_PREF; j++) /* fewer non-empty categories than prefs */
      if (best[j] == -INFINITY) pref[j] = pref[0];
  }
  /* click propensities from a stream of their own: the draws above do not move */
  rng_seed(&r, seed, 3);
  w->user_b = xcalloc((size_t)w->users, sizeof(double));
  for (int u = 0; u < w->users; u++) w->user_b[u] = rng_gauss(&r);
  /* attributes from a fourth stream */
  rng_seed(&r, seed, 4);
  w->user_age = xcalloc((size_t)w->users, 1);
  w->user_shop = xcalloc((size_t)w->users, 1);
  for (int u = 0; u < w->users; u++) {
    double x = rng_u01(&r), y = rng_u01(&r);
    int l = 0;
    double acc_s = gen_age_share[0];
    while (l < 5 && x >= acc_s) acc_s += gen_age_share[++l];
    w->user_age[u] = (unsigned char)l;
    w->user_shop[u] = y < gen_shop_share[0] ? 0 : y < gen_shop_share[0] + gen_shop_share[1] ? 1 : 2;
  }
  w->brands = w->items / 4 < 1 ? 1 : w->items / 4 > GEN_MAX_BRANDS ? GEN_MAX_BRANDS : w->items / 4;
  w->brand_click = xcalloc((size_t)w->brands, sizeof(double));
  w->brand_conv = xcalloc((size_t)w->brands, sizeof(double));
  for (int b = 0; b < w->brands; b++) {
    w->brand_click[b] = 0.6 * rng_gauss(&r);
    w->brand_conv[b] = 0.6 * rng_gauss(&r);
  }
  w->item_brand = xcalloc((size_t)w->items, sizeof(int));
  for (int i = 0; i < w->items; i++) {
    int b = (int)(rng_u01(&r) * w->brands);
    w->item_brand[i] = b < w->brands ? b : w->brands - 1;
  }
}

/* An item's discount on the day of time t (0, or 0.1 .. 0.5): a hash of
 * (seed, item, day), so it takes no draw from the impression stream. */
static double item_discount(uint64_t seed, int item, int64_t t_ms) {
  int64_t day = t_ms / (86400 * INT64_C(1000));
  uint64_t h = mtld_mix64(seed ^ mtld_mix64((uint64_t)item * 0x9e3779b97f4a7c15ULL ^
                                            (uint64_t)day * 0xc2b2ae3d27d4eb4fULL));
  if ((h & 1023) >= 307) return 0; /* about 30 % of the days */
  return 0.1 * (double)(1 + (h >> 10) % 5);
}

static void world_free(gen_world_t *w) {
  free(w->uvec);
  free(w->ivec);
  free(w->cvec);
  free(w->item_cat);
  free(w->item_price);
  free(w->item_q);
  free(w->cat_mu);
  free(w->user_cdf);
  free(w->item_cdf);
  free(w->cat_items);
  free(w->cat_start);
  free(w->cat_cdf);
  free(w->user_pref);
  free(w->user_b);
  free(w->user_age);
  free(w->user_shop);
  free(w->item_brand);
  free(w->brand_click);
  free(w->brand_conv);
}

/* ---- events ------------------------------------------------------------- */

typedef struct {
  mtld_event_t *ev;
  size_t n, cap;
  double *ta, *tb; /* truth by event id: p_click & p_purchase_given_click, or E[rating] */
  size_t tcap;
} gen_events_t;

static mtld_event_t *events_add(gen_events_t *g) {
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 4096;
    g->ev = realloc(g->ev, g->cap * sizeof *g->ev);
    if (!g->ev) {
      fprintf(stderr, "mtld-gen: out of memory\n");
      exit(1);
    }
  }
  mtld_event_t *e = &g->ev[g->n++];
  memset(e, 0, sizeof *e);
  return e;
}

static void truth_set(gen_events_t *g, uint64_t id, double a, double b) {
  if (id >= g->tcap) {
    size_t cap = g->tcap ? g->tcap : 4096;
    while (cap <= id) cap *= 2;
    g->ta = realloc(g->ta, cap * sizeof(double));
    g->tb = realloc(g->tb, cap * sizeof(double));
    if (!g->ta || !g->tb) {
      fprintf(stderr, "mtld-gen: out of memory\n");
      exit(1);
    }
    for (size_t i = g->tcap; i < cap; i++) g->ta[i] = g->tb[i] = NAN;
    g->tcap = cap;
  }
  g->ta[id] = a;
  g->tb[id] = b;
}

static void set_scenario(mtld_event_t *e, int s) {
  snprintf(e->scenario, sizeof e->scenario, "%s", gen_scen[s].name);
  e->scenario_id = mtld_hash_id(e->scenario, strlen(e->scenario));
}

/* Attribute names and the hashed values of the categorical ones, built once. */
typedef struct {
  uint64_t age_level, shopping_level, brand, discount; /* name ids */
  uint64_t age_v[6], shop_v[3];                        /* value ids "1".."6", "1".."3" */
  uint64_t *brand_v;                                   /* value ids "b-<n>" */
} gen_attr_ids_t;

static void attr_ids_build(gen_attr_ids_t *ids, const gen_world_t *w) {
  char buf[32];
  ids->age_level = mtld_hash_id("age_level", 9);
  ids->shopping_level = mtld_hash_id("shopping_level", 14);
  ids->brand = mtld_hash_id("brand", 5);
  ids->discount = mtld_hash_id("discount", 8);
  for (int l = 0; l < 6; l++)
    ids->age_v[l] = mtld_hash_id(buf, (size_t)snprintf(buf, sizeof buf, "%d", l + 1));
  for (int l = 0; l < 3; l++)
    ids->shop_v[l] = mtld_hash_id(buf, (size_t)snprintf(buf, sizeof buf, "%d", l + 1));
  ids->brand_v = xcalloc((size_t)w->brands, sizeof(uint64_t));
  for (int b = 0; b < w->brands; b++)
    ids->brand_v[b] = mtld_hash_id(buf, (size_t)snprintf(buf, sizeof buf, "b-%d", b + 1));
}

/* Puts the user's and the item's attributes on an event (the item's
 * discount as of the event's time). */
static void set_attrs(mtld_event_t *e, const gen_attr_ids_t *ids, const gen_world_t *w,
                      uint64_t seed, int u, int item) {
  e->n_attrs = 0;
  e->attrs_num = 0;
  mtld_event_attr_set_str(e, ids->age_level, ids->age_v[w->user_age[u]]);
  mtld_event_attr_set_str(e, ids->shopping_level, ids->shop_v[w->user_shop[u]]);
  mtld_event_attr_set_str(e, ids->brand, ids->brand_v[w->item_brand[item]]);
  mtld_event_attr_set_num(e, ids->discount, item_discount(seed, item, e->time_ms));
}

static double phi(double x) {
  return 0.5 * erfc(-x / M_SQRT2);
}

typedef struct {
  int64_t by_type[MTLD_N_EVENT_TYPES][GEN_N_SCEN];
  /* per impression, for the oracle metrics */
  double *p_click, *p_ctcvr;
  int64_t *time_ms; /* event time of each impression */
  unsigned char *clicked, *bought;
  double sq_err; /* sum over reviews of (rating - E[rating])^2 */
  int64_t reviews;
} gen_stats_t;

typedef struct {
  uint64_t seed;
  int users, items, cats, days, dim;
  double w_affinity, w_item, w_user; /* weights of the click logit's terms */
  double w_review; /* weight of affinity + item quality in P(review | purchase); 0: 0.30 */
  double w_attr;   /* scale of the attributes' effects; 0: no attributes on the events */
  int64_t impressions;
  int64_t start_ms;
} gen_opts_t;

#define GEN_S 1000LL
#define GEN_MIN (60 * GEN_S)
#define GEN_H (60 * GEN_MIN)

static void generate(const gen_opts_t *o, const gen_world_t *w, gen_events_t *g, gen_stats_t *st) {
  gen_rng_t r;
  rng_seed(&r, o->seed, 2);
  int D = w->dim;
  uint64_t next_id = 1;
  int64_t span = (int64_t)o->days * 86400 * GEN_S, end = o->start_ms + span;
  for (int64_t k = 0; k < o->impressions; k++) {
    int u = (int)cdf_pick(w->user_cdf, (size_t)w->users, rng_u01(&r));
    /* time of day: traffic peaks mid-afternoon (rejection sampling) */
    int64_t t;
    double f;
    for (;;) {
      t = o->start_ms + (int64_t)(rng_u01(&r) * (double)span);
      f = (double)((t / GEN_S) % 86400) / 86400.0;
      if (rng_u01(&r) * 1.6 < 1.0 + 0.6 * sin(2.0 * M_PI * (f - 0.375))) break;
    }
    double us = rng_u01(&r);
    int s = us < gen_scen[0].share ? 0 : us < gen_scen[0].share + gen_scen[1].share ? 1 : 2;
    int item;
    if (rng_u01(&r) < gen_scen[s].pref_bias) {
      double up = rng_u01(&r);
      int c = w->user_pref[(size_t)u * GEN_N_PREF + (up < 0.5 ? 0 : up < 0.8 ? 1 : 2)];
      int lo = w->cat_start[c], n = w->cat_start[c + 1] - lo;
      item = w->cat_items[lo + (int)cdf_pick(w->cat_cdf + lo, (size_t)n, rng_u01(&r))];
    } else {
      item = (int)cdf_pick(w->item_cdf, (size_t)w->items, rng_u01(&r));
    }
    int pos = 1 + (int)(rng_u01(&r) * 20);
    if (pos > 20) pos = 20;
    int c = w->item_cat[item];
    double price = w->item_price[item];
    double a = dot(w->uvec + (size_t)u * D, w->ivec + (size_t)item * D, D);
    double tod = 0.3 * sin(2.0 * M_PI * (f - 0.5));
    double q = w->item_q[item], b = w->user_b[u];
    double attr_click = 0, attr_conv = 0, disc = 0;
    if (o->w_attr > 0) {
      int l = w->user_age[u], sl = w->user_shop[u], br = w->item_brand[item];
      disc = item_discount(o->seed, item, t);
      attr_click = o->w_attr * (gen_age_click[l] + gen_shop_click[sl] + w->brand_click[br] +
                                GEN_DISC_CLICK * disc);
      attr_conv = o->w_attr *
                  (gen_age_conv[l] + gen_shop_conv[sl] + w->brand_conv[br] + GEN_DISC_CONV * disc);
    }
    double pc = sigmoid(gen_scen[s].base_click + o->w_affinity * a + o->w_item * q + o->w_user * b -
                        0.35 * log((double)pos) + tod + attr_click);
    double price_effect = 0.4 * (log(price) - w->cat_mu[c]) + 0.1 * (log(price) - 3.5);
    double pp = sigmoid(gen_scen[s].base_conv + 0.8 * o->w_affinity * a + 0.5 * o->w_item * q -
                        price_effect + attr_conv);

    mtld_event_t *imp = events_add(g);
    imp->event_id = next_id++;
    imp->type = MTLD_EV_IMPRESSION;
    imp->user_id = (uint64_t)u + 1;
    imp->item_id = (uint64_t)item + 1;
    imp->category_id = (uint64_t)c + 1;
    imp->request_id = imp->event_id;
    imp->time_ms = t;
    imp->position = pos;
    imp->price = price;
    set_scenario(imp, s);
    truth_set(g, imp->event_id, pc, pp);
    mtld_event_t base = *imp;
    st->by_type[MTLD_EV_IMPRESSION - 1][s]++;
    st->p_click[k] = pc;
    st->p_ctcvr[k] = pc * pp;
    st->time_ms[k] = t;

    /* Follow-ups happen after the impression; the stream is observed over
     * [start, end) only, so those falling after `end` are censored (not
     * emitted, and not counted as realised labels): no sparse tail of
     * late events after the last impression. */
    if (rng_u01(&r) >= pc) continue;
    int64_t tc = t + GEN_S + (int64_t)rng_exp(&r, 90.0 * GEN_S);
    if (tc > t + 10 * GEN_MIN) tc = t + 10 * GEN_MIN;
    if (tc >= end) continue;
    st->clicked[k] = 1;
    mtld_event_t *ce = events_add(g);
    *ce = base;
    ce->event_id = next_id++;
    ce->type = MTLD_EV_CLICK;
    ce->time_ms = tc;
    ce->price = 0;
    st->by_type[MTLD_EV_CLICK - 1][s]++;

    int bought = rng_u01(&r) < pp;
    int64_t tp = 0;
    if (bought) {
      tp = tc + 2 * GEN_MIN + (int64_t)rng_exp(&r, 40.0 * GEN_MIN);
      if (tp > tc + 4 * GEN_H) tp = tc + 4 * GEN_H;
    }
    if ((bought && rng_u01(&r) < 0.85) || (!bought && rng_u01(&r) < 0.10)) {
      int64_t tk = tc + 10 * GEN_S + (int64_t)rng_exp(&r, 3.0 * GEN_MIN);
      if (bought && tk > tc + (tp - tc) / 2) tk = tc + (tp - tc) / 2;
      if (tk < end) {
        mtld_event_t *ke = events_add(g);
        *ke = base;
        ke->event_id = next_id++;
        ke->type = MTLD_EV_ADD_TO_CART;
        ke->time_ms = tk;
        ke->position = 0;
        ke->quantity = 1;
        st->by_type[MTLD_EV_ADD_TO_CART - 1][s]++;
      }
    }
    if (!bought || tp >= end) continue;
    st->bought[k] = 1;
    double uq = rng_u01(&r);
    mtld_event_t *pe = events_add(g);
    *pe = base;
    pe->event_id = next_id++;
    pe->type = MTLD_EV_PURCHASE;
    pe->time_ms = tp;
    pe->position = 0;
    pe->quantity = uq < 0.7 ? 1 : uq < 0.9 ? 2 : 3;
    st->by_type[MTLD_EV_PURCHASE - 1][s]++;

    /* P(review | purchase): 0.30, or with --review-effect W
     * sigmoid(logit(0.3) + W (affinity + item quality)) */
    double p_rev = o->w_review != 0 ? sigmoid(log(0.3 / 0.7) + o->w_review * (a + q)) : 0.30;
    if (rng_u01(&r) >= p_rev) continue;
    int64_t tr = tp + GEN_H + (int64_t)rng_exp(&r, 18.0 * GEN_H);
    /* rating = clamp(round(m + noise), 1, 5), noise ~ N(0, 0.8): sampled from
     * its exact discrete distribution, whose mean is the oracle */
    double m = 3.0 + 1.2 * (0.6 * a + 0.5 * w->item_q[item]);
    const double sd = 0.8;
    double prob[5], expect = 0;
    for (int v = 1; v <= 5; v++) {
      double hi = v == 5 ? 1.0 : phi((v + 0.5 - m) / sd);
      double lo = v == 1 ? 0.0 : phi((v - 0.5 - m) / sd);
      prob[v - 1] = hi - lo;
      expect += v * prob[v - 1];
    }
    double ur = rng_u01(&r), accp = 0;
    int rating = 5;
    for (int v = 1; v <= 5; v++) {
      accp += prob[v - 1];
      if (ur < accp) {
        rating = v;
        break;
      }
    }
    if (tr >= end) continue;
    mtld_event_t *re = events_add(g);
    *re = base;
    re->event_id = next_id++;
    re->type = MTLD_EV_REVIEW;
    re->time_ms = tr;
    re->position = 0;
    re->price = 0;
    re->rating = (float)rating;
    truth_set(g, re->event_id, expect, NAN);
    st->by_type[MTLD_EV_REVIEW - 1][s]++;
    st->sq_err += (rating - expect) * (rating - expect);
    st->reviews++;
  }
}

static int cmp_event(const void *pa, const void *pb) {
  const mtld_event_t *a = pa, *b = pb;
  if (a->time_ms != b->time_ms) return a->time_ms < b->time_ms ? -1 : 1;
  return a->event_id < b->event_id ? -1 : a->event_id > b->event_id;
}

/* Rank-based AUC (Mann-Whitney) with tied scores given their mean rank.
 * Returns NAN when only one class is present. */
typedef struct {
  double score;
  unsigned char label;
} gen_scored_t;

static int cmp_scored(const void *pa, const void *pb) {
  const gen_scored_t *a = pa, *b = pb;
  return a->score < b->score ? -1 : a->score > b->score;
}

static double auc(const double *score, const unsigned char *label, size_t n) {
  gen_scored_t *v = xcalloc(n, sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = (gen_scored_t){score[i], label[i]};
  qsort(v, n, sizeof *v, cmp_scored);
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && v[j].score == v[i].score) j++;
    double mean_rank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
    for (size_t k = i; k < j; k++)
      if (v[k].label) {
        pos++;
        rank_sum += mean_rank;
      }
    i = j;
  }
  free(v);
  double neg = (double)n - pos;
  if (pos == 0 || neg == 0) return NAN;
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

/* Impression indices in stream order: (time, event id), ids growing with k. */
static const int64_t *sort_times;

static int cmp_by_time(const void *pa, const void *pb) {
  size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
  if (sort_times[a] != sort_times[b]) return sort_times[a] < sort_times[b] ? -1 : 1;
  return a < b ? -1 : a > b;
}

static double log_loss(const double *p, const unsigned char *y, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s -= y[i] ? log(p[i]) : log1p(-p[i]);
  return n ? s / (double)n : NAN;
}

/* Oracle AUCs ([0] click, [1] click & purchase) over the last `last`
 * impressions of the stream: the samples a progressive-validation window of
 * that size ends up holding (the joiner releases samples in impression-time
 * order). */
static void oracle_last_n(const gen_stats_t *st, size_t nk, size_t last, double auc_out[2]) {
  if (last > nk) last = nk;
  size_t *idx = xcalloc(nk, sizeof *idx);
  for (size_t k = 0; k < nk; k++) idx[k] = k;
  sort_times = st->time_ms;
  qsort(idx, nk, sizeof *idx, cmp_by_time);
  double *p1 = xcalloc(last, sizeof(double)), *p2 = xcalloc(last, sizeof(double));
  unsigned char *y1 = xcalloc(last, 1), *y2 = xcalloc(last, 1);
  for (size_t j = 0; j < last; j++) {
    size_t k = idx[nk - last + j];
    p1[j] = st->p_click[k];
    p2[j] = st->p_ctcvr[k];
    y1[j] = st->clicked[k];
    y2[j] = st->clicked[k] && st->bought[k];
  }
  auc_out[0] = auc(p1, y1, last);
  auc_out[1] = auc(p2, y2, last);
  free(idx);
  free(p1);
  free(p2);
  free(y1);
  free(y2);
}

/* ---- bad records ---------------------------------------------------------- */

typedef enum {
  BAD_TRUNCATED,
  BAD_EMPTY,
  BAD_GARBAGE,
  BAD_NAN_PRICE,
  BAD_RATING,
  BAD_NEG_PRICE,
  BAD_HUGE,
  BAD_MISSING_USER,
  BAD_KINDS
} gen_bad_t;

static const char *const bad_kind_names[BAD_KINDS] = {"truncated", "empty",       "garbage",
                                                      "nan_price", "rating_9",    "negative_price",
                                                      "huge",      "missing_user"};

/* The reason the daemon should give for each kind.  An empty protobuf
 * record is refused by the decoder; JSON lines cannot hold an empty record
 * (blank lines are skipped), so there "empty" is the object {}. */
static mtld_reject_t bad_expected(gen_bad_t kind, mtld_format_t fmt) {
  switch (kind) {
  case BAD_TRUNCATED: return MTLD_REJECT_UNDECODABLE;
  case BAD_EMPTY: return fmt == MTLD_FMT_JSON ? MTLD_REJECT_MISSING_ID : MTLD_REJECT_UNDECODABLE;
  case BAD_GARBAGE: return MTLD_REJECT_UNDECODABLE;
  case BAD_NAN_PRICE: return MTLD_REJECT_NOT_FINITE;
  case BAD_RATING: return MTLD_REJECT_BAD_RATING;
  case BAD_NEG_PRICE: return MTLD_REJECT_NEGATIVE;
  case BAD_HUGE: return MTLD_REJECT_TOO_LARGE;
  case BAD_MISSING_USER: return MTLD_REJECT_MISSING_ID;
  default: return MTLD_REJECT_NONE;
  }
}

#define GEN_HUGE_BYTES (100 * 1024)
#define GEN_REC_CAP (GEN_HUGE_BYTES + 8192)

static size_t encode(const mtld_event_t *ev, mtld_format_t fmt, unsigned char *buf, size_t cap) {
  return fmt == MTLD_FMT_JSON ? mtld_encode_event_json(ev, (char *)buf, cap)
                              : mtld_encode_event_pb(ev, buf, cap);
}

/* Builds a malformed record of `kind` from a valid event.  Returns its length
 * (0 is valid for BAD_EMPTY in protobuf). */
static size_t bad_record(gen_bad_t kind, const mtld_event_t *base, mtld_format_t fmt,
                         unsigned char *buf, size_t cap) {
  mtld_event_t ev = *base;
  size_t len = 0;
  char err[256];
  mtld_event_t tmp;
  switch (kind) {
  case BAD_TRUNCATED:
    len = encode(&ev, fmt, buf, cap);
    /* cut until the decoder fails (a cut at a field boundary still decodes) */
    for (size_t cut = len / 2; cut > 0; cut--)
      if (mtld_decode_event(buf, cut, fmt, 65536, &tmp, err, sizeof err) == MTLD_REJECT_UNDECODABLE)
        return cut;
    return 1;
  case BAD_EMPTY:
    if (fmt == MTLD_FMT_JSON) { /* an empty line is no record in a JSON-lines file */
      memcpy(buf, "{}", 2);
      return 2;
    }
    return 0;
  case BAD_GARBAGE:
    if (fmt == MTLD_FMT_JSON) {
      const char *g = "garbage, not an event \x01\x02";
      memcpy(buf, g, strlen(g));
      return strlen(g);
    }
    memset(buf, 0xff, 11); /* an 11-byte varint tag: over protobuf's 10 */
    buf[11] = 0x07;
    return 12;
  case BAD_NAN_PRICE:
    ev.type = MTLD_EV_PURCHASE;
    ev.rating = 0;
    ev.quantity = 1;
    ev.price = NAN; /* JSON: "price":NaN, as Python's json.dumps writes it */
    return encode(&ev, fmt, buf, cap);
  case BAD_RATING:
    ev.type = MTLD_EV_REVIEW;
    ev.rating = 9;
    ev.price = 0;
    return encode(&ev, fmt, buf, cap);
  case BAD_NEG_PRICE:
    ev.type = MTLD_EV_PURCHASE;
    ev.rating = 0;
    ev.quantity = 1;
    ev.price = -5.0;
    return encode(&ev, fmt, buf, cap);
  case BAD_HUGE:
    len = encode(&ev, fmt, buf, cap);
    if (fmt == MTLD_FMT_JSON) { /* a 100 KB "scenario" member before the closing brace */
      if (len < 2 || buf[len - 1] != '}' || len + GEN_HUGE_BYTES + 32 > cap) return 0;
      len--;
      const char *k = ",\"scenario\":\"";
      memcpy(buf + len, k, strlen(k));
      len += strlen(k);
      memset(buf + len, 'x', GEN_HUGE_BYTES);
      len += GEN_HUGE_BYTES;
      memcpy(buf + len, "\"}", 2);
      return len + 2;
    }
    /* protobuf: a second `scenario` (field 10) of 100 KB; the last one wins */
    if (len + GEN_HUGE_BYTES + 16 > cap) return 0;
    buf[len++] = (10 << 3) | 2;
    len += mtld_put_uvarint(buf + len, GEN_HUGE_BYTES);
    memset(buf + len, 'x', GEN_HUGE_BYTES);
    return len + GEN_HUGE_BYTES;
  case BAD_MISSING_USER: ev.user_id = 0; return encode(&ev, fmt, buf, cap);
  default: return 0;
  }
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *out) {
  fprintf(out, "usage: mtld-gen [options]\n"
               "  --seed S            PRNG seed (default 1)\n"
               "  --users N           users (default 2000)\n"
               "  --items M           items (default 1000)\n"
               "  --categories C      categories (default 50)\n"
               "  --days D            days of impressions (default 2)\n"
               "  --impressions K     total impressions (default 200000)\n"
               "  --dim D             latent dimension (default 8)\n"
               "  --affinity W        weight of the user x item latent product in the click\n"
               "                      logit (0.8 of it in the purchase logit; default 0.6)\n"
               "  --item-effect W     weight of the item's quality (default 0.6; half of it\n"
               "                      in the purchase logit)\n"
               "  --user-effect W     weight of the user's propensity to click (default 0.6)\n"
               "  --review-effect W   P(review | purchase) = sigmoid(logit(0.3) + W (affinity\n"
               "                      + item quality)) (default 0: 0.30 for every purchase)\n"
               "                      (--affinity 1 --item-effect 0 --user-effect 0: the\n"
               "                      pure latent-factor world of mtld-gen before 2026-11-30)\n"
               "  --attr-effect X     user attributes age_level (1..6) and shopping_level\n"
               "                      (1..3), item attributes brand (b-<n>, items/4, at most\n"
               "                      300) and discount (0 or 0.1..0.5 per item and day) on\n"
               "                      the events, with X times their known effects in the\n"
               "                      click and purchase logits, so the oracle includes\n"
               "                      them (default 0: no attributes, the stream of before)\n"
               "  --start-ms T        first time: ms since the epoch or ISO-8601\n"
               "                      (default 2024-01-01T00:00:00Z)\n"
               "  --format F          protobuf (length-delimited, default) | json (lines)\n"
               "  --out FILE          event file (default stdout unless --kafka)\n"
               "  --truth FILE        truth CSV: event_id,kind,p_click,p_purchase_given_click,\n"
               "                      expected_rating,reason\n"
               "  --oracle-last N     also print the oracle AUCs over the last N impressions\n"
               "                      in stream order: what a progressive-validation window\n"
               "                      of N samples holds at the end (default 100000; 0: off)\n"
               "  --bad-every N       every Nth record is a malformed one (rotating kinds)\n"
               "  --kafka BOOTSTRAP   produce to Kafka (keyed by user id) ...\n"
               "  --topic T           ... to this topic\n"
               "  --kafka-prop K=V    librdkafka property (repeatable)\n"
               "  --quiet             no summary on stderr\n");
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static volatile sig_atomic_t gen_stop;

static void gen_on_signal(int sig) {
  (void)sig;
  gen_stop = 1;
}

#define GEN_MAX_PROPS 64

int main(int argc, char **argv) {
  gen_opts_t o = {.seed = 1,
                  .users = 2000,
                  .items = 1000,
                  .cats = 50,
                  .days = 2,
                  .dim = 8,
                  .w_affinity = 0.6,
                  .w_item = 0.6,
                  .w_user = 0.6,
                  .impressions = 200000,
                  .start_ms = MTLD_CONV_DEFAULT_BASE_MS};
  const char *out_path = NULL, *truth_path = NULL, *kafka = NULL, *topic = NULL;
  const char *props[GEN_MAX_PROPS];
  int n_props = 0, quiet = 0;
  int64_t bad_every = 0, oracle_last = 100000;
  mtld_format_t fmt = MTLD_FMT_PROTOBUF;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--quiet") == 0) {
      quiet = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "mtld-gen: %s needs a value (or is unknown)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    int64_t x = 0;
    int bad = 0;
    if (strcmp(a, "--seed") == 0) {
      char *end;
      o.seed = strtoull(v, &end, 0);
      bad = end == v || *end;
    } else if (strcmp(a, "--users") == 0) {
      bad = parse_i64(v, 1, 100000000, &x);
      o.users = (int)x;
    } else if (strcmp(a, "--items") == 0) {
      bad = parse_i64(v, 1, 100000000, &x);
      o.items = (int)x;
    } else if (strcmp(a, "--categories") == 0) {
      bad = parse_i64(v, 1, 1000000, &x);
      o.cats = (int)x;
    } else if (strcmp(a, "--days") == 0) {
      bad = parse_i64(v, 1, 3650, &x);
      o.days = (int)x;
    } else if (strcmp(a, "--impressions") == 0) {
      bad = parse_i64(v, 0, INT64_C(1000000000), &o.impressions);
    } else if (strcmp(a, "--dim") == 0) {
      bad = parse_i64(v, 1, 1024, &x);
      o.dim = (int)x;
    } else if (strcmp(a, "--affinity") == 0 || strcmp(a, "--item-effect") == 0 ||
               strcmp(a, "--user-effect") == 0) {
      char *end;
      double d = strtod(v, &end);
      bad = end == v || *end || !(d >= 0 && d <= 10);
      *(a[2] == 'a' ? &o.w_affinity : a[2] == 'i' ? &o.w_item : &o.w_user) = d;
    } else if (strcmp(a, "--attr-effect") == 0) {
      char *end;
      double d = strtod(v, &end);
      bad = end == v || *end || !(d >= 0 && d <= 10);
      o.w_attr = d;
    } else if (strcmp(a, "--review-effect") == 0) {
      char *end;
      double d = strtod(v, &end);
      bad = end == v || *end || !(d >= 0 && d <= 10);
      o.w_review = d;
    } else if (strcmp(a, "--start-ms") == 0) {
      bad = parse_i64(v, 1, INT64_C(4102444800000), &o.start_ms) != 0 &&
            mtld_conv_parse_iso_ms(v, strlen(v), &o.start_ms) != 0;
    } else if (strcmp(a, "--format") == 0) {
      int f = mtld_format_parse(v);
      bad = f != MTLD_FMT_PROTOBUF && f != MTLD_FMT_JSON;
      fmt = (mtld_format_t)f;
    } else if (strcmp(a, "--out") == 0) {
      out_path = v;
    } else if (strcmp(a, "--truth") == 0) {
      truth_path = v;
    } else if (strcmp(a, "--oracle-last") == 0) {
      bad = parse_i64(v, 0, INT64_MAX, &oracle_last);
    } else if (strcmp(a, "--bad-every") == 0) {
      bad = parse_i64(v, 1, INT64_MAX, &bad_every);
    } else if (strcmp(a, "--kafka") == 0) {
      kafka = v;
    } else if (strcmp(a, "--topic") == 0) {
      topic = v;
    } else if (strcmp(a, "--kafka-prop") == 0) {
      bad = n_props == GEN_MAX_PROPS;
      if (!bad) props[n_props++] = v;
    } else {
      fprintf(stderr, "mtld-gen: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
    if (bad) {
      fprintf(stderr, "mtld-gen: bad value for %s: '%s'\n", a, v);
      return 2;
    }
  }
  if ((kafka != NULL) != (topic != NULL)) {
    fprintf(stderr, "mtld-gen: --kafka and --topic go together\n");
    return 2;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = gen_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  gen_world_t w = {.users = o.users, .items = o.items, .cats = o.cats, .dim = o.dim};
  world_build(&w, o.seed);
  gen_events_t g = {0};
  gen_stats_t st = {0};
  size_t nk = (size_t)o.impressions;
  st.p_click = xcalloc(nk, sizeof(double));
  st.p_ctcvr = xcalloc(nk, sizeof(double));
  st.time_ms = xcalloc(nk, sizeof(int64_t));
  st.clicked = xcalloc(nk, 1);
  st.bought = xcalloc(nk, 1);
  generate(&o, &w, &g, &st);
  gen_attr_ids_t attr_ids = {0};
  if (o.w_attr > 0) { /* every event carries its user's and item's attributes */
    attr_ids_build(&attr_ids, &w);
    for (size_t i = 0; i < g.n; i++)
      set_attrs(&g.ev[i], &attr_ids, &w, o.seed, (int)g.ev[i].user_id - 1,
                (int)g.ev[i].item_id - 1);
  }
  if (g.n) qsort(g.ev, g.n, sizeof *g.ev, cmp_event);
  uint64_t next_bad_id = 1;
  for (size_t i = 0; i < g.n; i++)
    if (g.ev[i].event_id >= next_bad_id) next_bad_id = g.ev[i].event_id + 1;

  int rc = 0;
  char err[512];
  FILE *out = NULL, *truth = NULL;
  mtld_kout_t *ko = NULL;
  if (out_path || !kafka) {
    out = !out_path || strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (!out) {
      fprintf(stderr, "mtld-gen: %s: %m\n", out_path);
      rc = 1;
      goto done;
    }
  }
  if (truth_path) {
    truth = fopen(truth_path, "w");
    if (!truth) {
      fprintf(stderr, "mtld-gen: %s: %m\n", truth_path);
      rc = 1;
      goto done;
    }
    fprintf(truth, "event_id,kind,p_click,p_purchase_given_click,expected_rating,reason\n");
  }
  if (kafka && mtld_kout_new(&ko, kafka, topic, props, n_props, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-gen: kafka: %s\n", err);
    rc = 1;
    goto done;
  }

  unsigned char *buf = xcalloc(GEN_REC_CAP, 1);
  int64_t written = 0, n_bad = 0, bad_mismatch = 0;
  int64_t bad_by_kind[BAD_KINDS] = {0};
  for (size_t i = 0; i < g.n && !gen_stop && rc == 0; i++) {
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
      const mtld_event_t *ev = &g.ev[i];
      int is_bad = pass == 0 && bad_every && (written + 1) % bad_every == 0;
      if (pass == 0 && !is_bad) continue;
      size_t len;
      uint64_t id, key_user = ev->user_id;
      gen_bad_t kind = BAD_KINDS;
      if (is_bad) {
        kind = (gen_bad_t)(n_bad % BAD_KINDS);
        mtld_event_t base = *ev;
        base.event_id = id = next_bad_id++;
        len = bad_record(kind, &base, fmt, buf, GEN_REC_CAP);
        if (len == 0 && !(kind == BAD_EMPTY && fmt == MTLD_FMT_PROTOBUF)) {
          fprintf(stderr, "mtld-gen: cannot build a '%s' record\n", bad_kind_names[kind]);
          rc = 1;
          break;
        }
        if (kind == BAD_TRUNCATED || kind == BAD_EMPTY || kind == BAD_GARBAGE ||
            kind == BAD_MISSING_USER)
          key_user = 0;
        /* self-check against the decoder and validator the daemon uses */
        mtld_event_t dec;
        mtld_validate_limits_t lim;
        mtld_validate_limits_default(&lim);
        mtld_reject_t got =
            mtld_decode_event(buf, len, fmt, lim.max_record_bytes, &dec, err, sizeof err);
        if (got == MTLD_REJECT_NONE)
          got = mtld_validate_event(&dec, &lim, INT64_MIN, INT64_MIN, err, sizeof err);
        if (got != bad_expected(kind, fmt) && bad_mismatch++ < 8)
          fprintf(stderr, "mtld-gen: warning: bad record '%s' is rejected as %s, not %s\n",
                  bad_kind_names[kind], mtld_reject_name(got),
                  mtld_reject_name(bad_expected(kind, fmt)));
        n_bad++;
        bad_by_kind[kind]++;
      } else {
        id = ev->event_id;
        len = encode(ev, fmt, buf, GEN_REC_CAP);
        if (len == 0) {
          fprintf(stderr, "mtld-gen: cannot encode event %" PRIu64 "\n", id);
          rc = 1;
          break;
        }
      }
      if (out && mtld_eventfile_write(out, fmt, buf, len) != MTLD_OK) {
        fprintf(stderr, "mtld-gen: write: %m\n");
        rc = 1;
        break;
      }
      if (ko) {
        char key[24];
        int kn = key_user ? snprintf(key, sizeof key, "%" PRIu64, key_user) : 0;
        if (mtld_kout_send(ko, key, (size_t)kn, buf, len, err, sizeof err) != MTLD_OK) {
          fprintf(stderr, "mtld-gen: kafka: %s\n", err);
          rc = 1;
          break;
        }
      }
      written++;
      if (!truth) continue;
      if (is_bad) {
        fprintf(truth, "%" PRIu64 ",bad,,,,%s\n", id, mtld_reject_name(bad_expected(kind, fmt)));
      } else if (ev->type == MTLD_EV_IMPRESSION) {
        fprintf(truth, "%" PRIu64 ",impression,%.9g,%.9g,,\n", id, g.ta[id], g.tb[id]);
      } else if (ev->type == MTLD_EV_REVIEW) {
        fprintf(truth, "%" PRIu64 ",review,,,%.9g,\n", id, g.ta[id]);
      }
    }
  }
  free(buf);
  if (gen_stop && rc == 0) {
    fprintf(stderr, "mtld-gen: interrupted after %" PRId64 " records\n", written);
    rc = 1;
  }
  if (ko) {
    if (mtld_kout_flush(ko, 120000, err, sizeof err) != MTLD_OK) {
      fprintf(stderr, "mtld-gen: kafka: %s\n", err);
      rc = 1;
    } else if (!quiet) {
      fprintf(stderr, "mtld-gen: kafka: %" PRId64 " records delivered to %s\n",
              mtld_kout_delivered(ko), topic);
    }
  }

  if (!quiet && rc == 0) {
    fprintf(stderr,
            "mtld-gen: seed %" PRIu64 ", %zu events + %" PRId64 " bad = %" PRId64 " records\n",
            o.seed, g.n, n_bad, written);
    fprintf(stderr, "%-12s %12s %12s %12s %12s\n", "type", gen_scen[0].name, gen_scen[1].name,
            gen_scen[2].name, "total");
    for (int t = 0; t < MTLD_N_EVENT_TYPES; t++) {
      int64_t tot = 0;
      fprintf(stderr, "%-12s", mtld_event_type_name(t + 1));
      for (int s = 0; s < GEN_N_SCEN; s++) {
        fprintf(stderr, " %12" PRId64, st.by_type[t][s]);
        tot += st.by_type[t][s];
      }
      fprintf(stderr, " %12" PRId64 "\n", tot);
    }
    if (o.w_attr > 0)
      fprintf(stderr,
              "attributes on every event: age_level, shopping_level, brand (%d brands), "
              "discount; effect x%g\n",
              w.brands, o.w_attr);
    for (int k = 0; k < BAD_KINDS; k++)
      if (bad_by_kind[k])
        fprintf(stderr, "bad %-14s %" PRId64 " (%s)\n", bad_kind_names[k], bad_by_kind[k],
                mtld_reject_name(bad_expected(k, fmt)));
    unsigned char *ctcvr = xcalloc(nk, 1);
    for (size_t k = 0; k < nk; k++) ctcvr[k] = st.clicked[k] && st.bought[k];
    fprintf(stderr,
            "oracle AUC click: %.4f   click&purchase: %.4f   rating RMSE: %.4f (%" PRId64
            " reviews)\n",
            auc(st.p_click, st.clicked, nk), auc(st.p_ctcvr, ctcvr, nk),
            st.reviews ? sqrt(st.sq_err / (double)st.reviews) : NAN, st.reviews);
    fprintf(stderr, "oracle log loss over the stream: click: %.4f   click&purchase: %.4f\n",
            log_loss(st.p_click, st.clicked, nk), log_loss(st.p_ctcvr, ctcvr, nk));
    free(ctcvr);
    if (oracle_last > 0 && nk > 0) {
      double a[2];
      int64_t w = oracle_last < (int64_t)nk ? oracle_last : (int64_t)nk;
      oracle_last_n(&st, nk, (size_t)oracle_last, a);
      fprintf(stderr,
              "oracle AUC over the last %" PRId64 " impressions: click: %.4f   click&purchase: "
              "%.4f\n",
              w, a[0], a[1]);
    }
  }

done:
  mtld_kout_destroy(ko);
  if (out && out != stdout && fclose(out) != 0) {
    fprintf(stderr, "mtld-gen: close %s: %m\n", out_path);
    rc = 1;
  } else if (out == stdout && fflush(stdout) != 0) {
    rc = 1;
  }
  if (truth && fclose(truth) != 0) {
    fprintf(stderr, "mtld-gen: close %s: %m\n", truth_path);
    rc = 1;
  }
  free(st.p_click);
  free(st.p_ctcvr);
  free(st.clicked);
  free(st.time_ms);
  free(st.bought);
  free(attr_ids.brand_v);
  free(g.ev);
  free(g.ta);
  free(g.tb);
  world_free(&w);
  return rc;
}
