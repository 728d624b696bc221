/* test_config.c - the config file: defaults, a full file, every class of
 * error with its file, line and key, the kafka passthrough, durations, the
 * print -> load round trip, the reload diff, and the shipped conf/ files.
 * The trainer's groups (model, trainer, checkpoint, snapshot): defaults,
 * every task and layer error, n_dense following the features, and which of
 * their changes a reload may apply. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "features/features.h"

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

  /* the model's own defaults, reading every dense feature of the default
   * definitions (3 half-lives) */
  mtld_model_config_t mdef;
  mtld_model_config_default(&mdef);
  mdef.n_dense = 45;
  CHECK(memcmp(&cfg.model, &mdef, sizeof(mdef)) == 0);
  CHECK(cfg.model.arch == MTLD_ARCH_MMOE && cfg.model.n_tasks == 3 && cfg.model.seq_max == 20);
  CHECK(cfg.model.interactions == MTLD_INTER_DOT && cfg.model.n_fields == 6);
  CHECK(cfg.model.fields[MTLD_FIELD_HOUR].rows == 32);
  CHECK(cfg.trainer_enabled == 1 && cfg.report_interval_ms == 60000);
  CHECK(strcmp(cfg.dump_samples, "") == 0);
  CHECK(strcmp(cfg.checkpoint_dir, "/var/lib/mtld/checkpoints") == 0);
  CHECK(cfg.checkpoint_interval_ms == 300000 && cfg.checkpoint_every_samples == 0);
  CHECK(cfg.checkpoint_keep == 3);
  CHECK(strcmp(cfg.snapshot_dir, "/var/lib/mtld/snapshots") == 0);
  CHECK(cfg.snapshot_interval_ms == 60000 && cfg.snapshot_keep == 5);
  char merr[256];
  CHECK(mtld_model_config_validate(&cfg.model, merr, sizeof(merr)) == MTLD_OK);

  /* a minimal file: everything else stays default */
  CHECK(load_ok(&cfg2, MINIMAL));
  CHECK(cfg2.n_topics == 1 && strcmp(cfg2.topics[0], "events") == 0);
  CHECK(kafka_is(&cfg2, "bootstrap.servers", "127.0.0.1:9092"));
  CHECK(strcmp(cfg2.path, "t.conf") == 0);
  CHECK(memcmp(&cfg2.model, &mdef, sizeof(mdef)) == 0);
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
    "model = {\n"
    "  arch = \"ple\"; dim = 8;\n"
    "  rows = { user = 1000; item = 2000; category = 300; scenario = 16; position = 10;\n"
    "    hour = 24; };\n"
    "  sequence = 0; interactions = \"none\";\n"
    "  experts = 6; shared_experts = 3; task_experts = 2;\n"
    "  expert_layers = [128, 64, 32]; tower_layers = [];\n"
    "  tasks = (\n"
    "    { name = \"click\"; label = \"click\"; },\n"
    "    { name = \"cart\"; type = \"binary\"; label = \"cart\"; weight = 0.25; bias_init = -2.5; "
    "},\n"
    "    { name = \"buy\"; type = \"esmm\"; label = \"purchase\"; parent = \"click\"; weight = 2; "
    "},\n"
    "    { name = \"stars\"; type = \"regression\"; label = \"rating\"; loss = \"huber\";\n"
    "      huber_delta = 0.5; },\n"
    "    { name = \"stars_mse\"; type = \"regression\"; label = \"rating\"; }\n"
    "  );\n"
    "  uncertainty_weighting = true; optimizer = \"adagrad\"; lr = 0.01;\n"
    "  emb_optimizer = \"adam\"; emb_lr = 0.001; admit_after = 0; expire_after = \"0s\";\n"
    "  batch_size = 64; seed = 7000000000L; pv_window = 5000; pv_scenarios = 0;\n"
    "};\n"
    "trainer = { enabled = false; report_interval = 0; dump_samples = \"/tmp/s.bin\"; };\n"
    "checkpoint = { dir = \"/srv/ck\"; interval = \"0s\"; every_samples = 3000000000L; keep = 1; "
    "};\n"
    "snapshot = { dir = \"/srv/sn\"; interval = 30; keep = 1000; };\n"
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

  const mtld_model_config_t *m = &cfg.model;
  CHECK(m->arch == MTLD_ARCH_PLE && m->dim == 8);
  CHECK(m->n_fields == 6 && strcmp(m->fields[MTLD_FIELD_ITEM].name, "item") == 0);
  CHECK(m->fields[0].rows == 1000 && m->fields[1].rows == 2000 && m->fields[2].rows == 300);
  CHECK(m->fields[3].rows == 16 && m->fields[4].rows == 10);
  CHECK(m->fields[MTLD_FIELD_HOUR].rows == 24 && strcmp(m->fields[5].name, "hour") == 0);
  CHECK(m->seq_max == 0 && m->item_field == -1); /* no attention */
  CHECK(m->interactions == MTLD_INTER_NONE);
  CHECK(m->scenario_field == MTLD_FIELD_SCENARIO);
  CHECK(m->n_experts == 6 && m->n_shared_experts == 3 && m->n_task_experts == 2);
  CHECK(m->n_expert_layers == 3 && m->expert_layers[0] == 128 && m->expert_layers[2] == 32);
  CHECK(m->expert_layers[3] == 0);
  CHECK(m->n_tower_layers == 0);
  CHECK(m->n_tasks == 5);
  const mtld_task_t *t = m->tasks;
  CHECK(strcmp(t[0].name, "click") == 0 && t[0].type == MTLD_TASK_BINARY);
  CHECK(t[0].label == MTLD_LABEL_CLICK && t[0].parent == -1 && t[0].loss_weight == 1.0f);
  CHECK(t[0].bias_init == 0.0f);
  CHECK(t[1].label == MTLD_LABEL_CART && t[1].loss_weight == 0.25f && t[1].bias_init == -2.5f);
  CHECK(t[2].type == MTLD_TASK_ESMM_CTCVR && t[2].label == MTLD_LABEL_PURCHASE);
  CHECK(t[2].parent == 0 && t[2].loss_weight == 2.0f);
  CHECK(t[3].type == MTLD_TASK_REGRESSION && t[3].label == MTLD_LABEL_RATING);
  CHECK(t[3].reg_loss == MTLD_REG_HUBER && t[3].huber_delta == 0.5f);
  CHECK(t[4].reg_loss == MTLD_REG_MSE && t[4].parent == -1);
  CHECK(m->uncertainty_weighting == 1 && m->optim == MTLD_OPT_ADAGRAD && m->lr == 0.01f);
  CHECK(m->emb.optim == MTLD_EMB_ADAM && m->emb.lr == 0.001f);
  CHECK(m->emb.admit_after == 0 && m->emb.expire_ms == 0);
  CHECK(m->batch_size == 64 && m->seed == 7000000000ULL);
  CHECK(m->pv_window == 5000 && m->pv_max_scenarios == 0);
  CHECK(m->n_dense == 35); /* two half-lives */
  CHECK(cfg.trainer_enabled == 0 && cfg.report_interval_ms == 0);
  CHECK(strcmp(cfg.dump_samples, "/tmp/s.bin") == 0);
  CHECK(strcmp(cfg.checkpoint_dir, "/srv/ck") == 0 && cfg.checkpoint_interval_ms == 0);
  CHECK(cfg.checkpoint_every_samples == 3000000000LL && cfg.checkpoint_keep == 1);
  CHECK(strcmp(cfg.snapshot_dir, "/srv/sn") == 0 && cfg.snapshot_interval_ms == 30000);
  CHECK(cfg.snapshot_keep == 1000);
  char err[256];
  CHECK(mtld_model_config_validate(m, err, sizeof(err)) == MTLD_OK);

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

