/* log.c - log lines to stderr, with journald priority prefixes under systemd.
 *
 * Under systemd, stderr is a stream to journald and JOURNAL_STREAM holds its
 * "device:inode"; as systemd recommends, the prefix mode is used only when
 * that matches stderr (a child whose stderr was redirected elsewhere inherits
 * the variable but must not print "<6>" into a file).  Each line is built in
 * one buffer and written with one write(2) under a mutex, so lines of
 * several threads never interleave.
 *
 * Owns: the level, the output mode and the rate limiter's key table. */
#include "daemon/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

#define RL_KEYS 64
#define RL_KEY_MAX 64 /* bytes kept per key, including the NUL */
#define RL_BURST 5
#define RL_WINDOW_NS 10000000000LL
#define MSG_MAX 4000

typedef struct {
  char key[RL_KEY_MAX];
  long long window_start;       /* ns, monotonic */
  unsigned long long last_used; /* tick, for eviction */
  int count;                    /* lines printed in this window */
  unsigned long suppressed;     /* lines dropped since the last printed one */
  int level;                    /* of the last line dropped */
  int used;
} rl_entry_t;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = MTLD_LOG_INFO;
static int log_journal;              /* under log_lock */
static rl_entry_t rl_table[RL_KEYS]; /* under log_lock */
static unsigned long long rl_tick;   /* under log_lock */
static long long (*rl_clock)(void);  /* tests only */

static int journal_detect(void) {
  const char *js = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;
  if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
  if (fstat(STDERR_FILENO, &st) != 0) return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void mtld_log_init(void) {
  pthread_mutex_lock(&log_lock);
  log_journal = journal_detect();
  pthread_mutex_unlock(&log_lock);
  atomic_store(&log_level, MTLD_LOG_INFO);
}

void mtld_log_set_level(int level) {
  atomic_store(&log_level, level);
}

int mtld_log_get_level(void) {
  return atomic_load(&log_level);
}

int mtld_log_level_parse(const char *name) {
  static const struct {
    const char *name;
    int level;
  } names[] = {{"err", MTLD_LOG_ERR},         {"error", MTLD_LOG_ERR},
               {"warning", MTLD_LOG_WARNING}, {"warn", MTLD_LOG_WARNING},
               {"notice", MTLD_LOG_NOTICE},   {"info", MTLD_LOG_INFO},
               {"debug", MTLD_LOG_DEBUG}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcasecmp(name, names[i].name) == 0) return names[i].level;
  return -1;
}

void mtld_log_set_clock(long long (*now_ns)(void)) {
  pthread_mutex_lock(&log_lock);
  rl_clock = now_ns;
  pthread_mutex_unlock(&log_lock);
}

static long long monotonic_ns(void) {
  return (long long)mtld_mono_ns();
}

static void write_all(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* nowhere left to report it */
    buf += n;
    len -= (size_t)n;
  }
}

/* Formats and writes one line; caller holds log_lock.  suffix may be "". */
static void emit(int level, const char *suffix, const char *fmt, va_list ap) {
  static const char *const names[] = {"EMERG",   "ALERT",  "CRIT", "ERROR",
                                      "WARNING", "NOTICE", "INFO", "DEBUG"};
  if (level < 0) level = 0;
  if (level > 7) level = 7;
  char line[MSG_MAX + 128];
  int n;
  if (log_journal) {
    n = snprintf(line, sizeof(line), "<%d>", level);
  } else {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03ldZ %s ", stamp, ts.tv_nsec / 1000000, names[level]);
  }
  size_t start = (size_t)n;
  int m = vsnprintf(line + start, MSG_MAX - start, fmt, ap);
  size_t end = start + (m < 0 ? 0 : (size_t)m);
  if (end >= MSG_MAX) { /* truncated: say so */
    end = MSG_MAX - 1;
    memcpy(line + end - 3, "...", 3);
  }
  while (end > start && (line[end - 1] == '\n' || line[end - 1] == '\r')) end--;
  /* one message = one journal entry: no line breaks inside */
  for (size_t i = start; i < end; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  size_t sl = strlen(suffix);
  memcpy(line + end, suffix, sl); /* suffix < 128 - 1 bytes */
  end += sl;
  line[end++] = '\n';
  write_all(line, end);
}

void mtld_log(int level, const char *fmt, ...) {
  if (level > atomic_load(&log_level)) return;
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&log_lock);
  emit(level, "", fmt, ap);
  pthread_mutex_unlock(&log_lock);
  va_end(ap);
}

/* emit() with variadic arguments; caller holds log_lock. */
static void emit_fmt(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_fmt(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, "", fmt, ap);
  va_end(ap);
}

/* The table entry for key: found, or a free or least recently used one reset. */
static rl_entry_t *rl_entry(const char *key, long long now) {
  rl_entry_t *victim = &rl_table[0];
  for (int i = 0; i < RL_KEYS; i++) {
    rl_entry_t *e = &rl_table[i];
    if (e->used && strncmp(e->key, key, RL_KEY_MAX - 1) == 0) return e;
    if (!e->used) {
      if (victim->used) victim = e;
    } else if (victim->used && e->last_used < victim->last_used) {
      victim = e;
    }
  }
  if (victim->used && victim->suppressed) { /* forgotten: say what it held back */
    emit_fmt(victim->level, "%s: %lu similar messages suppressed", victim->key, victim->suppressed);
  }
  memset(victim, 0, sizeof(*victim));
  snprintf(victim->key, sizeof(victim->key), "%s", key);
  victim->window_start = now;
  victim->used = 1;
  return victim;
}

void mtld_log_rl(int level, const char *key, const char *fmt, ...) {
  if (level > atomic_load(&log_level)) return;
  pthread_mutex_lock(&log_lock);
  long long now = rl_clock ? rl_clock() : monotonic_ns();
  rl_entry_t *e = rl_entry(key, now);
  e->last_used = ++rl_tick;
  if (now - e->window_start >= RL_WINDOW_NS) {
    e->window_start = now;
    e->count = 0;
  }
  if (e->count >= RL_BURST) {
    e->suppressed++;
    e->level = level;
    pthread_mutex_unlock(&log_lock);
    return;
  }
  e->count++;
  char suffix[64] = "";
  if (e->suppressed)
    snprintf(suffix, sizeof(suffix), " (%lu similar messages suppressed)", e->suppressed);
  e->suppressed = 0;
  va_list ap;
  va_start(ap, fmt);
  emit(level, suffix, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&log_lock);
}

void mtld_log_rl_flush(void) {
  pthread_mutex_lock(&log_lock);
  for (int i = 0; i < RL_KEYS; i++) {
    rl_entry_t *e = &rl_table[i];
    if (!e->used || !e->suppressed) continue;
    emit_fmt(e->level, "%s: %lu similar messages suppressed", e->key, e->suppressed);
    e->suppressed = 0;
  }
  pthread_mutex_unlock(&log_lock);
}
