/*
 * lua_metrics.c — Prometheus counters, gauges and histograms defined by Lua
 * scripts.
 *
 *     local spikes = metrics.counter("error_rate_spikes", {service = "api"})
 *     spikes:inc()
 *     metrics.gauge("zscore", {service = r.service}):set(z)
 *     metrics.histogram("lookup_seconds"):observe(0.012)
 *
 * Each call returns the series for that name and set of label values
 * (label names are the keys of the table, sorted; values go through
 * tostring). Series are cached per (name, label values), so calling
 * metrics.counter() for every record costs one table lookup; keeping the
 * object in a local is cheaper still. They appear on /metrics with the
 * stage's labels first (pipeline, stage, kind), as the core's own do.
 *
 * Decisions:
 *   - a counter's name gets `_total` appended when it lacks it (the
 *     Prometheus convention the core follows), so "spikes" is exposed as
 *     spikes_total; counters only go up (inc with a negative amount is an
 *     error);
 *   - histograms are the core's: durations in seconds in its fixed buckets
 *     (100 us to 60 s), fed with observe();
 *   - a name is one family: using it again with another type or other
 *     label names is an error, not a second family;
 *   - names and label names are checked here (a Lua error at the call, not
 *     a warning in the log); the reserved labels pipeline, stage, kind and
 *     le are refused;
 *   - at most MAX_SERIES label sets per stage: a label fed from unbounded
 *     data (user ids, addresses) would otherwise grow /metrics without end.
 */
#include "lua_metrics.h"

#include <lauxlib.h>

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 10000
#define MAX_LABELS 16
#define SERIES_META "sluice.metric"

typedef struct series_ud {
    sluice_series *series; /* NULL when the core keeps no such metric */
    const sluice_host *host;
    sluice_metric_type type;
    const char *name;      /* the family's, for messages */
} series_ud;

static slua_metrics *metrics_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static bool valid_name(const char *s, bool colons)
{
    if (!*s || isdigit((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (colons && *s == ':')))
            return false;
    return true;
}

/* ---- Families -------------------------------------------------------------------- */

static void free_family(slua_family *f)
{
    free(f->name);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->labels);
}

static slua_family *find_family(slua_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->families[i].name, name) == 0)
            return &m->families[i];
    return NULL;
}

static bool same_labels(const slua_family *f, const char *const *labels, size_t n)
{
    if (f->nlabels != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return false;
    return true;
}

static void push_label_list(lua_State *L, const char *const *labels, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '(');
    for (size_t i = 0; i < n; i++) {
        if (i)
            luaL_addstring(&b, ", ");
        luaL_addstring(&b, labels[i]);
    }
    if (!n)
        luaL_addstring(&b, "no labels");
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
}

/* The family `name`, defined now if new; raises when it exists with
 * another type or label names. */
static const char *type_name(sluice_metric_type type)
{
    return type == SLUICE_COUNTER ? "counter" : type == SLUICE_HISTOGRAM ? "histogram" : "gauge";
}

static slua_family *family_for(slua_metrics *m, lua_State *L, const char *name,
                               sluice_metric_type type, const char *const *labels, size_t n)
{
    slua_family *f = find_family(m, name);
    if (f) {
        if (f->type != type)
            luaL_error(L, "metric %s is already a %s", name, type_name(f->type));
        if (!same_labels(f, labels, n)) {
            push_label_list(L, (const char *const *)f->labels, f->nlabels);
            push_label_list(L, labels, n);
            luaL_error(L, "metric %s has labels %s, not %s", name, lua_tostring(L, -2),
                       lua_tostring(L, -1));
        }
        return f;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        slua_family *v = realloc(m->families, cap * sizeof *v);
        if (!v)
            luaL_error(L, "out of memory");
        m->families = v;
        m->cap = cap;
    }
    f = &m->families[m->n];
    memset(f, 0, sizeof *f);
    f->type = type;
    f->name = strdup(name);
    f->labels = calloc(n + 1, sizeof *f->labels);
    bool ok = f->name && f->labels;
    for (size_t i = 0; ok && i < n; i++)
        ok = (f->labels[f->nlabels++] = strdup(labels[i])) != NULL;
    if (!ok) {
        free_family(f);
        luaL_error(L, "out of memory");
    }
    m->n++;
    f->metric = m->host->metric_new(m->ctx, f->name, type,
                                     type == SLUICE_COUNTER     ? "a counter of a Lua script"
                                     : type == SLUICE_HISTOGRAM ? "a histogram of a Lua script"
                                                                : "a gauge of a Lua script",
                                     (const char *const *)f->labels);
    return f;
}

