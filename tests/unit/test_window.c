/*
 * test_window.c — the window operator (plugins/window/): assignment rules,
 * every aggregate against a reference computed here, the percentile sketch
 * within its 1% bound, and the operator end to end through a fake host
 * (tumbling/sliding/session rows, late records, update mode, snapshot ->
 * restore giving identical output).
 *
 * The fake host is the real record/batch/intern/expression code of the
 * core with emit() capturing batches, so rows are checked as text.
 */
#include "record.h"
#include "expr.h"
#include "../../plugins/window/aggregate.h"
#include "../../plugins/window/assign.h"
#include "../../plugins/window/sketch.h"
#include "../tap.h"

#include <math.h>
#include <stdarg.h>
#include <time.h>
#include <stdlib.h>

extern const sluice_plugin_def sl_plugin_window_operator;
static const sluice_plugin_def *const def = &sl_plugin_window_operator;

/* ---- A fake host ---------------------------------------------------------- */

static sl_bytes rows;        /* every emitted main-output row, as text lines */
static int nlate_routed; /* records that reached the `late` output */
static uint64_t nlate_counted;
static int nrejected, nconfig_errors;
static char last_reject[64];
static uint64_t state_keys, state_bytes;

static void fake_log(sluice_ctx *ctx, sluice_log_level l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# log: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void fake_config_error(sluice_ctx *ctx, const char *opt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# config error at %s: ", opt);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    nconfig_errors++;
}

static sluice_batch *fake_batch_new(sluice_ctx *ctx) { return sl_batch_new(3); }

static void render_value(sl_bytes *b, const sluice_value *v)
{
    if (v->type == SLUICE_STRING)
        sl_bytes_put(b, v->u.s.ptr, v->u.s.len);
    else
        agg_json_value(b, v);
}

static int fake_emit(sluice_ctx *ctx, sluice_batch *b)
{
    for (uint32_t i = 0; i < b->count; i++) {
        const sluice_record *r = &b->records[i];
        char t[32];
        int n = snprintf(t, sizeof t, "@%lld", (long long)r->time);
        sl_bytes_put(&rows, t, (size_t)n);
        for (uint32_t f = 0; f < r->nfields; f++) {
            const char *name = sl_name_of(r->fields[f].name);
            wbuf_u8(&rows, ' ');
            sl_bytes_put(&rows, name, strlen(name));
            wbuf_u8(&rows, '=');
            render_value(&rows, &r->fields[f].value);
        }
        wbuf_u8(&rows, '\n');
    }
    sl_batch_unref(b);
    return SLUICE_OK;
}

static int fake_emit_to(sluice_ctx *ctx, int output, sluice_batch *b)
{
    nlate_routed += (int)b->count;
    sl_batch_unref(b);
    return SLUICE_OK;
}

static int fake_reject(sluice_ctx *ctx, const sluice_record *rec, sluice_str raw,
                       const char *reason, const char *detail)
{
    nrejected++;
    snprintf(last_reject, sizeof last_reject, "%s", reason);
    return SLUICE_OK;
}

static sluice_expr *fake_expr_compile(sluice_ctx *ctx, const char *opt, const char *src)
{
    char err[256];
    sl_expr *e = sl_expr_compile(src, err, sizeof err);
    if (!e)
        fake_config_error(ctx, opt, "%s", err);
    return (sluice_expr *)e;
}

static void fake_expr_free(sluice_expr *e) { sl_expr_free((sl_expr *)e); }

static int fake_expr_eval(sluice_expr *e, const sluice_record *r, sluice_batch *out,
                          sluice_value *res, char *err, size_t errlen)
{
    return sl_expr_eval((sl_expr *)e, r, out, res, err, errlen);
}

static void fake_state_size(sluice_ctx *ctx, uint64_t k, uint64_t b)
{
    state_keys = k;
    state_bytes = b;
}

static void fake_count_late(sluice_ctx *ctx, uint64_t n) { nlate_counted += n; }

static const sluice_host host = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_host),
    .log = fake_log,
    .config_error = fake_config_error,
    .intern = sl_intern,
    .name_of = sl_name_of,
    .batch_new = fake_batch_new,
    .batch_free = sl_batch_unref,
    .record_append = sl_record_append,
    .record_copy = sl_record_copy,
    .alloc = sl_alloc,
    .str = sl_str,
    .set = sl_set,
    .unset = sl_unset,
    .emit = fake_emit,
    .emit_to = fake_emit_to,
    .reject = fake_reject,
    .expr_compile = fake_expr_compile,
    .expr_free = fake_expr_free,
    .expr_eval = fake_expr_eval,
    .state_size = fake_state_size,
    .count_late = fake_count_late,
};

