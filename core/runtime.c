/*
 * runtime.c — stage threads, fan-out, watermarks and end of stream; see
 * runtime.h for the design.
 */
#include "runtime.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "loader.h"
#include "registry.h"

#define QUEUE_BATCHES 4 /* per stage: enough to overlap stages, small enough to bound memory */

static const char *stage_name(const sluice_ctx *ctx)
{
    return ctx->cfg->name;
}

static bool stopping(const sl_runtime *rt)
{
    return atomic_load_explicit(&rt->stopping, memory_order_relaxed) != 0;
}

/* ---- failure ------------------------------------------------------------ */

/* A stage failed: log it once, mark the run failed and stop the sources.
 * The stage keeps draining its queue so nothing upstream blocks forever. */
static void stage_fail(sluice_ctx *ctx, const char *what, const char *err)
{
    if (ctx->failed)
        return;
    ctx->failed = true;
    const char *msg = err && *err ? err : ctx->fail_reason[0] ? ctx->fail_reason : "failed";
    sl_log(SLUICE_LOG_ERROR, stage_name(ctx), "%s: %s", what, msg);
    atomic_store(&ctx->rt->failed, 1);
    atomic_store(&ctx->rt->stopping, 1);
}

/* ---- output --------------------------------------------------------------- */

static void push_all(sluice_ctx *ctx, const sl_item *item)
{
    for (size_t o = 0; o < ctx->noutputs; o++)
        for (size_t e = 0; e < ctx->outputs[o].nedges; e++) {
            sl_item it = *item;
            it.input = ctx->outputs[o].edges[e].input;
            sl_queue_push(ctx->outputs[o].edges[e].to->queue, &it);
        }
}

static void send_watermark(sluice_ctx *ctx, int64_t wm)
{
    sl_item it = {.kind = SL_ITEM_WATERMARK, .watermark = wm};
    push_all(ctx, &it);
}

static void send_idle(sluice_ctx *ctx)
{
    sl_item it = {.kind = SL_ITEM_IDLE};
    push_all(ctx, &it);
}

/* Sources: pass on what the partition watermarks say. */
static void source_watermark(sluice_ctx *ctx)
{
    int64_t wm;
    switch (sl_watermark_poll(&ctx->source_wm, sl_now_ns(), &wm)) {
    case SL_WM_ADVANCED:
        send_watermark(ctx, wm);
        break;
    case SL_WM_IDLE:
        send_idle(ctx);
        break;
    case SL_WM_SAME:
        break;
    }
}

static void send_eos(sluice_ctx *ctx)
{
    sl_item it = {.kind = SL_ITEM_EOS};
    push_all(ctx, &it);
}

/* Sources: stamp ingest time, read event time from the configured field
 * (rejecting records without a usable one), advance the watermark. */
static void stamp_source_batch(sluice_ctx *ctx, sluice_batch *b)
{
    int64_t now = sl_now_ns();
    uint32_t keep = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        sluice_record *r = &b->records[i];
        if (!r->ingest_ns)
            r->ingest_ns = now;
        if (ctx->time_field) {
            const sluice_value *v = sluice_get(r, ctx->time_field);
            const char *why = "event time field is missing";
            int64_t t;
            if (!v || !sl_event_time_of(v, ctx->cfg->event_time_format, &t, &why)) {
                char detail[256];
                snprintf(detail, sizeof detail, "%s: %s", ctx->cfg->event_time_field, why);
                if (sl_stage_reject(ctx, r, r->raw, "bad_event_time", detail) == SLUICE_ERROR)
                    stage_fail(ctx, "bad record", NULL);
                continue;
            }
            r->time = t;
        }
        if (r->time != SLUICE_TIME_NONE)
            sl_watermark_observe(&ctx->source_wm, r->partition, r->time, now);
        if (keep != i)
            b->records[keep] = *r;
        keep++;
    }
    b->count = keep;
}

int sl_stage_emit(sluice_ctx *ctx, size_t output, sluice_batch *b)
{
    if (!b)
        return SLUICE_OK;
    bool is_source = ctx->cfg->kind == SLUICE_SOURCE;
    if (is_source && output == 0)
        stamp_source_batch(ctx, b);
    if (b->count == 0 || output >= ctx->noutputs || ctx->outputs[output].nedges == 0) {
        sl_batch_unref(b);
        return SLUICE_OK;
    }
    if (output == 0)
        atomic_fetch_add_explicit(&ctx->records_out, b->count, memory_order_relaxed);
    sl_output *out = &ctx->outputs[output];
    for (size_t e = 1; e < out->nedges; e++)
        sl_batch_ref(b);
    /* A source that can pause must not block here, past its peer's
     * patience (Kafka's max.poll.interval.ms): the queue takes this poll's
     * batches over its bound, and the source is paused before the next. */
    bool may_block = !(is_source && ctx->def->pause);
    int64_t blocked = 0;
    for (size_t e = 0; e < out->nedges; e++) {
        sl_item it = {.kind = SL_ITEM_BATCH, .input = out->edges[e].input, .batch = b};
        if (may_block)
            blocked += sl_queue_push(out->edges[e].to->queue, &it);
        else
            sl_queue_push_over(out->edges[e].to->queue, &it);
    }
    if (blocked)
        atomic_fetch_add_explicit(&ctx->blocked_ns, blocked, memory_order_relaxed);
    if (is_source && output == 0)
        source_watermark(ctx);
    return SLUICE_OK;
}

