/* test_notify.c - the sd_notify wrapper: binds its own AF_UNIX datagram
 * socket as systemd would, points NOTIFY_SOCKET at it and checks every
 * datagram byte for byte; then checks the calls are no-ops without it. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/notify.h"
#include "tests/unit/check.h"

/* Receives one datagram within timeout_ms into buf; returns its length or -1. */
static ssize_t recv_msg(int fd, char *buf, size_t cap, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) != 1) return -1;
  ssize_t n = recv(fd, buf, cap - 1, 0);
  if (n >= 0) buf[n] = '\0';
  return n;
}

/* Checks that the next datagram is exactly `want`. */
static void expect_msg(int fd, const char *want) {
  char buf[2048];
  ssize_t n = recv_msg(fd, buf, sizeof(buf), 2000);
  CHECK(n >= 0);
  if (n < 0) return;
  if (strcmp(buf, want) != 0) fprintf(stderr, "got \"%s\", want \"%s\"\n", buf, want);
  CHECK(strcmp(buf, want) == 0);
}

static uint64_t mono_usec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int main(void) {
  char dir[] = "/tmp/mtld-test-notify-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[sizeof(dir) + 16];
  snprintf(path, sizeof(path), "%s/notify", dir);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

  char pid[32];
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  setenv("NOTIFY_SOCKET", path, 1);
  setenv("WATCHDOG_USEC", "5000000", 1);
  setenv("WATCHDOG_PID", pid, 1);
  mtld_notify_init();
  CHECK(mtld_notify_watchdog_usec() == 5000000);

  CHECK(mtld_notify_ready() > 0);
  expect_msg(fd, "READY=1");

  uint64_t before = mono_usec();
  CHECK(mtld_notify_reloading() > 0);
  uint64_t after = mono_usec();
  char buf[2048];
  CHECK(recv_msg(fd, buf, sizeof(buf), 2000) > 0);
  uint64_t stamp = 0;
  int used = 0;
  CHECK(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%n", &stamp, &used) == 1);
  CHECK(used > 0 && buf[used] == '\0');
  CHECK(stamp >= before && stamp <= after);

  CHECK(mtld_notify_stopping() > 0);
  expect_msg(fd, "STOPPING=1");

  CHECK(mtld_notify_status("consumed %d events, lag %s", 42, "3s") > 0);
  expect_msg(fd, "STATUS=consumed 42 events, lag 3s");

  /* A newline in the text must not become a second assignment. */
  CHECK(mtld_notify_status("bad\nREADY=1") > 0);
  expect_msg(fd, "STATUS=bad READY=1");

  CHECK(mtld_notify_extend_timeout(90000000) > 0);
  expect_msg(fd, "EXTEND_TIMEOUT_USEC=90000000");

  CHECK(mtld_notify_watchdog() > 0);
  expect_msg(fd, "WATCHDOG=1");

  /* The watchdog belongs to another process: disabled, nothing sent. */
  setenv("WATCHDOG_PID", "1", 1);
  mtld_notify_init();
  CHECK(mtld_notify_watchdog_usec() == 0);
  CHECK(mtld_notify_watchdog() == 0);
  CHECK(recv_msg(fd, buf, sizeof(buf), 100) < 0);

  /* No watchdog configured at all. */
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  mtld_notify_init();
  CHECK(mtld_notify_watchdog_usec() == 0);

  /* Not under systemd: every call is a silent no-op. */
  unsetenv("NOTIFY_SOCKET");
  setenv("WATCHDOG_USEC", "5000000", 1);
  setenv("WATCHDOG_PID", pid, 1);
  mtld_notify_init();
  CHECK(mtld_notify_ready() == 0);
  CHECK(mtld_notify_reloading() == 0);
  CHECK(mtld_notify_stopping() == 0);
  CHECK(mtld_notify_status("x") == 0);
  CHECK(mtld_notify_extend_timeout(1) == 0);
  CHECK(mtld_notify_watchdog() == 0);
  CHECK(recv_msg(fd, buf, sizeof(buf), 100) < 0);

  close(fd);
  unlink(path);
  rmdir(dir);
  return CHECK_DONE();
}
