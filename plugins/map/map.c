/*
 * map.c — the `map` operator: compute fields with Lua expressions, drop
 * fields.
 *
 *     operators:
 *       enriched:
 *         type: map
 *         input: logs
 *         set:
 *           kb: bytes / 1024
 *           slow: response_time > 0.5
 *           route: method .. " " .. path
 *           kind: '"access"'        # a Lua string literal: quoted inside YAML
 *         drop: [user_agent, referrer]
 *
 * Every `set:` expression is evaluated against the ORIGINAL input record,
 * in file order, before any field is written: `a: b` and `b: a` swap two
 * fields, and no expression sees another one's result. Then the fields are
 * set (added or replaced; a nil result sets the field to null) and the
 * `drop:` fields removed — dropping comes last, so a field may be read by
 * an expression and dropped in the same stage.
 *
 * Records are copied by reference (host->record_copy) and only the changed
 * fields are written, into the output batch's arena. A runtime error in any
 * expression rejects the whole record (reason `expr_error`, the detail names
 * the field) to the stage's `errors` output; it is not emitted half-mapped.
 */
#include "sluice/plugin.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct map_config {
    sluice_map set;
    sluice_list drop;
} map_config;

static const sluice_option map_options[] = {
    {.name = "set",
     .type = SLUICE_OPT_MAP,
     .offset = offsetof(map_config, set),
     .help = "field: Lua expression, e.g. `kb: bytes / 1024`; all are evaluated against "
             "the original record (none sees another's result), then set in file order; "
             "a Lua string literal needs quotes inside the YAML value: `kind: '\"web\"'`"},
    {.name = "drop",
     .type = SLUICE_OPT_LIST,
     .offset = offsetof(map_config, drop),
     .help = "field names to remove (after `set`, so an expression may still read them)"},
    {.name = NULL},
};

typedef struct computed_field {
    sluice_name name;
    const char *field; /* owned by the core's config, for messages */
    sluice_expr *expr;
} computed_field;

typedef struct map_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    size_t nset;
    computed_field *set;
    sluice_value *values; /* one per set field, reused per record */
    size_t ndrop;
    sluice_name *drop;
} map_op;

static void map_destroy(void *self)
{
    map_op *m = self;
    if (!m)
        return;
    for (size_t i = 0; i < m->nset; i++)
        if (m->set[i].expr)
            m->host->expr_free(m->set[i].expr);
    free(m->set);
    free(m->values);
    free(m->drop);
    free(m);
}

/* Compile every `set:` expression; report each bad one (not only the first). */
static bool compile_set(map_op *m, const sluice_map *set)
{
    bool ok = true;
    for (size_t i = 0; i < set->count; i++) {
        computed_field *cf = &m->set[i];
        const char *field = set->keys[i];
        char option[256];
        cf->field = field;
        cf->name = m->host->intern(field, strlen(field));
        snprintf(option, sizeof option, "set.%s", field);
        if (!*field) {
            m->host->config_error(m->ctx, "set", "a field name cannot be empty");
            ok = false;
            continue;
        }
        cf->expr = m->host->expr_compile(m->ctx, option, set->values[i]);
        if (!cf->expr)
            ok = false;
    }
    return ok;
}

static int map_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                      void **self, char *err, size_t errlen)
{
    const map_config *cfg = config;
    if (cfg->set.count == 0 && cfg->drop.count == 0) {
        host->config_error(ctx, "set", "map needs `set` or `drop` (or both)");
        snprintf(err, errlen, "map: nothing to do");
        return SLUICE_ERROR;
    }
    map_op *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    m->host = host;
    m->ctx = ctx;
    m->nset = cfg->set.count;
    m->ndrop = cfg->drop.count;
    m->set = calloc(m->nset + 1, sizeof *m->set);
    m->values = calloc(m->nset + 1, sizeof *m->values);
    m->drop = calloc(m->ndrop + 1, sizeof *m->drop);
    if (!m->set || !m->values || !m->drop)
        goto oom;
    for (size_t i = 0; i < m->ndrop; i++)
        m->drop[i] = host->intern(cfg->drop.items[i], strlen(cfg->drop.items[i]));
    if (!compile_set(m, &cfg->set)) {
        map_destroy(m);
        snprintf(err, errlen, "map: invalid `set` expression");
        return SLUICE_ERROR;
    }
    *self = m;
    return SLUICE_OK;
oom:
    map_destroy(m);
    snprintf(err, errlen, "map: out of memory");
    return SLUICE_ERROR;
}