/* ---- rejected records ------------------------------------------------------ */

static void count_reason(sluice_ctx *ctx, const char *reason)
{
    atomic_fetch_add_explicit(&ctx->errors, 1, memory_order_relaxed);
    for (int i = 0; i < SL_MAX_REASONS; i++) {
        sl_reason_count *rc = &ctx->reasons[i];
        if (rc->reason[0] == 0)
            snprintf(rc->reason, sizeof rc->reason, "%s", reason);
        if (strcmp(rc->reason, reason) == 0) {
            atomic_fetch_add_explicit(&rc->count, 1, memory_order_relaxed);
            return;
        }
    }
}

void sl_stage_flush_errors(sluice_ctx *ctx)
{
    if (!ctx->err_batch)
        return;
    sluice_batch *b = ctx->err_batch;
    ctx->err_batch = NULL;
    sl_stage_emit(ctx, (size_t)ctx->cfg->errors_output + 1, b);
}

int sl_stage_reject(sluice_ctx *ctx, const sluice_record *rec, sluice_str raw,
                    const char *reason, const char *detail)
{
    count_reason(ctx, reason);
    if (ctx->cfg->on_error_fail) {
        snprintf(ctx->fail_reason, sizeof ctx->fail_reason, "%s: %s (on_error: fail)", reason,
                 detail);
        return SLUICE_ERROR;
    }
    if (ctx->cfg->errors_output < 0) {
        uint64_t held;
        if (sl_ratelimit_pass(&ctx->reject_log, &held))
            sl_log(SLUICE_LOG_WARN, stage_name(ctx),
                   "dropped a record: %s: %s%s (add `errors: NAME` to keep such records)",
                   reason, detail, held ? " (and more, rate-limited)" : "");
        return SLUICE_RETRY;
    }
    if (ctx->err_batch && ctx->err_batch->count >= ctx->err_batch->capacity)
        sl_stage_flush_errors(ctx);
    if (!ctx->err_batch)
        ctx->err_batch = sl_batch_new(ctx->cfg->batch_size);
    sluice_batch *b = ctx->err_batch;
    sluice_record *r = rec ? sl_record_clone(b, rec) : sl_record_append(b);
    if (!r) {
        sl_log(SLUICE_LOG_ERROR, stage_name(ctx), "out of memory keeping a rejected record");
        return SLUICE_RETRY;
    }
    if (!raw.ptr && rec)
        raw = rec->raw;
    /* `error` leads with the reason word, so it can be grouped on, then the
     * human detail: "bad_json: expected ':' at byte 17". */
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%s: %s", reason, detail);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    sl_set(b, r, ctx->n_error, sluice_string(sl_str(b, msg, (size_t)n)));
    sl_set(b, r, ctx->n_stage, sluice_string(sl_str(b, stage_name(ctx), strlen(stage_name(ctx)))));
    if (raw.ptr)
        sl_set(b, r, ctx->n_raw, sluice_string(sl_str(b, raw.ptr, raw.len)));
    return SLUICE_RETRY;
}

/* ---- stage threads ---------------------------------------------------------- */

static void take_snapshot(sluice_ctx *ctx, uint64_t epoch)
{
    void *blob = NULL;
    size_t len = 0;
    bool ok = !ctx->failed;
    if (ok && ctx->def->snapshot) {
        char err[1024] = "";
        if (ctx->def->snapshot(ctx->self, epoch, &blob, &len, err, sizeof err) != SLUICE_OK) {
            sl_log(SLUICE_LOG_ERROR, stage_name(ctx), "snapshot for checkpoint %llu failed: %s",
                   (unsigned long long)epoch, err);
            free(blob);
            blob = NULL;
            ok = false;
        }
    }
    sl_checkpoint_ack(ctx->rt->checkpoint, (size_t)(ctx - ctx->rt->stages), epoch, blob, len, ok);
}

/* Sources: the position after everything emitted so far, then the
 * barrier, in-band behind those records. */
static void source_barrier(sluice_ctx *ctx, uint64_t epoch)
{
    sl_stage_flush_errors(ctx);
    take_snapshot(ctx, epoch);
    sl_item it = {.kind = SL_ITEM_BARRIER, .epoch = epoch};
    push_all(ctx, &it);
    ctx->barrier_done = epoch;
}

