/*
 * pushgateway.c — the `pushgateway` sink (pushgateway.so): ships metrics
 * to a Prometheus Pushgateway, for runs that Prometheus cannot scrape
 * (short batch runs, hosts behind a NAT).
 *
 * Two kinds of metrics go into each push:
 *   - the runtime's own (everything /metrics serves, through the host's
 *     metrics_text), unless push_runtime_metrics: false;
 *   - gauges made from the records this sink receives: each entry of
 *     `metrics` names a gauge, the field holding its value and the fields
 *     its labels come from, so a window's results per service become
 *     `avg_rt{service="api"} 0.12`. A record sets the value of its label
 *     set; the last record wins.
 *
 * The gateway's group is `job` (default: the pipeline's name) plus the
 * `grouping` labels. A push replaces the group (HTTP PUT) every `interval`
 * from a thread of its own, and once more when the input ends (flush), so
 * a batch run leaves its final figures behind; see push.h for retries.
 *
 * A record that cannot make every one of its gauges (value missing or not
 * a number, a label field missing, the series limit reached) goes to the
 * stage's errors output as a whole and sets none of them.
 *
 * It is a loadable plugin, like Kafka, so the sluice binary itself does not
 * link libcurl.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gauges.h"
#include "push.h"
#include "sluice/plugin.h"

typedef struct metric_spec {
    char *name;
    char *value;
    sluice_map labels;
    char *help;
} metric_spec;

typedef struct pg_config {
    char *url;
    char *job;
    sluice_map grouping;
    int64_t interval_ms;
    int64_t timeout_ms;
    int64_t final_timeout_ms;
    bool push_runtime_metrics;
    sluice_objects metrics;
    int64_t max_series;
    char *username;
    char *password;
    char *ca_file;
    bool tls_verify;
} pg_config;

static const sluice_option metric_fields[] = {
    {.name = "name", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(metric_spec, name), .help = "the gauge's name (a Prometheus metric name)"},
    {.name = "value", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(metric_spec, value),
     .help = "the field holding its value (a number; dotted for nested fields)"},
    {.name = "labels", .type = SLUICE_OPT_MAP, .offset = offsetof(metric_spec, labels),
     .help = "label name -> the field its value comes from"},
    {.name = "help", .type = SLUICE_OPT_STRING, .offset = offsetof(metric_spec, help),
     .help = "the HELP text (default: says which stage and field)"},
    SLUICE_OPTIONS_END_SIZED(metric_spec)};

static const sluice_option pg_options[] = {
    {.name = "url", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(pg_config, url),
     .help = "the Pushgateway, e.g. http://127.0.0.1:9091"},
    {.name = "job", .type = SLUICE_OPT_STRING, .offset = offsetof(pg_config, job),
     .help = "the group's job label (default: the pipeline's name)"},
    {.name = "grouping", .type = SLUICE_OPT_MAP, .offset = offsetof(pg_config, grouping),
     .help = "more labels of the group, e.g. {instance: host-1}"},
    {.name = "interval", .type = SLUICE_OPT_DURATION, .default_value = "15s",
     .offset = offsetof(pg_config, interval_ms), .help = "how often to push while running"},
    {.name = "timeout", .type = SLUICE_OPT_DURATION, .default_value = "5s",
     .offset = offsetof(pg_config, timeout_ms), .help = "the longest one push may take"},
    {.name = "final_timeout", .type = SLUICE_OPT_DURATION, .default_value = "10s",
     .offset = offsetof(pg_config, final_timeout_ms),
     .help = "how long the push at the end of the run keeps retrying"},
    {.name = "push_runtime_metrics", .type = SLUICE_OPT_BOOL, .default_value = "true",
     .offset = offsetof(pg_config, push_runtime_metrics),
     .help = "push the runtime's own metrics (what /metrics serves) too"},
    {.name = "metrics", .type = SLUICE_OPT_OBJECT_LIST, .offset = offsetof(pg_config, metrics),
     .fields = metric_fields, .help = "gauges made from the records"},
    {.name = "max_series", .type = SLUICE_OPT_INT, .default_value = "10000",
     .offset = offsetof(pg_config, max_series),
     .help = "the most record-made series kept; records beyond go to errors"},
    {.name = "username", .type = SLUICE_OPT_STRING, .offset = offsetof(pg_config, username),
     .help = "basic auth user for the gateway"},
    {.name = "password", .type = SLUICE_OPT_STRING, .offset = offsetof(pg_config, password),
     .help = "basic auth password (use ${ENV})"},
    {.name = "ca_file", .type = SLUICE_OPT_STRING, .offset = offsetof(pg_config, ca_file),
     .help = "CA certificates to trust for an https url"},
    {.name = "tls_verify", .type = SLUICE_OPT_BOOL, .default_value = "true",
     .offset = offsetof(pg_config, tls_verify),
     .help = "check the gateway's certificate and name"},
    {0}};

/* One gauge as compiled at create(): field ids, not names. */
typedef struct gauge_spec {
    int family;
    const char *value_path;   /* dotted: looked up with get_path */
    sluice_name value_field;  /* 0 when value_path is dotted */
    size_t nlabels;
    const char **label_paths;
    sluice_name *label_fields;
} gauge_spec;

