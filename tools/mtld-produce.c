/* mtld-produce - puts events into Kafka (or an event file): an event file as
 * it is (protobuf or JSON lines, e.g. from mtld-gen), or a CSV dataset through
 * the converters (tools/convert.h).
 *
 * Records are keyed by the decimal user id.  A record of an event file is
 * produced byte for byte, bad ones included (the daemon must see them); one
 * that does not decode gets an empty key.  Every delivery report is awaited:
 * the exit code says whether everything arrived.
 *
 * Exit: 0 all records delivered/written; 1 delivery, I/O or framing failure,
 * or interrupted; 2 usage or configuration error. */
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/decode.h"
#include "daemon/eventfile.h"
#include "features/event.h"
#include "tools/convert.h"
#include "tools/kafka_out.h"

#define PR_MAX_PROPS 64
#define PR_REC_CAP (1u << 20)
#define PR_MAX_EXAMPLES 5
#define PR_MAX_CSV 256

static volatile sig_atomic_t pr_stop;

static void pr_on_signal(int sig) {
  (void)sig;
  pr_stop = 1;
}

typedef struct {
  mtld_kout_t *kout;
  FILE *out;
  const char *out_path;
  mtld_format_t out_fmt; /* for --out, and the encoding of converted events */
  int validate;
  mtld_validate_limits_t lim;
  int64_t allowed_lateness_ms; /* joiner.allowed_lateness: the watermark trails the newest time */
  int64_t newest_ms;
  int64_t records, written, undecodable_keys, unconvertible;
  int64_t rejected[MTLD_REJECT_COUNT];
  unsigned char *buf;
  int failed;          /* sticky: I/O or produce error already reported */
  int64_t skip, limit; /* event files: records to pass over first; at most this many (-1: all) */
} pr_ctx_t;

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: mtld-produce INPUT [OUTPUT] [--validate] [--quiet]\n"
      "INPUT, one of:\n"
      "  --in FILE             event file (protobuf length-delimited or JSON lines; - = stdin)\n"
      "  --in-format F         auto (default) | protobuf | json\n"
      "  --csv FILE --layout L CSV dataset; L = taobao | amazon | aliccp | aliexpress | generic.\n"
      "                        --csv may be repeated: the files are converted in the order\n"
      "                        given, as one stream (each with its own header), then sorted\n"
      "                        (--map without --layout: the generic layout)\n"
      "  --map SPEC            column mapping (generic; overrides keys of a layout), e.g.\n"
      "                        'user=1,item=2,type=4,time=5,time_unit=s,header=0,sep=,'\n"
      "    keys: user item category request id   a column (header name or 1-based index);\n"
      "                        COL+COL hashes several columns into one id\n"
      "          type          a column read through --type-map, or const:TYPE\n"
      "          click purchase  0/1 label columns instead of type: each row becomes an\n"
      "                        IMPRESSION, plus a CLICK 100 ms later when click=1, plus a\n"
      "                        PURCHASE 200 ms later when purchase=1 (same request id)\n"
      "          time          a column; time_unit s (default) | ms | us | iso | date\n"
      "          time_offset   a column added to time, time_offset_unit s | ms (default) | us\n"
      "                        (Diginetica: time=eventdate,time_unit=date,time_offset=timeframe)\n"
      "          tz            zone of iso/date times without an offset: Z (default) | +08:00\n"
      "                        no time column: synthetic times --start-ms + row * 1 s\n"
      "          scenario      a column or const:NAME; scenario_prefix TEXT\n"
      "          rating price quantity position  number columns\n"
      "          attr.NAME     a named attribute: COLUMN (categorical) or num:COLUMN (numeric)\n"
      "          header 0|1  sep C|comma|tab|semicolon|pipe|space  ids auto|hash\n"
      "          null          values that mean \"no value\", '|'-separated (default\n"
      "                        NA|N/A|NULL|null|None|\\N|nan|NaN); a null user or item\n"
      "                        rejects the row, counted as null_id\n"
      "  --type-map SPEC       raw type -> type, e.g. 'pv=CLICK,buy=PURCHASE,fav=skip'\n"
      "  --scenario NAME       constant scenario for every converted row\n"
      "  --start-ms T          origin of synthetic times (ms or ISO-8601; default 2024-01-01)\n"
      "  --time-from T, --time-to T  reject rows outside [T1, T2) (ms or ISO-8601), counted\n"
      "                        as time_out_of_range; e.g. the Taobao release documents\n"
      "                        2017-11-25..2017-12-03 but holds a few rows outside it\n"
      "  --no-sort             stream the CSV in row order (default: sort by time, stable)\n"
      "  --skip N, --limit N   event files: pass over the first N records; produce at most N\n"
      "                        (a stream in slices, e.g. while a consumer keeps up)\n"
      "OUTPUT, one or both of (none with --validate: only check):\n"
      "  --bootstrap HOSTS --topic T [--kafka-prop K=V]... [--flush-timeout-ms N (120000)]\n"
      "  --out FILE [--format protobuf|json]   event file (default: the input's format;\n"
      "                        protobuf for CSV input)\n"
      "  --validate            decode and validate every record as the daemon would and\n"
      "                        print the counts per reject reason, too_late included: the\n"
      "                        watermark of one partition read in this order (newest time -\n"
      "                        joiner.allowed_lateness), validation.max_lateness behind it\n"
      "  --config FILE         take validation.* and joiner.allowed_lateness from the\n"
      "                        daemon's config (default: the daemon's defaults)\n"
      "  --max-lateness D, --allowed-lateness D   override them (90s, 1h, 1d)\n"
      "  --summary FILE        also write the counts as one JSON object to FILE, for\n"
      "                        scripts: records, delivered, failed, topic, written, out,\n"
      "                        without_user_key, not_converted, exit_code, and with\n"
      "                        --validate rejected {reason: count}\n");
}

