/* test_common.c - the helpers of common/: byte encodings round-trip and have
 * the documented byte order, varints match protobuf's, the fs helpers make
 * and remove trees, the clocks do not go back. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/status.h"
#include "tests/unit/check.h"

static void test_fixed(void) {
  uint8_t b[8];
  mtld_put_le32(b, 0x01020304u);
  CHECK(b[0] == 4 && b[1] == 3 && b[2] == 2 && b[3] == 1);
  CHECK(mtld_get_le32(b) == 0x01020304u);
  mtld_put_be32(b, 0x01020304u);
  CHECK(b[0] == 1 && b[1] == 2 && b[2] == 3 && b[3] == 4);
  CHECK(mtld_get_be32(b) == 0x01020304u);
  mtld_put_le64(b, UINT64_C(0x0102030405060708));
  CHECK(b[0] == 8 && b[7] == 1);
  mtld_put_be64(b, UINT64_C(0x0102030405060708));
  CHECK(b[0] == 1 && b[7] == 8);
  static const uint64_t vals[] = {0,           1,
                                  0x7f,        0x80,
                                  0xffffffffu, UINT64_C(0x8000000000000000),
                                  UINT64_MAX,  UINT64_C(0x0123456789abcdef)};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    uint64_t v = vals[i];
    mtld_put_le64(b, v);
    CHECK(mtld_get_le64(b) == v);
    mtld_put_be64(b, v);
    CHECK(mtld_get_be64(b) == v);
    mtld_put_le32(b, (uint32_t)v);
    CHECK(mtld_get_le32(b) == (uint32_t)v);
    mtld_put_be32(b, (uint32_t)v);
    CHECK(mtld_get_be32(b) == (uint32_t)v);
  }
  /* big-endian keys sort bytewise as the numbers do */
  uint8_t k1[8], k2[8];
  mtld_put_be64(k1, 255);
  mtld_put_be64(k2, 256);
  CHECK(memcmp(k1, k2, 8) < 0);
  mtld_put_f32(b, -1.5f);
  CHECK(mtld_get_f32(b) == -1.5f && b[3] == 0xbf && b[2] == 0xc0);
  mtld_put_f64(b, 0.1);
  CHECK(mtld_get_f64(b) == 0.1);
}

static void test_varint(void) {
  uint8_t b[MTLD_VARINT_MAX + 2];
  uint64_t v = 0;
  CHECK(mtld_put_uvarint(b, 0) == 1 && b[0] == 0);
  CHECK(mtld_put_uvarint(b, 300) == 2 && b[0] == 0xac && b[1] == 0x02); /* protobuf's example */
  CHECK(mtld_put_uvarint(b, UINT64_MAX) == MTLD_VARINT_MAX);
  static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, UINT32_MAX, UINT64_MAX};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    size_t n = mtld_put_uvarint(b, vals[i]);
    CHECK(mtld_get_uvarint(b, n, &v) == (int)n && v == vals[i]);
    CHECK(mtld_get_uvarint(b, n - 1, &v) == 0); /* truncated */
  }
  memset(b, 0x80, sizeof b);
  CHECK(mtld_get_uvarint(b, sizeof b, &v) == -1); /* longer than 10 bytes */
}

static void test_hash(void) {
  /* splitmix64's finaliser: the first output of the stream seeded with 0 */
  CHECK(mtld_mix64(0) == UINT64_C(0xe220a8397b1dcdaf));
  CHECK(mtld_mix64(1) != mtld_mix64(2));
}

static void test_fs(void) {
  char root[] = "/tmp/mtld_test_common.XXXXXX";
  CHECK(mkdtemp(root) != NULL);
  char deep[512], file[512], copy[512];
  CHECK(mtld_pathf(deep, sizeof deep, "%s/a/b/c", root) == 0);
  CHECK(mtld_pathf(deep, 4, "%s/a/b/c", root) == -1); /* truncation reported */
  CHECK(mtld_pathf(deep, sizeof deep, "%s/a/b/c", root) == 0);
  CHECK(!mtld_exists(deep));
  CHECK(mtld_mkdir_p(deep) == 0 && mtld_exists(deep));
  CHECK(mtld_mkdir_p(deep) == 0); /* existing: fine */
  mtld_pathf(file, sizeof file, "%s/f", deep);
  int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0 && mtld_write_all(fd, "hello", 5) == 0);
  if (fd >= 0) close(fd);
  mtld_pathf(copy, sizeof copy, "%s/a/g", root);
  CHECK(mtld_copy_file(file, copy) == 0);
  char got[8] = {0};
  fd = open(copy, O_RDONLY);
  CHECK(fd >= 0 && read(fd, got, sizeof got) == 5 && !memcmp(got, "hello", 5));
  if (fd >= 0) close(fd);
  CHECK(mtld_fsync_tree(root) == 0 && mtld_fsync_dir(root) == 0);
  char sub[512];
  mtld_pathf(sub, sizeof sub, "%s/a", root);
  CHECK(mtld_rmtree(sub) == 0 && !mtld_exists(sub) && mtld_exists(root));
  CHECK(mtld_rmtree(sub) == 0); /* absent: fine */
  CHECK(mtld_rmtree(root) == 0 && !mtld_exists(root));
}

static mtld_status_t check_len(const char *dir, char *err, size_t errlen) {
  MTLD_CHECK_DIR_LEN(dir);
  return MTLD_OK;
}

static void test_dir_len(void) {
  char err[128] = "", *longp = malloc(MTLD_DIR_MAX + 2);
  memset(longp, 'x', MTLD_DIR_MAX + 1);
  longp[MTLD_DIR_MAX + 1] = 0;
  CHECK(check_len("/tmp", err, sizeof err) == MTLD_OK);
  CHECK(check_len(longp, err, sizeof err) == MTLD_ERR_INVALID && strstr(err, "too long"));
  free(longp);
}

static void test_clock(void) {
  int64_t a = mtld_mono_ms(), an = mtld_mono_ns();
  int64_t prev = an;
  int backwards = 0;
  for (int i = 0; i < 1000; i++) {
    int64_t n = mtld_mono_ns();
    backwards += n < prev;
    prev = n;
  }
  CHECK(backwards == 0);
  CHECK(mtld_mono_ms() >= a);
  CHECK(mtld_wall_ms() > INT64_C(1600000000000)); /* after 2020 */
}

int main(void) {
  test_fixed();
  test_varint();
  test_hash();
  test_fs();
  test_dir_len();
  test_clock();
  return CHECK_DONE();
}
