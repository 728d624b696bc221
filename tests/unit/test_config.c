/* test_config.c - the config file: defaults, a full file, every class of
 * error with its file, line and key, the kafka passthrough, durations, the
 * print -> load round trip, the reload diff, and the shipped conf/ files. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon/config.h"
#include "daemon/log.h"

#ifndef MTLD_SOURCE_DIR
#define MTLD_SOURCE_DIR "."
#endif

/* The minimum a Kafka config needs. */
#define MINIMAL                                                                                    \
  "source = { topics = [\"events\"]; };\n"                                                         \
  "kafka = { bootstrap_servers = \"127.0.0.1:9092\"; };\n"

static mtld_config_t cfg, cfg2; /* big: keep them off the stack */

static const char *kafka_value(const mtld_config_t *c, const char *name) {
  for (int i = 0; i < c->n_kafka; i++)
    if (strcmp(c->kafka[i].name, name) == 0) return c->kafka[i].value;
  return NULL;
}

/* Property `name` is present with `value`. */
static int kafka_is(const mtld_config_t *c, const char *name, const char *value) {
  const char *v = kafka_value(c, name);
  return v && strcmp(v, value) == 0;
}

/* Loads text; checks it fails with a message containing want. */
static void expect_error(const char *text, const char *want, int line) {
  char err[512] = "";
  mtld_status_t st = mtld_config_load_string(&cfg, text, "t.conf", err, sizeof(err));
  int ok = st == MTLD_ERR_CONFIG && strstr(err, want) != NULL;
  if (!ok)
    fprintf(stderr, "test line %d: want error containing \"%s\", got %d \"%s\"\n", line, want, st,
            err);
  CHECK(ok);
}
#define EXPECT_ERROR(text, want) expect_error(text, want, __LINE__)

static int load_ok(mtld_config_t *c, const char *text) {
  char err[512] = "";
  mtld_status_t st = mtld_config_load_string(c, text, "t.conf", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "unexpected error: %s\n", err);
  return st == MTLD_OK;
}

static void test_defaults(void) {
  mtld_config_default(&cfg);
  CHECK(cfg.source_type == MTLD_SOURCE_KAFKA);
  CHECK(cfg.n_topics == 0);
  CHECK(cfg.format == MTLD_FMT_AUTO);
  CHECK(cfg.n_kafka == 1 && kafka_is(&cfg, "group.id", "mtld"));
  CHECK(strcmp(cfg.dead_letter_topic, "") == 0);
  CHECK(strcmp(cfg.store_path, "/var/lib/mtld/store") == 0);
  CHECK(cfg.store_sync == 1);
  CHECK(cfg.batch_max_events == 2000);
  CHECK(cfg.batch_max_ms == 200);
  mtld_feature_def_t def;
  mtld_feature_def_default(&def);
  CHECK(memcmp(&cfg.features, &def, sizeof(def)) == 0);
  CHECK(cfg.features.n_half_lives == 3 && cfg.features.half_life_s[1] == 86400.0);
  CHECK(cfg.features.seq_len == 50);
  CHECK(cfg.limits.max_record_bytes == 65536);
  CHECK(cfg.limits.max_lateness_ms == 86400000 && cfg.limits.max_ahead_ms == 0);
  mtld_joiner_config_t jdef;
  mtld_joiner_config_default(&jdef);
  CHECK(memcmp(&cfg.joiner, &jdef, sizeof(jdef)) == 0);
  CHECK(cfg.allowed_lateness_ms == 60000 && cfg.idle_ms == 0);
  CHECK(strcmp(cfg.log_level, "info") == 0);
  CHECK(cfg.metrics_enabled == 1 && strcmp(cfg.metrics_listen, "127.0.0.1") == 0);
  CHECK(cfg.metrics_port == 9464);
  CHECK(cfg.shutdown_timeout_ms == 30000 && cfg.status_interval_ms == 5000);

  /* a minimal file: everything else stays default */
  CHECK(load_ok(&cfg2, MINIMAL));
  CHECK(cfg2.n_topics == 1 && strcmp(cfg2.topics[0], "events") == 0);
  CHECK(kafka_is(&cfg2, "bootstrap.servers", "127.0.0.1:9092"));
  CHECK(strcmp(cfg2.path, "t.conf") == 0);
  CHECK(mtld_config_diff(&cfg, &cfg2, NULL, NULL) == 2); /* topics, kafka.bootstrap_servers */
}