/* ---- Building configs and records ------------------------------------------ */

static const sluice_option *opt(const char *name)
{
    for (const sluice_option *o = def->options; o->name; o++)
        if (!strcmp(o->name, name))
            return o;
    printf("# no option %s\n", name);
    exit(1);
}

typedef struct spec {
    int64_t size, slide, gap, lateness;
    const char *group_by[4];
    const char *agg[16][2];
    const char *emit;
    bool late;
} spec;

static void *config_of(const spec *s)
{
    unsigned char *c = calloc(1, def->config_size);
    *(int64_t *)(c + opt("size")->offset) = s->size;
    *(int64_t *)(c + opt("slide")->offset) = s->slide;
    *(int64_t *)(c + opt("gap")->offset) = s->gap;
    *(int64_t *)(c + opt("allowed_lateness")->offset) = s->lateness;
    *(int *)(c + opt("late")->offset) = s->late ? 0 : -1;
    *(const char **)(c + opt("emit")->offset) = s->emit ? s->emit : "on_close";
    sluice_list *gb = (sluice_list *)(c + opt("group_by")->offset);
    while (gb->count < 4 && s->group_by[gb->count])
        gb->count++;
    gb->items = (char **)s->group_by;
    sluice_map *m = (sluice_map *)(c + opt("aggregate")->offset);
    static char *keys[16], *values[16];
    size_t n = 0;
    for (; n < 16 && s->agg[n][0]; n++) {
        keys[n] = (char *)s->agg[n][0];
        values[n] = (char *)s->agg[n][1];
    }
    m->count = n;
    m->keys = keys;
    m->values = values;
    return c;
}

static void *make(const spec *s)
{
    void *cfg = config_of(s), *self = NULL;
    char err[256] = "";
    int rc = def->create(&host, NULL, cfg, &self, err, sizeof err);
    free(cfg);
    if (rc != SLUICE_OK) {
        printf("# create failed: %s\n", err);
        return NULL;
    }
    return self;
}

static int make_fails(const spec *s)
{
    void *self = make(s);
    if (self)
        def->destroy(self);
    return self == NULL;
}

static sluice_name nm(const char *s) { return sl_intern(s, strlen(s)); }

/* One record: time t, key field `k` (a string, or absent when NULL), int `v`. */
static void add(sluice_batch *b, int64_t t, const char *k, int64_t v)
{
    sluice_record *r = sl_record_append(b);
    r->time = t;
    if (k)
        sl_set(b, r, nm("k"), sluice_string(sl_str(b, k, strlen(k))));
    sl_set(b, r, nm("v"), sluice_int(v));
}

static void feed(void *self, sluice_batch *b)
{
    char err[256];
    if (def->process(self, b, 0, err, sizeof err) != SLUICE_OK)
        printf("# process: %s\n", err);
    sl_batch_unref(b);
}

static void wm(void *self, int64_t w)
{
    char err[256];
    if (def->on_watermark(self, w, err, sizeof err) != SLUICE_OK)
        printf("# on_watermark: %s\n", err);
}

/* The end of a bounded input, as the core delivers it: the watermark goes
 * to the end (every window fires), then flush. */
static void flush(void *self)
{
    char err[256];
    if (def->on_watermark(self, SLUICE_TIME_MAX, err, sizeof err) != SLUICE_OK)
        printf("# on_watermark: %s\n", err);
    if (def->flush(self, err, sizeof err) != SLUICE_OK)
        printf("# flush: %s\n", err);
}

/* A stop before the end (a signal): flush alone emits nothing as final. */
static void flush_stopped(void *self)
{
    char err[256];
    if (def->flush(self, err, sizeof err) != SLUICE_OK)
        printf("# flush: %s\n", err);
}

/* Take the rows emitted so far as a string (caller frees). */
static char *take_rows(void)
{
    wbuf_u8(&rows, 0);
    char *s = (char *)rows.data;
    rows = (sl_bytes){0};
    return s;
}

static void is_rows(const char *want, const char *what)
{
    char *got = take_rows();
    is_str(got, want, "%s", what);
    free(got);
}

/* ---- Assignment ----------------------------------------------------------- */

