/*
 * registry.c — plugin-defined counters, gauges and histograms; see
 * registry.h.
 *
 * Families are shared by name (two Kafka sources report into one
 * sluice_kafka_consumer_lag family, as Prometheus wants one HELP/TYPE per
 * name); each stage gets its own handle on a family, which carries the
 * stage's labels, and its own series. Values are doubles kept as their bit
 * pattern in an atomic, so an update is a load and a compare-and-swap.
 * A histogram series holds the core's fixed-bucket histogram instead
 * (histogram.c): durations in seconds, aggregating with the core's own.
 */
#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"
#include "json.h"
#include "metrics.h"

struct sluice_series {
    char **values;
    _Atomic uint64_t bits; /* the double's bit pattern */
    sl_histogram *hist;    /* SLUICE_HISTOGRAM families only */
    struct sluice_series *next;
};

typedef struct family family;

struct sluice_metric {
    family *fam;
    char *pipeline, *stage, *kind;
    sluice_series *series, *last;
    struct sluice_metric *next;
};

struct family {
    sl_registry *reg;
    char *name, *help;
    sluice_metric_type type;
    size_t nlabels;
    char **labels;
    sluice_metric *handles, *last_handle;
    family *next;
};

struct sl_registry {
    pthread_mutex_t lock;
    family *families, *last;
};

