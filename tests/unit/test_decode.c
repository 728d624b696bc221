/* test_decode.c - decoding (protobuf and JSON), validation reasons, encoders. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/decode.h"
#include "schemas/event.pb-c.h"
#include "tests/unit/check.h"

#define T0 INT64_C(1700000000000) /* 2023-11-14 */
#define NOW INT64_MIN             /* no watermark / newest time yet */

static mtld_validate_limits_t lim;
static char err[256];

static mtld_event_t make_event(int type) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = 1001;
  ev.user_id = 42;
  ev.item_id = 7;
  ev.category_id = 3;
  ev.request_id = 555;
  ev.time_ms = T0;
  ev.type = type;
  ev.position = 2;
  ev.price = 19.99;
  ev.quantity = type == MTLD_EV_PURCHASE ? 2 : 0;
  ev.rating = type == MTLD_EV_REVIEW ? 4.5f : 0;
  strcpy(ev.scenario, "home/feed");
  ev.scenario_id = mtld_hash_id("home/feed", 9);
  return ev;
}

static int same_event(const mtld_event_t *a, const mtld_event_t *b) {
  return a->event_id == b->event_id && a->user_id == b->user_id && a->item_id == b->item_id &&
         a->category_id == b->category_id && a->request_id == b->request_id &&
         a->scenario_id == b->scenario_id && a->time_ms == b->time_ms && a->type == b->type &&
         a->position == b->position && a->quantity == b->quantity && a->rating == b->rating &&
         a->price == b->price && strcmp(a->scenario, b->scenario) == 0;
}

/* Decodes a NUL-free copy of s (exact length) as JSON: a read past the end is an ASan error. */
static mtld_reject_t dec_json(const char *s, mtld_event_t *ev) {
  size_t n = strlen(s);
  char *copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  mtld_reject_t r =
      mtld_decode_event(copy, n, MTLD_FMT_JSON, lim.max_record_bytes, ev, err, sizeof err);
  free(copy);
  return r;
}

/* Decodes then validates (no watermark). */
static mtld_reject_t json_reason(const char *s) {
  mtld_event_t ev;
  mtld_reject_t r = dec_json(s, &ev);
  return r ? r : mtld_validate_event(&ev, &lim, NOW, NOW, err, sizeof err);
}

static mtld_reject_t pb_reason(const Mtld__Event *m) {
  uint8_t buf[4096];
  size_t n = mtld__event__pack(m, buf);
  mtld_event_t ev;
  mtld_reject_t r =
      mtld_decode_event(buf, n, MTLD_FMT_PROTOBUF, lim.max_record_bytes, &ev, err, sizeof err);
  return r ? r : mtld_validate_event(&ev, &lim, NOW, NOW, err, sizeof err);
}

static Mtld__Event pb_valid(void) {
  Mtld__Event m = MTLD__EVENT__INIT;
  m.event_case = MTLD__EVENT__EVENT_EVENT_ID, m.event_id = 1;
  m.user_case = MTLD__EVENT__USER_USER_ID, m.user_id = 2;
  m.item_case = MTLD__EVENT__ITEM_ITEM_ID, m.item_id = 3;
  m.type = MTLD__EVENT_TYPE__CLICK;
  m.time_ms = T0;
  return m;
}

static void test_names(void) {
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_NONE), "none") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_UNDECODABLE), "undecodable") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_MISSING_ID), "missing_id") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_UNKNOWN_TYPE), "unknown_type") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_NOT_FINITE), "not_finite") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_BAD_RATING), "bad_rating") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_NEGATIVE), "negative_value") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_TOO_LARGE), "too_large") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_BAD_TIME), "bad_time") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_TOO_LATE), "too_late") == 0);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_COUNT), "unknown") == 0);
  for (int i = 0; i < MTLD_REJECT_COUNT; i++)
    for (int j = i + 1; j < MTLD_REJECT_COUNT; j++)
      CHECK(strcmp(mtld_reject_name((mtld_reject_t)i), mtld_reject_name((mtld_reject_t)j)) != 0);
  CHECK(mtld_format_parse("auto") == MTLD_FMT_AUTO);
  CHECK(mtld_format_parse("protobuf") == MTLD_FMT_PROTOBUF);
  CHECK(mtld_format_parse("JSON") == MTLD_FMT_JSON);
  CHECK(mtld_format_parse("xml") == -1);
  CHECK(mtld_format_parse("") == -1);
}