#define SEEN_MAX 32
typedef struct {
  char keys[SEEN_MAX][64];
  int reloadable[SEEN_MAX];
  int n;
} seen_t;

static void record(void *ctx, const char *key, int reloadable) {
  seen_t *s = ctx;
  if (s->n < SEEN_MAX) {
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->reloadable[s->n] = reloadable;
  }
  s->n++;
}

static int seen_has(const seen_t *s, const char *key, int reloadable) {
  for (int i = 0; i < s->n && i < SEEN_MAX; i++)
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
  for (int i = 0; i < seen.n && i < SEEN_MAX; i++) {
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
  CHECK(cfg.model.arch == MTLD_ARCH_MMOE && cfg.model.n_tasks == 4); /* the defaults + demand */
  CHECK(cfg.model.tasks[3].label == MTLD_LABEL_DEMAND && mtld_config_demand_on(&cfg) &&
        cfg.demand.horizon_ms == 3600000 && cfg.demand.windows == 6);
  CHECK(cfg.trainer_enabled == 1 && cfg.report_interval_ms == 5000);
  CHECK(strcmp(cfg.checkpoint_dir, "/tmp/mtld-demo/checkpoints") == 0);
  CHECK(cfg.checkpoint_interval_ms == 10000);
  CHECK(strcmp(cfg.snapshot_dir, "/tmp/mtld-demo/snapshots") == 0);
  CHECK(cfg.snapshot_interval_ms == 5000);
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
  CHECK(
      strstr(text, "\nmodel = {\n  arch = \"ple\";\n  dim = 8;\n  rows = {\n    user = 1000;\n") !=
      NULL);
  CHECK(strstr(text, "    position = 10;\n    hour = 24;\n  };\n  sequence = 0;\n"
                     "  interactions = \"none\";\n") != NULL);
  CHECK(strstr(text, "  expert_layers = [128, 64, 32];\n  tower_layers = [];\n") != NULL);
  CHECK(strstr(text, "  tasks = (\n    { name = \"click\"; type = \"binary\"; label = \"click\"; "
                     "weight = 1.0; },\n") != NULL);
  CHECK(strstr(text, "    { name = \"buy\"; type = \"esmm\"; label = \"purchase\"; parent = "
                     "\"click\"; weight = 2.0; },\n") != NULL);
  CHECK(strstr(text, "label = \"cart\"; weight = 0.25; bias_init = -2.5; },\n") != NULL);
  CHECK(strstr(text, "loss = \"huber\"; huber_delta = 0.5; },\n") != NULL);
  CHECK(strstr(text, "label = \"rating\"; weight = 1.0; loss = \"mse\"; }\n  );\n") != NULL);
  CHECK(strstr(text, "  lr = 0.01;\n") != NULL && strstr(text, "  emb_lr = 0.001;\n") != NULL);
  CHECK(strstr(text, "  optimizer = \"adagrad\";\n") != NULL);
  CHECK(strstr(text, "  expire_after = \"0s\";\n") != NULL);
  CHECK(strstr(text, "  seed = 7000000000L;\n") != NULL);
  CHECK(strstr(text, "  pv_scenarios = 0;\n};\n") != NULL);
  CHECK(strstr(text, "trainer = {\n  enabled = false;\n  report_interval = \"0s\";\n") != NULL);
  CHECK(strstr(text, "  every_samples = 3000000000L;\n") != NULL);
  CHECK(
      strstr(text, "snapshot = {\n  dir = \"/srv/sn\";\n  interval = \"30s\";\n  keep = 1000;\n") !=
      NULL);
  free(text);
}

/* The review task: an ESMM task chained on the CTCVR task; the joiner's
 * review window applies only with it. */
static void test_review_task(void) {
  char err[512] = "";
  CHECK(mtld_config_load_string(&cfg, MINIMAL, "t.conf", err, sizeof(err)) == MTLD_OK);
  CHECK(cfg.review_window_ms == 7 * 86400000LL && mtld_config_review_window_ms(&cfg) == 0);
  const char *text = MINIMAL
      "joiner = { review_window = \"3d\"; };\n"
      "model = { tasks = (\n"
      "  { name = \"ctr\"; label = \"click\"; },\n"
      "  { name = \"ctcvr\"; type = \"esmm\"; label = \"purchase\"; parent = \"ctr\"; },\n"
      "  { name = \"review\"; type = \"esmm\"; label = \"review\"; parent = \"ctcvr\"; }); };\n";
  mtld_status_t st = mtld_config_load_string(&cfg, text, "t.conf", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "review task: %s\n", err);
  CHECK(st == MTLD_OK);
  CHECK(cfg.model.n_tasks == 3 && cfg.model.tasks[2].type == MTLD_TASK_ESMM_CTCVR &&
        cfg.model.tasks[2].label == MTLD_LABEL_REVIEW && cfg.model.tasks[2].parent == 1);
  CHECK(mtld_config_review_window_ms(&cfg) == 3 * 86400000LL);
}

/* The demand task: item samples append MTLD_DEMAND_DENSE raw dense
 * features; without it the model's inputs are the definitions' alone. */
static void test_demand_task(void) {
  char err[512] = "";
  CHECK(mtld_config_load_string(&cfg, MINIMAL, "t.conf", err, sizeof(err)) == MTLD_OK);
  int nd = mtld_features_dense_count(&cfg.features);
  CHECK(!mtld_config_demand_on(&cfg) && cfg.model.n_dense == nd && cfg.model.n_dense_raw == 0);
  CHECK(cfg.demand.horizon_ms == 3600000 && cfg.demand.windows == 6);
  const char *text = MINIMAL
      "joiner = { demand_horizon = \"30m\"; demand_windows = 12; };\n"
      "model = { tasks = (\n"
      "  { name = \"ctr\"; label = \"click\"; },\n"
      "  { name = \"demand\"; type = \"regression\"; label = \"demand\"; weight = 0.5; }); };\n";
  mtld_status_t st = mtld_config_load_string(&cfg, text, "t.conf", err, sizeof(err));
  if (st != MTLD_OK) fprintf(stderr, "demand task: %s\n", err);
  CHECK(st == MTLD_OK && mtld_config_demand_on(&cfg));
  CHECK(cfg.model.tasks[1].label == MTLD_LABEL_DEMAND && cfg.model.tasks[1].loss_weight == 0.5f);
  CHECK(cfg.demand.horizon_ms == 1800000 && cfg.demand.windows == 12);
  CHECK(cfg.model.n_dense == nd + MTLD_DEMAND_DENSE && cfg.model.n_dense_raw == MTLD_DEMAND_DENSE);
  EXPECT_ERROR(MINIMAL "joiner = { demand_windows = 0; };\n", "demand_windows");
}

/* model, trainer, checkpoint, snapshot: every error names its key and line. */
static void test_model_errors(void) {
  /* tasks (MINIMAL is two lines: model starts on line 3) */
  EXPECT_ERROR(MINIMAL
               "model = {\n  tasks = (\n    { name = \"a\"; label = \"clicks\"; }\n  );\n};\n",
               "t.conf:5: model.tasks[0].label: must be \"click\", \"cart\", \"purchase\", "
               "\"rating\", \"review\" or \"demand\", not \"clicks\"");
  EXPECT_ERROR(MINIMAL
               "model = {\n  tasks = (\n    { name = \"d\"; label = \"demand\"; }\n  );\n};\n",
               "t.conf:5: model.tasks[0].label: \"demand\" (orders of an item in the next "
               "joiner.demand_horizon) needs type \"regression\"");
  EXPECT_ERROR(
      MINIMAL "model = { tasks = (\n"
              "  { name = \"v\"; type = \"regression\"; label = \"review\"; }); };\n",
      "t.conf:4: model.tasks[0].label: \"review\" (click, purchase and review: 0/1) needs");
  EXPECT_ERROR(MINIMAL "model = {\n  tasks = (\n    { name = \"a\"; label = \"click\"; },\n"
                       "    { name = \"b\"; type = \"esmm\"; label = \"purchase\";\n"
                       "      parent = \"x\"; }\n  );\n};\n",
               "t.conf:7: model.tasks[1].parent: no earlier task named \"x\"");
  /* the parent must come first */
  EXPECT_ERROR(MINIMAL
               "model = { tasks = (\n"
               "  { name = \"b\"; type = \"esmm\"; label = \"purchase\"; parent = \"a\"; },\n"
               "  { name = \"a\"; label = \"click\"; }); };\n",
               "t.conf:4: model.tasks[0].parent: no earlier task named \"a\"");
  EXPECT_ERROR(MINIMAL "model = { tasks = (\n  { name = \"a\"; label = \"click\"; },\n"
                       "  { name = \"b\"; type = \"esmm\"; label = \"purchase\"; }); };\n",
               "t.conf:5: model.tasks[1].parent: required for type \"esmm\"");
  EXPECT_ERROR(
      MINIMAL "model = { tasks = (\n"
              "  { name = \"r\"; type = \"regression\"; label = \"rating\"; },\n"
              "  { name = \"b\"; type = \"esmm\"; label = \"purchase\"; parent = \"r\"; }); };\n",
      "t.conf:5: model.tasks[1].parent: \"r\" must be a binary or esmm task, not regression");
  EXPECT_ERROR(MINIMAL "model = { tasks = (\n  { name = \"a\"; label = \"click\"; },\n"
                       "  { name = \"b\"; label = \"cart\"; parent = \"a\"; }); };\n",
               "t.conf:5: model.tasks[1].parent: only for type \"esmm\"");
  EXPECT_ERROR(MINIMAL "model = {\n  tasks = (\n    { name = \"ctr\"; label = \"click\"; },\n"
                       "    { name = \"ctr\"; label = \"cart\"; }\n  );\n};\n",
               "t.conf:6: model.tasks[1].name: duplicate task name \"ctr\" (also model.tasks[0])");
  {
    char text[2048] = MINIMAL "model = {\n  tasks = (\n";
    for (int i = 0; i < MTLD_MAX_TASKS + 1; i++)
      snprintf(text + strlen(text), sizeof(text) - strlen(text),
               "    { name = \"t%d\"; label = \"click\"; }%s\n", i, i < MTLD_MAX_TASKS ? "," : "");
    strcat(text, "  );\n};\n");
    EXPECT_ERROR(text, "t.conf:4: model.tasks: at most 8 tasks, not 9");
    /* exactly MTLD_MAX_TASKS is fine */
    char *last = strstr(text, ",\n    { name = \"t8\"");
    CHECK(last != NULL);
    if (last) strcpy(last, "\n  );\n};\n");
    CHECK(load_ok(&cfg, text));
    CHECK(cfg.model.n_tasks == MTLD_MAX_TASKS && strcmp(cfg.model.tasks[7].name, "t7") == 0);
  }
  EXPECT_ERROR(MINIMAL "model = {\n  tasks = ();\n};\n",
               "t.conf:4: model.tasks: at least one task is required");
  EXPECT_ERROR(MINIMAL "model = {\n  tasks = { name = \"a\"; };\n};\n",
               "t.conf:4: model.tasks: expected a list of groups");
  EXPECT_ERROR(MINIMAL "model = {\n  tasks = (\"ctr\");\n};\n",
               "t.conf:4: model.tasks[0]: expected a group");
  EXPECT_ERROR(MINIMAL "model = { tasks = (\n  { label = \"click\"; }); };\n",
               "t.conf:4: model.tasks[0].name: required");
  EXPECT_ERROR(MINIMAL "model = { tasks = (\n  { name = \"a\"; }); };\n",
               "t.conf:4: model.tasks[0].label: required");
  EXPECT_ERROR(MINIMAL "model = { tasks = (\n  { name = \"a b\"; label = \"click\"; }); };\n",
               "t.conf:4: model.tasks[0].name: \"a b\": must start with a letter");
  EXPECT_ERROR(
      MINIMAL "model = { tasks = ({ name = \"a\"; label = \"click\";\n  wieght = 2; }); };\n",
      "t.conf:4: model.tasks[0].wieght: unknown key (did you mean model.tasks[0].weight?)");
  EXPECT_ERROR(MINIMAL "model = { tasks = ({ name = \"a\"; label = \"click\"; zzz = 2; }); };\n",
               "t.conf:3: model.tasks[0].zzz: unknown key (a task has name, type");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"a\"; label = \"click\"; type = \"bin\"; }); };\n",
               "t.conf:3: model.tasks[0].type: must be \"binary\", \"esmm\" or \"regression\"");
  EXPECT_ERROR(
      MINIMAL "model = { tasks = ({ name = \"a\";\n  label = \"rating\"; }); };\n",
      "t.conf:4: model.tasks[0].label: \"rating\" (1 to 5 stars) needs type \"regression\"");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"a\"; label = \"click\";\n  loss = \"mse\"; }); };\n",
               "t.conf:4: model.tasks[0].loss: only for type \"regression\"");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"r\"; type = \"regression\"; label = \"rating\";\n"
               "  huber_delta = 2.0; }); };\n",
               "t.conf:4: model.tasks[0].huber_delta: only with type \"regression\" and loss");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"r\"; type = \"regression\"; label = \"rating\";\n"
               "  loss = \"huber\"; huber_delta = 0; }); };\n",
               "t.conf:4: model.tasks[0].huber_delta: must be > 0");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"a\"; label = \"click\";\n  bias = \"mean\"; }); };\n",
               "t.conf:4: model.tasks[0].bias: only for type \"regression\"");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"r\"; type = \"regression\"; label = \"rating\";\n"
               "  bias = \"median\"; }); };\n",
               "t.conf:4: model.tasks[0].bias: must be \"fixed\" or \"mean\"");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"a\"; label = \"click\";\n  weight = -1.0; }); };\n",
               "t.conf:4: model.tasks[0].weight: must be between 0 and");
  EXPECT_ERROR(MINIMAL
               "model = { tasks = ({ name = \"a\"; label = \"click\"; weight = \"1\"; }); };\n",
               "t.conf:3: model.tasks[0].weight: expected a number");
  EXPECT_ERROR(MINIMAL "model = { tasks = ({ name = \"a\"; label = \"click\"; parent = 1; }); };\n",
               "t.conf:3: model.tasks[0].parent: expected a task name");

  /* layers */
  EXPECT_ERROR(MINIMAL "model = {\n  expert_layers = [];\n};\n",
               "t.conf:4: model.expert_layers: must have 1 to 4 entries, not 0");
  EXPECT_ERROR(MINIMAL "model = {\n  dim = 8;\n  tower_layers = [1, 2, 3, 4, 5];\n};\n",
               "t.conf:5: model.tower_layers: must have 0 to 4 entries, not 5");
  EXPECT_ERROR(MINIMAL "model = {\n  expert_layers = [\n    64,\n    0];\n};\n",
               "t.conf:6: model.expert_layers[1]: must be between 1 and 4096");
  EXPECT_ERROR(MINIMAL "model = {\n  tower_layers = [4097];\n};\n",
               "t.conf:4: model.tower_layers[0]: must be between 1 and 4096");
  EXPECT_ERROR(MINIMAL "model = {\n  expert_layers = (64,\n \"32\");\n};\n",
               "t.conf:5: model.expert_layers[1]: expected an integer");
  EXPECT_ERROR(MINIMAL "model = {\n  tower_layers = 32;\n};\n",
               "t.conf:4: model.tower_layers: expected a list of integers");

  /* scalars and enumerations of the model */
  EXPECT_ERROR(MINIMAL "model = {\n  arch = \"moe\";\n};\n",
               "t.conf:4: model.arch: must be \"single_task\", \"shared_bottom\", \"mmoe\" or "
               "\"ple\", not \"moe\"");
  EXPECT_ERROR(MINIMAL "model = { dim = 0; };\n", "t.conf:3: model.dim: must be between 1 and 256");
  EXPECT_ERROR(MINIMAL "model = {\n  interactions = \"fm\";\n};\n",
               "t.conf:4: model.interactions: must be \"none\" or \"dot\", not \"fm\"");
  EXPECT_ERROR(MINIMAL "model = { rows = { hour = 0; }; };\n",
               "t.conf:3: model.rows.hour: must be between 1 and 67108864");
  EXPECT_ERROR(MINIMAL "model = {\n  rows = {\n    user = 0;\n  };\n};\n",
               "t.conf:5: model.rows.user: must be between 1 and 67108864");
  EXPECT_ERROR(MINIMAL "model = { rows = {\n items = 5; }; };\n",
               "t.conf:4: model.rows.items: unknown key (did you mean model.rows.item?)");
  EXPECT_ERROR(MINIMAL "model = { rows = 5; };\n", "t.conf:3: model.rows: expected a group");
  EXPECT_ERROR(MINIMAL "model = { sequence = 51; };\n",
               "t.conf:3: model.sequence: must be between 0 and 50");
  EXPECT_ERROR(MINIMAL "model = { experts = 17; };\n",
               "t.conf:3: model.experts: must be between 1 and 16");
  EXPECT_ERROR(MINIMAL "model = { lr = 0.0; };\n", "t.conf:3: model.lr: must be > 0 and <= 10");
  EXPECT_ERROR(MINIMAL "model = { emb_lr = \"fast\"; };\n",
               "t.conf:3: model.emb_lr: expected a number");
  EXPECT_ERROR(MINIMAL "model = { optimizer = \"sgd\"; };\n",
               "t.conf:3: model.optimizer: must be \"adam\" or \"adagrad\", not \"sgd\"");
  EXPECT_ERROR(MINIMAL "model = { emb_optimizer = 1; };\n",
               "t.conf:3: model.emb_optimizer: expected a string (\"adagrad\" or \"adam\")");
  EXPECT_ERROR(MINIMAL "model = { expire_after = \"1x\"; };\n",
               "t.conf:3: model.expire_after: bad duration \"1x\"");
  EXPECT_ERROR(MINIMAL "model = { admit_after = 65536; };\n",
               "t.conf:3: model.admit_after: must be between 0 and 65535");
  EXPECT_ERROR(MINIMAL "model = { batch_size = 0; };\n",
               "t.conf:3: model.batch_size: must be between 1 and 65536");
  EXPECT_ERROR(MINIMAL "model = { pv_window = 0; };\n",
               "t.conf:3: model.pv_window: must be between 1 and 100000000");
  EXPECT_ERROR(MINIMAL "model = { n_dense = 5; };\n", "t.conf:3: model.n_dense: unknown key");
  EXPECT_ERROR(MINIMAL "model = { archh = \"ple\"; };\n",
               "t.conf:3: model.archh: unknown key (did you mean model.arch?)");
  /* rules of the whole model: the group's line */
  EXPECT_ERROR(MINIMAL
               "\nmodel = {\n  arch = \"ple\";\n  shared_experts = 8;\n  task_experts = 4;\n};\n",
               "t.conf:4: model: at most 16 experts");
  EXPECT_ERROR(MINIMAL "model = { arch = \"ple\"; shared_experts = 0; task_experts = 0; };\n",
               "t.conf:3: model: ple needs shared or task experts");
  /* ... which only count for their architecture */
  CHECK(load_ok(&cfg,
                MINIMAL "model = { arch = \"mmoe\"; shared_experts = 16; task_experts = 16; };"));

  /* trainer, checkpoint, snapshot */
  EXPECT_ERROR(MINIMAL "trainer = {\n  report_interval = \"500ms\";\n};\n",
               "t.conf:4: trainer.report_interval: must be 0 (off) or between 1s and 7d");
  EXPECT_ERROR(MINIMAL "snapshot = { interval = \"8d\"; };\n",
               "t.conf:3: snapshot.interval: must be 0 (off) or between 1s and 7d");
  EXPECT_ERROR(MINIMAL "trainer = { enabled = 1; };\n",
               "t.conf:3: trainer.enabled: expected true or false");
  EXPECT_ERROR(MINIMAL "checkpoint = { keep = 0; };\n",
               "t.conf:3: checkpoint.keep: must be between 1 and 1000");
  EXPECT_ERROR(MINIMAL "snapshot = { keep = 1001; };\n",
               "t.conf:3: snapshot.keep: must be between 1 and 1000");
  EXPECT_ERROR(MINIMAL "checkpoint = { every_samples = -1; };\n",
               "t.conf:3: checkpoint.every_samples: must be between 0 and");
  EXPECT_ERROR(MINIMAL "checkpoint = {\n  dir = \"\";\n};\n",
               "t.conf:4: checkpoint.dir: must not be empty");
  EXPECT_ERROR(MINIMAL "store = { path = \"/x\"; };\ncheckpoint = {\n  dir = \"/x\";\n};\n",
               "t.conf:5: checkpoint.dir: must differ from store.path (\"/x\")");
  EXPECT_ERROR(MINIMAL "checkpoint = { dir = \"/y\"; };\nsnapshot = {\n  dir = \"/y\";\n};\n",
               "t.conf:5: snapshot.dir: must differ from checkpoint.dir (\"/y\")");
  EXPECT_ERROR(MINIMAL "checkpoint = { intervall = \"1m\"; };\n",
               "t.conf:3: checkpoint.intervall: unknown key (did you mean checkpoint.interval?)");

  /* zero is "off" for the intervals, a plain integer is seconds */
  CHECK(load_ok(&cfg, MINIMAL "trainer = { report_interval = 0; };\n"
                              "checkpoint = { interval = \"1s\"; every_samples = 1000; };\n"
                              "snapshot = { interval = 7; };"));
  CHECK(cfg.report_interval_ms == 0 && cfg.checkpoint_interval_ms == 1000);
  CHECK(cfg.checkpoint_every_samples == 1000 && cfg.snapshot_interval_ms == 7000);
}

