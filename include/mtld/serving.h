/* mtld/serving.h - libmtld-serving: load an mtld serving snapshot and score
 * with it, in a serving system (pkg-config mtld-serving).
 *
 * A snapshot is the file the mtld daemon writes into its snapshot directory
 * (snapshot.dir; LATEST names the newest): the model's weights, its
 * configuration and the item set the daemon's feature store held.  The
 * library verifies every checksum on load and scores exactly as the daemon's
 * trainer does (one candidate at a time: bit for bit on the same machine;
 * in batches: up to float rounding, as BLIS picks kernels by batch shape).
 *
 *   char err[512];
 *   mtld_serving_t *s;
 *   if (mtld_serving_open(&s, "/var/lib/mtld/snapshots", err, sizeof err) != 0) ...;
 *   mtld_serving_request_t r = {.user = mtld_serving_key("u-17"), .item = 42,
 *                               .scenario = "search"};
 *   float p[MTLD_SERVING_MAX_TASKS];
 *   mtld_serving_score(s, &r, 1, p, NULL);     // p[task] for each task
 *   mtld_serving_close(s);
 *
 * Ids: numbers as the events carried them; string ids go through
 * mtld_serving_key() (the daemon's hash).  Features: the dense features are
 * those the daemon's feature store computes (mtld-score --store builds them
 * from a store); a request without them scores with zeros, as
 * `mtld-score --sample-json` does for lines without "dense".
 *
 * Threads: a handle scores on one thread at a time (it holds the forward
 * pass's buffers); open one handle per thread, or lock.  Functions returning
 * int return 0 on success and a negative code on error (err, when given,
 * says why). */
#ifndef MTLD_SERVING_H
#define MTLD_SERVING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MTLD_SERVING_API __attribute__((visibility("default")))
#else
#define MTLD_SERVING_API
#endif

#define MTLD_SERVING_MAX_TASKS 8  /* tasks a snapshot may have */
#define MTLD_SERVING_MAX_DENSE 64 /* dense features of a request */
#define MTLD_SERVING_MAX_SEQ 50   /* recent items of a request */

/* error codes (negative) */
#define MTLD_SERVING_ERR_INVALID (-1)  /* bad argument */
#define MTLD_SERVING_ERR_IO (-2)       /* cannot read the file */
#define MTLD_SERVING_ERR_NOMEM (-3)    /* out of memory */
#define MTLD_SERVING_ERR_CORRUPT (-6)  /* not a valid snapshot (checksum, version...) */
#define MTLD_SERVING_ERR_NOTFOUND (-8) /* no such file, or no LATEST / item set */

typedef struct mtld_serving mtld_serving_t;

/* One candidate (user x item in a scenario) to score, or, for top-K, the
 * request whose item and category every catalog item replaces.  Zero-
 * initialise and set what is known; pointers are borrowed for the call. */
typedef struct {
  uint64_t user;             /* user id; 0 = absent */
  uint64_t item;             /* item id; 0 = absent (ignored by top-K) */
  uint64_t category;         /* the item's category id; 0 = absent (top-K: the item set's) */
  const char *scenario;      /* scenario name; NULL or "" = none; at most 31 bytes */
  int32_t position;          /* slot the item is shown in (> 0); 0 = absent */
  int64_t time_ms;           /* event time to score at (hour of day, embedding
                                expiry); 0 = the snapshot's watermark */
  int n_dense;               /* 0..MTLD_SERVING_MAX_DENSE: dense features, as the */
  const float *dense;        /* feature store gives them (zeros when absent) */
  int seq_len;               /* 0..MTLD_SERVING_MAX_SEQ: the user's recent items */
  const uint64_t *seq_items; /* newest first */
  const uint64_t *seq_cats;  /* their categories (NULL = all 0) */
} mtld_serving_request_t;

/* A named attribute of a request (features.attributes of the daemon that
 * wrote the snapshot): a categorical value (str, hashed as the daemon hashes
 * it; "" = absent) or, with str NULL, a numeric one (num, finite).
 * Attributes the snapshot does not declare are ignored; a declared one
 * missing from the request takes its declared default.  User and item
 * attributes are the values the daemon's store holds for the user and item
 * (serving systems pass them with the request). */
typedef struct {
  const char *name;
  const char *str;
  double num;
} mtld_serving_attr_t;

/* The attributes of one request: n (0..16) entries at attrs. */
typedef struct {
  int n;
  const mtld_serving_attr_t *attrs;
} mtld_serving_attrs_t;

/* The library's version, "MAJOR.MINOR.PATCH" (static string). */
MTLD_SERVING_API const char *mtld_serving_version(void);

