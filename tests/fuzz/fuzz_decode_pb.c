/* fuzz_decode_pb.c - libFuzzer target: protobuf decoding and validation (the
 * checks are in fuzz_decode.h). */
#include "fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_decode_one(data, size, MTLD_FMT_PROTOBUF);
}
