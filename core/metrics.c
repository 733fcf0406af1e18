/*
 * metrics.c — Prometheus text exposition of a running pipeline; see
 * metrics.h.
 *
 * Layout: one family at a time (HELP, TYPE, then a sample per stage), as
 * the format requires every sample of a family to follow its TYPE line.
 * Names are in base units (seconds, bytes) and counters end in _total.
 * Watermarks are ms since the epoch in the runtime and seconds here; a
 * stage with no watermark yet (or +infinity at the end of bounded input)
 * has no watermark sample rather than a made-up one.
 */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "checkpoint.h"
#include "registry.h"

typedef struct render {
    sluice_buf *out;
    int err;
} render;

static void put(render *r, const char *p, size_t len)
{
    if (!r->err && sl_buf_append(r->out, p, len) != 0)
        r->err = -1;
}

static void __attribute__((format(printf, 2, 3))) putf(render *r, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        r->err = -1;
        return;
    }
    if ((size_t)n < sizeof small) {
        put(r, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        r->err = -1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(r, big, (size_t)n);
    free(big);
}

int sl_metrics_escape_label(const char *s, sluice_buf *out)
{
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '"')
            rep = "\\\"";
        else if (*s == '\n')
            rep = "\\n";
        int rc = rep ? sl_buf_append(out, rep, 2) : sl_buf_putc(out, *s);
        if (rc != 0)
            return -1;
    }
    return 0;
}

const char *sl_metrics_kind_name(int kind)
{
    switch (kind) {
    case SLUICE_SOURCE: return "source";
    case SLUICE_OPERATOR: return "operator";
    case SLUICE_SINK: return "sink";
    }
    return "unknown";
}