/* model.n_dense is not a key: it follows features.half_lives. */
static void test_n_dense(void) {
  static const struct {
    const char *half_lives;
    int n_dense;
  } cases[] = {{"[\"1h\"]", 25},
               {"[\"1h\", \"1d\"]", 35},
               {"[\"1h\", \"1d\", \"7d\"]", 45},
               {"[\"1h\", \"1d\", \"7d\", \"30d\"]", 55}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), MINIMAL "features = { half_lives = %s; };\n", cases[i].half_lives);
    CHECK(load_ok(&cfg, text));
    CHECK(cfg.model.n_dense == cases[i].n_dense);
    CHECK(cfg.model.n_dense == mtld_features_dense_count(&cfg.features));
  }
  /* the model group may come before the features it follows */
  CHECK(load_ok(&cfg,
                MINIMAL "model = { dim = 4; };\nfeatures = { half_lives = [\"1h\", \"1d\"]; };"));
  CHECK(cfg.model.n_dense == 35 && cfg.model.dim == 4);
}

static void test_model_diff(void) {
  CHECK(load_ok(&cfg, full_text));

  /* reloadable: learning rates, task weights, report, checkpoint and
   * snapshot pacing */
  cfg2 = cfg;
  cfg2.model.lr = 0.5f;
  cfg2.model.emb.lr = 0.5f;
  cfg2.model.tasks[1].loss_weight = 3.0f;
  cfg2.model.tasks[3].loss_weight = 0.0f;
  cfg2.report_interval_ms = 5000;
  cfg2.checkpoint_interval_ms = 1000;
  cfg2.checkpoint_every_samples = 10;
  cfg2.checkpoint_keep = 9;
  cfg2.snapshot_interval_ms = 1000;
  cfg2.snapshot_keep = 9;
  seen_t seen = {0};
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 0);
  CHECK(seen.n == 10);
  CHECK(seen_has(&seen, "model.lr", 1));
  CHECK(seen_has(&seen, "model.emb_lr", 1));
  CHECK(seen_has(&seen, "model.tasks.cart.weight", 1));
  CHECK(seen_has(&seen, "model.tasks.stars.weight", 1));
  CHECK(seen_has(&seen, "trainer.report_interval", 1));
  CHECK(seen_has(&seen, "checkpoint.interval", 1));
  CHECK(seen_has(&seen, "checkpoint.every_samples", 1));
  CHECK(seen_has(&seen, "checkpoint.keep", 1));
  CHECK(seen_has(&seen, "snapshot.interval", 1));
  CHECK(seen_has(&seen, "snapshot.keep", 1));

  /* the network's shape and the rest: a restart */
  cfg2 = cfg;
  cfg2.model.arch = MTLD_ARCH_MMOE;
  cfg2.model.dim = 9;
  cfg2.model.fields[MTLD_FIELD_ITEM].rows = 7;
  cfg2.model.seq_max = 5;
  cfg2.model.item_field = MTLD_FIELD_ITEM;
  cfg2.model.n_experts = 2;
  cfg2.model.expert_layers[1] = 63;
  cfg2.model.n_tower_layers = 1;
  cfg2.model.tower_layers[0] = 8;
  cfg2.model.uncertainty_weighting = 0;
  cfg2.model.optim = MTLD_OPT_ADAM;
  cfg2.model.emb.optim = MTLD_EMB_ADAGRAD;
  cfg2.model.emb.admit_after = 3;
  cfg2.model.emb.expire_ms = 1000;
  cfg2.model.batch_size = 32;
  cfg2.model.seed = 1;
  cfg2.model.pv_window = 7;
  cfg2.trainer_enabled = 1;
  snprintf(cfg2.dump_samples, sizeof(cfg2.dump_samples), "/tmp/other");
  snprintf(cfg2.checkpoint_dir, sizeof(cfg2.checkpoint_dir), "/srv/ck2");
  snprintf(cfg2.snapshot_dir, sizeof(cfg2.snapshot_dir), "/srv/sn2");
  cfg2.model.lr = 0.5f; /* reloadable, among them */
  memset(&seen, 0, sizeof(seen));
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 19);
  CHECK(seen.n == 20);
  static const char *const restart[] = {"model.arch",           "model.dim",
                                        "model.rows.item",      "model.sequence",
                                        "model.experts",        "model.expert_layers",
                                        "model.tower_layers",   "model.uncertainty_weighting",
                                        "model.optimizer",      "model.emb_optimizer",
                                        "model.admit_after",    "model.expire_after",
                                        "model.batch_size",     "model.seed",
                                        "model.pv_window",      "trainer.enabled",
                                        "trainer.dump_samples", "checkpoint.dir",
                                        "snapshot.dir"};
  for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++) {
    if (!seen_has(&seen, restart[i], 0)) fprintf(stderr, "diff: %s not refused\n", restart[i]);
    CHECK(seen_has(&seen, restart[i], 0));
  }
  CHECK(seen_has(&seen, "model.lr", 1));

  /* a task list of another shape is one non-reloadable "model.tasks", even
   * when weights changed as well */
  static const char *const base = MINIMAL
      "model = { tasks = (\n"
      "  { name = \"ctr\"; label = \"click\"; weight = 1.0; },\n"
      "  { name = \"ctcvr\"; type = \"esmm\"; label = \"purchase\"; parent = \"ctr\"; },\n"
      "  { name = \"rating\"; type = \"regression\"; label = \"rating\"; weight = 0.5; }); };\n";
  static const struct {
    const char *from, *to; /* replace in base */
    const char *key;
    int reloadable;
  } cases[] = {
      {"weight = 1.0", "weight = 2.5", "model.tasks.ctr.weight", 1},
      {"weight = 0.5", "weight = 0", "model.tasks.rating.weight", 1},
      {"weight = 0.5; }", "weight = 0.7; loss = \"huber\"; }", "model.tasks", 0},
      {"\"rating\"; weight = 0.5", "\"rating\"; weight = 0.5; bias_init = 3.0", "model.tasks", 0},
      {"name = \"rating\"", "name = \"stars\"", "model.tasks", 0},
      {"label = \"click\"", "label = \"cart\"", "model.tasks", 0},
      {"label = \"click\"; weight = 1.0", "label = \"click\"; weight = 9.0; type = \"binary\"",
       "model.tasks.ctr.weight", 1},
      {"  { name = \"rating\"", "  { name = \"cart\"; label = \"cart\"; },\n  { name = \"rating\"",
       "model.tasks", 0},
      {"weight = 1.0; },\n  { name = \"ctcvr\"; type = \"esmm\"; label = \"purchase\"; parent = "
       "\"ctr\"; }",
       "weight = 2.0; }", "model.tasks", 0},
  };
  CHECK(load_ok(&cfg, base));
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *text = replace(base, cases[i].from, cases[i].to);
    /* a typo in this table must not pass as "no change" */
    CHECK(strcmp(text, base) != 0);
    int ok = load_ok(&cfg2, text);
    CHECK(ok);
    memset(&seen, 0, sizeof(seen));
    int refused = mtld_config_diff(&cfg, &cfg2, record, &seen);
    int good = ok && seen.n == 1 && seen_has(&seen, cases[i].key, cases[i].reloadable) &&
               refused == !cases[i].reloadable;
    if (!good)
      fprintf(stderr, "task diff case %zu: %d keys (first \"%s\"), %d refused\n", i, seen.n,
              seen.n ? seen.keys[0] : "", refused);
    CHECK(good);
    free(text);
  }
  /* loaded twice: no change at all */
  CHECK(load_ok(&cfg2, base));
  CHECK(count_changes(&cfg, &cfg2) == 0);
}