static const char *full_text =
    "# every key, none at its default\n"
    "source = {\n"
    "  type = \"kafka\";\n"
    "  topics = [\"a\", \"b\"];\n"
    "  file = \"/tmp/x.pb\";\n"
    "  format = \"json\";\n"
    "};\n"
    "kafka = {\n"
    "  bootstrap_servers = \"k1:9092,k2:9092\";\n"
    "  group_id = \"g\";\n"
    "  session_timeout_ms = 6000;\n"
    "  enable_partition_eof = false;\n"
    "  some_float = 0.25;\n"
    "};\n"
    "dead_letter = { topic = \"dlq\"; };\n"
    "store = { path = \"/srv/s\"; sync = false; batch_max_events = 500; batch_max_ms = \"1s\"; };\n"
    "features = {\n"
    "  half_lives = (\"30m\", 7200);\n"
    "  sequence_length = 20;\n"
    "  prior_strength = 4;\n"
    "  ctr_prior = 0.1; cvr_prior = 0.03; cart_prior = 0.07;\n"
    "};\n"
    "validation = { max_record_bytes = 1024; max_lateness = \"2h\"; max_ahead = 60; };\n"
    "joiner = { mode = \"sampled_negatives\"; click_window = \"10m\"; conversion_window = \"2d\";\n"
    "  negatives_per_positive = 8; popularity_size = 500; seed = 5000000000L;\n"
    "  allowed_lateness = \"90s\"; idle_after = \"5m\"; };\n"
    "log = { level = \"warn\"; };\n"
    "metrics = { enabled = false; listen = \"::1\"; port = 0; };\n"
    "shutdown_timeout = \"1m\";\n"
    "status_interval = \"250ms\";\n";

static void test_full(void) {
  CHECK(load_ok(&cfg, full_text));
  CHECK(cfg.source_type == MTLD_SOURCE_KAFKA);
  CHECK(cfg.n_topics == 2 && strcmp(cfg.topics[1], "b") == 0);
  CHECK(strcmp(cfg.source_file, "/tmp/x.pb") == 0);
  CHECK(cfg.format == MTLD_FMT_JSON);
  CHECK(cfg.n_kafka == 5);
  CHECK(kafka_is(&cfg, "bootstrap.servers", "k1:9092,k2:9092"));
  CHECK(kafka_is(&cfg, "group.id", "g"));
  CHECK(kafka_is(&cfg, "session.timeout.ms", "6000"));
  CHECK(kafka_is(&cfg, "enable.partition.eof", "false"));
  CHECK(kafka_is(&cfg, "some.float", "0.25"));
  CHECK(strcmp(cfg.kafka[0].name, "bootstrap.servers") == 0); /* file order kept */
  CHECK(strcmp(cfg.dead_letter_topic, "dlq") == 0);
  CHECK(strcmp(cfg.store_path, "/srv/s") == 0);
  CHECK(cfg.store_sync == 0);
  CHECK(cfg.batch_max_events == 500);
  CHECK(cfg.batch_max_ms == 1000);
  CHECK(cfg.features.n_half_lives == 2);
  CHECK(cfg.features.half_life_s[0] == 1800.0 && cfg.features.half_life_s[1] == 7200.0);
  CHECK(cfg.features.seq_len == 20);
  CHECK(cfg.features.prior_strength == 4.0);
  CHECK(cfg.features.ctr_prior == 0.1 && cfg.features.cvr_prior == 0.03);
  CHECK(cfg.features.cart_prior == 0.07);
  CHECK(cfg.limits.max_record_bytes == 1024);
  CHECK(cfg.limits.max_lateness_ms == 7200000);
  CHECK(cfg.limits.max_ahead_ms == 60000); /* plain integer: seconds */
  CHECK(cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES);
  CHECK(cfg.joiner.click_window_ms == 600000 && cfg.joiner.conversion_window_ms == 172800000);
  CHECK(cfg.joiner.negatives_per_positive == 8 && cfg.joiner.popularity_size == 500);
  CHECK(cfg.joiner.seed == 5000000000ULL);
  CHECK(cfg.allowed_lateness_ms == 90000 && cfg.idle_ms == 300000);
  CHECK(strcmp(cfg.log_level, "warning") == 0); /* canonical name */
  CHECK(cfg.metrics_enabled == 0 && strcmp(cfg.metrics_listen, "::1") == 0);
  CHECK(cfg.metrics_port == 0);
  CHECK(cfg.shutdown_timeout_ms == 60000);
  CHECK(cfg.status_interval_ms == 250);

  /* type "file" needs no brokers and no topics */
  CHECK(load_ok(&cfg, "source = { type = \"file\"; file = \"-\"; };"));
  CHECK(cfg.source_type == MTLD_SOURCE_FILE && strcmp(cfg.source_file, "-") == 0);
  /* a plain integer for an *_ms key is milliseconds */
  CHECK(load_ok(&cfg, MINIMAL "store = { batch_max_ms = 50; };"));
  CHECK(cfg.batch_max_ms == 50);
}

