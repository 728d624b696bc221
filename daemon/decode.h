/* decode.h - record bytes -> mtld_event_t, and validation with reason codes.
 *
 * Formats: protobuf mtld.Event (schemas/event.proto) or one JSON object with
 * the same field names (ids as numbers or strings; type as name or number).
 * Every rejection has a reason code; its name is the metric label
 * (mtld_events_rejected_total{reason="..."}) and the dead-letter header.
 *
 * Attributes: protobuf `repeated Attr attrs`; JSON `"attrs"` either as an
 * object {"name": "string value" | number | null} or, like the protobuf
 * mapping, as an array of {"name" | "name_id", "str" | "num" | "id"}
 * objects.  A string value is categorical, a number numeric; names and
 * string values are hashed with mtld_hash_id().  A null, empty-string or id-0
 * value means absent (the attribute is dropped). */
#ifndef MTLD_DECODE_H
#define MTLD_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "features/event.h"

typedef enum {
  MTLD_REJECT_NONE = 0,
  MTLD_REJECT_UNDECODABLE,  /* "undecodable": not protobuf/JSON, wrong field types */
  MTLD_REJECT_MISSING_ID,   /* "missing_id": event, user or item id absent */
  MTLD_REJECT_UNKNOWN_TYPE, /* "unknown_type" */
  MTLD_REJECT_NOT_FINITE,   /* "not_finite": NaN or inf in price/rating */
  MTLD_REJECT_BAD_RATING,   /* "bad_rating": REVIEW without rating in 1..5, or rating on other types
                             */
  MTLD_REJECT_NEGATIVE,     /* "negative_value": negative price, quantity or position */
  MTLD_REJECT_TOO_LARGE,    /* "too_large": record over max bytes, scenario over 31 bytes */
  MTLD_REJECT_BAD_TIME,     /* "bad_time": missing time, or far ahead of the stream */
  MTLD_REJECT_TOO_LATE,     /* "too_late": behind the watermark by more than allowed */
  MTLD_REJECT_DUPLICATE,    /* "duplicate": an event with this id and time was applied already
                               (the pipeline's check, not mtld_validate_event's) */
  MTLD_REJECT_BAD_ATTR,     /* "bad_attr": more than MTLD_ATTR_MAX attributes, an empty or
                               duplicate name, a name or string value over its limit
                               (common/limits.h); a NaN/inf numeric value is not_finite */
  MTLD_REJECT_COUNT
} mtld_reject_t;

typedef enum { MTLD_FMT_AUTO = 0, MTLD_FMT_PROTOBUF, MTLD_FMT_JSON } mtld_format_t;

/* Snake-case name of a reason ("undecodable", ...); "none" for NONE. */
const char *mtld_reject_name(mtld_reject_t r);

/* Parses "auto", "protobuf", "json".  Returns -1 when unknown. */
int mtld_format_parse(const char *s);

/* Decodes one record.  AUTO: JSON when the first non-blank byte is '{',
 * protobuf otherwise.  Records longer than max_bytes are TOO_LARGE without
 * being parsed.  Returns NONE and fills *ev, or a reason and a message in
 * err.  Does not validate values (see mtld_validate_event).  Any thread. */
mtld_reject_t mtld_decode_event(const void *buf, size_t len, mtld_format_t fmt, size_t max_bytes,
                                mtld_event_t *ev, char *err, size_t errlen);

/* Validation limits (config group `validation`). */
typedef struct {
  size_t max_record_bytes; /* default 65536 */
  int64_t max_lateness_ms; /* behind the watermark; default 86400000 (1 day) */
  int64_t max_ahead_ms;    /* ahead of the newest time seen; 0 = off (default) */
  int dedup;               /* reject events applied already (daemon/pipeline.c); default 1 */
} mtld_validate_limits_t;

void mtld_validate_limits_default(mtld_validate_limits_t *lim);

/* Checks a decoded event's values.  watermark_ms: current watermark (INT64_MIN
 * when none yet); newest_ms: newest event time seen so far (INT64_MIN when
 * none).  Returns NONE or the reason (message in err).  Any thread. */
mtld_reject_t mtld_validate_event(const mtld_event_t *ev, const mtld_validate_limits_t *lim,
                                  int64_t watermark_ms, int64_t newest_ms, char *err,
                                  size_t errlen);

/* Encodes an event as protobuf (for the generator and producer tools).
 * Attributes are written hashed (Attr.name_id, Attr.id or Attr.num), which
 * decodes back to the same event.  Returns the length, or 0 if cap is too
 * small. */
size_t mtld_encode_event_pb(const mtld_event_t *ev, void *buf, size_t cap);

/* Encodes an event as one JSON object line (no newline); attributes in the
 * hashed array form ("attrs":[{"name_id":N,"id":V},{"name_id":N,"num":x}]).
 * Returns the length written (excluding NUL), or 0 if cap is too small. */
size_t mtld_encode_event_json(const mtld_event_t *ev, char *buf, size_t cap);

#endif