typedef struct pg_sink {
    const sluice_host *host;
    sluice_ctx *ctx;
    const pg_config *cfg;
    char *url;
    gauge_spec *specs;
    size_t nspecs;
    pg_gauges *gauges;
    pg_pusher *pusher;
    bool final_pushed;
    sluice_series *series_held;
} pg_sink;

/* ---- Checking the options ------------------------------------------------------ */

static bool map_has(const sluice_map *m, const char *key)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0)
            return true;
    return false;
}

static bool valid_name(const char *s, bool metric)
{
    if (!s || !*s || isdigit((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (metric && *s == ':')))
            return false;
    return true;
}

static bool check_labels(pg_sink *pg, const sluice_map *labels, const char *option,
                         const pg_config *cfg)
{
    bool ok = true;
    for (size_t i = 0; i < labels->count; i++) {
        const char *l = labels->keys[i];
        char where[300];
        snprintf(where, sizeof where, "%s.%s", option, l);
        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0) {
            pg->host->config_error(pg->ctx, where, "'%s' is not a label name (letters, digits "
                                   "and '_', not first a digit, not starting with __)", l);
            ok = false;
        } else if (labels != &cfg->grouping &&
                   (strcmp(l, "job") == 0 || map_has(&cfg->grouping, l))) {
            pg->host->config_error(pg->ctx, where, "label '%s' is part of the group's key "
                                   "(job, grouping) and cannot also come from records", l);
            ok = false;
        }
    }
    return ok;
}

/* Messages quote the URL without the password it may carry. */
static bool check_url(pg_sink *pg, const char *url)
{
    const char *why = NULL;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        why = " is not an http:// or https:// URL";
    else if (strchr(url, '?') || strchr(url, '#'))
        why = ": give the gateway's base URL, without a query or fragment";
    if (!why)
        return true;
    /* The core hides a password in the URL from every message. */
    pg->host->config_error(pg->ctx, "url", "'%s'%s", url, why);
    return false;
}

/* Names the runtime's metrics use; a gauge of the same name would make the
 * push inconsistent, and the gateway refuses those. */
static bool reserved_name(const char *name)
{
    return strncmp(name, "sluice_", 7) == 0 || strncmp(name, "process_", 8) == 0 ||
           strcmp(name, "push_time_seconds") == 0 ||
           strcmp(name, "push_failure_time_seconds") == 0;
}

static bool check_metrics(pg_sink *pg, const pg_config *cfg)
{
    bool ok = true;
    for (size_t i = 0; i < cfg->metrics.count; i++) {
        const metric_spec *m = cfg->metrics.items[i];
        char where[64];
        snprintf(where, sizeof where, "metrics.%zu.name", i);
        if (!valid_name(m->name, true)) {
            pg->host->config_error(pg->ctx, where, "'%s' is not a Prometheus metric name "
                                   "(letters, digits, '_' and ':', not first a digit)", m->name);
            ok = false;
        } else if (reserved_name(m->name)) {
            pg->host->config_error(pg->ctx, where, "'%s' is a name the runtime's own metrics "
                                   "or the gateway use; choose another", m->name);
            ok = false;
        }
        for (size_t j = 0; j < i; j++) {
            const metric_spec *other = cfg->metrics.items[j];
            if (strcmp(other->name, m->name) == 0) {
                pg->host->config_error(pg->ctx, where, "gauge '%s' is already defined by "
                                       "metrics.%zu", m->name, j);
                ok = false;
            }
        }
        snprintf(where, sizeof where, "metrics.%zu.labels", i);
        ok &= check_labels(pg, &m->labels, where, cfg);
    }
    return ok;
}

/* ---- Compiling the gauges ------------------------------------------------------- */

