/* sampledump.h - a file of raw training samples, as the daemon released them
 * to the trainer (config trainer.dump_samples), for offline scoring and
 * comparisons (tools/mtld-score --samples, tools/mtld_reader.py).
 *
 * Layout: a 16-byte header "MTLDSMP1" | u32 version (1) | u32 record size
 * (sizeof(mtld_sample_t)), then raw mtld_sample_t records in host byte order
 * (little-endian on every platform mtld runs on), back to back.  A reader
 * refuses another version or record size.  Appending is the only write, so a
 * file cut short by a crash holds whole records plus at most one partial
 * one, which readers ignore. */
#ifndef MTLD_SAMPLEDUMP_H
#define MTLD_SAMPLEDUMP_H

#include <stdio.h>

#include "trainer/sample.h"
#include "common/status.h"

#define MTLD_SAMPLEDUMP_MAGIC "MTLDSMP1"
#define MTLD_SAMPLEDUMP_VERSION                                                                    \
  3u /* 2: samples carry a fifth label (review); 3: a sixth (demand) and naive[2] */
#define MTLD_SAMPLEDUMP_HEADER_LEN 16

/* Writes the header at the current position of f.  MTLD_OK or MTLD_ERR_IO. */
mtld_status_t mtld_sampledump_write_header(FILE *f);

/* Appends one sample.  MTLD_OK or MTLD_ERR_IO. */
mtld_status_t mtld_sampledump_write(FILE *f, const mtld_sample_t *s);

/* Reads and checks the header.  MTLD_OK, MTLD_ERR_CORRUPT (not a sample
 * dump, other version or record size; err says which) or MTLD_ERR_IO. */
mtld_status_t mtld_sampledump_read_header(FILE *f, char *err, size_t errlen);

/* Reads the next sample: 1, 0 at the end (a trailing partial record counts
 * as the end), -1 on a read error. */
int mtld_sampledump_read(FILE *f, mtld_sample_t *s);

/* Reads the whole dump at path into a malloc'd array (the caller frees it)
 * and sets *n.  NULL with err filled when the file cannot be opened, is not
 * a sample dump, fails to read, or memory runs out. */
mtld_sample_t *mtld_sampledump_load(const char *path, size_t *n, char *err, size_t errlen);

#endif
