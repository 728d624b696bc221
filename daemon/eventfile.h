/* eventfile.h - event files: length-delimited protobuf or JSON lines.
 *
 * Protobuf framing is the standard "delimited" one (a base-128 varint length,
 * then the message), as protobuf's writeDelimitedTo.  JSON lines: one object
 * per line; blank lines are skipped.  Used by the file source (replay), the
 * generator and the producer tool. */
#ifndef MTLD_EVENTFILE_H
#define MTLD_EVENTFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/decode.h"
#include "common/status.h"

typedef struct mtld_eventfile mtld_eventfile_t;

/* Opens path ("-" = stdin) for reading.  fmt AUTO: JSON lines when the first
 * byte is '{' or whitespace, protobuf otherwise.  Returns MTLD_OK and *out. */
mtld_status_t mtld_eventfile_open(mtld_eventfile_t **out, const char *path, mtld_format_t fmt,
                                  char *err, size_t errlen);

/* The next record: 1 with *buf and *len (valid until the next call) and *index
 * (0-based record number = the file source's offset), 0 at end of file,
 * -1 on a framing error (truncated length or body; message in err). */
int mtld_eventfile_next(mtld_eventfile_t *f, const void **buf, size_t *len, int64_t *index,
                        char *err, size_t errlen);

/* Skips records so that the next one read has index `index` (resume).
 * Returns MTLD_OK, or MTLD_ERR_INVALID when the file is shorter. */
mtld_status_t mtld_eventfile_seek_index(mtld_eventfile_t *f, int64_t index, char *err,
                                        size_t errlen);

/* The format detected or given. */
mtld_format_t mtld_eventfile_format(const mtld_eventfile_t *f);

void mtld_eventfile_close(mtld_eventfile_t *f);

/* Appends one record in the given format (PROTOBUF: varint length + body;
 * JSON: body + '\n').  Returns MTLD_OK, MTLD_ERR_IO, or MTLD_ERR_INVALID for
 * AUTO, a body over 64 MiB (readers refuse it) or a JSON body with a newline. */
mtld_status_t mtld_eventfile_write(FILE *out, mtld_format_t fmt, const void *buf, size_t len);

#endif
