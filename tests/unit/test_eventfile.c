/* test_eventfile.c - event files: delimited protobuf and JSON lines, framing
 * errors, resume by index, stdin. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/eventfile.h"
#include "tests/unit/check.h"

static char dir[256];
static char err[256];

static void path_of(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static void write_bytes(const char *name, const void *buf, size_t len) {
  char p[512];
  path_of(p, sizeof p, name);
  FILE *fp = fopen(p, "wb");
  if (len) fwrite(buf, 1, len, fp);
  fclose(fp);
}

static mtld_event_t make_event(int i) {
  mtld_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.event_id = (uint64_t)i + 1;
  ev.user_id = 100 + (uint64_t)i % 7;
  ev.item_id = 1000 + (uint64_t)i;
  ev.type = 1 + i % 4;
  ev.time_ms = INT64_C(1700000000000) + i;
  ev.price = i * 0.25;
  snprintf(ev.scenario, sizeof ev.scenario, "s%d", i % 3);
  ev.scenario_id = mtld_hash_id(ev.scenario, strlen(ev.scenario));
  return ev;
}

/* Writes n events in fmt to name; returns 0 on success. */
static int write_events(const char *name, mtld_format_t fmt, int n) {
  char p[512];
  path_of(p, sizeof p, name);
  FILE *fp = fopen(p, "wb");
  int bad = 0;
  for (int i = 0; i < n; i++) {
    mtld_event_t ev = make_event(i);
    char buf[512];
    size_t len = fmt == MTLD_FMT_JSON ? mtld_encode_event_json(&ev, buf, sizeof buf)
                                      : mtld_encode_event_pb(&ev, buf, sizeof buf);
    if (!len || mtld_eventfile_write(fp, fmt, buf, len) != MTLD_OK) bad++;
  }
  fclose(fp);
  return bad;
}

/* Reads a whole file; counts records that decode to make_event(index). */
static int read_all(const char *name, mtld_format_t fmt, mtld_format_t *detected, int *status) {
  char p[512];
  path_of(p, sizeof p, name);
  mtld_eventfile_t *f;
  if (mtld_eventfile_open(&f, p, fmt, err, sizeof err) != MTLD_OK) return -1;
  *detected = mtld_eventfile_format(f);
  int good = 0, r;
  const void *buf;
  size_t len;
  int64_t idx, expect = 0;
  while ((r = mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err)) == 1) {
    mtld_event_t ev, want = make_event((int)idx);
    if (idx == expect &&
        mtld_decode_event(buf, len, MTLD_FMT_AUTO, 65536, &ev, err, sizeof err) == 0 &&
        ev.event_id == want.event_id && ev.item_id == want.item_id && ev.time_ms == want.time_ms &&
        ev.price == want.price && ev.scenario_id == want.scenario_id)
      good++;
    expect++;
  }
  *status = r;
  mtld_eventfile_close(f);
  return good;
}

static void test_round_trip(void) {
  mtld_format_t det;
  int st;
  CHECK(write_events("a.pb", MTLD_FMT_PROTOBUF, 5000) == 0); /* crosses read chunks */
  CHECK(read_all("a.pb", MTLD_FMT_AUTO, &det, &st) == 5000);
  CHECK(det == MTLD_FMT_PROTOBUF && st == 0);
  CHECK(write_events("a.json", MTLD_FMT_JSON, 5000) == 0);
  CHECK(read_all("a.json", MTLD_FMT_AUTO, &det, &st) == 5000);
  CHECK(det == MTLD_FMT_JSON && st == 0);
  CHECK(read_all("a.json", MTLD_FMT_JSON, &det, &st) == 5000);
  CHECK(det == MTLD_FMT_JSON);

  /* empty file: no records in either format */
  write_bytes("empty", "", 0);
  CHECK(read_all("empty", MTLD_FMT_AUTO, &det, &st) == 0 && st == 0);
  CHECK(read_all("empty", MTLD_FMT_JSON, &det, &st) == 0 && st == 0);

  /* missing file */
  mtld_eventfile_t *f = (mtld_eventfile_t *)1;
  CHECK(mtld_eventfile_open(&f, "/nonexistent/x.pb", MTLD_FMT_AUTO, err, sizeof err) ==
            MTLD_ERR_IO &&
        f == NULL && strstr(err, "/nonexistent/x.pb"));
  /* a directory */
  CHECK(mtld_eventfile_open(&f, dir, MTLD_FMT_AUTO, err, sizeof err) != MTLD_OK);
}

