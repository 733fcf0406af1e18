/*
 * metrics.h — the runtime's state as Prometheus text exposition (format
 * 0.0.4), for the /metrics endpoint (http.c).
 *
 * Why render from the counters already in struct sluice_ctx rather than a
 * registry: the stages update those atomics on the hot path already (per
 * batch), so a scrape costs nothing until it happens and adds no work per
 * record. A scrape reads every counter once with relaxed loads; values of
 * different stages may be a few batches apart, which Prometheus tolerates.
 * The same holds for the per-stage histograms (histogram.h). Metrics whose
 * names only a plugin knows live in the registry (registry.h), rendered
 * after these.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "json.h"
#include "runtime.h"

/* Append the exposition of rt (stages, checkpoints, process_*) to out.
 * 0, or -1 when out of memory. */
int sl_metrics_render(sl_runtime *rt, sluice_buf *out);

/* Append s to out escaped as a label value: \\, \" and \n. */
int sl_metrics_escape_label(const char *s, sluice_buf *out);

/* The stage kind as the `kind` label says it: source, operator, sink. */
const char *sl_metrics_kind_name(int kind);

/* The stage's watermark in ms (sources: their current one; others: their
 * input watermark), or SLUICE_TIME_NONE when none yet or past the end. */
int64_t sl_metrics_watermark(const sluice_ctx *ctx);

#endif
