/* partition.h - one identity for a consumed partition.
 *
 * A record comes from (topic, partition), the Kafka coordinate under which
 * the store persists offsets and the watermark tracks event time.  The
 * store's per-partition item views and the joiner's keys and release order
 * need one number per partition, unique across topics and stable across
 * restarts: the partition id
 *     id = topic_index << 16 | partition
 * where topic_index is the topic's place in the configured topic list (so
 * the list's order must not change while state exists) and partition is
 * 0..MTLD_PARTITION_MAX.  The table below is the only place that makes ids:
 * it refuses, with a message, a topic outside the list, a partition number
 * that does not fit in 16 bits, and more partitions than it holds - nothing
 * maps silently to a wrong or shared id.
 *
 * Thread: one thread owns a table (the daemon's main loop). */
#ifndef MTLD_PARTITION_H
#define MTLD_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* A partition id (>= 0); the store and the joiner take it as their
 * `partition` argument. */
typedef int32_t mtld_partition_id_t;

#define MTLD_PARTITION_MAX 65535      /* greatest encodable partition number */
#define MTLD_PARTITION_MAX_TOPICS 256 /* topics a table can name (ids stay < 2^24) */
#define MTLD_PARTITION_TABLE_CAP 1024 /* partitions one table (one daemon) can hold */

typedef struct mtld_partition_table mtld_partition_table_t;

/* The id of (topic_index, partition), or -1 when either is out of range
 * (topic_index outside 0..MTLD_PARTITION_MAX_TOPICS-1, partition outside
 * 0..MTLD_PARTITION_MAX). */
mtld_partition_id_t mtld_partition_id(int topic_index, int32_t partition);

/* The topic index and the partition number an id was made of. */
int mtld_partition_id_topic(mtld_partition_id_t id);
int32_t mtld_partition_id_number(mtld_partition_id_t id);

/* Creates a table over n_topics topic names (copied; index = place in the
 * list).  MTLD_OK and *out; MTLD_ERR_INVALID (no topic, too many, an empty
 * or repeated name) or MTLD_ERR_NOMEM, with err set. */
mtld_status_t mtld_partition_table_create(mtld_partition_table_t **out, const char *const *topics,
                                          int n_topics, char *err, size_t errlen);

/* Frees.  NULL is a no-op. */
void mtld_partition_table_destroy(mtld_partition_table_t *t);

/* The slot (0..count-1, stable for the table's life) of (topic, partition),
 * added when new.  MTLD_OK and *slot, or MTLD_ERR_CONFIG (fatal: the
 * deployment does not fit the configuration) when the topic is not one of
 * the table's, when the partition number is outside 0..MTLD_PARTITION_MAX,
 * or when MTLD_PARTITION_TABLE_CAP partitions are held already; err says
 * which, naming the topic and partition.  Looking up the previous slot again
 * is O(1), others linear. */
mtld_status_t mtld_partition_table_get(mtld_partition_table_t *t, const char *topic,
                                       int32_t partition, int *slot, char *err, size_t errlen);

/* The slot of (topic, partition) when held: 1 and *slot, else 0.  Adds
 * nothing. */
int mtld_partition_table_find(const mtld_partition_table_t *t, const char *topic, int32_t partition,
                              int *slot);

/* What a slot holds: the id, the topic name (the table's copy) and the
 * partition number. */
mtld_partition_id_t mtld_partition_table_id(const mtld_partition_table_t *t, int slot);
const char *mtld_partition_table_topic(const mtld_partition_table_t *t, int slot);
int32_t mtld_partition_table_partition(const mtld_partition_table_t *t, int slot);

/* Partitions held. */
int mtld_partition_table_count(const mtld_partition_table_t *t);

#endif
