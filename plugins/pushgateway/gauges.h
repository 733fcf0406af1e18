/*
 * gauges.h — gauges made from records: for each configured family, the last
 * value seen per set of label values, rendered in the Prometheus text format.
 *
 * One writer (the sink's thread) and one reader (the pusher's thread); a
 * mutex guards the table. Series never expire: a window result for a
 * service keeps its last value until the run ends, as a pushed gauge would.
 */
#ifndef SLUICE_PUSHGATEWAY_GAUGES_H
#define SLUICE_PUSHGATEWAY_GAUGES_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/plugin.h"

typedef struct pg_gauges pg_gauges;

/* max_series bounds the table (label values from records can explode). */
pg_gauges *pg_gauges_new(size_t max_series);
void pg_gauges_free(pg_gauges *g);

/* A family, in the order they are rendered; its index is the return value
 * (or -1 when out of memory). Strings are copied. */
int pg_gauges_family(pg_gauges *g, const char *name, const char *help,
                     size_t nlabels, const char *const *label_names);

/* Sets family's series for label values values[0..nlabels) to v. Returns
 * false when the table is full and this would be a new series. */
bool pg_gauges_set(pg_gauges *g, int family, const sluice_str *values, double v);

size_t pg_gauges_count(pg_gauges *g);

/* Appends every family with at least one series (HELP, TYPE, samples). */
int pg_gauges_render(pg_gauges *g, sluice_buf *out,
                     int (*append)(sluice_buf *buf, const char *p, size_t len));

/* Prometheus spelling of a sample value (NaN, +Inf, -Inf, shortest %g). */
void pg_format_value(double v, char *buf, size_t len);

#endif