static void test_json_lines(void) {
  char lines[2048];
  mtld_event_t e0 = make_event(0), e1 = make_event(1), e2 = make_event(2);
  char j0[256], j1[256], j2[256];
  mtld_encode_event_json(&e0, j0, sizeof j0);
  mtld_encode_event_json(&e1, j1, sizeof j1);
  mtld_encode_event_json(&e2, j2, sizeof j2);
  /* leading blank line, blank lines with spaces, CRLF, no final newline */
  int n = snprintf(lines, sizeof lines, "\n%s\r\n   \n\n\t\r\n%s\n%s", j0, j1, j2);
  write_bytes("b.json", lines, (size_t)n);
  mtld_format_t det;
  int st;
  CHECK(read_all("b.json", MTLD_FMT_AUTO, &det, &st) == 3);
  CHECK(det == MTLD_FMT_JSON && st == 0);

  /* a bad line is a record (index given), not a framing error */
  n = snprintf(lines, sizeof lines, "%s\nnot json\n%s\n", j0, j2);
  write_bytes("c.json", lines, (size_t)n);
  char p[512];
  path_of(p, sizeof p, "c.json");
  mtld_eventfile_t *f;
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_AUTO, err, sizeof err) == MTLD_OK);
  const void *buf;
  size_t len;
  int64_t idx;
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 0);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 1);
  CHECK(len == 8 && memcmp(buf, "not json", 8) == 0);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 2);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  mtld_eventfile_close(f);
}

static void test_big_records(void) {
  /* records larger than the read chunk make the buffer grow */
  char p[512];
  path_of(p, sizeof p, "big.pb");
  FILE *fp = fopen(p, "wb");
  size_t sizes[] = {10, 200000, 3, 1 << 20, 0, 65535, 65536, 65537};
  size_t ns = sizeof sizes / sizeof sizes[0];
  uint8_t *body = malloc(1 << 20);
  for (size_t i = 0; i < ns; i++) {
    memset(body, (int)('a' + i), sizes[i]);
    CHECK(mtld_eventfile_write(fp, MTLD_FMT_PROTOBUF, body, sizes[i]) == MTLD_OK);
  }
  fclose(fp);
  mtld_eventfile_t *f;
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_PROTOBUF, err, sizeof err) == MTLD_OK);
  const void *buf;
  size_t len;
  int64_t idx;
  int good = 0;
  for (size_t i = 0; i < ns; i++) {
    if (mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) != 1) break;
    memset(body, (int)('a' + i), sizes[i]);
    if (idx == (int64_t)i && len == sizes[i] && (len == 0 || memcmp(buf, body, len) == 0)) good++;
  }
  CHECK(good == (int)ns);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  mtld_eventfile_close(f);

  /* the same as JSON lines (one long line) */
  path_of(p, sizeof p, "big.json");
  fp = fopen(p, "wb");
  memset(body, 'x', 300000);
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_JSON, body, 300000) == MTLD_OK);
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_JSON, "{}", 2) == MTLD_OK);
  fclose(fp);
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_JSON, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && len == 300000);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && len == 2 && idx == 1);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  mtld_eventfile_close(f);
  free(body);
}

/* Opens name as protobuf, expects `good` records then a framing error whose
 * message names the record index and offset. */
