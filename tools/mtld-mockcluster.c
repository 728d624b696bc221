/* mtld-mockcluster - librdkafka's in-process mock Kafka cluster as a program,
 * for tests: brokers on 127.0.0.1 (random ports), topics created up front,
 * the bootstrap list written to a file, brokers stopped and started through a
 * control FIFO for outage tests.  Runs until SIGTERM/SIGINT.
 *
 * Mind the mock's limits (DESIGN.md): it keeps about 5 MiB or 100,000
 * batches per partition and silently drops older messages. */
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MC_MAX_TOPICS 32

static volatile sig_atomic_t mc_stop;

static void mc_on_signal(int sig) {
  (void)sig;
  mc_stop = 1;
}

static void usage(FILE *out) {
  fprintf(out, "usage: mtld-mockcluster [--brokers N] [--topic NAME:PARTITIONS]...\n"
               "                        [--bootstrap-file PATH] [--control-fifo PATH]\n"
               "  --brokers N             brokers (default 3)\n"
               "  --topic NAME:P          create topic NAME with P partitions (repeatable;\n"
               "                          default events:8); replication min(3, brokers)\n"
               "  --bootstrap-file PATH   write the bootstrap list there (atomically, via\n"
               "                          PATH.tmp + rename); without it, print it on stdout\n"
               "  --control-fifo PATH     read commands from this FIFO (created if absent):\n"
               "                          'down N', 'up N' (broker id N), 'down-all', 'up-all'\n"
               "Runs until SIGTERM or SIGINT, then exits 0.\n");
}

static int mc_write_bootstrap(const char *path, const char *bs) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -1;
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  int ok = fprintf(f, "%s\n", bs) > 0;
  ok = (fflush(f) == 0) && ok;
  ok = (fsync(fileno(f)) == 0) && ok;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

static void mc_command(rd_kafka_mock_cluster_t *mc, int brokers, char *line) {
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
  if (!n) return;
  int id;
  char extra;
  if (strcmp(line, "down-all") == 0 || strcmp(line, "up-all") == 0) {
    int down = line[0] == 'd';
    for (int b = 1; b <= brokers; b++) {
      rd_kafka_resp_err_t e =
          down ? rd_kafka_mock_broker_set_down(mc, b) : rd_kafka_mock_broker_set_up(mc, b);
      fprintf(stderr, "mtld-mockcluster: broker %d %s: %s\n", b, down ? "down" : "up",
              rd_kafka_err2str(e));
    }
  } else if (sscanf(line, "down %d %c", &id, &extra) == 1) {
    fprintf(stderr, "mtld-mockcluster: broker %d down: %s\n", id,
            rd_kafka_err2str(rd_kafka_mock_broker_set_down(mc, id)));
  } else if (sscanf(line, "up %d %c", &id, &extra) == 1) {
    fprintf(stderr, "mtld-mockcluster: broker %d up: %s\n", id,
            rd_kafka_err2str(rd_kafka_mock_broker_set_up(mc, id)));
  } else {
    fprintf(stderr, "mtld-mockcluster: unknown command '%s' (down N, up N, down-all, up-all)\n",
            line);
  }
}