static void test_round_trip(void) {
  uint8_t pb[1024];
  char js[1024];
  for (int type = 1; type <= 5; type++) {
    mtld_event_t ev = make_event(type), out;
    if (type == 3) { /* extremes */
      ev.event_id = UINT64_MAX;
      ev.user_id = (uint64_t)1 << 63;
      ev.item_id = 1;
      ev.category_id = 0;
      ev.request_id = 0;
      ev.price = 1e-300;
      ev.position = INT32_MAX;
      ev.quantity = INT32_MAX;
      ev.time_ms = INT64_C(4102444800000);
      strcpy(ev.scenario, "a\"b\\c\nd\te/\x01 \xc3\xa9xxxxxxxxxxxxxxxxx"); /* 31 bytes */
      CHECK(strlen(ev.scenario) == 31);
      ev.scenario_id = mtld_hash_id(ev.scenario, strlen(ev.scenario));
    }
    if (type == 4) ev.price = 0.1 + 0.2; /* needs 17 digits */
    if (type == 5) ev.rating = 4.0f / 3.0f;

    size_t n = mtld_encode_event_pb(&ev, pb, sizeof pb);
    CHECK(n > 0);
    CHECK(mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, 65536, &out, err, sizeof err) ==
          MTLD_REJECT_NONE);
    CHECK(same_event(&ev, &out));
    CHECK(mtld_decode_event(pb, n, MTLD_FMT_AUTO, 65536, &out, err, sizeof err) ==
          MTLD_REJECT_NONE);
    CHECK(same_event(&ev, &out));
    CHECK(mtld_validate_event(&out, &lim, NOW, NOW, err, sizeof err) == MTLD_REJECT_NONE);

    n = mtld_encode_event_json(&ev, js, sizeof js);
    CHECK(n > 0 && n == strlen(js));
    CHECK(strchr(js, '\n') == NULL);
    CHECK(dec_json(js, &out) == MTLD_REJECT_NONE);
    CHECK(same_event(&ev, &out));
    CHECK(mtld_decode_event(js, n, MTLD_FMT_AUTO, 65536, &out, err, sizeof err) ==
          MTLD_REJECT_NONE);
    CHECK(same_event(&ev, &out));
    if (type == 2) CHECK(strstr(js, "\"type\":\"CLICK\"") != NULL);
    if (type != 5) CHECK(strstr(js, "rating") == NULL);
    if (type == 5) CHECK(strstr(js, "\"rating\":") != NULL);
    if (type == 1) CHECK(strstr(js, "\"price\":19.99}") != NULL); /* shortest form */
  }
  /* Non-finite values survive both encodings (for dead-letter tooling). */
  mtld_event_t ev = make_event(MTLD_EV_CLICK), out;
  ev.price = NAN;
  ev.rating = -INFINITY;
  size_t n = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(n > 0 && strstr(js, "NaN") && strstr(js, "-Infinity"));
  CHECK(dec_json(js, &out) == MTLD_REJECT_NONE);
  CHECK(isnan(out.price) && isinf(out.rating) && out.rating < 0);
  n = mtld_encode_event_pb(&ev, pb, sizeof pb);
  CHECK(mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, 65536, &out, err, sizeof err) == 0);
  CHECK(isnan(out.price) && isinf(out.rating));

  /* The float extremes: printed as 3.4028235e+38, which as a double is just
   * above FLT_MAX and must round back to it (found by the fuzzer). */
  ev = make_event(MTLD_EV_CLICK);
  ev.rating = -FLT_MAX;
  n = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(dec_json(js, &out) == MTLD_REJECT_NONE && out.rating == -FLT_MAX);
  ev.rating = FLT_TRUE_MIN;
  n = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(dec_json(js, &out) == MTLD_REJECT_NONE && out.rating == FLT_TRUE_MIN);

  /* An unknown type number is carried as a number. */
  ev = make_event(9);
  n = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(strstr(js, "\"type\":9") != NULL);
  CHECK(dec_json(js, &out) == MTLD_REJECT_NONE && out.type == 9);
  n = mtld_encode_event_pb(&ev, pb, sizeof pb);
  CHECK(mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, 65536, &out, err, sizeof err) == 0);
  CHECK(out.type == 9);
}

static void test_encode_cap(void) {
  mtld_event_t ev = make_event(MTLD_EV_REVIEW);
  uint8_t pb[512];
  char js[512];
  size_t npb = mtld_encode_event_pb(&ev, pb, sizeof pb);
  size_t njs = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(npb > 0 && njs > 0);
  int bad = 0;
  for (size_t cap = 0; cap < npb; cap++) {
    uint8_t *b = malloc(cap ? cap : 1); /* exact size: an overflow is an ASan error */
    if (mtld_encode_event_pb(&ev, b, cap) != 0) bad++;
    free(b);
  }
  for (size_t cap = 0; cap <= njs; cap++) { /* njs + 1 is needed for the NUL */
    char *b = malloc(cap ? cap : 1);
    if (mtld_encode_event_json(&ev, b, cap) != 0) bad++;
    free(b);
  }
  CHECK(bad == 0);
  CHECK(mtld_encode_event_pb(&ev, pb, npb) == npb);
  CHECK(mtld_encode_event_json(&ev, js, njs + 1) == njs);
}

