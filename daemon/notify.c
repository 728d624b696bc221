/* notify.c - thin wrapper over libsystemd's sd_notify (see notify.h). */
#include "daemon/notify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "common/clock.h"

static int watchdog_known;
static uint64_t watchdog_usec;

void mtld_notify_init(void) {
  uint64_t usec = 0;
  /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us. */
  if (sd_watchdog_enabled(0, &usec) <= 0) usec = 0;
  watchdog_usec = usec;
  watchdog_known = 1;
}

int mtld_notify_ready(void) {
  return sd_notify(0, "READY=1");
}

int mtld_notify_reloading(void) {
  uint64_t usec = (uint64_t)mtld_mono_ns() / 1000u;
  return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
}

int mtld_notify_stopping(void) {
  return sd_notify(0, "STOPPING=1");
}

int mtld_notify_status(const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  for (char *p = text; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return sd_notifyf(0, "STATUS=%s", text);
}

int mtld_notify_extend_timeout(uint64_t usec) {
  return sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
}

int mtld_notify_watchdog(void) {
  if (mtld_notify_watchdog_usec() == 0) return 0;
  return sd_notify(0, "WATCHDOG=1");
}

uint64_t mtld_notify_watchdog_usec(void) {
  if (!watchdog_known) mtld_notify_init();
  return watchdog_usec;
}