/* The id of a string key, as the daemon hashes string ids (never 0). */
MTLD_SERVING_API uint64_t mtld_serving_key(const char *key);

/* Loads a snapshot: path is a snapshot file, or a snapshot directory whose
 * LATEST names the file.  Verifies it completely (magic, format version,
 * every checksum, the model description).  *out: a new handle (free with
 * mtld_serving_close), NULL on error.  err (may be NULL) gets the reason. */
MTLD_SERVING_API int mtld_serving_open(mtld_serving_t **out, const char *path, char *err,
                                       size_t errlen);

/* Frees a handle (NULL is fine). */
MTLD_SERVING_API void mtld_serving_close(mtld_serving_t *s);

/* The loaded file's path (borrowed, valid until close). */
MTLD_SERVING_API const char *mtld_serving_path(const mtld_serving_t *s);

/* Event time the model has seen up to (ms since the epoch). */
MTLD_SERVING_API int64_t mtld_serving_watermark_ms(const mtld_serving_t *s);

/* Tasks: their number, names (borrowed; NULL for a bad index), the index of
 * a name (-1 when absent), and whether task k is an ESMM CTCVR task (its
 * prediction is pCTCVR; pCVR comes in mtld_serving_score's pcvr). */
MTLD_SERVING_API int mtld_serving_n_tasks(const mtld_serving_t *s);
MTLD_SERVING_API const char *mtld_serving_task_name(const mtld_serving_t *s, int task);
MTLD_SERVING_API int mtld_serving_task_index(const mtld_serving_t *s, const char *name);
MTLD_SERVING_API int mtld_serving_task_is_esmm(const mtld_serving_t *s, int task);

/* Items in the snapshot's item set (top-K candidates); 0 when the snapshot
 * has none (written before mtld recorded it, or an empty store). */
MTLD_SERVING_API size_t mtld_serving_n_items(const mtld_serving_t *s);

/* Scores n >= 1 candidates: preds[n * n_tasks] (row i = candidate i: the
 * probability per task, pCTCVR for ESMM, the value for regression) and
 * pcvr[n * n_tasks] (may be NULL: pCVR for ESMM tasks, else = preds).
 * MTLD_SERVING_ERR_INVALID for a bad request (n, counts, scenario length). */
MTLD_SERVING_API int mtld_serving_score(mtld_serving_t *s, const mtld_serving_request_t *req, int n,
                                        float *preds, float *pcvr);

/* Declared attributes: their number (0 for a snapshot without), the name of
 * the i-th (borrowed; NULL for a bad index), and whether it is numeric (1),
 * categorical (0) or a bad index (-1). */
MTLD_SERVING_API int mtld_serving_n_attrs(const mtld_serving_t *s);
MTLD_SERVING_API const char *mtld_serving_attr_name(const mtld_serving_t *s, int i);
MTLD_SERVING_API int mtld_serving_attr_is_numeric(const mtld_serving_t *s, int i);

/* mtld_serving_score with named attributes: attrs[i] for req[i] (attrs NULL:
 * none for every request).  MTLD_SERVING_ERR_INVALID also for more than 16
 * attributes, a NULL name, a non-finite number or a value over 255 bytes. */
MTLD_SERVING_API int mtld_serving_score_attrs(mtld_serving_t *s, const mtld_serving_request_t *req,
                                              const mtld_serving_attrs_t *attrs, int n,
                                              float *preds, float *pcvr);

/* Top-K: the k items of the snapshot's item set the model ranks highest by
 * task `task` for the request (its user, scenario, time, dense features and
 * sequence; each candidate gets the item's id and category), best first,
 * ties by smaller item id: items[k], scores[k] (may be NULL), *n_out =
 * min(k, item count).  Scores are mtld_serving_score's for the same
 * candidates up to float rounding (candidates are scored in batches of 64;
 * BLIS picks kernels by the batch's shape).  MTLD_SERVING_ERR_NOTFOUND when the snapshot has no
 * item set; MTLD_SERVING_ERR_INVALID for a bad task, k < 1 or a bad request. */
MTLD_SERVING_API int mtld_serving_top_k(mtld_serving_t *s, const mtld_serving_request_t *req,
                                        int task, int k, uint64_t *items, float *scores,
                                        int *n_out);

/* mtld_serving_top_k with the request's named attributes (attrs may be
 * NULL).  Item attributes are ignored: each candidate is another item, and
 * takes the declared defaults (the item set holds ids and categories). */
MTLD_SERVING_API int mtld_serving_top_k_attrs(mtld_serving_t *s, const mtld_serving_request_t *req,
                                              const mtld_serving_attrs_t *attrs, int task, int k,
                                              uint64_t *items, float *scores, int *n_out);

#ifdef __cplusplus
}
#endif

#endif