static void family(render *r, const char *name, const char *type, const char *help)
{
    putf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label(render *r, const char *name, const char *value, bool first)
{
    putf(r, "%s%s=\"", first ? "" : ",", name);
    if (!r->err && sl_metrics_escape_label(value, r->out) != 0)
        r->err = -1;
    put(r, "\"", 1);
}

/* name{pipeline,stage,kind[,extra_name=extra_value]} */
static void stage_labels(render *r, sl_runtime *rt, const sluice_ctx *ctx, const char *name,
                         const char *extra_name, const char *extra_value)
{
    put(r, name, strlen(name));
    put(r, "{", 1);
    label(r, "pipeline", rt->cfg->name, true);
    label(r, "stage", ctx->cfg->name, false);
    label(r, "kind", sl_metrics_kind_name(ctx->cfg->kind), false);
    if (extra_name)
        label(r, extra_name, extra_value, false);
    put(r, "} ", 2);
}

static void value_u64(render *r, uint64_t v)
{
    putf(r, "%llu\n", (unsigned long long)v);
}

/* The fewest digits (15..17) that read back as v: 0.03, not 0.0299999... */
static const char *shortest(double v, char *buf, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static void value_double(render *r, double v)
{
    char num[40];
    if (isnan(v))
        putf(r, "NaN\n");
    else if (isinf(v))
        putf(r, "%s\n", v > 0 ? "+Inf" : "-Inf");
    else
        putf(r, "%s\n", shortest(v, num, sizeof num));
}

typedef enum stage_counter {
    C_RECORDS_IN,
    C_RECORDS_OUT,
    C_RECORDS_LATE,
    C_BATCHES,
    C_STATE_KEYS,
    C_STATE_BYTES,
} stage_counter;

static uint64_t counter_of(sluice_ctx *ctx, stage_counter c)
{
    switch (c) {
    case C_RECORDS_IN: return atomic_load_explicit(&ctx->records_in, memory_order_relaxed);
    case C_RECORDS_OUT: return atomic_load_explicit(&ctx->records_out, memory_order_relaxed);
    case C_RECORDS_LATE: return atomic_load_explicit(&ctx->records_late, memory_order_relaxed);
    case C_BATCHES: return atomic_load_explicit(&ctx->batches_in, memory_order_relaxed);
    case C_STATE_KEYS: return atomic_load_explicit(&ctx->state_keys, memory_order_relaxed);
    case C_STATE_BYTES: return atomic_load_explicit(&ctx->state_bytes, memory_order_relaxed);
    }
    return 0;
}

static void per_stage_u64(render *r, sl_runtime *rt, const char *name, const char *type,
                          const char *help, stage_counter c)
{
    family(r, name, type, help);
    for (size_t i = 0; i < rt->nstages; i++) {
        stage_labels(r, rt, &rt->stages[i], name, NULL, NULL);
        value_u64(r, counter_of(&rt->stages[i], c));
    }
}

static void errors_by_reason(render *r, sl_runtime *rt)
{
    const char *name = "sluice_errors_total";
    family(r, name, "counter", "Records rejected by a stage, by reason.");
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        uint64_t by_reason = 0;
        for (size_t k = 0; k < SL_MAX_REASONS; k++) {
            uint64_t n = atomic_load_explicit(&ctx->reasons[k].count, memory_order_relaxed);
            char reason[sizeof ctx->reasons[k].reason];
            memcpy(reason, ctx->reasons[k].reason, sizeof reason);
            reason[sizeof reason - 1] = 0;
            if (!n || !reason[0])
                continue;
            by_reason += n;
            stage_labels(r, rt, ctx, name, "reason", reason);
            value_u64(r, n);
        }
        /* Errors beyond the reason table (or not yet named) still count. */
        uint64_t total = atomic_load_explicit(&ctx->errors, memory_order_relaxed);
        if (total > by_reason) {
            stage_labels(r, rt, ctx, name, "reason", "other");
            value_u64(r, total - by_reason);
        }
    }
}

typedef enum { H_BATCH_TIME, H_QUEUE_WAIT, H_LATENCY } stage_hist;

static const sl_histogram *hist_of(const sluice_ctx *ctx, stage_hist h)
{
    switch (h) {
    case H_BATCH_TIME: return &ctx->batch_time;
    case H_QUEUE_WAIT: return &ctx->queue_wait;
    case H_LATENCY: return &ctx->latency;
    }
    return NULL;
}

/* One histogram per stage that has input (sources have no queue and
 * process no batch; only sinks see the end of a record's trip). */
static void histograms(render *r, sl_runtime *rt, const char *name, const char *help,
                       stage_hist h)
{
    family(r, name, "histogram", help);
    for (size_t i = 0; i < rt->nstages && !r->err; i++) {
        const sluice_ctx *ctx = &rt->stages[i];
        if (ctx->cfg->kind == SLUICE_SOURCE ||
            (h == H_LATENCY && ctx->cfg->kind != SLUICE_SINK))
            continue;
        sluice_buf labels = {0};
        int rc = 0;
        const char *parts[][2] = {{"pipeline", rt->cfg->name},
                                  {"stage", ctx->cfg->name},
                                  {"kind", sl_metrics_kind_name(ctx->cfg->kind)}};
        for (size_t k = 0; k < 3 && rc == 0; k++) {
            if (k)
                rc = sl_buf_putc(&labels, ',');
            if (rc == 0)
                rc = sl_buf_append(&labels, parts[k][0], strlen(parts[k][0]));
            if (rc == 0)
                rc = sl_buf_append(&labels, "=\"", 2);
            if (rc == 0)
                rc = sl_metrics_escape_label(parts[k][1], &labels);
            if (rc == 0)
                rc = sl_buf_putc(&labels, '"');
        }
        if (rc == 0)
            rc = sl_buf_putc(&labels, 0);
        if (rc != 0 || sl_hist_render(hist_of(ctx, h), name, labels.data, r->out) != 0)
            r->err = -1;
        free(labels.data);
    }
}

static void queue_depth(render *r, sl_runtime *rt)
{
    const char *name = "sluice_queue_depth_batches";
    family(r, name, "gauge", "Batches waiting in the stage's input queue.");
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        if (!ctx->queue)
            continue;
        stage_labels(r, rt, ctx, name, NULL, NULL);
        value_u64(r, sl_queue_depth(ctx->queue));
    }
}

static void nanos_total(render *r, sl_runtime *rt, const char *name, const char *help,
                        bool alignment)
{
    family(r, name, "counter", help);
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        int64_t ns = alignment ? atomic_load_explicit(&ctx->align_ns, memory_order_relaxed)
                               : atomic_load_explicit(&ctx->blocked_ns, memory_order_relaxed);
        stage_labels(r, rt, ctx, name, NULL, NULL);
        value_double(r, (double)(ns > 0 ? ns : 0) / 1e9);
    }
}

