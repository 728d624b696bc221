/* watermark.c - event-time watermark: an array of assigned partitions and
 * their max event times; every query is a linear scan (partitions are few). */
#include "features/watermark.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *topic;
  int32_t partition;
  int64_t max_time_ms; /* INT64_MIN = nothing seen */
  int caught_up;       /* read to the end of what the partition holds */
} wm_part_t;

struct mtld_watermark {
  int64_t lateness_ms;
  int64_t idle_ms;
  int64_t idle_release_ms; /* wall clock without records; 0 = off */
  int64_t horizon_ms;      /* past the newest event time on idle release */
  int64_t last_arrival_ms; /* monotonic; INT64_MIN = never noted */
  wm_part_t *parts;
  int n, cap;
};

mtld_status_t mtld_watermark_create(mtld_watermark_t **out, int64_t allowed_lateness_ms,
                                    int64_t idle_ms) {
  *out = NULL;
  if (allowed_lateness_ms < 0 || idle_ms < 0) return MTLD_ERR_INVALID;
  mtld_watermark_t *wm = calloc(1, sizeof *wm);
  if (!wm) return MTLD_ERR_NOMEM;
  wm->lateness_ms = allowed_lateness_ms;
  wm->idle_ms = idle_ms;
  wm->last_arrival_ms = INT64_MIN;
  *out = wm;
  return MTLD_OK;
}

void mtld_watermark_destroy(mtld_watermark_t *wm) {
  if (!wm) return;
  for (int i = 0; i < wm->n; i++) free(wm->parts[i].topic);
  free(wm->parts);
  free(wm);
}

mtld_status_t mtld_watermark_set_params(mtld_watermark_t *wm, int64_t allowed_lateness_ms,
                                        int64_t idle_ms) {
  if (allowed_lateness_ms < 0 || idle_ms < 0) return MTLD_ERR_INVALID;
  wm->lateness_ms = allowed_lateness_ms;
  wm->idle_ms = idle_ms;
  return MTLD_OK;
}

static int find(const mtld_watermark_t *wm, const char *topic, int32_t partition) {
  for (int i = 0; i < wm->n; i++)
    if (wm->parts[i].partition == partition && strcmp(wm->parts[i].topic, topic) == 0) return i;
  return -1;
}

static int add(mtld_watermark_t *wm, const char *topic, int32_t partition) {
  if (wm->n == wm->cap) {
    int cap = wm->cap ? 2 * wm->cap : 16;
    wm_part_t *p = realloc(wm->parts, (size_t)cap * sizeof *p);
    if (!p) return -1;
    wm->parts = p;
    wm->cap = cap;
  }
  char *t = strdup(topic);
  if (!t) return -1;
  wm->parts[wm->n] = (wm_part_t){t, partition, INT64_MIN, 0};
  return wm->n++;
}

mtld_status_t mtld_watermark_assign(mtld_watermark_t *wm, const char *topic, int32_t partition,
                                    int64_t max_time_ms) {
  int i = find(wm, topic, partition);
  if (i < 0) i = add(wm, topic, partition);
  if (i < 0) return MTLD_ERR_NOMEM;
  wm->parts[i].max_time_ms = max_time_ms;
  return MTLD_OK;
}

void mtld_watermark_revoke(mtld_watermark_t *wm, const char *topic, int32_t partition) {
  int i = find(wm, topic, partition);
  if (i < 0) return;
  free(wm->parts[i].topic);
  /* keep the array in assignment order: nothing depends on it, but it makes
   * debugging output stable */
  memmove(&wm->parts[i], &wm->parts[i + 1], (size_t)(wm->n - i - 1) * sizeof wm->parts[0]);
  wm->n--;
}

mtld_status_t mtld_watermark_observe(mtld_watermark_t *wm, const char *topic, int32_t partition,
                                     int64_t time_ms) {
  int i = find(wm, topic, partition);
  if (i < 0) i = add(wm, topic, partition);
  if (i < 0) return MTLD_ERR_NOMEM;
  if (time_ms > wm->parts[i].max_time_ms) wm->parts[i].max_time_ms = time_ms;
  wm->parts[i].caught_up = 0;
  return MTLD_OK;
}

void mtld_watermark_set_caught_up(mtld_watermark_t *wm, const char *topic, int32_t partition) {
  int i = find(wm, topic, partition);
  if (i >= 0) wm->parts[i].caught_up = 1;
}

