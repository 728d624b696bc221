/* test_pipeline.c - the pipeline's contracts, with records handed straight
 * to mtld_pipeline_process (no source) over a store in a mkdtemp directory:
 * applied and rejected counts (bad records, duplicates), commit writes the
 * offsets with the state, batch_due by count, the sink receives released
 * samples in release order (event time, whatever the arrival order), and a
 * partition the configuration cannot map is a clear error with nothing
 * staged. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/decode.h"
#include "daemon/pipeline.h"
#include "tests/unit/check.h"

#define T0 1700000000000LL
#define TOPIC "events"

static char root[64];
static char err[1024];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

typedef struct {
  mtld_config_t cfg;
  mtld_store_t *store;
  mtld_watermark_t *wm;
  mtld_pipeline_t *p;
} fixture_t;

static void open_fixture(fixture_t *f, const char *name) {
  memset(f, 0, sizeof(*f));
  mtld_config_default(&f->cfg);
  f->cfg.source_type = MTLD_SOURCE_KAFKA;
  snprintf(f->cfg.topics[0], sizeof f->cfg.topics[0], "%s", TOPIC);
  f->cfg.n_topics = 1;
  f->cfg.dead_letter_topic[0] = 0;
  f->cfg.format = MTLD_FMT_JSON;
  f->cfg.batch_max_events = 3;
  f->cfg.batch_max_ms = 3600 * 1000; /* count-driven only: nothing timed */
  snprintf(f->cfg.store_path, sizeof f->cfg.store_path, "%s/%s", root, name);
  CHECK(mtld_store_open(&f->store, f->cfg.store_path, &f->cfg.features, 0, err, sizeof err) ==
        MTLD_OK);
  CHECK(mtld_watermark_create(&f->wm, f->cfg.allowed_lateness_ms, f->cfg.idle_ms) == MTLD_OK);
  CHECK(mtld_pipeline_new(&f->p, &f->cfg, f->store, f->wm, err, sizeof err) == MTLD_OK);
}

static void close_fixture(fixture_t *f) {
  mtld_pipeline_free(f->p);
  mtld_watermark_destroy(f->wm);
  mtld_store_close(f->store);
}

static mtld_event_t event(uint64_t id, int type, int64_t t) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = id;
  ev.type = type;
  ev.user_id = 10 + id % 3;
  ev.item_id = 100 + id % 5;
  ev.request_id = id;
  ev.time_ms = t;
  snprintf(ev.scenario, sizeof ev.scenario, "home");
  ev.scenario_id = mtld_hash_id("home", 4);
  return ev;
}

/* Processes one record of TOPIC[partition] at offset holding ev (or the raw
 * text when ev is NULL). */
static void feed(fixture_t *f, int32_t partition, int64_t offset, const mtld_event_t *ev,
                 const char *raw) {
  char buf[2048];
  size_t len = ev ? mtld_encode_event_json(ev, buf, sizeof buf) : strlen(raw);
  mtld_record_t rec = {.payload = ev ? buf : raw,
                       .len = len,
                       .topic = TOPIC,
                       .partition = partition,
                       .offset = offset};
  mtld_pipeline_process(f->p, &rec);
}

static void test_counts_offsets_due(void) {
  fixture_t f;
  open_fixture(&f, "counts");
  mtld_pipeline_stats_t s;
  CHECK(!mtld_pipeline_batch_due(f.p));
  mtld_event_t e1 = event(1, MTLD_EV_CLICK, T0), e2 = event(2, MTLD_EV_CLICK, T0 + 1);
  feed(&f, 0, 0, &e1, NULL);
  feed(&f, 0, 1, NULL, "this is not an event");
  CHECK(!mtld_pipeline_batch_due(f.p)); /* 2 of batch_max_events = 3 */
  feed(&f, 1, 0, &e2, NULL);
  CHECK(mtld_pipeline_batch_due(f.p));
  /* the counts describe what was committed: nothing yet */
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 0 && s.events == 0 && s.rejected == 0 && s.batches == 0);
  int64_t next = -1, max_time = 0;
  CHECK(mtld_store_get_offset(f.store, TOPIC, 0, &next, &max_time) == MTLD_ERR_NOTFOUND);

  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  CHECK(!mtld_pipeline_batch_due(f.p));
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 3 && s.events == 2 && s.rejected == 1 && s.batches == 1);
  /* the offsets of the next records to read, the rejected one included */
  CHECK(mtld_store_get_offset(f.store, TOPIC, 0, &next, &max_time) == MTLD_OK);
  CHECK(next == 2 && max_time == T0);
  CHECK(mtld_store_get_offset(f.store, TOPIC, 1, &next, &max_time) == MTLD_OK);
  CHECK(next == 1 && max_time == T0 + 1);
  mtld_user_features_t u;
  CHECK(mtld_store_get_user(f.store, e1.user_id, &u) == MTLD_OK);

  /* the same event again (a producer's retry) is a duplicate, not applied */
  feed(&f, 0, 2, &e1, NULL);
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 4 && s.events == 2 && s.rejected == 2);
  CHECK(mtld_store_get_offset(f.store, TOPIC, 0, &next, &max_time) == MTLD_OK && next == 3);
  CHECK(mtld_pipeline_error(f.p, err, sizeof err) == MTLD_OK);
  close_fixture(&f);
}

