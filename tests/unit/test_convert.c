/* test_convert.c - the CSV converters: every layout on inline sample lines
 * shaped like the real files, the generic mapping language, bad rows counted
 * per reason, stable time sort, ISO time parsing. */
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "tools/convert.h"

#define MAXEV 64

typedef struct {
  mtld_event_t ev[MAXEV];
  int n;
} sink_t;

static void sink_push(void *ctx, const mtld_event_t *ev) {
  sink_t *s = ctx;
  if (s->n < MAXEV) s->ev[s->n++] = *ev;
}

static mtld_conv_t *mk(const char *layout, const char *map, const char *type_map) {
  mtld_conv_opts_t o = {.layout = layout, .map = map, .type_map = type_map};
  mtld_conv_t *c = NULL;
  char err[256] = "";
  mtld_status_t st = mtld_conv_new(&c, &o, err, sizeof err);
  if (st != MTLD_OK) fprintf(stderr, "mtld_conv_new(%s, %s): %s\n", layout, map, err);
  return c;
}

static mtld_status_t feed(mtld_conv_t *c, sink_t *s, const char *line) {
  char err[256];
  return mtld_conv_line(c, line, strlen(line), sink_push, s, err, sizeof err);
}

static uint64_t h(const char *s) {
  return mtld_hash_id(s, strlen(s));
}

static void test_taobao(void) {
  mtld_conv_t *c = mk("taobao", NULL, NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  CHECK(feed(c, &s, "1,2268318,2520377,pv,1511544070\r\n") == MTLD_OK);
  CHECK(feed(c, &s, "1,2333346,2520771,cart,1511561733") == MTLD_OK);
  CHECK(feed(c, &s, "1,2576651,149192,buy,1511572885") == MTLD_OK);
  CHECK(feed(c, &s, "1,3830808,4181361,fav,1511593493") == MTLD_OK);      /* skipped */
  CHECK(feed(c, &s, "") == MTLD_OK);                                      /* blank: not a row */
  CHECK(feed(c, &s, "1,4365585,2520377,like,1511596146") == MTLD_OK);     /* unknown_type */
  CHECK(feed(c, &s, ",4365585,2520377,pv,1511596146") == MTLD_OK);        /* missing_id */
  CHECK(feed(c, &s, "1,4365585,2520377,pv,yesterday") == MTLD_OK);        /* bad_time */
  CHECK(feed(c, &s, "1,4365585,2520377") == MTLD_OK);                     /* too_few_columns */
  CHECK(feed(c, &s, "2,4365585,2520377,PURCHASE,1511596146") == MTLD_OK); /* a type name */
  CHECK(s.n == 4);
  CHECK(s.ev[0].type == MTLD_EV_CLICK);
  CHECK(s.ev[0].user_id == 1);
  CHECK(s.ev[0].item_id == 2268318);
  CHECK(s.ev[0].category_id == 2520377);
  CHECK(s.ev[0].time_ms == 1511544070000LL);
  CHECK(strcmp(s.ev[0].scenario, "taobao") == 0);
  CHECK(s.ev[0].scenario_id == h("taobao"));
  CHECK(s.ev[0].request_id == 0);
  CHECK(s.ev[0].event_id != 0);
  CHECK(s.ev[1].type == MTLD_EV_ADD_TO_CART);
  CHECK(s.ev[2].type == MTLD_EV_PURCHASE);
  CHECK(s.ev[3].type == MTLD_EV_PURCHASE && s.ev[3].user_id == 2);
  CHECK(s.ev[0].event_id != s.ev[1].event_id && s.ev[1].event_id != s.ev[2].event_id);
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 9);
  CHECK(st.converted == 4);
  CHECK(st.skipped == 1);
  CHECK(mtld_conv_skipped_count(c, "fav") == 1);
  CHECK(st.bad == 4);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_TYPE] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_MISSING_ID] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_TIME] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_COLUMNS] == 1);
  CHECK(st.events == 4);
  mtld_conv_free(c);

  /* same line, same id (a replayed file is a duplicate); fav mapped by the user */
  c = mk("taobao", NULL, "fav=ADD_TO_CART");
  sink_t s2 = {0};
  feed(c, &s2, "1,2268318,2520377,pv,1511544070");
  feed(c, &s2, "1,3830808,4181361,fav,1511593493");
  CHECK(s2.n == 2);
  CHECK(s2.ev[0].event_id == s.ev[0].event_id);
  CHECK(s2.ev[1].type == MTLD_EV_ADD_TO_CART);
  mtld_conv_free(c);
}

