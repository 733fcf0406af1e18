/*
 * lua_metrics.h — `metrics.counter` and `metrics.gauge` for Lua scripts.
 * See lua_metrics.c.
 */
#ifndef SLUICE_LUA_METRICS_H
#define SLUICE_LUA_METRICS_H

#include "sluice/plugin.h"

#include <lua.h>

typedef struct slua_family {
    char *name;
    sluice_metric_type type;
    size_t nlabels;
    char **labels; /* sorted */
    sluice_metric *metric; /* NULL when the core does not keep it */
} slua_family;

typedef struct slua_metrics {
    const sluice_host *host;
    sluice_ctx *ctx;
    slua_family *families;
    size_t n, cap;
    int cache_ref;  /* registry: "name\0value\0..." -> series userdata */
    size_t nseries;
} slua_metrics;

/* The global `metrics` table (inside a protected call). */
void slua_metrics_open(slua_metrics *m, const sluice_host *host, sluice_ctx *ctx, lua_State *L);
void slua_metrics_free(slua_metrics *m);

#endif