typedef struct {
  uint64_t ids[16];
  int64_t times[16];
  int n;
  mtld_store_t *store;
  int64_t offset_seen; /* the partition's stored offset while the sink ran */
} sink_t;

static void on_sample(void *ctx, const mtld_sample_t *s) {
  sink_t *k = ctx;
  if (k->n < 16) {
    k->ids[k->n] = s->sample_id;
    k->times[k->n] = s->time_ms;
  }
  k->n++;
  int64_t next = -1, max_time;
  if (mtld_store_get_offset(k->store, TOPIC, 0, &next, &max_time) != MTLD_OK) next = -1;
  k->offset_seen = next;
}

static void test_sink_release_order(void) {
  fixture_t f;
  open_fixture(&f, "sink");
  sink_t k = {.store = f.store};
  mtld_pipeline_set_sink(f.p, on_sample, &k);
  /* impressions arriving out of event-time order (within the lateness) */
  static const int64_t dt[4] = {30, 10, 40, 20};
  for (int i = 0; i < 4; i++) {
    mtld_event_t e = event(100 + (uint64_t)i, MTLD_EV_IMPRESSION, T0 + dt[i]);
    feed(&f, 0, i, &e, NULL);
  }
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  CHECK(k.n == 0); /* the watermark has not passed their windows */
  mtld_event_t click = event(200, MTLD_EV_CLICK, T0 + 50);
  feed(&f, 0, 4, &click, NULL);
  mtld_pipeline_end_of_stream(f.p);
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  CHECK(k.n == 4);
  CHECK(k.ids[0] == 101 && k.ids[1] == 103 && k.ids[2] == 100 && k.ids[3] == 102);
  int sorted = 1;
  for (int i = 1; i < k.n && i < 16; i++) sorted &= k.times[i - 1] <= k.times[i];
  CHECK(sorted);
  /* released inside the commit, before the write: the store still had the
   * first batch's offsets when the sink ran, the second batch's after */
  CHECK(k.offset_seen == 4);
  int64_t next, max_time;
  CHECK(mtld_store_get_offset(f.store, TOPIC, 0, &next, &max_time) == MTLD_OK && next == 5);
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.samples_released == 4);
  close_fixture(&f);
}

static void test_unmapped_partition(void) {
  fixture_t f;
  open_fixture(&f, "unmapped");
  mtld_event_t e = event(7, MTLD_EV_CLICK, T0);
  char buf[2048];
  size_t len = mtld_encode_event_json(&e, buf, sizeof buf);
  mtld_record_t rec = {.payload = buf, .len = len, .topic = "unknown", .partition = 0};
  mtld_pipeline_process(f.p, &rec);
  CHECK(mtld_pipeline_error(f.p, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "unknown") != NULL);
  rec.topic = TOPIC;
  rec.partition = 70000; /* beyond the 16 bits of a partition id */
  mtld_pipeline_process(f.p, &rec);
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 0 && s.events == 0); /* nothing of them processed */
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  int64_t next, max_time;
  CHECK(mtld_store_get_offset(f.store, "unknown", 0, &next, &max_time) == MTLD_ERR_NOTFOUND);
  CHECK(mtld_store_get_offset(f.store, TOPIC, 70000, &next, &max_time) == MTLD_ERR_NOTFOUND);
  mtld_metrics_buf_t b;
  mtld_metrics_buf_init(&b);
  mtld_pipeline_render_metrics(f.p, &b);
  CHECK(strstr(mtld_metrics_buf_text(&b), "mtld_records_unmapped_total 2\n") != NULL);
  mtld_metrics_buf_free(&b);
  close_fixture(&f);
}

