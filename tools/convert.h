/* convert.h - CSV datasets -> mtld events (the converters of mtld-produce).
 *
 * Every layout is one column mapping (the generic mapping of `--map`) plus
 * defaults; a --map given with a layout overrides single keys of its mapping.
 *
 *   taobao      Tianchi UserBehavior: user_id,item_id,category_id,behavior,
 *               unix_seconds, no header.  pv->CLICK, cart->ADD_TO_CART,
 *               buy->PURCHASE; fav is skipped (counted).  Scenario "taobao".
 *   amazon      McAuley ratings: UserId,ProductId,Rating,Timestamp (header,
 *               seconds): one REVIEW per row; user and product ids are string
 *               keys (hashed, see features/event.h).  Scenario "amazon".
 *   aliccp      Ali-CCP sample rows (header click,purchase,101,...,301,...):
 *               user=101, item=205, category=206, scenario "aliccp_<301>".
 *   aliexpress  AliExpress sample rows (search_id,categorical_1..16,
 *               numerical_1..63,click,conversion).  The release has no user or
 *               item id: user = search_id (one query session), item = the
 *               item-side categoricals 10..16 combined (a proxy that varies
 *               within a search).  No country column: scenario "aliexpress"
 *               unless --scenario names the country of the file.
 *   generic     only the --map mapping.
 *
 * Sample-level rows (click=/purchase= mapped: aliccp, aliexpress) become an
 * IMPRESSION (its request id = its own event id), plus a CLICK 100 ms later
 * when click=1, plus a PURCHASE 200 ms later when purchase=1 (both linked by
 * request id).  Those releases carry no time: rows without a time column get
 * the synthetic time base_ms + row_index * 1000 (row_index = 0-based data
 * row), so a file replays in its row order, one row per second.
 *
 * Mapping keys (--map 'k=v,k=v'): user item category type time time_unit
 * time_offset time_offset_unit tz scenario scenario_prefix rating price
 * quantity position request id click purchase header sep ids null, and
 * attr.NAME (a named attribute, at most 16: attr.NAME=COLUMN is categorical,
 * the text hashed; attr.NAME=num:COLUMN numeric; a bad number, or a value
 * over MTLD_ATTR_VALUE_LEN bytes, rejects the row as bad_number; an empty
 * or null value leaves it out).  A column is a header name or a 1-based
 * index (the name wins when the header has such a column); COL+COL combines
 * columns into one hashed id; const:VALUE gives a constant (type, scenario,
 * category).  time_unit: s (default) | ms | us | iso (2014-04-07T10:51:09.277Z)
 * | date (YYYY-MM-DD).  time_offset: a column added to the time (Diginetica:
 * time=eventdate,time_unit=date,time_offset=timeframe), in time_offset_unit
 * s | ms (default) | us.  tz: the zone of iso/date times that carry no
 * offset of their own: Z | UTC (default) | +hh:mm | -hh:mm.
 * null: values read as "no value", '|'-separated (default
 * NA|N/A|NULL|null|None|\N|nan|NaN; "null=" leaves only the empty text);
 * a user or item that is null rejects the row as null_id, a null rating
 * or price is absent.  ids: auto (decimal > 0 -> that number, else the text
 * hashed as a string key) | hash (always hashed).  sep: one character, or
 * comma|tab|semicolon|pipe|space; "sep=," works at the end of a map.
 * Type map (--type-map 'pv=CLICK,fav=skip'): raw type value -> type name or
 * "skip"; values not in the map are parsed as type names (CLICK, ...).
 *
 * Records follow RFC 4180: a quoted field may hold the separator, doubled
 * quotes and newlines (read with mtld_conv_read_record); counts are per
 * record.
 *
 * Event ids: the id column when mapped, else XXH64 of "<rec>#<k>#<row text>"
 * (rec = 1-based record number; "<input>:<rec>" for the second and later
 * inputs; k = 0 impression/event, 1 click, 2 purchase), so the same file
 * converts to the same ids and a replayed file is recognised as a
 * duplicate.
 *
 * Optional time bounds (time_from_ms, time_to_ms) reject rows outside them,
 * e.g. the few Taobao rows outside the documented 2017-11-25..12-03 range.
 *
 * Rows that cannot be converted are counted per reason (names below), the
 * first few kept as examples; never dropped silently.  Thread: a converter
 * is used by one thread. */
#ifndef MTLD_CONVERT_H
#define MTLD_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "features/event.h"
#include "common/status.h"

#define MTLD_CONV_DEFAULT_BASE_MS INT64_C(1704067200000) /* 2024-01-01T00:00:00Z */

typedef struct {
  const char *layout;   /* "taobao" "amazon" "aliccp" "aliexpress" "generic" */
  const char *map;      /* mapping keys (required for generic); NULL = none */
  const char *type_map; /* extra type mappings, searched before the layout's */
  const char *scenario; /* overrides the scenario with a constant; NULL = layout's */
  int64_t base_ms;      /* synthetic-time origin; 0 = MTLD_CONV_DEFAULT_BASE_MS */
  int64_t time_from_ms; /* rows before this time are rejected (time_out_of_range); 0 = no bound */
  int64_t time_to_ms;   /* rows at or after this time are rejected; 0 = no bound */
} mtld_conv_opts_t;