static void test_errors(void) {
  /* syntax: libconfig's line */
  EXPECT_ERROR(MINIMAL "store = {\n  sync = ;\n};\n", "t.conf:4: syntax error");
  EXPECT_ERROR("a = 1;\na = 2;\n", "t.conf:2: duplicate setting name");

  /* unknown keys, top level and in a group, with a suggestion for typos */
  EXPECT_ERROR(MINIMAL "\nshutdown_timout = \"5s\";\n",
               "t.conf:4: shutdown_timout: unknown key (did you mean shutdown_timeout?)");
  EXPECT_ERROR(MINIMAL "store = {\n  path = \"/x\";\n  bath_max_events = 5;\n};\n",
               "t.conf:5: store.bath_max_events: unknown key (did you mean "
               "store.batch_max_events?)");
  EXPECT_ERROR(MINIMAL "stroe = { path = \"/x\"; };\n",
               "t.conf:3: stroe: unknown key (did you mean store?)");
  EXPECT_ERROR(MINIMAL "zzz = 1;\n", "t.conf:3: zzz: unknown key");
  EXPECT_ERROR(MINIMAL "log = {\n  verbosity = 3;\n};\n", "t.conf:4: log.verbosity: unknown key");

  /* wrong types */
  EXPECT_ERROR(MINIMAL "store = {\n  batch_max_events = \"2000\";\n};\n",
               "t.conf:4: store.batch_max_events: expected an integer");
  EXPECT_ERROR(MINIMAL "store = { sync = 1; };\n", "t.conf:3: store.sync: expected true or false");
  EXPECT_ERROR(MINIMAL "metrics = { listen = 5; };\n",
               "t.conf:3: metrics.listen: expected a string");
  EXPECT_ERROR(MINIMAL "features = { ctr_prior = \"x\"; };\n",
               "t.conf:3: features.ctr_prior: expected a number");
  EXPECT_ERROR(MINIMAL "store = 5;\n", "t.conf:3: store: expected a group");
  EXPECT_ERROR(MINIMAL "shutdown_timeout = true;\n",
               "t.conf:3: shutdown_timeout: expected a duration");
  EXPECT_ERROR("source = { topics = \"events\"; };\n",
               "t.conf:1: source.topics: expected a list of topic names");
  EXPECT_ERROR("source = { topics = (\"a\", 5); };\n",
               "t.conf:1: source.topics[1]: expected a string");
  EXPECT_ERROR(MINIMAL "\n\nkafka2 = 1;\n", "t.conf:5: kafka2: unknown key");
  EXPECT_ERROR("source = { topics = [\"e\"]; };\nkafka = {\n  bootstrap_servers = [\"a\"];\n};\n",
               "t.conf:3: kafka.bootstrap_servers: expected a string, a number or a boolean");
  EXPECT_ERROR(MINIMAL "features = { half_lives = \"1h\"; };\n",
               "t.conf:3: features.half_lives: expected a list of durations");

  /* out of range */
  EXPECT_ERROR(MINIMAL "store = {\n  batch_max_events = 0;\n};\n",
               "t.conf:4: store.batch_max_events: must be between 1 and 1000000");
  EXPECT_ERROR(MINIMAL "store = { batch_max_events = 1000001; };\n",
               "t.conf:3: store.batch_max_events: must be between 1 and 1000000");
  EXPECT_ERROR(MINIMAL "features = {\n sequence_length = 201;\n};\n",
               "t.conf:4: features.sequence_length: must be between 1 and 200");
  EXPECT_ERROR(MINIMAL "metrics = { port = 65536; };\n",
               "t.conf:3: metrics.port: must be between 0 and 65535");
  EXPECT_ERROR(MINIMAL "metrics = { port = -1; };\n",
               "t.conf:3: metrics.port: must be between 0 and 65535");
  EXPECT_ERROR(MINIMAL "features = { half_lives = [\"1h\", \"2h\", \"3h\", \"4h\", \"5h\"]; };\n",
               "t.conf:3: features.half_lives: must have 1 to 4 entries, not 5");
  EXPECT_ERROR(MINIMAL "features = { half_lives = []; };\n",
               "t.conf:3: features.half_lives: must have 1 to 4 entries, not 0");
  EXPECT_ERROR(MINIMAL "features = { half_lives = [\n  \"1h\",\n  \"0s\"]; };\n",
               "t.conf:5: features.half_lives[1]: must be > 0");
  EXPECT_ERROR(MINIMAL "features = { prior_strength = 0.0; };\n",
               "t.conf:3: features.prior_strength: must be > 0");
  EXPECT_ERROR(MINIMAL "features = { cvr_prior = 1.5; };\n",
               "t.conf:3: features.cvr_prior: must be between 0 and 1");
  EXPECT_ERROR(MINIMAL "store = { batch_max_ms = \"2m\"; };\n",
               "t.conf:3: store.batch_max_ms: must be between 1ms and 1m");
  EXPECT_ERROR(MINIMAL "status_interval = \"10ms\";\n",
               "t.conf:3: status_interval: must be between 100ms and 1h");
  EXPECT_ERROR(MINIMAL "validation = { max_record_bytes = 10; };\n",
               "t.conf:3: validation.max_record_bytes: must be between 64 and 268435456");
  {
    char text[2048] = "kafka = { bootstrap_servers = \"b\"; };\nsource = { topics = [";
    for (int i = 0; i < MTLD_MAX_TOPICS + 1; i++)
      snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\"t%d\"", i ? ", " : "", i);
    strcat(text, "]; };\n");
    EXPECT_ERROR(text, "t.conf:2: source.topics: at most 16 topics");
  }

  EXPECT_ERROR(MINIMAL "joiner = {\n  negatives_per_positive = 101;\n};\n",
               "t.conf:4: joiner.negatives_per_positive: must be between 0 and 100");
  EXPECT_ERROR(MINIMAL "joiner = { seed = -1; };\n", "t.conf:3: joiner.seed: must be >= 0");
  EXPECT_ERROR(MINIMAL "joiner = { click_window = \"31d\"; };\n",
               "t.conf:3: joiner.click_window: must be between 0s and 30d");

  /* bad values of enumerations */
  EXPECT_ERROR(MINIMAL "joiner = { mode = \"clicks\"; };\n",
               "t.conf:3: joiner.mode: must be \"impressions\" or \"sampled_negatives\"");
  EXPECT_ERROR(MINIMAL "log = { level = \"loud\"; };\n", "t.conf:3: log.level: must be \"err\"");
  EXPECT_ERROR("source = {\n  type = \"kafak\";\n};\n",
               "t.conf:2: source.type: must be \"kafka\" or \"file\", not \"kafak\"");
  EXPECT_ERROR(MINIMAL "source2 = 1;\n", "source2: unknown key (did you mean source?)");
  EXPECT_ERROR("source = { topics = [\"e\"];\n format = \"xml\"; };\n"
               "kafka = { bootstrap_servers = \"b\"; };\n",
               "t.conf:2: source.format: must be \"auto\", \"protobuf\" or \"json\"");
  EXPECT_ERROR(MINIMAL "metrics = {\n  listen = \"localhost\";\n};\n",
               "t.conf:4: metrics.listen: must be an IPv4 or IPv6 address");

  /* missing required keys: the parent's line, or no line when absent */
  EXPECT_ERROR("kafka = { bootstrap_servers = \"b\"; };\nsource = {\n  topics = [];\n};\n",
               "t.conf:3: source.topics: at least one topic is required when source.type is "
               "\"kafka\"");
  EXPECT_ERROR("kafka = { bootstrap_servers = \"b\"; };\n\nsource = {\n  type = \"kafka\";\n};\n",
               "t.conf:3: source.topics: at least one topic is required");
  EXPECT_ERROR("kafka = { bootstrap_servers = \"b\"; };\n",
               "t.conf: source.topics: at least one topic is required");
  EXPECT_ERROR("source = { topics = [\"e\"]; };\n\nkafka = {\n  group_id = \"g\";\n};\n",
               "t.conf:3: kafka.bootstrap_servers: required when source.type is \"kafka\"");
  EXPECT_ERROR("source = { topics = [\"e\"]; };\n",
               "t.conf: kafka.bootstrap_servers: required when source.type is \"kafka\"");
  EXPECT_ERROR("source = {\n  type = \"file\";\n};\n",
               "t.conf:1: source.file: required when source.type is \"file\"");
  EXPECT_ERROR("source = { type = \"file\"; file = \"x\"; };\ndead_letter = { topic = \"d\"; };\n",
               "kafka.bootstrap_servers: required when dead_letter.topic is set");
  EXPECT_ERROR(MINIMAL "store = {\n  path = \"\";\n};\n",
               "t.conf:4: store.path: must not be empty");

  /* bad durations */
  EXPECT_ERROR(MINIMAL "validation = {\n  max_lateness = \"1x\";\n};\n",
               "t.conf:4: validation.max_lateness: bad duration \"1x\"");
  EXPECT_ERROR(MINIMAL "validation = { max_ahead = \"1.5h\"; };\n",
               "t.conf:3: validation.max_ahead: bad duration \"1.5h\"");
  EXPECT_ERROR(MINIMAL "shutdown_timeout = \"s\";\n", "t.conf:3: shutdown_timeout: bad duration");
  EXPECT_ERROR(MINIMAL "shutdown_timeout = \"30\";\n", "t.conf:3: shutdown_timeout: bad duration");
  EXPECT_ERROR(MINIMAL "validation = { max_ahead = -5; };\n",
               "t.conf:3: validation.max_ahead: must be >= 0");
  EXPECT_ERROR(MINIMAL "features = { half_lives = [\"1h\", \"1 d\"]; };\n",
               "t.conf:3: features.half_lives[1]: bad duration \"1 d\"");

  /* a failed load leaves the target untouched */
  CHECK(load_ok(&cfg, MINIMAL "store = { batch_max_events = 7; };"));
  char err[256];
  CHECK(mtld_config_load_string(&cfg, MINIMAL "store = { batch_max_events = 0; };", "t.conf", err,
                                sizeof(err)) == MTLD_ERR_CONFIG);
  CHECK(cfg.batch_max_events == 7);

  /* files: missing, and an @include'd file's own name and line */
  CHECK(mtld_config_load(&cfg, "/nonexistent/mtld.conf", err, sizeof(err)) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "/nonexistent/mtld.conf: cannot open: No such file") != NULL);
  char dir[] = "/tmp/mtld-test-config-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char main_path[256], inc_path[256];
  snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
  snprintf(inc_path, sizeof(inc_path), "%s/store.conf", dir);
  FILE *f = fopen(main_path, "w");
  fprintf(f, MINIMAL "@include \"store.conf\"\n");
  fclose(f);
  f = fopen(inc_path, "w");
  fprintf(f, "store = {\n  batch_max_events = 64;\n};\n");
  fclose(f);
  CHECK(mtld_config_load(&cfg, main_path, err, sizeof(err)) == MTLD_OK);
  CHECK(cfg.batch_max_events == 64 && strcmp(cfg.path, main_path) == 0);
  f = fopen(inc_path, "w");
  fprintf(f, "store = {\n  batch_max_events = -64;\n};\n");
  fclose(f);
  CHECK(mtld_config_load(&cfg, main_path, err, sizeof(err)) == MTLD_ERR_CONFIG);
  char want[512];
  snprintf(want, sizeof(want), "%s:2: store.batch_max_events: must be between", inc_path);
  CHECK(strstr(err, want) != NULL);
  f = fopen(main_path, "w");
  fprintf(f, MINIMAL "store = {\n  sync = true;\n  path = = \"x\";\n};\n");
  fclose(f);
  CHECK(mtld_config_load(&cfg, main_path, err, sizeof(err)) == MTLD_ERR_CONFIG);
  snprintf(want, sizeof(want), "%s:5: syntax error", main_path);
  CHECK(strstr(err, want) != NULL);
  unlink(main_path);
  unlink(inc_path);
  rmdir(dir);
}