static void test_assign(void)
{
    int64_t a, b;
    is_int(wa_floor_div(-1, 10), -1, "floor_div(-1, 10)");
    is_int(wa_floor_div(-10, 10), -1, "floor_div(-10, 10)");
    is_int(wa_floor_div(-11, 10), -2, "floor_div(-11, 10)");
    is_int(wa_floor_div(9, 10), 0, "floor_div(9, 10)");

    is_int(wa_sliding(0, 60000, 60000, &a, &b), 1, "tumbling: t=0 in one window");
    ok(a == 0 && b == 0, "tumbling: t=0 starts [0, 60000)");
    wa_sliding(59999, 60000, 60000, &a, &b);
    ok(a == 0 && b == 0, "tumbling: t=59999 (last ms) still in [0, 60000)");
    wa_sliding(60000, 60000, 60000, &a, &b);
    ok(a == 60000 && b == 60000, "tumbling: t=60000 (edge) opens [60000, 120000)");
    wa_sliding(-1, 60000, 60000, &a, &b);
    ok(a == -60000 && b == -60000, "tumbling: t=-1 in [-60000, 0)");
    wa_sliding(-60000, 60000, 60000, &a, &b);
    ok(a == -60000, "tumbling: t=-60000 in [-60000, 0)");
    wa_sliding(-60001, 60000, 60000, &a, &b);
    ok(a == -120000, "tumbling: t=-60001 in [-120000, -60000)");

    is_int(wa_sliding(65, 30, 10, &a, &b), 3, "sliding 30/10: t=65 in 3 windows");
    ok(a == 40 && b == 60, "sliding 30/10: t=65 in [40,70) [50,80) [60,90)");
    is_int(wa_sliding(60, 30, 10, &a, &b), 3, "sliding: t on a start edge in 3 windows");
    ok(a == 40 && b == 60, "sliding: t=60 in [40,70) .. [60,90), not [30,60)");
    is_int(wa_sliding(-5, 30, 10, &a, &b), 3, "sliding: negative t");
    ok(a == -30 && b == -10, "sliding: t=-5 in [-30,0) [-20,10) [-10,20)");
    is_int(wa_sliding(7, 25, 10, &a, &b), 2, "sliding 25/10 (not a multiple): t=7");
    ok(a == -10 && b == 0, "sliding 25/10: t=7 in [-10,15) [0,25), not [-20,5)");
    is_int(wa_sliding(INT64_MAX - 5, 60, 60, &a, &b), 0, "overflow near INT64_MAX refused");
    is_int(wa_sliding(INT64_MIN + 5, 60, 60, &a, &b), 0, "overflow near INT64_MIN refused");

    ok(!wa_closed(60000, 0, 59998), "closed: wm 59998 keeps [0,60000) open");
    ok(wa_closed(60000, 0, 59999), "closed: wm = end - 1 closes [0,60000)");
    ok(!wa_closed(60000, 5000, 64998), "closed: lateness keeps it open");
    ok(wa_closed(60000, 5000, 64999), "closed: at end - 1 + lateness");
    ok(wa_closed(INT64_MAX, 10, INT64_MAX), "closed: everything at the end of input");
    ok(!wa_closed(INT64_MAX - 1, 10, INT64_MAX - 1), "closed: no overflow into closed");

    wa_session s[4] = {{0, 10}, {22, 32}};
    size_t n = 2;
    is_int(wa_session_merge(s, &n, 12, 10), -1, "session: t=12 gap 10 overlaps neither");
    is_int(wa_session_merge(s, &n, 10, 10), -1, "session: t=10 touching end 10 does not merge");
    is_int(wa_session_merge(s, &n, 5, 10), 0, "session: t=5 joins [0,10)");
    ok(s[0].start == 0 && s[0].end == 15 && n == 2, "session: extended to [0,15)");
    is_int(wa_session_merge(s, &n, 14, 10), 0, "session: t=14 bridges [0,15) and [22,32)");
    ok(n == 1 && s[0].start == 0 && s[0].end == 32, "session: bridged into [0,32)");
    is_int(wa_session_merge(s, &n, -5, 10), 0, "session: t=-5 extends the start");
    ok(s[0].start == -5 && s[0].end == 32, "session: now [-5,32)");
}

/* ---- Aggregates against references ----------------------------------------- */

static bool agg_of(const char *text, agg_spec *s)
{
    char why[256];
    if (!agg_parse(text, s, why, sizeof why)) {
        printf("# %s: %s\n", text, why);
        return false;
    }
    return true;
}

/* Run `text` over vals (NULL entries absent), split into two halves merged
 * (the session path) when split, and render the result. */