static void test_sort_stable(void) {
  const char *csv = "1,10,1,pv,1511544070\n"
                    "1,11,1,pv,1511544060\n"
                    "2,12,1,pv,1511544070\n"
                    "2,13,1,fav,1511544000\n"
                    "3,14,1,buy,1511544050\n";
  FILE *in = fmemopen((void *)csv, strlen(csv), "r");
  CHECK(in != NULL);
  if (!in) return;
  mtld_conv_t *c = mk("taobao", NULL, NULL);
  mtld_event_t *ev = NULL;
  size_t n = 0;
  char err[256];
  CHECK(mtld_conv_read_all(c, in, 1, &ev, &n, err, sizeof err) == MTLD_OK);
  fclose(in);
  CHECK(n == 4);
  if (n == 4) {
    CHECK(ev[0].item_id == 14 && ev[1].item_id == 11);
    CHECK(ev[2].item_id == 10 && ev[3].item_id == 12); /* tie: row order kept */
  }
  free(ev);
  mtld_conv_free(c);

  /* a bigger shuffled input: sorted and stable */
  enum { N = 1000 };
  mtld_event_t *big = malloc(N * sizeof *big);
  for (int i = 0; i < N; i++) {
    memset(&big[i], 0, sizeof big[i]);
    big[i].time_ms = (i * 7919) % 50; /* many ties */
    big[i].event_id = (uint64_t)i;
  }
  CHECK(mtld_conv_sort_events(big, N) == MTLD_OK);
  int ok = 1;
  for (int i = 1; i < N; i++)
    if (big[i - 1].time_ms > big[i].time_ms ||
        (big[i - 1].time_ms == big[i].time_ms && big[i - 1].event_id > big[i].event_id))
      ok = 0;
  CHECK(ok);
  free(big);
}

static void test_amazon(void) {
  mtld_conv_t *c = mk("amazon", NULL, NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  CHECK(feed(c, &s, "UserId,ProductId,Rating,Timestamp,") == MTLD_OK);
  CHECK(feed(c, &s, "A39HTATAQ9V7YF,205616461,5,1369699200,") == MTLD_OK);
  CHECK(feed(c, &s, "A3JM6GV9MNOF9X,558925278,3,1355443200,") == MTLD_OK);
  CHECK(feed(c, &s, "A3JM6GV9MNOF9X,558925278,,1355443200,") == MTLD_OK);     /* bad_rating */
  CHECK(feed(c, &s, "A3JM6GV9MNOF9X,558925278,five,1355443200,") == MTLD_OK); /* bad_number */
  CHECK(s.n == 2);
  CHECK(s.ev[0].type == MTLD_EV_REVIEW);
  CHECK(s.ev[0].rating == 5.0f);
  CHECK(s.ev[0].user_id == h("A39HTATAQ9V7YF"));
  CHECK(s.ev[0].item_id == h("205616461")); /* ASINs are string keys even when numeric */
  CHECK(s.ev[0].time_ms == 1369699200000LL);
  CHECK(strcmp(s.ev[0].scenario, "amazon") == 0);
  CHECK(s.ev[1].rating == 3.0f);
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 4);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_RATING] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_NUMBER] == 1);
  mtld_conv_free(c);
}

