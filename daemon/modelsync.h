/* modelsync.h - one model over several instances: the shared part of the
 * model (trainer/delta.h) exchanged through a Kafka topic
 * (scaleout.model_topic, one partition), asynchronously.
 *
 * Every instance, every scaleout.sync_interval or scaleout.sync_samples
 * trained samples, publishes the delta of its shared part since its last
 * publication and adds every other instance's deltas to its model as they
 * arrive (between two samples, under the trainer's lock).  Now and then
 * (scaleout.base_interval, by whichever instance saw no base for that long)
 * an instance publishes a base: its view of the shared model, with the
 * offset of the last topic message it had consumed and the offset a
 * starting instance replays from.  A starting instance (new, or restarted
 * from its checkpoint) reads the topic before it trains: the latest base,
 * then every delta the base does not hold (daemon/syncframe.h), so it
 * starts from the current shared model; with no base in the topic it
 * starts from the initial weights plus every delta the topic holds.
 *
 * Bounded staleness (scaleout.max_stale_rounds = S, stale-synchronous
 * parallel): an instance's round is the number of non-empty deltas it
 * published (in each DELTA's frame); an instance does not train past its
 * round r + S until it has applied every live peer's round r.  Peers are
 * the senders read on the topic, their rounds aligned with ours when first
 * seen (one round of credit) and when back from idle; an instance with
 * nothing learned since its last round publishes an empty DELTA (an idle
 * marker) and is not waited for until its next non-empty one; a peer read
 * nothing from for scaleout.peer_timeout is dropped (logged, counted) until
 * its next message.  The wait releases the trainer lock, publishes idle
 * markers every sync_interval (so two instances never wait for each other
 * longer than that), and ends when the feed drains or stops (a cut, a
 * reload, shutdown) or the synchroniser is finished or freed.  A leaving
 * instance's last message is an idle marker.
 *
 * Messages: key = the sender's instance id (random per process); value = a
 * 64-byte frame header (daemon/syncframe.h: "MTLDMSY2", sender, sequence,
 * chunk, chunks, shape, a base's consumed and replay_from marks, kind) and a
 * chunk of the encoded delta (at most 512 KiB, so a default broker's 1 MB
 * message limit holds).  Messages of another shape (model configuration,
 * feature definitions or scaleout.sync_accumulators) or another format
 * version are logged and ignored, counted.  A base records from which offset
 * a starting instance must replay: a delta whose chunks straddle the base
 * (its first chunk read by the base's author, its last not yet) is not in the
 * base and is replayed whole.
 *
 * Threads: every function from the main thread.  The model work - applying
 * the received deltas, extracting this instance's delta (every
 * sync_interval, or every scaleout.sync_samples trained samples) and bases -
 * runs on the trainer thread between two samples (a trainfeed hook, under
 * the trainer lock), so the staleness of a round is counted in samples
 * trained, not in turns of the main loop, and a drained feed is still a
 * consistent cut; mtld_modelsync_tick does the same from the main thread
 * while no sample comes.  The topic's I/O (consuming, reassembling,
 * producing) runs on a sync thread of its own; the two hand messages over
 * in an inbox and an outbox. */
#ifndef MTLD_MODELSYNC_H
#define MTLD_MODELSYNC_H

#include <stddef.h>

#include "common/metricstext.h"
#include "common/status.h"
#include "daemon/config.h"
#include "daemon/trainfeed.h"
#include "trainer/train.h"

typedef struct mtld_modelsync mtld_modelsync_t;

/* Creates the synchroniser of trainer t (fed by feed; both borrowed, they
 * must outlive it) from cfg (scaleout.*, kafka.*); extra_shape (the feature
 * definitions' hash) joins the model's shape.  Then catches up: loads the
 * latest base and the deltas after it into t (call before any sample is
 * pushed).  MTLD_OK; MTLD_ERR_IO (the brokers or the topic unreachable
 * within 30 s), MTLD_ERR_NOMEM, MTLD_ERR_CONFIG with err filled. */
mtld_status_t mtld_modelsync_new(mtld_modelsync_t **out, const mtld_config_t *cfg,
                                 mtld_trainer_t *t, mtld_trainfeed_t *feed, uint64_t extra_shape,
                                 char *err, size_t errlen);

/* Applies the deltas that arrived, extracts this instance's delta when
 * sync_interval has passed and a base when due (the same work the trainer
 * thread does after each sample: this covers the times no sample comes).
 * Takes the trainer lock; the topic's I/O is the sync thread's. */
void mtld_modelsync_tick(mtld_modelsync_t *ms);

/* At shutdown, after the last sample was trained on: publishes the last
 * delta and waits up to timeout_ms for the brokers to have it. */
void mtld_modelsync_finish(mtld_modelsync_t *ms, int timeout_ms);

/* The mtld_modelsync_* families (Prometheus text) and one STATUS fragment
 * ("sync round N, age 0.4 s, ..."). */
void mtld_modelsync_render_metrics(mtld_modelsync_t *ms, mtld_metrics_buf_t *b);
void mtld_modelsync_status(mtld_modelsync_t *ms, char *buf, size_t len);

/* Stops the Kafka clients and frees.  NULL: no-op. */
void mtld_modelsync_free(mtld_modelsync_t *ms);

#endif
