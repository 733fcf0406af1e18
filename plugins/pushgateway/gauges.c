/*
 * gauges.c — the record-derived gauge table; see gauges.h.
 *
 * Series live in one array in the order they first appeared (so pushes
 * list them stably) and are found through an open-addressing index keyed
 * by (family, label values). The key is the values joined with a 0xff
 * byte, which valid UTF-8 never contains, so distinct value lists never
 * collide.
 */
#include "gauges.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct family {
    char *name;
    char *help;
    size_t nlabels;
    char **labels;
} family;

typedef struct series {
    int family;
    char *key;       /* values joined by 0xff */
    size_t keylen;
    uint64_t hash;
    char **values;   /* nlabels of them, NUL-terminated copies */
    double value;
} series;

struct pg_gauges {
    pthread_mutex_t lock;
    size_t max_series;
    family *families;
    size_t nfamilies;
    series *series;
    size_t nseries, capseries;
    size_t *index;   /* slots hold series number + 1; 0 is empty */
    size_t capindex; /* a power of two, at least twice nseries */
};

pg_gauges *pg_gauges_new(size_t max_series)
{
    pg_gauges *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    pthread_mutex_init(&g->lock, NULL);
    g->max_series = max_series;
    return g;
}

void pg_gauges_free(pg_gauges *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nfamilies; i++) {
        family *f = &g->families[i];
        for (size_t k = 0; k < f->nlabels; k++)
            free(f->labels[k]);
        free(f->labels);
        free(f->name);
        free(f->help);
    }
    for (size_t i = 0; i < g->nseries; i++) {
        series *s = &g->series[i];
        for (size_t k = 0; k < g->families[s->family].nlabels; k++)
            free(s->values[k]);
        free(s->values);
        free(s->key);
    }
    free(g->families);
    free(g->series);
    free(g->index);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

int pg_gauges_family(pg_gauges *g, const char *name, const char *help, size_t nlabels,
                     const char *const *label_names)
{
    family *fs = realloc(g->families, (g->nfamilies + 1) * sizeof *fs);
    if (!fs)
        return -1;
    g->families = fs;
    family *f = &fs[g->nfamilies];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->labels = calloc(nlabels ? nlabels : 1, sizeof *f->labels);
    bool ok = f->name && f->help && f->labels;
    for (size_t k = 0; ok && k < nlabels; k++) {
        f->labels[k] = strdup(label_names[k]);
        ok = f->labels[k] != NULL;
        f->nlabels = k + 1;
    }
    g->nfamilies++; /* even half-built, so pg_gauges_free frees it */
    return ok ? (int)g->nfamilies - 1 : -1;
}