static sluice_name field_or_path(pg_sink *pg, const char *path)
{
    return strchr(path, '.') ? 0 : pg->host->intern(path, strlen(path));
}

static bool compile_specs(pg_sink *pg, const pg_config *cfg)
{
    pg->specs = calloc(cfg->metrics.count ? cfg->metrics.count : 1, sizeof *pg->specs);
    if (!pg->specs)
        return false;
    for (size_t i = 0; i < cfg->metrics.count; i++) {
        const metric_spec *m = cfg->metrics.items[i];
        gauge_spec *g = &pg->specs[pg->nspecs++];
        char help[512];
        if (!m->help)
            snprintf(help, sizeof help, "Field %s of the records of stage %s.", m->value,
                     pg->host->stage_name(pg->ctx));
        g->family = pg_gauges_family(pg->gauges, m->name, m->help ? m->help : help,
                                     m->labels.count, (const char *const *)m->labels.keys);
        g->value_path = m->value;
        g->value_field = field_or_path(pg, m->value);
        g->nlabels = m->labels.count;
        g->label_paths = calloc(g->nlabels ? g->nlabels : 1, sizeof *g->label_paths);
        g->label_fields = calloc(g->nlabels ? g->nlabels : 1, sizeof *g->label_fields);
        if (g->family < 0 || !g->label_paths || !g->label_fields)
            return false;
        for (size_t k = 0; k < g->nlabels; k++) {
            g->label_paths[k] = m->labels.values[k];
            g->label_fields[k] = field_or_path(pg, m->labels.values[k]);
        }
    }
    return true;
}

/* ---- The body of a push --------------------------------------------------------- */

/* The runtime's text minus the process_* families: the gateway has its own
 * process_* metrics, and families it also exposes must match them in every
 * HELP text, which a push from another program cannot promise. */
static int runtime_metrics(pg_sink *pg, sluice_buf *out)
{
    sluice_buf all = {0};
    int rc = pg->host->metrics_text(pg->ctx, &all);
    const char *p = all.data ? all.data : "", *end = p + all.len;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        const char *name = p;
        if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0)
            name = p + 7;
        if (strncmp(name, "process_", 8) != 0)
            rc = pg->host->buf_append(out, p, (size_t)(next - p));
        p = next;
    }
    pg->host->buf_free(&all);
    if (rc == 0 && out->len && out->data[out->len - 1] != '\n')
        rc = pg->host->buf_append(out, "\n", 1);
    return rc;
}

static int build_body(void *arg, sluice_buf *out)
{
    pg_sink *pg = arg;
    pg->host->series_set(pg->series_held, (double)pg_gauges_count(pg->gauges));
    if (pg->cfg->push_runtime_metrics && runtime_metrics(pg, out) != 0)
        return -1;
    return pg_gauges_render(pg->gauges, out, pg->host->buf_append);
}

/* ---- create / start / destroy ------------------------------------------------------ */

static void pg_destroy(void *self);

static int pg_create(const sluice_host *host, sluice_ctx *ctx, const void *config, void **self,
                     char *err, size_t errlen)
{
    const pg_config *cfg = config;
    if (!SLUICE_HOST_HAS(host, metrics_text)) {
        snprintf(err, errlen, "the pushgateway sink needs sluice's plugin ABI 1.3 or newer "
                 "(this sluice has %u.%u)", host->abi_major, host->abi_minor);
        return SLUICE_ERROR;
    }
    pg_sink *pg = calloc(1, sizeof *pg);
    if (!pg) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    *self = pg;
    pg->host = host;
    pg->ctx = ctx;
    pg->cfg = cfg;

    bool ok = check_url(pg, cfg->url);
    const char *job = cfg->job ? cfg->job : host->pipeline_name(ctx);
    if (cfg->job && !*cfg->job) {
        host->config_error(ctx, "job", "the job must not be empty");
        ok = false;
    }
    ok &= check_labels(pg, &cfg->grouping, "grouping", cfg);
    if (map_has(&cfg->grouping, "job")) {
        host->config_error(ctx, "grouping.job", "the job is set with `job`, not in grouping");
        ok = false;
    }
    ok &= check_metrics(pg, cfg);
    if (cfg->interval_ms <= 0) {
        host->config_error(ctx, "interval", "the interval must be more than 0");
        ok = false;
    }
    if (cfg->timeout_ms <= 0) {
        host->config_error(ctx, "timeout", "the timeout must be more than 0");
        ok = false;
    }
    if (cfg->max_series <= 0) {
        host->config_error(ctx, "max_series", "max_series must be more than 0");
        ok = false;
    }
    if (!cfg->username != !cfg->password) {
        host->config_error(ctx, cfg->username ? "username" : "password",
                           "basic auth needs both username and password");
        ok = false;
    }
    if (!cfg->push_runtime_metrics && cfg->metrics.count == 0) {
        host->config_error(ctx, "push_runtime_metrics", "nothing to push: no `metrics` and "
                           "push_runtime_metrics is false");
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "bad pushgateway options");
        goto fail;
    }

    pg->gauges = pg_gauges_new((size_t)cfg->max_series);
    pg->url = pg->gauges ? pg_group_url(host, cfg->url, job, &cfg->grouping) : NULL;
    if (!pg->url || !compile_specs(pg, cfg)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pg->series_held = host->metric_series(
        host->metric_new(ctx, "sluice_pushgateway_series", SLUICE_GAUGE,
                         "Series made from records that the sink pushes.", NULL),
        NULL);
    return SLUICE_OK;
fail: /* the core destroys only what create() made */
    pg_destroy(pg);
    *self = NULL;
    return SLUICE_ERROR;
}

