/* sampledump.c - raw sample files (see sampledump.h). */
#include "trainer/sampledump.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

mtld_status_t mtld_sampledump_write_header(FILE *f) {
  unsigned char h[MTLD_SAMPLEDUMP_HEADER_LEN];
  uint32_t version = MTLD_SAMPLEDUMP_VERSION, size = (uint32_t)sizeof(mtld_sample_t);
  memcpy(h, MTLD_SAMPLEDUMP_MAGIC, 8);
  memcpy(h + 8, &version, 4);
  memcpy(h + 12, &size, 4);
  return fwrite(h, 1, sizeof h, f) == sizeof h ? MTLD_OK : MTLD_ERR_IO;
}

mtld_status_t mtld_sampledump_write(FILE *f, const mtld_sample_t *s) {
  return fwrite(s, sizeof(*s), 1, f) == 1 ? MTLD_OK : MTLD_ERR_IO;
}

mtld_status_t mtld_sampledump_read_header(FILE *f, char *err, size_t errlen) {
  unsigned char h[MTLD_SAMPLEDUMP_HEADER_LEN];
  size_t n = fread(h, 1, sizeof h, f);
  if (n != sizeof h) {
    snprintf(err, errlen, ferror(f) ? "sample dump: read error" : "sample dump: no header");
    return ferror(f) ? MTLD_ERR_IO : MTLD_ERR_CORRUPT;
  }
  uint32_t version, size;
  memcpy(&version, h + 8, 4);
  memcpy(&size, h + 12, 4);
  if (memcmp(h, MTLD_SAMPLEDUMP_MAGIC, 8) != 0) {
    snprintf(err, errlen, "sample dump: bad magic (not a sample dump)");
    return MTLD_ERR_CORRUPT;
  }
  if (version != MTLD_SAMPLEDUMP_VERSION || size != sizeof(mtld_sample_t)) {
    snprintf(err, errlen, "sample dump: version %u with %u-byte records; this build reads %u, %zu",
             version, size, MTLD_SAMPLEDUMP_VERSION, sizeof(mtld_sample_t));
    return MTLD_ERR_CORRUPT;
  }
  return MTLD_OK;
}

int mtld_sampledump_read(FILE *f, mtld_sample_t *s) {
  size_t n = fread(s, 1, sizeof(*s), f);
  if (n == sizeof(*s)) return 1;
  return ferror(f) ? -1 : 0;
}

mtld_sample_t *mtld_sampledump_load(const char *path, size_t *n, char *err, size_t errlen) {
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char herr[256];
  if (mtld_sampledump_read_header(f, herr, sizeof(herr)) != MTLD_OK) {
    snprintf(err, errlen, "%s: %s", path, herr);
    fclose(f);
    return NULL;
  }
  size_t cap = 1 << 16, len = 0;
  mtld_sample_t *s = malloc(sizeof(*s) * cap);
  int r = 1;
  while (s && r == 1) {
    if (len == cap) {
      mtld_sample_t *ns = realloc(s, sizeof(*s) * cap * 2);
      if (!ns) {
        free(s);
        s = NULL;
        break;
      }
      s = ns;
      cap *= 2;
    }
    r = mtld_sampledump_read(f, &s[len]);
    if (r == 1) len++;
  }
  fclose(f);
  if (!s || r != 0) {
    snprintf(err, errlen, "%s: %s", path, s ? "read error" : "out of memory");
    free(s);
    return NULL;
  }
  *n = len;
  return s;
}
