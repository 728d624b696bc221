/* limits.h - sizes that cross rooms and so have one definition here: an
 * event's scenario name travels from the decoder (daemon/) through the
 * event and the feature store (features/) into samples and progressive
 * validation (trainer/) and the snapshot's metrics (durable/). */
#ifndef MTLD_LIMITS_H
#define MTLD_LIMITS_H

/* Bytes of a scenario name including the terminating NUL (at most 31
 * characters are accepted: longer ones are rejected as too_large). */
#define MTLD_SCENARIO_MAX 32

#endif