static void test_kafka(void) {
  CHECK(load_ok(&cfg, "source = { topics = [\"e\"]; };\n"
                      "kafka = { bootstrap_servers = \"b:1\"; group_instance_id = \"i-1\";\n"
                      "  fetch_wait_max_ms = 100; api_version_request = true;\n"
                      "  statistics_interval_ms = 3000000000L; };\n"));
  CHECK(kafka_is(&cfg, "group.instance.id", "i-1"));
  CHECK(kafka_is(&cfg, "fetch.wait.max.ms", "100"));
  CHECK(kafka_is(&cfg, "api.version.request", "true"));
  CHECK(kafka_is(&cfg, "statistics.interval.ms", "3000000000"));
  CHECK(kafka_is(&cfg, "group.id", "mtld")); /* default added */
  CHECK(cfg.n_kafka == 6);
  CHECK(kafka_value(&cfg, "group_instance_id") == NULL);

  /* too many properties */
  char text[8192] = "source = { topics = [\"e\"]; };\nkafka = {\n bootstrap_servers = \"b\";\n";
  for (int i = 0; i < MTLD_MAX_KAFKA_PROPS; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), " p%d = 1;\n", i);
  strcat(text, "};\n");
  EXPECT_ERROR(text, "t.conf:67: kafka.p63: too many kafka properties (at most 64)");
}