/* Appends one record to --out. */
static void pr_write(pr_ctx_t *c, const void *buf, size_t len) {
  if (c->failed || !c->out) return;
  if (mtld_eventfile_write(c->out, c->out_fmt, buf, len) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: write %s: %m\n", c->out_path);
    c->failed = 1;
    return;
  }
  c->written++;
}

/* Produces one record keyed by the decimal user id (no key when 0). */
static void pr_send(pr_ctx_t *c, const void *buf, size_t len, uint64_t user) {
  if (c->failed || !c->kout) return;
  char key[24], err[512];
  int kn = user ? snprintf(key, sizeof key, "%" PRIu64, user) : 0;
  if (mtld_kout_send(c->kout, key, (size_t)kn, buf, len, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: %s\n", err);
    c->failed = 1;
  }
}

static void pr_validate(pr_ctx_t *c, const void *buf, size_t len, mtld_format_t fmt) {
  mtld_event_t ev;
  char err[256];
  mtld_reject_t r = mtld_decode_event(buf, len, fmt, c->lim.max_record_bytes, &ev, err, sizeof err);
  /* the daemon's watermark on one partition read in this order: the newest
   * accepted time minus joiner.allowed_lateness; validation.max_lateness
   * behind it is too_late */
  int64_t wm = c->newest_ms == INT64_MIN ? INT64_MIN : c->newest_ms - c->allowed_lateness_ms;
  if (r == MTLD_REJECT_NONE)
    r = mtld_validate_event(&ev, &c->lim, wm, c->newest_ms, err, sizeof err);
  if (r == MTLD_REJECT_NONE && ev.time_ms > c->newest_ms) c->newest_ms = ev.time_ms;
  c->rejected[r]++;
}

/* Encodes in the output format into c->buf.  0 means failure for JSON; for
 * protobuf it is the (valid) empty message: events are far below the 1 MiB
 * buffer. */
static size_t pr_encode(pr_ctx_t *c, const mtld_event_t *ev) {
  return c->out_fmt == MTLD_FMT_JSON ? mtld_encode_event_json(ev, (char *)c->buf, PR_REC_CAP)
                                     : mtld_encode_event_pb(ev, c->buf, PR_REC_CAP);
}

/* A converted event: encode in the output format, key by user. */
static void pr_emit_event(void *ctx, const mtld_event_t *ev) {
  pr_ctx_t *c = ctx;
  if (c->failed) return;
  size_t len = pr_encode(c, ev);
  if (len == 0 && c->out_fmt == MTLD_FMT_JSON) {
    fprintf(stderr, "mtld-produce: cannot encode event %" PRIu64 "\n", ev->event_id);
    c->failed = 1;
    return;
  }
  if (c->validate) pr_validate(c, c->buf, len, c->out_fmt);
  pr_write(c, c->buf, len);
  pr_send(c, c->buf, len, ev->user_id);
  c->records++;
}

/* An event file: each record as it is (re-encoded only when --out asks for
 * the other format). */
static int pr_run_file(pr_ctx_t *c, const char *path, mtld_format_t in_fmt, int out_fmt_given) {
  char err[512];
  mtld_eventfile_t *f;
  if (mtld_eventfile_open(&f, path, in_fmt, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: %s\n", err);
    return 1;
  }
  mtld_format_t fmt = mtld_eventfile_format(f);
  if (!out_fmt_given) c->out_fmt = fmt;
  const void *rec;
  size_t len;
  int64_t index;
  int rc = 0, n_ex = 0;
  for (;;) {
    if (pr_stop || c->failed) break;
    if (c->limit >= 0 && c->records >= c->limit) break;
    int got = mtld_eventfile_next(f, &rec, &len, &index, err, sizeof err);
    if (got == 0) break;
    if (got > 0 && index < c->skip) continue;
    if (got < 0) {
      fprintf(stderr, "mtld-produce: %s: %s\n", path, err);
      rc = 1;
      break;
    }
    mtld_event_t ev;
    char derr[256];
    /* no size limit here: a too-large record still gets its user's key */
    mtld_reject_t r = mtld_decode_event(rec, len, fmt, SIZE_MAX, &ev, derr, sizeof derr);
    uint64_t user = r == MTLD_REJECT_NONE ? ev.user_id : 0;
    if (!user) c->undecodable_keys++;
    if (c->validate) pr_validate(c, rec, len, fmt);
    c->records++;
    pr_send(c, rec, len, user); /* Kafka always gets the original bytes */
    if (fmt == c->out_fmt) {
      pr_write(c, rec, len);
      continue;
    }
    if (!c->out) continue;
    /* --out in the other format: only records that decode can be rewritten */
    if (r != MTLD_REJECT_NONE) {
      if (n_ex++ < PR_MAX_EXAMPLES)
        fprintf(stderr, "mtld-produce: record %" PRId64 " not converted (%s): %s\n", index,
                mtld_reject_name(r), derr);
      c->unconvertible++;
      continue;
    }
    size_t n = pr_encode(c, &ev);
    if (n == 0 && c->out_fmt == MTLD_FMT_JSON) {
      fprintf(stderr, "mtld-produce: cannot encode record %" PRId64 "\n", index);
      rc = 1;
      break;
    }
    pr_write(c, c->buf, n);
  }
  mtld_eventfile_close(f);
  return rc;
}

/* Converts the CSV files in the order given, as one stream: sorted by time
 * (stable: ties keep file then row order) unless sort is 0. */
static int pr_run_csv(pr_ctx_t *c, const char *const *paths, int n_paths,
                      const mtld_conv_opts_t *co, int sort, int quiet) {
  char err[512];
  mtld_conv_t *conv;
  if (mtld_conv_new(&conv, co, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: %s\n", err);
    return 2;
  }
  int rc = 0;
  mtld_event_t *all = NULL;
  size_t n_all = 0;
  char *line = NULL;
  size_t cap = 0;
  for (int f = 0; f < n_paths && rc == 0 && !pr_stop && !c->failed; f++) {
    const char *path = paths[f];
    if (f) mtld_conv_next_file(conv);
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
      fprintf(stderr, "mtld-produce: %s: %m\n", path);
      rc = 1;
      break;
    }
    mtld_status_t st = MTLD_OK;
    ssize_t got = 0;
    if (sort) {
      mtld_event_t *ev = NULL;
      size_t n = 0;
      st = mtld_conv_read_all(conv, in, 0, &ev, &n, err, sizeof err);
      if (st == MTLD_OK && n) {
        mtld_event_t *na = realloc(all, (n_all + n) * sizeof *na);
        if (!na) {
          st = MTLD_ERR_NOMEM;
          snprintf(err, sizeof err, "out of memory");
        } else {
          all = na;
          memcpy(all + n_all, ev, n * sizeof *ev);
          n_all += n;
        }
      }
      free(ev);
    } else {
      while (st == MTLD_OK && !pr_stop && !c->failed &&
             (got = mtld_conv_read_record(conv, in, &line, &cap)) > 0)
        st = mtld_conv_line(conv, line, (size_t)got, pr_emit_event, c, err, sizeof err);
      if (got == -2) {
        st = MTLD_ERR_NOMEM;
        snprintf(err, sizeof err, "out of memory");
      }
    }
    if (st != MTLD_OK) {
      fprintf(stderr, "mtld-produce: %s: %s\n", path, err);
      rc = st == MTLD_ERR_INVALID ? 2 : 1;
    } else if (ferror(in)) {
      fprintf(stderr, "mtld-produce: read %s: %m\n", path);
      rc = 1;
    }
    if (in != stdin) fclose(in);
  }
  free(line);
  if (rc == 0 && sort && mtld_conv_sort_events(all, n_all) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: out of memory\n");
    rc = 1;
  }
  for (size_t i = 0; rc == 0 && i < n_all && !pr_stop && !c->failed; i++) pr_emit_event(c, &all[i]);
  free(all);
  if (!quiet || rc) mtld_conv_report(conv, stderr);
  mtld_conv_free(conv);
  return rc;
}

/* ms since the epoch, or ISO-8601; > 0.  Returns 0, or 1 when malformed. */
static int pr_parse_time(const char *v, int64_t *ms) {
  char *end;
  long long x = strtoll(v, &end, 10);
  if (end != v && !*end) {
    *ms = x;
  } else if (mtld_conv_parse_iso_ms(v, strlen(v), ms) != 0) {
    return 1;
  }
  return *ms <= 0;
}

/* --summary FILE: the final counts as one JSON object (written whatever the
 * outcome, so a script can tell what happened).  0, or -1 when it cannot be
 * written (reported). */
static int pr_write_summary(const pr_ctx_t *c, const char *path, const char *topic,
                            const char *out_path, int rc) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "records", json_object_new_int64(c->records));
  if (c->kout) {
    json_object_object_add(o, "delivered", json_object_new_int64(mtld_kout_delivered(c->kout)));
    json_object_object_add(o, "failed", json_object_new_int64(mtld_kout_failed(c->kout)));
    json_object_object_add(o, "topic", json_object_new_string(topic));
  }
  if (out_path) {
    json_object_object_add(o, "written", json_object_new_int64(c->written));
    json_object_object_add(o, "out", json_object_new_string(out_path));
  }
  json_object_object_add(o, "without_user_key", json_object_new_int64(c->undecodable_keys));
  json_object_object_add(o, "not_converted", json_object_new_int64(c->unconvertible));
  if (c->validate) {
    json_object *r = json_object_new_object();
    for (int k = 0; k < MTLD_REJECT_COUNT; k++)
      if (c->rejected[k])
        json_object_object_add(r, mtld_reject_name((mtld_reject_t)k),
                               json_object_new_int64(c->rejected[k]));
    json_object_object_add(o, "rejected", r);
  }
  json_object_object_add(o, "exit_code", json_object_new_int(rc));
  FILE *f = fopen(path, "w");
  int ok = f && fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) > 0;
  if (f && fclose(f) != 0) ok = 0;
  json_object_put(o);
  if (!ok) fprintf(stderr, "mtld-produce: --summary %s: %m\n", path);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  const char *in_path = NULL, *bootstrap = NULL, *topic = NULL, *out_path = NULL;
  const char *config_path = NULL, *max_lateness = NULL, *allowed_lateness = NULL;
  const char *summary_path = NULL;
  const char *props[PR_MAX_PROPS], *csv_paths[PR_MAX_CSV];
  int n_props = 0, n_csv = 0, quiet = 0, sort = 1, out_fmt_given = 0, flush_ms = 120000;
  mtld_format_t in_fmt = MTLD_FMT_AUTO;
  mtld_conv_opts_t co = {0};
  pr_ctx_t c = {.out_fmt = MTLD_FMT_PROTOBUF, .newest_ms = INT64_MIN, .limit = -1};
  mtld_validate_limits_default(&c.lim);

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
    if (strcmp(a, "--validate") == 0) {
      c.validate = 1;
      continue;
    }
    if (strcmp(a, "--no-sort") == 0) {
      sort = 0;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "mtld-produce: %s needs a value (or is unknown)\n", a);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    int bad = 0;
    if (strcmp(a, "--in") == 0) {
      in_path = v;
    } else if (strcmp(a, "--in-format") == 0) {
      int f = mtld_format_parse(v);
      bad = f < 0;
      in_fmt = (mtld_format_t)f;
    } else if (strcmp(a, "--csv") == 0) {
      bad = n_csv == PR_MAX_CSV;
      if (!bad) csv_paths[n_csv++] = v;
    } else if (strcmp(a, "--config") == 0) {
      config_path = v;
    } else if (strcmp(a, "--max-lateness") == 0) {
      max_lateness = v;
    } else if (strcmp(a, "--allowed-lateness") == 0) {
      allowed_lateness = v;
    } else if (strcmp(a, "--layout") == 0) {
      co.layout = v;
    } else if (strcmp(a, "--map") == 0) {
      co.map = v;
    } else if (strcmp(a, "--type-map") == 0) {
      co.type_map = v;
    } else if (strcmp(a, "--scenario") == 0) {
      co.scenario = v;
    } else if (strcmp(a, "--start-ms") == 0) {
      bad = pr_parse_time(v, &co.base_ms);
    } else if (strcmp(a, "--time-from") == 0) {
      bad = pr_parse_time(v, &co.time_from_ms);
    } else if (strcmp(a, "--time-to") == 0) {
      bad = pr_parse_time(v, &co.time_to_ms);
    } else if (strcmp(a, "--bootstrap") == 0) {
      bootstrap = v;
    } else if (strcmp(a, "--topic") == 0) {
      topic = v;
    } else if (strcmp(a, "--kafka-prop") == 0) {
      bad = n_props == PR_MAX_PROPS;
      if (!bad) props[n_props++] = v;
    } else if (strcmp(a, "--flush-timeout-ms") == 0) {
      char *end;
      long ms = strtol(v, &end, 10);
      bad = end == v || *end || ms < 0 || ms > 86400000;
      flush_ms = (int)ms;
    } else if (strcmp(a, "--skip") == 0 || strcmp(a, "--limit") == 0) {
      char *end;
      long long n = strtoll(v, &end, 10);
      bad = end == v || *end || n < 0;
      *(strcmp(a, "--skip") == 0 ? &c.skip : &c.limit) = n;
    } else if (strcmp(a, "--out") == 0) {
      out_path = v;
    } else if (strcmp(a, "--summary") == 0) {
      summary_path = v;
    } else if (strcmp(a, "--format") == 0) {
      int f = mtld_format_parse(v);
      bad = f != MTLD_FMT_PROTOBUF && f != MTLD_FMT_JSON;
      c.out_fmt = (mtld_format_t)f;
      out_fmt_given = 1;
    } else {
      fprintf(stderr, "mtld-produce: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
    if (bad) {
      fprintf(stderr, "mtld-produce: bad value for %s: '%s'\n", a, v);
      return 2;
    }
  }
  if (!in_path == !n_csv) {
    fprintf(stderr, "mtld-produce: give one input: --in FILE or --csv FILE --layout NAME\n");
    return 2;
  }
  if (n_csv && !co.layout && co.map) co.layout = "generic"; /* a mapping is the layout */
  if (n_csv && !co.layout) {
    fprintf(stderr, "mtld-produce: --csv needs --layout (or --map for a generic mapping)\n");
    return 2;
  }
  if ((bootstrap != NULL) != (topic != NULL)) {
    fprintf(stderr, "mtld-produce: --bootstrap and --topic go together\n");
    return 2;
  }
  if (!bootstrap && !out_path && !c.validate) {
    fprintf(stderr, "mtld-produce: give an output (--bootstrap/--topic or --out) or --validate\n");
    return 2;
  }
  {
    /* the daemon's validation limits and watermark lateness */
    mtld_config_t *cfg = malloc(sizeof *cfg);
    if (!cfg) return 1;
    char cerr[1024];
    mtld_status_t cst = MTLD_OK;
    if (config_path)
      cst = mtld_config_load(cfg, config_path, cerr, sizeof cerr);
    else
      mtld_config_default(cfg);
    if (cst != MTLD_OK) {
      fprintf(stderr, "mtld-produce: %s\n", cerr);
      free(cfg);
      return 2;
    }
    c.lim = cfg->limits;
    c.allowed_lateness_ms = cfg->allowed_lateness_ms;
    free(cfg);
    if ((max_lateness && mtld_config_parse_duration_ms(max_lateness, &c.lim.max_lateness_ms)) ||
        (allowed_lateness &&
         mtld_config_parse_duration_ms(allowed_lateness, &c.allowed_lateness_ms))) {
      fprintf(stderr, "mtld-produce: bad duration for --max-lateness/--allowed-lateness\n");
      return 2;
    }
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = pr_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int rc = 0;
  char err[512];
  c.buf = malloc(PR_REC_CAP);
  if (!c.buf) return 1;
  if (bootstrap &&
      mtld_kout_new(&c.kout, bootstrap, topic, props, n_props, err, sizeof err) != MTLD_OK) {
    fprintf(stderr, "mtld-produce: kafka: %s\n", err);
    free(c.buf);
    return 2;
  }
  if (out_path) {
    c.out_path = out_path;
    c.out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (!c.out) {
      fprintf(stderr, "mtld-produce: %s: %m\n", out_path);
      rc = 1;
    }
  }
  if (rc == 0)
    rc = in_path ? pr_run_file(&c, in_path, in_fmt, out_fmt_given)
                 : pr_run_csv(&c, csv_paths, n_csv, &co, sort, quiet);
  if (c.failed && rc == 0) rc = 1;
  if (pr_stop && rc == 0) {
    fprintf(stderr, "mtld-produce: interrupted\n");
    rc = 1;
  }
  if (c.kout) {
    if (mtld_kout_flush(c.kout, flush_ms, err, sizeof err) != MTLD_OK) {
      fprintf(stderr, "mtld-produce: kafka: %s\n", err);
      if (rc == 0) rc = 1;
    }
  }
  if (c.out && c.out != stdout && fclose(c.out) != 0) {
    fprintf(stderr, "mtld-produce: close %s: %m\n", out_path);
    if (rc == 0) rc = 1;
  } else if (c.out == stdout && fflush(stdout) != 0 && rc == 0) {
    rc = 1;
  }
  if (!quiet) {
    fprintf(stderr, "mtld-produce: %" PRId64 " records", c.records);
    if (c.kout)
      fprintf(stderr, ", %" PRId64 " delivered to %s, %" PRId64 " failed",
              mtld_kout_delivered(c.kout), topic, mtld_kout_failed(c.kout));
    if (out_path) fprintf(stderr, ", %" PRId64 " written to %s", c.written, out_path);
    if (in_path) fprintf(stderr, "; %" PRId64 " without a user key", c.undecodable_keys);
    if (c.unconvertible)
      fprintf(stderr, "; %" PRId64 " not converted (they do not decode)", c.unconvertible);
    fprintf(stderr, "\n");
  }
  if (c.validate) {
    /* one line per reason, machine-readable for tests: "validate <reason> <count>" */
    for (int r = 0; r < MTLD_REJECT_COUNT; r++)
      if (c.rejected[r])
        fprintf(stderr, "validate %s %" PRId64 "\n", mtld_reject_name((mtld_reject_t)r),
                c.rejected[r]);
    int64_t late = c.rejected[MTLD_REJECT_TOO_LATE];
    if (late) {
      char ml[32], al[32];
      mtld_config_format_duration(c.lim.max_lateness_ms, ml, sizeof ml);
      mtld_config_format_duration(c.allowed_lateness_ms, al, sizeof al);
      fprintf(stderr,
              "mtld-produce: warning: %" PRId64 " of %" PRId64 " records (%.1f%%) would be "
              "rejected as too_late: more than validation.max_lateness = %s behind the "
              "watermark (newest time - joiner.allowed_lateness = %s) of one partition read "
              "in this order; sort by time (the default without --no-sort) or raise "
              "validation.max_lateness\n",
              late, c.records, c.records ? 100.0 * (double)late / (double)c.records : 0.0, ml, al);
    }
  }
  if (summary_path && pr_write_summary(&c, summary_path, topic, out_path, rc) != 0 && rc == 0)
    rc = 1;
  mtld_kout_destroy(c.kout);
  free(c.buf);
  return rc;
}