static void test_aliccp(void) {
  mtld_conv_t *c = mk("aliccp", NULL, NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  const char *hdr = "click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,"
                    "509,702,853,301,109_14,110_14,127_14,150_14,D109_14,D110_14,D127_14,D150_14,"
                    "D508,D509,D702,D853";
  CHECK(feed(c, &s, hdr) == MTLD_OK);
  CHECK(feed(c, &s,
             "0,0,1,1,1,1,1,0,1,1,1,0,1,1,1,0,1,0,0,0,3,1,1,1,1,0.4734,0.562,0.0856,"
             "0.1902,0.07556,0.0,0.0,0.0") == MTLD_OK);
  CHECK(feed(c, &s,
             "1,1,7,1,1,1,1,0,1,1,1,65,36,84,88,52,23,0,17,0,1,1,1,1,1,0.4734,0.562,"
             "0.0856,0.1902,0.1754,0,0.3555,0") == MTLD_OK);
  CHECK(feed(c, &s,
             "0,1,7,1,1,1,1,0,1,1,1,65,36,84,88,52,23,0,17,0,1,1,1,1,1,0.4734,0.562,"
             "0.0856,0.1902,0.1754,0,0.3555,0") == MTLD_OK); /* purchase_without_click */
  CHECK(feed(c, &s,
             "2,0,7,1,1,1,1,0,1,1,1,65,36,84,88,52,23,0,17,0,1,1,1,1,1,0.4734,0.562,"
             "0.0856,0.1902,0.1754,0,0.3555,0") == MTLD_OK); /* bad_label */
  CHECK(s.n == 4);
  if (s.n == 4) {
    mtld_event_t *imp0 = &s.ev[0], *imp = &s.ev[1], *clk = &s.ev[2], *buy = &s.ev[3];
    CHECK(imp0->type == MTLD_EV_IMPRESSION);
    CHECK(imp0->user_id == h("1"));
    CHECK(imp0->item_id == h("0")); /* label-encoded id 0 is an id, not "absent" */
    CHECK(imp0->category_id == h("1"));
    CHECK(strcmp(imp0->scenario, "aliccp_3") == 0);
    CHECK(imp0->time_ms == MTLD_CONV_DEFAULT_BASE_MS);
    CHECK(imp0->request_id == imp0->event_id);
    CHECK(imp->type == MTLD_EV_IMPRESSION && imp->time_ms == MTLD_CONV_DEFAULT_BASE_MS + 1000);
    CHECK(imp->user_id == h("7") && imp->item_id == h("65") && imp->category_id == h("36"));
    CHECK(strcmp(imp->scenario, "aliccp_1") == 0);
    CHECK(clk->type == MTLD_EV_CLICK && clk->request_id == imp->event_id);
    CHECK(clk->time_ms == imp->time_ms + 100);
    CHECK(clk->event_id != imp->event_id);
    CHECK(buy->type == MTLD_EV_PURCHASE && buy->request_id == imp->event_id);
    CHECK(buy->time_ms == imp->time_ms + 200 && buy->quantity == 1);
    CHECK(buy->event_id != clk->event_id);
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 4 && st.converted == 2 && st.events == 4);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_PURCHASE_NOCLICK] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_LABEL] == 1);
  mtld_conv_free(c);
}

static void test_aliexpress(void) {
  /* the real header: search_id, categorical_1..16, numerical_1..63, click, conversion */
  char hdr[2048], row[2048];
  size_t n = (size_t)snprintf(hdr, sizeof hdr, "search_id");
  for (int i = 1; i <= 16; i++)
    n += (size_t)snprintf(hdr + n, sizeof hdr - n, ",categorical_%d", i);
  for (int i = 1; i <= 63; i++) n += (size_t)snprintf(hdr + n, sizeof hdr - n, ",numerical_%d", i);
  snprintf(hdr + n, sizeof hdr - n, ",click,conversion");

  mtld_conv_opts_t o = {.layout = "aliexpress", .scenario = "NL", .base_ms = 1000000};
  mtld_conv_t *c = NULL;
  char err[256];
  CHECK(mtld_conv_new(&c, &o, err, sizeof err) == MTLD_OK);
  if (!c) return;
  sink_t s = {0};
  CHECK(feed(c, &s, hdr) == MTLD_OK);
  for (int r = 0; r < 2; r++) {
    n = (size_t)snprintf(row, sizeof row, "509,9,0,0,0,9,4,25,0,4,%d,1,0,0,0,1,0", r);
    for (int i = 1; i <= 63; i++) n += (size_t)snprintf(row + n, sizeof row - n, ",0.5");
    snprintf(row + n, sizeof row - n, ",%d,%d", r, r);
    CHECK(feed(c, &s, row) == MTLD_OK);
  }
  CHECK(s.n == 4); /* impression; impression + click + purchase */
  if (s.n == 4) {
    CHECK(s.ev[0].type == MTLD_EV_IMPRESSION && s.ev[0].time_ms == 1000000);
    CHECK(s.ev[0].user_id == h("509"));
    CHECK(strcmp(s.ev[0].scenario, "NL") == 0);
    CHECK(s.ev[1].type == MTLD_EV_IMPRESSION && s.ev[1].time_ms == 1001000);
    CHECK(s.ev[1].user_id == s.ev[0].user_id);
    CHECK(s.ev[1].item_id != s.ev[0].item_id); /* categorical_10 differs */
    CHECK(s.ev[2].type == MTLD_EV_CLICK && s.ev[3].type == MTLD_EV_PURCHASE);
    CHECK(s.ev[3].request_id == s.ev[1].event_id);
  }
  mtld_conv_free(c);
}