static void test_duration(void) {
  static const struct {
    const char *s;
    int64_t ms; /* -1 = invalid */
  } cases[] = {
      {"250ms", 250},
      {"90s", 90000},
      {"5m", 300000},
      {"1h", 3600000},
      {"7d", 604800000},
      {"0s", 0},
      {"0ms", 0},
      {"007s", 7000},
      {"", -1},
      {"s", -1},
      {"30", -1},
      {"1x", -1},
      {"1.5h", -1},
      {"-1s", -1},
      {" 1s", -1},
      {"1s ", -1},
      {"1 s", -1},
      {"1H", -1},
      {"1msx", -1},
      {"1hh", -1},
      {"9223372036854775807ms", INT64_MAX},
      {"9223372036854775808ms", -1},
      {"106751991167d", 106751991167LL * 86400000},
      {"106751991168d", -1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t ms = -12345;
    mtld_status_t st = mtld_config_parse_duration_ms(cases[i].s, &ms);
    int ok = cases[i].ms < 0 ? st == MTLD_ERR_INVALID : st == MTLD_OK && ms == cases[i].ms;
    if (!ok) fprintf(stderr, "duration \"%s\": st %d ms %lld\n", cases[i].s, st, (long long)ms);
    CHECK(ok);
  }
  static const struct {
    int64_t ms;
    const char *s;
  } fmt[] = {{0, "0s"},      {250, "250ms"},  {1500, "1500ms"}, {90000, "90s"},
             {300000, "5m"}, {3600000, "1h"}, {86400000, "1d"}, {90000000, "25h"}};
  for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
    char buf[32];
    int64_t back = -1;
    mtld_config_format_duration(fmt[i].ms, buf, sizeof(buf));
    CHECK(strcmp(buf, fmt[i].s) == 0);
    CHECK(mtld_config_parse_duration_ms(buf, &back) == MTLD_OK && back == fmt[i].ms);
  }
}

