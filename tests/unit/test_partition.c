/* test_partition.c - the one partition identity (features/partition.h):
 * ids as topic_index << 16 | partition, the table's slots, and its limits
 * (unknown topic, partition numbers above 16 bits, more partitions than the
 * table holds), each a clear error, never a silent or shared id. */
#include <stdio.h>
#include <string.h>

#include "features/partition.h"
#include "tests/unit/check.h"

static char err[512];

static void test_ids(void) {
  CHECK(mtld_partition_id(0, 0) == 0);
  CHECK(mtld_partition_id(0, 7) == 7);
  CHECK(mtld_partition_id(2, 5) == (2 << 16 | 5));
  CHECK(mtld_partition_id(0, MTLD_PARTITION_MAX) == 65535);
  CHECK(mtld_partition_id(0, MTLD_PARTITION_MAX + 1) == -1); /* would collide with (1, 0) */
  CHECK(mtld_partition_id(0, -1) == -1);
  CHECK(mtld_partition_id(-1, 0) == -1);
  CHECK(mtld_partition_id(MTLD_PARTITION_MAX_TOPICS, 0) == -1);
  CHECK(mtld_partition_id(MTLD_PARTITION_MAX_TOPICS - 1, MTLD_PARTITION_MAX) > 0);
}

static void test_create(void) {
  mtld_partition_table_t *t = NULL;
  const char *dup[2] = {"a", "a"}, *empty[1] = {""};
  CHECK(mtld_partition_table_create(&t, dup, 0, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(mtld_partition_table_create(&t, dup, 2, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(strstr(err, "twice") != NULL);
  CHECK(mtld_partition_table_create(&t, empty, 1, err, sizeof err) == MTLD_ERR_INVALID);
  CHECK(t == NULL);
}

static void test_table(void) {
  const char *topics[2] = {"events", "more"};
  mtld_partition_table_t *t = NULL;
  CHECK(mtld_partition_table_create(&t, topics, 2, err, sizeof err) == MTLD_OK);
  int slot = -1, again = -1;
  CHECK(mtld_partition_table_get(t, "more", 3, &slot, err, sizeof err) == MTLD_OK);
  CHECK(slot == 0);
  CHECK(mtld_partition_table_id(t, slot) == (1 << 16 | 3));
  CHECK(strcmp(mtld_partition_table_topic(t, slot), "more") == 0);
  CHECK(mtld_partition_table_partition(t, slot) == 3);
  CHECK(mtld_partition_table_get(t, "events", 3, &again, err, sizeof err) == MTLD_OK);
  CHECK(again == 1 && mtld_partition_table_id(t, again) == 3);
  CHECK(mtld_partition_table_get(t, "more", 3, &again, err, sizeof err) == MTLD_OK);
  CHECK(again == 0); /* the same partition, the same slot */
  CHECK(mtld_partition_table_find(t, "events", 3, &again) && again == 1);
  CHECK(!mtld_partition_table_find(t, "events", 4, &again));
  CHECK(mtld_partition_table_count(t) == 2);

  /* an unknown topic is an error naming it, not index 0 */
  CHECK(mtld_partition_table_get(t, "other", 0, &slot, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "other") != NULL && strstr(err, "not one of the configured") != NULL);
  /* partition numbers beyond 16 bits, and negative ones */
  CHECK(mtld_partition_table_get(t, "events", 65536, &slot, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "events[65536]") != NULL && strstr(err, "65535") != NULL);
  CHECK(mtld_partition_table_get(t, "events", -1, &slot, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(mtld_partition_table_get(t, "events", 65535, &slot, err, sizeof err) == MTLD_OK);
  CHECK(mtld_partition_table_count(t) == 3);

  /* fill the table: the one past the capacity is refused, the held ones stay */
  int ok = 1;
  for (int i = 0; mtld_partition_table_count(t) < MTLD_PARTITION_TABLE_CAP; i++)
    ok &= mtld_partition_table_get(t, "events", 10 + i, &slot, err, sizeof err) == MTLD_OK;
  CHECK(ok);
  CHECK(mtld_partition_table_get(t, "more", 9, &slot, err, sizeof err) == MTLD_ERR_CONFIG);
  CHECK(strstr(err, "more than 1024 partitions") != NULL);
  CHECK(mtld_partition_table_get(t, "more", 3, &slot, err, sizeof err) == MTLD_OK && slot == 0);
  CHECK(mtld_partition_table_count(t) == MTLD_PARTITION_TABLE_CAP);
  mtld_partition_table_destroy(t);
}

int main(void) {
  test_ids();
  test_create();
  test_table();
  return CHECK_DONE();
}