static void test_generic(void) {
  /* named columns, sep=; ms times, type map, quoted field with the separator */
  mtld_conv_t *c = mk("generic",
                      "header=1,sep=;,user=uid,item=sku,category=cat,type=ev,time=ts,time_unit=ms,"
                      "scenario=page,price=price,quantity=qty,position=pos,request=req,id=eid",
                      "view=IMPRESSION,pv=CLICK,order=PURCHASE,wish=skip");
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  CHECK(feed(c, &s, "eid;uid;sku;cat;ev;ts;page;price;qty;pos;req") == MTLD_OK);
  CHECK(feed(c, &s, "77;u1;\"sku;1\";9;view;1700000000123;home;19.5;;3;77") == MTLD_OK);
  CHECK(feed(c, &s, "78;u1;\"sku;1\";9;order;1700000000999;home;19.5;2;;77") == MTLD_OK);
  CHECK(feed(c, &s, "79;u1;x;9;wish;1700000001000;home;;;;") == MTLD_OK);
  CHECK(feed(c, &s, "80;u1;x;9;order;1700000001000;home;cheap;;;") == MTLD_OK); /* bad_number */
  CHECK(feed(c, &s, "81;u1;x;9;order;1700000001000;\"home;") == MTLD_OK);       /* bad_csv */
  CHECK(feed(c, &s, "82;u1;x;9;order;1700000001000;a_scenario_name_longer_than_31_bytes;1;1;;") ==
        MTLD_OK); /* scenario_too_long */
  CHECK(s.n == 2);
  if (s.n == 2) {
    CHECK(s.ev[0].event_id == 77 && s.ev[0].type == MTLD_EV_IMPRESSION);
    CHECK(s.ev[0].user_id == h("u1") && s.ev[0].item_id == h("sku;1"));
    CHECK(s.ev[0].category_id == 9 && s.ev[0].time_ms == 1700000000123LL);
    CHECK(s.ev[0].position == 3 && s.ev[0].price == 19.5 && s.ev[0].request_id == 77);
    CHECK(strcmp(s.ev[0].scenario, "home") == 0);
    CHECK(s.ev[1].type == MTLD_EV_PURCHASE && s.ev[1].quantity == 2);
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.skipped == 1 && mtld_conv_skipped_count(c, "wish") == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_NUMBER] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_CSV] == 1);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_SCENARIO] == 1);
  mtld_conv_free(c);

  /* 1-based indices without header, ISO times, "sep=," at the end, combined ids */
  c = mk("generic", "header=0,user=1,item=3+4,time=2,time_unit=iso,type=const:CLICK,sep=,", NULL);
  CHECK(c != NULL);
  if (c) {
    sink_t s2 = {0};
    CHECK(feed(c, &s2, "1,2014-04-07T10:51:09.277Z,214536502,0") == MTLD_OK);
    CHECK(feed(c, &s2, "1,2014-04-07 10:51:09+02:00,214536502,1") == MTLD_OK);
    CHECK(s2.n == 2);
    if (s2.n == 2) {
      CHECK(s2.ev[0].time_ms == 1396867869277LL);
      CHECK(s2.ev[1].time_ms == 1396867869000LL - 2 * 3600 * 1000);
      CHECK(s2.ev[0].type == MTLD_EV_CLICK && s2.ev[0].user_id == 1);
      CHECK(s2.ev[0].item_id == h("214536502\x1f"
                                  "0"));
      CHECK(s2.ev[0].item_id != s2.ev[1].item_id);
      CHECK(s2.ev[0].scenario[0] == 0 && s2.ev[0].scenario_id == 0);
    }
    mtld_conv_free(c);
  }

  /* dates; then no time column -> synthetic times */
  c = mk("generic", "header=1,user=u,item=i,time=d,time_unit=date,type=const:CLICK", NULL);
  if (c) {
    sink_t s3 = {0};
    feed(c, &s3, "u,i,d");
    feed(c, &s3, "5,6,2016-05-09");
    CHECK(s3.n == 1 && s3.ev[0].time_ms == 1462752000000LL);
    mtld_conv_free(c);
  }
  c = mk("generic", "user=1,item=2,type=const:REVIEW,rating=3", NULL);
  if (c) {
    sink_t s4 = {0};
    feed(c, &s4, "5,6,4");
    feed(c, &s4, "5,7,2");
    CHECK(s4.n == 2);
    CHECK(s4.n == 2 && s4.ev[0].time_ms == MTLD_CONV_DEFAULT_BASE_MS &&
          s4.ev[1].time_ms == MTLD_CONV_DEFAULT_BASE_MS + 1000 && s4.ev[1].rating == 2.0f);
    mtld_conv_free(c);
  }

  /* a mapped column the header lacks: the whole mapping fails */
  c = mk("generic", "header=1,user=uid,item=nope,type=const:CLICK", NULL);
  if (c) {
    sink_t s5 = {0};
    CHECK(feed(c, &s5, "uid,item") == MTLD_ERR_INVALID);
    mtld_conv_free(c);
  }

  /* time range */
  mtld_conv_opts_t o = {
      .layout = "taobao", .time_from_ms = 1511539200000LL, .time_to_ms = 1512316800000LL};
  char err[256];
  CHECK(mtld_conv_new(&c, &o, err, sizeof err) == MTLD_OK);
  if (c) {
    sink_t s6 = {0};
    feed(c, &s6, "1,2,3,pv,1505117799");
    feed(c, &s6, "1,2,3,pv,1511539200");
    feed(c, &s6, "1,2,3,pv,1512316800");
    mtld_conv_stats_t st6;
    mtld_conv_stats(c, &st6);
    CHECK(s6.n == 1 && st6.bad_by_reason[MTLD_CONV_BAD_TIME_RANGE] == 2);
    mtld_conv_free(c);
  }
}