/* print -> load of the new groups: floats keep their exact value. */
static void test_model_round_trip(void) {
  mtld_config_default(&cfg);
  cfg.source_type = MTLD_SOURCE_FILE;
  snprintf(cfg.source_file, sizeof(cfg.source_file), "-");
  CHECK(round_trip(&cfg, &cfg2));
  CHECK(count_changes(&cfg, &cfg2) == 0);
  CHECK(memcmp(&cfg.model, &cfg2.model, sizeof(cfg.model)) == 0);

  CHECK(load_ok(&cfg, MINIMAL
                "model = { arch = \"single_task\"; sequence = 12; lr = 0.0003; emb_lr = 1e-05;\n"
                "  tasks = ({ name = \"a\"; label = \"click\"; weight = 0.1; bias_init = -0.3; },\n"
                "    { name = \"r\"; type = \"regression\"; label = \"rating\"; loss = \"huber\";\n"
                "      huber_delta = 0.7; weight = 1e-3; }); };\n"
                "checkpoint = { every_samples = 12345; };\n"));
  cfg.model.lr = 1.0f / 3.0f;
  cfg.model.tasks[0].loss_weight = 2.0f / 3.0f;
  memset(&cfg2, 0x5a, sizeof(cfg2));
  CHECK(round_trip(&cfg, &cfg2));
  CHECK(count_changes(&cfg, &cfg2) == 0);
  CHECK(cfg2.model.arch == MTLD_ARCH_SINGLE_TASK && cfg2.model.seq_max == 12);
  CHECK(cfg2.model.item_field == MTLD_FIELD_ITEM);
  CHECK(cfg2.model.lr == 1.0f / 3.0f && cfg2.model.emb.lr == 1e-05f);
  CHECK(cfg2.model.tasks[0].loss_weight == 2.0f / 3.0f && cfg2.model.tasks[0].bias_init == -0.3f);
  CHECK(cfg2.model.tasks[1].huber_delta == 0.7f && cfg2.model.tasks[1].loss_weight == 1e-3f);
  CHECK(cfg2.checkpoint_every_samples == 12345);
}

