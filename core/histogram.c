/*
 * histogram.c — fixed-bucket latency histograms; see histogram.h.
 */
#include "histogram.h"

#include <stdio.h>
#include <string.h>

#include "json.h"

const double sl_hist_bounds[SL_HIST_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60,
};

static unsigned bucket_of(int64_t ns)
{
    double s = (double)ns / 1e9;
    unsigned b = 0;
    while (b < SL_HIST_BUCKETS && s > sl_hist_bounds[b])
        b++;
    return b;
}

void sl_hist_observe_ns(sl_histogram *h, int64_t ns)
{
    if (ns < 0)
        ns = 0; /* clocks of different threads: never a negative latency */
    atomic_fetch_add_explicit(&h->counts[bucket_of(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

void sl_hist_local_add(sl_hist_local *l, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    l->counts[bucket_of(ns)]++;
    l->sum_ns += (uint64_t)ns;
    l->n++;
}

void sl_hist_merge(sl_histogram *h, const sl_hist_local *l)
{
    if (!l->n)
        return;
    for (unsigned b = 0; b <= SL_HIST_BUCKETS; b++)
        if (l->counts[b])
            atomic_fetch_add_explicit(&h->counts[b], l->counts[b], memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, l->sum_ns, memory_order_relaxed);
}

static int sample(sluice_buf *out, const char *name, const char *suffix, const char *labels,
                  const char *le, const char *value)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s%s{%s%s%s%s%s} %s\n", name, suffix, labels,
                     le ? (labels[0] ? "," : "") : "", le ? "le=\"" : "", le ? le : "",
                     le ? "\"" : "", value);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    return sl_buf_append(out, line, (size_t)n);
}

int sl_hist_render(const sl_histogram *h, const char *name, const char *labels,
                   sluice_buf *out)
{
    uint64_t cum = 0;
    char le[32], v[32];
    for (unsigned b = 0; b <= SL_HIST_BUCKETS; b++) {
        cum += atomic_load_explicit(&h->counts[b], memory_order_relaxed);
        if (b < SL_HIST_BUCKETS)
            snprintf(le, sizeof le, "%g", sl_hist_bounds[b]);
        else
            snprintf(le, sizeof le, "+Inf");
        snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
        if (sample(out, name, "_bucket", labels, le, v) != 0)
            return -1;
    }
    snprintf(v, sizeof v, "%.9f", /* ns, exactly */
             (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    if (sample(out, name, "_sum", labels, NULL, v) != 0)
        return -1;
    snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
    return sample(out, name, "_count", labels, NULL, v);
}