static void test_map_errors(void) {
  static const struct {
    const char *layout, *map, *type_map;
  } bad[] = {
      {"generic", NULL, NULL},                                        /* generic needs a map */
      {"nosuch", NULL, NULL},                                         /* unknown layout */
      {"generic", "user=1,item=2", NULL},                             /* no type, no labels */
      {"generic", "user=1,type=const:CLICK", NULL},                   /* no item */
      {"generic", "user=1,item=2,type=3,click=4", NULL},              /* type and labels */
      {"generic", "user=1,item=2,purchase=4", NULL},                  /* purchase without click */
      {"generic", "user=1,item=2,type=3,colour=4", NULL},             /* unknown key */
      {"generic", "user=1,item=2,type=3,time_unit=fortnights", NULL}, /* unit */
      {"generic", "user=1,item=2,type=const:BUY", NULL},              /* not a type */
      {"generic", "user=1,item=2,type=3,header=yes", NULL},           /* header 0/1 */
      {"generic", "user=1,item=2,type=3,price=const:5", NULL},        /* const not allowed */
      {"generic", "user=1,item=2,type=3,rating=4+5", NULL},           /* combo not allowed */
      {"generic", "user=1,item=2,type=3,attr.a=const:x", NULL},       /* attr: a column */
      {"generic", "user=1,item=2,type=3,attr.a=4+5", NULL},           /* attr: one column */
      {"generic", "user=1,item=2,type=3,attr.a=", NULL},              /* attr: empty */
      {"generic", "user=1,item=2,type=3,sep=ab", NULL},               /* sep */
      {"generic", "user=1,item=2,type=3", "pv=VIEWED"},               /* type map target */
      {"generic", "user=1,item=2,type=3", "pv"},                      /* type map syntax */
      {"generic", "user=1,item=2,type=3,time_offset=4", NULL},        /* offset without time */
      {"generic", "user=1,item=2,type=3,time=4,tz=CET", NULL},        /* tz */
      {"generic", "user=1,item=2,type=3,time=4,time_offset_unit=d", NULL}, /* offset unit */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mtld_conv_opts_t o = {.layout = bad[i].layout, .map = bad[i].map, .type_map = bad[i].type_map};
    mtld_conv_t *c = NULL;
    char err[256] = "";
    mtld_status_t st = mtld_conv_new(&c, &o, err, sizeof err);
    CHECK(st == MTLD_ERR_INVALID && c == NULL && err[0]);
    if (st != MTLD_ERR_INVALID) fprintf(stderr, "  case %zu accepted\n", i);
    mtld_conv_free(c);
  }
}