/* Prints a, loads the output into b. */
static int round_trip(const mtld_config_t *a, mtld_config_t *b) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  mtld_config_print(a, f);
  fclose(f);
  char err[512] = "";
  mtld_status_t st = mtld_config_load_string(b, text, "printed", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "round trip failed: %s\n%s", err, text);
  free(text);
  return st == MTLD_OK;
}

static void count_one(void *ctx, const char *key, int reloadable) {
  (*(int *)ctx)++;
}

/* Changed keys, reloadable or not. */
static int count_changes(const mtld_config_t *a, const mtld_config_t *b) {
  int n = 0;
  mtld_config_diff(a, b, count_one, &n);
  return n;
}

typedef struct {
  char keys[16][64];
  int reloadable[16];
  int n;
} seen_t;

static void record(void *ctx, const char *key, int reloadable) {
  seen_t *s = ctx;
  if (s->n < 16) {
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->reloadable[s->n] = reloadable;
  }
  s->n++;
}

static int seen_has(const seen_t *s, const char *key, int reloadable) {
  for (int i = 0; i < s->n && i < 16; i++)
    if (strcmp(s->keys[i], key) == 0) return s->reloadable[i] == reloadable;
  return 0;
}

static void test_round_trip(void) {
  CHECK(load_ok(&cfg, full_text));
  memset(&cfg2, 0xa5, sizeof(cfg2));
  CHECK(round_trip(&cfg, &cfg2));
  seen_t seen = {0};
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 0);
  CHECK(seen.n == 0);
  CHECK(cfg2.features.half_life_s[0] == 1800.0 && cfg2.limits.max_ahead_ms == 60000);
  CHECK(kafka_is(&cfg2, "some.float", "0.25"));

  /* strings that need escaping, a file source, doubles that need all digits */
  CHECK(load_ok(&cfg, "source = { type = \"file\"; file = \"/a \\\"b\\\"\\\\c\\td\"; };\n"
                      "features = { prior_strength = 0.1; ctr_prior = 0.333333333333333; };"));
  cfg.features.cvr_prior = 1.0 / 3.0;
  CHECK(round_trip(&cfg, &cfg2));
  CHECK(mtld_config_diff(&cfg, &cfg2, NULL, NULL) == 0);
  CHECK(strcmp(cfg2.source_file, "/a \"b\"\\c\td") == 0);
  CHECK(cfg2.features.cvr_prior == 1.0 / 3.0);
  CHECK(count_changes(&cfg, &cfg2) == 0);
}

