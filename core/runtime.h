/*
 * runtime.h — running a checked pipeline: one thread per stage, a bounded
 * queue in front of each operator and sink, batches and in-band control
 * items (watermarks, end of stream) flowing along the graph's edges.
 *
 * Why a thread per stage: stages are few (a handful to a few dozen), a
 * thread per stage gives pipeline parallelism on every core with no
 * scheduler to tune, and a stage blocked in I/O never stalls another.
 * Backpressure is the queues' bound: emit() blocks while a consumer's queue
 * is full, so a slow sink slows everything upstream down to its pace and
 * memory stays bounded by (stages x queue bound x batch size).
 *
 * Shutdown: sl_runtime_stop() asks sources to stop; each source sends end of
 * stream downstream; each stage, once every input has ended, flushes and
 * passes end of stream on. A bounded source that runs out first sends the
 * watermark +infinity, so event-time operators fire everything they hold.
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "eventtime.h"
#include "graph.h"
#include "histogram.h"
#include "log.h"
#include "queue.h"

typedef struct sl_runtime sl_runtime;

typedef struct sl_edge {
    sluice_ctx *to;
    unsigned input;
} sl_edge;

typedef struct sl_output {
    size_t nedges;
    sl_edge *edges;
} sl_output;

/* Counts by reject reason, for the errors metric and the final summary. */
typedef struct sl_reason_count {
    char reason[32];
    _Atomic uint64_t count;
} sl_reason_count;
#define SL_MAX_REASONS 16

/* One running stage. The host table's `sluice_ctx *` is this. */
struct sluice_ctx {
    sl_runtime *rt;
    sl_stage_cfg *cfg;
    const sluice_plugin_def *def;
    void *self;
    bool created;

    /* create() time: config_error() reports into diag. */
    sl_diag *diag;
    int config_errors;

    /* Edges: outputs[0] is the main output, outputs[1..] the extra ones. */
    size_t noutputs;
    sl_output *outputs;
    sl_queue *queue; /* operators and sinks */
    unsigned ninputs, inputs_ended;
    int64_t *input_wm;
    uint8_t *input_state; /* per input: INPUT_ACTIVE, INPUT_IDLE or INPUT_ENDED */
    int64_t wm;      /* the stage's input watermark (operators, sinks) */

    /* Checkpoints. Sources: the barrier the coordinator asks for and the
     * last one sent. Others: per input, the last barrier received, and the
     * items held back from inputs already at the barrier being aligned. */
    _Atomic uint64_t barrier_request;
    uint64_t barrier_done;
    uint64_t *input_barrier;
    /* The newest checkpoint outcome this stage has been told of (commit or
     * abort), and for sources the commit the coordinator asks them for. */
    uint64_t outcome_epoch;
    _Atomic uint64_t commit_request;
    int64_t align_started_ns;          /* first barrier of the epoch being aligned */
    _Atomic int64_t align_ns;          /* total time inputs were held back */
    size_t nstash, capstash;
    sl_item *stash;

    /* Sources: event time and watermark. */
    sluice_name time_field;
    sl_watermark source_wm;

    /* Rejected records waiting to go to the `errors` output. */
    sluice_batch *err_batch;
    sluice_name n_error, n_stage, n_raw;
    sl_ratelimit reject_log;
    char fail_reason[512];

    /* Counters read by the status line (and the metrics layer later). */
    _Atomic uint64_t records_in, records_out, errors, batches_in;
    _Atomic uint64_t progress_done, progress_total;
    _Atomic int64_t blocked_ns;
    _Atomic bool paused;     /* sources: reading nothing (memory_limit, full queues) */
    int64_t paused_since_ns; /* sources: the last time paused time was counted */
    _Atomic uint64_t records_late, state_keys, state_bytes;
    sl_histogram batch_time;  /* process()/write() of one batch */
    sl_histogram queue_wait;  /* a batch's wait in this stage's queue */
    sl_histogram latency;     /* sinks: ingest to written, per record */
    sl_reason_count reasons[SL_MAX_REASONS];

    pthread_t thread;
    bool thread_started;
    _Atomic bool ended;    /* its loop is over (it may still await a commit) */
    _Atomic bool finished;
    bool failed;
};

struct sl_runtime {
    sl_pipeline_cfg *cfg;
    sl_graph *graph;
    size_t nstages;
    sluice_ctx *stages;
    unsigned queue_batches;
    _Atomic int stopping;
    _Atomic int failed;
    _Atomic size_t running;
    int64_t started_ns;
    struct sl_checkpoint *checkpoint; /* NULL: checkpoints off */
    _Atomic uint64_t final_epoch;     /* sources stop at this barrier */
    /* No checkpoint outcome will come any more (the final one finished or
     * none can be taken): stages waiting for one at their end stop waiting. */
    _Atomic bool outcomes_over;
    struct sl_registry *registry;     /* metrics plugins define */
    /* Woken with SIGUSR1 (blocked everywhere, waited for by the caller)
     * when the last stage thread ends, so the end of a run is noticed at
     * once rather than at the next timeout. */
    pthread_t waiter;
    bool wake_waiter;
};

/* Create every stage's plugin instance (create(): no I/O). Configuration
 * problems land in diag as file:line:col. NULL when any stage failed. */
sl_runtime *sl_runtime_new(sl_pipeline_cfg *cfg, sl_graph *graph, sl_diag *diag);
/* start() every plugin, sinks first, then the threads. -1 when a start()
 * failed (logged). */
int sl_runtime_start(sl_runtime *rt);
/* The calling thread gets SIGUSR1 when the last stage thread ends. */
void sl_runtime_notify_done(sl_runtime *rt);
void sl_runtime_stop(sl_runtime *rt);     /* async-signal-safe */
/* Checkpoints: ask the sources for barrier `epoch`; final: stop after it. */
void sl_runtime_barrier(sl_runtime *rt, uint64_t epoch, bool final);
/* Tell sinks and sources checkpoint `epoch` is complete. */
void sl_runtime_commit(sl_runtime *rt, uint64_t epoch);
/* The final checkpoint `epoch` failed: sinks discard what they prepared. */
void sl_runtime_abort(sl_runtime *rt, uint64_t epoch);
/* No checkpoint outcome will come any more. */
void sl_runtime_outcomes_over(sl_runtime *rt);
/* Every source has finished (bounded input ran out, or it failed). */
bool sl_runtime_sources_done(sl_runtime *rt);
/* host->checkpoint_now (host.c): on a source's thread. */
int sl_runtime_checkpoint_now(sluice_ctx *ctx, int64_t timeout_ms, char *err, size_t errlen);
bool sl_runtime_done(sl_runtime *rt);     /* every stage thread has finished */
int sl_runtime_join(sl_runtime *rt);      /* 0 ok, 1 a stage failed */
void sl_runtime_free(sl_runtime *rt);     /* destroy() every plugin */

/* The runtime side of the host table (host.c). */
int sl_stage_emit(sluice_ctx *ctx, size_t output, sluice_batch *b);
int sl_stage_reject(sluice_ctx *ctx, const sluice_record *rec, sluice_str raw,
                    const char *reason, const char *detail);
void sl_stage_flush_errors(sluice_ctx *ctx);

extern const sluice_host sl_host;

#endif