static char *run_agg(const char *text, const sluice_value *vals, size_t n, const bool *conds,
                     bool split)
{
    agg_spec s;
    if (!agg_of(text, &s))
        return strdup("(parse error)");
    size_t sz = agg_state_size(s.func);
    unsigned char *a = calloc(1, sz), *b = calloc(1, sz);
    for (size_t i = 0; i < n; i++) {
        unsigned char *st = split && i >= n / 2 ? b : a;
        agg_update(&s, st, vals[i].type == (sluice_type)99 ? NULL : &vals[i],
                   conds ? conds[i] : true, (int64_t)(i % 7), i);
    }
    if (split)
        agg_merge(&s, a, b);
    sl_bytes scratch = {0}, out = {0};
    sluice_value v;
    agg_result(&s, a, &v, &scratch);
    agg_json_value(&out, &v);
    wbuf_u8(&out, 0);
    agg_free(&s, a);
    agg_free(&s, b);
    free(a);
    free(b);
    sl_bytes_free(&scratch);
    agg_spec_free(&s);
    return (char *)out.data;
}

static void check_agg(const char *text, const sluice_value *vals, size_t n, const bool *conds,
                      const char *want)
{
    for (int split = 0; split < 2; split++) {
        char *got = run_agg(text, vals, n, conds, split);
        is_str(got, want, "%s%s", text, split ? " (two halves merged)" : "");
        free(got);
    }
}

static sluice_value S(const char *s) { return sluice_string((sluice_str){s, strlen(s)}); }

static void test_aggregates(void)
{
    sluice_value absent;
    absent.type = (sluice_type)99;
    sluice_value v[] = {sluice_int(5),      sluice_double(2.5), S("x"),    sluice_null(),
                        sluice_int(-3),     absent,             S("x"),    sluice_int(5),
                        sluice_double(10),  sluice_bool(true)};
    bool c[] = {true, false, true, true, true, false, false, true, true, false};
    size_t n = sizeof v / sizeof v[0];
    /* The references, worked from the list above: numbers 5, 2.5, -3, 5, 10. */
    check_agg("count()", v, n, NULL, "10");
    check_agg("sum(f)", v, n, NULL, "19.5");
    check_agg("avg(f)", v, n, NULL, "3.9");
    check_agg("min(f)", v, n, NULL, "-3");
    check_agg("max(f)", v, n, NULL, "10");
    /* mean 3.9, squared deviations 1.21+1.96+47.61+1.21+37.21 = 89.2, /4 */
    char ref[64];
    snprintf(ref, sizeof ref, "%.15g", sqrt(89.2 / 4));
    for (int split = 0; split < 2; split++) {
        char *got = run_agg("stddev(f)", v, n, NULL, split);
        ok(fabs(atof(got) - sqrt(89.2 / 4)) < 1e-12, "stddev(f) = %s (ref %s)%s", got, ref,
           split ? " merged" : "");
        free(got);
    }
    check_agg("stddev(f)", v, 1, NULL, "null");
    check_agg("count_distinct(f)", v, n, NULL, "6");
    check_agg("collect_list(f)", v, n, NULL, "[5,2.5,\"x\",-3,\"x\",5,10,true]");
    check_agg("collect_set(f)", v, n, NULL, "[5,2.5,\"x\",-3,10,true]");
    /* times are i % 7: 0,1,2,3,4,5,6,0,1,2; first by time: i=0 (5); last: t=6 is i=6 "x" */
    check_agg("first(f)", v, n, NULL, "5");
    check_agg("last(f)", v, n, NULL, "\"x\"");
    check_agg("count_if(x)", v, n, c, "6");
    /* conds true at 0,2,3,4,7,8: numbers 5, -3, 5, 10 */
    check_agg("sum_if(f, x)", v, n, c, "17");
    check_agg("sum(f)", v + 2, 2, NULL, "null");
    check_agg("avg(f)", v + 2, 2, NULL, "null");
    check_agg("collect_list(f)", v + 3, 1, NULL, "[]");
    check_agg("count_distinct(f)", v + 3, 1, NULL, "0");

    sluice_value ints[] = {sluice_int(INT64_MAX - 1), sluice_int(1), sluice_int(1)};
    char *got = run_agg("sum(f)", ints, 2, NULL, false);
    is_str(got, "9223372036854775807", "sum of ints stays an int");
    free(got);
    got = run_agg("sum(f)", ints, 3, NULL, false);
    ok(strchr(got, 'e') != NULL, "sum overflowing int64 becomes a double (%s)", got);
    free(got);
    sluice_value ties[] = {S("a"), S("b"), S("c")};
    agg_spec s;
    agg_of("last(f)", &s);
    unsigned char st[64] = {0};
    for (int i = 0; i < 3; i++)
        agg_update(&s, st, &ties[i], true, 100, (uint64_t)i);
    sl_bytes scratch = {0};
    sluice_value r;
    agg_result(&s, st, &r, &scratch);
    ok(r.type == SLUICE_STRING && r.u.s.len == 1 && r.u.s.ptr[0] == 'c',
       "last(): a tie in time goes to the later arrival");
    agg_free(&s, st);
    agg_spec_free(&s);
    sl_bytes_free(&scratch);

    const char *bad[] = {"count(x)", "avg()", "avg(a, b)", "nope(x)", "percentile(x)",
                         "percentile(x, 1.5)", "sum_if(x)", "count_if()", "avg", "avg(x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[256];
        agg_spec t;
        ok(!agg_parse(bad[i], &t, why, sizeof why), "rejects `%s` (%s)", bad[i], why);
    }
    agg_of(" sum_if( bytes , string.find(path, \"a,b\") ~= nil ) ", &s);
    ok(s.func == AGG_SUM_IF && !strcmp(s.field, "bytes") &&
           !strcmp(s.expr, "string.find(path, \"a,b\") ~= nil"),
       "sum_if splits at the first top-level comma");
    agg_spec_free(&s);
    agg_of("percentile(`response time`, 0.99)", &s);
    ok(s.func == AGG_PERCENTILE && s.q == 0.99 && !strcmp(s.field, "response time"),
       "percentile with a quoted field");
    agg_spec_free(&s);
}

