/* trainfeed.c - the trainer's thread and its bounded queue (trainfeed.h).
 *
 * A ring of sample slots.  The producer copies into the free slots under the
 * queue lock; the worker takes every slot queued when it wakes and observes
 * them in order without the queue lock (the producer never touches occupied
 * slots), then frees them all at once.  So the queue lock is taken once per
 * push and once per run of samples, and the trainer lock once per sample. */
#include "daemon/trainfeed.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"

struct mtld_trainfeed {
  mtld_trainer_t *trainer;
  mtld_sample_t *slot;
  size_t cap, head, n; /* n slots from head are queued or being observed */
  int busy;            /* the worker is observing slots it took */
  int stopping;
  int draining;               /* drains under way (read without mu by the hook) */
  pthread_mutex_t mu;         /* the queue: head, n, busy, stopping */
  pthread_mutex_t trainer_mu; /* the trainer, while the worker observes */
  pthread_cond_t nonempty, space, idle;
  pthread_t thread;
  mtld_trainfeed_observer_fn obs; /* under trainer_mu */
  void *obs_ctx;
  void (*hook)(void *ctx); /* after each sample, under the trainer lock */
  void *hook_ctx;
};

static void *worker(void *arg) {
  mtld_trainfeed_t *f = arg;
  pthread_mutex_lock(&f->mu);
  for (;;) {
    while (f->n == 0 && !f->stopping) pthread_cond_wait(&f->nonempty, &f->mu);
    if (f->n == 0) break; /* stopping, and nothing left */
    size_t head = f->head, k = f->n;
    f->busy = 1;
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < k; i++) {
      const mtld_sample_t *s = &f->slot[(head + i) % f->cap];
      pthread_mutex_lock(&f->trainer_mu);
      mtld_status_t st = mtld_trainer_observe(f->trainer, s, NULL);
      if (st == MTLD_OK && f->obs) f->obs(f->obs_ctx, s);
      if (f->hook) f->hook(f->hook_ctx);
      pthread_mutex_unlock(&f->trainer_mu);
      if (st != MTLD_OK)
        mtld_log_rl(MTLD_LOG_WARNING, "sample", "sample %" PRIu64 " refused by the trainer",
                    s->sample_id);
    }
    pthread_mutex_lock(&f->mu);
    f->head = (head + k) % f->cap;
    f->n -= k;
    f->busy = 0;
    pthread_cond_signal(&f->space);
    if (f->n == 0) pthread_cond_broadcast(&f->idle);
  }
  f->busy = 0;
  pthread_cond_broadcast(&f->idle);
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

/* Frees the feed's conditions, locks, ring and the feed itself; no thread may use them. */
static void destroy(mtld_trainfeed_t *f) {
  pthread_cond_destroy(&f->idle);
  pthread_cond_destroy(&f->space);
  pthread_cond_destroy(&f->nonempty);
  pthread_mutex_destroy(&f->trainer_mu);
  pthread_mutex_destroy(&f->mu);
  free(f->slot);
  free(f);
}

mtld_status_t mtld_trainfeed_start(mtld_trainfeed_t **out, mtld_trainer_t *t, size_t capacity,
                                   char *err, size_t errlen) {
  *out = NULL;
  mtld_trainfeed_t *f = calloc(1, sizeof *f);
  if (f) f->slot = calloc(capacity ? capacity : 1, sizeof *f->slot);
  if (!f || !f->slot) {
    if (f) free(f);
    snprintf(err, errlen, "trainer thread: no memory for a queue of %zu samples", capacity);
    return MTLD_ERR_NOMEM;
  }
  f->trainer = t;
  f->cap = capacity ? capacity : 1;
  pthread_mutex_init(&f->mu, NULL);
  pthread_mutex_init(&f->trainer_mu, NULL);
  pthread_cond_init(&f->nonempty, NULL);
  pthread_cond_init(&f->space, NULL);
  pthread_cond_init(&f->idle, NULL);
  int rc = pthread_create(&f->thread, NULL, worker, f);
  if (rc != 0) {
    snprintf(err, errlen, "trainer thread: %s", strerror(rc));
    destroy(f);
    return MTLD_ERR_IO;
  }
  *out = f;
  return MTLD_OK;
}

void mtld_trainfeed_push(mtld_trainfeed_t *f, const mtld_sample_t *s) {
  pthread_mutex_lock(&f->mu);
  while (f->n == f->cap) pthread_cond_wait(&f->space, &f->mu);
  f->slot[(f->head + f->n) % f->cap] = *s;
  if (f->n++ == 0 && !f->busy) pthread_cond_signal(&f->nonempty);
  pthread_mutex_unlock(&f->mu);
}

void mtld_trainfeed_drain(mtld_trainfeed_t *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  __atomic_add_fetch(&f->draining, 1, __ATOMIC_RELEASE);
  while (f->n > 0 || f->busy) pthread_cond_wait(&f->idle, &f->mu);
  __atomic_sub_fetch(&f->draining, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&f->mu);
}

void mtld_trainfeed_set_hook(mtld_trainfeed_t *f, void (*fn)(void *ctx), void *ctx) {
  pthread_mutex_lock(&f->trainer_mu);
  f->hook = fn;
  f->hook_ctx = ctx;
  pthread_mutex_unlock(&f->trainer_mu);
}

void mtld_trainfeed_lock(mtld_trainfeed_t *f) {
  if (f) pthread_mutex_lock(&f->trainer_mu);
}

void mtld_trainfeed_unlock(mtld_trainfeed_t *f) {
  if (f) pthread_mutex_unlock(&f->trainer_mu);
}

int mtld_trainfeed_draining(mtld_trainfeed_t *f) {
  return __atomic_load_n(&f->draining, __ATOMIC_ACQUIRE) > 0 ||
         __atomic_load_n(&f->stopping, __ATOMIC_ACQUIRE);
}

void mtld_trainfeed_set_observer(mtld_trainfeed_t *f, mtld_trainfeed_observer_fn fn, void *ctx) {
  if (!f) return;
  mtld_trainfeed_drain(f);
  pthread_mutex_lock(&f->trainer_mu);
  f->obs = fn;
  f->obs_ctx = ctx;
  pthread_mutex_unlock(&f->trainer_mu);
}

size_t mtld_trainfeed_depth(mtld_trainfeed_t *f) {
  pthread_mutex_lock(&f->mu);
  size_t n = f->n;
  pthread_mutex_unlock(&f->mu);
  return n;
}

void mtld_trainfeed_stop(mtld_trainfeed_t *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  __atomic_store_n(&f->stopping, 1, __ATOMIC_RELEASE);
  pthread_cond_signal(&f->nonempty);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thread, NULL);
  destroy(f);
}
