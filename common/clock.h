/* clock.h - the two clocks of mtld.  The monotonic clock paces batches,
 * intervals, timeouts and durations; the wall clock only stamps files and
 * status (informational).  Event time never comes from here. */
#ifndef MTLD_CLOCK_H
#define MTLD_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds (never goes back).  Any thread. */
int64_t mtld_mono_ms(void);

/* CLOCK_MONOTONIC in nanoseconds.  Any thread. */
int64_t mtld_mono_ns(void);

/* CLOCK_REALTIME in milliseconds since the Unix epoch.  Any thread. */
int64_t mtld_wall_ms(void);

#endif
