/* status.h - the one status type of mtld, shared by every subsystem.
 *
 * It lives in common/, the room of helpers every layer may include.  Errors
 * come with a caller-provided text buffer (char *err, size_t errlen), as
 * librdkafka's errstr. */
#ifndef MTLD_STATUS_H
#define MTLD_STATUS_H

typedef enum {
  MTLD_OK = 0,
  MTLD_ERR_INVALID = -1, /* bad argument or input: fatal for that input */
  MTLD_ERR_IO = -2,      /* file or database I/O failed: retriable or fatal */
  MTLD_ERR_NOMEM = -3,   /* allocation failed: fatal */
  MTLD_ERR_CONFIG = -4,  /* configuration error: fatal at start, refused on reload */
  MTLD_ERR_SCHEMA = -5,  /* state written with other definitions: fatal */
  MTLD_ERR_CORRUPT = -6, /* checksum/format mismatch in a file we wrote */
  MTLD_ERR_RETRY = -7,   /* transient (broker down, queue full): try again */
  MTLD_ERR_NOTFOUND = -8 /* key or file absent (not an error for lookups) */
} mtld_status_t;

/* Returns a static text naming the status.  Any thread. */
const char *mtld_status_str(mtld_status_t st);

#endif