static void test_diff(void) {
  CHECK(load_ok(&cfg, full_text));

  /* reloadable changes only */
  CHECK(load_ok(&cfg2, full_text));
  snprintf(cfg2.dead_letter_topic, sizeof(cfg2.dead_letter_topic), "dlq2");
  cfg2.batch_max_events = 1;
  cfg2.batch_max_ms = 2;
  cfg2.limits.max_lateness_ms = 1;
  snprintf(cfg2.log_level, sizeof(cfg2.log_level), "debug");
  cfg2.metrics_port = 1234;
  cfg2.status_interval_ms = 1000;
  seen_t seen = {0};
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 0);
  CHECK(seen.n == 7);
  CHECK(seen_has(&seen, "dead_letter.topic", 1));
  CHECK(seen_has(&seen, "store.batch_max_events", 1));
  CHECK(seen_has(&seen, "store.batch_max_ms", 1));
  CHECK(seen_has(&seen, "validation.max_lateness", 1));
  CHECK(seen_has(&seen, "log.level", 1));
  CHECK(seen_has(&seen, "metrics.port", 1));
  CHECK(seen_has(&seen, "status_interval", 1));

  /* changes that need a restart */
  CHECK(load_ok(&cfg2, full_text));
  snprintf(cfg2.store_path, sizeof(cfg2.store_path), "/elsewhere");
  cfg2.store_sync = 1;
  cfg2.features.half_life_s[1] = 3600;
  cfg2.n_topics = 1;
  cfg2.format = MTLD_FMT_PROTOBUF;
  cfg2.joiner.click_window_ms = 1;
  cfg2.allowed_lateness_ms = 1;
  cfg2.shutdown_timeout_ms = 1; /* reloadable, among the others */
  memset(&seen, 0, sizeof(seen));
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 7);
  CHECK(seen.n == 8);
  CHECK(seen_has(&seen, "joiner.click_window", 0));
  CHECK(seen_has(&seen, "joiner.allowed_lateness", 0));
  CHECK(seen_has(&seen, "store.path", 0));
  CHECK(seen_has(&seen, "store.sync", 0));
  CHECK(seen_has(&seen, "features.half_lives", 0));
  CHECK(seen_has(&seen, "source.topics", 0));
  CHECK(seen_has(&seen, "source.format", 0));
  CHECK(seen_has(&seen, "shutdown_timeout", 1));

  /* kafka: per property, by its name in the file */
  CHECK(load_ok(&cfg2, "source = { topics = [\"a\", \"b\"]; };\n"
                       "kafka = { bootstrap_servers = \"k1:9092,k2:9092\"; group_id = \"g\";\n"
                       "  session_timeout_ms = 7000; client_id = \"c\"; };\n"));
  cfg2 = (mtld_config_t){0};
  CHECK(load_ok(&cfg2, "source = { topics = [\"a\", \"b\"]; file = \"/tmp/x.pb\"; format = "
                       "\"json\"; };\n"
                       "kafka = { bootstrap_servers = \"k1:9092,k2:9092\"; group_id = \"g\";\n"
                       "  session_timeout_ms = 7000; client_id = \"c\"; some_float = 0.25; };\n"));
  /* bring the non-kafka part level with full_text */
  mtld_kv_t kafka[MTLD_MAX_KAFKA_PROPS];
  int n_kafka = cfg2.n_kafka;
  memcpy(kafka, cfg2.kafka, sizeof(kafka));
  cfg2 = cfg;
  memcpy(cfg2.kafka, kafka, sizeof(kafka));
  cfg2.n_kafka = n_kafka;
  memset(&seen, 0, sizeof(seen));
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 3);
  CHECK(seen.n == 3);
  CHECK(seen_has(&seen, "kafka.session_timeout_ms", 0));   /* changed */
  CHECK(seen_has(&seen, "kafka.enable_partition_eof", 0)); /* removed */
  CHECK(seen_has(&seen, "kafka.client_id", 0));            /* added */
}

