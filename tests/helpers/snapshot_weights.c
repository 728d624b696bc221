/* snapshot_weights.c - writes the parameter buffer of a serving snapshot
 * (a file, or a directory's LATEST) to stdout as raw float32, so tests can
 * compare two runs' weights bit for bit (the header also holds creation
 * times, which differ).
 *
 * usage: snapshot_weights SNAPSHOT_FILE_OR_DIR > weights.bin */
#include <stdio.h>

#include "durable/snapshot.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: snapshot_weights SNAPSHOT_FILE_OR_DIR\n");
    return 2;
  }
  char err[512];
  mtld_model_t *m;
  if (mtld_snapshot_load(argv[1], &m, NULL, err, sizeof(err)) != MTLD_OK) {
    fprintf(stderr, "snapshot_weights: %s\n", err);
    return 1;
  }
  float *p;
  size_t n;
  mtld_model_params(m, &p, &n);
  int ok = fwrite(p, sizeof(float), n, stdout) == n;
  mtld_model_destroy(m);
  return ok ? 0 : 1;
}
