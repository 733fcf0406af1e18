/*
 * status.c — the live status line and the end-of-run summary; see status.h.
 */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_status {
    sl_runtime *rt;
    bool live;
    int64_t last_ns;
    uint64_t *last_out;   /* per stage, at last_ns */
    double *rate;         /* per stage, records/s */
    char line[512];
};

static sl_status *current; /* for the log hooks, which take no argument */

static void format_count(char *out, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(out, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(out, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(out, n, "%.1fk", v / 1e3);
    else
        snprintf(out, n, "%.0f", v);
}

static void clear_line(void)
{
    fputs("\r\033[K", stderr);
}

static void redraw_line(void)
{
    if (current && current->line[0])
        fputs(current->line, stderr);
}

/* Under the log lock, so a log line never sees half a status line. */
static void set_line(void *arg)
{
    memcpy(current->line, arg, sizeof current->line);
    clear_line();
    redraw_line();
    fflush(stderr);
}

sl_status *sl_status_new(sl_runtime *rt, bool live)
{
    sl_status *s = calloc(1, sizeof *s);
    s->rt = rt;
    s->live = live;
    s->last_ns = sl_now_ns();
    s->last_out = calloc(rt->nstages ? rt->nstages : 1, sizeof *s->last_out);
    s->rate = calloc(rt->nstages ? rt->nstages : 1, sizeof *s->rate);
    if (live) {
        current = s;
        sl_log_set_status_hooks(clear_line, redraw_line);
    }
    return s;
}

static void append(char *line, size_t cap, const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(line);
    if (n < cap)
        snprintf(line + n, cap - n, fmt, a, b);
}

static void compose(sl_status *s, char *line, size_t cap)
{
    sl_runtime *rt = s->rt;
    uint64_t out = 0, errors = 0;
    char num[32], pct[32];
    double elapsed = (double)(sl_now_ns() - rt->started_ns) / 1e9;
    snprintf(line, cap, "sluice %.0fs", elapsed);
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        errors += atomic_load_explicit(&ctx->errors, memory_order_relaxed);
        if (ctx->cfg->kind == SLUICE_SINK)
            out += atomic_load_explicit(&ctx->records_out, memory_order_relaxed);
        if (ctx->cfg->kind != SLUICE_SOURCE)
            continue;
        format_count(num, sizeof num, s->rate[i]);
        uint64_t total = atomic_load_explicit(&ctx->progress_total, memory_order_relaxed);
        uint64_t done = atomic_load_explicit(&ctx->progress_done, memory_order_relaxed);
        pct[0] = 0;
        if (total)
            snprintf(pct, sizeof pct, " %3.0f%%", 100.0 * (double)done / (double)total);
        append(line, cap, " | %s %s rec/s", ctx->cfg->name, num);
        append(line, cap, "%s%s", pct, "");
    }
    format_count(num, sizeof num, (double)out);
    append(line, cap, " | out %s%s", num, "");
    format_count(num, sizeof num, (double)errors);
    append(line, cap, " | errors %s%s", num, "");
}

void sl_status_tick(sl_status *s)
{
    int64_t now = sl_now_ns();
    double dt = (double)(now - s->last_ns) / 1e9;
    if (dt <= 0)
        return;
    for (size_t i = 0; i < s->rt->nstages; i++) {
        uint64_t o = atomic_load_explicit(&s->rt->stages[i].records_out, memory_order_relaxed);
        s->rate[i] = (double)(o - s->last_out[i]) / dt;
        s->last_out[i] = o;
    }
    s->last_ns = now;
    if (!s->live)
        return;
    char line[sizeof s->line];
    compose(s, line, sizeof line);
    sl_log_write_locked(set_line, line);
}

void sl_status_finish(sl_status *s)
{
    if (s->live) {
        sl_log_set_status_hooks(NULL, NULL);
        s->line[0] = 0;
        fputs("\r\033[K", stderr);
        current = NULL;
    }
    sl_runtime *rt = s->rt;
    double elapsed = (double)(sl_now_ns() - rt->started_ns) / 1e9;
    uint64_t in = 0, out = 0, errors = 0, late = 0;
    for (size_t i = 0; i < rt->nstages; i++) {
        sluice_ctx *ctx = &rt->stages[i];
        late += atomic_load(&ctx->records_late);
        if (ctx->cfg->kind == SLUICE_SOURCE)
            in += atomic_load(&ctx->records_out);
        if (ctx->cfg->kind == SLUICE_SINK)
            out += atomic_load(&ctx->records_out);
        errors += atomic_load(&ctx->errors);
    }
    sl_log(SLUICE_LOG_INFO, NULL,
           "run ended after %.2fs: %llu records read, %llu written by sinks, %llu rejected, "
           "%llu late",
           elapsed, (unsigned long long)in, (unsigned long long)out,
           (unsigned long long)errors, (unsigned long long)late);
}

void sl_status_free(sl_status *s)
{
    if (!s)
        return;
    free(s->last_out);
    free(s->rate);
    free(s);
}