static int pg_start(void *self, char *err, size_t errlen)
{
    pg_sink *pg = self;
    const pg_config *cfg = pg->cfg;
    pg_push_settings s = {
        .host = pg->host, .ctx = pg->ctx, .url = pg->url,
        .interval_ms = cfg->interval_ms, .timeout_ms = cfg->timeout_ms,
        .username = cfg->username, .password = cfg->password,
        .ca_file = cfg->ca_file, .tls_verify = cfg->tls_verify,
        .body = build_body, .arg = pg,
    };
    pg->pusher = pg_pusher_new(&s, err, errlen);
    if (!pg->pusher)
        return SLUICE_ERROR;
    pg->host->log(pg->ctx, SLUICE_LOG_INFO, "pushing to %s every %" PRId64 " ms", pg->url,
                  cfg->interval_ms);
    return pg_pusher_start(pg->pusher, err, errlen);
}

/* ---- Records -> gauges ------------------------------------------------------------ */

static bool lookup(pg_sink *pg, sluice_batch *scratch, const sluice_record *r,
                   sluice_name field, const char *path, sluice_value *out)
{
    if (field) {
        const sluice_value *v = sluice_get(r, field);
        if (!v)
            return false;
        *out = *v;
        return true;
    }
    return pg->host->get_path(scratch, r, path, out);
}

static bool number_of(const sluice_value *v, double *out)
{
    switch (v->type) {
    case SLUICE_INT:
        *out = (double)v->u.i;
        return true;
    case SLUICE_DOUBLE:
        *out = v->u.d;
        return true;
    case SLUICE_BOOL:
        *out = v->u.b ? 1 : 0;
        return true;
    case SLUICE_STRING: { /* lines and csv inputs carry numbers as text */
        char text[64], *end;
        if (v->u.s.len == 0 || v->u.s.len >= sizeof text)
            return false;
        memcpy(text, v->u.s.ptr, v->u.s.len);
        text[v->u.s.len] = 0;
        *out = strtod(text, &end);
        return *end == 0 && !isspace((unsigned char)text[0]);
    }
    default:
        return false;
    }
}

/* A label's text; numbers are printed into the scratch batch's arena. */
static bool label_of(pg_sink *pg, sluice_batch *scratch, const sluice_value *v,
                     sluice_str *out)
{
    char text[64];
    int n;
    switch (v->type) {
    case SLUICE_STRING:
    case SLUICE_JSON:
        *out = v->u.s;
        return true;
    case SLUICE_BOOL:
        *out = v->u.b ? (sluice_str){"true", 4} : (sluice_str){"false", 5};
        return true;
    case SLUICE_INT:
        n = snprintf(text, sizeof text, "%" PRId64, v->u.i);
        break;
    case SLUICE_DOUBLE:
        pg_format_value(v->u.d, text, sizeof text);
        n = (int)strlen(text);
        break;
    default:
        return false; /* null: no label value */
    }
    *out = pg->host->str(scratch, text, (size_t)n);
    return out->ptr != NULL;
}

typedef struct made {
    double value;
    sluice_str *labels;
} made;