static void test_iso(void) {
  int64_t ms = 0;
  CHECK(mtld_conv_parse_iso_ms("2024-01-01T00:00:00Z", 20, &ms) == 0 &&
        ms == MTLD_CONV_DEFAULT_BASE_MS);
  CHECK(mtld_conv_parse_iso_ms("2017-11-25T00:00:00+08:00", 25, &ms) == 0 && ms == 1511539200000LL);
  CHECK(mtld_conv_parse_iso_ms("2016-05-09", 10, &ms) == 0 && ms == 1462752000000LL);
  CHECK(mtld_conv_parse_iso_ms("1969-12-31T23:59:59Z", 20, &ms) == 0 && ms == -1000);
  CHECK(mtld_conv_parse_iso_ms("2024-13-01", 10, &ms) == -1);
  CHECK(mtld_conv_parse_iso_ms("2024-01-01T25:00", 16, &ms) == -1);
  CHECK(mtld_conv_parse_iso_ms("2024-01-01junk", 14, &ms) == -1);
  CHECK(mtld_conv_parse_iso_ms("", 0, &ms) == -1);
  CHECK(strcmp(mtld_conv_bad_name(MTLD_CONV_BAD_PURCHASE_NOCLICK), "purchase_without_click") == 0);
}

/* Item 7: RFC 4180 records: a quoted field holding newlines and doubled
 * quotes is one record; counts are per record. */
static void test_multiline_records(void) {
  const char *csv = "uid,item,note,ts\n"
                    "u1,i1,\"one line\",1700000000\n"
                    "u2,i2,\"two\nlines, and a \"\"quote\"\"\",1700000001\n"
                    "u3,i3,\"three\r\n\r\nlines\",1700000002\n"
                    "u4,i4,plain,1700000003\n";
  mtld_conv_t *c = mk("generic",
                      "header=1,user=uid,item=item,type=const:CLICK,time=ts,"
                      "scenario=note",
                      NULL);
  CHECK(c != NULL);
  if (!c) return;
  FILE *in = fmemopen((void *)csv, strlen(csv), "r");
  sink_t s = {0};
  char *rec = NULL, err[256];
  size_t cap = 0;
  ssize_t got;
  int n_rec = 0;
  while ((got = mtld_conv_read_record(c, in, &rec, &cap)) > 0) {
    n_rec++;
    CHECK(mtld_conv_line(c, rec, (size_t)got, sink_push, &s, err, sizeof err) == MTLD_OK);
  }
  fclose(in);
  free(rec);
  CHECK(got == 0);
  CHECK(n_rec == 5); /* header + 4 records over 8 lines */
  CHECK(s.n == 4);
  if (s.n == 4) {
    CHECK(s.ev[1].user_id == h("u2") && s.ev[1].time_ms == 1700000001000LL);
    CHECK(strcmp(s.ev[1].scenario, "two\nlines, and a \"quote\"") == 0);
    CHECK(s.ev[2].user_id == h("u3") && strcmp(s.ev[2].scenario, "three\r\n\r\nlines") == 0);
    CHECK(s.ev[3].user_id == h("u4"));
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 4 && st.converted == 4 && st.bad == 0);
  CHECK(st.lines == 8);
  mtld_conv_free(c);

  /* read_all reads records too; an unterminated quote at the end is one bad row */
  const char *bad = "1,2,1700000000\n3,\"4\n5,6,1700000001\n";
  in = fmemopen((void *)bad, strlen(bad), "r");
  c = mk("generic", "user=1,item=2,type=const:CLICK,time=3", NULL);
  mtld_event_t *ev = NULL;
  size_t n = 0;
  CHECK(mtld_conv_read_all(c, in, 0, &ev, &n, err, sizeof err) == MTLD_OK);
  fclose(in);
  CHECK(n == 1);
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 2 && st.bad_by_reason[MTLD_CONV_BAD_CSV] == 1 && st.lines == 3);
  free(ev);
  mtld_conv_free(c);
}

/* Item 8: null markers: "NA" is no user (counted as null_id), not one user;
 * the set is configurable. */