/* ---- The sketch --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_sketch(void)
{
    enum { N = 100000 };
    static double vals[N];
    srand(42);
    sketch a = {0}, b = {0}, whole = {0};
    for (int i = 0; i < N; i++) {
        double u = (rand() + 1.0) / (RAND_MAX + 2.0);
        double x = exp(8 * u - 2); /* 0.13 .. 400: log-uniform */
        if (i % 10 == 0)
            x = -x;
        if (i % 97 == 0)
            x = 0;
        vals[i] = x;
        sketch_add(i % 2 ? &a : &b, x);
        sketch_add(&whole, x);
    }
    sketch_merge(&a, &b);
    qsort(vals, N, sizeof *vals, cmp_double);
    const double qs[] = {0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};
    int within = 0, within_merged = 0;
    double worst = 0;
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double exact = vals[(size_t)(qs[i] * (N - 1))], est, est2;
        sketch_quantile(&whole, qs[i], &est);
        sketch_quantile(&a, qs[i], &est2);
        double err = exact == 0 ? fabs(est) : fabs(est - exact) / fabs(exact);
        if (err > worst)
            worst = err;
        within += err <= SKETCH_ALPHA + 1e-12;
        within_merged += (exact == 0 ? fabs(est2) : fabs(est2 - exact) / fabs(exact)) <=
                         SKETCH_ALPHA + 1e-12;
    }
    is_int(within, (int)(sizeof qs / sizeof qs[0]), "percentile within 1%% at every q "
                                                    "(worst %.4f%%)", worst * 100);
    is_int(within_merged, (int)(sizeof qs / sizeof qs[0]), "merged sketch within 1%% too");
    sl_bytes blob = {0};
    sketch_save(&a, &blob);
    sketch c;
    sl_reader r = {blob.data, blob.data + blob.len, false};
    ok(sketch_load(&c, &r) && c.count == N, "sketch save/load");
    double x, y;
    sketch_quantile(&a, 0.5, &x);
    sketch_quantile(&c, 0.5, &y);
    ok(x == y, "loaded sketch answers the same");
    ok(sketch_bytes(&whole) < 16 * 1024, "sketch stays small (%zu bytes)", sketch_bytes(&whole));
    sketch_free(&a);
    sketch_free(&b);
    sketch_free(&c);
    sketch_free(&whole);
    sl_bytes_free(&blob);
}

/* ---- The operator ------------------------------------------------------------------ */

static void test_config_errors(void)
{
    spec s = {.size = 0};
    ok(make_fails(&s), "no size and no gap: refused");
    s = (spec){.size = 10, .gap = 5};
    ok(make_fails(&s), "size with gap: refused");
    s = (spec){.size = 10, .slide = 20};
    ok(make_fails(&s), "slide > size: refused");
    s = (spec){.size = 10, .emit = "every"};
    ok(make_fails(&s), "emit: every without a duration: refused");
    s = (spec){.size = 10, .emit = "sometimes"};
    ok(make_fails(&s), "emit: a bad value: refused");
    s = (spec){.size = 10, .agg = {{"n", "count()"}, {"n", "sum(v)"}}};
    ok(make_fails(&s), "an output name twice: refused");
    s = (spec){.size = 10, .group_by = {"k"}, .agg = {{"k", "count()"}}};
    ok(make_fails(&s), "an aggregate named like a group_by field: refused");
    s = (spec){.size = 10, .agg = {{"c", "count_if(v >)"}}};
    ok(make_fails(&s), "count_if with a Lua syntax error: refused");
    s = (spec){.size = 10, .emit = "every 250ms"};
    void *w = make(&s);
    ok(w != NULL, "emit: every 250ms accepted");
    if (w)
        def->destroy(w);
}