/* Reads a whole file (NULL if absent). */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) fwrite(chunk, 1, n, m);
  fclose(m);
  fclose(f);
  return buf;
}

/* Replaces every `from` with `to` (malloc'd result). */
static char *replace(const char *s, const char *from, const char *to) {
  char *out = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&out, &len);
  for (const char *p; (p = strstr(s, from)) != NULL; s = p + strlen(from)) {
    fwrite(s, 1, (size_t)(p - s), m);
    fputs(to, m);
  }
  fputs(s, m);
  fclose(m);
  return out;
}

static void test_shipped_configs(void) {
  char err[512] = "";
  mtld_status_t st = mtld_config_load(&cfg, MTLD_SOURCE_DIR "/conf/mtld.conf", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "conf/mtld.conf: %s\n", err);
  CHECK(st == MTLD_OK);
  CHECK(strcmp(cfg.store_path, "/var/lib/mtld/store") == 0);
  CHECK(cfg.n_topics == 1 && kafka_value(&cfg, "bootstrap.servers") != NULL);
  /* it documents the defaults: only Kafka and the topic differ */
  mtld_config_default(&cfg2);
  seen_t seen = {0};
  mtld_config_diff(&cfg2, &cfg, record, &seen);
  for (int i = 0; i < seen.n && i < 16; i++) {
    int expected =
        strcmp(seen.keys[i], "source.topics") == 0 || strncmp(seen.keys[i], "kafka.", 6) == 0;
    if (!expected) fprintf(stderr, "conf/mtld.conf: %s differs from its default\n", seen.keys[i]);
    CHECK(expected);
  }
  CHECK(round_trip(&cfg, &cfg2));
  CHECK(mtld_config_diff(&cfg, &cfg2, NULL, NULL) == 0);

  char *demo = slurp(MTLD_SOURCE_DIR "/conf/demo.conf");
  CHECK(demo != NULL);
  if (!demo) return;
  CHECK(strstr(demo, "@BOOTSTRAP@") != NULL && strstr(demo, "@STATE@") != NULL);
  char *a = replace(demo, "@BOOTSTRAP@", "127.0.0.1:39092");
  char *b = replace(a, "@STATE@", "/tmp/mtld-demo");
  st = mtld_config_load_string(&cfg, b, "demo.conf", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "conf/demo.conf: %s\n", err);
  CHECK(st == MTLD_OK);
  CHECK(strcmp(cfg.store_path, "/tmp/mtld-demo/store") == 0);
  CHECK(kafka_is(&cfg, "bootstrap.servers", "127.0.0.1:39092"));
  CHECK(cfg.n_topics == 1 && strcmp(cfg.topics[0], "events") == 0);
  free(demo);
  free(a);
  free(b);
}

/* The printed text: groups, durations as strings, floats as floats. */
static void test_print_layout(void) {
  CHECK(load_ok(&cfg, full_text));
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  mtld_config_print(&cfg, f);
  fclose(f);
  CHECK(strstr(text, "store = {\n  path = \"/srv/s\";\n  sync = false;\n") != NULL);
  CHECK(strstr(text, "  batch_max_ms = \"1s\";\n") != NULL);
  CHECK(strstr(text, "  half_lives = [\"30m\", \"2h\"];\n") != NULL);
  CHECK(strstr(text, "  prior_strength = 4.0;\n") != NULL);
  CHECK(strstr(text, "  ctr_prior = 0.1;\n") != NULL);
  CHECK(strstr(text, "  session_timeout_ms = \"6000\";\n") != NULL);
  CHECK(strstr(text, "\nshutdown_timeout = \"1m\";\n") != NULL);
  CHECK(strstr(text, "\nstatus_interval = \"250ms\";\n") != NULL);
  CHECK(strstr(text, "  seed = 5000000000L;\n") != NULL);
  CHECK(strstr(text, "  mode = \"sampled_negatives\";\n") != NULL);
  free(text);
}

int main(void) {
  mtld_log_init();
  test_defaults();
  test_full();
  test_errors();
  test_kafka();
  test_duration();
  test_round_trip();
  test_diff();
  test_shipped_configs();
  test_print_layout();
  return CHECK_DONE();
}
