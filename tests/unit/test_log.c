/* test_log.c - log lines as journald and a terminal see them: priority
 * prefixes vs timestamps, the level filter, one line per message, the rate
 * limiter (with a fake clock) and whole lines from several threads. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon/log.h"

/* ---- stderr capture: begin() sends fd 2 to a temp file, end() restores it
 * and returns what was written (malloc'd).  CHECK itself prints to stderr,
 * so checks happen outside begin/end. */
static int cap_fd = -1, saved_fd = -1;

static void begin(void) {
  fflush(stderr);
  saved_fd = dup(STDERR_FILENO);
  dup2(cap_fd, STDERR_FILENO);
}

static char *end(void) {
  fflush(stderr);
  dup2(saved_fd, STDERR_FILENO);
  close(saved_fd);
  struct stat st;
  fstat(cap_fd, &st);
  char *buf = calloc(1, (size_t)st.st_size + 1);
  if (pread(cap_fd, buf, (size_t)st.st_size, 0) != st.st_size) buf[0] = '\0';
  if (ftruncate(cap_fd, 0) != 0) perror("ftruncate");
  lseek(cap_fd, 0, SEEK_SET);
  return buf;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static int count_str(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

static long long fake_now;
static long long fake_clock(void) {
  return fake_now;
}

static void set_journal(int on) {
  if (on) {
    struct stat st;
    fstat(cap_fd, &st);
    char v[64];
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
  } else {
    unsetenv("JOURNAL_STREAM");
  }
  /* detection looks at fd 2 */
  begin();
  mtld_log_init();
  free(end());
}

static void test_level_parse(void) {
  CHECK(mtld_log_level_parse("err") == MTLD_LOG_ERR);
  CHECK(mtld_log_level_parse("error") == MTLD_LOG_ERR);
  CHECK(mtld_log_level_parse("warning") == MTLD_LOG_WARNING);
  CHECK(mtld_log_level_parse("WARN") == MTLD_LOG_WARNING);
  CHECK(mtld_log_level_parse("notice") == MTLD_LOG_NOTICE);
  CHECK(mtld_log_level_parse("info") == MTLD_LOG_INFO);
  CHECK(mtld_log_level_parse("debug") == MTLD_LOG_DEBUG);
  CHECK(mtld_log_level_parse("verbose") == -1);
  CHECK(mtld_log_level_parse("") == -1);
}

/* "2026-11-29T22:00:00.123Z " */
static int is_timestamp(const char *s) {
  const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ ";
  for (size_t i = 0; pat[i]; i++) {
    if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i]) return 0;
  }
  return 1;
}

static void test_plain(void) {
  set_journal(0);
  CHECK(mtld_log_get_level() == MTLD_LOG_INFO);
  begin();
  mtld_log(MTLD_LOG_INFO, "hello %d", 42);
  mtld_log(MTLD_LOG_ERR, "broken: %s", "disk");
  mtld_log(MTLD_LOG_DEBUG, "not shown");
  char *out = end();
  CHECK(count_lines(out) == 2);
  CHECK(is_timestamp(out));
  CHECK(strncmp(out + 25, "INFO hello 42\n", 14) == 0);
  char *second = strchr(out, '\n') + 1;
  CHECK(is_timestamp(second));
  CHECK(strcmp(second + 25, "ERROR broken: disk\n") == 0);
  CHECK(strstr(out, "not shown") == NULL);
  free(out);

  /* a JOURNAL_STREAM that is not our stderr (inherited, redirected) */
  setenv("JOURNAL_STREAM", "1:1", 1);
  mtld_log_init();
  begin();
  mtld_log(MTLD_LOG_WARNING, "w");
  out = end();
  CHECK(is_timestamp(out) && strcmp(out + 25, "WARNING w\n") == 0);
  free(out);
  unsetenv("JOURNAL_STREAM");
}