/* Sources: a completed checkpoint the coordinator told us of. */
static void source_commit(sluice_ctx *ctx)
{
    uint64_t want = atomic_load(&ctx->commit_request);
    if (want <= ctx->outcome_epoch)
        return;
    ctx->outcome_epoch = want;
    if (!ctx->def->commit || ctx->failed)
        return;
    char err[1024] = "";
    if (ctx->def->commit(ctx->self, want, err, sizeof err) == SLUICE_ERROR)
        stage_fail(ctx, "commit failed", err);
    sl_stage_flush_errors(ctx);
}

static bool past_final_barrier(const sluice_ctx *ctx)
{
    uint64_t final = atomic_load(&ctx->rt->final_epoch);
    return final && ctx->barrier_done >= final;
}

int sl_runtime_checkpoint_now(sluice_ctx *ctx, int64_t timeout_ms, char *err, size_t errlen)
{
    sl_runtime *rt = ctx->rt;
    if (!rt->checkpoint || ctx->cfg->kind != SLUICE_SOURCE) {
        snprintf(err, errlen, "%s", rt->checkpoint ? "only sources can ask for a checkpoint"
                                                   : "checkpoints are off");
        return SLUICE_RETRY;
    }
    int64_t deadline = sl_now_ns() + timeout_ms * 1000000;
    uint64_t target = 0;
    sl_checkpoint_request(rt->checkpoint);
    if (rt->wake_waiter)
        pthread_kill(rt->waiter, SIGUSR1);
    for (;;) {
        /* Our own barrier is taken here, on our thread: its snapshot covers
         * everything emitted before this call. */
        uint64_t want = atomic_load(&ctx->barrier_request);
        if (want > ctx->barrier_done) {
            source_barrier(ctx, want);
            target = want;
        }
        if (target) {
            sl_checkpoint_stats st;
            sl_checkpoint_stats_get(rt->checkpoint, &st);
            if (st.last_epoch >= target)
                return SLUICE_OK;
            if (st.last_failed_epoch >= target) {
                snprintf(err, errlen, "checkpoint %llu failed", (unsigned long long)target);
                return SLUICE_ERROR;
            }
        }
        if (stopping(rt) || atomic_load(&rt->outcomes_over)) {
            snprintf(err, errlen, "the run is stopping");
            return SLUICE_RETRY;
        }
        if (sl_now_ns() >= deadline) {
            snprintf(err, errlen, "no checkpoint completed within %lld ms",
                     (long long)timeout_ms);
            return SLUICE_RETRY;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- pausing sources: memory_limit and full queues ---------------------- */

/* Records in flight (every live batch: queued, being processed, held for
 * alignment) may take this share of memory_limit; the rest is for state,
 * client libraries' buffers and the program (Flink splits its process
 * memory the same way). Sources stop reading past it and start again
 * below 7/8 of it, so they do not flap. */
#define IN_FLIGHT_SHARE 2 /* memory_limit / 2 */

static bool over_memory(const sl_runtime *rt, bool paused)
{
    int64_t limit = rt->cfg->memory_limit / IN_FLIGHT_SHARE;
    if (limit <= 0)
        return false;
    int64_t live = (int64_t)sl_batch_live_bytes();
    return paused ? live > limit / 8 * 7 : live > limit;
}

/* A consumer queue of this source is full (paused: still over half). */
static bool downstream_full(sluice_ctx *ctx, bool paused)
{
    for (size_t o = 0; o < ctx->noutputs; o++)
        for (size_t e = 0; e < ctx->outputs[o].nedges; e++) {
            sl_queue *q = ctx->outputs[o].edges[e].to->queue;
            unsigned depth = sl_queue_depth(q), cap = sl_queue_capacity(q);
            if (paused ? depth > cap / 2 : depth >= cap)
                return true;
        }
    return false;
}

/* Whether the source should read nothing now. Sources with pause() keep
 * polling (told to read nothing) and also pause on a full queue, where
 * emit() would block them past their peer's patience; the others just
 * block in emit() on a full queue as always. */
static bool should_pause(sluice_ctx *ctx)
{
    bool paused = atomic_load_explicit(&ctx->paused, memory_order_relaxed);
    return over_memory(ctx->rt, paused) || (ctx->def->pause && downstream_full(ctx, paused));
}

/* Apply should_pause(); true when poll() is to be skipped this round. */
static bool source_pause(sluice_ctx *ctx)
{
    bool was = atomic_load_explicit(&ctx->paused, memory_order_relaxed);
    bool now = should_pause(ctx);
    if (was || now) { /* the clock only while paused: polls are frequent */
        int64_t t = sl_now_ns();
        if (was)
            atomic_fetch_add_explicit(&ctx->blocked_ns, t - ctx->paused_since_ns,
                                      memory_order_relaxed);
        ctx->paused_since_ns = t;
    }
    if (now != was) {
        atomic_store_explicit(&ctx->paused, now, memory_order_relaxed);
        sl_log(SLUICE_LOG_DEBUG, stage_name(ctx), "%s reading (%zu bytes in flight)",
               now ? "pausing" : "resuming", sl_batch_live_bytes());
        if (ctx->def->pause) {
            char err[1024] = "";
            if (ctx->def->pause(ctx->self, now, err, sizeof err) == SLUICE_ERROR)
                stage_fail(ctx, now ? "pause failed" : "resume failed", err);
        }
    }
    if (now && !ctx->def->pause) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
        return true;
    }
    return false;
}

static void source_loop(sluice_ctx *ctx)
{
    const sluice_plugin_def *d = ctx->def;
    char err[1024];
    bool exhausted = false;
    while (!stopping(ctx->rt)) {
        uint64_t want = atomic_load(&ctx->barrier_request);
        if (want > ctx->barrier_done)
            source_barrier(ctx, want);
        if (past_final_barrier(ctx))
            return; /* a graceful stop: nothing after the final barrier */
        source_commit(ctx);
        if (source_pause(ctx))
            continue;
        err[0] = 0;
        int rc = d->poll(ctx->self, err, sizeof err);
        sl_stage_flush_errors(ctx);
        if (rc == SLUICE_ERROR) {
            stage_fail(ctx, "poll failed", err);
            break;
        }
        if (rc == SLUICE_DONE) {
            exhausted = true;
            break;
        }
        if (rc == SLUICE_RETRY) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        source_watermark(ctx); /* partitions may have gone idle */
        if (past_final_barrier(ctx))
            return; /* poll() took the final barrier (checkpoint_now) */
    }
    /* Bounded input ran out: every event time has been seen. */
    if (exhausted) {
        send_watermark(ctx, SLUICE_TIME_MAX);
        if (ctx->rt->checkpoint)
            take_snapshot(ctx, 0); /* its final position */
    }
}

enum { INPUT_ACTIVE = 0, INPUT_IDLE, INPUT_ENDED };

/* The stage's input watermark: the minimum over inputs still active. Idle
 * and ended inputs are not waited for. */
static void recompute_watermark(sluice_ctx *ctx)
{
    int64_t m = SLUICE_TIME_MAX;
    unsigned active = 0, idle = 0;
    for (unsigned i = 0; i < ctx->ninputs; i++) {
        if (ctx->input_state[i] == INPUT_IDLE)
            idle++;
        if (ctx->input_state[i] != INPUT_ACTIVE)
            continue;
        active++;
        if (ctx->input_wm[i] < m)
            m = ctx->input_wm[i];
    }
    if (active == 0) {
        /* Every input idle: so is this stage's output. */
        if (idle && ctx->cfg->kind == SLUICE_OPERATOR)
            send_idle(ctx);
        return;
    }
    if (m <= ctx->wm)
        return;
    ctx->wm = m;
    if (ctx->def->on_watermark && !ctx->failed) {
        char err[1024] = "";
        if (ctx->def->on_watermark(ctx->self, m, err, sizeof err) == SLUICE_ERROR)
            stage_fail(ctx, "on_watermark failed", err);
        sl_stage_flush_errors(ctx);
    }
    if (ctx->cfg->kind == SLUICE_OPERATOR)
        send_watermark(ctx, m);
}

static void handle_control(sluice_ctx *ctx, const sl_item *it)
{
    if (it->input >= ctx->ninputs)
        return;
    unsigned k = it->input;
    switch (it->kind) {
    case SL_ITEM_WATERMARK:
        if (it->watermark > ctx->input_wm[k])
            ctx->input_wm[k] = it->watermark;
        ctx->input_state[k] = INPUT_ACTIVE;
        break;
    case SL_ITEM_IDLE:
        ctx->input_state[k] = INPUT_IDLE;
        break;
    case SL_ITEM_EOS:
        ctx->input_state[k] = INPUT_ENDED;
        ctx->inputs_ended++;
        if (ctx->inputs_ended == ctx->ninputs)
            return; /* the stage is ending; nothing to recompute */
        break;
    default:
        return;
    }
    recompute_watermark(ctx);
}

/* ---- barriers ------------------------------------------------------------- */

static uint64_t aligning_epoch(const sluice_ctx *ctx)
{
    uint64_t e = 0;
    for (unsigned i = 0; i < ctx->ninputs; i++)
        if (ctx->input_barrier[i] > e)
            e = ctx->input_barrier[i];
    return e;
}

/* An input that has delivered the barrier being aligned is held back. */
static bool input_blocked(const sluice_ctx *ctx, unsigned k)
{
    uint64_t e = aligning_epoch(ctx);
    if (e == ctx->barrier_done)
        return false;
    return ctx->input_barrier[k] == e;
}

static bool aligned(const sluice_ctx *ctx, uint64_t epoch)
{
    for (unsigned i = 0; i < ctx->ninputs; i++)
        if (ctx->input_barrier[i] < epoch && ctx->input_state[i] != INPUT_ENDED)
            return false;
    return true;
}

static void stash(sluice_ctx *ctx, const sl_item *it)
{
    if (ctx->nstash == ctx->capstash) {
        size_t n = ctx->capstash ? ctx->capstash * 2 : 16;
        sl_item *ns = realloc(ctx->stash, n * sizeof *ns);
        if (!ns)
            abort(); /* cannot hold the input back nor drop it */
        ctx->stash = ns;
        ctx->capstash = n;
    }
    ctx->stash[ctx->nstash++] = *it;
}

/* Every input is at barrier `epoch`: snapshot (sinks first make their
 * output durable) and pass the barrier on. */
static void complete_barrier(sluice_ctx *ctx, uint64_t epoch)
{
    sl_stage_flush_errors(ctx);
    if (ctx->cfg->kind == SLUICE_SINK && ctx->def->prepare && !ctx->failed) {
        char err[1024] = "";
        if (ctx->def->prepare(ctx->self, epoch, err, sizeof err) == SLUICE_ERROR)
            stage_fail(ctx, "prepare failed", err);
    }
    take_snapshot(ctx, epoch);
    ctx->barrier_done = epoch;
    if (ctx->cfg->kind == SLUICE_OPERATOR) {
        sl_item it = {.kind = SL_ITEM_BARRIER, .epoch = epoch};
        push_all(ctx, &it);
    }
}

static void dispatch(sluice_ctx *ctx, const sl_item *it);

static void replay_stash(sluice_ctx *ctx)
{
    size_t n = ctx->nstash;
    sl_item *held = ctx->stash;
    ctx->stash = NULL;
    ctx->nstash = ctx->capstash = 0;
    for (size_t i = 0; i < n; i++)
        dispatch(ctx, &held[i]);
    free(held);
}

static void check_alignment(sluice_ctx *ctx)
{
    uint64_t e = aligning_epoch(ctx);
    if (e > ctx->barrier_done && !ctx->align_started_ns)
        ctx->align_started_ns = sl_now_ns();
    if (e > ctx->barrier_done && aligned(ctx, e)) {
        atomic_fetch_add_explicit(&ctx->align_ns, sl_now_ns() - ctx->align_started_ns,
                                  memory_order_relaxed);
        ctx->align_started_ns = 0;
        complete_barrier(ctx, e);
        replay_stash(ctx);
    }
}

static void handle_barrier(sluice_ctx *ctx, const sl_item *it)
{
    if (it->input >= ctx->ninputs || it->epoch <= ctx->input_barrier[it->input])
        return;
    ctx->input_barrier[it->input] = it->epoch;
    check_alignment(ctx);
}

/* A checkpoint's outcome: commit (it completed) or abort (the final one
 * failed). */
static void handle_outcome(sluice_ctx *ctx, const sl_item *it)
{
    if (it->epoch > ctx->outcome_epoch)
        ctx->outcome_epoch = it->epoch;
    bool commit = it->kind == SL_ITEM_COMMIT;
    int (*fn)(void *, uint64_t, char *, size_t) = commit ? ctx->def->commit : ctx->def->abort;
    if (!fn || ctx->failed)
        return;
    char err[1024] = "";
    if (fn(ctx->self, it->epoch, err, sizeof err) == SLUICE_ERROR)
        stage_fail(ctx, commit ? "commit failed" : "abort failed", err);
}

/* Sinks may ask to be called again (a peer is briefly down): back off and
 * retry the same batch until it is written or the run is stopping. */
static int write_batch(sluice_ctx *ctx, const sluice_batch *b, char *err, size_t errlen)
{
    long backoff_ms = 10;
    for (;;) {
        err[0] = 0;
        int rc = ctx->def->write(ctx->self, b, err, errlen);
        if (rc != SLUICE_RETRY)
            return rc;
        if (stopping(ctx->rt)) {
            snprintf(err, errlen, "still failing to write when the run stopped");
            return SLUICE_ERROR;
        }
        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (backoff_ms < 1000)
            backoff_ms *= 2;
    }
}

/* Sinks: how long each record took from its source to here, gathered on
 * the stack and merged once per batch. Records an operator made (window
 * results) carry no ingest time and are not counted. */
static void observe_latency(sluice_ctx *ctx, const sluice_batch *b, int64_t now)
{
    sl_hist_local l;
    memset(&l, 0, sizeof l);
    for (uint32_t i = 0; i < b->count; i++)
        if (b->records[i].ingest_ns)
            sl_hist_local_add(&l, now - b->records[i].ingest_ns);
    sl_hist_merge(&ctx->latency, &l);
}

static void handle_batch(sluice_ctx *ctx, const sl_item *it)
{
    sluice_batch *b = it->batch;
    atomic_fetch_add_explicit(&ctx->records_in, b->count, memory_order_relaxed);
    atomic_fetch_add_explicit(&ctx->batches_in, 1, memory_order_relaxed);
    int64_t started = SL_TIMING ? sl_now_ns() : 0;
    if (SL_TIMING && it->enqueued_ns)
        sl_hist_observe_ns(&ctx->queue_wait, started - it->enqueued_ns);
    if (!ctx->failed) {
        char err[1024] = "";
        int rc = ctx->cfg->kind == SLUICE_SINK
                     ? write_batch(ctx, b, err, sizeof err)
                     : ctx->def->process(ctx->self, b, it->input, err, sizeof err);
        int64_t done = SL_TIMING ? sl_now_ns() : 0;
        if (SL_TIMING)
            sl_hist_observe_ns(&ctx->batch_time, done - started);
        if (rc == SLUICE_ERROR)
            stage_fail(ctx, ctx->cfg->kind == SLUICE_SINK ? "write failed" : "process failed",
                       err);
        else if (ctx->cfg->kind == SLUICE_SINK) {
            atomic_fetch_add_explicit(&ctx->records_out, b->count, memory_order_relaxed);
            if (SL_TIMING)
                observe_latency(ctx, b, done);
        }
        sl_stage_flush_errors(ctx);
    }
    sl_batch_unref(b);
}

#define TICK_MS 100

/* Operators with processing-time work get on_tick() about every TICK_MS,
 * between items. */
static void maybe_tick(sluice_ctx *ctx, int64_t *next_tick)
{
    int64_t now = sl_wall_ms();
    if (now < *next_tick)
        return;
    *next_tick = now + TICK_MS;
    if (ctx->failed)
        return;
    char err[1024] = "";
    if (ctx->def->on_tick(ctx->self, now, err, sizeof err) == SLUICE_ERROR)
        stage_fail(ctx, "on_tick failed", err);
    sl_stage_flush_errors(ctx);
}

static void dispatch(sluice_ctx *ctx, const sl_item *it)
{
    bool outcome = it->kind == SL_ITEM_COMMIT || it->kind == SL_ITEM_ABORT;
    if (!outcome && it->input < ctx->ninputs && input_blocked(ctx, it->input)) {
        stash(ctx, it);
        return;
    }
    switch (it->kind) {
    case SL_ITEM_BATCH:
        handle_batch(ctx, it);
        break;
    case SL_ITEM_WATERMARK:
    case SL_ITEM_IDLE:
        handle_control(ctx, it);
        break;
    case SL_ITEM_EOS:
        handle_control(ctx, it);
        check_alignment(ctx); /* an ended input no longer holds a barrier back */
        break;
    case SL_ITEM_BARRIER:
        handle_barrier(ctx, it);
        break;
    case SL_ITEM_COMMIT:
    case SL_ITEM_ABORT:
        handle_outcome(ctx, it);
        break;
    }
}

static void consumer_loop(sluice_ctx *ctx)
{
    int64_t next_tick = sl_wall_ms() + TICK_MS;
    while (ctx->inputs_ended < ctx->ninputs) {
        sl_item it;
        if (ctx->def->on_tick) {
            bool got = sl_queue_pop_wait(ctx->queue, &it, TICK_MS);
            maybe_tick(ctx, &next_tick);
            if (!got)
                continue;
        } else {
            sl_queue_pop(ctx->queue, &it);
        }
        dispatch(ctx, &it);
    }
    if (ctx->def->flush && !ctx->failed) {
        char err[1024] = "";
        if (ctx->def->flush(ctx->self, err, sizeof err) == SLUICE_ERROR)
            stage_fail(ctx, "flush failed", err);
        sl_stage_flush_errors(ctx);
    }
    if (ctx->rt->checkpoint)
        take_snapshot(ctx, 0); /* its final state, for checkpoints after it ended */
}

/* A stage that takes part in commits (a transactional sink, a source that
 * reports its offsets) stays until the final checkpoint's outcome reaches
 * it, so a graceful stop or the end of bounded input is committed too. */
static bool outcome_pending(sluice_ctx *ctx)
{
    sl_runtime *rt = ctx->rt;
    if (!rt->checkpoint || !ctx->def->commit || ctx->failed ||
        ctx->cfg->kind == SLUICE_OPERATOR)
        return false;
    if (atomic_load(&rt->outcomes_over) || atomic_load(&rt->failed))
        return false;
    uint64_t final = atomic_load(&rt->final_epoch);
    return final == 0 || ctx->outcome_epoch < final;
}

static void await_final_outcome(sluice_ctx *ctx)
{
    for (;;) {
        /* Read "over" before draining: an outcome sent before the
         * coordinator declared the end is still handled. */
        bool over = !outcome_pending(ctx);
        sl_item it;
        if (ctx->cfg->kind == SLUICE_SOURCE)
            source_commit(ctx);
        else
            while (sl_queue_pop_wait(ctx->queue, &it, 0))
                dispatch(ctx, &it);
        if (over || !outcome_pending(ctx))
            return;
        if (ctx->cfg->kind == SLUICE_SOURCE) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } else if (sl_queue_pop_wait(ctx->queue, &it, 50)) {
            dispatch(ctx, &it);
        }
    }
}

static void *stage_thread(void *arg)
{
    sluice_ctx *ctx = arg;
    if (ctx->cfg->kind == SLUICE_SOURCE)
        source_loop(ctx);
    else
        consumer_loop(ctx);
    sl_stage_flush_errors(ctx);
    send_eos(ctx);
    atomic_store(&ctx->ended, true);
    await_final_outcome(ctx);
    atomic_store(&ctx->finished, true);
    if (atomic_fetch_sub(&ctx->rt->running, 1) == 1 && ctx->rt->wake_waiter)
        pthread_kill(ctx->rt->waiter, SIGUSR1);
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------- */

static void wire_stage(sl_runtime *rt, size_t i)
{
    sluice_ctx *ctx = &rt->stages[i];
    const sl_graph_stage *gs = &rt->graph->stages[i];
    ctx->noutputs = gs->noutputs;
    ctx->outputs = calloc(gs->noutputs, sizeof *ctx->outputs);
    for (size_t o = 0; o < gs->noutputs; o++) {
        ctx->outputs[o].nedges = gs->nconsumers[o];
        ctx->outputs[o].edges = calloc(gs->nconsumers[o] ? gs->nconsumers[o] : 1, sizeof(sl_edge));
        for (size_t c = 0; c < gs->nconsumers[o]; c++) {
            ctx->outputs[o].edges[c].to = &rt->stages[gs->consumers[o][c].stage];
            ctx->outputs[o].edges[c].input = gs->consumers[o][c].input;
        }
    }
    ctx->ninputs = (unsigned)ctx->cfg->ninputs;
    if (ctx->cfg->kind != SLUICE_SOURCE)
        ctx->queue = sl_queue_new(rt->queue_batches * (ctx->ninputs ? ctx->ninputs : 1));
    ctx->input_wm = calloc(ctx->ninputs ? ctx->ninputs : 1, sizeof *ctx->input_wm);
    ctx->input_state = calloc(ctx->ninputs ? ctx->ninputs : 1, sizeof *ctx->input_state);
    ctx->input_barrier = calloc(ctx->ninputs ? ctx->ninputs : 1, sizeof *ctx->input_barrier);
    for (unsigned k = 0; k < ctx->ninputs; k++)
        ctx->input_wm[k] = SLUICE_TIME_NONE;
    ctx->wm = SLUICE_TIME_NONE;
}

sl_runtime *sl_runtime_new(sl_pipeline_cfg *cfg, sl_graph *graph, sl_diag *diag)
{
    sl_runtime *rt = calloc(1, sizeof *rt);
    rt->cfg = cfg;
    rt->graph = graph;
    rt->nstages = cfg->nstages;
    rt->queue_batches = QUEUE_BATCHES;
    rt->registry = sl_registry_new();
    rt->stages = calloc(cfg->nstages ? cfg->nstages : 1, sizeof *rt->stages);
    sluice_name n_error = sl_intern("error", 5), n_stage = sl_intern("stage", 5),
                n_raw = sl_intern("raw", 3);
    int bad = 0;
    for (size_t i = 0; i < cfg->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        ctx->rt = rt;
        ctx->cfg = &cfg->stages[i];
        ctx->def = ctx->cfg->def;
        ctx->n_error = n_error;
        ctx->n_stage = n_stage;
        ctx->n_raw = n_raw;
        ctx->reject_log = (sl_ratelimit)SL_RATELIMIT_INIT(5);
        if (ctx->cfg->event_time_field)
            ctx->time_field = sl_intern(ctx->cfg->event_time_field,
                                        strlen(ctx->cfg->event_time_field));
        sl_watermark_init(&ctx->source_wm, ctx->cfg->max_delay_ms, ctx->cfg->idle_timeout_ms);
        wire_stage(rt, i);
        ctx->diag = diag;
        char err[1024] = "";
        int rc = ctx->def->create(&sl_host, ctx, ctx->cfg->config, &ctx->self, err, sizeof err);
        ctx->diag = NULL;
        if (rc != SLUICE_OK) {
            if (!ctx->config_errors) {
                const sl_node *at = ctx->cfg->node;
                sl_diag_add(diag, at->line, at->col, "%s '%s': %s", sl_kind_name(ctx->cfg->kind),
                            ctx->cfg->name, err[0] ? err : "cannot be created");
            }
            bad = 1;
            continue;
        }
        ctx->created = true;
    }
    if (bad) {
        sl_runtime_free(rt);
        return NULL;
    }
    return rt;
}

int sl_runtime_start(sl_runtime *rt)
{
    rt->started_ns = sl_now_ns(); /* the run's time includes starting (connecting) */
    /* Sinks first, sources last: a consumer is ready before data flows. */
    for (size_t k = rt->nstages; k-- > 0;) {
        sluice_ctx *ctx = &rt->stages[rt->graph->order[k]];
        if (!ctx->def->start)
            continue;
        char err[1024] = "";
        if (ctx->def->start(ctx->self, err, sizeof err) != SLUICE_OK) {
            sl_log(SLUICE_LOG_ERROR, stage_name(ctx), "cannot start: %s",
                   err[0] ? err : "start() failed");
            return -1;
        }
    }
    atomic_store(&rt->running, rt->nstages);
    for (size_t k = rt->nstages; k-- > 0;) {
        sluice_ctx *ctx = &rt->stages[rt->graph->order[k]];
        int rc = pthread_create(&ctx->thread, NULL, stage_thread, ctx);
        if (rc != 0) {
            sl_log(SLUICE_LOG_ERROR, stage_name(ctx), "cannot start a thread: %s", strerror(rc));
            atomic_store(&rt->running, 0);
            abort(); /* half a pipeline running cannot be unwound safely */
        }
        ctx->thread_started = true;
    }
    return 0;
}

void sl_runtime_notify_done(sl_runtime *rt)
{
    rt->waiter = pthread_self();
    rt->wake_waiter = true;
}

void sl_runtime_barrier(sl_runtime *rt, uint64_t epoch, bool final)
{
    if (final)
        atomic_store(&rt->final_epoch, epoch);
    for (size_t i = 0; i < rt->nstages; i++)
        if (rt->stages[i].cfg->kind == SLUICE_SOURCE)
            atomic_store(&rt->stages[i].barrier_request, epoch);
}

static void send_outcome(sl_runtime *rt, sl_item_kind kind, uint64_t epoch)
{
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        if (atomic_load(&ctx->finished))
            continue;
        if (ctx->cfg->kind == SLUICE_SOURCE) {
            if (kind == SL_ITEM_COMMIT && ctx->def->commit)
                atomic_store(&ctx->commit_request, epoch);
        } else if (ctx->cfg->kind == SLUICE_SINK &&
                   (kind == SL_ITEM_COMMIT ? ctx->def->commit : ctx->def->abort)) {
            sl_item it = {.kind = kind, .epoch = epoch};
            sl_queue_push(ctx->queue, &it);
        }
    }
}

void sl_runtime_commit(sl_runtime *rt, uint64_t epoch)
{
    send_outcome(rt, SL_ITEM_COMMIT, epoch);
}

void sl_runtime_abort(sl_runtime *rt, uint64_t epoch)
{
    send_outcome(rt, SL_ITEM_ABORT, epoch);
}

void sl_runtime_outcomes_over(sl_runtime *rt)
{
    atomic_store(&rt->outcomes_over, true);
}

bool sl_runtime_sources_done(sl_runtime *rt)
{
    for (size_t i = 0; i < rt->nstages; i++)
        if (rt->stages[i].cfg->kind == SLUICE_SOURCE && !atomic_load(&rt->stages[i].ended))
            return false;
    return true;
}

void sl_runtime_stop(sl_runtime *rt)
{
    atomic_store(&rt->stopping, 1);
}

bool sl_runtime_done(sl_runtime *rt)
{
    return atomic_load(&rt->running) == 0;
}

int sl_runtime_join(sl_runtime *rt)
{
    for (size_t i = 0; i < rt->nstages; i++)
        if (rt->stages[i].thread_started) {
            pthread_join(rt->stages[i].thread, NULL);
            rt->stages[i].thread_started = false;
        }
    return atomic_load(&rt->failed) ? 1 : 0;
}

void sl_runtime_free(sl_runtime *rt)
{
    if (!rt)
        return;
    sl_runtime_join(rt);
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        if (ctx->created && ctx->def->destroy)
            ctx->def->destroy(ctx->self);
        sl_batch_unref(ctx->err_batch);
        sl_queue_free(ctx->queue);
        for (size_t o = 0; o < ctx->noutputs; o++)
            free(ctx->outputs[o].edges);
        free(ctx->outputs);
        free(ctx->input_wm);
        free(ctx->input_state);
        free(ctx->input_barrier);
        for (size_t k = 0; k < ctx->nstash; k++)
            if (ctx->stash[k].kind == SL_ITEM_BATCH)
                sl_batch_unref(ctx->stash[k].batch);
        free(ctx->stash);
        sl_watermark_free(&ctx->source_wm);
    }
    free(rt->stages);
    sl_registry_free(rt->registry);
    free(rt);
}