static void test_tumbling(void)
{
    spec s = {.size = 60000, .group_by = {"k"},
              .agg = {{"n", "count()"}, {"total", "sum(v)"}, {"mean", "avg(v)"}}};
    void *w = make(&s);
    sluice_batch *b = sl_batch_new(64);
    add(b, 1000, "a", 1);
    add(b, 59999, "b", 2);
    add(b, 60000, "a", 3); /* the edge: next window */
    add(b, 2000, "a", 4);
    add(b, 3000, NULL, 5); /* missing key groups as null */
    feed(w, b);
    wm(w, 59998);
    is_rows("", "nothing closes before wm = end - 1");
    wm(w, 59999);
    is_rows("@59999 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:01:00.000Z "
            "k=a n=2 total=5 mean=2.5\n"
            "@59999 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:01:00.000Z "
            "k=b n=1 total=2 mean=2\n"
            "@59999 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:01:00.000Z "
            "k=null n=1 total=5 mean=5\n",
            "tumbling: [0, 60s) closes at wm 59999, keys in order of first appearance");
    ok(state_keys == 1, "state: one live (window, key) left (%llu)",
       (unsigned long long)state_keys);
    b = sl_batch_new(8);
    add(b, 59000, "a", 9); /* late: its only window closed */
    add(b, -1, "neg", 1);  /* late too */
    add(b, 61000, "a", 1);
    sluice_record *r = sl_record_append(b); /* no event time */
    r->time = SLUICE_TIME_NONE;
    feed(w, b);
    is_int(nlate_counted, 2, "two late records counted");
    is_int(nlate_routed, 0, "without `late` they are dropped");
    is_int(nrejected, 1, "a record without event time is rejected");
    is_str(last_reject, "no_event_time", "reason no_event_time");
    flush_stopped(w);
    is_rows("", "a stop before the end emits no open window as if final");
    flush(w);
    is_rows("@119999 window_start=1970-01-01T00:01:00.000Z window_end=1970-01-01T00:02:00.000Z "
            "k=a n=2 total=4 mean=2\n",
            "flush closes the rest");
    is_int(state_keys, 0, "no state after flush");
    is_int(state_bytes, 0, "no state bytes after flush");
    def->destroy(w);
    nlate_counted = 0;
    nrejected = 0;
}

static void test_sliding_and_late(void)
{
    spec s = {.size = 30, .slide = 10, .lateness = 5, .late = true,
              .agg = {{"n", "count()"}, {"vals", "collect_list(v)"}}};
    void *w = make(&s);
    sluice_batch *b = sl_batch_new(8);
    add(b, 5, "x", 1);  /* [-20,10) [-10,20) [0,30) */
    add(b, 25, "x", 2); /* [0,30) [10,40) [20,50) */
    feed(w, b);
    wm(w, 13);
    is_rows("", "sliding: lateness keeps [-20,10) open at wm 13");
    wm(w, 14); /* closes [-20,10): 9 + 5 <= 14 */
    is_rows("@9 window_start=1969-12-31T23:59:59.980Z window_end=1970-01-01T00:00:00.010Z "
            "n=1 vals=[1]\n",
            "sliding: the first window closes at end - 1 + lateness");
    b = sl_batch_new(8);
    add(b, 3, "x", 3); /* [-20,10) closed; [-10,20) and [0,30) still open: counted there */
    feed(w, b);
    wm(w, 100);
    is_rows("@19 window_start=1969-12-31T23:59:59.990Z window_end=1970-01-01T00:00:00.020Z "
            "n=2 vals=[1,3]\n"
            "@29 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:00:00.030Z "
            "n=3 vals=[1,2,3]\n"
            "@39 window_start=1970-01-01T00:00:00.010Z window_end=1970-01-01T00:00:00.040Z "
            "n=1 vals=[2]\n"
            "@49 window_start=1970-01-01T00:00:00.020Z window_end=1970-01-01T00:00:00.050Z "
            "n=1 vals=[2]\n",
            "sliding: overlapping windows in end order; a partly late record updates the "
            "open ones");
    is_int(nlate_counted, 0, "a record with an open window is not late");
    b = sl_batch_new(8);
    add(b, 60, "x", 4); /* windows end 70..90: 69+5 > 100? 74 <= 100: closed */
    add(b, 80, "x", 5); /* [60,90) ends 89+5 = 94 <= 100 closed; [70,100): 104 > 100 open */
    feed(w, b);
    is_int(nlate_counted, 1, "a record all of whose windows closed is late");
    is_int(nlate_routed, 1, "and goes to `late`");
    def->destroy(w);
    free(take_rows());
    nlate_counted = 0;
    nlate_routed = 0;
}