static void expect_framing_error(const char *name, int good, const char *index_text,
                                 const char *offset_text) {
  char p[512];
  path_of(p, sizeof p, name);
  mtld_eventfile_t *f;
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_PROTOBUF, err, sizeof err) == MTLD_OK);
  const void *buf;
  size_t len;
  int64_t idx;
  int r, n = 0;
  while ((r = mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err)) == 1) n++;
  CHECK(n == good);
  CHECK(r == -1);
  int named = strstr(err, index_text) && strstr(err, offset_text);
  if (!named) fprintf(stderr, "%s: \"%s\"\n", name, err);
  CHECK(named);
  /* sticky */
  err[0] = '\0';
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == -1 && err[0]);
  /* resuming past it fails cleanly */
  CHECK(mtld_eventfile_seek_index(f, good + 5, err, sizeof err) == MTLD_ERR_INVALID);
  mtld_eventfile_close(f);
}

static void test_framing(void) {
  uint8_t b[64];
  /* record 0 ok (3 bytes at offset 0), record 1 says 100 bytes, has 5 */
  memcpy(b,
         "\x03"
         "abc"
         "\x64"
         "12345",
         10);
  write_bytes("trunc_body.pb", b, 10);
  expect_framing_error("trunc_body.pb", 1, "record 1", "offset 4");
  /* a varint cut by the end of the file */
  memcpy(b, "\x01x\x80", 3);
  write_bytes("trunc_len.pb", b, 3);
  expect_framing_error("trunc_len.pb", 1, "record 1", "offset 2");
  /* a length over 64 MiB: refused without allocating it */
  memcpy(b, "\x81\x80\x80\x20", 4); /* 1 + (32 << 21) = 64 MiB + 1 */
  write_bytes("huge_len.pb", b, 4);
  expect_framing_error("huge_len.pb", 0, "record 0", "offset 0");
  CHECK(strstr(err, "limit") != NULL);
  memset(b, 0xff, 20);
  write_bytes("huge_len2.pb", b, 20);
  expect_framing_error("huge_len2.pb", 0, "record 0", "offset 0");
  /* a varint of more than 10 bytes */
  memset(b, 0x80, 12);
  b[12] = 0;
  write_bytes("long_varint.pb", b, 13);
  expect_framing_error("long_varint.pb", 0, "record 0", "offset 0");
  /* exactly 64 MiB as a length is allowed (then truncated here) */
  memcpy(b, "\x80\x80\x80\x20zz", 6);
  write_bytes("max_len.pb", b, 6);
  expect_framing_error("max_len.pb", 0, "record 0", "offset 0");
  CHECK(strstr(err, "truncated") != NULL);
  /* zero-length records are records */
  memcpy(b, "\x00\x00\x02hi", 5);
  write_bytes("zero.pb", b, 5);
  char p[512];
  path_of(p, sizeof p, "zero.pb");
  mtld_eventfile_t *f;
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_AUTO, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_format(f) == MTLD_FMT_PROTOBUF);
  const void *buf;
  size_t len;
  int64_t idx;
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && len == 0 && idx == 0);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && len == 0 && idx == 1);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && len == 2 && idx == 2);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  mtld_eventfile_close(f);
}

