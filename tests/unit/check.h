/* check.h - the tiny assertion kit of mtld's unit tests.  Each CHECK counts a
 * pass or a failure (with file:line); main returns CHECK_DONE(), which prints
 * "N passed, N failed" and exits non-zero when anything failed. */
#ifndef MTLD_CHECK_H
#define MTLD_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond) {                                                                                    \
      check_passed++;                                                                              \
    } else {                                                                                       \
      check_failed++;                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
  do {                                                                                             \
    double check_a_ = (a), check_b_ = (b);                                                         \
    if (fabs(check_a_ - check_b_) <= (tol)) {                                                      \
      check_passed++;                                                                              \
    } else {                                                                                       \
      check_failed++;                                                                              \
      fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g (tol %g)\n", __FILE__,     \
              __LINE__, #a, check_a_, #b, check_b_, (double)(tol));                                \
    }                                                                                              \
  } while (0)

#define CHECK_DONE()                                                                               \
  (printf("%d passed, %d failed\n", check_passed, check_failed), check_failed ? 1 : 0)

#endif