sl_registry *sl_registry_new(void)
{
    sl_registry *reg = calloc(1, sizeof *reg);
    if (reg)
        pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void sl_registry_free(sl_registry *reg)
{
    if (!reg)
        return;
    for (family *f = reg->families, *fn; f; f = fn) {
        fn = f->next;
        for (sluice_metric *m = f->handles, *mn; m; m = mn) {
            mn = m->next;
            for (sluice_series *s = m->series, *sn; s; s = sn) {
                sn = s->next;
                free_strings(s->values, f->nlabels);
                free(s->hist);
                free(s);
            }
            free(m->pipeline);
            free(m->stage);
            free(m->kind);
            free(m);
        }
        free_strings(f->labels, f->nlabels);
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static bool valid_name(const char *s, bool colons)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        bool ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                  (*s >= '0' && *s <= '9') || *s == '_' || (colons && *s == ':');
        if (!ok)
            return false;
    }
    return true;
}

static size_t count_labels(const char *const *labels)
{
    size_t n = 0;
    while (labels && labels[n])
        n++;
    return n;
}

static bool same_labels(const family *f, const char *const *labels, size_t n)
{
    if (f->nlabels != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return false;
    return true;
}

static family *find_or_add_family(sl_registry *reg, const char *name, sluice_metric_type type,
                                  const char *help, const char *const *labels,
                                  const char **why)
{
    size_t n = count_labels(labels);
    for (family *f = reg->families; f; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (f->type != type || !same_labels(f, labels, n)) {
            *why = "the name is already defined with another type or other labels";
            return NULL;
        }
        return f;
    }
    family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->reg = reg;
    f->name = strdup(name);
    f->help = strdup(help && *help ? help : name);
    f->type = type;
    f->nlabels = n;
    f->labels = calloc(n ? n : 1, sizeof *f->labels);
    for (size_t i = 0; i < n; i++)
        f->labels[i] = strdup(labels[i]);
    if (reg->last)
        reg->last->next = f;
    else
        reg->families = f;
    reg->last = f;
    return f;
}

sluice_metric *sl_registry_family(sl_registry *reg, const char *pipeline, const char *stage,
                                  const char *kind, const char *name, sluice_metric_type type,
                                  const char *help, const char *const *labels,
                                  const char **why)
{
    static const char *const reserved[] = {"pipeline", "stage", "kind", "le", NULL};
    *why = "out of memory";
    if (!reg)
        return NULL;
    if (!valid_name(name, true) ||
        (type != SLUICE_COUNTER && type != SLUICE_GAUGE && type != SLUICE_HISTOGRAM)) {
        *why = "not a valid metric name or type";
        return NULL;
    }
    for (size_t i = 0; labels && labels[i]; i++) {
        if (!valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0) {
            *why = "not a valid label name";
            return NULL;
        }
        for (size_t k = 0; reserved[k]; k++)
            if (strcmp(labels[i], reserved[k]) == 0) {
                *why = "the label name is reserved (pipeline, stage, kind, le)";
                return NULL;
            }
    }
    pthread_mutex_lock(&reg->lock);
    sluice_metric *m = NULL;
    family *f = find_or_add_family(reg, name, type, help, labels, why);
    if (f) {
        for (m = f->handles; m; m = m->next)
            if (strcmp(m->stage, stage) == 0)
                break;
        if (!m && (m = calloc(1, sizeof *m)) != NULL) {
            m->fam = f;
            m->pipeline = strdup(pipeline);
            m->stage = strdup(stage);
            m->kind = strdup(kind);
            if (f->last_handle)
                f->last_handle->next = m;
            else
                f->handles = m;
            f->last_handle = m;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return m;
}

sluice_series *sl_registry_series(sluice_metric *m, const char *const *values)
{
    if (!m)
        return NULL;
    size_t n = m->fam->nlabels;
    for (size_t i = 0; i < n; i++)
        if (!values || !values[i])
            return NULL;
    pthread_mutex_t *lock = &m->fam->reg->lock;
    pthread_mutex_lock(lock);
    sluice_series *s;
    for (s = m->series; s; s = s->next) {
        size_t i = 0;
        while (i < n && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == n)
            break;
    }
    if (!s && (s = calloc(1, sizeof *s)) != NULL) {
        s->values = calloc(n ? n : 1, sizeof *s->values);
        for (size_t i = 0; i < n; i++)
            s->values[i] = strdup(values[i]);
        atomic_init(&s->bits, 0); /* +0.0 */
        if (m->fam->type == SLUICE_HISTOGRAM)
            s->hist = calloc(1, sizeof *s->hist); /* zeroed atomics: an empty histogram */
        if (m->last)
            m->last->next = s;
        else
            m->series = s;
        m->last = s;
    }
    pthread_mutex_unlock(lock);
    return s;
}

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double double_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void sl_registry_add(sluice_series *s, double delta)
{
    if (!s || s->hist)
        return;
    uint64_t old = atomic_load_explicit(&s->bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&s->bits, &old, bits_of(double_of(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void sl_registry_set(sluice_series *s, double value)
{
    if (s && !s->hist)
        atomic_store_explicit(&s->bits, bits_of(value), memory_order_relaxed);
}

void sl_registry_observe(sluice_series *s, double seconds)
{
    if (!s || !s->hist || seconds != seconds)
        return;
    double ns = seconds * 1e9;
    sl_hist_observe_ns(s->hist, ns <= 0 ? 0 : ns >= 9.2e18 ? INT64_MAX : (int64_t)ns);
}

static int put_label(sluice_buf *out, const char *name, const char *value, bool first)
{
    if ((!first && sl_buf_putc(out, ',') != 0) || sl_buf_append(out, name, strlen(name)) != 0 ||
        sl_buf_append(out, "=\"", 2) != 0 || sl_metrics_escape_label(value, out) != 0 ||
        sl_buf_putc(out, '"') != 0)
        return -1;
    return 0;
}

/* The series' labels, rendered: pipeline="p",stage="s",kind="k",own="v". */
static int series_labels(sluice_buf *out, const family *f, const sluice_metric *m,
                         const sluice_series *s)
{
    if (put_label(out, "pipeline", m->pipeline, true) != 0 ||
        put_label(out, "stage", m->stage, false) != 0 ||
        put_label(out, "kind", m->kind, false) != 0)
        return -1;
    for (size_t i = 0; i < f->nlabels; i++)
        if (put_label(out, f->labels[i], s->values[i], false) != 0)
            return -1;
    return 0;
}

static int render_series(sluice_buf *out, const family *f, const sluice_metric *m,
                         const sluice_series *s)
{
    if (s->hist) {
        sluice_buf labels = {0};
        int rc = series_labels(&labels, f, m, s) != 0 || sl_buf_putc(&labels, '\0') != 0
                     ? -1
                     : sl_hist_render(s->hist, f->name, labels.data, out);
        sl_buf_free(&labels);
        return rc;
    }
    char num[64];
    double v = double_of(atomic_load_explicit(&s->bits, memory_order_relaxed));
    snprintf(num, sizeof num, "} %.17g\n", v);
    if (sl_buf_append(out, f->name, strlen(f->name)) != 0 || sl_buf_putc(out, '{') != 0 ||
        series_labels(out, f, m, s) != 0)
        return -1;
    return sl_buf_append(out, num, strlen(num));
}

int sl_registry_render(sl_registry *reg, sluice_buf *out)
{
    if (!reg)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&reg->lock);
    for (const family *f = reg->families; f && rc == 0; f = f->next) {
        char head[1024];
        int n = snprintf(head, sizeof head, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
                         f->name, f->type == SLUICE_COUNTER     ? "counter"
                                  : f->type == SLUICE_HISTOGRAM ? "histogram"
                                                                : "gauge");
        if (n < 0 || (size_t)n >= sizeof head)
            n = (int)strlen(head);
        rc = sl_buf_append(out, head, (size_t)n);
        for (const sluice_metric *m = f->handles; m && rc == 0; m = m->next)
            for (const sluice_series *s = m->series; s && rc == 0; s = s->next)
                rc = render_series(out, f, m, s);
    }
    pthread_mutex_unlock(&reg->lock);
    return rc ? -1 : 0;
}