static void test_nulls(void) {
  mtld_conv_t *c =
      mk("generic", "header=1,sep=;,user=userId,item=itemId,type=const:CLICK,time=ts", NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  feed(c, &s, "userId;itemId;ts");
  feed(c, &s, "NA;81766;1700000000");
  feed(c, &s, "NULL;81766;1700000000");
  feed(c, &s, "7;\\N;1700000000");
  feed(c, &s, ";81766;1700000000"); /* empty: missing_id as before */
  feed(c, &s, "7;81766;1700000000");
  CHECK(s.n == 1 && s.ev[0].user_id == 7);
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_NULL_ID] == 3);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_MISSING_ID] == 1);
  CHECK(strcmp(mtld_conv_bad_name(MTLD_CONV_BAD_NULL_ID), "null_id") == 0);
  mtld_conv_free(c);

  /* a user's own null set replaces the default; a null rating is absent */
  c = mk("generic", "user=1,item=2,type=const:REVIEW,rating=3,null=-|?", NULL);
  if (c) {
    sink_t s2 = {0};
    feed(c, &s2, "NA,5,4"); /* "NA" is an id now */
    feed(c, &s2, "-,5,4");  /* null_id */
    feed(c, &s2, "u,5,?");  /* bad_rating: a REVIEW without a rating */
    CHECK(s2.n == 1 && s2.n >= 1 && s2.ev[0].user_id == h("NA"));
    mtld_conv_stats(c, &st);
    CHECK(st.bad_by_reason[MTLD_CONV_BAD_NULL_ID] == 1);
    CHECK(st.bad_by_reason[MTLD_CONV_BAD_RATING] == 1);
    mtld_conv_free(c);
  }
  /* a header column may be called NA */
  c = mk("generic", "header=1,user=NA,item=i,type=const:CLICK", NULL);
  if (c) {
    sink_t s3 = {0};
    CHECK(feed(c, &s3, "NA,i") == MTLD_OK);
    feed(c, &s3, "4,5");
    CHECK(s3.n == 1 && s3.ev[0].user_id == 4);
    mtld_conv_free(c);
  }
}

/* Item 9: time from a date plus an offset column (Diginetica), and the zone
 * of ISO/date times without an offset. */
static void test_time_offset_tz(void) {
  mtld_conv_t *c = mk("generic",
                      "header=1,sep=;,user=sessionId,item=itemId,type=const:CLICK,"
                      "time=eventdate,time_unit=date,time_offset=timeframe",
                      NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  feed(c, &s, "sessionId;userId;itemId;timeframe;eventdate");
  feed(c, &s, "1;NA;81766;526309;2016-05-09");
  feed(c, &s, "1;NA;31331;1031018;2016-05-09");
  feed(c, &s, "2;NA;31331;soon;2016-05-09"); /* bad_time */
  CHECK(s.n == 2);
  if (s.n == 2) {
    CHECK(s.ev[0].time_ms == 1462752000000LL + 526309);
    CHECK(s.ev[1].time_ms == 1462752000000LL + 1031018);
    CHECK(s.ev[0].user_id == 1);
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_TIME] == 1);
  mtld_conv_free(c);

  /* seconds offsets; the zone applies to times without one, not to Z/+hh:mm */
  c = mk("generic",
         "user=1,item=2,type=const:CLICK,time=3,time_unit=iso,time_offset=4,time_offset_unit=s,"
         "tz=+08:00",
         NULL);
  if (c) {
    sink_t s2 = {0};
    feed(c, &s2, "1,2,2017-11-25 08:00:00,0");
    feed(c, &s2, "1,2,2017-11-25T00:00:00Z,10");
    feed(c, &s2, "1,2,2017-11-25T00:00:00-01:00,0");
    CHECK(s2.n == 3);
    if (s2.n == 3) {
      CHECK(s2.ev[0].time_ms == 1511568000000LL);
      CHECK(s2.ev[1].time_ms == 1511568000000LL + 10000);
      CHECK(s2.ev[2].time_ms == 1511568000000LL + 3600000);
    }
    mtld_conv_free(c);
  }
  c = mk("generic", "user=1,item=2,type=const:CLICK,time=3,time_unit=date,tz=-05:30", NULL);
  if (c) {
    sink_t s3 = {0};
    feed(c, &s3, "1,2,2016-05-09");
    CHECK(s3.n == 1 && s3.ev[0].time_ms == 1462752000000LL + 5 * 3600000 + 30 * 60000);
    mtld_conv_free(c);
  }
}

/* Item 6: several inputs in one conversion: each has its header, counts
 * add up, equal rows of two files are two events. */