/* ---- metrics.counter / metrics.gauge ---------------------------------------------- */

typedef struct label {
    const char *name, *value;
} label;

static int compare_labels(const void *a, const void *b)
{
    return strcmp(((const label *)a)->name, ((const label *)b)->name);
}

/* The labels table at idx, sorted by name, values as strings (anchored in
 * a list pushed on the stack). Returns how many. */
static size_t read_labels(lua_State *L, int idx, label *out)
{
    static const char *const reserved[] = {"pipeline", "stage", "kind", "le", NULL};
    lua_newtable(L);
    int anchor = lua_gettop(L);
    size_t n = 0;
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "label names must be strings");
        const char *name = lua_tostring(L, -2);
        if (!valid_name(name, false) || strncmp(name, "__", 2) == 0)
            luaL_error(L, "'%s' is not a valid label name", name);
        for (size_t i = 0; reserved[i]; i++)
            if (strcmp(name, reserved[i]) == 0)
                luaL_error(L, "the label name '%s' is reserved (pipeline, stage, kind, le)",
                           name);
        if (n == MAX_LABELS)
            luaL_error(L, "more than %d labels", MAX_LABELS);
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
            luaL_error(L, "label '%s': a %s cannot be a label value", name,
                       lua_typename(L, vt));
        out[n].value = luaL_tolstring(L, -1, NULL);
        lua_rawseti(L, anchor, (lua_Integer)(2 * n + 1));
        out[n].name = name; /* anchored as a key of the labels table */
        n++;
        lua_pop(L, 1);
    }
    qsort(out, n, sizeof *out, compare_labels);
    return n;
}

static int define(lua_State *L, sluice_metric_type type)
{
    slua_metrics *m = metrics_of(L);
    const char *given = luaL_checkstring(L, 1);
    lua_settop(L, 2); /* labels: slot 2, nil when not given */
    if (!valid_name(given, true))
        return luaL_error(L, "'%s' is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                          given);
    size_t glen = strlen(given);
    if (type == SLUICE_COUNTER && (glen < 6 || strcmp(given + glen - 6, "_total") != 0))
        lua_pushfstring(L, "%s_total", given);
    else
        lua_pushstring(L, given);
    const char *name = lua_tostring(L, -1);
    label labels[MAX_LABELS];
    size_t n = read_labels(L, 2, labels);

    /* The cache: "name\0value\0value..." -> series. */
    luaL_Buffer key;
    luaL_buffinit(L, &key);
    luaL_addstring(&key, name);
    luaL_addchar(&key, '\0');
    for (size_t i = 0; i < n; i++) {
        luaL_addstring(&key, labels[i].name);
        luaL_addchar(&key, '=');
        luaL_addstring(&key, labels[i].value);
        luaL_addchar(&key, '\0');
    }
    luaL_pushresult(&key);
    int keyidx = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->cache_ref);
    int cache = keyidx + 1;
    lua_pushvalue(L, keyidx);
    if (lua_rawget(L, cache) == LUA_TUSERDATA) {
        series_ud *s = lua_touserdata(L, -1);
        if (s->type != type)
            return luaL_error(L, "metric %s is already a %s", name, type_name(s->type));
        return 1;
    }
    lua_pop(L, 1);

    const char *names[MAX_LABELS + 1], *values[MAX_LABELS + 1];
    for (size_t i = 0; i < n; i++) {
        names[i] = labels[i].name;
        values[i] = labels[i].value;
    }
    names[n] = values[n] = NULL;
    slua_family *f = family_for(m, L, name, type, names, n);
    if (m->nseries >= MAX_SERIES)
        return luaL_error(L, "metric %s: more than %d label combinations in this stage; label "
                             "values must come from a small set",
                          name, MAX_SERIES);
    series_ud *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->host = m->host;
    s->type = type;
    s->name = f->name;
    s->series = f->metric ? m->host->metric_series(f->metric, values) : NULL;
    luaL_setmetatable(L, SERIES_META);
    lua_pushvalue(L, keyidx);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache);
    m->nseries++;
    return 1;
}

