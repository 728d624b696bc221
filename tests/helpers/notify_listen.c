/* notify_listen.c - the systemd side of sd_notify, for tests: binds an
 * AF_UNIX datagram socket at PATH (what NOTIFY_SOCKET names) and prints every
 * datagram it receives on one line of stdout, flushed at once, until killed.
 * A datagram holding several assignments ("RELOADING=1\nMONOTONIC_USEC=...")
 * is printed with its newlines turned into spaces, so each notification is
 * one line a test can grep ("^READY=1$", "^STATUS=").
 *
 * usage: notify_listen PATH      (PATH is removed first if it exists)
 * exit: 2 on a usage, socket or bind error; otherwise runs until a signal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: notify_listen PATH\n");
    return 2;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
    fprintf(stderr, "notify_listen: path longer than %zu bytes\n", sizeof(addr.sun_path) - 1);
    return 2;
  }
  strcpy(addr.sun_path, argv[1]);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "notify_listen: socket: %s\n", strerror(errno));
    return 2;
  }
  unlink(argv[1]);
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    fprintf(stderr, "notify_listen: bind %s: %s\n", argv[1], strerror(errno));
    return 2;
  }
  char buf[8192]; /* sd_notify messages are far shorter (STATUS= <= 1 KiB here) */
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "notify_listen: recv: %s\n", strerror(errno));
      return 2;
    }
    while (n > 0 && buf[n - 1] == '\n') n--; /* a trailing newline ends no assignment */
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == '\n' || buf[i] == 0) buf[i] = ' ';
    printf("%s\n", buf);
    fflush(stdout);
  }
}