/* Why a row was not converted. */
typedef enum {
  MTLD_CONV_BAD_CSV = 0,          /* "bad_csv": unterminated quote */
  MTLD_CONV_BAD_COLUMNS,          /* "too_few_columns" */
  MTLD_CONV_BAD_MISSING_ID,       /* "missing_id": empty user or item */
  MTLD_CONV_BAD_TIME,             /* "bad_time": unparsable or <= 0 */
  MTLD_CONV_BAD_TYPE,             /* "unknown_type": not in the type map, not a type name */
  MTLD_CONV_BAD_RATING,           /* "bad_rating": REVIEW without rating */
  MTLD_CONV_BAD_NUMBER,           /* "bad_number": unparsable rating/price/quantity/position */
  MTLD_CONV_BAD_LABEL,            /* "bad_label": click/purchase not 0 or 1 */
  MTLD_CONV_BAD_PURCHASE_NOCLICK, /* "purchase_without_click" */
  MTLD_CONV_BAD_SCENARIO,         /* "scenario_too_long": over 31 bytes */
  MTLD_CONV_BAD_TIME_RANGE,       /* "time_out_of_range": outside [time_from, time_to) */
  MTLD_CONV_BAD_NULL_ID,          /* "null_id": user or item is a null marker (NA, NULL, ...) */
  MTLD_CONV_BAD_COUNT
} mtld_conv_bad_t;

typedef struct {
  int64_t lines;     /* physical lines read (a quoted field may hold newlines) */
  int64_t rows;      /* data records (header and blank lines excluded) */
  int64_t converted; /* rows that gave events */
  int64_t skipped;   /* rows whose type maps to "skip" (e.g. taobao fav) */
  int64_t bad;       /* rows rejected, sum over reasons */
  int64_t events;    /* events emitted */
  int64_t bad_by_reason[MTLD_CONV_BAD_COUNT];
} mtld_conv_stats_t;

typedef struct mtld_conv mtld_conv_t;

/* Receives each event of a converted row, in row order. */
typedef void (*mtld_conv_emit_fn)(void *ctx, const mtld_event_t *ev);

/* Builds a converter.  Returns MTLD_ERR_INVALID (message in err) for an
 * unknown layout or a malformed map / type map. */
mtld_status_t mtld_conv_new(mtld_conv_t **out, const mtld_conv_opts_t *opts, char *err,
                            size_t errlen);

/* Converts one record (a line, or several when a quoted field holds
 * newlines; trailing newline characters are ignored).  The
 * first line of a file with a header is taken as the header.  Calls emit for
 * each event (0..3).  A row that cannot be converted is counted, not an
 * error: returns MTLD_OK.  MTLD_ERR_INVALID only when the mapping cannot be
 * applied at all (a mapped column absent from the header), with err. */
mtld_status_t mtld_conv_line(mtld_conv_t *c, const char *line, size_t len, mtld_conv_emit_fn emit,
                             void *ctx, char *err, size_t errlen);

/* Reads one CSV record from in into *buf (grown with realloc; the caller
 * frees it): a physical line, plus the lines after it while a quoted field
 * (RFC 4180: a field that starts with '"'; "" inside is a quote) is still
 * open, up to 1 MiB.  Returns its length in bytes (newlines included), 0 at
 * the end of the input, -1 on a read error (errno), -2 when out of memory. */
ssize_t mtld_conv_read_record(const mtld_conv_t *c, FILE *in, char **buf, size_t *cap);

/* Starts the next input of the same conversion (several --csv files): its
 * first line is a header again when the mapping has one; counts, the
 * synthetic-time row index and the bad-row examples go on.  Event ids of
 * the second and later inputs include the input's index, so equal rows of
 * two files stay two events. */
void mtld_conv_next_file(mtld_conv_t *c);

/* Converts a whole stream into a malloc'ed array (*events, caller frees),
 * sorted by time (stable: ties keep row order) when sort is non-zero.
 * Returns MTLD_OK, MTLD_ERR_INVALID (mapping) or MTLD_ERR_NOMEM. */
mtld_status_t mtld_conv_read_all(mtld_conv_t *c, FILE *in, int sort, mtld_event_t **events,
                                 size_t *n, char *err, size_t errlen);

/* Stable sort by time_ms (merge sort). */
mtld_status_t mtld_conv_sort_events(mtld_event_t *ev, size_t n);

void mtld_conv_stats(const mtld_conv_t *c, mtld_conv_stats_t *st);

/* Rows skipped because their raw type value maps to "skip" ("fav"). */
int64_t mtld_conv_skipped_count(const mtld_conv_t *c, const char *value);

/* "bad_csv", ... */
const char *mtld_conv_bad_name(mtld_conv_bad_t r);

/* Prints the counts, reasons and the first few bad rows (to a log stream). */
void mtld_conv_report(const mtld_conv_t *c, FILE *out);

void mtld_conv_free(mtld_conv_t *c);

/* Parses an ISO-8601 UTC time "YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+hh:mm|-hh:mm]"
 * (' ' may replace 'T') into ms since the epoch.  Returns 0 on success, -1
 * when malformed.  Used for --start-ms too. */
int mtld_conv_parse_iso_ms(const char *s, size_t len, int64_t *ms);

#endif
