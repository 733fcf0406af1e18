/*
 * host.c — the table of core services handed to every plugin's create().
 *
 * Most entries are thin wrappers over record.h, codec.h and expr.h; emit and
 * reject go to the runtime (runtime.c). config_error() is only meaningful
 * while create() runs: it turns an option path into the file:line:col of
 * that option in the pipeline file.
 */
#include <stdarg.h>
#include <stdio.h>

#include "codec.h"
#include "expr.h"
#include "json.h"
#include "loader.h"
#include "metrics.h"
#include "registry.h"
#include "runtime.h"

static void host_log(sluice_ctx *ctx, sluice_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vlog(level, ctx ? ctx->cfg->name : NULL, fmt, ap);
    va_end(ap);
}

static void host_config_error(sluice_ctx *ctx, const char *option, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->config_errors++;
    if (!ctx->diag) {
        sl_log(SLUICE_LOG_ERROR, ctx->cfg->name, "option '%s': %s", option, msg);
        return;
    }
    const sl_node *at = sl_stage_option_node(ctx->cfg, option ? option : "");
    if (!at)
        at = ctx->cfg->node;
    sl_diag_add(ctx->diag, at->line, at->col, "%s '%s': %s%s%s", sl_kind_name(ctx->cfg->kind),
                ctx->cfg->name, option ? option : "", option ? ": " : "", msg);
}

static sluice_name host_intern(const char *name, size_t len)
{
    return sl_intern(name, len);
}

static sluice_batch *host_batch_new(sluice_ctx *ctx)
{
    return sl_batch_new(ctx->cfg->batch_size);
}

static bool host_get_path(sluice_batch *b, const sluice_record *r, const char *path,
                          sluice_value *out)
{
    /* A field whose name is the whole path wins over a nested lookup. */
    const sluice_value *v = sluice_get(r, sl_intern(path, strlen(path)));
    if (v) {
        *out = *v;
        return true;
    }
    const char *dot = strchr(path, '.');
    if (!dot)
        return false;
    v = sluice_get(r, sl_intern(path, (size_t)(dot - path)));
    if (!v || v->type != SLUICE_JSON)
        return false;
    return sl_json_path(b, v->u.s, dot + 1, out);
}

static int host_emit(sluice_ctx *ctx, sluice_batch *b)
{
    return sl_stage_emit(ctx, 0, b);
}

static int host_emit_to(sluice_ctx *ctx, int output, sluice_batch *b)
{
    if (output < 0 || (size_t)output + 1 >= ctx->noutputs) {
        /* An output option the user left out: nothing consumes it. */
        sl_batch_unref(b);
        return SLUICE_OK;
    }
    return sl_stage_emit(ctx, (size_t)output + 1, b);
}

static sluice_expr *host_expr_compile(sluice_ctx *ctx, const char *option, const char *source)
{
    char err[512];
    sl_expr *e = sl_expr_compile(source, err, sizeof err);
    if (!e)
        host_config_error(ctx, option, "%s", err);
    return (sluice_expr *)e;
}

static void host_expr_free(sluice_expr *e)
{
    sl_expr_free((sl_expr *)e);
}

static int host_expr_eval(sluice_expr *e, const sluice_record *r, sluice_batch *out,
                          sluice_value *result, char *err, size_t errlen)
{
    return sl_expr_eval((sl_expr *)e, r, out, result, err, errlen) == 0 ? SLUICE_OK
                                                                          : SLUICE_ERROR;
}

static void host_progress(sluice_ctx *ctx, uint64_t done, uint64_t total)
{
    atomic_store_explicit(&ctx->progress_done, done, memory_order_relaxed);
    atomic_store_explicit(&ctx->progress_total, total, memory_order_relaxed);
}

static bool host_stopping(sluice_ctx *ctx)
{
    return atomic_load_explicit(&ctx->rt->stopping, memory_order_relaxed) != 0;
}

static const char *host_stage_name(sluice_ctx *ctx)
{
    return ctx->cfg->name;
}

