/* fuzz_decode_json.c - libFuzzer target: JSON decoding and validation (the
 * checks are in fuzz_decode.h). */
#include "fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_decode_one(data, size, MTLD_FMT_JSON);
}