/* checkpoint.dir and snapshot.dir, when not given, sit beside store.path. */
static void test_dirs_beside_store(void) {
  char err[512];
  CHECK(mtld_config_load_string(&cfg, MINIMAL "store = { path = \"/tmp/a/st\"; };\n", "t.conf", err,
                                sizeof err) == MTLD_OK);
  CHECK(strcmp(cfg.checkpoint_dir, "/tmp/a/checkpoints") == 0);
  CHECK(strcmp(cfg.snapshot_dir, "/tmp/a/snapshots") == 0);
  CHECK(mtld_config_load_string(&cfg, MINIMAL "store = { path = \"st\"; };\n", "t.conf", err,
                                sizeof err) == MTLD_OK);
  CHECK(strcmp(cfg.checkpoint_dir, "./checkpoints") == 0);
  CHECK(mtld_config_load_string(&cfg, MINIMAL "store = { path = \"/st\"; };\n", "t.conf", err,
                                sizeof err) == MTLD_OK);
  CHECK(strcmp(cfg.checkpoint_dir, "/checkpoints") == 0);
  /* given explicitly: kept */
  CHECK(mtld_config_load_string(&cfg,
                                MINIMAL "store = { path = \"/tmp/a/st\"; };\n"
                                        "checkpoint = { dir = \"/c\"; };\n",
                                "t.conf", err, sizeof err) == MTLD_OK);
  CHECK(strcmp(cfg.checkpoint_dir, "/c") == 0 && strcmp(cfg.snapshot_dir, "/tmp/a/snapshots") == 0);
  /* the default store: the documented /var/lib/mtld layout */
  CHECK(mtld_config_load_string(&cfg, MINIMAL, "t.conf", err, sizeof err) == MTLD_OK);
  CHECK(strcmp(cfg.checkpoint_dir, "/var/lib/mtld/checkpoints") == 0);
}