static void test_seek(void) {
  CHECK(write_events("s.pb", MTLD_FMT_PROTOBUF, 100) == 0);
  char p[512];
  path_of(p, sizeof p, "s.pb");
  mtld_eventfile_t *f;
  const void *buf;
  size_t len;
  int64_t idx;
  mtld_event_t ev;
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_AUTO, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_seek_index(f, 0, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_seek_index(f, 42, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 42);
  CHECK(mtld_decode_event(buf, len, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) == 0 &&
        ev.event_id == 43);
  CHECK(mtld_eventfile_seek_index(f, 43, err, sizeof err) == MTLD_OK); /* already there */
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 43);
  CHECK(mtld_eventfile_seek_index(f, 10, err, sizeof err) == MTLD_OK); /* back: rewinds */
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 10);
  CHECK(mtld_decode_event(buf, len, MTLD_FMT_PROTOBUF, 65536, &ev, err, sizeof err) == 0 &&
        ev.event_id == 11);
  CHECK(mtld_eventfile_seek_index(f, 100, err, sizeof err) == MTLD_OK); /* at the end */
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 0);
  CHECK(mtld_eventfile_seek_index(f, 101, err, sizeof err) == MTLD_ERR_INVALID &&
        strstr(err, "100 records"));
  CHECK(mtld_eventfile_seek_index(f, -1, err, sizeof err) == MTLD_ERR_INVALID);
  mtld_eventfile_close(f);

  /* JSON: blank lines do not count */
  const char *text = "\n{\"a\":0}\n\n{\"a\":1}\n  \n{\"a\":2}\n";
  write_bytes("s.json", text, strlen(text));
  path_of(p, sizeof p, "s.json");
  CHECK(mtld_eventfile_open(&f, p, MTLD_FMT_AUTO, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_seek_index(f, 2, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1 && idx == 2);
  CHECK(len == 7 && memcmp(buf, "{\"a\":2}", 7) == 0);
  CHECK(mtld_eventfile_seek_index(f, 4, err, sizeof err) == MTLD_ERR_INVALID);
  mtld_eventfile_close(f);
}

static void test_stdin(void) {
  CHECK(write_events("in.json", MTLD_FMT_JSON, 10) == 0);
  char p[512];
  path_of(p, sizeof p, "in.json");
  int saved = dup(STDIN_FILENO);
  int fd = open(p, O_RDONLY);
  CHECK(fd >= 0 && dup2(fd, STDIN_FILENO) == STDIN_FILENO);
  close(fd);
  mtld_eventfile_t *f;
  CHECK(mtld_eventfile_open(&f, "-", MTLD_FMT_AUTO, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_format(f) == MTLD_FMT_JSON);
  CHECK(mtld_eventfile_seek_index(f, 3, err, sizeof err) == MTLD_OK);
  const void *buf;
  size_t len;
  int64_t idx;
  int n = 0;
  while (mtld_eventfile_next(f, &buf, &len, &idx, err, sizeof err) == 1) n++;
  CHECK(n == 7 && idx == 9);
  mtld_eventfile_close(f);
  /* stdin stays open after close */
  CHECK(fcntl(STDIN_FILENO, F_GETFD) != -1);
  dup2(saved, STDIN_FILENO);
  close(saved);

  /* a pipe cannot go back */
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  CHECK(write(pfd[1], "{}\n{}\n{}\n", 9) == 9);
  close(pfd[1]);
  saved = dup(STDIN_FILENO);
  dup2(pfd[0], STDIN_FILENO);
  close(pfd[0]);
  CHECK(mtld_eventfile_open(&f, "-", MTLD_FMT_JSON, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_seek_index(f, 2, err, sizeof err) == MTLD_OK);
  CHECK(mtld_eventfile_seek_index(f, 1, err, sizeof err) == MTLD_ERR_INVALID);
  mtld_eventfile_close(f);
  dup2(saved, STDIN_FILENO);
  close(saved);
}

static void test_write(void) {
  char p[512];
  path_of(p, sizeof p, "w");
  FILE *fp = fopen(p, "wb");
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_AUTO, "x", 1) == MTLD_ERR_INVALID);
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_JSON, "a\nb", 3) == MTLD_ERR_INVALID);
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_PROTOBUF, "", 0) == MTLD_OK);
  uint8_t body[300];
  memset(body, 1, sizeof body);
  CHECK(mtld_eventfile_write(fp, MTLD_FMT_PROTOBUF, body, 300) == MTLD_OK);
  fclose(fp);
  fp = fopen(p, "rb");
  uint8_t got[8];
  CHECK(fread(got, 1, 3, fp) == 3);
  CHECK(got[0] == 0 && got[1] == 0xac && got[2] == 0x02); /* 300 = varint ac 02 */
  fclose(fp);
  /* a failing stream */
  fp = fopen("/dev/full", "wb");
  if (fp) {
    setvbuf(fp, NULL, _IONBF, 0);
    CHECK(mtld_eventfile_write(fp, MTLD_FMT_PROTOBUF, body, 300) == MTLD_ERR_IO);
    CHECK(mtld_eventfile_write(fp, MTLD_FMT_JSON, "{}", 2) == MTLD_ERR_IO);
    fclose(fp);
  }
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/mtld-test-eventfile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_json_lines();
  test_big_records();
  test_framing();
  test_seek();
  test_stdin();
  test_write();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return CHECK_DONE();
}