static void test_pb_ids(void) {
  Mtld__Event m = pb_valid();
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);

  /* string ids are hashed with mtld_hash_id */
  m.event_case = MTLD__EVENT__EVENT_EVENT_KEY, m.event_key = "evt-1";
  m.user_case = MTLD__EVENT__USER_USER_KEY, m.user_key = "user-42";
  m.item_case = MTLD__EVENT__ITEM_ITEM_KEY, m.item_key = "sku-9";
  m.category_case = MTLD__EVENT__CATEGORY_CATEGORY_KEY, m.category_key = "shoes";
  m.request_case = MTLD__EVENT__REQUEST_REQUEST_KEY, m.request_key = "req-7";
  m.scenario = "DE";
  uint8_t buf[512];
  size_t n = mtld__event__pack(&m, buf);
  mtld_event_t ev;
  CHECK(mtld_decode_event(buf, n, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) == 0);
  CHECK(ev.event_id == mtld_hash_id("evt-1", 5));
  CHECK(ev.user_id == mtld_hash_id("user-42", 7));
  CHECK(ev.item_id == mtld_hash_id("sku-9", 5));
  CHECK(ev.category_id == mtld_hash_id("shoes", 5));
  CHECK(ev.request_id == mtld_hash_id("req-7", 5));
  CHECK(strcmp(ev.scenario, "DE") == 0 && ev.scenario_id == mtld_hash_id("DE", 2));

  /* the same string ids in JSON hash the same */
  mtld_event_t ej;
  CHECK(dec_json("{\"event_id\":\"evt-1\",\"type\":\"click\",\"user_id\":\"user-42\","
                 "\"item_id\":\"sku-9\",\"category_id\":\"shoes\",\"request_id\":\"req-7\","
                 "\"scenario\":\"DE\",\"time_ms\":1700000000000}",
                 &ej) == MTLD_REJECT_NONE);
  CHECK(same_event(&ev, &ej));

  /* missing ids: unset, integer 0, empty string */
  m = pb_valid();
  m.event_case = MTLD__EVENT__EVENT__NOT_SET;
  CHECK(pb_reason(&m) == MTLD_REJECT_MISSING_ID && strstr(err, "event_id"));
  m = pb_valid();
  m.user_id = 0;
  CHECK(pb_reason(&m) == MTLD_REJECT_MISSING_ID && strstr(err, "user_id"));
  m = pb_valid();
  m.item_case = MTLD__EVENT__ITEM_ITEM_KEY, m.item_key = "";
  CHECK(pb_reason(&m) == MTLD_REJECT_MISSING_ID && strstr(err, "item_id"));
  m = pb_valid(); /* optional ones may be absent */
  m.category_case = MTLD__EVENT__CATEGORY__NOT_SET;
  m.request_case = MTLD__EVENT__REQUEST__NOT_SET;
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
}

static void test_pb_reasons(void) {
  Mtld__Event m = pb_valid();
  m.type = 0;
  CHECK(pb_reason(&m) == MTLD_REJECT_UNKNOWN_TYPE && strstr(err, "type 0"));
  m.type = (Mtld__EventType)77; /* open enum: decodes, validation refuses */
  CHECK(pb_reason(&m) == MTLD_REJECT_UNKNOWN_TYPE && strstr(err, "77"));
  m = pb_valid();
  m.price = NAN;
  CHECK(pb_reason(&m) == MTLD_REJECT_NOT_FINITE && strstr(err, "price"));
  m = pb_valid();
  m.type = MTLD__EVENT_TYPE__REVIEW, m.rating = INFINITY;
  CHECK(pb_reason(&m) == MTLD_REJECT_NOT_FINITE && strstr(err, "rating"));
  m = pb_valid();
  m.price = -1.5;
  CHECK(pb_reason(&m) == MTLD_REJECT_NEGATIVE && strstr(err, "price") && strstr(err, "-1.5"));
  m = pb_valid();
  m.quantity = -2;
  CHECK(pb_reason(&m) == MTLD_REJECT_NEGATIVE && strstr(err, "quantity"));
  m = pb_valid();
  m.position = -1;
  CHECK(pb_reason(&m) == MTLD_REJECT_NEGATIVE && strstr(err, "position"));
  m = pb_valid();
  m.type = MTLD__EVENT_TYPE__REVIEW;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_RATING); /* REVIEW without rating */
  m.rating = 6;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_RATING && strstr(err, "6"));
  m.rating = 0.5f;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_RATING);
  m.rating = 1;
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  m.rating = 5;
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  m = pb_valid();
  m.rating = 3; /* a rating on a CLICK */
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_RATING && strstr(err, "CLICK"));
  m = pb_valid();
  m.time_ms = 0;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_TIME && strstr(err, "time_ms"));
  m.time_ms = -5;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_TIME);
  m.time_ms = T0 * 1000; /* microseconds by mistake */
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_TIME && strstr(err, "2100"));

  /* scenario: 31 bytes fit, 32 are too large */
  m = pb_valid();
  m.scenario = "0123456789012345678901234567890";
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  m.scenario = "01234567890123456789012345678901";
  CHECK(pb_reason(&m) == MTLD_REJECT_TOO_LARGE && strstr(err, "scenario"));
}

