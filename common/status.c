/* status.c - names of the status codes. */
#include "common/status.h"

const char *mtld_status_str(mtld_status_t st) {
  switch (st) {
  case MTLD_OK: return "ok";
  case MTLD_ERR_INVALID: return "invalid";
  case MTLD_ERR_IO: return "io error";
  case MTLD_ERR_NOMEM: return "out of memory";
  case MTLD_ERR_CONFIG: return "config error";
  case MTLD_ERR_SCHEMA: return "schema mismatch";
  case MTLD_ERR_CORRUPT: return "corrupt";
  case MTLD_ERR_RETRY: return "retry";
  case MTLD_ERR_NOTFOUND: return "not found";
  }
  return "unknown";
}