static int host_buf_append(sluice_buf *buf, const char *p, size_t len)
{
    return sl_buf_append(buf, p, len) == 0 ? SLUICE_OK : SLUICE_ERROR;
}

static void host_state_size(sluice_ctx *ctx, uint64_t keys, uint64_t bytes)
{
    atomic_store_explicit(&ctx->state_keys, keys, memory_order_relaxed);
    atomic_store_explicit(&ctx->state_bytes, bytes, memory_order_relaxed);
}

static void host_count_late(sluice_ctx *ctx, uint64_t n)
{
    atomic_fetch_add_explicit(&ctx->records_late, n, memory_order_relaxed);
}

static void host_partitions(sluice_ctx *ctx, uint32_t n)
{
    sl_watermark_declare(&ctx->source_wm, n, sl_now_ns());
}

static void host_partition_done(sluice_ctx *ctx, uint32_t partition)
{
    sl_watermark_done(&ctx->source_wm, partition);
}

/* ---- 1.2 ---- */

static void host_partition_open(sluice_ctx *ctx, uint32_t partition)
{
    sl_watermark_open(&ctx->source_wm, partition, sl_now_ns());
}

static int64_t host_checkpoint_interval(sluice_ctx *ctx)
{
    const sl_pipeline_cfg *cfg = ctx->rt->cfg;
    return cfg->checkpoints ? cfg->checkpoint_interval_ms : -1;
}

static const char *host_pipeline_name(sluice_ctx *ctx)
{
    return ctx->rt->cfg->name;
}

static sluice_metric *host_metric_new(sluice_ctx *ctx, const char *name,
                                      sluice_metric_type type, const char *help,
                                      const char *const *labels)
{
    const char *why = "";
    sluice_metric *m = sl_registry_family(ctx->rt->registry, ctx->rt->cfg->name, ctx->cfg->name,
                                          sl_metrics_kind_name(ctx->cfg->kind), name, type,
                                          help, labels, &why);
    if (!m)
        sl_log(SLUICE_LOG_WARN, ctx->cfg->name, "metric %s is not kept: %s",
               name ? name : "(null)", why);
    return m;
}

/* ---- 1.3 ---- */

static int host_metrics_text(sluice_ctx *ctx, sluice_buf *out)
{
    return sl_metrics_render(ctx->rt, out);
}

/* ---- 1.4 ---- */

static int64_t host_memory_limit(sluice_ctx *ctx)
{
    return ctx->rt->cfg->memory_limit;
}

const sluice_host sl_host = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_host),
    .log = host_log,
    .config_error = host_config_error,
    .intern = host_intern,
    .name_of = sl_name_of,
    .batch_new = host_batch_new,
    .batch_free = sl_batch_unref,
    .record_append = sl_record_append,
    .record_copy = sl_record_copy,
    .alloc = sl_alloc,
    .str = sl_str,
    .set = sl_set,
    .unset = sl_unset,
    .get_path = host_get_path,
    .emit = host_emit,
    .emit_to = host_emit_to,
    .reject = sl_stage_reject,
    .codec_new = sl_codec_new,
    .codec_free = sl_codec_free,
    .decode = sl_codec_decode,
    .encode = sl_codec_encode,
    .codec_header = sl_codec_header,
    .buf_free = sl_buf_free,
    .buf_append = host_buf_append,
    .expr_compile = host_expr_compile,
    .expr_free = host_expr_free,
    .expr_eval = host_expr_eval,
    .progress = host_progress,
    .stopping = host_stopping,
    .stage_name = host_stage_name,
    .state_size = host_state_size,
    .count_late = host_count_late,
    .partitions = host_partitions,
    .partition_done = host_partition_done,
    .partition_open = host_partition_open,
    .checkpoint_now = sl_runtime_checkpoint_now,
    .checkpoint_interval = host_checkpoint_interval,
    .pipeline_name = host_pipeline_name,
    .metric_new = host_metric_new,
    .metric_series = sl_registry_series,
    .series_add = sl_registry_add,
    .series_set = sl_registry_set,
    .metrics_text = host_metrics_text,
    .series_observe = sl_registry_observe,
    .memory_limit = host_memory_limit,
};