static void test_journal(void) {
  set_journal(1);
  begin();
  mtld_log(MTLD_LOG_INFO, "started %s", "ok");
  mtld_log(MTLD_LOG_ERR, "failed");
  mtld_log(MTLD_LOG_WARNING, "careful");
  mtld_log(MTLD_LOG_NOTICE, "note");
  mtld_log(MTLD_LOG_DEBUG, "hidden");
  char *out = end();
  CHECK(strcmp(out, "<6>started ok\n<3>failed\n<4>careful\n<5>note\n") == 0);
  free(out);

  /* level filter */
  mtld_log_set_level(MTLD_LOG_WARNING);
  CHECK(mtld_log_get_level() == MTLD_LOG_WARNING);
  begin();
  mtld_log(MTLD_LOG_INFO, "info");
  mtld_log(MTLD_LOG_NOTICE, "notice");
  mtld_log(MTLD_LOG_WARNING, "warning");
  mtld_log(MTLD_LOG_ERR, "err");
  mtld_log_rl(MTLD_LOG_INFO, "filtered", "rl info");
  out = end();
  CHECK(strcmp(out, "<4>warning\n<3>err\n") == 0);
  free(out);
  mtld_log_set_level(MTLD_LOG_DEBUG);
  begin();
  mtld_log(MTLD_LOG_DEBUG, "now %s", "visible");
  out = end();
  CHECK(strcmp(out, "<7>now visible\n") == 0);
  free(out);

  /* one message, one line: inner newlines flattened, trailing ones dropped */
  begin();
  mtld_log(MTLD_LOG_INFO, "a\nb\r\n");
  out = end();
  CHECK(strcmp(out, "<6>a b\n") == 0);
  free(out);

  /* an oversized message is cut, marked, and still one line */
  char *big = malloc(10000);
  memset(big, 'x', 9999);
  big[9999] = '\0';
  begin();
  mtld_log(MTLD_LOG_INFO, "%s", big);
  out = end();
  size_t len = strlen(out);
  CHECK(count_lines(out) == 1);
  CHECK(len > 1000 && len < 4200);
  CHECK(len > 4 && strcmp(out + len - 4, "...\n") == 0);
  free(out);
  free(big);
  mtld_log_set_level(MTLD_LOG_INFO);
}