/* Every gauge of one record, or the reason it cannot make them. */
static const char *make_gauges(pg_sink *pg, sluice_batch *scratch, const sluice_record *r,
                               made *m, char *detail, size_t len)
{
    for (size_t i = 0; i < pg->nspecs; i++) {
        const gauge_spec *g = &pg->specs[i];
        sluice_value v;
        if (!lookup(pg, scratch, r, g->value_field, g->value_path, &v)) {
            snprintf(detail, len, "no field '%s' for gauge %s", g->value_path,
                     ((const metric_spec *)pg->cfg->metrics.items[i])->name);
            return "missing_field";
        }
        if (!number_of(&v, &m[i].value)) {
            snprintf(detail, len, "field '%s' is not a number", g->value_path);
            return "not_a_number";
        }
        m[i].labels = pg->host->alloc(scratch, (g->nlabels ? g->nlabels : 1) * sizeof(sluice_str));
        if (!m[i].labels) {
            snprintf(detail, len, "out of memory");
            return "out_of_memory";
        }
        for (size_t k = 0; k < g->nlabels; k++) {
            if (!lookup(pg, scratch, r, g->label_fields[k], g->label_paths[k], &v) ||
                !label_of(pg, scratch, &v, &m[i].labels[k])) {
                snprintf(detail, len, "no value in field '%s' for label %s", g->label_paths[k],
                         ((const metric_spec *)pg->cfg->metrics.items[i])->labels.keys[k]);
                return "missing_field";
            }
        }
    }
    return NULL;
}

static int pg_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    pg_sink *pg = self;
    if (pg->nspecs == 0)
        return SLUICE_OK;
    made m[pg->nspecs];
    /* Label texts of numbers and nested lookups land in one arena per batch. */
    sluice_batch *scratch = pg->host->batch_new(pg->ctx);
    if (!scratch) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    int rc = SLUICE_OK;
    for (uint32_t i = 0; rc == SLUICE_OK && i < in->count; i++) {
        const sluice_record *r = &in->records[i];
        char detail[300];
        const char *why = make_gauges(pg, scratch, r, m, detail, sizeof detail);
        for (size_t s = 0; !why && s < pg->nspecs; s++)
            if (!pg_gauges_set(pg->gauges, pg->specs[s].family, m[s].labels, m[s].value)) {
                snprintf(detail, sizeof detail, "the sink already holds max_series (%" PRId64
                         ") series", pg->cfg->max_series);
                why = "too_many_series";
            }
        if (why && pg->host->reject(pg->ctx, r, r->raw, why, detail) == SLUICE_ERROR) {
            snprintf(err, errlen, "%s", detail);
            rc = SLUICE_ERROR;
        }
    }
    pg->host->batch_free(scratch);
    return rc;
}

/* ---- The end ---------------------------------------------------------------- */

static void final_push(pg_sink *pg)
{
    if (!pg->pusher || pg->final_pushed)
        return;
    pg->final_pushed = true;
    if (pg_pusher_finish(pg->pusher, pg->cfg->final_timeout_ms))
        pg->host->log(pg->ctx, SLUICE_LOG_INFO, "final push to %s done", pg->url);
    else
        pg->host->log(pg->ctx, SLUICE_LOG_ERROR, "the final push to %s failed for %" PRId64
                      " ms; this run's last figures are not in the gateway", pg->url,
                      pg->cfg->final_timeout_ms);
}

/* The final push is not a reason to fail the run: the gateway is a side
 * channel, and its failure is logged and counted. */
static int pg_flush(void *self, char *err, size_t errlen)
{
    final_push(self);
    return SLUICE_OK;
}

static void pg_destroy(void *self)
{
    pg_sink *pg = self;
    if (!pg)
        return;
    final_push(pg); /* a run that failed still reports how far it got */
    pg_pusher_free(pg->pusher);
    for (size_t i = 0; i < pg->nspecs; i++) {
        free(pg->specs[i].label_paths);
        free(pg->specs[i].label_fields);
    }
    free(pg->specs);
    pg_gauges_free(pg->gauges);
    free(pg->url);
    free(pg);
}

static const sluice_plugin_def pushgateway_sink = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "pushgateway",
    .kind = SLUICE_SINK,
    .version = SLUICE_VERSION,
    .description = "push runtime metrics and gauges made from records to a Prometheus "
                   "Pushgateway",
    .config_size = sizeof(pg_config),
    .options = pg_options,
    .create = pg_create,
    .start = pg_start,
    .destroy = pg_destroy,
    .write = pg_write,
    .flush = pg_flush,
};

__attribute__((visibility("default"))) const sluice_plugin_def *sluice_plugin(void)
{
    return &pushgateway_sink;
}
