/* partition.c - partition ids and the table that makes them (see
 * partition.h). */
#include "features/partition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int topic; /* index into topics */
  int32_t partition;
} entry_t;

struct mtld_partition_table {
  char **topics; /* [n_topics], owned */
  int n_topics;
  entry_t ents[MTLD_PARTITION_TABLE_CAP];
  int n;
  int last; /* the previous lookup's slot */
};

mtld_partition_id_t mtld_partition_id(int topic_index, int32_t partition) {
  if (topic_index < 0 || topic_index >= MTLD_PARTITION_MAX_TOPICS) return -1;
  if (partition < 0 || partition > MTLD_PARTITION_MAX) return -1;
  return (mtld_partition_id_t)((topic_index << 16) | partition);
}

int mtld_partition_id_topic(mtld_partition_id_t id) {
  return (int)(id >> 16);
}

int32_t mtld_partition_id_number(mtld_partition_id_t id) {
  return id & 0xffff;
}

mtld_status_t mtld_partition_table_create(mtld_partition_table_t **out, const char *const *topics,
                                          int n_topics, char *err, size_t errlen) {
  if (n_topics < 1 || n_topics > MTLD_PARTITION_MAX_TOPICS) {
    snprintf(err, errlen, "partition table: %d topics (1..%d)", n_topics,
             MTLD_PARTITION_MAX_TOPICS);
    return MTLD_ERR_INVALID;
  }
  for (int i = 0; i < n_topics; i++) {
    if (!topics[i][0]) {
      snprintf(err, errlen, "partition table: topic %d has no name", i);
      return MTLD_ERR_INVALID;
    }
    for (int k = 0; k < i; k++)
      if (strcmp(topics[k], topics[i]) == 0) {
        snprintf(err, errlen, "partition table: topic %s listed twice", topics[i]);
        return MTLD_ERR_INVALID;
      }
  }
  mtld_partition_table_t *t = calloc(1, sizeof(*t));
  if (!t || !(t->topics = calloc((size_t)n_topics, sizeof(char *)))) goto nomem;
  t->n_topics = n_topics;
  for (int i = 0; i < n_topics; i++)
    if (!(t->topics[i] = strdup(topics[i]))) goto nomem;
  *out = t;
  return MTLD_OK;
nomem:
  mtld_partition_table_destroy(t);
  snprintf(err, errlen, "partition table: out of memory");
  return MTLD_ERR_NOMEM;
}

void mtld_partition_table_destroy(mtld_partition_table_t *t) {
  if (!t) return;
  for (int i = 0; t->topics && i < t->n_topics; i++) free(t->topics[i]);
  free(t->topics);
  free(t);
}

static int topic_index(const mtld_partition_table_t *t, const char *topic) {
  for (int i = 0; i < t->n_topics; i++)
    if (strcmp(t->topics[i], topic) == 0) return i;
  return -1;
}

static int matches(const mtld_partition_table_t *t, int slot, const char *topic,
                   int32_t partition) {
  const entry_t *e = &t->ents[slot];
  return e->partition == partition && strcmp(t->topics[e->topic], topic) == 0;
}

int mtld_partition_table_find(const mtld_partition_table_t *t, const char *topic, int32_t partition,
                              int *slot) {
  if (t->last < t->n && matches(t, t->last, topic, partition)) {
    *slot = t->last;
    return 1;
  }
  for (int i = 0; i < t->n; i++)
    if (matches(t, i, topic, partition)) {
      *slot = i;
      return 1;
    }
  return 0;
}

mtld_status_t mtld_partition_table_get(mtld_partition_table_t *t, const char *topic,
                                       int32_t partition, int *slot, char *err, size_t errlen) {
  if (mtld_partition_table_find(t, topic, partition, slot)) {
    t->last = *slot;
    return MTLD_OK;
  }
  int ti = topic_index(t, topic);
  if (ti < 0) {
    snprintf(err, errlen, "topic %s (partition %d) is not one of the configured topics", topic,
             (int)partition);
    return MTLD_ERR_CONFIG;
  }
  if (mtld_partition_id(ti, partition) < 0) {
    snprintf(err, errlen, "%s[%d]: partition numbers above %d are not supported", topic,
             (int)partition, MTLD_PARTITION_MAX);
    return MTLD_ERR_CONFIG;
  }
  if (t->n == MTLD_PARTITION_TABLE_CAP) {
    snprintf(err, errlen, "%s[%d]: more than %d partitions assigned to one mtld", topic,
             (int)partition, MTLD_PARTITION_TABLE_CAP);
    return MTLD_ERR_CONFIG;
  }
  t->ents[t->n] = (entry_t){.topic = ti, .partition = partition};
  *slot = t->last = t->n++;
  return MTLD_OK;
}

mtld_partition_id_t mtld_partition_table_id(const mtld_partition_table_t *t, int slot) {
  return mtld_partition_id(t->ents[slot].topic, t->ents[slot].partition);
}

const char *mtld_partition_table_topic(const mtld_partition_table_t *t, int slot) {
  return t->topics[t->ents[slot].topic];
}

int32_t mtld_partition_table_partition(const mtld_partition_table_t *t, int slot) {
  return t->ents[slot].partition;
}

int mtld_partition_table_count(const mtld_partition_table_t *t) {
  return t->n;
}
