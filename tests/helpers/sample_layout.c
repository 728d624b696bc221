/* sample_layout.c - prints the memory layout of mtld_sample_t (trainer/sample.h)
 * as the compiler lays it out, so that readers of the trainer.dump_samples file
 * in other languages (bench/reference/mtld_torch.py builds a numpy structured
 * dtype from it) cannot drift from the C struct.
 *
 * Output, one line each:
 *   sizeof <bytes>
 *   field <name> <offset> <type> <count>
 * where type is one of u8 i8 i4 f4 u1 c (char) and count is the array length
 * (1 for scalars).
 *   usage: sample_layout */
#include <stddef.h>
#include <stdio.h>

#include "trainer/sample.h"

#define FIELD(name, type, count)                                                                   \
  printf("field %s %zu %s %zu\n", #name, offsetof(mtld_sample_t, name), type, (size_t)(count))

int main(void) {
  mtld_sample_t s;
  printf("sizeof %zu\n", sizeof(mtld_sample_t));
  FIELD(sample_id, "u8", 1);
  FIELD(time_ms, "i8", 1);
  FIELD(partition, "i4", 1);
  FIELD(offset, "i8", 1);
  FIELD(kind, "i4", 1);
  FIELD(weight, "f4", 1);
  FIELD(n_fields, "i4", 1);
  FIELD(fields, "u8", sizeof(s.fields) / sizeof(s.fields[0]));
  FIELD(scenario_id, "u8", 1);
  FIELD(scenario, "c", sizeof(s.scenario));
  FIELD(n_dense, "i4", 1);
  FIELD(dense, "f4", sizeof(s.dense) / sizeof(s.dense[0]));
  FIELD(seq_len, "i4", 1);
  FIELD(seq_items, "u8", sizeof(s.seq_items) / sizeof(s.seq_items[0]));
  FIELD(seq_cats, "u8", sizeof(s.seq_cats) / sizeof(s.seq_cats[0]));
  FIELD(labels, "f4", sizeof(s.labels) / sizeof(s.labels[0]));
  FIELD(label_mask, "u1", 1);
  FIELD(naive, "f4", sizeof(s.naive) / sizeof(s.naive[0]));
  /* the field sizes must match the types printed above */
  _Static_assert(
      sizeof(s.sample_id) == 8 && sizeof(s.time_ms) == 8 && sizeof(s.partition) == 4 &&
          sizeof(s.offset) == 8 && sizeof(s.kind) == 4 && sizeof(s.weight) == 4 &&
          sizeof(s.n_fields) == 4 && sizeof(s.fields[0]) == 8 && sizeof(s.scenario_id) == 8 &&
          sizeof(s.n_dense) == 4 && sizeof(s.dense[0]) == 4 && sizeof(s.seq_len) == 4 &&
          sizeof(s.seq_items[0]) == 8 && sizeof(s.seq_cats[0]) == 8 && sizeof(s.labels[0]) == 4 &&
          sizeof(s.label_mask) == 1 && sizeof(s.naive[0]) == 4,
      "mtld_sample_t field types changed: update sample_layout.c");
  return 0;
}
