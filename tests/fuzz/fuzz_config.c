/* fuzz_config.c - libFuzzer target: the config loader (libconfig syntax, the
 * key table, validation, @include).
 *
 * The input is written as a file beside a directory "d", a good include
 * "inc.conf" and a file that includes itself, then loaded with
 * mtld_config_load (includes resolve there) and, up to its first NUL, with
 * mtld_config_load_string (includes resolve from the working directory).
 * Every input must load or be refused with MTLD_ERR_CONFIG and a message;
 * never crash, leak, or end the process: libconfig 1.5's scanner calls
 * exit(2) on an include it can open but not read (issue 15), and libFuzzer
 * reports an exit from the target as a failure, so this also checks that
 * the @include guard sees every include libconfig would open.  A config
 * that loads must print and load again into an equal config, and a reload
 * from it onto the defaults-only config must apply or refuse every change.
 *
 * libconfig 1.5 leaks a few bytes on some failed parses (fixed upstream):
 * tests/fuzz/lsan.supp, passed by run.sh, suppresses leaks allocated inside
 * libconfig only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/log.h"

static char dir[] = "/tmp/mtld-fuzz-config-XXXXXX";
static char path[64], sub[64], inc[64], self[64];
static mtld_config_t cfg, again, base;

static void put(const char *p, const char *text) {
  FILE *f = fopen(p, "w");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

static void cleanup(void) {
  unlink(path);
  unlink(inc);
  unlink(self);
  rmdir(sub);
  rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mtld_log_init();
  mtld_log_set_level(MTLD_LOG_ERR);
  if (!mkdtemp(dir)) abort();
  snprintf(path, sizeof(path), "%s/fuzz.conf", dir);
  snprintf(sub, sizeof(sub), "%s/d", dir);
  snprintf(inc, sizeof(inc), "%s/inc.conf", dir);
  snprintf(self, sizeof(self), "%s/self.conf", dir);
  if (mkdir(sub, 0700) != 0) abort();
  put(inc, "store = { batch_max_events = 9; };\n");
  put(self, "@include \"self.conf\"\n");
  atexit(cleanup);
  mtld_config_default(&base);
  return 0;
}

static void check_loaded(const mtld_config_t *c) {
  /* print -> load: the same config */
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) abort();
  mtld_config_print(c, m);
  fclose(m);
  char err[1024];
  if (mtld_config_load_string(&again, text, "printed", err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "printed config does not load: %s\n%s", err, text);
    abort();
  }
  free(text);
  if (mtld_config_diff(c, &again, NULL, NULL) != 0) abort();
  /* a reload onto the defaults: afterwards only refused keys differ */
  static mtld_config_t running;
  running = base;
  int refused = mtld_config_apply(&running, c, NULL, NULL);
  if (mtld_config_diff(&running, c, NULL, NULL) != refused) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[1024];
  FILE *f = fopen(path, "w");
  if (!f) abort();
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  err[0] = '\0';
  mtld_status_t st = mtld_config_load(&cfg, path, err, sizeof(err));
  if (st == MTLD_OK)
    check_loaded(&cfg);
  else if (st != MTLD_ERR_CONFIG || !err[0])
    abort();

  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  err[0] = '\0';
  st = mtld_config_load_string(&cfg, text, "fuzz", err, sizeof(err));
  free(text);
  if (st == MTLD_OK)
    check_loaded(&cfg);
  else if (st != MTLD_ERR_CONFIG || !err[0])
    abort();
  return 0;
}
