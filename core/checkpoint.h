/*
 * checkpoint.h — consistent snapshots of a running pipeline, and restoring
 * the newest one on start (Flink's aligned barriers).
 *
 * The coordinator, driven from the main thread, asks every source for
 * barrier N; a source snapshots its read position and sends the barrier
 * downstream in-band, after everything it emitted before; an operator
 * with several inputs holds back the inputs that have delivered barrier N
 * until all have (alignment), then snapshots its state and passes the
 * barrier on; a sink makes what it wrote durable (prepare) and snapshots.
 * When every stage has answered, the state files and then the MANIFEST are
 * written atomically, and sinks are told to commit. Each snapshot is thus
 * the state after exactly the records before barrier N, everywhere.
 *
 * On disk: DIR/PIPELINE/chk-N/STAGE.state and MANIFEST (text, with CRC-32s
 * of every state file and of itself). A checkpoint without a valid
 * MANIFEST, or with a damaged state file, is skipped for the one before.
 */
#ifndef SLUICE_CHECKPOINT_H
#define SLUICE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_runtime sl_runtime;
typedef struct sl_checkpoint sl_checkpoint;

typedef struct sl_checkpoint_opts {
    const char *dir;        /* checkpoint.dir */
    const char *pipeline;   /* the pipeline's name: a folder under dir */
    int64_t interval_ms;    /* 0: only the final checkpoint at shutdown */
    int retain;
    const char *events_log; /* NULL: none */
    int64_t timeout_ms;     /* one not complete by then has failed; 0: none */
} sl_checkpoint_opts;

sl_checkpoint *sl_checkpoint_new(sl_runtime *rt, const sl_checkpoint_opts *o);
void sl_checkpoint_free(sl_checkpoint *cp);

/* Before start(): load the newest valid checkpoint and hand each stage its
 * state. 0 (also when there is none), or -1 with err set when the
 * checkpoint does not fit this pipeline (a configuration error). */
int sl_checkpoint_restore(sl_checkpoint *cp, char *err, size_t errlen);
/* --from-scratch: remove this pipeline's checkpoints. */
int sl_checkpoint_discard(sl_checkpoint *cp);

/* Main thread: start a checkpoint when one is due, finish one whose
 * stages have all answered. Returns ms until it wants to be called again. */
int64_t sl_checkpoint_tick(sl_checkpoint *cp);
/* The final checkpoint of a graceful stop: sources stop at its barrier.
 * false when none can be taken (one is already final). */
bool sl_checkpoint_final(sl_checkpoint *cp);
void sl_checkpoint_event(sl_checkpoint *cp, const char *json_fields);
/* Any thread: start a checkpoint at the next tick (one already in flight
 * finishes first). The caller wakes the main thread. */
void sl_checkpoint_request(sl_checkpoint *cp);

/* Stage threads: the state of stage `stage` at barrier `epoch` (blob is
 * malloc()ed, ownership moves; NULL for none), or its final state when it
 * ended (epoch 0). ok=false: the stage could not snapshot. */
void sl_checkpoint_ack(sl_checkpoint *cp, size_t stage, uint64_t epoch, void *blob,
                       size_t len, bool ok);

/* For the metrics layer and /status. */
typedef struct sl_checkpoint_stats {
    uint64_t completed, failed;
    uint64_t last_epoch;        /* of the newest completed one */
    uint64_t last_failed_epoch; /* of the newest failed one */
    double last_duration_ms;
    uint64_t last_bytes;
    int64_t last_success_ms; /* wall clock; 0: never */
} sl_checkpoint_stats;

void sl_checkpoint_stats_get(sl_checkpoint *cp, sl_checkpoint_stats *out);

uint32_t sl_crc32(uint32_t crc, const void *data, size_t len);

#endif