/* ------------------------------------------------------------------ reload */

/* Replaces the first `from` in buf (cap bytes) by `to`; 0 if not found. */
static int subst(char *buf, size_t cap, const char *from, const char *to) {
  char *at = strstr(buf, from);
  if (!at || strlen(buf) - strlen(from) + strlen(to) >= cap) return 0;
  size_t tail = strlen(at + strlen(from));
  memmove(at + strlen(to), at + strlen(from), tail + 1);
  memcpy(at, to, strlen(to));
  return 1;
}

/* Every reloadable row of the table, changed at once, is applied by
 * mtld_config_apply: afterwards nothing differs from the new file. */
static void test_reload_every_key(void) {
  static const char *const edits[][2] = {
      {"topic = \"dlq\"", "topic = \"dlq2\""},
      {"batch_max_events = 500", "batch_max_events = 501"},
      {"batch_max_ms = \"1s\"", "batch_max_ms = \"2s\""},
      {"max_record_bytes = 1024", "max_record_bytes = 2048"},
      {"max_lateness = \"2h\"", "max_lateness = \"3h\""},
      {"max_ahead = 60;", "max_ahead = 61; dedup = false;"},
      {"weight = 0.25", "weight = 0.5"},
      {"lr = 0.01", "lr = 0.02"},
      {"emb_lr = 0.001", "emb_lr = 0.002"},
      {"report_interval = 0", "report_interval = 90"},
      {"interval = \"0s\"; every_samples = 3000000000L; keep = 1;",
       "interval = \"1h\"; every_samples = 7; keep = 2;"},
      {"interval = 30; keep = 1000;", "interval = 31; keep = 999;"},
      {"level = \"warn\"", "level = \"debug\""},
      {"enabled = false; listen = \"::1\"; port = 0;",
       "enabled = true; listen = \"127.0.0.2\"; port = 9999;"},
      {"shutdown_timeout = \"1m\"", "shutdown_timeout = \"2m\""},
      {"status_interval = \"250ms\"", "status_interval = \"1s\""},
  };
  static char text[8192];
  snprintf(text, sizeof(text), "%s", full_text);
  for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
    int found = subst(text, sizeof(text), edits[i][0], edits[i][1]);
    if (!found) fprintf(stderr, "reload test: \"%s\" not in full_text\n", edits[i][0]);
    CHECK(found);
  }
  CHECK(load_ok(&cfg, full_text));
  CHECK(load_ok(&cfg2, text));

  /* the new file changes every reloadable row, and nothing else */
  seen_t seen = {0};
  CHECK(mtld_config_diff(&cfg, &cfg2, record, &seen) == 0);
  size_t n_reloadable = 0;
  for (size_t i = 0; i < mtld_config_key_count(); i++) {
    int r;
    const char *key = mtld_config_key(i, &r);
    if (!r) continue;
    n_reloadable++;
    if (!seen_has(&seen, key, 1)) fprintf(stderr, "reload test: %s not changed by the test\n", key);
    CHECK(seen_has(&seen, key, 1));
  }
  CHECK(mtld_config_key(mtld_config_key_count(), NULL) == NULL);
  CHECK(seen_has(&seen, "model.tasks.cart.weight", 1));
  CHECK(seen.n == (int)n_reloadable + 1 && n_reloadable >= 20);

  /* applied: every one of them, through the table */
  seen_t applied = {0};
  CHECK(mtld_config_apply(&cfg, &cfg2, record, &applied) == 0);
  CHECK(applied.n == seen.n);
  CHECK(count_changes(&cfg, &cfg2) == 0);
  CHECK(strcmp(cfg.dead_letter_topic, "dlq2") == 0 && cfg.limits.dedup == 0);
  CHECK(cfg.model.lr == 0.02f && cfg.model.emb.lr == 0.002f);
  CHECK(cfg.model.tasks[1].loss_weight == 0.5f && cfg.model.tasks[2].loss_weight == 2.0f);
  CHECK(cfg.checkpoint_every_samples == 7 && cfg.snapshot_keep == 999);
  CHECK(strcmp(cfg.log_level, "debug") == 0 && cfg.metrics_port == 9999);
}