int64_t mtld_watermark_newest(const mtld_watermark_t *wm) {
  int64_t newest = INT64_MIN;
  for (int i = 0; i < wm->n; i++)
    if (wm->parts[i].max_time_ms > newest) newest = wm->parts[i].max_time_ms;
  return newest;
}

static int is_idle(const mtld_watermark_t *wm, const wm_part_t *p, int64_t newest) {
  int64_t max_time = p->max_time_ms;
  /* Caught up: whatever it gets next is new, it holds nothing back.  Not
   * caught up and nothing seen yet: its first records may be old, so it
   * holds the watermark (that keeps releases independent of which
   * partition the consumer happens to read first). */
  if (p->caught_up) return 1;
  if (max_time == INT64_MIN) return 0;
  if (wm->idle_ms == 0 || newest < INT64_MIN + wm->idle_ms) return 0;
  return max_time < newest - wm->idle_ms; /* no overflow, unlike newest - max_time */
}

int64_t mtld_watermark_get(const mtld_watermark_t *wm) {
  int64_t newest = mtld_watermark_newest(wm);
  if (newest == INT64_MIN) return INT64_MIN;
  int64_t low = INT64_MAX;
  int active = 0;
  for (int i = 0; i < wm->n; i++) {
    int64_t t = wm->parts[i].max_time_ms;
    if (is_idle(wm, &wm->parts[i], newest)) continue;
    active = 1;
    if (t < low) low = t;
  }
  /* Every partition caught up (or idle): everything there is has been read,
   * so nothing older can still come from what was read: the newest time
   * bounds it.  Taking the newest (not the slowest partition) also makes the
   * final watermark independent of the order in which partitions finished:
   * it is at least every value the watermark had before. */
  if (!active) low = newest;
  if (low == INT64_MIN) return INT64_MIN; /* a partition not read yet holds it */
  if (low < INT64_MIN + wm->lateness_ms) return INT64_MIN;
  return low - wm->lateness_ms;
}

mtld_status_t mtld_watermark_set_idle_release(mtld_watermark_t *wm, int64_t idle_release_ms,
                                              int64_t horizon_ms) {
  if (idle_release_ms < 0 || horizon_ms < 0) return MTLD_ERR_INVALID;
  wm->idle_release_ms = idle_release_ms;
  wm->horizon_ms = horizon_ms;
  return MTLD_OK;
}

void mtld_watermark_arrival(mtld_watermark_t *wm, int64_t now_ms) {
  wm->last_arrival_ms = now_ms;
}

int mtld_watermark_idle_released(const mtld_watermark_t *wm, int64_t now_ms) {
  return wm->idle_release_ms > 0 && wm->last_arrival_ms != INT64_MIN &&
         now_ms - wm->last_arrival_ms >= wm->idle_release_ms &&
         mtld_watermark_newest(wm) != INT64_MIN;
}

int64_t mtld_watermark_release_point(const mtld_watermark_t *wm, int64_t now_ms) {
  int64_t w = mtld_watermark_get(wm);
  if (!mtld_watermark_idle_released(wm, now_ms)) return w;
  int64_t newest = mtld_watermark_newest(wm), past;
  if (__builtin_add_overflow(newest, wm->horizon_ms + 1, &past)) past = INT64_MAX;
  return past > w ? past : w;
}

int64_t mtld_watermark_max_time(const mtld_watermark_t *wm, const char *topic, int32_t partition) {
  int i = find(wm, topic, partition);
  return i < 0 ? INT64_MIN : wm->parts[i].max_time_ms;
}

int mtld_watermark_partitions(const mtld_watermark_t *wm) {
  return wm->n;
}

int mtld_watermark_idle_partitions(const mtld_watermark_t *wm) {
  int64_t newest = mtld_watermark_newest(wm);
  int idle = 0;
  if (newest == INT64_MIN) return 0;
  for (int i = 0; i < wm->n; i++) idle += is_idle(wm, &wm->parts[i], newest);
  return idle;
}

void mtld_watermark_render_metrics(const mtld_watermark_t *wm, mtld_metrics_buf_t *b) {
  int64_t w = mtld_watermark_get(wm);
  mtld_metrics_family(b, "mtld_watermark_seconds", "gauge",
                      "Event-time watermark (Unix seconds; NaN before any event).");
  mtld_metrics_sample(b, "mtld_watermark_seconds", NULL, w == INT64_MIN ? NAN : (double)w / 1000.0);
}
