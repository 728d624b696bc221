/* notify.h - the daemon's side of systemd's Type=notify protocol (sd_notify):
 * READY, RELOADING, STOPPING, STATUS and the watchdog keep-alive.
 *
 * Every call is a no-op returning 0 when the daemon does not run under
 * systemd (NOTIFY_SOCKET unset), so the daemon calls them unconditionally.
 * Return values follow sd_notify: > 0 sent, 0 nothing to do, < 0 a negative
 * errno (worth a log line, never fatal).  The environment is left in place.
 *
 * Thread: the main thread (the watchdog interval is cached without a lock). */
#ifndef MTLD_NOTIFY_H
#define MTLD_NOTIFY_H

#include <stdint.h>

/* Reads (again) the watchdog settings from WATCHDOG_USEC / WATCHDOG_PID and
 * caches them.  Optional: the other calls do it on first use. */
void mtld_notify_init(void);

/* "READY=1": start-up is complete, or a reload finished. */
int mtld_notify_ready(void);

/* "RELOADING=1" plus "MONOTONIC_USEC=<CLOCK_MONOTONIC in us>" (which
 * Type=notify-reload in newer systemd requires); send READY=1 when the reload
 * is done. */
int mtld_notify_reloading(void);

/* "STOPPING=1": shutdown began. */
int mtld_notify_stopping(void);

/* "STATUS=<text>" shown by systemctl status; printf-style.  Newlines in the
 * text become spaces (a newline would start another assignment). Text longer
 * than 1023 bytes is truncated. */
int mtld_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "EXTEND_TIMEOUT_USEC=<usec>": asks for more time during a long start
 * (checkpoint restore) or stop (drain + checkpoint). */
int mtld_notify_extend_timeout(uint64_t usec);

/* "WATCHDOG=1" when the watchdog is enabled for this process, else 0 and
 * nothing sent.  Call at least every mtld_notify_watchdog_usec() / 2. */
int mtld_notify_watchdog(void);

/* The watchdog interval in microseconds (WatchdogSec=), 0 when disabled. */
uint64_t mtld_notify_watchdog_usec(void);

#endif