static int metrics_counter(lua_State *L)
{
    return define(L, SLUICE_COUNTER);
}

static int metrics_gauge(lua_State *L)
{
    return define(L, SLUICE_GAUGE);
}

static int metrics_histogram(lua_State *L)
{
    return define(L, SLUICE_HISTOGRAM);
}

/* ---- Series methods -------------------------------------------------------------- */

static double amount(lua_State *L, int idx, double dflt)
{
    double v = lua_isnoneornil(L, idx) ? dflt : (double)luaL_checknumber(L, idx);
    if (!isfinite(v))
        luaL_error(L, "a metric value must be a finite number");
    return v;
}

static int series_inc(lua_State *L)
{
    series_ud *s = luaL_checkudata(L, 1, SERIES_META);
    if (s->type == SLUICE_HISTOGRAM)
        return luaL_error(L, "histogram %s: inc(): histograms take observe(seconds)", s->name);
    double v = amount(L, 2, 1);
    if (s->type == SLUICE_COUNTER && v < 0)
        return luaL_error(L, "counter %s: inc(%f): a counter only goes up", s->name, v);
    if (s->series)
        s->host->series_add(s->series, v);
    return 0;
}

static int series_dec(lua_State *L)
{
    series_ud *s = luaL_checkudata(L, 1, SERIES_META);
    if (s->type != SLUICE_GAUGE)
        return luaL_error(L, "%s %s: dec(): only gauges go down", type_name(s->type), s->name);
    double v = amount(L, 2, 1);
    if (s->series)
        s->host->series_add(s->series, -v);
    return 0;
}

static int series_set(lua_State *L)
{
    series_ud *s = luaL_checkudata(L, 1, SERIES_META);
    if (s->type != SLUICE_GAUGE)
        return luaL_error(L, "%s %s: set(): only gauges can be set", type_name(s->type), s->name);
    double v = amount(L, 2, 0);
    if (lua_isnoneornil(L, 2))
        return luaL_error(L, "gauge %s: set() needs a value", s->name);
    if (s->series)
        s->host->series_set(s->series, v);
    return 0;
}

static int series_observe(lua_State *L)
{
    series_ud *s = luaL_checkudata(L, 1, SERIES_META);
    if (s->type != SLUICE_HISTOGRAM)
        return luaL_error(L, "%s %s: observe(): only histograms take observations",
                          type_name(s->type), s->name);
    if (lua_isnoneornil(L, 2))
        return luaL_error(L, "histogram %s: observe() needs a number of seconds", s->name);
    double v = amount(L, 2, 0);
    if (s->series)
        s->host->series_observe(s->series, v);
    return 0;
}

static int series_tostring(lua_State *L)
{
    series_ud *s = luaL_checkudata(L, 1, SERIES_META);
    lua_pushfstring(L, "%s %s", type_name(s->type), s->name);
    return 1;
}

void slua_metrics_open(slua_metrics *m, const sluice_host *host, sluice_ctx *ctx, lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"inc", series_inc},         {"dec", series_dec}, {"set", series_set},
        {"observe", series_observe}, {NULL, NULL},
    };
    static const luaL_Reg api[] = {
        {"counter", metrics_counter},
        {"gauge", metrics_gauge},
        {"histogram", metrics_histogram},
        {NULL, NULL},
    };
    m->host = host;
    m->ctx = ctx;
    lua_newtable(L);
    m->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_newmetatable(L, SERIES_META);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, series_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "metric");
    lua_setfield(L, -2, "__metatable"); /* scripts cannot swap the methods */
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushlightuserdata(L, m);
    luaL_setfuncs(L, api, 1);
    lua_setglobal(L, "metrics");
}

void slua_metrics_free(slua_metrics *m)
{
    for (size_t i = 0; i < m->n; i++)
        free_family(&m->families[i]);
    free(m->families);
    m->families = NULL;
    m->n = m->cap = 0;
}