/* Written by the stage's own thread without a lock; an aligned 64-bit
 * load never tears. */
int64_t sl_metrics_watermark(const sluice_ctx *ctx)
{
    const volatile int64_t *p =
        ctx->cfg->kind == SLUICE_SOURCE ? &ctx->source_wm.current : &ctx->wm;
    int64_t wm = *p;
    return wm == SLUICE_TIME_MAX ? SLUICE_TIME_NONE : wm;
}

static void watermarks(render *r, sl_runtime *rt)
{
    int64_t now_ms = sl_wall_ms();
    const char *name = "sluice_watermark_seconds";
    family(r, name, "gauge",
           "Event-time watermark: a stage's input watermark, a source's current one.");
    for (size_t i = 0; i < rt->nstages; i++) {
        int64_t wm = sl_metrics_watermark(&rt->stages[i]);
        if (wm == SLUICE_TIME_NONE)
            continue;
        stage_labels(r, rt, &rt->stages[i], name, NULL, NULL);
        value_double(r, (double)wm / 1e3);
    }
    name = "sluice_watermark_lag_seconds";
    family(r, name, "gauge", "Wall-clock time minus the watermark.");
    for (size_t i = 0; i < rt->nstages; i++) {
        int64_t wm = sl_metrics_watermark(&rt->stages[i]);
        if (wm == SLUICE_TIME_NONE)
            continue;
        stage_labels(r, rt, &rt->stages[i], name, NULL, NULL);
        value_double(r, (double)(now_ms - wm) / 1e3);
    }
}

static void pipeline_sample(render *r, sl_runtime *rt, const char *name, const char *outcome)
{
    putf(r, "%s{", name);
    label(r, "pipeline", rt->cfg->name, true);
    if (outcome)
        label(r, "outcome", outcome, false);
    put(r, "} ", 2);
}

static void checkpoints(render *r, sl_runtime *rt)
{
    if (!rt->checkpoint)
        return;
    sl_checkpoint_stats s;
    sl_checkpoint_stats_get(rt->checkpoint, &s);
    const char *name = "sluice_checkpoints_total";
    family(r, name, "counter", "Checkpoints finished, by outcome.");
    pipeline_sample(r, rt, name, "completed");
    value_u64(r, s.completed);
    pipeline_sample(r, rt, name, "failed");
    value_u64(r, s.failed);
    if (!s.completed)
        return;
    name = "sluice_checkpoint_duration_seconds";
    family(r, name, "gauge", "Duration of the last completed checkpoint.");
    pipeline_sample(r, rt, name, NULL);
    value_double(r, s.last_duration_ms / 1e3);
    name = "sluice_checkpoint_size_bytes";
    family(r, name, "gauge", "Size of the last completed checkpoint's state.");
    pipeline_sample(r, rt, name, NULL);
    value_u64(r, s.last_bytes);
    name = "sluice_checkpoint_last_success_timestamp_seconds";
    family(r, name, "gauge", "When the last checkpoint completed, since the epoch.");
    pipeline_sample(r, rt, name, NULL);
    value_double(r, (double)s.last_success_ms / 1e3);
}

/* memory_limit and what weighs against it; which sources are paused. */
static void memory(render *r, sl_runtime *rt)
{
    const char *name = "sluice_memory_in_flight_bytes";
    family(r, name, "gauge", "Bytes of records in flight (every live batch), weighed "
           "against half of memory_limit.");
    pipeline_sample(r, rt, name, NULL);
    value_u64(r, sl_batch_live_bytes());
    name = "sluice_memory_limit_bytes";
    family(r, name, "gauge", "The pipeline's memory_limit (0: none).");
    pipeline_sample(r, rt, name, NULL);
    value_u64(r, (uint64_t)rt->cfg->memory_limit);
    name = "sluice_source_paused";
    family(r, name, "gauge", "1 while a source reads nothing because the pipeline is full.");
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        if (ctx->cfg->kind != SLUICE_SOURCE)
            continue;
        stage_labels(r, rt, ctx, name, NULL, NULL);
        value_u64(r, atomic_load_explicit(&ctx->paused, memory_order_relaxed));
    }
}