int main(int argc, char **argv) {
  int brokers = 3;
  const char *bootstrap_file = NULL, *fifo_path = NULL;
  char *topics[MC_MAX_TOPICS];
  int partitions[MC_MAX_TOPICS], n_topics = 0;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "mtld-mockcluster: %s needs a value (or is unknown)\n", a);
      usage(stderr);
      return 2;
    }
    i++;
    if (strcmp(a, "--brokers") == 0) {
      char *end;
      long b = strtol(v, &end, 10);
      if (*end || b < 1 || b > 64) {
        fprintf(stderr, "mtld-mockcluster: --brokers: 1..64\n");
        return 2;
      }
      brokers = (int)b;
    } else if (strcmp(a, "--topic") == 0) {
      const char *colon = strrchr(v, ':');
      char *end;
      long p = colon ? strtol(colon + 1, &end, 10) : 0;
      if (!colon || colon == v || *end || p < 1 || p > 10000) {
        fprintf(stderr, "mtld-mockcluster: --topic: NAME:PARTITIONS expected, got '%s'\n", v);
        return 2;
      }
      if (n_topics == MC_MAX_TOPICS) {
        fprintf(stderr, "mtld-mockcluster: at most %d topics\n", MC_MAX_TOPICS);
        return 2;
      }
      topics[n_topics] = strndup(v, (size_t)(colon - v));
      partitions[n_topics++] = (int)p;
    } else if (strcmp(a, "--bootstrap-file") == 0) {
      bootstrap_file = v;
    } else if (strcmp(a, "--control-fifo") == 0) {
      fifo_path = v;
    } else {
      fprintf(stderr, "mtld-mockcluster: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (n_topics == 0) {
    topics[0] = strdup("events");
    partitions[0] = 8;
    n_topics = 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = mc_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int rc = 1, fifo_fd = -1, fifo_wr = -1, fifo_created = 0;
  rd_kafka_mock_cluster_t *mc = NULL;
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* the handle only hosts the cluster; keep its own logging quiet */
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "mtld-mockcluster: rd_kafka_new: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    goto out_topics;
  }
  mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    fprintf(stderr, "mtld-mockcluster: cannot create a mock cluster\n");
    goto out_rk;
  }
  int repl = brokers < 3 ? brokers : 3;
  for (int t = 0; t < n_topics; t++) {
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[t], partitions[t], repl);
    if (e) {
      fprintf(stderr, "mtld-mockcluster: topic %s: %s\n", topics[t], rd_kafka_err2str(e));
      goto out_mc;
    }
    fprintf(stderr, "mtld-mockcluster: topic %s: %d partitions, replication %d\n", topics[t],
            partitions[t], repl);
  }

  if (fifo_path) {
    struct stat sb;
    if (stat(fifo_path, &sb) != 0) {
      if (mkfifo(fifo_path, 0600) != 0) {
        fprintf(stderr, "mtld-mockcluster: mkfifo %s: %s\n", fifo_path, strerror(errno));
        goto out_mc;
      }
      fifo_created = 1;
    } else if (!S_ISFIFO(sb.st_mode)) {
      fprintf(stderr, "mtld-mockcluster: %s exists and is not a FIFO\n", fifo_path);
      goto out_mc;
    }
    fifo_fd = open(fifo_path, O_RDONLY | O_NONBLOCK);
    /* our own writer keeps the FIFO from reporting EOF whenever a client closes */
    fifo_wr = fifo_fd >= 0 ? open(fifo_path, O_WRONLY | O_NONBLOCK) : -1;
    if (fifo_fd < 0 || fifo_wr < 0) {
      fprintf(stderr, "mtld-mockcluster: open %s: %s\n", fifo_path, strerror(errno));
      goto out_fifo;
    }
  }

  const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
  if (bootstrap_file) {
    if (mc_write_bootstrap(bootstrap_file, bs) != 0) {
      fprintf(stderr, "mtld-mockcluster: write %s: %s\n", bootstrap_file, strerror(errno));
      goto out_fifo;
    }
  } else {
    printf("%s\n", bs);
    fflush(stdout);
  }
  fprintf(stderr, "mtld-mockcluster: %d brokers at %s\n", brokers, bs);

  char cmd[512];
  size_t cmd_len = 0;
  while (!mc_stop) {
    if (fifo_fd < 0) {
      usleep(200 * 1000);
      continue;
    }
    struct pollfd pfd = {.fd = fifo_fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 200);
    if (pr <= 0) continue; /* timeout or EINTR: check the stop flag */
    char chunk[256];
    ssize_t got = read(fifo_fd, chunk, sizeof chunk);
    for (ssize_t i = 0; i < got; i++) {
      if (chunk[i] == '\n') {
        cmd[cmd_len] = 0;
        mc_command(mc, brokers, cmd);
        cmd_len = 0;
      } else if (cmd_len < sizeof cmd - 1) {
        cmd[cmd_len++] = chunk[i];
      }
    }
  }
  fprintf(stderr, "mtld-mockcluster: stopping\n");
  rc = 0;

out_fifo:
  if (fifo_wr >= 0) close(fifo_wr);
  if (fifo_fd >= 0) close(fifo_fd);
  if (fifo_created) unlink(fifo_path);
out_mc:
  rd_kafka_mock_cluster_destroy(mc);
out_rk:
  rd_kafka_destroy(rk);
out_topics:
  for (int t = 0; t < n_topics; t++) free(topics[t]);
  return rc;
}
