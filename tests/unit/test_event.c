/* test_event.c - id hashing (XXH64, seed 0, never 0) and event type names. */
#include <string.h>

#include "features/event.h"
#include "tests/unit/check.h"

static void test_hash(void) {
  /* XXH64 reference values: serving systems must reproduce these */
  CHECK(mtld_hash_id("", 0) == UINT64_C(0xef46db3751d8e999));
  CHECK(mtld_hash_id("abc", 3) == UINT64_C(0x44bc2cf5ad770999));
  /* deterministic, length-sensitive, content-sensitive */
  char a[] = "user-42", b[] = "user-42";
  CHECK(mtld_hash_id(a, 7) == mtld_hash_id(b, 7));
  CHECK(mtld_hash_id(a, 7) != mtld_hash_id(a, 6));
  CHECK(mtld_hash_id("user-42", 7) != mtld_hash_id("user-43", 7));
  /* bytes after a NUL count (the hash is over bytes, not a C string) */
  CHECK(mtld_hash_id("a\0b", 3) != mtld_hash_id("a\0c", 3));
  /* no zeros and no collisions over a small range of ids */
  int zeros = 0, collisions = 0;
  uint64_t prev[1000];
  for (int i = 0; i < 1000; i++) {
    char key[16];
    int n = snprintf(key, sizeof key, "item-%d", i);
    prev[i] = mtld_hash_id(key, (size_t)n);
    if (prev[i] == 0) zeros++;
    for (int j = 0; j < i; j++)
      if (prev[j] == prev[i]) collisions++;
  }
  CHECK(zeros == 0);
  CHECK(collisions == 0);
}

static void test_types(void) {
  static const char *const names[] = {"IMPRESSION", "CLICK", "ADD_TO_CART", "PURCHASE", "REVIEW"};
  CHECK(MTLD_N_EVENT_TYPES == 5);
  for (int t = 1; t <= MTLD_N_EVENT_TYPES; t++) {
    const char *n = mtld_event_type_name(t);
    CHECK(n && strcmp(n, names[t - 1]) == 0);
    CHECK(n && mtld_event_type_parse(n) == t);
  }
  CHECK(MTLD_EV_IMPRESSION == 1 && MTLD_EV_REVIEW == 5);
  CHECK(mtld_event_type_name(0) == NULL);
  CHECK(mtld_event_type_name(6) == NULL);
  CHECK(mtld_event_type_name(-1) == NULL);
  CHECK(mtld_event_type_parse("click") == MTLD_EV_CLICK);
  CHECK(mtld_event_type_parse("Add_To_Cart") == MTLD_EV_ADD_TO_CART);
  CHECK(mtld_event_type_parse("purchase") == MTLD_EV_PURCHASE);
  CHECK(mtld_event_type_parse("") == 0);
  CHECK(mtld_event_type_parse("pv") == 0);
  CHECK(mtld_event_type_parse("cart") == 0);
  CHECK(mtld_event_type_parse("buy") == 0);
  CHECK(mtld_event_type_parse("CLICKS") == 0);
  CHECK(mtld_event_type_parse("CLIC") == 0);
}

int main(void) {
  test_hash();
  test_types();
  return CHECK_DONE();
}
