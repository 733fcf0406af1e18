/*
 * histogram.h — a fixed-bucket latency histogram in seconds, updated from
 * one stage's thread and read by scrapes from another.
 *
 * Buckets are fixed (100 µs to 60 s, roughly 1-2.5-5 steps) so that every
 * stage's histograms aggregate across stages and restarts in PromQL, and
 * an observation is a bucket search over 18 doubles and three relaxed
 * atomics. Many observations of one batch (end-to-end latency of each
 * record) are gathered in an sl_hist_local on the stack first and merged
 * once, so the hot path touches shared memory once per batch.
 */
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#include <sluice/plugin.h>

#define SL_HIST_BUCKETS 18

/* The timing histograms of the data path (clock reads per batch, a bucket
 * per record at sinks) can be compiled out with -DSLUICE_NO_TIMING. Only
 * scripts/bench-metrics does, to measure what they cost (BENCHMARKS.md). */
#ifdef SLUICE_NO_TIMING
#define SL_TIMING 0
#else
#define SL_TIMING 1
#endif

extern const double sl_hist_bounds[SL_HIST_BUCKETS]; /* upper bounds, seconds */

typedef struct sl_histogram {
    _Atomic uint64_t counts[SL_HIST_BUCKETS + 1]; /* the last one: above every bound */
    _Atomic uint64_t sum_ns;
} sl_histogram;

typedef struct sl_hist_local {
    uint64_t counts[SL_HIST_BUCKETS + 1];
    uint64_t sum_ns;
    uint64_t n;
} sl_hist_local;

void sl_hist_observe_ns(sl_histogram *h, int64_t ns);
void sl_hist_local_add(sl_hist_local *l, int64_t ns);
void sl_hist_merge(sl_histogram *h, const sl_hist_local *l);

/* Append the _bucket (cumulative), _sum and _count samples of h, each
 * with `labels` (already rendered: `pipeline="p",stage="s"`). 0 or -1. */
int sl_hist_render(const sl_histogram *h, const char *name, const char *labels,
                   sluice_buf *out);

#endif