static void test_rate_limit(void) {
  set_journal(1);
  mtld_log_set_clock(fake_clock);
  fake_now = 1000000000LL;

  /* 8 at once: 5 pass */
  begin();
  for (int i = 0; i < 8; i++) mtld_log_rl(MTLD_LOG_WARNING, "bad_rating", "reject %d", i);
  mtld_log_rl(MTLD_LOG_WARNING, "too_late", "other key");
  char *out = end();
  CHECK(count_str(out, "reject ") == 5);
  CHECK(strstr(out, "<4>reject 4\n") != NULL && strstr(out, "reject 5") == NULL);
  CHECK(strstr(out, "<4>other key\n") != NULL); /* keys are independent */
  CHECK(strstr(out, "suppressed") == NULL);
  free(out);

  /* still inside the 10 s window */
  fake_now += 9999999999LL;
  begin();
  mtld_log_rl(MTLD_LOG_WARNING, "bad_rating", "reject late");
  out = end();
  CHECK(out[0] == '\0');
  free(out);

  /* a new window: the first line carries the count, once */
  fake_now += 1;
  begin();
  mtld_log_rl(MTLD_LOG_WARNING, "bad_rating", "reject again");
  mtld_log_rl(MTLD_LOG_WARNING, "bad_rating", "reject more");
  out = end();
  CHECK(strcmp(out, "<4>reject again (4 similar messages suppressed)\n<4>reject more\n") == 0);
  free(out);

  /* plain mode appends the same note */
  set_journal(0);
  fake_now += 20000000000LL;
  begin();
  for (int i = 0; i < 7; i++) mtld_log_rl(MTLD_LOG_ERR, "plain", "p%d", i);
  fake_now += 10000000000LL;
  mtld_log_rl(MTLD_LOG_ERR, "plain", "p-last");
  out = end();
  CHECK(count_lines(out) == 6);
  CHECK(strstr(out, "ERROR p-last (2 similar messages suppressed)\n") != NULL);
  free(out);
  set_journal(1);

  /* 64 keys tracked, the least recently used forgotten */
  fake_now += 60000000000LL;
  begin();
  for (int i = 0; i < 5; i++) mtld_log_rl(MTLD_LOG_INFO, "k0", "k0 first");
  char key[16];
  for (int i = 1; i < 64; i++) { /* k0..k63 push out the keys of the tests above */
    snprintf(key, sizeof(key), "k%d", i);
    mtld_log_rl(MTLD_LOG_INFO, key, "fill");
  }
  mtld_log_rl(MTLD_LOG_INFO, "k0", "k0 blocked");       /* k0 full, and now most recent */
  mtld_log_rl(MTLD_LOG_INFO, "k64", "evicts k1");       /* table full: k1 is the oldest */
  mtld_log_rl(MTLD_LOG_INFO, "k0", "k0 still blocked"); /* k0 was kept */
  out = end();
  CHECK(count_str(out, "k0 first") == 5);
  CHECK(strstr(out, "k0 blocked") == NULL);
  CHECK(strstr(out, "k0 still blocked") == NULL);
  CHECK(strstr(out, "evicts k1") != NULL);
  free(out);
  begin();
  for (int i = 0; i < 5; i++) mtld_log_rl(MTLD_LOG_INFO, "k1", "k1 fresh"); /* new entry */
  out = end();
  CHECK(count_str(out, "k1 fresh") == 5);
  free(out);

  /* long keys compare on their first 63 bytes */
  char long_a[100], long_b[100];
  memset(long_a, 'a', 99);
  long_a[99] = '\0';
  memcpy(long_b, long_a, sizeof(long_b));
  long_b[90] = 'b';
  begin();
  for (int i = 0; i < 3; i++) mtld_log_rl(MTLD_LOG_INFO, long_a, "long");
  for (int i = 0; i < 3; i++) mtld_log_rl(MTLD_LOG_INFO, long_b, "long");
  out = end();
  CHECK(count_str(out, "long") == 5);
  free(out);

  /* at the end of a run, what is still held back is reported, once */
  fake_now += 60000000000LL;
  begin();
  for (int i = 0; i < 7; i++) mtld_log_rl(MTLD_LOG_WARNING, "flushme", "f%d", i);
  mtld_log_rl_flush();
  mtld_log_rl_flush();
  out = end();
  CHECK(strstr(out, "<4>f4\n") != NULL && strstr(out, "<4>f5\n") == NULL);
  CHECK(count_str(out, "flushme: 2 similar messages suppressed\n") == 1); /* once */
  free(out);

  mtld_log_set_clock(NULL);
}

#define THREADS 4
#define LINES 300

static void *writer(void *arg) {
  int t = (int)(long)arg;
  for (int i = 0; i < LINES; i++)
    mtld_log(MTLD_LOG_INFO, "thread %d line %d %s", t, i, "padding-padding-padding-padding");
  return NULL;
}

static void test_threads(void) {
  set_journal(1);
  pthread_t th[THREADS];
  begin();
  for (long t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, writer, (void *)t);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  char *out = end();
  CHECK(count_lines(out) == THREADS * LINES);
  int whole = 0, next[THREADS] = {0}, ordered = 1;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    int t, i;
    char pad[64];
    if (sscanf(line, "<6>thread %d line %d %63s", &t, &i, pad) == 3 && t >= 0 && t < THREADS &&
        strcmp(pad, "padding-padding-padding-padding") == 0) {
      whole++;
      if (i != next[t]++) ordered = 0;
    }
  }
  CHECK(whole == THREADS * LINES);
  CHECK(ordered);
  free(out);
}

int main(void) {
  char path[] = "/tmp/mtld-test-log-XXXXXX";
  cap_fd = mkstemp(path);
  if (cap_fd < 0) {
    perror("mkstemp");
    return 1;
  }
  unlink(path);
  test_level_parse();
  test_plain();
  test_journal();
  test_rate_limit();
  test_threads();
  close(cap_fd);
  return CHECK_DONE();
}