/* A changed key that is not reloadable is reported and keeps its value,
 * while the reloadable ones next to it apply. */
static void test_reload_refused(void) {
  static char text[8192];
  snprintf(text, sizeof(text), "%s", full_text);
  CHECK(subst(text, sizeof(text), "path = \"/srv/s\"", "path = \"/srv/other\""));
  CHECK(subst(text, sizeof(text), "format = \"json\"", "format = \"protobuf\""));
  CHECK(subst(text, sizeof(text), "mode = \"sampled_negatives\"", "mode = \"impressions\""));
  CHECK(subst(text, sizeof(text), "batch_max_events = 500", "batch_max_events = 7"));
  CHECK(load_ok(&cfg, full_text));
  CHECK(load_ok(&cfg2, text));
  seen_t seen = {0};
  CHECK(mtld_config_apply(&cfg, &cfg2, record, &seen) == 3);
  CHECK(seen.n == 4);
  CHECK(seen_has(&seen, "store.path", 0) && seen_has(&seen, "source.format", 0));
  CHECK(seen_has(&seen, "joiner.mode", 0) && seen_has(&seen, "store.batch_max_events", 1));
  CHECK(strcmp(cfg.store_path, "/srv/s") == 0 && cfg.format == MTLD_FMT_JSON);
  CHECK(cfg.joiner.mode == MTLD_JOIN_SAMPLED_NEGATIVES);
  CHECK(cfg.batch_max_events == 7);
  /* a second reload of the same file: the same refusals, nothing to apply */
  memset(&seen, 0, sizeof(seen));
  CHECK(mtld_config_apply(&cfg, &cfg2, record, &seen) == 3 && seen.n == 3);

  /* tasks: a changed weight applies only when the task list is otherwise
   * the same; a renamed task refuses the list, weights included */
  snprintf(text, sizeof(text), "%s", full_text);
  CHECK(subst(text, sizeof(text),
              "name = \"cart\"; type = \"binary\"; label = \"cart\"; weight = 0.25",
              "name = \"basket\"; type = \"binary\"; label = \"cart\"; weight = 0.5"));
  CHECK(load_ok(&cfg, full_text));
  CHECK(load_ok(&cfg2, text));
  memset(&seen, 0, sizeof(seen));
  CHECK(mtld_config_apply(&cfg, &cfg2, record, &seen) == 1);
  CHECK(seen.n == 1 && seen_has(&seen, "model.tasks", 0));
  CHECK(strcmp(cfg.model.tasks[1].name, "cart") == 0 && cfg.model.tasks[1].loss_weight == 0.25f);
}

static void write_file(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fwrite(text, 1, len, f);
  fclose(f);
}

/* A file that does not load changes nothing: syntax, value, include. */
static void test_reload_bad_file(void) {
  static mtld_config_t before;
  char dir[] = "/tmp/mtld-test-reload-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256], sub[256], inc[256], self[256], err[512], want[512];
  snprintf(path, sizeof(path), "%s/mtld.conf", dir);
  snprintf(sub, sizeof(sub), "%s/conf.d", dir);
  snprintf(inc, sizeof(inc), "%s/inc.conf", dir);
  snprintf(self, sizeof(self), "%s/self.conf", dir);
  CHECK(mkdir(sub, 0700) == 0);
  write_file(inc, "store = { batch_max_events = 9; };\n", 35);
  write_file(self, "@include \"self.conf\"\n", 21);
  write_file(path, full_text, strlen(full_text));
  CHECK(mtld_config_load(&cfg, path, err, sizeof(err)) == MTLD_OK);
  memcpy(&before, &cfg, sizeof(cfg));

  static const struct {
    const char *text; /* appended to the base (level = "debug" first) */
    size_t len;       /* 0: strlen */
    const char *want; /* in the error, after "DIR/" */
  } bad[] = {
      {"store = { batch_max_ms = ; };\n", 0, "mtld.conf:"},
      {"xstore = { };\n", 0, "xstore: unknown key"},
      {"@include \"conf.d\"\n", 0, "@include \"conf.d\": DIR/conf.d: is a directory, not a file"},
      {"@include \"\"\n", 0, "@include \"\": DIR/: empty name"},
      {"@include \".\"\n", 0, "@include \".\": DIR/.: is a directory"},
      {"  @include \"..\"\n", 0, "@include \"..\": DIR/..: is a directory"},
      {"@include \"conf.d\0x\"\n", 19,
       "@include \"conf.d\\x00x\": DIR/conf.d: the name holds a NUL"},
      {"@include \"missing.conf\"\n", 0,
       "@include \"missing.conf\": DIR/missing.conf: No such file"},
      {"@include \"self.conf\"\n", 0,
       "self.conf:1: @include \"self.conf\": DIR/self.conf: includes "
       "nested more than 10 deep"},
      {"@include \"/dev/null\"\n", 0, "@include \"/dev/null\": DIR//dev/null: No such file"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    static char text[8192];
    snprintf(text, sizeof(text), "%s", full_text);
    CHECK(subst(text, sizeof(text), "level = \"warn\"", "level = \"debug\""));
    size_t blen = strlen(text), len = bad[i].len ? bad[i].len : strlen(bad[i].text);
    memcpy(text + blen, bad[i].text, len);
    write_file(path, text, blen + len);
    int refused = -1;
    err[0] = '\0';
    mtld_status_t st = mtld_config_reload(&cfg, path, &refused, NULL, NULL, err, sizeof(err));
    /* the expected text with DIR expanded */
    char w[512];
    snprintf(w, sizeof(w), "%s", bad[i].want);
    char *d;
    size_t o = 0;
    want[0] = '\0';
    for (const char *p = w; (d = strstr(p, "DIR")) != NULL; p = d + 3) {
      o += (size_t)snprintf(want + o, sizeof(want) - o, "%.*s%s", (int)(d - p), p, dir);
      if (!strstr(d + 3, "DIR")) snprintf(want + o, sizeof(want) - o, "%s", d + 3);
    }
    if (!strstr(w, "DIR")) snprintf(want, sizeof(want), "%s", w);
    int ok = st == MTLD_ERR_CONFIG && strstr(err, want) != NULL && refused == -1;
    if (!ok) fprintf(stderr, "bad reload %zu: want \"%s\", got %d \"%s\"\n", i, want, st, err);
    CHECK(ok);
    CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
  }

  /* a good include still works, and a reload through it applies */
  static const char good[] = MINIMAL "@include \"inc.conf\"\n";
  write_file(path, good, strlen(good));
  CHECK(mtld_config_load(&cfg2, path, err, sizeof(err)) == MTLD_OK && cfg2.batch_max_events == 9);
  /* strings and comments are not includes */
  static const char quiet[] =
      "source = { topics = [\"a\"]; file = \"x\\\"\n@include \\\"conf.d\\\"\"; };\n"
      "# @include \"conf.d\"\n"
      "// @include \"conf.d\"\n"
      "/*\n@include \"conf.d\"\n*/\n"
      "kafka = { bootstrap_servers = \"k:1\"; };\n";
  write_file(path, quiet, strlen(quiet));
  CHECK(mtld_config_load(&cfg2, path, err, sizeof(err)) == MTLD_OK);
  if (strcmp(cfg2.source_file, "x\"\n@include \"conf.d\"") != 0)
    fprintf(stderr, "source_file \"%s\" (%s)\n", cfg2.source_file, err);
  CHECK(strcmp(cfg2.source_file, "x\"\n@include \"conf.d\"") == 0);
  /* a string config has no include dir: names are as written */
  EXPECT_ERROR(MINIMAL "@include \"/\"\n", "t.conf:3: @include \"/\": /: is a directory");
  /* -c of a directory */
  CHECK(mtld_config_load(&cfg2, dir, err, sizeof(err)) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "is a directory") != NULL);

  unlink(path);
  unlink(inc);
  unlink(self);
  rmdir(sub);
  rmdir(dir);
}

