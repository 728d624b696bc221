/* log.h - logging to stderr.  Under systemd (JOURNAL_STREAM set) every line
 * starts with a "<N>" priority prefix journald understands; otherwise lines
 * carry an ISO-8601 timestamp and the level name.  Repeated messages of one
 * class are rate-limited.  Any thread (a mutex serialises lines). */
#ifndef MTLD_LOG_H
#define MTLD_LOG_H

/* syslog priorities */
#define MTLD_LOG_ERR 3
#define MTLD_LOG_WARNING 4
#define MTLD_LOG_NOTICE 5
#define MTLD_LOG_INFO 6
#define MTLD_LOG_DEBUG 7

/* Detects journald (JOURNAL_STREAM) and sets the level to INFO. */
void mtld_log_init(void);

/* Sets the level (messages above it are dropped). */
void mtld_log_set_level(int level);
int mtld_log_get_level(void);

/* "err"/"error", "warning"/"warn", "notice", "info", "debug" -> level; -1 if unknown. */
int mtld_log_level_parse(const char *name);

void mtld_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rate-limited: at most 5 lines per `key` every 10 s (CLOCK_MONOTONIC:
 * pacing only, never event time); the next line that passes ends with
 * "(N similar messages suppressed)".  Up to 64 keys are tracked (the least
 * recently used is forgotten); keys are compared on their first 63 bytes. */
void mtld_log_rl(int level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs "KEY: N similar messages suppressed" for every key with lines held
 * back since its last printed one (at the end of a run, so no count is lost
 * with the process), and zeroes those counts.  Lines of a key forgotten to
 * make room for another are reported the same way then.  Any thread. */
void mtld_log_rl_flush(void);

/* Tests only: replaces the rate limiter's clock (nanoseconds, monotonic);
 * NULL restores CLOCK_MONOTONIC. */
void mtld_log_set_clock(long long (*now_ns)(void));

#endif
