/* limits.h - sizes that cross rooms and so have one definition here: an
 * event's scenario name travels from the decoder (daemon/) through the
 * event and the feature store (features/) into samples and progressive
 * validation (trainer/) and the snapshot's metrics (durable/); so do the
 * attribute limits. */
#ifndef MTLD_LIMITS_H
#define MTLD_LIMITS_H

/* Bytes of a scenario name including the terminating NUL (at most 31
 * characters are accepted: longer ones are rejected as too_large). */
#define MTLD_SCENARIO_MAX 32

/* Named attributes (schemas/event.proto Attr): at most MTLD_ATTR_MAX on an
 * event (and declared in the config), names of 1..MTLD_ATTR_NAME_LEN bytes,
 * string values of at most MTLD_ATTR_VALUE_LEN bytes.  The decoder rejects
 * more as bad_attr; events, stored features and samples carry them hashed. */
#define MTLD_ATTR_MAX 16
#define MTLD_ATTR_NAME_LEN 63
#define MTLD_ATTR_VALUE_LEN 255

#endif