/* features.attributes: parsing, the model inputs it adds, errors with key
 * and line, print -> load, and a change is not reloadable. */
static void test_attributes(void) {
  const char *text = MINIMAL
      "features = {\n"
      "  attributes = (\n"
      "    { name = \"age_level\"; owner = \"user\"; kind = \"categorical\"; rows = 1000; "
      "default = \"\"; },\n"
      "    { name = \"brand\"; owner = \"item\"; kind = \"categorical\"; rows = 5000; default = "
      "\"none\"; },\n"
      "    { name = \"discount\"; owner = \"context\"; kind = \"numeric\"; default = 0.0; },\n"
      "    { name = \"income\"; owner = \"user\"; kind = \"numeric\"; default = 2; }\n"
      "  );\n"
      "};\n";
  CHECK(load_ok(&cfg, text));
  const mtld_feature_def_t *d = &cfg.features;
  CHECK(d->n_attrs == 4 && strcmp(d->attrs[0].name, "age_level") == 0 &&
        d->attrs[0].owner == MTLD_ATTR_USER && d->attrs[0].kind == MTLD_ATTR_CATEGORICAL &&
        d->attrs[0].rows == 1000 && d->attrs[0].default_id == 0);
  CHECK(d->attrs[1].default_id == mtld_hash_id("none", 4) && d->attrs[1].owner == MTLD_ATTR_ITEM);
  CHECK(d->attrs[2].kind == MTLD_ATTR_NUMERIC && d->attrs[2].owner == MTLD_ATTR_CONTEXT &&
        d->attrs[3].default_num == 2.0);
  /* the model: a field per categorical attribute, a dense input per numeric one */
  CHECK(cfg.model.n_fields == MTLD_FIELD_EXTRA + 2 && cfg.model.n_dense == 45 + 2);
  CHECK(strcmp(cfg.model.fields[MTLD_FIELD_EXTRA].name, "age_level") == 0 &&
        cfg.model.fields[MTLD_FIELD_EXTRA + 1].rows == 5000);
  CHECK(round_trip(&cfg, &cfg2) && cfg2.features.n_attrs == 4 &&
        mtld_feature_def_hash(&cfg2.features) == mtld_feature_def_hash(&cfg.features) &&
        cfg2.model.n_fields == cfg.model.n_fields);
  /* changing them is not reloadable */
  CHECK(count_changes(&cfg, &cfg2) == 0);
  cfg2.features.attrs[0].rows = 999;
  CHECK(count_changes(&cfg, &cfg2) == 1);
  /* none declared: the model of before */
  CHECK(load_ok(&cfg2, MINIMAL "features = { attributes = (); };"));
  CHECK(cfg2.model.n_fields == MTLD_FIELD_EXTRA && cfg2.model.n_dense == 45);

  EXPECT_ERROR(MINIMAL
               "features = {\n attributes = ( { owner = \"user\"; kind = \"numeric\"; } );\n};",
               "t.conf:4: features.attributes[0].name: required");
  EXPECT_ERROR(MINIMAL "features = {\n attributes = (\n { name = \"a\"; owner = \"shop\"; kind = "
                       "\"numeric\"; } );\n};",
               "t.conf:5: features.attributes[0].owner: must be");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"categorical\"; } ); };",
               "features.attributes[0].rows: required");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"numeric\"; rows = 3; } ); };",
               "features.attributes[0].rows: only for kind");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"numeric\"; default = \"x\"; } ); };",
               "features.attributes[0].default: expected a number");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"categorical\"; rows = 4; default = 1; } ); };",
               "features.attributes[0].default: expected a string");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"numeric\"; }, { name = \"a\"; owner = \"item\"; kind = \"numeric\"; } ); "
                       "};",
               "features.attributes[1].name: duplicate attribute name");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"a\"; owner = \"user\"; kind = "
                       "\"numeric\"; owners = 1; } ); };",
               "unknown key (did you mean features.attributes[0].owner?)");
  EXPECT_ERROR(MINIMAL "features = { attributes = ( { name = \"\"; owner = \"user\"; kind = "
                       "\"numeric\"; } ); };",
               "must have 1 to 63 bytes");
  EXPECT_ERROR(MINIMAL "features = { attributes = { a = 1; }; };",
               "features.attributes: expected a list of groups");
  EXPECT_ERROR(MINIMAL "joiner = { mode = \"sampled_negatives\"; };\nfeatures = { attributes = ( "
                       "{ name = \"b\"; owner = \"item\"; kind = \"numeric\"; } ); };",
               "not supported with joiner.mode");
  CHECK(load_ok(&cfg2, MINIMAL "joiner = { mode = \"sampled_negatives\"; };\nfeatures = { "
                               "attributes = ( { name = \"b\"; owner = \"user\"; kind = "
                               "\"numeric\"; } ); };"));
  /* more numeric attributes than dense room: 4 half-lives leave 9 */
  char big[4096];
  int n = snprintf(big, sizeof big,
                   MINIMAL "features = {\n half_lives = [\"1h\", \"1d\", \"7d\", \"30d\"];\n "
                           "attributes = (\n");
  for (int k = 0; k < 10; k++)
    n +=
        snprintf(big + n, sizeof big - (size_t)n,
                 "%s{ name = \"n%d\"; owner = \"context\"; kind = \"numeric\"; }", k ? "," : "", k);
  snprintf(big + n, sizeof big - (size_t)n, ");\n};\n");
  EXPECT_ERROR(big, "features.attributes: 10 numeric attributes, but only 9 fit");
}

int main(void) {
  mtld_log_init();
  test_dirs_beside_store();
  test_defaults();
  test_full();
  test_errors();
  test_kafka();
  test_duration();
  test_round_trip();
  test_diff();
  test_shipped_configs();
  test_print_layout();
  test_model_errors();
  test_review_task();
  test_demand_task();
  test_n_dense();
  test_attributes();
  test_model_diff();
  test_model_round_trip();
  test_reload_every_key();
  test_reload_refused();
  test_reload_bad_file();
  return CHECK_DONE();
}