static void test_several_files(void) {
  mtld_conv_t *c = mk("generic", "header=1,user=u,item=i,type=const:CLICK,time=t", NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  feed(c, &s, "u,i,t");
  feed(c, &s, "1,2,1700000000");
  mtld_conv_next_file(c);
  CHECK(feed(c, &s, "t,i,u") == MTLD_OK); /* its own header, other column order */
  feed(c, &s, "1700000000,2,1");
  feed(c, &s, "1700000005,3,1");
  CHECK(s.n == 3);
  if (s.n == 3) {
    CHECK(s.ev[1].user_id == 1 && s.ev[1].item_id == 2 && s.ev[1].time_ms == 1700000000000LL);
    CHECK(s.ev[2].item_id == 3);
    CHECK(s.ev[0].event_id != s.ev[1].event_id);
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.rows == 3 && st.converted == 3);
  mtld_conv_free(c);

  /* the first file's ids are those of a single-file conversion */
  c = mk("generic", "header=1,user=u,item=i,type=const:CLICK,time=t", NULL);
  if (c) {
    sink_t s2 = {0};
    feed(c, &s2, "u,i,t");
    feed(c, &s2, "1,2,1700000000");
    CHECK(s2.n == 1 && s2.ev[0].event_id == s.ev[0].event_id);
    mtld_conv_free(c);
  }
}

/* attr.NAME=COLUMN (categorical) and attr.NAME=num:COLUMN (numeric). */
static void test_attrs(void) {
  mtld_conv_t *c = mk("generic",
                      "header=1,user=uid,item=sku,type=ev,time=ts,attr.age_level=age,"
                      "attr.brand=3,attr.discount=num:disc",
                      NULL);
  CHECK(c != NULL);
  if (!c) return;
  sink_t s = {0};
  CHECK(feed(c, &s, "uid,sku,brand,ev,ts,age,disc") == MTLD_OK);
  CHECK(feed(c, &s, "u1,i1,b-981,IMPRESSION,1700000000,3,0.2") == MTLD_OK);
  CHECK(feed(c, &s, "u1,i1,NA,CLICK,1700000001,,") == MTLD_OK);      /* null / empty: absent */
  CHECK(feed(c, &s, "u1,i1,b,CLICK,1700000002,3,cheap") == MTLD_OK); /* bad_number */
  CHECK(s.n == 2);
  if (s.n == 2) {
    const mtld_event_t *e = &s.ev[0];
    CHECK(e->n_attrs == 3);
    int i = mtld_event_attr_find(e, h("age_level"));
    CHECK(i >= 0 && !mtld_event_attr_is_num(e, i) && e->attrs[i].v.value_id == h("3"));
    i = mtld_event_attr_find(e, h("brand"));
    CHECK(i >= 0 && e->attrs[i].v.value_id == h("b-981"));
    i = mtld_event_attr_find(e, h("discount"));
    CHECK(i >= 0 && mtld_event_attr_is_num(e, i) && e->attrs[i].v.num == 0.2);
    CHECK(s.ev[1].n_attrs == 0);
  }
  mtld_conv_stats_t st;
  mtld_conv_stats(c, &st);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_NUMBER] == 1);
  mtld_conv_free(c);
  /* labelled rows: the click and purchase carry the row's attributes too */
  c = mk("generic", "user=1,item=2,click=3,purchase=4,attr.g=5", NULL);
  CHECK(c != NULL);
  if (!c) return;
  memset(&s, 0, sizeof s);
  CHECK(feed(c, &s, "u,i,1,1,x") == MTLD_OK);
  CHECK(s.n == 3);
  for (int k = 0; k < s.n; k++)
    CHECK(s.ev[k].n_attrs == 1 && s.ev[k].attrs[0].name_id == h("g") &&
          s.ev[k].attrs[0].v.value_id == h("x"));
  mtld_conv_free(c);
  /* a missing column of a row is too_few_columns; an unknown header name is refused */
  c = mk("generic", "user=1,item=2,type=const:CLICK,attr.g=9", NULL);
  CHECK(c != NULL);
  if (!c) return;
  memset(&s, 0, sizeof s);
  CHECK(feed(c, &s, "u,i") == MTLD_OK && s.n == 0);
  mtld_conv_stats(c, &st);
  CHECK(st.bad_by_reason[MTLD_CONV_BAD_COLUMNS] == 1);
  mtld_conv_free(c);
  c = mk("generic", "header=1,user=1,item=2,type=const:CLICK,attr.g=nosuch", NULL);
  char err[256] = "";
  CHECK(c && mtld_conv_line(c, "a,b", 3, sink_push, &s, err, sizeof err) != MTLD_OK &&
        strstr(err, "attr.g"));
  mtld_conv_free(c);
}

int main(void) {
  test_taobao();
  test_sort_stable();
  test_amazon();
  test_aliccp();
  test_aliexpress();
  test_generic();
  test_map_errors();
  test_iso();
  test_multiline_records();
  test_nulls();
  test_time_offset_tz();
  test_several_files();
  test_attrs();
  return CHECK_DONE();
}