static void test_sessions(void)
{
    spec s = {.gap = 10, .group_by = {"k"},
              .agg = {{"n", "count()"}, {"first", "first(v)"}, {"last", "last(v)"}}};
    void *w = make(&s);
    sluice_batch *b = sl_batch_new(16);
    add(b, 0, "a", 1);   /* a: [0,10) */
    add(b, 25, "a", 2);  /* a: [25,35) */
    add(b, 100, "b", 3); /* b: [100,110) */
    add(b, 14, "a", 4);  /* [14,24) overlaps neither: 14 < 10? no; 24 > 25? no -> new */
    add(b, 9, "a", 5);   /* [9,19) bridges [0,10) and [14,24) -> [0,24) */
    add(b, 20, "a", 6);  /* [20,30) bridges [0,24) and [25,35) -> [0,35) */
    feed(w, b);
    wm(w, 33);
    is_rows("", "no session closes before its end - 1");
    wm(w, 34);
    is_rows("@34 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:00:00.035Z "
            "k=a n=5 first=1 last=2\n",
            "sessions: bridging records merge three sessions into one");
    b = sl_batch_new(4);
    add(b, 30, "a", 7);  /* would be [30,40), closed at wm 34? 39 > 34: open, new session */
    add(b, 20, "c", 8);  /* [20,30) closed at 34: late */
    feed(w, b);
    is_int(nlate_counted, 1, "a session that would already be closed is late");
    flush(w);
    is_rows("@39 window_start=1970-01-01T00:00:00.030Z window_end=1970-01-01T00:00:00.040Z "
            "k=a n=1 first=7 last=7\n"
            "@109 window_start=1970-01-01T00:00:00.100Z window_end=1970-01-01T00:00:00.110Z "
            "k=b n=1 first=3 last=3\n",
            "sessions: the rest at flush, in end order");
    is_int(state_keys, 0, "no sessions left");
    def->destroy(w);
    nlate_counted = 0;
}

static void test_update_mode(void)
{
    spec s = {.size = 100, .emit = "every 1s", .agg = {{"n", "count()"}}};
    void *w = make(&s);
    char err[256];
    def->on_tick(w, 1000, err, sizeof err);
    sluice_batch *b = sl_batch_new(4);
    add(b, 10, "a", 1);
    feed(w, b);
    def->on_tick(w, 1500, err, sizeof err);
    is_rows("", "update mode: nothing before the interval");
    def->on_tick(w, 2000, err, sizeof err);
    is_rows("@99 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:00:00.100Z "
            "n=1\n",
            "update mode: the partial row");
    def->on_tick(w, 3000, err, sizeof err);
    is_rows("", "update mode: unchanged windows are not repeated");
    b = sl_batch_new(4);
    add(b, 20, "a", 1);
    feed(w, b);
    wm(w, 200);
    is_rows("@99 window_start=1970-01-01T00:00:00.000Z window_end=1970-01-01T00:00:00.100Z "
            "n=2\n",
            "update mode: the final row at close");
    def->destroy(w);
}

/* A rich configuration fed in two halves, with a snapshot/restore between
 * them, must emit exactly what one uninterrupted instance emits. */
static void feed_half(void *w, int half, bool sessions)
{
    sluice_batch *b = sl_batch_new(4096);
    srand(7 + half);
    for (int i = 0; i < 2000; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", rand() % 13);
        int64_t t = half * 20000 + rand() % 25000 - (sessions ? 0 : 2000);
        add(b, t, rand() % 17 ? k : NULL, rand() % 1000 - 100);
    }
    feed(w, b);
    wm(w, half * 20000 + 5000);
}