static uint64_t fnv1a(int fam, const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ull ^ (uint64_t)fam;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static bool grow_index(pg_gauges *g)
{
    size_t cap = g->capindex ? g->capindex * 2 : 64;
    size_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return false;
    for (size_t i = 0; i < g->nseries; i++) {
        size_t slot = g->series[i].hash & (cap - 1);
        while (idx[slot])
            slot = (slot + 1) & (cap - 1);
        idx[slot] = i + 1;
    }
    free(g->index);
    g->index = idx;
    g->capindex = cap;
    return true;
}

static bool add_series(pg_gauges *g, int fam, const sluice_str *values, char *key,
                       size_t keylen, uint64_t hash, double v, size_t slot)
{
    if (g->nseries == g->capseries) {
        size_t cap = g->capseries ? g->capseries * 2 : 16;
        series *ss = realloc(g->series, cap * sizeof *ss);
        if (!ss)
            return false;
        g->series = ss;
        g->capseries = cap;
    }
    size_t n = g->families[fam].nlabels;
    series s = {.family = fam, .keylen = keylen, .hash = hash, .value = v};
    s.key = malloc(keylen + 1);
    s.values = calloc(n ? n : 1, sizeof *s.values);
    bool ok = s.key && s.values;
    for (size_t k = 0; ok && k < n; k++) {
        s.values[k] = malloc(values[k].len + 1);
        if ((ok = s.values[k] != NULL)) {
            memcpy(s.values[k], values[k].ptr, values[k].len);
            s.values[k][values[k].len] = 0;
        }
    }
    if (!ok) {
        for (size_t k = 0; s.values && k < n; k++)
            free(s.values[k]);
        free(s.values);
        free(s.key);
        return false;
    }
    memcpy(s.key, key, keylen);
    g->series[g->nseries] = s;
    g->index[slot] = ++g->nseries;
    return true;
}

bool pg_gauges_set(pg_gauges *g, int fam, const sluice_str *values, double v)
{
    size_t n = g->families[fam].nlabels, keylen = 0;
    for (size_t k = 0; k < n; k++)
        keylen += values[k].len + 1;
    char stackkey[512], *key = keylen <= sizeof stackkey ? stackkey : malloc(keylen);
    if (!key)
        return false;
    char *p = key;
    for (size_t k = 0; k < n; k++) {
        if (values[k].len)
            memcpy(p, values[k].ptr, values[k].len);
        p += values[k].len;
        *p++ = (char)0xff;
    }
    uint64_t hash = fnv1a(fam, key, keylen);

    bool ok = true;
    pthread_mutex_lock(&g->lock);
    if ((g->nseries + 1) * 2 > g->capindex && !grow_index(g)) {
        ok = false;
        goto out;
    }
    size_t slot = hash & (g->capindex - 1);
    for (; g->index[slot]; slot = (slot + 1) & (g->capindex - 1)) {
        series *s = &g->series[g->index[slot] - 1];
        if (s->hash == hash && s->family == fam && s->keylen == keylen &&
            memcmp(s->key, key, keylen) == 0) {
            s->value = v;
            goto out;
        }
    }
    ok = g->nseries < g->max_series && add_series(g, fam, values, key, keylen, hash, v, slot);
out:
    pthread_mutex_unlock(&g->lock);
    if (key != stackkey)
        free(key);
    return ok;
}

size_t pg_gauges_count(pg_gauges *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = g->nseries;
    pthread_mutex_unlock(&g->lock);
    return n;
}

void pg_format_value(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(buf, len, "%.17g", v);
}

typedef int (*append_fn)(sluice_buf *buf, const char *p, size_t len);

static int puts_(append_fn append, sluice_buf *out, const char *s)
{
    return append(out, s, strlen(s));
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static int escaped(append_fn append, sluice_buf *out, const char *s, bool quotes)
{
    for (const char *p = s; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '\n' ? "\\n"
                        : (*p == '"' && quotes) ? "\\\"" : NULL;
        if (rep ? puts_(append, out, rep) : append(out, p, 1))
            return -1;
    }
    return 0;
}

static int render_family(pg_gauges *g, int fam, sluice_buf *out, append_fn append)
{
    const family *f = &g->families[fam];
    bool any = false;
    for (size_t i = 0; i < g->nseries; i++) {
        const series *s = &g->series[i];
        if (s->family != fam)
            continue;
        if (!any) {
            any = true;
            if (puts_(append, out, "# HELP ") || puts_(append, out, f->name) ||
                puts_(append, out, " ") || escaped(append, out, f->help, false) ||
                puts_(append, out, "\n# TYPE ") || puts_(append, out, f->name) ||
                puts_(append, out, " gauge\n"))
                return -1;
        }
        if (puts_(append, out, f->name))
            return -1;
        for (size_t k = 0; k < f->nlabels; k++) {
            if (puts_(append, out, k ? "," : "{") || puts_(append, out, f->labels[k]) ||
                puts_(append, out, "=\"") ||
                escaped(append, out, s->values[k], true) || puts_(append, out, "\""))
                return -1;
        }
        char num[64];
        pg_format_value(s->value, num, sizeof num);
        if ((f->nlabels && puts_(append, out, "}")) || puts_(append, out, " ") ||
            puts_(append, out, num) || puts_(append, out, "\n"))
            return -1;
    }
    return 0;
}

int pg_gauges_render(pg_gauges *g, sluice_buf *out, append_fn append)
{
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    for (size_t f = 0; rc == 0 && f < g->nfamilies; f++)
        rc = render_family(g, (int)f, out, append);
    pthread_mutex_unlock(&g->lock);
    return rc;
}