/* Evaluate every expression on rec into m->values (strings in out). On a
 * runtime error the record is rejected: SLUICE_RETRY to skip it, or
 * SLUICE_ERROR under on_error: fail. */
static int compute(map_op *m, const sluice_record *rec, sluice_batch *out, char *err,
                   size_t errlen)
{
    for (size_t j = 0; j < m->nset; j++) {
        char msg[512], detail[600];
        if (m->host->expr_eval(m->set[j].expr, rec, out, &m->values[j], msg, sizeof msg) ==
            SLUICE_OK)
            continue;
        snprintf(detail, sizeof detail, "set.%s: %s", m->set[j].field, msg);
        if (m->host->reject(m->ctx, rec, (sluice_str){NULL, 0}, "expr_error", detail) ==
            SLUICE_ERROR) {
            snprintf(err, errlen, "map: %s", detail);
            return SLUICE_ERROR;
        }
        return SLUICE_RETRY;
    }
    return SLUICE_OK;
}

static int emit_out(map_op *m, sluice_batch *out, char *err, size_t errlen)
{
    if (m->host->emit(m->ctx, out) != SLUICE_OK) {
        snprintf(err, errlen, "map: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int map_record(map_op *m, const sluice_batch *in, const sluice_record *rec,
                      sluice_batch *out, char *err, size_t errlen)
{
    const sluice_host *h = m->host;
    int rc = compute(m, rec, out, err, errlen);
    if (rc != SLUICE_OK)
        return rc;
    sluice_record *r = h->record_copy(out, in, rec);
    if (!r)
        goto oom;
    for (size_t j = 0; j < m->nset; j++)
        if (h->set(out, r, m->set[j].name, m->values[j]) != SLUICE_OK)
            goto oom;
    for (size_t j = 0; j < m->ndrop; j++)
        h->unset(out, r, m->drop[j]);
    return SLUICE_OK;
oom:
    snprintf(err, errlen, "map: out of memory");
    return SLUICE_ERROR;
}

static int map_process(void *self, const sluice_batch *in, unsigned input, char *err,
                       size_t errlen)
{
    map_op *m = self;
    const sluice_host *h = m->host;
    sluice_batch *out = NULL;
    for (uint32_t i = 0; i < in->count; i++) {
        /* Room first: the expressions' strings must land in the batch the
         * record goes to. */
        if (out && out->count == out->capacity) {
            sluice_batch *full = out;
            out = NULL;
            if (emit_out(m, full, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
        }
        if (!out && !(out = h->batch_new(m->ctx))) {
            snprintf(err, errlen, "map: out of memory");
            return SLUICE_ERROR;
        }
        if (map_record(m, in, &in->records[i], out, err, errlen) == SLUICE_ERROR) {
            h->batch_free(out);
            return SLUICE_ERROR;
        }
    }
    if (!out)
        return SLUICE_OK;
    if (out->count == 0) {
        h->batch_free(out);
        return SLUICE_OK;
    }
    return emit_out(m, out, err, errlen);
}

const sluice_plugin_def sl_plugin_map_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "map",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "set fields from Lua expressions (`set:`) and remove fields (`drop:`)",
    .config_size = sizeof(map_config),
    .options = map_options,
    .create = map_create,
    .destroy = map_destroy,
    .process = map_process,
};