static void test_pb_malformed(void) {
  mtld_event_t ev;
  /* empty record: undecodable in every format */
  CHECK(mtld_decode_event("", 0, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(mtld_decode_event("", 0, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(mtld_decode_event("", 0, MTLD_FMT_AUTO, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(mtld_decode_event("\xff\xff\xff", 3, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(mtld_decode_event("hello", 5, MTLD_FMT_AUTO, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  /* field 1 with the wrong wire type (length-delimited instead of varint) */
  CHECK(mtld_decode_event("\x0a\x01x", 3, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);

  /* truncated: every prefix decodes or is refused, never crashes; cuts inside
   * a field are refused */
  mtld_event_t full = make_event(MTLD_EV_REVIEW);
  uint8_t buf[512];
  size_t n = mtld_encode_event_pb(&full, buf, sizeof buf);
  int undecodable = 0;
  for (size_t k = 1; k < n; k++) {
    uint8_t *copy = malloc(k);
    memcpy(copy, buf, k);
    mtld_reject_t r = mtld_decode_event(copy, k, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err);
    if (r == MTLD_REJECT_UNDECODABLE) undecodable++;
    free(copy);
  }
  CHECK(undecodable > (int)n / 2);
  CHECK(mtld_decode_event(buf, n - 1, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE); /* last byte of the rating float */
  /* a failed decode leaves a zeroed event */
  CHECK(ev.event_id == 0 && ev.user_id == 0 && ev.scenario[0] == 0);

  /* record size limit, checked before parsing */
  CHECK(mtld_decode_event(buf, n, MTLD_FMT_PROTOBUF, n - 1, &ev, err, sizeof err) ==
        MTLD_REJECT_TOO_LARGE);
  CHECK(mtld_decode_event(buf, n, MTLD_FMT_PROTOBUF, n, &ev, err, sizeof err) == 0);

  /* huge string ids: hashed when under the limit, too large over it */
  size_t big = 100000;
  char *key = malloc(big + 1);
  memset(key, 'k', big);
  key[big] = '\0';
  Mtld__Event m = pb_valid();
  m.user_case = MTLD__EVENT__USER_USER_KEY, m.user_key = key;
  size_t need = mtld__event__get_packed_size(&m);
  uint8_t *pb = malloc(need);
  mtld__event__pack(&m, pb);
  CHECK(mtld_decode_event(pb, need, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_TOO_LARGE);
  CHECK(mtld_decode_event(pb, need, MTLD_FMT_PROTOBUF, 1 << 20, &ev, err, sizeof err) == 0);
  CHECK(ev.user_id == mtld_hash_id(key, big));
  free(pb);

  /* and in JSON */
  char *js = malloc(big + 200);
  int jn = snprintf(js, big + 200,
                    "{\"event_id\":1,\"type\":2,\"user_id\":\"%s\",\"item_id\":3,"
                    "\"time_ms\":1700000000000}",
                    key);
  CHECK(mtld_decode_event(js, (size_t)jn, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_TOO_LARGE);
  CHECK(mtld_decode_event(js, (size_t)jn, MTLD_FMT_AUTO, 1 << 20, &ev, err, sizeof err) == 0);
  CHECK(ev.user_id == mtld_hash_id(key, big));
  free(js);
  free(key);
}

#define BASE "\"event_id\":1,\"user_id\":2,\"item_id\":3,\"time_ms\":1700000000000"

static void test_json(void) {
  mtld_event_t ev;
  CHECK(json_reason("{" BASE ",\"type\":\"CLICK\"}") == MTLD_REJECT_NONE);
  /* type: case-insensitive name or number */
  CHECK(dec_json("{" BASE ",\"type\":\"add_to_cart\"}", &ev) == 0 && ev.type == 3);
  CHECK(dec_json("{" BASE ",\"type\":\"Review\",\"rating\":4}", &ev) == 0 && ev.type == 5);
  CHECK(dec_json("{" BASE ",\"type\":4}", &ev) == 0 && ev.type == 4);
  CHECK(json_reason("{" BASE ",\"type\":\"BUY\"}") == MTLD_REJECT_UNKNOWN_TYPE &&
        strstr(err, "BUY"));
  CHECK(json_reason("{" BASE ",\"type\":0}") == MTLD_REJECT_UNKNOWN_TYPE);
  CHECK(json_reason("{" BASE ",\"type\":6}") == MTLD_REJECT_UNKNOWN_TYPE);
  CHECK(json_reason("{" BASE ",\"type\":-1}") == MTLD_REJECT_UNKNOWN_TYPE);
  CHECK(json_reason("{" BASE ",\"type\":4294967298}") == MTLD_REJECT_UNKNOWN_TYPE);
  CHECK(json_reason("{" BASE "}") == MTLD_REJECT_UNKNOWN_TYPE); /* absent */

  /* every value reason */
  CHECK(json_reason("{\"user_id\":2,\"item_id\":3,\"type\":1,\"time_ms\":1700000000000}") ==
        MTLD_REJECT_MISSING_ID);
  CHECK(json_reason("{\"event_id\":1,\"user_id\":0,\"item_id\":3,\"type\":1,"
                    "\"time_ms\":1700000000000}") == MTLD_REJECT_MISSING_ID &&
        strstr(err, "user_id"));
  CHECK(json_reason("{\"event_id\":1,\"user_id\":2,\"item_id\":\"\",\"type\":1,"
                    "\"time_ms\":1700000000000}") == MTLD_REJECT_MISSING_ID);
  CHECK(json_reason("{\"event_id\":1,\"user_id\":2,\"item_id\":null,\"type\":1,"
                    "\"time_ms\":1700000000000}") == MTLD_REJECT_MISSING_ID);
  CHECK(json_reason("{" BASE ",\"type\":1,\"price\":NaN}") == MTLD_REJECT_NOT_FINITE &&
        strstr(err, "price"));
  CHECK(json_reason("{" BASE ",\"type\":1,\"price\":Infinity}") == MTLD_REJECT_NOT_FINITE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"price\":1e999}") == MTLD_REJECT_NOT_FINITE);
  CHECK(json_reason("{" BASE ",\"type\":5,\"rating\":-Infinity}") == MTLD_REJECT_NOT_FINITE &&
        strstr(err, "rating"));
  CHECK(json_reason("{" BASE ",\"type\":5,\"rating\":1e300}") == MTLD_REJECT_NOT_FINITE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"price\":-0.01}") == MTLD_REJECT_NEGATIVE);
  CHECK(json_reason("{" BASE ",\"type\":4,\"quantity\":-1}") == MTLD_REJECT_NEGATIVE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"position\":-3}") == MTLD_REJECT_NEGATIVE);
  CHECK(json_reason("{" BASE ",\"type\":5,\"rating\":0}") == MTLD_REJECT_BAD_RATING);
  CHECK(json_reason("{" BASE ",\"type\":5,\"rating\":5.5}") == MTLD_REJECT_BAD_RATING);
  CHECK(json_reason("{" BASE ",\"type\":2,\"rating\":3}") == MTLD_REJECT_BAD_RATING);
  CHECK(json_reason("{" BASE ",\"type\":5,\"rating\":3.5}") == MTLD_REJECT_NONE);
  CHECK(json_reason("{\"event_id\":1,\"user_id\":2,\"item_id\":3,\"type\":1}") ==
        MTLD_REJECT_BAD_TIME);
  CHECK(json_reason("{\"event_id\":1,\"user_id\":2,\"item_id\":3,\"type\":1,"
                    "\"time_ms\":1700000000000000}") == MTLD_REJECT_BAD_TIME);
  CHECK(json_reason("{" BASE ",\"type\":1,\"scenario\":\"01234567890123456789012345678901\"}") ==
        MTLD_REJECT_TOO_LARGE);

  /* values: price as integer, scenario as number, nulls are absent */
  CHECK(dec_json("{" BASE ",\"type\":4,\"price\":12,\"quantity\":3,\"position\":1,"
                 "\"scenario\":17,\"category_id\":null,\"request_id\":99}",
                 &ev) == 0);
  CHECK(ev.price == 12.0 && ev.quantity == 3 && ev.position == 1 && ev.request_id == 99);
  CHECK(strcmp(ev.scenario, "17") == 0 && ev.scenario_id == mtld_hash_id("17", 2));
  CHECK(ev.category_id == 0);
  CHECK(dec_json("{" BASE ",\"type\":1,\"scenario\":\"\"}", &ev) == 0 && ev.scenario_id == 0);

  /* unknown fields are ignored, nested or not */
  CHECK(json_reason("{" BASE ",\"type\":1,\"extra\":{\"a\":[1,2,{\"b\":null}]},\"x\":\"y\","
                    "\"huge\":123456789012345678901234567890}") == MTLD_REJECT_NONE);
}

static void test_json_types(void) {
  static const struct {
    const char *json, *field;
  } cases[] = {
      {"{" BASE ",\"type\":1,\"price\":\"abc\"}", "price"},
      {"{\"event_id\":1,\"user_id\":[1],\"item_id\":3,\"type\":1}", "user_id"},
      {"{\"event_id\":true,\"user_id\":1,\"item_id\":3,\"type\":1}", "event_id"},
      {"{\"event_id\":1,\"user_id\":1,\"item_id\":1.5,\"type\":1}", "item_id"},
      {"{\"event_id\":1,\"user_id\":1,\"item_id\":3,\"category_id\":{},\"type\":1}", "category_id"},
      {"{" BASE ",\"type\":1,\"request_id\":false}", "request_id"},
      {"{" BASE ",\"type\":{}}", "type"},
      {"{" BASE ",\"type\":1.0}", "type"},
      {"{\"event_id\":1,\"user_id\":2,\"item_id\":3,\"type\":1,\"time_ms\":\"1700000000000\"}",
       "time_ms"},
      {"{\"event_id\":1,\"user_id\":2,\"item_id\":3,\"type\":1,\"time_ms\":1.7e12}", "time_ms"},
      {"{" BASE ",\"type\":1,\"scenario\":[\"a\"]}", "scenario"},
      {"{" BASE ",\"type\":1,\"position\":1.5}", "position"},
      {"{" BASE ",\"type\":1,\"position\":3000000000}", "position"},
      {"{" BASE ",\"type\":4,\"quantity\":\"2\"}", "quantity"},
      {"{" BASE ",\"type\":5,\"rating\":\"x\"}", "rating"},
      {"{" BASE ",\"type\":1,\"price\":[]}", "price"},
      {"{\"event_id\":-5,\"user_id\":2,\"item_id\":3,\"type\":1}", "event_id"},
      {"{" BASE ",\"type\":1,\"scenario\":\"a\\u0000b\"}", "scenario"},
      {"{\"event_id\":1,\"user_id\":\"x\\u0000\",\"item_id\":3,\"type\":1}", "user_id"},
      {"{" BASE ",\"type\":\"CLICK\\u0000x\"}", "type"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mtld_event_t ev;
    err[0] = '\0';
    mtld_reject_t r = dec_json(cases[i].json, &ev);
    int ok = r == MTLD_REJECT_UNDECODABLE && strstr(err, cases[i].field) != NULL;
    if (!ok) fprintf(stderr, "case %zu: reason %s, err \"%s\"\n", i, mtld_reject_name(r), err);
    CHECK(ok);
  }
}

static void test_json_ids(void) {
  mtld_event_t ev;
  CHECK(dec_json("{\"event_id\":18446744073709551615,\"user_id\":9223372036854775808,"
                 "\"item_id\":9223372036854775807,\"type\":1}",
                 &ev) == 0);
  CHECK(ev.event_id == UINT64_MAX);
  CHECK(ev.user_id == (uint64_t)1 << 63);
  CHECK(ev.item_id == (uint64_t)INT64_MAX);
  /* one past uint64: json-c would clamp it to UINT64_MAX silently */
  CHECK(dec_json("{\"event_id\":18446744073709551616,\"user_id\":1,\"item_id\":2}", &ev) ==
            MTLD_REJECT_UNDECODABLE &&
        strstr(err, "event_id"));
  CHECK(dec_json("{\"event_id\":1,\"user_id\":1,\"item_id\":99999999999999999999999}", &ev) ==
            MTLD_REJECT_UNDECODABLE &&
        strstr(err, "item_id"));
  /* ...but an exact UINT64_MAX next to an overflowing double is fine */
  CHECK(dec_json("{\"event_id\":18446744073709551615,\"user_id\":1,\"item_id\":2,"
                 "\"price\":1e400}",
                 &ev) == 0 &&
        ev.event_id == UINT64_MAX);
  CHECK(dec_json("{\"event_id\":1,\"user_id\":1,\"item_id\":2,"
                 "\"time_ms\":9223372036854775808}",
                 &ev) == MTLD_REJECT_UNDECODABLE &&
        strstr(err, "time_ms"));
  CHECK(dec_json("{\"event_id\":1,\"user_id\":1,\"item_id\":2,"
                 "\"time_ms\":-99999999999999999999}",
                 &ev) == MTLD_REJECT_UNDECODABLE &&
        strstr(err, "time_ms"));
  CHECK(dec_json("{\"event_id\":1,\"user_id\":1,\"item_id\":2,"
                 "\"time_ms\":-9223372036854775808}",
                 &ev) == 0 &&
        ev.time_ms == INT64_MIN);
  /* string ids */
  CHECK(
      dec_json("{\"event_id\":\"a\",\"user_id\":\"u\\u00e9\",\"item_id\":\"18446744073709551616\"}",
               &ev) == 0);
  CHECK(ev.event_id == mtld_hash_id("a", 1));
  CHECK(ev.user_id == mtld_hash_id("u\xc3\xa9", 3));
  CHECK(ev.item_id == mtld_hash_id("18446744073709551616", 20));
}

static void test_json_syntax(void) {
  mtld_event_t ev;
  const char *ok = "{" BASE ",\"type\":1}";
  CHECK(dec_json(ok, &ev) == 0);
  /* not objects */
  CHECK(dec_json("[1,2]", &ev) == MTLD_REJECT_UNDECODABLE && strstr(err, "array"));
  CHECK(dec_json("42", &ev) == MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("\"x\"", &ev) == MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("null", &ev) == MTLD_REJECT_UNDECODABLE);
  /* truncated and trailing garbage */
  CHECK(dec_json("{\"event_id\":1,\"user_id\":2", &ev) == MTLD_REJECT_UNDECODABLE &&
        strstr(err, "truncated"));
  CHECK(dec_json("{\"event_id\":12", &ev) == MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("{" BASE ",\"type\":1} x", &ev) == MTLD_REJECT_UNDECODABLE &&
        strstr(err, "trailing"));
  CHECK(dec_json("{" BASE ",\"type\":1}{}", &ev) == MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("{" BASE ",\"type\":1} \r\n\t ", &ev) == 0);
  CHECK(mtld_decode_event("{\"event_id\":1}\0", 15, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(mtld_decode_event("{\"event_id\":1\0}", 15, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("{\"a\":", &ev) == MTLD_REJECT_UNDECODABLE);
  CHECK(dec_json("{{{{", &ev) == MTLD_REJECT_UNDECODABLE);
  /* deep nesting is refused, not recursed into */
  char deep[4096];
  size_t k = 0;
  deep[k++] = '{';
  memcpy(deep + k, "\"a\":", 4), k += 4;
  for (int i = 0; i < 1000; i++) deep[k++] = '[';
  for (int i = 0; i < 1000; i++) deep[k++] = ']';
  deep[k++] = '}';
  deep[k] = '\0';
  CHECK(dec_json(deep, &ev) == MTLD_REJECT_UNDECODABLE);
  /* AUTO picks JSON after leading blanks */
  char buf[256];
  int n = snprintf(buf, sizeof buf, " \n\t{" BASE ",\"type\":1}");
  CHECK(mtld_decode_event(buf, (size_t)n, MTLD_FMT_AUTO, 65536, &ev, err, sizeof err) == 0);
  CHECK(ev.user_id == 2);
  /* a record cut short of its last byte, with no NUL after it */
  CHECK(mtld_decode_event(ok, strlen(ok) - 1, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  /* a protobuf payload given as JSON */
  CHECK(mtld_decode_event("\x08\x01", 2, MTLD_FMT_JSON, 65536, &ev, err, sizeof err) ==
        MTLD_REJECT_UNDECODABLE);
  /* errlen 0 and NULL err are tolerated */
  CHECK(mtld_decode_event("x", 1, MTLD_FMT_JSON, 65536, &ev, NULL, 0) == MTLD_REJECT_UNDECODABLE);
}

static void test_time_window(void) {
  mtld_event_t ev = make_event(MTLD_EV_CLICK);
  mtld_validate_limits_t l = {65536, 1000, 5000};
  /* ahead of the newest event time */
  CHECK(mtld_validate_event(&ev, &l, NOW, T0 - 5000, err, sizeof err) == MTLD_REJECT_NONE);
  CHECK(mtld_validate_event(&ev, &l, NOW, T0 - 5001, err, sizeof err) == MTLD_REJECT_BAD_TIME &&
        strstr(err, "ahead"));
  CHECK(mtld_validate_event(&ev, &l, NOW, INT64_MIN + 1, err, sizeof err) ==
        MTLD_REJECT_BAD_TIME); /* no overflow */
  CHECK(mtld_validate_event(&ev, &l, NOW, INT64_MAX, err, sizeof err) == MTLD_REJECT_NONE);
  /* behind the watermark */
  CHECK(mtld_validate_event(&ev, &l, T0 + 1000, NOW, err, sizeof err) == MTLD_REJECT_NONE);
  CHECK(mtld_validate_event(&ev, &l, T0 + 1001, NOW, err, sizeof err) == MTLD_REJECT_TOO_LATE &&
        strstr(err, "watermark"));
  CHECK(mtld_validate_event(&ev, &l, INT64_MAX, NOW, err, sizeof err) == MTLD_REJECT_TOO_LATE);
  CHECK(mtld_validate_event(&ev, &l, INT64_MIN + 1, NOW, err, sizeof err) == MTLD_REJECT_NONE);
  /* defaults */
  mtld_validate_limits_t d;
  mtld_validate_limits_default(&d);
  CHECK(d.max_record_bytes == 65536 && d.max_lateness_ms == 86400000 && d.max_ahead_ms == 0);
  CHECK(mtld_validate_event(&ev, &d, T0 + 86400000, T0 - 86400000, err, sizeof err) == 0);
  CHECK(mtld_validate_event(&ev, &d, T0 + 86400001, NOW, err, sizeof err) == MTLD_REJECT_TOO_LATE);

  /* order of checks: ids before type before finiteness ... before time */
  mtld_event_t bad = ev;
  bad.user_id = 0, bad.type = 0, bad.price = NAN, bad.time_ms = 0;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_MISSING_ID);
  bad.user_id = 1;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_UNKNOWN_TYPE);
  bad.type = 1;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_NOT_FINITE);
  bad.price = -1, bad.rating = 2;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_NEGATIVE);
  bad.price = 1;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_BAD_RATING);
  bad.rating = 0;
  CHECK(mtld_validate_event(&bad, &d, NOW, NOW, err, sizeof err) == MTLD_REJECT_BAD_TIME);
}

static uint64_t H(const char *s) {
  return mtld_hash_id(s, strlen(s));
}

static int same_attrs(const mtld_event_t *a, const mtld_event_t *b) {
  if (a->n_attrs != b->n_attrs || a->attrs_num != b->attrs_num) return 0;
  for (int i = 0; i < a->n_attrs; i++)
    if (a->attrs[i].name_id != b->attrs[i].name_id ||
        (mtld_event_attr_is_num(a, i) ? a->attrs[i].v.num != b->attrs[i].v.num
                                      : a->attrs[i].v.value_id != b->attrs[i].v.value_id))
      return 0;
  return 1;
}

static void test_attrs(void) {
  mtld_event_t ev, out;
  /* object form: string -> categorical, number -> numeric, null/"" -> absent */
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"age_level\":\"3\",\"brand\":\"b-981\","
                    "\"discount\":0.2,\"n\":7,\"gone\":null,\"empty\":\"\"}}") == 0);
  CHECK(dec_json("{" BASE ",\"type\":1,\"attrs\":{\"age_level\":\"3\",\"brand\":\"b-981\","
                 "\"discount\":0.2,\"n\":7,\"gone\":null,\"empty\":\"\"}}",
                 &ev) == 0);
  CHECK(ev.n_attrs == 4);
  int i = mtld_event_attr_find(&ev, H("age_level"));
  CHECK(i == 0 && !mtld_event_attr_is_num(&ev, i) && ev.attrs[i].v.value_id == H("3"));
  i = mtld_event_attr_find(&ev, H("brand"));
  CHECK(i == 1 && ev.attrs[i].v.value_id == H("b-981"));
  i = mtld_event_attr_find(&ev, H("discount"));
  CHECK(i == 2 && mtld_event_attr_is_num(&ev, i) && ev.attrs[i].v.num == 0.2);
  i = mtld_event_attr_find(&ev, H("n"));
  CHECK(i == 3 && mtld_event_attr_is_num(&ev, i) && ev.attrs[i].v.num == 7);
  CHECK(mtld_event_attr_find(&ev, H("gone")) < 0 && mtld_event_attr_find(&ev, H("empty")) < 0);

  /* array form (text and hashed) gives the same event */
  char arr[512];
  snprintf(arr, sizeof arr,
           "{" BASE ",\"type\":1,\"attrs\":[{\"name\":\"age_level\",\"str\":\"3\"},"
           "{\"name_id\":%" PRIu64 ",\"id\":\"b-981\"},"
           "{\"name\":\"discount\",\"num\":0.2},{\"name\":\"n\",\"num\":7},"
           "{\"name\":\"gone\"}]}",
           H("brand"));
  CHECK(dec_json(arr, &out) == 0);
  CHECK(same_attrs(&ev, &out));

  /* encoders write the hashed form; both formats round-trip */
  uint8_t pb[2048];
  char js[2048];
  size_t n = mtld_encode_event_pb(&ev, pb, sizeof pb);
  CHECK(n > 0 &&
        mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, sizeof pb, &out, err, sizeof err) == 0 &&
        same_event(&ev, &out) && same_attrs(&ev, &out));
  n = mtld_encode_event_json(&ev, js, sizeof js);
  CHECK(n > 0 && mtld_decode_event(js, n, MTLD_FMT_JSON, sizeof js, &out, err, sizeof err) == 0 &&
        same_event(&ev, &out) && same_attrs(&ev, &out));
  CHECK(strstr(js, "\"attrs\":[{\"name_id\":"));

  /* protobuf text form */
  Mtld__Event m = pb_valid();
  Mtld__Attr a[MTLD_ATTR_MAX + 1], *ap[MTLD_ATTR_MAX + 1];
  char names[MTLD_ATTR_MAX + 1][8];
  for (int k = 0; k <= MTLD_ATTR_MAX; k++) {
    Mtld__Attr z = MTLD__ATTR__INIT;
    snprintf(names[k], sizeof names[k], "a%d", k);
    z.key_case = MTLD__ATTR__KEY_NAME, z.name = names[k];
    z.value_case = MTLD__ATTR__VALUE_STR, z.str = "v";
    a[k] = z;
    ap[k] = &a[k];
  }
  a[1].value_case = MTLD__ATTR__VALUE_NUM, a[1].num = -1.5;
  m.attrs = ap;
  m.n_attrs = MTLD_ATTR_MAX;
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  n = mtld__event__pack(&m, pb);
  CHECK(mtld_decode_event(pb, n, MTLD_FMT_PROTOBUF, sizeof pb, &ev, err, sizeof err) == 0 &&
        ev.n_attrs == MTLD_ATTR_MAX && ev.attrs[0].name_id == H("a0") &&
        ev.attrs[0].v.value_id == H("v") && mtld_event_attr_is_num(&ev, 1) &&
        ev.attrs[1].v.num == -1.5 && ev.attrs_num == 2);
  /* reasons: too many, empty name, duplicate, long name, long value, NaN */
  m.n_attrs = MTLD_ATTR_MAX + 1;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "more than"));
  m.n_attrs = 2;
  a[0].name = "";
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "empty name"));
  a[0].name = "a1";
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "twice"));
  char longname[MTLD_ATTR_NAME_LEN + 2], longval[MTLD_ATTR_VALUE_LEN + 2];
  memset(longname, 'x', sizeof longname - 1), longname[sizeof longname - 1] = 0;
  memset(longval, 'y', sizeof longval - 1), longval[sizeof longval - 1] = 0;
  a[0].name = longname;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "name of"));
  longname[MTLD_ATTR_NAME_LEN] = 0; /* exactly at the limit */
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  a[0].str = longval;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "value of"));
  longval[MTLD_ATTR_VALUE_LEN] = 0;
  CHECK(pb_reason(&m) == MTLD_REJECT_NONE);
  a[1].num = NAN;
  CHECK(pb_reason(&m) == MTLD_REJECT_NOT_FINITE && strstr(err, "attribute"));
  a[1].num = INFINITY;
  CHECK(pb_reason(&m) == MTLD_REJECT_NOT_FINITE);
  a[1].key_case = MTLD__ATTR__KEY_NAME_ID, a[1].name_id = 0;
  CHECK(pb_reason(&m) == MTLD_REJECT_BAD_ATTR && strstr(err, "without a name"));

  /* JSON reasons */
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"\":\"x\"}}") == MTLD_REJECT_BAD_ATTR);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"d\":NaN}}") == MTLD_REJECT_NOT_FINITE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"d\":true}}") == MTLD_REJECT_UNDECODABLE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"d\":[1]}}") == MTLD_REJECT_UNDECODABLE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":7}") == MTLD_REJECT_UNDECODABLE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":[7]}") == MTLD_REJECT_UNDECODABLE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":[{\"name\":\"a\",\"str\":1}]}") ==
        MTLD_REJECT_UNDECODABLE);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":[{\"name\":\"a\",\"str\":\"x\"},"
                    "{\"name\":\"a\",\"num\":1}]}") == MTLD_REJECT_BAD_ATTR);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":[{\"str\":\"x\"}]}") == MTLD_REJECT_BAD_ATTR);
  CHECK(json_reason("{" BASE ",\"type\":1,\"attrs\":{\"v\":99999999999999999999999}}") ==
        MTLD_REJECT_UNDECODABLE);
  char big[4096];
  int len = snprintf(big, sizeof big, "{" BASE ",\"type\":1,\"attrs\":{");
  for (int k = 0; k <= MTLD_ATTR_MAX; k++)
    len += snprintf(big + len, sizeof big - (size_t)len, "%s\"k%d\":%d", k ? "," : "", k, k);
  snprintf(big + len, sizeof big - (size_t)len, "}}");
  CHECK(json_reason(big) == MTLD_REJECT_BAD_ATTR);

  /* the event helpers */
  memset(&ev, 0, sizeof ev);
  CHECK(mtld_event_attr_set_num(&ev, 5, 1.0) == 0 && mtld_event_attr_set_str(&ev, 6, 9) == 0);
  CHECK(mtld_event_attr_set_str(&ev, 5, 8) == 0 && ev.n_attrs == 2 && ev.attrs_num == 0 &&
        ev.attrs[0].v.value_id == 8);
  for (int k = 0; k < MTLD_ATTR_MAX - 2; k++) CHECK(mtld_event_attr_set_num(&ev, 100 + k, k) == 0);
  CHECK(mtld_event_attr_set_num(&ev, 99, 1) == -1 && ev.n_attrs == MTLD_ATTR_MAX);
  CHECK(strcmp(mtld_reject_name(MTLD_REJECT_BAD_ATTR), "bad_attr") == 0);
}

int main(void) {
  mtld_validate_limits_default(&lim);
  test_names();
  test_round_trip();
  test_encode_cap();
  test_pb_ids();
  test_pb_reasons();
  test_pb_malformed();
  test_json();
  test_json_types();
  test_json_ids();
  test_json_syntax();
  test_time_window();
  test_attrs();
  return CHECK_DONE();
}