/* A batch dropped because partitions were lost takes its counts with it. */
static void test_dropped_batch_counts(void) {
  fixture_t f;
  open_fixture(&f, "dropped");
  mtld_source_hooks_t h = mtld_pipeline_hooks(f.p);
  h.assigned(h.ctx, TOPIC, 0, INT64_MIN);
  mtld_event_t e1 = event(1, MTLD_EV_CLICK, T0), e2 = event(2, MTLD_EV_CLICK, T0 + 1);
  feed(&f, 0, 0, &e1, NULL);
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  feed(&f, 0, 1, &e2, NULL);
  feed(&f, 0, 2, NULL, "bad");
  h.revoke_begin(h.ctx, 1); /* lost: the staged batch is dropped */
  mtld_pipeline_stats_t s;
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 1 && s.events == 1 && s.rejected == 0);
  /* read again (the source rewinds to the stored offsets): counted once */
  feed(&f, 0, 1, &e2, NULL);
  feed(&f, 0, 2, NULL, "bad");
  CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
  mtld_pipeline_stats(f.p, &s);
  CHECK(s.records == 3 && s.events == 2 && s.rejected == 1);
  close_fixture(&f);
}

/* A partition resuming past its stored offset (no source to ask for the log
 * start: an unconfirmed gap): counted and reported with on_gap = continue,
 * stops the pipeline with nothing staged with on_gap = stop. */
static void test_offset_gap(void) {
  for (int stop = 0; stop < 2; stop++) {
    fixture_t f;
    open_fixture(&f, stop ? "gap-stop" : "gap-continue");
    f.cfg.on_gap = stop ? MTLD_GAP_STOP : MTLD_GAP_CONTINUE;
    mtld_pipeline_free(f.p);
    CHECK(mtld_pipeline_new(&f.p, &f.cfg, f.store, f.wm, err, sizeof err) == MTLD_OK);
    mtld_source_hooks_t h = mtld_pipeline_hooks(f.p);
    mtld_event_t e1 = event(1, MTLD_EV_CLICK, T0), e2 = event(2, MTLD_EV_CLICK, T0 + 1);
    feed(&f, 0, 0, &e1, NULL);
    CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
    h.assigned(h.ctx, TOPIC, 0, INT64_MIN); /* resumes at the stored offset 1 */
    feed(&f, 0, 6, &e2, NULL);              /* offsets 1..5 are gone */
    CHECK(mtld_pipeline_alert(f.p) &&
          strstr(mtld_pipeline_alert(f.p), "offset gap on events[0]: 5 records skipped"));
    CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
    mtld_pipeline_stats_t s;
    mtld_pipeline_stats(f.p, &s);
    int64_t next = -1, max_time;
    CHECK(mtld_store_get_offset(f.store, TOPIC, 0, &next, &max_time) == MTLD_OK);
    if (stop) {
      CHECK(mtld_pipeline_error(f.p, err, sizeof err) != MTLD_OK && strstr(err, "on_gap"));
      CHECK(s.skipped == 0 && s.records == 1 && next == 1);
    } else {
      CHECK(mtld_pipeline_error(f.p, err, sizeof err) == MTLD_OK);
      CHECK(s.skipped == 5 && s.records == 2 && next == 7);
      feed(&f, 0, 7, NULL, "bad"); /* checked once: the next record is no gap */
      CHECK(mtld_pipeline_commit(f.p, err, sizeof err) == MTLD_OK);
      mtld_pipeline_stats(f.p, &s);
      CHECK(s.skipped == 5 && s.records == 3);
    }
    mtld_pipeline_clear_alert(f.p);
    CHECK(mtld_pipeline_alert(f.p) == NULL);
    close_fixture(&f);
  }
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/mtld-test-pipeline-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_counts_offsets_due();
  test_sink_release_order();
  test_unmapped_partition();
  test_dropped_batch_counts();
  test_offset_gap();
  nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