/* ---- process_* from /proc/self ------------------------------------------- */

typedef struct proc_stat {
    double cpu_seconds, start_seconds;
    unsigned long long vsize, rss_bytes;
} proc_stat;

static double boot_time_seconds(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double btime = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    if (f)
        fclose(f);
    return btime;
}

static bool read_proc_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and ')': fields start after the
     * last ')'. Field 3 is the state; 14/15 utime/stime, 22 starttime,
     * 23 vsize, 24 rss (pages). */
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    unsigned long utime, stime;
    unsigned long long start, vsize;
    long rss;
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %ld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return false;
    double tick = (double)sysconf(_SC_CLK_TCK);
    ps->cpu_seconds = (double)(utime + stime) / tick;
    ps->start_seconds = boot_time_seconds() + (double)start / tick;
    ps->vsize = vsize;
    ps->rss_bytes = (unsigned long long)(rss > 0 ? rss : 0) * (unsigned long long)sysconf(_SC_PAGESIZE);
    return true;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void process_metric(render *r, const char *name, const char *type, const char *help,
                           double v)
{
    family(r, name, type, help);
    putf(r, "%s ", name);
    value_double(r, v);
}

static void process_metrics(render *r)
{
    proc_stat ps;
    if (read_proc_stat(&ps)) {
        process_metric(r, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.", ps.cpu_seconds);
        process_metric(r, "process_resident_memory_bytes", "gauge",
                       "Resident memory size in bytes.", (double)ps.rss_bytes);
        process_metric(r, "process_virtual_memory_bytes", "gauge",
                       "Virtual memory size in bytes.", (double)ps.vsize);
        process_metric(r, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.",
                       ps.start_seconds);
    }
    long fds = open_fds();
    if (fds >= 0)
        process_metric(r, "process_open_fds", "gauge", "Number of open file descriptors.",
                       (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        process_metric(r, "process_max_fds", "gauge",
                       "Maximum number of open file descriptors.",
                       rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

int sl_metrics_render(sl_runtime *rt, sluice_buf *out)
{
    render r = {out, 0};
    per_stage_u64(&r, rt, "sluice_records_in_total", "counter",
                  "Records a stage received from its inputs.", C_RECORDS_IN);
    per_stage_u64(&r, rt, "sluice_records_out_total", "counter",
                  "Records a stage emitted (sources: read; sinks: written).", C_RECORDS_OUT);
    per_stage_u64(&r, rt, "sluice_records_late_total", "counter",
                  "Records behind the watermark when they arrived.", C_RECORDS_LATE);
    errors_by_reason(&r, rt);
    per_stage_u64(&r, rt, "sluice_batches_total", "counter", "Batches a stage received.",
                  C_BATCHES);
    queue_depth(&r, rt);
    histograms(&r, rt, "sluice_batch_duration_seconds",
               "Time a stage took to process (operators) or write (sinks) one batch.",
               H_BATCH_TIME);
    histograms(&r, rt, "sluice_scheduling_delay_seconds",
               "Time a batch waited in the stage's input queue before it was taken.",
               H_QUEUE_WAIT);
    histograms(&r, rt, "sluice_end_to_end_latency_seconds",
               "Time from a record being read by its source to being written by this sink.",
               H_LATENCY);
    nanos_total(&r, rt, "sluice_backpressure_seconds_total",
                "Time the stage spent blocked on a full downstream queue, or paused (memory_limit).", false);
    watermarks(&r, rt);
    per_stage_u64(&r, rt, "sluice_state_keys", "gauge", "Keys in the stage's state.",
                  C_STATE_KEYS);
    per_stage_u64(&r, rt, "sluice_state_bytes", "gauge", "Bytes of the stage's state.",
                  C_STATE_BYTES);
    nanos_total(&r, rt, "sluice_checkpoint_alignment_seconds_total",
                "Time inputs were held back aligning checkpoint barriers.", true);
    checkpoints(&r, rt);
    memory(&r, rt);
    if (!r.err && sl_registry_render(rt->registry, out) != 0)
        r.err = -1;
    process_metrics(&r);
    return r.err;
}
