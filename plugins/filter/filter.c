/*
 * filter.c — the `filter` operator: keep the records a Lua expression holds
 * true for.
 *
 *     operators:
 *       errors:
 *         type: filter
 *         input: logs
 *         where: status_code >= 400 and service ~= "health"
 *
 * The expression is compiled once at create() by the host (a syntax error
 * is reported at the `where:` line and column, exit status 2) and evaluated
 * per record. A record passes when the result is Lua-true: anything but
 * nil and false, so `where: user_id` keeps the records that have one.
 * Passing records are copied by reference (host->record_copy): no field is
 * copied, the output batch keeps the input batch alive. A runtime error
 * (`bytes > 1000` on a record whose bytes is a string) rejects that record
 * to the stage's `errors` output with reason `expr_error` and the Lua
 * message; the rest of the batch goes on (or, with `on_error: fail`, the
 * run stops).
 */
#include "sluice/plugin.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct filter_config {
    char *where;
} filter_config;

static const sluice_option filter_options[] = {
    {.name = "where",
     .type = SLUICE_OPT_STRING,
     .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(filter_config, where),
     .help = "a Lua expression over the record's fields; records for which it is "
             "neither nil nor false pass (e.g. `status_code >= 400`, `user.id ~= nil` "
             "for a path into a nested object)"},
    {.name = NULL},
};

typedef struct filter {
    const sluice_host *host;
    sluice_ctx *ctx;
    sluice_expr *where;
} filter;

static bool truthy(const sluice_value *v)
{
    return !(v->type == SLUICE_NULL || (v->type == SLUICE_BOOL && !v->u.b));
}

static int filter_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const filter_config *cfg = config;
    filter *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "filter: out of memory");
        return SLUICE_ERROR;
    }
    f->host = host;
    f->ctx = ctx;
    /* The host reports a syntax error at the option's position. */
    f->where = host->expr_compile(ctx, "where", cfg->where);
    if (!f->where) {
        free(f);
        snprintf(err, errlen, "filter: invalid `where` expression");
        return SLUICE_ERROR;
    }
    *self = f;
    return SLUICE_OK;
}

static void filter_destroy(void *self)
{
    filter *f = self;
    if (!f)
        return;
    f->host->expr_free(f->where);
    free(f);
}

/* Append rec to *out, emitting a full batch first. */
static int pass(filter *f, sluice_batch **out, const sluice_batch *in,
                const sluice_record *rec, char *err, size_t errlen)
{
    const sluice_host *h = f->host;
    if (h->record_copy(*out, in, rec))
        return SLUICE_OK;
    sluice_batch *full = *out;
    *out = NULL;
    if (h->emit(f->ctx, full) != SLUICE_OK) {
        snprintf(err, errlen, "filter: emitting a batch failed");
        return SLUICE_ERROR;
    }
    *out = h->batch_new(f->ctx);
    if (!*out || !h->record_copy(*out, in, rec)) {
        snprintf(err, errlen, "filter: out of memory");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int filter_process(void *self, const sluice_batch *in, unsigned input, char *err,
                          size_t errlen)
{
    filter *f = self;
    const sluice_host *h = f->host;
    sluice_batch *out = h->batch_new(f->ctx);
    if (!out) {
        snprintf(err, errlen, "filter: out of memory");
        return SLUICE_ERROR;
    }
    for (uint32_t i = 0; i < in->count; i++) {
        const sluice_record *rec = &in->records[i];
        sluice_value v;
        char msg[512];
        /* Only truthiness matters, but a string result still needs a batch
         * to land in: the output batch is the one that lives on. */
        if (h->expr_eval(f->where, rec, out, &v, msg, sizeof msg) != SLUICE_OK) {
            if (h->reject(f->ctx, rec, (sluice_str){NULL, 0}, "expr_error", msg) ==
                SLUICE_ERROR) {
                snprintf(err, errlen, "filter: where: %s", msg);
                h->batch_free(out);
                return SLUICE_ERROR;
            }
            continue;
        }
        if (truthy(&v) && pass(f, &out, in, rec, err, errlen) != SLUICE_OK) {
            if (out)
                h->batch_free(out);
            return SLUICE_ERROR;
        }
    }
    if (out->count == 0) {
        h->batch_free(out);
        return SLUICE_OK;
    }
    if (h->emit(f->ctx, out) != SLUICE_OK) {
        snprintf(err, errlen, "filter: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

const sluice_plugin_def sl_plugin_filter_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "filter",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "keep the records a Lua expression (`where:`) holds true for",
    .config_size = sizeof(filter_config),
    .options = filter_options,
    .create = filter_create,
    .destroy = filter_destroy,
    .process = filter_process,
};