static void test_snapshot(bool sessions)
{
    spec s = {.size = sessions ? 0 : 10000, .slide = sessions ? 0 : 2500,
              .gap = sessions ? 300 : 0, .lateness = 1000, .group_by = {"k"},
              .agg = {{"n", "count()"}, {"sum", "sum(v)"}, {"avg", "avg(v)"},
                      {"min", "min(v)"}, {"max", "max(v)"}, {"sd", "stddev(v)"},
                      {"cd", "count_distinct(v)"}, {"set", "collect_set(v)"},
                      {"list", "collect_list(v)"}, {"first", "first(v)"},
                      {"last", "last(v)"}, {"p90", "percentile(v, 0.9)"},
                      {"big", "count_if(v > 500)"}, {"bigsum", "sum_if(v, v > 500)"}}};
    void *one = make(&s);
    feed_half(one, 0, sessions);
    feed_half(one, 1, sessions);
    flush(one);
    char *want = take_rows();
    def->destroy(one);

    void *a = make(&s);
    feed_half(a, 0, sessions);
    void *blob = NULL;
    size_t len = 0;
    char err[256];
    ok(def->snapshot(a, 1, &blob, &len, err, sizeof err) == SLUICE_OK, "snapshot (%zu bytes)",
       len);
    uint64_t keys_before = state_keys;
    def->destroy(a);
    char *first = take_rows();
    void *b = make(&s);
    ok(def->restore(b, blob, len, err, sizeof err) == SLUICE_OK, "restore");
    is_int(state_keys, keys_before, "restored state holds the same groups");
    feed_half(b, 1, sessions);
    flush(b);
    char *second = take_rows();
    size_t n1 = strlen(first), n2 = strlen(second);
    char *got = malloc(n1 + n2 + 1);
    memcpy(got, first, n1);
    memcpy(got + n1, second, n2 + 1);
    ok(strlen(want) > 1000 && !strcmp(got, want),
       "%s: snapshot -> restore gives identical output (%zu bytes of rows)",
       sessions ? "sessions" : "sliding", strlen(want));
    def->destroy(b);

    /* A damaged or foreign blob is refused, never crashes. */
    void *c = make(&s);
    ((unsigned char *)blob)[len / 2] ^= 0xff;
    int rc = def->restore(c, blob, len / 2, err, sizeof err);
    ok(rc == SLUICE_ERROR, "a truncated snapshot is refused (%s)", err);
    def->destroy(c);
    spec other = s;
    other.agg[0][1] = "sum(v)";
    c = make(&other);
    ok(def->restore(c, blob, len, err, sizeof err) == SLUICE_ERROR,
       "a snapshot of another configuration is refused");
    def->destroy(c);
    free(blob);
    free(want);
    free(first);
    free(second);
    free(got);
    free(take_rows());
}

/* The hot path: tumbling 1-minute windows over 1000 keys, count/sum/avg. */
static void bench(void)
{
    spec s = {.size = 60000, .group_by = {"k"},
              .agg = {{"n", "count()"}, {"total", "sum(v)"}, {"mean", "avg(v)"}}};
    void *w = make(&s);
    enum { BATCH = 4096, BATCHES = 250 };
    sluice_name k = nm("k"), v = nm("v");
    struct timespec t0, t1;
    double busy = 0;
    for (int i = 0; i < BATCHES; i++) {
        sluice_batch *b = sl_batch_new(BATCH);
        for (int j = 0; j < BATCH; j++) {
            uint64_t n = (uint64_t)i * BATCH + (uint64_t)j;
            sluice_record *r = sl_record_append(b);
            r->time = (int64_t)n; /* 1 ms apart: ~60k records per window */
            sl_set(b, r, k, sluice_int((int64_t)(n * 2654435761u % 1000)));
            sl_set(b, r, v, sluice_int((int64_t)(n % 100)));
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        feed(w, b);
        wm(w, (int64_t)(i + 1) * BATCH - 1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        busy += (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (i == BATCHES / 2)
            printf("# live groups %llu, state %llu bytes: %.0f bytes per (key, window)\n",
                   (unsigned long long)state_keys, (unsigned long long)state_bytes,
                   (double)state_bytes / (double)state_keys);
    }
    flush(w);
    free(take_rows());
    def->destroy(w);
    printf("# window operator alone: %.2f M records/s (tumbling 1m, 1000 keys, "
           "count/sum/avg)\n",
           BATCH * (double)BATCHES / busy / 1e6);
}

int main(void)
{
    test_assign();
    test_aggregates();
    test_sketch();
    test_config_errors();
    test_tumbling();
    test_sliding_and_late();
    test_sessions();
    test_update_mode();
    test_snapshot(false);
    test_snapshot(true);
    bench();
    sl_bytes_free(&rows);
    return tap_done();
}
