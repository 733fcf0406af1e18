/*
 * registry.h — metrics that plugins (and later Lua scripts) define at run
 * time: labelled counters and gauges, rendered on /metrics after the
 * runtime's own.
 *
 * The runtime's metrics live in struct sluice_ctx as plain atomics; these
 * cannot, because their names and labels are only known to the plugin. A
 * family is defined once (under a lock) and a series looked up once per
 * set of label values; after that, updating a series is a single atomic,
 * so plugins can count on their hot path.
 */
#ifndef SLUICE_REGISTRY_H
#define SLUICE_REGISTRY_H

#include <sluice/plugin.h>

typedef struct sl_registry sl_registry;

sl_registry *sl_registry_new(void);
void sl_registry_free(sl_registry *reg);

/* A family `name` for stage `stage` (the core adds pipeline, stage and kind
 * labels in front of `labels`). NULL with a reason in why when the name or
 * a label is not valid Prometheus, or the name is taken with another type
 * or other labels. */
sluice_metric *sl_registry_family(sl_registry *reg, const char *pipeline, const char *stage,
                                  const char *kind, const char *name, sluice_metric_type type,
                                  const char *help, const char *const *labels,
                                  const char **why);
sluice_series *sl_registry_series(sluice_metric *m, const char *const *values);
void sl_registry_add(sluice_series *s, double delta);
void sl_registry_set(sluice_series *s, double value);
void sl_registry_observe(sluice_series *s, double seconds); /* histograms only */

/* Append every family in the text exposition format. 0, or -1 when out of
 * memory. */
int sl_registry_render(sl_registry *reg, sluice_buf *out);

#endif
